//! Errors of rule files.

use std::fmt;

/// One problem in a rule file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file (or source name given to [`crate::RuleSet::from_toml`]).
    pub source: String,
    /// 1-based line; 0 when the problem concerns the whole file (it cannot be read).
    pub line: usize,
    /// 1-based column in characters; 0 with `line` 0.
    pub column: usize,
    /// What is wrong, lowercase, no trailing punctuation.
    pub message: String,
}

impl RuleError {
    /// An error at byte `offset` of `text`.
    pub(crate) fn at(
        source: &str,
        text: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> RuleError {
        let (line, column) = line_column(text, offset);
        RuleError {
            source: source.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the whole file.
    pub(crate) fn whole_file(source: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            source: source.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(formatter, "{}: {}", self.source, self.message)
        } else {
            write!(
                formatter,
                "{}:{}:{}: {}",
                self.source, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for RuleError {}

/// 1-based line and character column of byte `offset` in `text` (clamped to the text).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_is_file_line_column_message() {
        let error = RuleError {
            source: "x.toml".into(),
            line: 3,
            column: 7,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "x.toml:3:7: bad");
    }
}
