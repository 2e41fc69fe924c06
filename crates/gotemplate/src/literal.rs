//! Go's literal syntax inside actions: string escapes and number constants.
use serde_json::{Number, Value};

/// Go string-literal escapes: `\n \t \\ \" \' \a \b \f \r \v \xHH \uHHHH \UHHHHHHHH \NNN`.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next().ok_or("invalid syntax")?;
        let hex = |it: &mut std::str::Chars<'_>, n: usize| -> Result<char, String> {
            let h: String = it.take(n).collect();
            u32::from_str_radix(&h, 16)
                .ok()
                .filter(|_| h.len() == n)
                .and_then(char::from_u32)
                .ok_or_else(|| "invalid syntax".to_string())
        };
        out.push(match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '\\' | '"' | '\'' => e,
            'x' => hex(&mut it, 2)?,
            'u' => hex(&mut it, 4)?,
            'U' => hex(&mut it, 8)?,
            '0'..='7' => {
                let rest: String = it.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8)
                    .map_err(|_| "invalid syntax".to_string())?;
                char::from_u32(v).ok_or("invalid syntax")?
            }
            _ => return Err("invalid syntax".into()),
        });
    }
    Ok(out)
}

/// A number constant as Go evaluates it: an int unless it has a fraction or exponent.
pub(crate) fn number(text: &str) -> Result<Value, String> {
    let clean = text.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    if body.ends_with('i') {
        return Err(format!("complex constants are not supported: {text}"));
    }
    let radix_int = |b: &str, radix: u32| u64::from_str_radix(b, radix).ok();
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        radix_int(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        radix_int(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        radix_int(b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        radix_int(&lower[1..], 8)
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse().ok()
    } else {
        None
    };
    if let Some(u) = int {
        let v = i64::try_from(u).map_err(|_| format!("{text} overflows int"))?;
        return Ok(Value::from(if neg { -v } else { v }));
    }
    let f: f64 = clean
        .parse()
        .map_err(|_| format!("illegal number syntax: {text:?}"))?;
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("illegal number syntax: {text:?}"))
}
