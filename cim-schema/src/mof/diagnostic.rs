//! Compiler messages that name file, line and column and show the line with a caret.

use std::fmt;
use std::path::PathBuf;

/// How serious a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Compilation failed.
    Error,
    /// Something was ignored (an unknown pragma, for example).
    Warning,
}

/// One compiler message.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file it is about.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, and what was expected.
    pub message: String,
    /// The text of the line, for display.
    pub source_line: String,
}

impl Diagnostic {
    /// A message about byte offset `offset` of `source`.
    pub fn at(
        severity: Severity,
        file: PathBuf,
        source: &str,
        offset: usize,
        message: String,
    ) -> Self {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |i| offset + i);
        let line = source[..line_start].bytes().filter(|&b| b == b'\n').count() + 1;
        let column = source[line_start..offset].chars().count() + 1;
        Diagnostic {
            severity,
            file,
            line,
            column,
            message,
            source_line: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
        }
    }

    /// A message about a file as a whole (one that cannot be read, for example).
    pub fn file(severity: Severity, file: PathBuf, message: String) -> Self {
        Diagnostic {
            severity,
            file,
            line: 0,
            column: 0,
            message,
            source_line: String::new(),
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Several diagnostics as text, one after the other.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            return write!(f, "{}: {kind}: {}", self.file.display(), self.message);
        }
        writeln!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        // Tabs are kept so the caret lines up under the same characters.
        let pad: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "    {}", self.source_line)?;
        write!(f, "    {pad}^")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "class A {\n  uint8 x\n};";
        let d = Diagnostic::at(
            Severity::Error,
            "a.mof".into(),
            src,
            19,
            "expected ';'".into(),
        );
        assert_eq!((d.line, d.column), (2, 10));
        assert_eq!(
            d.to_string(),
            "a.mof:2:10: error: expected ';'\n      uint8 x\n             ^"
        );
    }
}
