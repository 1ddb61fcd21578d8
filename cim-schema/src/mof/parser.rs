//! The MOF parser: tokens to [`Production`]s, recovering after an error at the next
//! statement so that one run reports several mistakes.

use std::borrow::Cow;

use super::ast::*;
use super::lexer::{Lexer, Token, TokenKind};
use crate::qualifier::{FlavorKeyword, Scope};
use crate::types::CimType;

/// Deepest nesting of embedded instances inside values.
const MAX_VALUE_DEPTH: usize = 32;

/// A syntax error at a place in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub span: Span,
    /// What was expected or found.
    pub message: String,
}

/// Parses a whole MOF source. Returns the statements that parsed and every syntax error.
pub fn parse(source: &str) -> (Vec<Production>, Vec<SyntaxError>) {
    let tokens = Lexer::new(source).tokenize();
    let mut p = Parser {
        src: source,
        tokens,
        pos: 0,
        errors: Vec::new(),
        depth: 0,
    };
    let mut out = Vec::new();
    while p.peek().kind != TokenKind::Eof {
        let start = p.pos;
        match p.production() {
            Ok(prod) => out.push(prod),
            Err(e) => {
                p.errors.push(e);
                p.recover(start);
            }
        }
    }
    (out, p.errors)
}

type PResult<T> = Result<T, SyntaxError>;

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    errors: Vec<SyntaxError>,
    depth: usize,
}

fn span_of(t: &Token) -> Span {
    Span {
        start: t.start,
        end: t.end,
    }
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Token {
        self.tokens[self.pos]
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos];
        if t.kind != TokenKind::Eof {
            self.pos += 1;
        }
        t
    }

    fn text(&self, t: &Token) -> &'s str {
        t.text(self.src)
    }

    fn error_at<T>(&self, t: &Token, expected: &str) -> PResult<T> {
        let message = match t.kind {
            TokenKind::Eof => format!("expected {expected}, found the end of the file"),
            TokenKind::Error => format!(
                "{} (expected {expected})",
                t.error.unwrap_or("invalid token")
            ),
            _ => format!("expected {expected}, found '{}'", self.text(t)),
        };
        Err(SyntaxError {
            span: span_of(t),
            message,
        })
    }

    fn fail<T>(&self, span: Span, message: impl Into<String>) -> PResult<T> {
        Err(SyntaxError {
            span,
            message: message.into(),
        })
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> PResult<Token> {
        let t = self.peek();
        if t.kind == kind {
            Ok(self.bump())
        } else {
            self.error_at(&t, what)
        }
    }

    fn is_keyword(&self, t: &Token, keyword: &str) -> bool {
        t.kind == TokenKind::Identifier && self.text(t).eq_ignore_ascii_case(keyword)
    }

    fn expect_keyword(&mut self, keyword: &str) -> PResult<Token> {
        let t = self.peek();
        if self.is_keyword(&t, keyword) {
            Ok(self.bump())
        } else {
            self.error_at(&t, &format!("'{keyword}'"))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        let t = self.expect(TokenKind::Identifier, what)?;
        Ok(Ident {
            name: self.text(&t).to_string(),
            span: span_of(&t),
        })
    }

    /// Skips the statement that failed: from its first token to the `;` that ends it at
    /// brace depth 0, so that parsing goes on with the next statement. A `#pragma`, or a
    /// `class` keyword that follows the end of a feature, also ends the skip, in case the
    /// statement lost a closing brace.
    fn recover(&mut self, statement_start: usize) {
        self.pos = statement_start;
        let mut depth = 0usize;
        loop {
            let t = self.peek();
            let starts_statement = self.pos > statement_start
                && (t.kind == TokenKind::Hash
                    || (self.is_keyword(&t, "class")
                        && matches!(
                            self.tokens[self.pos - 1].kind,
                            TokenKind::Semicolon | TokenKind::RBrace
                        )
                        && self
                            .tokens
                            .get(self.pos + 1)
                            .is_some_and(|n| n.kind == TokenKind::Identifier)
                        && self.tokens.get(self.pos + 2).is_some_and(|n| {
                            matches!(n.kind, TokenKind::Colon | TokenKind::LBrace)
                        })));
            match t.kind {
                TokenKind::Eof => return,
                _ if starts_statement => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth = depth.saturating_sub(1),
                TokenKind::Semicolon if depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn production(&mut self) -> PResult<Production> {
        let t = self.peek();
        if t.kind == TokenKind::Hash {
            return self.pragma().map(Production::Pragma);
        }
        if self.is_keyword(&t, "qualifier") {
            return self.qualifier_decl().map(Production::Qualifier);
        }
        let qualifiers = self.qualifier_list()?;
        let t = self.peek();
        if self.is_keyword(&t, "class") {
            return self.class_decl(qualifiers).map(Production::Class);
        }
        if self.is_keyword(&t, "instance") {
            // Qualifiers on an instance declaration are allowed by DSP0221 2.x and have no
            // effect on the instance.
            let inst = self.instance_decl()?;
            self.expect(TokenKind::Semicolon, "';' after the instance")?;
            return Ok(Production::Instance(inst));
        }
        self.error_at(&t, "'class', 'instance', 'qualifier' or '#pragma'")
    }

    fn pragma(&mut self) -> PResult<Pragma> {
        self.bump();
        self.expect_keyword("pragma")?;
        let name = self.ident("a pragma name")?;
        self.expect(TokenKind::LParen, "'('")?;
        let t = self.expect(TokenKind::String, "a string")?;
        let mut value = self.string_value(&t)?.into_owned();
        while self.peek().kind == TokenKind::String {
            let t = self.bump();
            value.push_str(&self.string_value(&t)?);
        }
        self.expect(TokenKind::RParen, "')'")?;
        Ok(Pragma { name, value })
    }

    fn qualifier_decl(&mut self) -> PResult<QualifierDeclAst> {
        self.bump();
        let name = self.ident("a qualifier name")?;
        self.expect(TokenKind::Colon, "':' and the qualifier's type")?;
        let ty_tok = self.peek();
        let ty = match self.data_type()? {
            TypeRef::Data(CimType::Reference) | TypeRef::Ref(_) => {
                return self.fail(span_of(&ty_tok), "a qualifier cannot be a reference")
            }
            TypeRef::Data(t) => t,
        };
        let array = self.array_spec()?;
        let default = if self.peek().kind == TokenKind::Equals {
            self.bump();
            Some(self.value()?)
        } else {
            None
        };
        self.expect(TokenKind::Comma, "',' and Scope(...)")?;
        self.expect_keyword("scope")?;
        self.expect(TokenKind::LParen, "'('")?;
        let mut scope = Scope::NONE;
        loop {
            let t = self.expect(TokenKind::Identifier, "a scope (class, association, indication, property, reference, method, parameter or any)")?;
            match Scope::parse(self.text(&t)) {
                Some(s) => scope = scope.union(s),
                None => {
                    return self.fail(
                        span_of(&t),
                        format!("'{}' is not a qualifier scope", self.text(&t)),
                    )
                }
            }
            if self.peek().kind != TokenKind::Comma {
                break;
            }
            self.bump();
        }
        self.expect(TokenKind::RParen, "')'")?;
        let mut flavors = Vec::new();
        if self.peek().kind == TokenKind::Comma {
            self.bump();
            self.expect_keyword("flavor")?;
            self.expect(TokenKind::LParen, "'('")?;
            loop {
                flavors.push(self.flavor()?);
                if self.peek().kind != TokenKind::Comma {
                    break;
                }
                self.bump();
            }
            self.expect(TokenKind::RParen, "')'")?;
        }
        self.expect(TokenKind::Semicolon, "';'")?;
        Ok(QualifierDeclAst {
            name,
            ty,
            array,
            default,
            scope,
            flavors,
        })
    }

    fn flavor(&mut self) -> PResult<FlavorKeyword> {
        let t = self.expect(TokenKind::Identifier, "a flavor")?;
        FlavorKeyword::parse(self.text(&t)).map_or_else(
            || self.fail(span_of(&t), format!("'{}' is not a flavor (EnableOverride, DisableOverride, ToSubclass, Restricted, Translatable)", self.text(&t))),
            Ok,
        )
    }

    fn qualifier_list(&mut self) -> PResult<Vec<QualifierUse>> {
        let mut out = Vec::new();
        if self.peek().kind != TokenKind::LBracket {
            return Ok(out);
        }
        self.bump();
        loop {
            let name = self.ident("a qualifier name")?;
            let value = match self.peek().kind {
                TokenKind::LParen => {
                    self.bump();
                    let v = self.value()?;
                    self.expect(TokenKind::RParen, "')' after the qualifier value")?;
                    Some(v)
                }
                TokenKind::LBrace => Some(self.value()?),
                _ => None,
            };
            let mut flavors = Vec::new();
            if self.peek().kind == TokenKind::Colon {
                self.bump();
                flavors.push(self.flavor()?);
                while self.peek().kind == TokenKind::Identifier {
                    flavors.push(self.flavor()?);
                }
            }
            out.push(QualifierUse {
                name,
                value,
                flavors,
            });
            let t = self.bump();
            match t.kind {
                TokenKind::Comma => continue,
                TokenKind::RBracket => return Ok(out),
                _ => return self.error_at(&t, "',' or ']' in the qualifier list"),
            }
        }
    }

    /// A data type, or `Class REF`.
    fn data_type(&mut self) -> PResult<TypeRef> {
        let t = self.expect(TokenKind::Identifier, "a type")?;
        let text = self.text(&t);
        let next = self.peek();
        if self.is_keyword(&next, "ref") {
            self.bump();
            return Ok(TypeRef::Ref(Ident {
                name: text.to_string(),
                span: span_of(&t),
            }));
        }
        match text.parse::<CimType>() {
            Ok(CimType::Reference) => self.fail(span_of(&t), "'ref' must follow a class name"),
            Ok(ty) => Ok(TypeRef::Data(ty)),
            Err(_) => self.fail(
                span_of(&t),
                format!("'{text}' is not a CIM data type (and no REF follows it)"),
            ),
        }
    }

    fn array_spec(&mut self) -> PResult<Option<ArraySpec>> {
        if self.peek().kind != TokenKind::LBracket {
            return Ok(None);
        }
        self.bump();
        let mut size = None;
        if self.peek().kind == TokenKind::Integer {
            let t = self.bump();
            size = match self.integer(&t)? {
                n @ 0..=0xffff_ffff => Some(n as u32),
                _ => return self.fail(span_of(&t), "array size out of range"),
            };
        }
        self.expect(TokenKind::RBracket, "']'")?;
        Ok(Some(ArraySpec { size }))
    }

    fn class_decl(&mut self, qualifiers: Vec<QualifierUse>) -> PResult<ClassDecl> {
        self.bump();
        let name = self.ident("a class name")?;
        let superclass = if self.peek().kind == TokenKind::Colon {
            self.bump();
            Some(self.ident("a superclass name")?)
        } else {
            None
        };
        self.expect(TokenKind::LBrace, "'{' to open the class body")?;
        let mut features = Vec::new();
        while self.peek().kind != TokenKind::RBrace {
            if self.peek().kind == TokenKind::Eof {
                return self.error_at(&self.peek(), "'}' to close the class body");
            }
            // A bad feature costs only itself: the rest of the class is still parsed and
            // checked, so one run reports the errors of every feature.
            let start = self.pos;
            match self.feature() {
                Ok(f) => features.push(f),
                Err(e) => {
                    self.errors.push(e);
                    self.skip_feature(start);
                }
            }
        }
        self.bump();
        self.expect(TokenKind::Semicolon, "';' after the class body")?;
        Ok(ClassDecl {
            qualifiers,
            name,
            superclass,
            features,
        })
    }

    /// Skips a feature that failed to parse: from its first token to its `;`, or to the `}`
    /// that closes the class body.
    fn skip_feature(&mut self, start: usize) {
        self.pos = start;
        let mut depth = 0usize;
        loop {
            match self.peek().kind {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::Semicolon if depth == 0 => {
                    self.bump();
                    return;
                }
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    fn feature(&mut self) -> PResult<Feature> {
        let qualifiers = self.qualifier_list()?;
        let ty = self.data_type()?;
        let name = self.ident("a property or method name")?;
        if self.peek().kind == TokenKind::LParen {
            self.bump();
            let mut parameters = Vec::new();
            if self.peek().kind != TokenKind::RParen {
                loop {
                    let qualifiers = self.qualifier_list()?;
                    let ty = self.data_type()?;
                    let name = self.ident("a parameter name")?;
                    let array = self.array_spec()?;
                    parameters.push(ParameterDecl {
                        qualifiers,
                        ty,
                        name,
                        array,
                    });
                    if self.peek().kind != TokenKind::Comma {
                        break;
                    }
                    self.bump();
                }
            }
            self.expect(TokenKind::RParen, "',' or ')' in the parameter list")?;
            self.expect(TokenKind::Semicolon, "';' after the method")?;
            return Ok(Feature::Method(MethodDecl {
                qualifiers,
                return_type: ty,
                name,
                parameters,
            }));
        }
        let array = self.array_spec()?;
        let default = if self.peek().kind == TokenKind::Equals {
            self.bump();
            Some(self.value()?)
        } else {
            None
        };
        self.expect(TokenKind::Semicolon, "';' after the property")?;
        Ok(Feature::Property(PropertyDecl {
            qualifiers,
            ty,
            name,
            array,
            default,
        }))
    }

    fn instance_decl(&mut self) -> PResult<InstanceDecl> {
        let first = self.bump();
        self.expect_keyword("of")?;
        let class = self.ident("a class name")?;
        let alias = if self.is_keyword(&self.peek(), "as") {
            self.bump();
            let t = self.expect(TokenKind::Alias, "an alias ($name)")?;
            Some(Ident {
                name: self.text(&t)[1..].to_string(),
                span: span_of(&t),
            })
        } else {
            None
        };
        self.expect(TokenKind::LBrace, "'{' to open the instance body")?;
        let mut values = Vec::new();
        while self.peek().kind != TokenKind::RBrace {
            // DSP0221 2.x allows qualifiers on instance property values; they are ignored.
            self.qualifier_list()?;
            let name = self.ident("a property name")?;
            self.expect(TokenKind::Equals, "'='")?;
            let value = self.value()?;
            self.expect(TokenKind::Semicolon, "';' after the value")?;
            values.push(PropertyValue { name, value });
        }
        let last = self.bump();
        Ok(InstanceDecl {
            class,
            alias,
            values,
            span: Span {
                start: first.start,
                end: last.end,
            },
        })
    }

    /// A constant, array, alias or embedded instance, with its span.
    fn value(&mut self) -> PResult<(Literal, Span)> {
        let t = self.peek();
        if t.kind == TokenKind::LBrace {
            self.bump();
            let mut items = Vec::new();
            if self.peek().kind != TokenKind::RBrace {
                loop {
                    let item = self.scalar()?;
                    if let Literal::Instance(_) = item.0 {
                    } else if let Literal::Array(_) = item.0 {
                        return self.fail(item.1, "arrays cannot contain arrays");
                    }
                    items.push(item);
                    if self.peek().kind != TokenKind::Comma {
                        break;
                    }
                    self.bump();
                }
            }
            let close = self.expect(TokenKind::RBrace, "',' or '}' in the array")?;
            return Ok((
                Literal::Array(items),
                Span {
                    start: t.start,
                    end: close.end,
                },
            ));
        }
        self.scalar()
    }

    fn scalar(&mut self) -> PResult<(Literal, Span)> {
        let t = self.bump();
        let span = span_of(&t);
        let lit = match t.kind {
            TokenKind::Integer => Literal::Integer(self.integer(&t)?),
            TokenKind::Real => match self.text(&t).parse::<f64>() {
                Ok(r) if r.is_finite() => Literal::Real(r),
                _ => return self.fail(span, format!("'{}' is not a real number", self.text(&t))),
            },
            TokenKind::String => {
                let mut s = self.string_value(&t)?.into_owned();
                let mut end = t.end;
                while self.peek().kind == TokenKind::String {
                    let next = self.bump();
                    s.push_str(&self.string_value(&next)?);
                    end = next.end;
                }
                return Ok((
                    Literal::String(s.into()),
                    Span {
                        start: t.start,
                        end,
                    },
                ));
            }
            TokenKind::Char => {
                let body = self.unescape(&t)?;
                let mut chars = body.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if (c as u32) <= 0xffff => Literal::Char(c),
                    _ => {
                        return self
                            .fail(span, "a char16 literal holds exactly one UCS-2 character")
                    }
                }
            }
            TokenKind::Alias => Literal::Alias(self.text(&t)[1..].to_string()),
            TokenKind::Identifier => {
                let text = self.text(&t);
                if text.eq_ignore_ascii_case("true") {
                    Literal::Boolean(true)
                } else if text.eq_ignore_ascii_case("false") {
                    Literal::Boolean(false)
                } else if text.eq_ignore_ascii_case("null") {
                    Literal::Null
                } else if text.eq_ignore_ascii_case("instance") {
                    if self.depth >= MAX_VALUE_DEPTH {
                        return self.fail(span, "embedded instances nested too deeply");
                    }
                    self.pos -= 1;
                    self.depth += 1;
                    let inst = self.instance_decl();
                    self.depth -= 1;
                    let inst = inst?;
                    let span = inst.span;
                    return Ok((Literal::Instance(Box::new(inst)), span));
                } else {
                    return self.error_at(&t, "a value");
                }
            }
            _ => return self.error_at(&t, "a value"),
        };
        Ok((lit, span))
    }

    fn integer(&self, t: &Token) -> PResult<i128> {
        let text = self.text(t);
        let span = span_of(t);
        let (neg, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let parsed = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X"))
        {
            u128::from_str_radix(hex, 16).ok()
        } else if let Some(bin) = body.strip_suffix(['b', 'B']) {
            if bin.bytes().all(|b| b == b'0' || b == b'1') && !bin.is_empty() {
                u128::from_str_radix(bin, 2).ok()
            } else {
                None
            }
        } else if body.len() > 1 && body.starts_with('0') {
            u128::from_str_radix(&body[1..], 8).ok()
        } else if body.bytes().all(|b| b.is_ascii_digit()) {
            body.parse::<u128>().ok()
        } else {
            None
        };
        let digits_ok = body
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'x' | b'X' | b'b' | b'B'));
        let Some(magnitude) = parsed else {
            return if digits_ok && body.len() > 20 {
                self.fail(
                    span,
                    format!("integer literal '{text}' does not fit in 64 bits"),
                )
            } else {
                self.fail(
                    span,
                    format!("'{text}' is not an integer (decimal, 0x hex, 0 octal or b binary)"),
                )
            };
        };
        let value = if neg {
            -(magnitude as i128)
        } else {
            magnitude as i128
        };
        if magnitude > u64::MAX as u128 || value < i64::MIN as i128 {
            return self.fail(
                span,
                format!("integer literal '{text}' does not fit in 64 bits"),
            );
        }
        Ok(value)
    }

    fn string_value(&self, t: &Token) -> PResult<Cow<'s, str>> {
        self.unescape(t)
    }

    /// Decodes the body of a string or char token.
    fn unescape(&self, t: &Token) -> PResult<Cow<'s, str>> {
        let text = self.text(t);
        let body = &text[1..text.len() - 1];
        if !body.contains('\\') {
            return Ok(Cow::Borrowed(body));
        }
        let mut out = String::with_capacity(body.len());
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let esc_span = Span {
                start: t.start + 1 + i as u32,
                end: t.start + 3 + i as u32,
            };
            match chars.next().map(|(_, e)| e) {
                Some('b') => out.push('\u{8}'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('f') => out.push('\u{c}'),
                Some('r') => out.push('\r'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some('\\') => out.push('\\'),
                Some('x') | Some('X') => {
                    let rest = &body[i + 2..];
                    let n = rest
                        .bytes()
                        .take(4)
                        .take_while(u8::is_ascii_hexdigit)
                        .count();
                    let code = u32::from_str_radix(&rest[..n], 16)
                        .ok()
                        .and_then(char::from_u32);
                    match code {
                        Some(c) if n > 0 => out.push(c),
                        _ => {
                            return self.fail(
                                esc_span,
                                "'\\x' must be followed by 1 to 4 hex digits of a valid character",
                            )
                        }
                    }
                    for _ in 0..n {
                        chars.next();
                    }
                }
                _ => {
                    return self.fail(
                        esc_span,
                        "unknown escape (use \\b \\t \\n \\f \\r \\\" \\' \\\\ or \\xHHHH)",
                    )
                }
            }
        }
        Ok(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Production {
        let (mut p, e) = parse(src);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 1);
        p.remove(0)
    }

    #[test]
    fn class_with_every_kind_of_feature() {
        let Production::Class(c) = one(r#"
            [Association, Description("a" " b")]
            class X_A : X_Base {
                [Key] X_Thing REF Left;
                uint16 States[] = {2, 0x3, 010, 11b};
                real64 R = -1.5e3;
                char16 C = '\x41';
                [Static] uint32 Go([IN, OUT] string S[], X_Thing ref T);
            };"#)
        else {
            panic!()
        };
        assert_eq!(c.name.name, "X_A");
        assert_eq!(
            c.qualifiers[1].value.as_ref().unwrap().0,
            Literal::String("a b".into())
        );
        assert_eq!(c.features.len(), 5);
        let Feature::Property(states) = &c.features[1] else {
            panic!()
        };
        let Some((Literal::Array(items), _)) = &states.default else {
            panic!()
        };
        let ints: Vec<_> = items.iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(
            ints,
            vec![
                Literal::Integer(2),
                Literal::Integer(3),
                Literal::Integer(8),
                Literal::Integer(3)
            ]
        );
        let Feature::Property(ch) = &c.features[3] else {
            panic!()
        };
        assert_eq!(ch.default.as_ref().unwrap().0, Literal::Char('A'));
        let Feature::Method(m) = &c.features[4] else {
            panic!()
        };
        assert_eq!(m.parameters.len(), 2);
        assert!(matches!(m.parameters[1].ty, TypeRef::Ref(_)));
    }

    #[test]
    fn qualifier_declaration() {
        let Production::Qualifier(q) = one("Qualifier Values : string[], Scope(property, method), Flavor(EnableOverride, Translatable);") else { panic!() };
        assert_eq!(q.ty, CimType::String);
        assert!(q.array.is_some());
        assert_eq!(q.scope, Scope::PROPERTY.union(Scope::METHOD));
        assert_eq!(q.flavors.len(), 2);
    }

    #[test]
    fn instances_with_aliases_and_embedded_values() {
        let Production::Instance(i) =
            one(r#"instance of X as $a { P = $b; E = instance of Y { Q = 1; }; N = null; };"#)
        else {
            panic!()
        };
        assert_eq!(i.alias.unwrap().name, "a");
        assert_eq!(i.values[0].value.0, Literal::Alias("b".into()));
        assert!(matches!(i.values[1].value.0, Literal::Instance(_)));
        assert_eq!(i.values[2].value.0, Literal::Null);
    }

    #[test]
    fn several_errors_are_reported() {
        let (p, e) = parse("class A { uint8 x }; class B {}; class C { foo y; }; class D {};");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].message.contains("expected ';'"), "{}", e[0].message);
        assert!(
            e[1].message.contains("'foo' is not a CIM data type"),
            "{}",
            e[1].message
        );
        // Each class survives the loss of its bad feature.
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn bad_literals() {
        for (src, msg) in [
            (
                "class A { uint64 x = 99999999999999999999999; };",
                "does not fit in 64 bits",
            ),
            ("class A { string x = \"\\q\"; };", "unknown escape"),
            ("class A { uint8 x = 12b; };", "is not an integer"),
            ("class A { char16 x = 'ab'; };", "exactly one"),
            ("class A { uint8 x[] = {{1}}; };", "a value"),
        ] {
            let (_, e) = parse(src);
            assert!(e.iter().any(|e| e.message.contains(msg)), "{src}: {e:?}");
        }
    }

    #[test]
    fn deep_embedded_instances_are_an_error() {
        let mut src = String::from("instance of A { P = ");
        for _ in 0..100 {
            src.push_str("instance of A { P = ");
        }
        src.push('1');
        let (_, e) = parse(&src);
        assert!(
            e.iter().any(|e| e.message.contains("nested too deeply")),
            "{e:?}"
        );
    }
}
