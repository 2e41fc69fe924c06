//! Splits a template into tokens the way Go's `text/template/parse` lexer does: text, the
//! `{{` `}}` delimiters with their `-` trim markers, comments, and the items inside an action.
//! Spaces inside an action are tokens too: `.A .B` is two arguments, `.A.B` one field chain.
use crate::literal::unquote;

/// What one token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    /// `.Name` (the name without the dot).
    Field(String),
    /// A lone `.`.
    Dot,
    /// `$` or `$name` (with the `$`).
    Variable(String),
    /// A function name.
    Ident(String),
    Keyword(Keyword),
    Bool(bool),
    Nil,
    /// A quoted string, already unquoted; the source text is kept for error messages.
    Str {
        value: String,
        text: String,
    },
    /// A number or a character constant, as written.
    Number(String),
    Char(char, String),
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
    Space,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    If,
    Else,
    End,
    Range,
    With,
    Define,
    Template,
    Block,
    Break,
    Continue,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

/// A lexing error: the message and the byte offset it is about.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) msg: String,
    pub(crate) pos: usize,
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Tokenises the whole template.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        src,
        pos: 0,
        out: Vec::new(),
        paren_depth: 0,
    };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<Token>,
    paren_depth: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn emit(&mut self, tok: Tok, pos: usize) {
        self.out.push(Token { tok, pos });
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            msg: msg.into(),
            pos: self.pos,
        })
    }

    /// Is a `-` trim marker followed by a space at the start of `s`?
    fn trim_marker(s: &str) -> bool {
        let mut c = s.chars();
        c.next() == Some('-') && c.next().is_some_and(is_space)
    }

    fn run(&mut self) -> Result<(), LexError> {
        let mut trim_next_text = false;
        loop {
            let start = self.pos;
            let (text_end, found) = match self.rest().find(LEFT) {
                Some(i) => (self.pos + i, true),
                None => (self.src.len(), false),
            };
            let after = text_end + LEFT.len();
            let trim_before = found && Self::trim_marker(&self.src[after.min(self.src.len())..]);
            let mut text = &self.src[start..text_end];
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            if trim_before {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.emit(Tok::Text(text.to_string()), start);
            }
            if !found {
                self.emit(Tok::Eof, self.src.len());
                return Ok(());
            }
            self.pos = after;
            if trim_before {
                self.pos += 2;
            }
            // A comment is the whole action and leaves no token.
            if self.rest().starts_with("/*") {
                trim_next_text = self.comment()?;
                continue;
            }
            self.emit(Tok::LeftDelim, text_end);
            trim_next_text = self.action()?;
        }
    }

    /// Lexes one action after its left delimiter; says whether it ended with a trim marker.
    fn action(&mut self) -> Result<bool, LexError> {
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return self.err("unclosed action");
            }
            if rest.starts_with(RIGHT) || Self::trim_marker_before_right(rest) {
                if self.paren_depth > 0 && rest.starts_with(RIGHT) {
                    return self.err("unclosed left paren");
                }
                let trim = !rest.starts_with(RIGHT);
                let p = self.pos + usize::from(trim) * 2;
                self.pos = p + RIGHT.len();
                self.emit(Tok::RightDelim, p);
                return Ok(trim);
            }
            let Some(c) = self.peek() else {
                return self.err("unclosed action");
            };
            let start = self.pos;
            match c {
                c if is_space(c) => {
                    while self.peek().is_some_and(is_space) && !self.at_trimmed_right() {
                        self.pos += 1;
                    }
                    self.emit(Tok::Space, start);
                }
                '=' => {
                    self.pos += 1;
                    self.emit(Tok::Assign, start);
                }
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return self.err("expected :=");
                    }
                    self.pos += 2;
                    self.emit(Tok::Declare, start);
                }
                '|' => {
                    self.pos += 1;
                    self.emit(Tok::Pipe, start);
                }
                ',' => {
                    self.pos += 1;
                    self.emit(Tok::Comma, start);
                }
                '(' => {
                    self.pos += 1;
                    self.paren_depth += 1;
                    self.emit(Tok::LeftParen, start);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        return self.err("unexpected right paren");
                    }
                    self.pos += 1;
                    self.paren_depth -= 1;
                    self.emit(Tok::RightParen, start);
                }
                '"' => self.quoted(start)?,
                '`' => self.raw_quoted(start)?,
                '\'' => self.char_constant(start)?,
                '$' => {
                    self.pos += 1;
                    self.pos += self.alnum_len();
                    let name = self.src[start..self.pos].to_string();
                    self.emit(Tok::Variable(name), start);
                }
                '.' => {
                    if self.rest()[1..].starts_with(|d: char| d.is_ascii_digit()) {
                        self.number(start)?;
                    } else {
                        self.pos += 1;
                        let n = self.alnum_len();
                        if n == 0 {
                            self.emit(Tok::Dot, start);
                        } else {
                            let name = self.src[self.pos..self.pos + n].to_string();
                            self.pos += n;
                            self.emit(Tok::Field(name), start);
                        }
                    }
                }
                '+' | '-' | '0'..='9' => self.number(start)?,
                c if is_alnum(c) => {
                    self.pos += self.alnum_len();
                    let word = &self.src[start..self.pos];
                    let tok = match word {
                        "if" => Tok::Keyword(Keyword::If),
                        "else" => Tok::Keyword(Keyword::Else),
                        "end" => Tok::Keyword(Keyword::End),
                        "range" => Tok::Keyword(Keyword::Range),
                        "with" => Tok::Keyword(Keyword::With),
                        "define" => Tok::Keyword(Keyword::Define),
                        "template" => Tok::Keyword(Keyword::Template),
                        "block" => Tok::Keyword(Keyword::Block),
                        "break" => Tok::Keyword(Keyword::Break),
                        "continue" => Tok::Keyword(Keyword::Continue),
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => Tok::Ident(w.to_string()),
                    };
                    self.emit(tok, start);
                }
                c => {
                    return self.err(format!(
                        "unrecognized character in action: {} {c:?}",
                        unicode_name(c)
                    ));
                }
            }
        }
    }

    /// A space that starts ` -}}` belongs to the delimiter, not to the action.
    fn at_trimmed_right(&self) -> bool {
        Self::trim_marker_before_right(self.rest())
    }

    fn alnum_len(&self) -> usize {
        self.rest()
            .char_indices()
            .find(|&(_, c)| !is_alnum(c))
            .map_or(self.rest().len(), |(i, _)| i)
    }

    fn comment(&mut self) -> Result<bool, LexError> {
        let Some(end) = self.rest().find("*/") else {
            return self.err("unclosed comment");
        };
        self.pos += end + 2;
        let rest = self.rest();
        let trim = Self::trim_marker_before_right(rest);
        if trim {
            self.pos += 2;
        } else if !rest.starts_with(RIGHT) {
            return self.err("comment ends before closing delimiter");
        }
        self.pos += RIGHT.len();
        Ok(trim)
    }

    fn trim_marker_before_right(s: &str) -> bool {
        s.starts_with(is_space) && s[1..].starts_with("-}}")
    }

    fn number(&mut self, start: usize) -> Result<(), LexError> {
        let rest = self.rest();
        let mut end = 0;
        let bytes = rest.as_bytes();
        if matches!(bytes.first(), Some(b'+' | b'-')) {
            end = 1;
        }
        let body = &rest[end..];
        let mut digits = "0123456789_";
        if body.len() > 1 && body.starts_with('0') {
            match body.as_bytes()[1] {
                b'x' | b'X' => {
                    digits = "0123456789abcdefABCDEF_";
                    end += 2;
                }
                b'o' | b'O' => {
                    digits = "01234567_";
                    end += 2;
                }
                b'b' | b'B' => {
                    digits = "01_";
                    end += 2;
                }
                _ => {}
            }
        }
        let take = |s: &str, set: &str| s.find(|c: char| !set.contains(c)).unwrap_or(s.len());
        end += take(&rest[end..], digits);
        if rest[end..].starts_with('.') {
            end += 1;
            end += take(&rest[end..], digits);
        }
        let exp = if digits.len() > 20 { "pP" } else { "eEpP" };
        if rest[end..].starts_with(|c| exp.contains(c)) {
            end += 1;
            if rest[end..].starts_with(['+', '-']) {
                end += 1;
            }
            end += take(&rest[end..], "0123456789_");
        }
        if rest[end..].starts_with('i') {
            end += 1;
        }
        let text = rest[..end].to_string();
        if rest[end..].starts_with(is_alnum) || text == "+" || text == "-" {
            let bad_end = end
                + rest[end..]
                    .find(|c| !is_alnum(c))
                    .unwrap_or(rest.len() - end);
            return Err(LexError {
                msg: format!("bad number syntax: {:?}", &rest[..bad_end]),
                pos: start,
            });
        }
        self.pos += end;
        self.emit(Tok::Number(text), start);
        Ok(())
    }

    fn quoted(&mut self, start: usize) -> Result<(), LexError> {
        let rest = self.rest();
        let Some(end) = closing_quote(rest, '"') else {
            return self.err("unterminated quoted string");
        };
        let text = rest[..=end].to_string();
        let value =
            unquote(&text[1..text.len() - 1]).map_err(|msg| LexError { msg, pos: start })?;
        self.pos += end + 1;
        self.emit(Tok::Str { value, text }, start);
        Ok(())
    }

    fn raw_quoted(&mut self, start: usize) -> Result<(), LexError> {
        let Some(end) = self.rest()[1..].find('`') else {
            return self.err("unterminated raw quoted string");
        };
        let text = self.rest()[..end + 2].to_string();
        let value = text[1..text.len() - 1].replace('\r', "");
        self.pos += end + 2;
        self.emit(Tok::Str { value, text }, start);
        Ok(())
    }

    fn char_constant(&mut self, start: usize) -> Result<(), LexError> {
        let rest = self.rest();
        let Some(end) = closing_quote(rest, '\'') else {
            return self.err("unterminated character constant");
        };
        let text = rest[..=end].to_string();
        let inner =
            unquote(&text[1..text.len() - 1]).map_err(|msg| LexError { msg, pos: start })?;
        let mut chars = inner.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err(LexError {
                msg: format!("malformed character constant: {text}"),
                pos: start,
            });
        };
        self.pos += end + 1;
        self.emit(Tok::Char(c, text), start);
        Ok(())
    }
}

/// Where the quote that `s` opens closes (not escaped, on the same line).
fn closing_quote(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '\n' => return None,
            '\\' if !escaped => escaped = true,
            c if c == quote && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Go's `U+0023` form of a character, for error messages.
pub(crate) fn unicode_name(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}
