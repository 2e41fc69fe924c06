//! Docker's validation rules, applied before anything is sealed or proposed.
use std::collections::BTreeMap;

use crate::{Kind, StoreError};

/// Docker's name rule: 1 to 64 characters of `[a-zA-Z0-9-_.]`, starting and ending with
/// `[a-zA-Z0-9]`.
pub fn name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::NameRequired);
    }
    let b = name.as_bytes();
    let inner = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    let ok = b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| inner(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName)
    }
}

/// 1 ≤ size < the kind's bound.
pub fn size(kind: Kind, len: usize) -> Result<(), StoreError> {
    if len == 0 || len >= kind.max_size() {
        return Err(StoreError::DataSize(kind));
    }
    Ok(())
}

/// Parsed `filters`, in either of Docker's JSON forms.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Parses the `filters` query value, in either of Docker's forms — `{"k":{"v":true}}` or the
/// legacy `{"k":["v"]}` — without judging the keys. Not JSON, or not of those shapes: 400
/// `invalid filter` (Engine 23+'s answer).
pub fn parse_filter_map(json: Option<&str>) -> Result<Filters, StoreError> {
    let invalid = || StoreError::Invalid("invalid filter".into());
    let mut out = Filters::new();
    let Some(json) = json.filter(|s| !s.is_empty()) else {
        return Ok(out);
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| invalid())?;
    for (k, vals) in v.as_object().ok_or_else(invalid)? {
        let list: Vec<String> = match vals {
            // Docker decodes `map[string]map[string]bool` (or the legacy
            // `map[string][]string`) and refuses anything else; a value of `false` still
            // names the term (its `Args.Get` returns the keys). Dropping terms of the wrong
            // shape instead would widen the filter to every object, and a script piping
            // `ls -q --filter …` into `rm` would remove them all.
            serde_json::Value::Object(m) => {
                if !m.values().all(serde_json::Value::is_boolean) {
                    return Err(invalid());
                }
                m.keys().cloned().collect()
            }
            serde_json::Value::Array(a) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or_else(invalid))
                .collect::<Result<_, _>>()?,
            _ => return Err(invalid()),
        };
        out.entry(k.clone()).or_default().extend(list);
    }
    Ok(out)
}

/// The `filters` of `GET /secrets` or `GET /configs`: [`parse_filter_map`], then Docker's
/// key check (`names` exists for secrets only, as in Docker).
pub fn parse_filters(kind: Kind, json: Option<&str>) -> Result<Filters, StoreError> {
    let out = parse_filter_map(json)?;
    if let Some(k) = out.keys().find(|k| !match kind {
        Kind::Secret => matches!(k.as_str(), "id" | "name" | "names" | "label"),
        Kind::Config => matches!(k.as_str(), "id" | "name" | "label"),
    }) {
        return Err(StoreError::InvalidFilter(k.clone()));
    }
    Ok(out)
}

/// A serde_json error in the words Go's decoder would use for the common cases, so that a
/// malformed body gets the message Docker clients expect.
pub fn go_json_error(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".into(),
        _ => s.split(" at line ").next().unwrap_or(&s).to_string(),
    }
}
