//! `.env` files: `KEY=VALUE` lines as Compose reads them (comments, `export `, quotes).

use std::collections::BTreeMap;

/// A malformed `.env` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// Parses the text of an env file. Later lines override earlier ones.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let (key, rest) = match trimmed.split_once('=') {
            Some((k, v)) => (k.trim(), v),
            // A bare name inherits nothing here (there is nothing to inherit from).
            None => continue,
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(EnvFileError {
                line: line_no,
                message: format!("unexpected character in variable name {key:?}"),
            });
        }
        let value = parse_value(rest.trim_start()).map_err(|message| EnvFileError {
            line: line_no,
            message,
        })?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn parse_value(v: &str) -> Result<String, String> {
    if let Some(rest) = v.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("unterminated single quote")?;
        return Ok(rest[..end].to_owned());
    }
    if let Some(rest) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote".to_owned());
    }
    // Unquoted: an inline comment starts at " #".
    let v = match v.find(" #") {
        Some(i) => &v[..i],
        None => v,
    };
    Ok(v.trim_end().to_owned())
}
