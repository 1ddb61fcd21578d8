//! The query parser: WQL SELECT statements and DMTF:FQL conditions into expressions.

use cim_schema::Name;

use super::lex::{lex, query_error, Kind, Token};
use super::{CompareOp, Expr, Language, Operand, Query};
use crate::error::CimError;
use std::fmt;

/// Deepest nesting of parentheses and NOT; with [`MAX_TOKENS`], this bounds the depth of
/// the expression tree, which is parsed, evaluated and dropped recursively.
const MAX_NESTING: usize = 64;
/// Longest query, in tokens.
const MAX_TOKENS: usize = 4096;

/// Parses `text` in `language` (see [`Query::parse`]).
pub(super) fn parse(language: Language, text: &str) -> Result<Query, CimError> {
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
