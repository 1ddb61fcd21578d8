//! Query languages: WQL (`SELECT ... FROM ... WHERE ...`) for ExecQuery and
//! OpenQueryInstances, and DMTF:FQL (a bare WHERE-clause expression) as the filter
//! language of the pull operations. Both parse into one expression tree and evaluate
//! against instances.

use std::cmp::Ordering;
use std::fmt;

use cim_schema::{Instance, Name, ObjectPath, Value};

use crate::error::{CimError, StatusCode};

/// A supported query language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// WQL, as WMI and OpenPegasus define it.
    Wql,
    /// DMTF:FQL (DSP0212): the filter expression of pull operations.
    Fql,
}

impl Language {
    /// Recognises a QueryLanguage / FilterQueryLanguage parameter, ignoring case.
    pub fn parse(name: &str) -> Result<Self, CimError> {
        if name.eq_ignore_ascii_case("WQL") {
            Ok(Language::Wql)
        } else if name.eq_ignore_ascii_case("DMTF:FQL") {
            Ok(Language::Fql)
        } else {
            Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                format!("query language '{name}' is not supported; use WQL or DMTF:FQL"),
            ))
        }
    }
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The selected properties; `None` for `*` (and always for FQL).
    pub select: Option<Vec<Name>>,
    /// The FROM class (WQL only).
    pub from: Option<Name>,
    /// The WHERE condition, if any.
    pub condition: Option<Expr>,
}

/// A condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Does not hold.
    Not(Box<Expr>),
    /// `a op b`.
    Compare(Operand, CompareOp, Operand),
    /// `p IS NULL` (`negated`: IS NOT NULL).
    IsNull {
        /// The property.
        property: Name,
        /// IS NOT NULL.
        negated: bool,
    },
    /// `p LIKE 'pattern'` (WQL wildcards `%`, `_`, `[set]`).
    Like {
        /// The property.
        property: Name,
        /// The pattern.
        pattern: String,
        /// NOT LIKE.
        negated: bool,
    },
    /// `p ISA Class`: an embedded instance or reference of that class or a subclass.
    Isa {
        /// The property.
        property: Name,
        /// The class.
        class: Name,
    },
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A property of the instance.
    Property(Name),
    /// A string literal.
    String(String),
    /// An integer literal.
    Integer(i128),
    /// A real literal.
    Real(f64),
    /// TRUE or FALSE.
    Boolean(bool),
    /// NULL.
    Null,
}

impl Query {
    /// Parses `text` in `language`.
    pub fn parse(language: Language, text: &str) -> Result<Query, CimError> {
        let tokens = lex(text)?;
        if tokens.len() > MAX_TOKENS {
            return Err(query_error(
                tokens[MAX_TOKENS].pos,
                format!("the query is longer than {MAX_TOKENS} tokens"),
            ));
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            text_len: text.len(),
            language,
            depth: 0,
        };
        let q = match language {
            Language::Wql => p.select()?,
            Language::Fql => Query {
                select: None,
                from: None,
                condition: Some(p.expr()?),
            },
        };
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(p.error_at(t.pos, format!("unexpected {}", t.kind)));
        }
        Ok(q)
    }

    /// Every property the query names, to check against the class.
    pub fn properties(&self) -> Vec<&Name> {
        let mut out: Vec<&Name> = self.select.iter().flatten().collect();
        if let Some(c) = &self.condition {
            c.properties(&mut out);
        }
        out
    }

    /// Whether `inst` satisfies the WHERE condition. `is_a(class, ancestor)` answers ISA.
    pub fn matches(&self, inst: &Instance, is_a: &dyn Fn(&str, &str) -> bool) -> bool {
        self.condition
            .as_ref()
            .is_none_or(|c| c.eval(inst, is_a) == Some(true))
    }
}

impl Expr {
    fn properties<'a>(&'a self, out: &mut Vec<&'a Name>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.properties(out);
                b.properties(out);
            }
            Expr::Not(a) => a.properties(out),
            Expr::Compare(a, _, b) => {
                for o in [a, b] {
                    if let Operand::Property(n) = o {
                        out.push(n);
                    }
                }
            }
            Expr::IsNull { property, .. }
            | Expr::Like { property, .. }
            | Expr::Isa { property, .. } => out.push(property),
        }
    }

    /// Three-valued evaluation: `None` is SQL's unknown (a comparison with NULL).
    fn eval(&self, inst: &Instance, is_a: &dyn Fn(&str, &str) -> bool) -> Option<bool> {
        match self {
            Expr::And(a, b) => match (a.eval(inst, is_a), b.eval(inst, is_a)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (a.eval(inst, is_a), b.eval(inst, is_a)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Not(a) => a.eval(inst, is_a).map(|v| !v),
            Expr::IsNull { property, negated } => {
                Some(inst.get(property.as_str()).is_none() != *negated)
            }
            Expr::Like {
                property,
                pattern,
                negated,
            } => {
                let v = inst.get(property.as_str())?;
                let s = match v {
                    Value::String(s) => s.to_string(),
                    Value::Char16(c) => c.to_string(),
                    _ => return Some(false),
                };
                Some(like(&s, pattern) != *negated)
            }
            Expr::Isa { property, class } => match inst.get(property.as_str())? {
                Value::Instance(e) => Some(is_a(e.class_name.as_str(), class.as_str())),
                Value::Reference(p) => Some(is_a(p.class_name.as_str(), class.as_str())),
                _ => Some(false),
            },
            Expr::Compare(a, op, b) => {
                let a = resolve(a, inst)?;
                let b = resolve(b, inst)?;
                let ord = compare(&a, &b)?;
                Some(match op {
                    CompareOp::Eq => ord == Ordering::Equal,
                    CompareOp::Ne => ord != Ordering::Equal,
                    CompareOp::Lt => ord == Ordering::Less,
                    CompareOp::Le => ord != Ordering::Greater,
                    CompareOp::Gt => ord == Ordering::Greater,
                    CompareOp::Ge => ord != Ordering::Less,
                })
            }
        }
    }
}

/// A value taking part in a comparison.
enum Scalar {
    Str(String),
    Int(i128),
    Real(f64),
    Bool(bool),
    Path(ObjectPath),
}

fn resolve(o: &Operand, inst: &Instance) -> Option<Scalar> {
    Some(match o {
        Operand::Property(n) => match inst.get(n.as_str())? {
            Value::String(s) => Scalar::Str(s.to_string()),
            Value::Char16(c) => Scalar::Str(c.to_string()),
            Value::Boolean(b) => Scalar::Bool(*b),
            Value::Real32(r) => Scalar::Real(f64::from(*r)),
            Value::Real64(r) => Scalar::Real(*r),
            Value::DateTime(d) => Scalar::Str(d.to_string()),
            Value::Reference(p) => Scalar::Path(p.clone()),
            v => Scalar::Int(v.as_i128()?),
        },
        Operand::String(s) => Scalar::Str(s.clone()),
        Operand::Integer(i) => Scalar::Int(*i),
        Operand::Real(r) => Scalar::Real(*r),
        Operand::Boolean(b) => Scalar::Bool(*b),
        Operand::Null => return None,
    })
}

fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    use Scalar::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(x), Real(y)) => (*x as f64).partial_cmp(y),
        (Real(x), Int(y)) => x.partial_cmp(&(*y as f64)),
        (Real(x), Real(y)) => x.partial_cmp(y),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        // Strings compare by code point; so do datetimes, whose fixed-width form orders
        // correctly for one UTC offset.
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Path(p), Str(s)) | (Str(s), Path(p)) => {
            let other = ObjectPath::parse(s).ok()?;
            Some(if p.local() == other.local() {
                Ordering::Equal
            } else {
                Ordering::Less
            })
        }
        (Path(x), Path(y)) => Some(if x == y {
            Ordering::Equal
        } else {
            Ordering::Less
        }),
        _ => None,
    }
}

/// One element of a LIKE pattern.
#[derive(Debug, PartialEq)]
enum PatternToken {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    /// `[...]`: one character in (or, negated, not in) the set of chars and ranges.
    Set {
        items: Vec<(char, char)>,
        negated: bool,
    },
    /// A literal character.
    Literal(char),
}

impl PatternToken {
    fn matches(&self, c: char) -> bool {
        match self {
            PatternToken::Any => false,
            PatternToken::One => true,
            PatternToken::Set { items, negated } => {
                items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
            PatternToken::Literal(l) => *l == c,
        }
    }
}

fn pattern_tokens(pattern: &str) -> Vec<PatternToken> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '%' => out.push(PatternToken::Any),
            '_' => out.push(PatternToken::One),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) => {
                    let mut set = &chars[i + 1..i + 1 + len];
                    let negated = set.first() == Some(&'^');
                    if negated {
                        set = &set[1..];
                    }
                    let mut items = Vec::new();
                    let mut k = 0;
                    while k < set.len() {
                        if k + 2 < set.len() && set[k + 1] == '-' {
                            items.push((set[k], set[k + 2]));
                            k += 3;
                        } else {
                            items.push((set[k], set[k]));
                            k += 1;
                        }
                    }
                    out.push(PatternToken::Set { items, negated });
                    i += len + 1;
                }
                None => out.push(PatternToken::Literal('[')),
            },
            c => out.push(PatternToken::Literal(c)),
        }
        i += 1;
    }
    out
}

/// WQL LIKE: `%` any run, `_` one character, `[abc]`, `[a-z]`, `[^x]` sets. Matching
/// backtracks only to the last `%`, so it takes at most length × pattern steps whatever
/// the pattern (a naive recursive matcher is exponential in the number of `%`).
pub fn like(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p = pattern_tokens(pattern);
    let (mut si, mut pi) = (0, 0);
    let mut last_any: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == PatternToken::Any {
            last_any = Some((pi + 1, si));
            pi += 1;
        } else if pi < p.len() && p[pi].matches(s[si]) {
            si += 1;
            pi += 1;
        } else if let Some((after, start)) = last_any {
            // Let the last % take one more character and retry from there.
            last_any = Some((after, start + 1));
            pi = after;
            si = start + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == PatternToken::Any)
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Ident(String),
    Str(String),
    Int(i128),
    Real(f64),
    Op(&'static str),
    Star,
    Comma,
    LParen,
    RParen,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Ident(s) => write!(f, "'{s}'"),
            Kind::Str(s) => write!(f, "string '{s}'"),
            Kind::Int(i) => write!(f, "number {i}"),
            Kind::Real(r) => write!(f, "number {r}"),
            Kind::Op(o) => write!(f, "'{o}'"),
            Kind::Star => f.write_str("'*'"),
            Kind::Comma => f.write_str("','"),
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
        }
    }
}

struct Token {
    kind: Kind,
    pos: usize,
}

fn query_error(pos: usize, message: impl fmt::Display) -> CimError {
    CimError::new(
        StatusCode::InvalidQuery,
        format!("invalid query at position {pos}: {message}"),
    )
}

fn lex(text: &str) -> Result<Vec<Token>, CimError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'*' => {
                i += 1;
                Kind::Star
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'(' => {
                i += 1;
                Kind::LParen
            }
            b')' => {
                i += 1;
                Kind::RParen
            }
            b'=' => {
                i += 1;
                Kind::Op("=")
            }
            b'<' | b'>' | b'!' => {
                let two = text.get(i..i + 2).unwrap_or("");
                let op = match two {
                    "<=" => "<=",
                    ">=" => ">=",
                    "<>" => "<>",
                    "!=" => "!=",
                    _ if c == b'<' => "<",
                    _ if c == b'>' => ">",
                    _ => return Err(query_error(i, "'!' must be followed by '='")),
                };
                i += op.len();
                Kind::Op(op)
            }
            b'\'' | b'"' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(ch) = text[i..].chars().next() else {
                        return Err(query_error(start, "unterminated string"));
                    };
                    i += ch.len_utf8();
                    if ch as u32 == quote as u32 {
                        // A doubled quote stands for one quote character.
                        if bytes.get(i) == Some(&quote) {
                            s.push(ch);
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    if ch == '\\' {
                        if let Some(next) = text[i..].chars().next() {
                            s.push(next);
                            i += next.len_utf8();
                            continue;
                        }
                    }
                    s.push(ch);
                }
                Kind::Str(s)
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || bytes[j] == b'.'
                        || ((bytes[j] == b'-' || bytes[j] == b'+')
                            && matches!(bytes[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let word = &text[i..j];
                i = j;
                if let Ok(n) = word.parse::<i128>() {
                    Kind::Int(n)
                } else if let Some(n) = word
                    .strip_prefix("0x")
                    .and_then(|h| i128::from_str_radix(h, 16).ok())
                {
                    Kind::Int(n)
                } else if let Ok(r) = word.parse::<f64>() {
                    Kind::Real(r)
                } else {
                    return Err(query_error(start, format!("'{word}' is not a number")));
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] >= 0x80)
                {
                    j += 1;
                }
                let word = text[i..j].to_string();
                i = j;
                Kind::Ident(word)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(query_error(i, format!("unexpected character '{ch}'")));
            }
        };
        out.push(Token { kind, pos: start });
    }
    Ok(out)
}

/// Deepest nesting of parentheses and NOT; with [`MAX_TOKENS`], this bounds the depth of
/// the expression tree, which is parsed, evaluated and dropped recursively.
const MAX_NESTING: usize = 64;
/// Longest query, in tokens.
const MAX_TOKENS: usize = 4096;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    text_len: usize,
    language: Language,
    depth: usize,
}

impl Parser {
    fn error_at(&self, pos: usize, message: impl fmt::Display) -> CimError {
        query_error(pos, message)
    }

    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.text_len, |t| t.pos)
    }

    fn peek(&self) -> Option<&Kind> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Kind::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let hit = self.is_keyword(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), CimError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn unexpected(&self, wanted: &str) -> CimError {
        match self.peek() {
            Some(k) => self.error_at(self.here(), format!("expected {wanted}, found {k}")),
            None => self.error_at(
                self.here(),
                format!("expected {wanted} at the end of the query"),
            ),
        }
    }

    fn ident(&mut self, what: &str) -> Result<Name, CimError> {
        match self.peek() {
            Some(Kind::Ident(w)) if !is_reserved(w) => {
                let n = Name::new(w);
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn select(&mut self) -> Result<Query, CimError> {
        self.expect_keyword("SELECT")?;
        let select = if self.peek() == Some(&Kind::Star) {
            self.pos += 1;
            None
        } else {
            let mut props = vec![self.ident("a property name or '*'")?];
            while self.peek() == Some(&Kind::Comma) {
                self.pos += 1;
                props.push(self.ident("a property name")?);
            }
            Some(props)
        };
        self.expect_keyword("FROM")?;
        let from = self.ident("a class name")?;
        let condition = if self.eat_keyword("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Query {
            select,
            from: Some(from),
            condition,
        })
    }

    fn expr(&mut self) -> Result<Expr, CimError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, CimError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, CimError> {
        if self.is_keyword("NOT") || self.peek() == Some(&Kind::LParen) {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(self.error_at(
                    self.here(),
                    format!("parentheses and NOT are nested deeper than {MAX_NESTING}"),
                ));
            }
            let e = self.nested();
            self.depth -= 1;
            return e;
        }
        self.predicate()
    }

    fn nested(&mut self) -> Result<Expr, CimError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.pos += 1; // the '('
        let e = self.expr()?;
        if self.peek() != Some(&Kind::RParen) {
            return Err(self.unexpected("')'"));
        }
        self.pos += 1;
        Ok(e)
    }

    fn operand(&mut self) -> Result<Operand, CimError> {
        let op = match self.peek() {
            Some(Kind::Str(s)) => Operand::String(s.clone()),
            Some(Kind::Int(i)) => Operand::Integer(*i),
            Some(Kind::Real(r)) => Operand::Real(*r),
            Some(Kind::Ident(w)) if w.eq_ignore_ascii_case("TRUE") => Operand::Boolean(true),
            Some(Kind::Ident(w)) if w.eq_ignore_ascii_case("FALSE") => Operand::Boolean(false),
            Some(Kind::Ident(w)) if w.eq_ignore_ascii_case("NULL") => Operand::Null,
            Some(Kind::Ident(w)) if !is_reserved(w) => Operand::Property(Name::new(w)),
            _ => return Err(self.unexpected("a property name or a literal")),
        };
        self.pos += 1;
        Ok(op)
    }

    fn predicate(&mut self) -> Result<Expr, CimError> {
        let start = self.here();
        let left = self.operand()?;
        let property = |p: &Parser| match &left {
            Operand::Property(n) => Ok(n.clone()),
            _ => Err(p.error_at(start, "the left side must be a property name")),
        };
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            self.expect_keyword("NULL")?;
            return Ok(Expr::IsNull {
                property: property(self)?,
                negated,
            });
        }
        let negated = self.eat_keyword("NOT");
        if self.is_keyword("LIKE") {
            if self.language == Language::Fql {
                return Err(self.error_at(self.here(), "LIKE is not supported in DMTF:FQL filters"));
            }
            self.pos += 1;
            let pattern = match self.peek() {
                Some(Kind::Str(s)) => s.clone(),
                _ => return Err(self.unexpected("a pattern string")),
            };
            self.pos += 1;
            return Ok(Expr::Like {
                property: property(self)?,
                pattern,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected("LIKE"));
        }
        if self.eat_keyword("ISA") {
            let class = match self.peek() {
                Some(Kind::Str(s)) => Name::new(s),
                Some(Kind::Ident(w)) => Name::new(w),
                _ => return Err(self.unexpected("a class name")),
            };
            self.pos += 1;
            return Ok(Expr::Isa {
                property: property(self)?,
                class,
            });
        }
        let op = match self.peek() {
            Some(Kind::Op(o)) => match *o {
                "=" => CompareOp::Eq,
                "<>" | "!=" => CompareOp::Ne,
                "<" => CompareOp::Lt,
                "<=" => CompareOp::Le,
                ">" => CompareOp::Gt,
                _ => CompareOp::Ge,
            },
            _ => return Err(self.unexpected("a comparison operator, IS, LIKE or ISA")),
        };
        self.pos += 1;
        let right = self.operand()?;
        if !matches!(left, Operand::Property(_)) && !matches!(right, Operand::Property(_)) {
            return Err(self.error_at(start, "a comparison needs at least one property"));
        }
        Ok(Expr::Compare(left, op, right))
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IS", "LIKE", "ISA", "NULL", "TRUE", "FALSE",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> Instance {
        let mut i = Instance::new("KVM_ComputerSystem");
        i.set("Name", "vm-web1");
        i.set("EnabledState", Value::UInt16(2));
        i.set("Dedicated", Value::Array(vec![Some(Value::UInt16(1))]));
        i.set("Caption", Value::String("x".into()));
        i.properties.get_mut("Caption").unwrap().value = None;
        i
    }

    fn eval(q: &str) -> bool {
        Query::parse(Language::Wql, q)
            .unwrap()
            .matches(&inst(), &|a, b| a.eq_ignore_ascii_case(b))
    }

    #[test]
    fn wql_selects_and_filters() {
        let q = Query::parse(
            Language::Wql,
            "select Name, EnabledState from KVM_ComputerSystem",
        )
        .unwrap();
        assert_eq!(q.select.unwrap().len(), 2);
        assert!(eval("SELECT * FROM C WHERE EnabledState = 2"));
        assert!(eval(
            "SELECT * FROM C WHERE EnabledState >= 2 AND Name <> 'x'"
        ));
        assert!(!eval(
            "SELECT * FROM C WHERE NOT (EnabledState = 2 OR Name = 'y')"
        ));
        assert!(eval("SELECT * FROM C WHERE Name LIKE 'vm-%1'"));
        assert!(eval("SELECT * FROM C WHERE Name LIKE '[a-v]m_web[0-9]'"));
        assert!(!eval("SELECT * FROM C WHERE Name NOT LIKE 'vm%'"));
        assert!(eval(
            "SELECT * FROM C WHERE Caption IS NULL AND Name IS NOT NULL"
        ));
        // Comparisons with NULL are unknown, so neither they nor their negation hold.
        assert!(!eval("SELECT * FROM C WHERE Caption = 'x'"));
        assert!(!eval("SELECT * FROM C WHERE NOT Caption = 'x'"));
        assert!(eval("SELECT * FROM C WHERE 3 > EnabledState"));
        let mut with_ref = inst();
        with_ref.set(
            "Owner",
            Value::Reference(ObjectPath::class(None, "KVM_ComputerSystem").with_key("Name", "x")),
        );
        let isa = |q: &str| {
            Query::parse(Language::Wql, q)
                .unwrap()
                .matches(&with_ref, &|a, b| a == b || b == "CIM_System")
        };
        assert!(isa("SELECT * FROM C WHERE Owner ISA CIM_System"));
        assert!(isa("SELECT * FROM C WHERE Owner ISA 'KVM_ComputerSystem'"));
        assert!(!isa("SELECT * FROM C WHERE Owner ISA CIM_Job"));
        assert!(!isa("SELECT * FROM C WHERE Name ISA CIM_System"));
    }

    #[test]
    fn like_matches_in_polynomial_time() {
        assert!(like("abc", "a%c") && like("abc", "%") && like("", "%") && !like("", "_"));
        assert!(like("a[c", "a[c") && like("x-y", "x[-]y") && !like("abc", "a[^b]c"));
        assert!(like("aXb", "a[W-Z]b") && !like("ab", "a%c") && like("acbc", "a%bc"));
        // 40 wildcards against a 200-character string that almost matches: exponential
        // for a recursive matcher, instant here.
        let s = "a".repeat(200);
        assert!(!like(&s, &format!("{}b", "%a".repeat(40))));
        assert!(like(&s, &"%a".repeat(40)));
    }

    #[test]
    fn errors_give_the_position() {
        let e = Query::parse(Language::Wql, "SELECT * FRM C").unwrap_err();
        assert_eq!(e.code, StatusCode::InvalidQuery);
        assert!(e.description.contains("position 9"), "{}", e.description);
        let e = Query::parse(Language::Wql, "SELECT * FROM C WHERE Name = 'x").unwrap_err();
        assert!(e.description.contains("position 29"), "{}", e.description);
        let e = Query::parse(Language::Wql, "SELECT * FROM C WHERE 1 = 2").unwrap_err();
        assert!(e.description.contains("position 22"), "{}", e.description);
        assert_eq!(
            Language::parse("CQL").unwrap_err().code,
            StatusCode::QueryLanguageNotSupported
        );
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}a = 1{}", "(".repeat(65), ")".repeat(65));
        let e = Query::parse(Language::Fql, &deep).unwrap_err();
        assert!(
            e.description.contains("nested deeper than 64"),
            "{}",
            e.description
        );
        assert!(Query::parse(
            Language::Fql,
            &format!("{}a = 1{}", "(".repeat(64), ")".repeat(64))
        )
        .is_ok());
        let nots = format!("{}a = 1", "NOT ".repeat(100));
        assert!(Query::parse(Language::Fql, &nots).is_err());
        let long = vec!["a = 1"; 2000].join(" AND ");
        let e = Query::parse(Language::Fql, &long).unwrap_err();
        assert!(
            e.description.contains("longer than 4096 tokens"),
            "{}",
            e.description
        );
        let ok = vec!["a = 1"; 1000].join(" OR ");
        assert!(Query::parse(Language::Fql, &ok).is_ok());
    }

    #[test]
    fn fql_is_a_bare_condition() {
        let q = Query::parse(Language::Fql, "EnabledState = 2 AND Name = \"vm-web1\"").unwrap();
        assert!(q.matches(&inst(), &|_, _| false));
        assert!(Query::parse(Language::Fql, "Name LIKE 'x'").is_err());
    }
}
