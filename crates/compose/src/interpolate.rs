//! Compose's variable interpolation (compose-spec "Interpolation"): `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`,
//! `${VAR+alt}`, defaults that nest further expressions, and `$$` for a literal `$`.
//! Applied to every value of the file, never to keys.

use std::fmt;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${VAR:?message}` / `${VAR?message}` on an unset (or empty) variable.
    Required { var: String, message: String },
    /// `${`, `${}`, `${1x}`… : the text that is not an expression.
    Invalid(String),
    /// `${A-${B-${C-…}}}` nested deeper than [`MAX_NESTING`]: refused rather than risk the
    /// stack (a fuzzer found a 320 KB value that overflowed it).
    TooDeep,
}

/// How deeply `${…}` expressions may nest inside each other's defaults.
pub(crate) const MAX_NESTING: usize = 64;

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpolationError::Required { var, message } if message.is_empty() => {
                write!(f, "required variable {var} is missing a value")
            }
            InterpolationError::Required { var, message } => {
                write!(f, "required variable {var} is missing a value: {message}")
            }
            InterpolationError::Invalid(s) => write!(f, "invalid interpolation format for {s:?}"),
            InterpolationError::TooDeep => write!(
                f,
                "invalid interpolation: expressions nested more than {MAX_NESTING} levels deep"
            ),
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Interpolates `input`. `lookup` answers a variable's value (`None` = unset); `unset` is told
/// about every variable that was unset and had no default (Compose warns and uses "").
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut dyn FnMut(&str),
) -> Result<String, InterpolationError> {
    let chars: Vec<char> = input.chars().collect();
    let mut p = Parser {
        chars: &chars,
        i: 0,
        depth: 0,
        lookup,
        unset,
        whole: input,
    };
    p.text(None)
}

struct Parser<'a> {
    chars: &'a [char],
    i: usize,
    /// How many `${` are open around the current position.
    depth: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    unset: &'a mut dyn FnMut(&str),
    whole: &'a str,
}

impl Parser<'_> {
    fn invalid(&self) -> InterpolationError {
        InterpolationError::Invalid(self.whole.to_owned())
    }

    /// Text up to `stop` (a closing `}` of an enclosing expression) or the end.
    fn text(&mut self, stop: Option<char>) -> Result<String, InterpolationError> {
        let mut out = String::new();
        while let Some(&c) = self.chars.get(self.i) {
            if Some(c) == stop {
                return Ok(out);
            }
            if c != '$' {
                out.push(c);
                self.i += 1;
                continue;
            }
            match self.chars.get(self.i + 1) {
                Some('$') => {
                    out.push('$');
                    self.i += 2;
                }
                Some('{') => {
                    self.i += 2;
                    if self.depth >= MAX_NESTING {
                        return Err(InterpolationError::TooDeep);
                    }
                    self.depth += 1;
                    let value = self.braced();
                    self.depth -= 1;
                    out.push_str(&value?);
                }
                Some(&n) if is_name_start(n) => {
                    self.i += 1;
                    let name = self.name();
                    match (self.lookup)(&name) {
                        Some(v) => out.push_str(&v),
                        None => (self.unset)(&name),
                    }
                }
                // A lone `$` (end of string, `$ `, `$1`) stays as written, as in Compose.
                _ => {
                    out.push('$');
                    self.i += 1;
                }
            }
        }
        if stop.is_some() {
            return Err(self.invalid());
        }
        Ok(out)
    }

    fn name(&mut self) -> String {
        let start = self.i;
        while self.chars.get(self.i).is_some_and(|&c| is_name_char(c)) {
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    /// After `${`: `NAME`, then `}` or an operator and its word, then `}`.
    fn braced(&mut self) -> Result<String, InterpolationError> {
        if !self.chars.get(self.i).is_some_and(|&c| is_name_start(c)) {
            return Err(self.invalid());
        }
        let name = self.name();
        let value = (self.lookup)(&name);
        let op: String = match self.chars.get(self.i) {
            Some('}') => {
                self.i += 1;
                return Ok(match value {
                    Some(v) => v,
                    None => {
                        (self.unset)(&name);
                        String::new()
                    }
                });
            }
            Some(':') => {
                let op: String = self.chars[self.i..].iter().take(2).collect();
                self.i += 2;
                op
            }
            Some(&c @ ('-' | '?' | '+')) => {
                self.i += 1;
                c.to_string()
            }
            _ => return Err(self.invalid()),
        };
        let empty_counts = op.starts_with(':');
        let missing = match &value {
            None => true,
            Some(v) => empty_counts && v.is_empty(),
        };
        // The word is parsed (and its own variables resolved) only when it is used, so an unset
        // variable inside an unused default neither warns nor fails.
        let result = match op.trim_start_matches(':') {
            "-" => {
                if missing {
                    let w = self.text(Some('}'))?;
                    Some(w)
                } else {
                    self.skip_word()?;
                    value
                }
            }
            "?" => {
                if missing {
                    let message = self.text(Some('}'))?;
                    return Err(InterpolationError::Required { var: name, message });
                }
                self.skip_word()?;
                value
            }
            "+" => {
                if missing {
                    self.skip_word()?;
                    Some(String::new())
                } else {
                    Some(self.text(Some('}'))?)
                }
            }
            _ => return Err(self.invalid()),
        };
        // text()/skip_word() stopped on the closing brace.
        self.i += 1;
        Ok(result.unwrap_or_default())
    }

    /// Skips a word up to its closing `}`, honouring nested `${…}`.
    fn skip_word(&mut self) -> Result<(), InterpolationError> {
        let mut depth = 0usize;
        while let Some(&c) = self.chars.get(self.i) {
            match c {
                '$' if self.chars.get(self.i + 1) == Some(&'$') => self.i += 1,
                '$' if self.chars.get(self.i + 1) == Some(&'{') => {
                    depth += 1;
                    self.i += 1;
                }
                '}' if depth == 0 => return Ok(()),
                '}' => depth -= 1,
                _ => {}
            }
            self.i += 1;
        }
        Err(self.invalid())
    }
}
