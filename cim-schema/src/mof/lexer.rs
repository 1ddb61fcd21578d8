//! The MOF lexer (DSP0221): bytes in, tokens with byte spans out. Literals are not decoded
//! here; the parser asks for the value of the few tokens it keeps, so lexing stays a single
//! cheap pass over the source.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An identifier or keyword (keywords are recognised by the parser, ignoring case).
    Identifier,
    /// `$name`
    Alias,
    /// `"..."`, escapes not yet decoded.
    String,
    /// `'c'`
    Char,
    /// Decimal, hex (`0x1F`), octal (`017`) or binary (`101b`), with an optional sign.
    Integer,
    /// `1.5`, `-.5e3`
    Real,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `;`
    Semicolon,
    /// `:`
    Colon,
    /// `,`
    Comma,
    /// `=`
    Equals,
    /// `#`
    Hash,
    /// End of input.
    Eof,
    /// Something that is not a token; `Token::error` says why.
    Error,
}

/// One token: its kind and where it is in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// The kind.
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: u32,
    /// Byte offset past the last character.
    pub end: u32,
    /// For `Error` tokens, what is wrong.
    pub error: Option<&'static str>,
}

impl Token {
    /// The token's text.
    pub fn text<'s>(&self, source: &'s str) -> &'s str {
        &source[self.start as usize..self.end as usize]
    }
}

/// Splits MOF source into tokens, skipping whitespace and comments.
pub struct Lexer<'s> {
    src: &'s [u8],
    pos: usize,
}

impl<'s> Lexer<'s> {
    /// A lexer over `source`. Sources over 4 GiB are refused by the compiler before this.
    pub fn new(source: &'s str) -> Self {
        Lexer {
            src: source.as_bytes(),
            pos: 0,
        }
    }

    /// Lexes the whole source; the last token is `Eof`.
    pub fn tokenize(mut self) -> Vec<Token> {
        let mut out = Vec::with_capacity(self.src.len() / 6);
        loop {
            let mut t = self.next_token();
            // Every token consumes input, so lexing ends. An error that stopped on its
            // first byte is stretched over one whole character.
            let start = t.start as usize;
            if t.kind == TokenKind::Error && self.pos <= start {
                self.pos = start + utf8_len(self.src[start]);
                t.end = self.pos as u32;
            }
            out.push(t);
            if t.kind == TokenKind::Eof {
                return out;
            }
        }
    }

    fn peek(&self, ahead: usize) -> u8 {
        self.src.get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token {
        Token {
            kind,
            start: start as u32,
            end: self.pos as u32,
            error: None,
        }
    }

    fn error(&self, start: usize, message: &'static str) -> Token {
        Token {
            kind: TokenKind::Error,
            start: start as u32,
            // `tokenize` stretches an error that consumed nothing over one character.
            end: self.pos as u32,
            error: Some(message),
        }
    }

    /// Skips whitespace and comments; an unterminated block comment is an error token.
    fn skip_trivia(&mut self) -> Option<Token> {
        loop {
            match self.peek(0) {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0c => self.pos += 1,
                b'/' if self.peek(1) == b'/' => {
                    let rest = &self.src[self.pos..];
                    self.pos += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                }
                b'/' if self.peek(1) == b'*' => {
                    let start = self.pos;
                    match find_comment_end(&self.src[self.pos + 2..]) {
                        Some(i) => self.pos += 2 + i + 2,
                        None => {
                            self.pos = self.src.len();
                            return Some(self.error(start, "unterminated /* comment"));
                        }
                    }
                }
                // A UTF-8 byte order mark at the start of a file.
                0xef if self.pos == 0 && self.src.starts_with(b"\xef\xbb\xbf") => self.pos += 3,
                _ => return None,
            }
        }
    }

    fn next_token(&mut self) -> Token {
        if let Some(err) = self.skip_trivia() {
            return err;
        }
        let start = self.pos;
        let Some(&c) = self.src.get(self.pos) else {
            return self.token(TokenKind::Eof, start);
        };
        let single = |kind| (kind, 1);
        let (kind, len) = match c {
            b'{' => single(TokenKind::LBrace),
            b'}' => single(TokenKind::RBrace),
            b'(' => single(TokenKind::LParen),
            b')' => single(TokenKind::RParen),
            b'[' => single(TokenKind::LBracket),
            b']' => single(TokenKind::RBracket),
            b';' => single(TokenKind::Semicolon),
            b':' => single(TokenKind::Colon),
            b',' => single(TokenKind::Comma),
            b'=' => single(TokenKind::Equals),
            b'#' => single(TokenKind::Hash),
            b'"' => return self.quoted(b'"', TokenKind::String, "unterminated string literal"),
            b'\'' => return self.quoted(b'\'', TokenKind::Char, "unterminated char16 literal"),
            b'$' => {
                self.pos += 1;
                if !is_ident_start(self.peek(0)) {
                    return self.error(start, "expected an alias name after '$'");
                }
                self.identifier_tail();
                return self.token(TokenKind::Alias, start);
            }
            b'0'..=b'9' | b'.' | b'+' | b'-' => return self.number(),
            c if is_ident_start(c) => {
                self.identifier_tail();
                return self.token(TokenKind::Identifier, start);
            }
            _ => {
                // Step over a whole UTF-8 character so the error points at it.
                self.pos += utf8_len(c);
                return self.error(start, "unexpected character");
            }
        };
        self.pos += len;
        self.token(kind, start)
    }

    fn identifier_tail(&mut self) {
        while is_ident_continue(self.peek(0)) {
            self.pos += 1;
        }
    }

    fn quoted(&mut self, quote: u8, kind: TokenKind, unterminated: &'static str) -> Token {
        let start = self.pos;
        self.pos += 1;
        loop {
            // Jump to the next byte that matters; string bodies are most of a schema's bytes.
            let rest = &self.src[self.pos..];
            let Some(i) = rest
                .iter()
                .position(|&b| b == quote || b == b'\\' || b == b'\n')
            else {
                self.pos = self.src.len();
                return self.error(start, unterminated);
            };
            self.pos += i;
            match self.src[self.pos] {
                b'\n' => return self.error(start, unterminated),
                b'\\' if self.pos + 1 < self.src.len() => self.pos += 2,
                b'\\' => {
                    self.pos = self.src.len();
                    return self.error(start, unterminated);
                }
                _ => {
                    self.pos += 1;
                    return self.token(kind, start);
                }
            }
        }
    }

    fn number(&mut self) -> Token {
        let start = self.pos;
        if matches!(self.peek(0), b'+' | b'-') {
            self.pos += 1;
        }
        let starts_number = self.peek(0).is_ascii_digit()
            || (self.peek(0) == b'.' && self.peek(1).is_ascii_digit());
        if !starts_number {
            let message = if self.pos > start {
                "a sign must be followed by a number"
            } else {
                "unexpected '.' (a real number needs a digit after the point)"
            };
            return self.error(start, message);
        }
        // Take the whole run of alphanumerics so `0x1F`, `101b` and `1.5e-3` are one token;
        // the parser validates the form.
        let mut real = false;
        while let c @ (b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'_') = self.peek(0) {
            if c == b'.' {
                real = true;
            }
            self.pos += 1;
            if (c == b'e' || c == b'E') && real && matches!(self.peek(0), b'+' | b'-') {
                self.pos += 1;
            }
        }
        self.token(
            if real {
                TokenKind::Real
            } else {
                TokenKind::Integer
            },
            start,
        )
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_continue(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Offset of the first `*/` in `haystack`.
fn find_comment_end(haystack: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == b'*') {
        let at = from + i;
        if haystack.get(at + 1) == Some(&b'/') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        Lexer::new(src)
            .tokenize()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn tokens_and_comments() {
        use TokenKind::*;
        assert_eq!(
            kinds("class A : B { /* x */ uint8 P[] = {1, -2}; // c\n};"),
            vec![
                Identifier, Identifier, Colon, Identifier, LBrace, Identifier, Identifier,
                LBracket, RBracket, Equals, LBrace, Integer, Comma, Integer, RBrace, Semicolon,
                RBrace, Semicolon, Eof
            ]
        );
        assert_eq!(
            kinds("0x1F 101b 017 1.5e-3 .5 $a 'c' \"s\\\"\""),
            vec![Integer, Integer, Integer, Real, Real, Alias, Char, String, Eof]
        );
    }

    #[test]
    fn errors_are_tokens() {
        let t = Lexer::new("\"open").tokenize();
        assert_eq!(t[0].kind, TokenKind::Error);
        assert_eq!(t[0].error, Some("unterminated string literal"));
        let t = Lexer::new("/* never closed").tokenize();
        assert_eq!(t[0].error, Some("unterminated /* comment"));
        let t = Lexer::new("\"ends with backslash\\").tokenize();
        assert_eq!(t[0].kind, TokenKind::Error);
        assert_eq!(Lexer::new("@").tokenize()[0].kind, TokenKind::Error);
    }

    #[test]
    fn every_error_consumes_input() {
        // Found by fuzzing: a lone '.' or sign produced error tokens without advancing.
        for src in [
            ".", "-.", "+x", "-", "..", "$", "$1", "\u{e9}@", "é", " .", "\n .",
        ] {
            let tokens = Lexer::new(src).tokenize();
            assert!(tokens.len() <= src.len() + 1, "{src:?}: {tokens:?}");
            assert_eq!(tokens.last().unwrap().kind, TokenKind::Eof);
            // No token is empty: each covers at least one character.
            assert!(
                tokens
                    .iter()
                    .all(|t| t.kind == TokenKind::Eof || t.end > t.start),
                "{src:?}: {tokens:?}"
            );
        }
        // One error token for one stray '.', even after whitespace.
        assert_eq!(Lexer::new(" .").tokenize().len(), 2);
    }
}
