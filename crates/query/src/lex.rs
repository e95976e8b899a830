//! Splits a query into tokens: parentheses, keywords, `-`, bare words and `field<op>value`
//! terms. Positions are byte offsets into the query; the parser turns them into columns.

/// A comparison operator between a field and a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `:` (case-insensitive glob)
    Match,
}

impl Op {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Match => ":",
        }
    }

    /// Recognises the operator at the start of `text`, with its length in bytes.
    fn at_start_of(text: &str) -> Option<(Op, usize)> {
        const OPERATORS: [(&str, Op); 7] = [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
            (":", Op::Match),
        ];
        OPERATORS
            .iter()
            .find(|(symbol, _)| text.starts_with(symbol))
            .map(|(symbol, op)| (*op, symbol.len()))
    }
}

/// A `*` in a value: a wildcard for `:` and bare words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Star {
    /// Byte offset in [`Text::text`].
    pub(crate) offset: usize,
    /// Whether the star was written inside double quotes.
    pub(crate) quoted: bool,
}

/// A value or bare word with quotes and escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    pub(crate) text: String,
    /// Unescaped stars (`\*` inside quotes is a literal star and is not listed).
    pub(crate) stars: Vec<Star>,
    /// Whether any part was written in double quotes.
    pub(crate) quoted: bool,
}

impl Text {
    pub(crate) fn star_offsets(&self) -> Vec<usize> {
        self.stars.iter().map(|star| star.offset).collect()
    }

    pub(crate) fn has_unquoted_star(&self) -> bool {
        self.stars.iter().any(|star| !star.quoted)
    }
}

/// `field<op>value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub(crate) field: String,
    pub(crate) field_start: usize,
    pub(crate) op: Op,
    pub(crate) op_start: usize,
    pub(crate) value: Text,
    pub(crate) value_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    LeftParen,
    RightParen,
    And,
    Or,
    Not,
    /// `-` before a term: NOT.
    Minus,
    Word(Text),
    Term(Term),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    /// Byte offset of the token's first character.
    pub(crate) start: usize,
}

/// A token that cannot be read (bad quoting), at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

/// Characters of a field name; a word made of them and followed by an operator is a term.
fn is_field_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@')
}

/// Characters that end an unquoted value or word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')'
}

pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        source,
        position: 0,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let start = lexer.position;
        let Some(next) = lexer.peek() else {
            return Ok(tokens);
        };
        let kind = match next {
            '(' => lexer.single(TokenKind::LeftParen),
            ')' => lexer.single(TokenKind::RightParen),
            '-' => lexer.single(TokenKind::Minus),
            _ => lexer.term_or_word()?,
        };
        tokens.push(Token { kind, start });
    }
}

struct Lexer<'a> {
    source: &'a str,
    position: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source[self.position..].chars().next()
    }

    fn advance(&mut self, c: char) {
        self.position += c.len_utf8();
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.advance(c);
        }
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.position += 1;
        kind
    }

    fn term_or_word(&mut self) -> Result<TokenKind, LexError> {
        let start = self.position;
        let rest = &self.source[start..];
        let name_len = rest.find(|c| !is_field_name_char(c)).unwrap_or(rest.len());
        if name_len > 0
            && let Some((op, op_len)) = Op::at_start_of(&rest[name_len..])
        {
            let op_start = start + name_len;
            self.position = op_start + op_len;
            let value_start = self.position;
            let value = self.read_text()?;
            return Ok(TokenKind::Term(Term {
                field: rest[..name_len].to_owned(),
                field_start: start,
                op,
                op_start,
                value,
                value_start,
            }));
        }
        let word = self.read_text()?;
        if !word.quoted {
            match word.text.as_str() {
                "AND" => return Ok(TokenKind::And),
                "OR" => return Ok(TokenKind::Or),
                "NOT" => return Ok(TokenKind::Not),
                _ => {}
            }
        }
        Ok(TokenKind::Word(word))
    }

    /// Reads unquoted and quoted parts up to whitespace or a parenthesis.
    fn read_text(&mut self) -> Result<Text, LexError> {
        let mut value = Text {
            text: String::new(),
            stars: Vec::new(),
            quoted: false,
        };
        while let Some(c) = self.peek().filter(|c| !ends_word(*c)) {
            match c {
                '"' => {
                    value.quoted = true;
                    self.read_quoted(&mut value)?;
                }
                '*' => {
                    value.stars.push(Star {
                        offset: value.text.len(),
                        quoted: false,
                    });
                    value.text.push('*');
                    self.advance(c);
                }
                _ => {
                    value.text.push(c);
                    self.advance(c);
                }
            }
        }
        Ok(value)
    }

    /// Reads `"..."` (the cursor is on the opening quote) with `\"`, `\\` and `\*` escapes.
    fn read_quoted(&mut self, value: &mut Text) -> Result<(), LexError> {
        let open = self.position;
        self.advance('"');
        let unterminated = || LexError {
            offset: open,
            message: "unterminated quoted string; expected a closing `\"`".to_owned(),
        };
        loop {
            let c = self.peek().ok_or_else(unterminated)?;
            let at = self.position;
            self.advance(c);
            match c {
                '"' => return Ok(()),
                '\\' => {
                    let escaped = self.peek().ok_or_else(unterminated)?;
                    if !matches!(escaped, '"' | '\\' | '*') {
                        return Err(LexError {
                            offset: at,
                            message: format!(
                                "unknown escape `\\{escaped}`; expected `\\\"`, `\\\\` or `\\*`"
                            ),
                        });
                    }
                    value.text.push(escaped);
                    self.advance(escaped);
                }
                '*' => {
                    value.stars.push(Star {
                        offset: value.text.len(),
                        quoted: true,
                    });
                    value.text.push('*');
                }
                _ => value.text.push(c),
            }
        }
    }
}
