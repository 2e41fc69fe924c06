//! Output the way the docker CLI prints it: tabwriter tables, "3 minutes ago", Go-template
//! `--format`, 4-space-indented inspect JSON.
use std::io::Write as _;

use serde_json::Value;

/// go-units' `HumanDuration`, which `docker … ls` shows with " ago".
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    // go-units rounds hours to the nearest, except for years.
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", s / 3600 / 24 / 365)
    }
}

/// "N units ago" for an RFC 3339 time.
pub(crate) fn ago(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => format!(
            "{} ago",
            human_duration(jiff::Timestamp::now().as_second() - t.as_second())
        ),
        Err(_) => rfc3339.to_string(),
    }
}

/// Go's `time.Time.String()` in UTC, as `inspect --pretty` prints it.
pub(crate) fn go_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => {
            let ns = t.subsec_nanosecond();
            let frac = if ns == 0 {
                String::new()
            } else {
                format!(".{ns:09}").trim_end_matches('0').to_string()
            };
            format!("{}{} +0000 utc", t.strftime("%Y-%m-%d %H:%M:%S"), frac)
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// Writes rows through Go-compatible tabwriter settings (minwidth 10, padding 3).
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(10)
        .padding(3);
    for r in rows {
        let _ = writeln!(tw, "{}", r.join("\t"));
    }
    String::from_utf8(tw.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// JSON indented with four spaces, as `docker inspect` prints it.
pub(crate) fn pretty_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("json");
    String::from_utf8(buf).expect("utf8")
}

/// A Go-template subset: `{{.A.B}}`, `{{json .}}`, `{{json .A}}`, `{{index .A "k"}}`,
/// `{{.Label "k"}}`, `{{upper .A}}`, `{{lower .A}}`, with `\t` and `\n` escapes and a
/// leading `table` directive (which prints the header row).
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) table: bool,
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Action(String),
}

impl Template {
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let mut s = src.replace("\\t", "\t").replace("\\n", "\n");
        let table = s.starts_with("table");
        if table {
            s = s.trim_start_matches("table").trim_start().to_string();
        }
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let j = after
                .find("}}")
                .ok_or_else(|| format!("template: unclosed action in {src:?}"))?;
            parts.push(Part::Action(
                after[..j]
                    .trim()
                    .trim_start_matches('-')
                    .trim_end_matches('-')
                    .trim()
                    .to_string(),
            ));
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { table, parts })
    }

    /// The header row: each action's last field name, upper-cased with spaces, as docker does.
    pub(crate) fn header(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Action(a) => {
                    let field = a
                        .split_whitespace()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches('.');
                    let field = field.rsplit('.').next().unwrap_or(field);
                    let mut out = String::new();
                    let mut prev_upper = true;
                    for c in field.chars() {
                        // "CreatedAt" → "CREATED AT", but "ID" stays "ID".
                        if c.is_uppercase() && !prev_upper {
                            out.push(' ');
                        }
                        prev_upper = c.is_uppercase();
                        out.extend(c.to_uppercase());
                    }
                    out
                }
            })
            .collect()
    }

    pub(crate) fn render(&self, ctx: &Value) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(a) => out.push_str(&eval(a, ctx)?),
            }
        }
        Ok(out)
    }
}

fn lookup<'a>(ctx: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim_start_matches('.');
    if path.is_empty() {
        return Some(ctx);
    }
    path.split('.').try_fold(ctx, |v, k| v.get(k))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Object(m) => {
            // Go prints maps as map[k:v k2:v2].
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{}", plain(v))).collect();
            format!("map[{}]", inner.join(" "))
        }
        other => other.to_string(),
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn eval(action: &str, ctx: &Value) -> Result<String, String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        [path] if path.starts_with('.') => Ok(lookup(ctx, path)
            .map(plain)
            .unwrap_or_else(|| "<no value>".into())),
        ["json", path] => Ok(lookup(ctx, path)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "null".into())),
        ["upper", path] => Ok(lookup(ctx, path)
            .map(plain)
            .unwrap_or_default()
            .to_uppercase()),
        ["lower", path] => Ok(lookup(ctx, path)
            .map(plain)
            .unwrap_or_default()
            .to_lowercase()),
        ["index", path, key] => Ok(lookup(ctx, path)
            .and_then(|v| v.get(unquote(key)))
            .map(plain)
            .unwrap_or_default()),
        [".Label", key] => Ok(ctx
            .get("LabelsMap")
            .and_then(|m| m.get(unquote(key)))
            .map(plain)
            .unwrap_or_default()),
        _ => Err(format!(
            "template: unsupported action {{{{{action}}}}}: lockbox supports .Field, json, index, upper, lower and .Label"
        )),
    }
}

/// Natural order (digits compared as numbers), as docker sorts `ls` output by name.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
            let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
            let (dx, dy) = (&x[..nx], &y[..ny]);
            let tx = std::str::from_utf8(dx)
                .unwrap_or("0")
                .trim_start_matches('0');
            let ty = std::str::from_utf8(dy)
                .unwrap_or("0")
                .trim_start_matches('0');
            let o = tx.len().cmp(&ty.len()).then(tx.cmp(ty));
            if o.is_ne() {
                return o;
            }
            x = &x[nx..];
            y = &y[ny..];
        } else {
            let o = x[0].cmp(&y[0]);
            if o.is_ne() {
                return o;
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go_units() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (180, "3 minutes"),
            (3600, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (3 * 86400, "3 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn templates() {
        let ctx = serde_json::json!({"ID":"abc","Name":"db","Spec":{"Labels":{"k":"v"}},"LabelsMap":{"env":"prod"}});
        let t = Template::parse("{{.Name}}\\t{{.ID}}").unwrap();
        assert_eq!(t.render(&ctx).unwrap(), "db\tabc");
        assert_eq!(
            Template::parse("{{json .Spec.Labels}}")
                .unwrap()
                .render(&ctx)
                .unwrap(),
            r#"{"k":"v"}"#
        );
        assert_eq!(
            Template::parse(r#"{{index .Spec.Labels "k"}}"#)
                .unwrap()
                .render(&ctx)
                .unwrap(),
            "v"
        );
        assert_eq!(
            Template::parse(r#"{{.Label "env"}}"#)
                .unwrap()
                .render(&ctx)
                .unwrap(),
            "prod"
        );
        let t = Template::parse("table {{.Name}}\\t{{.CreatedAt}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(), "NAME\tCREATED AT");
        assert!(
            Template::parse("{{range .}}")
                .unwrap()
                .render(&ctx)
                .is_err()
        );
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["s10", "s2", "a", "s1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "s1", "s2", "s10"]);
    }

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_time("2026-11-26T19:17:10.63492637Z"),
            "2026-11-26 19:17:10.63492637 +0000 utc"
        );
        assert_eq!(
            go_time("2026-11-26T19:17:10Z"),
            "2026-11-26 19:17:10 +0000 utc"
        );
    }
}
