//! A YAML tree that remembers where every node came from.
//!
//! Compose files are read into [`Node`]s (not into a typed model) because the rewrite must keep
//! everything of the user's files that lockbox does not own, and because interpolation and
//! merging work on the whole tree. serde-saphyr does the parsing (anchors, aliases, `<<` merge
//! keys, YAML 1.1 octal `0440` as PyYAML and the Go loader read it); `Spanned` gives each node
//! its line and column so a schema error can name the exact place.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node is: file, 1-based line and column. Line 0 means "made up by lockbox" (a
/// default, a merged-in value without a source).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `raw` is the scalar as written when it could be recovered (for `mode: 440`).
    Str(String),
    Seq(Vec<Node>),
    /// Keys are strings (Compose has no other keys); order is kept.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A value and its position, plus the source text of a scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// The scalar's text in the file (numbers only; used to tell `440` from `0o670`).
    pub raw: Option<String>,
}

impl Node {
    pub fn new(value: Value) -> Self {
        Node {
            value,
            pos: Pos::default(),
            raw: None,
        }
    }

    pub fn at(value: Value, pos: Pos) -> Self {
        Node {
            value,
            pos,
            raw: None,
        }
    }

    pub fn str(s: impl Into<String>) -> Self {
        Node::new(Value::Str(s.into()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(m) => m.iter_mut().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes `key` from a mapping, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(m) => {
                let i = m.iter().position(|(k, _)| k.name == key)?;
                Some(m.remove(i).1)
            }
            _ => None,
        }
    }

    /// Sets `key` in a mapping (replacing, or appending at the end).
    pub fn set(&mut self, key: &str, value: Node) {
        if let Value::Map(m) = &mut self.value {
            if let Some(slot) = m.iter_mut().find(|(k, _)| k.name == key) {
                slot.1 = value;
            } else {
                m.push((
                    Key {
                        name: key.to_owned(),
                        pos: Pos::default(),
                    },
                    value,
                ));
            }
        }
    }

    /// A scalar as Compose would see it in a string context (`true`, `8080`, `1.5`).
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null => None,
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the node's type for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON for the rewritten project. Every `$` in a string is doubled, because
    /// Compose interpolates the file it is given again and the values here are final.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.replace('$', "$$")),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    fn set_file(&mut self, file: &Arc<str>) {
        self.pos.file = file.clone();
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_file(file)),
            Value::Map(m) => {
                for (k, v) in m {
                    k.pos.file = file.clone();
                    v.set_file(file);
                }
            }
            _ => {}
        }
    }

    fn fill_raw(&mut self, src: &str) {
        match &mut self.value {
            Value::Int(_) | Value::Float(_) => {
                // Numbers are single-line plain scalars: the token runs from the column to the
                // first character that cannot be part of one.
                if let Some(line) = src.lines().nth(self.pos.line.saturating_sub(1) as usize) {
                    let start = line
                        .char_indices()
                        .nth(self.pos.column.saturating_sub(1) as usize)
                        .map(|(i, _)| i);
                    if let Some(start) = start {
                        let tok: String = line[start..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || "+-._".contains(*c))
                            .collect();
                        if !tok.is_empty() {
                            self.raw = Some(tok);
                        }
                    }
                }
            }
            Value::Seq(items) => items.iter_mut().for_each(|n| n.fill_raw(src)),
            Value::Map(m) => m.iter_mut().for_each(|(_, v)| v.fill_raw(src)),
            _ => {}
        }
    }
}

/// What serde-saphyr deserializes; converted to [`Node`] right after.
struct Raw(Value);

struct RawVisitor;

fn spanned_node(s: Spanned<Raw>) -> Node {
    Node {
        value: s.value.0,
        pos: Pos {
            file: Arc::from(""),
            line: s.referenced.line(),
            column: s.referenced.column(),
        },
        raw: None,
    }
}

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(Value::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        i64::try_from(v)
            .map(|i| Raw(Value::Int(i)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        i64::try_from(v)
            .map(|i| Raw(Value::Int(i)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        i64::try_from(v)
            .map(|i| Raw(Value::Int(i)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(spanned_node(item));
        }
        Ok(Raw(Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Raw>>()? {
            let name = match k.value.0 {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom("mapping keys must be scalars"));
                }
            };
            let v = spanned_node(map.next_value::<Spanned<Raw>>()?);
            let key = Key {
                name,
                pos: Pos {
                    file: Arc::from(""),
                    line: k.referenced.line(),
                    column: k.referenced.column(),
                },
            };
            // A later duplicate (typically a key that overrides a `<<` merge) wins, in place.
            if let Some(slot) = entries.iter_mut().find(|(e, _)| e.name == key.name) {
                *slot = (key, v);
            } else {
                entries.push((key, v));
            }
        }
        Ok(Raw(Value::Map(entries)))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// A YAML syntax error, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one Compose file. An empty document is an empty mapping.
pub fn parse(file: &str, src: &str) -> Result<Node, SyntaxError> {
    let file: Arc<str> = Arc::from(file);
    let options = serde_saphyr::options! {
        // PyYAML (Compose v1) and the Go loader read `0440` as octal 288.
        legacy_octal_numbers: true,
        with_snippet: false,
        // Later keys win, as in PyYAML and Go (merge overrides rely on it).
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    let parsed: Result<Option<Spanned<Raw>>, _> = serde_saphyr::from_str_with_options(src, options);
    match parsed {
        Ok(Some(s)) => {
            let mut n = spanned_node(s);
            n.set_file(&file);
            n.fill_raw(src);
            Ok(n)
        }
        Ok(None) => Ok(Node::at(
            Value::Map(Vec::new()),
            Pos {
                file,
                line: 1,
                column: 1,
            },
        )),
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = first_line(&e.to_string());
            Err(SyntaxError {
                pos: Pos { file, line, column },
                message,
            })
        }
    }
}

/// serde-saphyr's message without its own location suffix (we print ours in front).
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // "… at line 3 column 5" → "…"
    match line.rfind(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}
