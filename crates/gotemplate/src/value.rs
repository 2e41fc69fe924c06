//! How Go sees a JSON value: its type name, its truth, and how `fmt` prints it with `%v`.
//!
//! JSON objects are Go maps (`map[string]interface {}`), arrays are `[]interface {}`, and
//! integers are `int` (or `uint64` past `i64::MAX`), the other numbers `float64`. Go prints
//! maps with sorted keys, as here.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The key of the one-entry object that stands for a Go `[]byte` (base64 inside, as Go's
/// JSON encodes it). JSON has no bytes, and docker prints `[]byte` fields (a config's
/// `Spec.Data`) as numbers with `%v` and as text with `%s`.
const BYTES_KEY: &str = "\u{0}[]byte";

/// The key of the one-entry object that stands for a struct field Go's JSON leaves out
/// (`omitempty`): templates see the value inside, `json` leaves the key out.
const OMITTED_KEY: &str = "\u{0}omitted";

/// A struct field that JSON omits but a Go template still reaches: docker's `Spec.Driver`
/// of a secret without a driver is a nil pointer, `{{.Spec.Driver}}` prints `<nil>`, and
/// `{{json .Spec}}` has no `Driver`.
pub fn omitted_value(v: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(OMITTED_KEY.to_string(), v);
    Value::Object(m)
}

/// The value a field holds, seen through [`omitted_value`].
pub(crate) fn field(v: &Value) -> &Value {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(OMITTED_KEY).unwrap_or(v),
        _ => v,
    }
}

fn is_omitted(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.len() == 1 && m.contains_key(OMITTED_KEY))
}

/// A Go `[]byte` value for template data.
pub fn bytes_value(b: &[u8]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(BYTES_KEY.to_string(), Value::String(STANDARD.encode(b)));
    Value::Object(m)
}

/// The bytes of a value made by [`bytes_value`].
pub(crate) fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Object(m) if m.len() == 1 => m
            .get(BYTES_KEY)
            .and_then(Value::as_str)
            .and_then(|b| STANDARD.decode(b).ok()),
        _ => None,
    }
}

/// The value as JSON proper: bytes become their base64 string, as Go's encoder writes them.
pub(crate) fn to_json_value(v: &Value) -> Value {
    if let Some(b) = as_bytes(v) {
        return Value::String(STANDARD.encode(b));
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !is_omitted(v))
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The bytes as the numbers Go prints for them.
pub(crate) fn byte_numbers(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|&x| Value::from(x)).collect())
}

/// Go's name for the value's dynamic type, as error messages and `%T` show it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    if as_bytes(v).is_some() {
        return "[]uint8";
    }
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int",
        Value::Number(n) if n.is_u64() => "uint64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's truth: false, 0, nil and empty strings, arrays and maps are false.
pub(crate) fn is_true(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => as_bytes(v).map_or(!o.is_empty(), |b| !b.is_empty()),
    }
}

/// `fmt.Sprint(v)`: `%v` formatting.
pub(crate) fn print(v: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, v);
    out
}

fn write_v(out: &mut String, v: &Value) {
    if let Some(b) = as_bytes(v) {
        return write_v(out, &byte_numbers(&b));
    }
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            _ => out.push_str(&format_float(n.as_f64().unwrap_or(0.0), 'g', None, false)),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, e);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, field(&m[k]));
            }
            out.push(']');
        }
    }
}

/// strconv.FormatFloat for the verbs `e`, `E`, `f`, `g`, `G`; `prec` None is the shortest
/// representation that reads back the same. `sharp` keeps trailing zeros for `%#g`.
pub(crate) fn format_float(f: f64, verb: char, prec: Option<usize>, sharp: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    match verb {
        'f' | 'F' => match prec {
            Some(p) => format!("{f:.p$}"),
            None => {
                let (digits, exp) = decimal_digits(f, None);
                fixed(f < 0.0, &digits, exp, None)
            }
        },
        'e' | 'E' => {
            let (digits, exp) = decimal_digits(f, prec.map(|p| p + 1));
            scientific(f < 0.0, &digits, exp, prec, verb)
        }
        _ => {
            // %g: Go picks %e when the exponent is < -4 or >= the precision (6 when shortest).
            let p = prec.map(|p| p.max(1));
            let (mut digits, exp) = decimal_digits(f, p);
            if !sharp {
                while digits.len() > 1 && digits.ends_with('0') {
                    digits.pop();
                }
            }
            let mut eprec = p.unwrap_or(6);
            if p.is_some() && eprec > digits.len() && digits.len() as i32 > exp {
                eprec = digits.len();
            }
            if prec.is_none() {
                eprec = 6;
            }
            let e = if verb == 'G' { 'E' } else { 'e' };
            if exp < -4 || exp >= eprec as i32 {
                let keep = if sharp { p.map(|p| p - 1) } else { None };
                let d = match keep {
                    Some(k) => format!("{digits:0<width$}", width = k + 1),
                    None => digits,
                };
                scientific(f < 0.0, &d, exp, Some(d.len() - 1), e)
            } else {
                let frac = if sharp {
                    p.map(|p| (p as i32 - exp - 1).max(0) as usize)
                } else {
                    None
                };
                fixed(f < 0.0, &digits, exp, frac)
            }
        }
    }
}

/// The significant decimal digits of |f| and its decimal exponent (d.ddd × 10^exp), either
/// the shortest round-trip digits or rounded to `sig` digits.
fn decimal_digits(f: f64, sig: Option<usize>) -> (String, i32) {
    let s = match sig {
        Some(n) => format!("{:.*e}", n.saturating_sub(1), f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn scientific(neg: bool, digits: &str, exp: i32, prec: Option<usize>, e: char) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    let rest = &digits[1..];
    let want = prec.unwrap_or(rest.len());
    if want > 0 {
        out.push('.');
        out.push_str(rest);
        for _ in rest.len()..want {
            out.push('0');
        }
    }
    let e = if e == 'E' { 'E' } else { 'e' };
    out.push(e);
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.abs()));
    out
}

fn fixed(neg: bool, digits: &str, exp: i32, frac: Option<usize>) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let point = exp + 1;
    let mut frac_digits = String::new();
    if point <= 0 {
        out.push('0');
        frac_digits.push_str(&"0".repeat((-point) as usize));
        frac_digits.push_str(digits);
    } else {
        let p = point as usize;
        if digits.len() <= p {
            out.push_str(digits);
            out.push_str(&"0".repeat(p - digits.len()));
        } else {
            out.push_str(&digits[..p]);
            frac_digits.push_str(&digits[p..]);
        }
    }
    if let Some(n) = frac {
        while frac_digits.len() < n {
            frac_digits.push('0');
        }
    }
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(&frac_digits);
    }
    out
}
