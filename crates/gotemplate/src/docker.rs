//! The docker CLI's template functions (`templates.basicFunctions` in docker/cli) and the
//! variants it uses while rendering a table header (`templates.HeaderFunctions`), which leave
//! the column name intact.
use serde_json::Value;

use crate::funcs::{Args, Arity, FuncError, Funcs};

impl Funcs {
    /// Go's predefined functions plus docker's `json`, `split`, `join`, `title`, `lower`,
    /// `upper`, `pad` and `truncate`.
    pub fn docker() -> Self {
        let mut f = Self::builtin();
        f.insert("json", Arity::Exact(1), |a| {
            Ok(Value::String(to_json(&a.any(0))))
        });
        f.insert("split", Arity::Exact(2), |a| {
            Ok(Value::Array(
                go_split(a.str(0)?, a.str(1)?)
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ))
        });
        f.insert("join", Arity::Exact(2), |a| {
            Ok(Value::String(a.strings(0)?.join(a.str(1)?)))
        });
        f.insert("title", Arity::Exact(1), |a| {
            Ok(Value::String(title(a.str(0)?)))
        });
        f.insert("lower", Arity::Exact(1), |a| {
            Ok(Value::String(a.str(0)?.to_lowercase()))
        });
        f.insert("upper", Arity::Exact(1), |a| {
            Ok(Value::String(a.str(0)?.to_uppercase()))
        });
        f.insert("pad", Arity::Exact(3), |a| {
            let s = a.str(0)?;
            if s.is_empty() {
                return Ok(Value::String(String::new()));
            }
            let n = |i: usize| -> Result<usize, FuncError> {
                usize::try_from(a.int(i)?).map_err(|_| FuncError::call("negative Repeat count"))
            };
            Ok(Value::String(format!(
                "{}{s}{}",
                " ".repeat(n(1)?),
                " ".repeat(n(2)?)
            )))
        });
        f.insert("truncate", Arity::Exact(2), |a| {
            let s = a.str(0)?;
            let n = a.int(1)?;
            let n = usize::try_from(n)
                .map_err(|_| FuncError::call(format!("slice bounds out of range [:{n}]")))?;
            if s.len() < n {
                return Ok(Value::String(s.to_string()));
            }
            // Go cuts bytes; a cut inside a character keeps the whole character out.
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Ok(Value::String(s[..end].to_string()))
        });
        f
    }

    /// [`Funcs::docker`] as the docker CLI renders a table's header row: `json`, `split`,
    /// `join`, `title`, `lower`, `upper` and `truncate` return their first argument
    /// unchanged (`pad` still pads, to keep the columns aligned), and `.Label "k"` is the
    /// label's column name.
    pub fn docker_header() -> Self {
        let mut f = Self::docker();
        for name in ["json", "title", "lower", "upper"] {
            f.insert(name, Arity::Exact(1), |a: &Args<'_>| {
                Ok(Value::String(a.str(0)?.to_string()))
            });
        }
        for name in ["split", "join"] {
            f.insert(name, Arity::Exact(2), |a: &Args<'_>| {
                a.str(1)?;
                Ok(Value::String(a.str(0)?.to_string()))
            });
        }
        f.insert("truncate", Arity::Exact(2), |a| {
            a.int(1)?;
            Ok(Value::String(a.str(0)?.to_string()))
        });
        f.insert_method("Label", Arity::Exact(1), |_, a| {
            Ok(Value::String(crate::table::header_label(a.str(0)?)))
        });
        f
    }
}

/// docker's `json`: `json.Encoder` without HTML escaping, the trailing newline removed.
/// Go also escapes U+2028 and U+2029.
fn to_json(v: &Value) -> String {
    serde_json::to_string(&crate::value::to_json_value(v))
        .unwrap_or_default()
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// strings.Split: an empty separator splits into characters.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

/// strings.Title: the first letter of every word upper-cased; a word starts after a
/// character that is not a letter, digit, underscore or (non-ASCII) mark.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}
