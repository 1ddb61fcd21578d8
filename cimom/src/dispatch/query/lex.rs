//! The query lexer: identifiers, strings, numbers, operators, with byte positions.

use std::fmt;

use crate::error::{CimError, StatusCode};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
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

pub(super) struct Token {
    pub(super) kind: Kind,
    /// Byte offset in the query text.
    pub(super) pos: usize,
}

pub(super) fn query_error(pos: usize, message: impl fmt::Display) -> CimError {
    CimError::new(
        StatusCode::InvalidQuery,
        format!("invalid query at position {pos}: {message}"),
    )
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, CimError> {
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
            b'*' | b',' | b'(' | b')' | b'=' => {
                i += 1;
                match c {
                    b'*' => Kind::Star,
                    b',' => Kind::Comma,
                    b'(' => Kind::LParen,
                    b')' => Kind::RParen,
                    _ => Kind::Op("="),
                }
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
