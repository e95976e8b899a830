//! Recursive-descent parser: tokens to a [`Node`] tree.
//!
//! ```text
//! query   := or?
//! or      := and ( "OR" and )*
//! and     := unary ( "AND"? unary )*
//! unary   := ( "NOT" | "-" ) unary | primary
//! primary := "(" or ")" | field op value | word
//! ```
//!
//! Parentheses and NOTs count towards [`MAX_DEPTH`], which bounds the recursion of both the
//! parser and [`Node::matches`].

use crate::compile;
use crate::expr::Node;
use crate::lex::{self, Token, TokenKind};
use crate::{MAX_DEPTH, MAX_QUERY_BYTES, ParseError};

pub(crate) fn parse(source: &str) -> Result<Node, ParseError> {
    if source.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            column: 1,
            message: format!(
                "query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
                source.len()
            ),
        });
    }
    let tokens =
        lex::tokenize(source).map_err(|error| error_at(source, error.offset, error.message))?;
    if tokens.is_empty() {
        return Ok(Node::All);
    }
    let mut parser = Parser {
        source,
        tokens,
        next: 0,
    };
    let node = parser.or(0)?;
    match parser.peek() {
        None => Ok(node),
        Some(token) => Err(parser.error(token.start, "unmatched `)`".to_owned())),
    }
}

/// An error at byte `offset` of `source`, reported with a 1-based character column.
pub(crate) fn error_at(source: &str, offset: usize, message: String) -> ParseError {
    let offset = offset.min(source.len());
    let column = source
        .char_indices()
        .take_while(|(at, _)| *at < offset)
        .count()
        + 1;
    ParseError { column, message }
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    next: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn error(&self, offset: usize, message: String) -> ParseError {
        error_at(self.source, offset, message)
    }

    /// Whether the next token can start an operand (a term, word, `(`, NOT or `-`).
    fn at_operand(&self) -> bool {
        matches!(
            self.peek().map(|token| &token.kind),
            Some(
                TokenKind::Word(_)
                    | TokenKind::Term(_)
                    | TokenKind::LeftParen
                    | TokenKind::Not
                    | TokenKind::Minus
            )
        )
    }

    /// After a binary or unary keyword at `offset`: an operand must follow.
    fn expect_operand_after(&self, keyword: &str, offset: usize) -> Result<(), ParseError> {
        if self.at_operand() {
            return Ok(());
        }
        let found = match self.peek() {
            None => "the end of the query".to_owned(),
            Some(token) => format!("`{}`", describe(&token.kind)),
        };
        Err(self.error(
            offset,
            format!("`{keyword}` needs a term after it, found {found}"),
        ))
    }

    fn or(&mut self, depth: usize) -> Result<Node, ParseError> {
        let mut operands = vec![self.and(depth)?];
        while let Some(token) = self.peek().filter(|token| token.kind == TokenKind::Or) {
            let offset = token.start;
            self.bump();
            self.expect_operand_after("OR", offset)?;
            operands.push(self.and(depth)?);
        }
        Ok(Node::join(operands, true))
    }

    fn and(&mut self, depth: usize) -> Result<Node, ParseError> {
        let mut operands = vec![self.unary(depth)?];
        loop {
            if let Some(token) = self.peek().filter(|token| token.kind == TokenKind::And) {
                let offset = token.start;
                self.bump();
                self.expect_operand_after("AND", offset)?;
            } else if !self.at_operand() {
                break;
            }
            operands.push(self.unary(depth)?);
        }
        Ok(Node::join(operands, false))
    }

    fn unary(&mut self, depth: usize) -> Result<Node, ParseError> {
        let Some(token) = self.peek() else {
            return Err(self.error(self.source.len(), "expected a term".to_owned()));
        };
        let keyword = match token.kind {
            TokenKind::Not => "NOT",
            TokenKind::Minus => "-",
            _ => return self.primary(depth),
        };
        let offset = token.start;
        self.bump();
        let depth = self.deeper(depth, offset)?;
        self.expect_operand_after(keyword, offset)?;
        Ok(Node::Not(Box::new(self.unary(depth)?)))
    }

    fn primary(&mut self, depth: usize) -> Result<Node, ParseError> {
        let Some(token) = self.bump() else {
            return Err(self.error(self.source.len(), "expected a term".to_owned()));
        };
        match token.kind {
            TokenKind::LeftParen => {
                let depth = self.deeper(depth, token.start)?;
                let inner = self.or(depth)?;
                match self.bump() {
                    Some(Token {
                        kind: TokenKind::RightParen,
                        ..
                    }) => Ok(inner),
                    _ => Err(self.error(
                        token.start,
                        "unclosed `(`; expected a matching `)`".to_owned(),
                    )),
                }
            }
            TokenKind::Term(term) => compile::term(self.source, &term),
            TokenKind::Word(word) => compile::word(self.source, token.start, &word),
            TokenKind::RightParen => {
                Err(self.error(token.start, "expected a term before `)`".to_owned()))
            }
            TokenKind::And | TokenKind::Or => {
                let keyword = describe(&token.kind);
                Err(self.error(token.start, format!("`{keyword}` needs a term before it")))
            }
            // `unary` handles these; listed so the match stays exhaustive.
            TokenKind::Not | TokenKind::Minus => {
                Err(self.error(token.start, "unexpected negation".to_owned()))
            }
        }
    }

    fn deeper(&self, depth: usize, offset: usize) -> Result<usize, ParseError> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.error(
                offset,
                format!("query nests deeper than {MAX_DEPTH} levels of parentheses and NOT"),
            ));
        }
        Ok(depth)
    }
}

fn describe(kind: &TokenKind) -> &'static str {
    match kind {
        TokenKind::LeftParen => "(",
        TokenKind::RightParen => ")",
        TokenKind::And => "AND",
        TokenKind::Or => "OR",
        TokenKind::Not => "NOT",
        TokenKind::Minus => "-",
        TokenKind::Word(_) | TokenKind::Term(_) => "term",
    }
}
