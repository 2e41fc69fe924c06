//! Request bodies read the way Docker's Go decoder (`encoding/json`) reads them, so that a
//! client which writes `{"name": "x", "data": "…"}` or `"Templating": {"name": "golang"}`
//! gets what it gets from Docker.
//!
//! Go matches an object key to a struct field exactly if it can, otherwise
//! case-insensitively (Unicode simple folding: `K` KELVIN SIGN is `k`, `ſ` LONG S is `s`).
//! Keys inside maps (`Labels`, `Options`) are data and are never folded. A field that
//! appears twice is decoded twice into the same place: scalars are overwritten, objects and
//! maps are merged, and `null` resets.
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What a JSON value is decoded into.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A Go struct: its field names (as Docker spells them) and their shapes.
    Struct(&'static [(&'static str, Shape)]),
    /// A Go map: keys are data, values are kept as sent.
    Map,
    /// A string, number, bool or list.
    Leaf,
}

const DRIVER: Shape = Shape::Struct(&[("Name", Shape::Leaf), ("Options", Shape::Map)]);

/// `SecretSpec` / `ConfigSpec`.
pub const SPEC: Shape = Shape::Struct(&[
    ("Name", Shape::Leaf),
    ("Labels", Shape::Map),
    ("Data", Shape::Leaf),
    ("Driver", DRIVER),
    ("Templating", DRIVER),
]);

/// The secret-driver plugin's `POST /SecretProvider.GetSecret` (sent by a Swarm manager).
pub const GET_SECRET: Shape = Shape::Struct(&[
    ("SecretName", Shape::Leaf),
    ("SecretLabels", Shape::Map),
    ("ServiceHostname", Shape::Leaf),
    ("ServiceID", Shape::Leaf),
    ("ServiceName", Shape::Leaf),
    ("ServiceLabels", Shape::Map),
    ("TaskID", Shape::Leaf),
    ("TaskName", Shape::Leaf),
    ("TaskImage", Shape::Leaf),
    ("NodeID", Shape::Leaf),
    ("ServiceEndpointSpec", Shape::Leaf),
]);

/// `POST /swarm/unlock`.
pub const UNLOCK: Shape = Shape::Struct(&[("UnlockKey", Shape::Leaf)]);

fn fold_char(c: char) -> impl Iterator<Item = char> {
    // LONG S folds to s (its lowercase is itself); every other simple fold that matters
    // for ASCII field names (KELVIN SIGN → k) is what to_lowercase gives.
    let c = if c == 'ſ' { 's' } else { c };
    c.to_lowercase()
}

/// Go's case-insensitive key comparison.
pub fn key_matches(key: &str, field: &str) -> bool {
    key.chars()
        .flat_map(fold_char)
        .eq(field.chars().flat_map(fold_char))
}

/// The field of `fields` that `key` decodes into: the exact name first, then a fold match.
fn field_for<'a>(
    fields: &'a [(&'static str, Shape)],
    key: &str,
) -> Option<&'a (&'static str, Shape)> {
    fields
        .iter()
        .find(|(f, _)| *f == key)
        .or_else(|| fields.iter().find(|(f, _)| key_matches(key, f)))
}

/// Decodes `new` into `slot` as Go would decode it into an existing value of `shape`.
fn decode_into(slot: &mut Value, new: Value, shape: Shape) {
    match (shape, new) {
        (Shape::Struct(fields), Value::Object(m)) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(out) = slot {
                for (k, v) in m {
                    // Keys matching no field are ignored, as Go does.
                    if let Some((name, sub)) = field_for(fields, &k) {
                        let entry = out.entry(*name).or_insert(Value::Null);
                        decode_into(entry, v, *sub);
                    }
                }
            }
        }
        (Shape::Map, Value::Object(m)) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(out) = slot {
                out.extend(m);
            }
        }
        (_, other) => *slot = other,
    }
}

/// Rewrites the keys of `v` to the field names of `shape` (see the module docs).
pub fn canonical(v: Value, shape: Shape) -> Value {
    let mut out = Value::Null;
    decode_into(&mut out, v, shape);
    out
}

/// Parses a request body into `T` (whose serde names are Docker's), matching keys as Go.
pub fn from_slice<T: DeserializeOwned>(body: &[u8], shape: Shape) -> serde_json::Result<T> {
    let v: Value = serde_json::from_slice(body)?;
    serde_json::from_value(canonical(v, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Spec;
    use serde_json::json;

    #[test]
    fn keys_fold_like_go() {
        let s: Spec = from_slice(
            br#"{"name":"x","DATA":"eA==","labels":{"Env":"p"},"templating":{"nAmE":"golang","options":{"K":"v"}}}"#,
            SPEC,
        )
        .unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.data.as_deref(), Some("eA=="));
        // Map keys are data: kept as sent.
        assert_eq!(s.labels.get("Env").map(String::as_str), Some("p"));
        let t = s.templating.unwrap();
        assert_eq!(t.name, "golang");
        assert_eq!(t.options.unwrap().get("K").map(String::as_str), Some("v"));
    }

    #[test]
    fn unicode_simple_folding() {
        // KELVIN SIGN and LONG S fold to k and s in Go.
        assert!(key_matches("\u{212a}ey", "Key"));
        assert!(key_matches("Name\u{17f}", "NameS"));
        assert!(!key_matches("Nam", "Name"));
    }

    #[test]
    fn repeated_fields_overwrite_scalars_and_merge_objects() {
        let v = canonical(
            json!({"Name":"a","name":"b","Labels":{"x":"1"},"labels":{"y":"2"},
                   "Driver":{"Name":"d"},"driver":{"Options":{"o":"1"}},"Bogus":1}),
            SPEC,
        );
        assert_eq!(
            v,
            json!({"Name":"b","Labels":{"x":"1","y":"2"},"Driver":{"Name":"d","Options":{"o":"1"}}})
        );
        // null resets, as Go sets a map or pointer to nil.
        let v = canonical(json!({"Labels":{"x":"1"},"LABELS":null}), SPEC);
        assert_eq!(v, json!({"Labels":null}));
    }

    #[test]
    fn exact_match_wins_over_fold() {
        const S: Shape = Shape::Struct(&[("name", Shape::Leaf), ("Name", Shape::Leaf)]);
        let v = canonical(json!({"Name":"exact"}), S);
        assert_eq!(v, json!({"Name":"exact"}));
    }
}
