//! Go's `fmt.Sprintf` over JSON values: flags `-+# 0`, width, precision, `*`, `[n]`
//! argument indexes, the verbs `v T t d b o O x X c q U e E f F g G s`, and Go's
//! `%!verb(type=value)` / `%!v(MISSING)` / `%!(EXTRA …)` markers for mismatches.
use serde_json::Value;

use crate::value::{as_bytes, byte_numbers, field, format_float, print, type_name};

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf(format, args...)`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut reordered = false;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            chars.next();
        }
        // `[n]` picks the argument the next verb (or `*`) takes.
        let mut arg_index =
            |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next_arg: &mut usize| -> bool {
                if chars.peek() != Some(&'[') {
                    return true;
                }
                chars.next();
                let n: String = chars.by_ref().take_while(|&c| c != ']').collect();
                reordered = true;
                match n.parse::<usize>() {
                    Ok(i) if i >= 1 && i <= args.len() => {
                        *next_arg = i - 1;
                        true
                    }
                    _ => false,
                }
            };
        let mut ok_index = arg_index(&mut chars, &mut next_arg);
        // Width.
        if chars.peek() == Some(&'*') {
            chars.next();
            match args.get(next_arg).and_then(Value::as_i64) {
                Some(w) => {
                    if w < 0 {
                        spec.minus = true;
                        spec.zero = false;
                    }
                    spec.width = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            next_arg += 1;
        } else {
            spec.width = digits(&mut chars);
        }
        if chars.peek() == Some(&'.') {
            chars.next();
            ok_index &= arg_index(&mut chars, &mut next_arg);
            if chars.peek() == Some(&'*') {
                chars.next();
                match args.get(next_arg).and_then(Value::as_i64) {
                    Some(p) if p >= 0 => spec.prec = Some(p as usize),
                    Some(_) => {}
                    None => out.push_str("%!(BADPREC)"),
                }
                next_arg += 1;
            } else {
                spec.prec = Some(digits(&mut chars).unwrap_or(0));
            }
        }
        ok_index &= arg_index(&mut chars, &mut next_arg);
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !ok_index {
            out.push_str(&format!("%!{verb}(BADINDEX)"));
            continue;
        }
        match args.get(next_arg) {
            Some(v) => {
                out.push_str(&format_value(&spec, verb, v));
                next_arg += 1;
            }
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
    }
    if !reordered && next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|v| format!("{}={}", type_name(v), print(v)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Null => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", type_name(v), print(v)),
    }
}

fn format_value(spec: &Spec, verb: char, v: &Value) -> String {
    if verb == 'T' {
        return pad(spec, type_name(v).to_string(), false);
    }
    if verb == 'v' && spec.sharp {
        return pad(spec, go_syntax(v), false);
    }
    if let Some(b) = as_bytes(v) {
        // Go formats a []byte as text for %s, %q, %x and %X, and as numbers otherwise.
        return match verb {
            's' | 'q' | 'x' | 'X' => {
                let text = String::from_utf8_lossy(&b).into_owned();
                format_str(spec, verb, &text, v)
            }
            _ => format_value(spec, verb, &byte_numbers(&b)),
        };
    }
    match v {
        Value::Null => match verb {
            'v' => pad(spec, "<nil>".into(), false),
            _ => bad_verb(verb, v),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => pad(spec, b.to_string(), false),
            _ => bad_verb(verb, v),
        },
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                format_int(spec, verb, i128::from(i), v)
            } else if let Some(u) = n.as_u64() {
                format_int(spec, verb, i128::from(u), v)
            } else {
                format_float_spec(spec, verb, n.as_f64().unwrap_or(0.0), v)
            }
        }
        Value::String(s) => format_str(spec, verb, s, v),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(|e| format_value(spec, verb, e)).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        format_str(spec, verb, k, &Value::String(k.clone())),
                        format_value(spec, verb, field(&m[k]))
                    )
                })
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// `%#v`: Go-syntax representation.
fn go_syntax(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => go_quote(s, false),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_syntax).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_quote(k, false), go_syntax(field(&m[k]))))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
        other => print(other),
    }
}

/// Pads to the width; `numeric` allows zero padding after the sign.
fn pad(spec: &Spec, s: String, numeric: bool) -> String {
    let Some(w) = spec.width else {
        return s;
    };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero {
        if numeric && s.starts_with(['-', '+', ' ']) {
            format!("{}{}{}", &s[..1], "0".repeat(fill), &s[1..])
        } else {
            format!("{}{s}", "0".repeat(fill))
        }
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn sign(spec: &Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn format_int(spec: &Spec, verb: char, i: i128, v: &Value) -> String {
    let mag = i.unsigned_abs();
    let (digits, prefix) = match verb {
        'd' | 'v' => (mag.to_string(), ""),
        'b' => (format!("{mag:b}"), if spec.sharp { "0b" } else { "" }),
        'o' => (format!("{mag:o}"), if spec.sharp { "0" } else { "" }),
        'O' => (format!("{mag:o}"), "0o"),
        'x' => (format!("{mag:x}"), if spec.sharp { "0x" } else { "" }),
        'X' => (format!("{mag:X}"), if spec.sharp { "0X" } else { "" }),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return pad(spec, c.to_string(), false);
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return pad(spec, quote_rune(c), false);
        }
        'U' => {
            let mut s = format!("U+{:0width$X}", mag, width = spec.prec.unwrap_or(4).max(4));
            if spec.sharp
                && let Some(c) = u32::try_from(i).ok().and_then(char::from_u32)
                && !c.is_control()
            {
                s.push_str(&format!(" '{c}'"));
            }
            return pad(spec, s, false);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => return bad_verb(verb, v),
        _ => return bad_verb(verb, v),
    };
    let mut digits = digits;
    if let Some(p) = spec.prec {
        if p == 0 && mag == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let head = format!("{}{prefix}", sign(spec, i < 0));
    if spec.zero && spec.prec.is_none() && !spec.minus {
        if let Some(w) = spec.width {
            let used = head.len() + digits.len();
            if used < w {
                digits.insert_str(0, &"0".repeat(w - used));
            }
        }
        return format!("{head}{digits}");
    }
    let plain = Spec {
        zero: false,
        ..*spec
    };
    pad(&plain, format!("{head}{digits}"), true)
}

fn format_float_spec(spec: &Spec, verb: char, f: f64, v: &Value) -> String {
    let (verb, prec) = match verb {
        'v' => ('g', spec.prec),
        'e' | 'E' | 'f' | 'F' => (verb, Some(spec.prec.unwrap_or(6))),
        'g' | 'G' => (verb, spec.prec),
        _ => return bad_verb(verb, v),
    };
    let s = if f.is_nan() {
        format!("{}NaN", if spec.plus { "+" } else { "" })
    } else if f.is_infinite() {
        format!("{}Inf", if f > 0.0 { "+" } else { "-" })
    } else {
        format!(
            "{}{}",
            sign(spec, f.is_sign_negative()),
            format_float(f.abs(), verb, prec, spec.sharp)
        )
    };
    pad(spec, s, true)
}

fn format_str(spec: &Spec, verb: char, s: &str, v: &Value) -> String {
    let cut = |s: &str| match spec.prec {
        Some(p) => s.chars().take(p).collect::<String>(),
        None => s.to_string(),
    };
    match verb {
        's' | 'v' => pad(spec, cut(s), false),
        'q' => {
            let s = cut(s);
            if spec.sharp && !s.contains('`') && !s.chars().any(|c| c.is_control() && c != '\t') {
                pad(spec, format!("`{s}`"), false)
            } else {
                pad(spec, go_quote(&s, spec.plus), false)
            }
        }
        'x' | 'X' => {
            let bytes: Vec<u8> = match spec.prec {
                Some(p) => s.bytes().take(p).collect(),
                None => s.bytes().collect(),
            };
            let mut out = String::new();
            for (i, b) in bytes.iter().enumerate() {
                if spec.space && i > 0 {
                    out.push(' ');
                }
                if spec.sharp && (spec.space || i == 0) {
                    out.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    out.push_str(&format!("{b:02x}"));
                } else {
                    out.push_str(&format!("{b:02X}"));
                }
            }
            pad(spec, out, false)
        }
        _ => bad_verb(verb, v),
    }
}

/// strconv.Quote (or QuoteToASCII when `ascii`).
pub(crate) fn go_quote(s: &str, ascii: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        escape_into(&mut out, c, '"', ascii);
    }
    out.push('"');
    out
}

fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    escape_into(&mut out, c, '\'', false);
    out.push('\'');
    out
}

fn escape_into(out: &mut String, c: char, quote: char, ascii: bool) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() || (ascii && !c.is_ascii()) => {
            if (c as u32) < 0x10000 {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push_str(&format!("\\U{:08x}", c as u32));
            }
        }
        c => out.push(c),
    }
}
