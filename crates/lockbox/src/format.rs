//! Output the way the docker CLI prints it: tabwriter tables, "3 minutes ago", Go-template
//! `--format` (crates/gotemplate), 4-space-indented inspect JSON.
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_gotemplate::{Arity, Funcs, ListFormat, MissingKey, Template};
use lockbox_proto::api::Object;
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

/// Writes rows through docker's tabwriter settings (Go's minwidth 10, padding 3).
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let mut tw = lockbox_gotemplate::tabwriter(Vec::new());
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

/// A listing row with its keys in order, as Go marshals a map.
pub(crate) fn sorted_object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut fields = fields;
    fields.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// One row of `ls --format json`: Go's `json.Marshal`, which escapes `<`, `>` and `&`.
pub(crate) fn listing_json(row: &Value) -> String {
    row.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

// ---------------------------------------------------------------------------------------------
// Secrets and configs as docker's templates see them

/// The fields of docker's `secretContext`/`configContext` for `ls --format`.
pub(crate) fn ls_row(o: &Object) -> Value {
    let labels: Vec<String> = o
        .spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // In key order: docker's `--format json` marshals its listing context as a Go map.
    sorted_object([
        ("CreatedAt", ago(&o.created_at).into()),
        (
            "Driver",
            o.spec
                .driver
                .as_ref()
                .map(|d| d.name.clone())
                .unwrap_or_default()
                .into(),
        ),
        ("ID", o.id.as_str().into()),
        ("Labels", labels.join(",").into()),
        ("Name", o.spec.name.as_str().into()),
        ("UpdatedAt", ago(&o.updated_at).into()),
    ])
}

/// docker's column names for `secret ls` and `config ls` (configs have no driver).
pub(crate) const SECRET_COLUMNS: Columns<'static> = Columns {
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("CreatedAt", "CREATED"),
        ("UpdatedAt", "UPDATED"),
        ("Labels", "LABELS"),
    ],
    row_type: Some("*secret.secretContext"),
};
pub(crate) const CONFIG_COLUMNS: Columns<'static> = Columns {
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("CreatedAt", "CREATED"),
        ("UpdatedAt", "UPDATED"),
        ("Labels", "LABELS"),
    ],
    row_type: Some("*config.configContext"),
};

/// An object as docker's inspect templates see the Go struct: `Spec.Data` is a `[]byte`
/// (numbers with `{{.Spec.Data}}`, text with `{{printf "%s" .Spec.Data}}`), and the fields
/// JSON leaves out are still there (`{{.Spec.Driver}}` is `<nil>`), yet not in `{{json .}}`.
pub(crate) fn as_go_struct(kind: &str, o: &Object) -> Result<Value, serde_json::Error> {
    use lockbox_gotemplate::{bytes_value, omitted_value};
    let mut v = serde_json::to_value(o)?;
    let spec = &mut v["Spec"];
    match o.spec.data.as_deref().map(|d| STANDARD.decode(d)) {
        Some(Ok(data)) => spec["Data"] = bytes_value(&data),
        _ => spec["Data"] = omitted_value(bytes_value(b"")),
    }
    if kind == "secrets" && spec.get("Driver").is_none() {
        spec["Driver"] = omitted_value(Value::Null);
    }
    if spec.get("Templating").is_none() {
        spec["Templating"] = omitted_value(Value::Null);
    }
    Ok(v)
}

/// docker's message for a template that does not parse or run.
fn template_error(e: lockbox_gotemplate::Error) -> String {
    format!("template parsing error: {e}")
}

/// `--format TEMPLATE` for one object (inspect, info): Go's text/template over the object's
/// JSON, as docker's inspect runs it (an unknown key is an error).
#[derive(Debug)]
pub(crate) struct ObjectFormat {
    template: Template,
    funcs: Funcs,
}

impl ObjectFormat {
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let funcs = Funcs::docker();
        let template = Template::parse(src, &funcs)
            .map_err(template_error)?
            .missing_key(MissingKey::Error);
        Ok(Self { template, funcs })
    }

    pub(crate) fn render(&self, v: &Value) -> Result<String, String> {
        self.template
            .execute(v, &self.funcs)
            .map_err(template_error)
    }
}

/// A listing's columns: each row field and its header, as docker's `SubHeaderContext`; and
/// the Go type docker names when a template asks for a field the rows lack.
pub(crate) struct Columns<'a> {
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) row_type: Option<&'a str>,
}

/// `listing` for lockbox's own rows: each field's column is named after it, as
/// `derived_header` does.
pub(crate) fn own_listing(format: &str, rows: &[Value]) -> Result<String, String> {
    let mut names: Vec<(String, String)> = Vec::new();
    for key in rows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys())
    {
        if !names.iter().any(|(k, _)| k == key) {
            names.push((key.clone(), derived_header(key)));
        }
    }
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let rows: Vec<_> = rows.iter().map(|r| (r.clone(), BTreeMap::new())).collect();
    let columns = Columns {
        headers: &headers,
        row_type: None,
    };
    listing(format, &rows, &columns)
}

/// The column name lockbox gives a field of its own: "CreatedAt" → "CREATED AT", "ID" → "ID".
pub(crate) fn derived_header(field: &str) -> String {
    let mut out = String::new();
    let mut prev_upper = true;
    for c in field.chars() {
        if c.is_uppercase() && !prev_upper {
            out.push(' ');
        }
        prev_upper = c.is_uppercase();
        out.extend(c.to_uppercase());
    }
    out
}

/// `ls --format FORMAT` (not `json`, not plain `table`): each row through the template, a
/// header row and aligned columns for `table …`, as docker's listing formatter does. `rows`
/// pairs each row's fields with the labels `{{.Label "k"}}` reads (rows are told apart by
/// their "ID").
pub(crate) fn listing(
    format: &str,
    rows: &[(Value, BTreeMap<String, String>)],
    columns: &Columns<'_>,
) -> Result<String, String> {
    let labels: HashMap<String, BTreeMap<String, String>> = rows
        .iter()
        .map(|(r, l)| (r["ID"].as_str().unwrap_or_default().to_string(), l.clone()))
        .collect();
    let mut funcs = Funcs::docker();
    funcs.insert_method("Label", Arity::Exact(1), move |row, a| {
        let id = row["ID"].as_str().unwrap_or_default();
        let key = a.str(0)?;
        let v = labels.get(id).and_then(|l| l.get(key)).cloned();
        Ok(Value::String(v.unwrap_or_default()))
    });
    let header: serde_json::Map<String, Value> = columns
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    let list = ListFormat::parse(format, &funcs, columns.row_type).map_err(template_error)?;
    let values: Vec<Value> = rows.iter().map(|(r, _)| r.clone()).collect();
    list.render(
        &values,
        &funcs,
        &Value::Object(header),
        &Funcs::docker_header(),
    )
    .map_err(template_error)
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
    fn format_templates() {
        let ctx = serde_json::json!({"ID":"abc","Name":"db","Spec":{"Labels":{"k":"v"}}});
        let f = |t: &str| ObjectFormat::parse(t).and_then(|f| f.render(&ctx));
        assert_eq!(f(r#"{{json .Spec.Labels}}"#).unwrap(), r#"{"k":"v"}"#);
        assert_eq!(f(r#"{{index .Spec.Labels "k"}}"#).unwrap(), "v");
        assert_eq!(f(r#"{{printf "%s:%5s" .Name .ID}}"#).unwrap(), "db:  abc");
        assert_eq!(
            f("{{.Nope}}").unwrap_err(),
            r#"template parsing error: template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope""#
        );
        assert_eq!(
            f("{{range .}}").unwrap_err(),
            "template parsing error: template: :1: unexpected EOF"
        );
        let rows = vec![
            (
                serde_json::json!({"ID": "1", "Name": "db", "CreatedAt": "x"}),
                BTreeMap::from([("env".to_string(), "prod".to_string())]),
            ),
            (
                serde_json::json!({"ID": "2", "Name": "cache", "CreatedAt": "y"}),
                BTreeMap::new(),
            ),
        ];
        let cols = Columns {
            headers: &[("ID", "ID"), ("Name", "NAME"), ("CreatedAt", "CREATED")],
            row_type: Some("*secret.secretContext"),
        };
        assert_eq!(
            listing(
                r#"table {{.Name}}\t{{.CreatedAt}}\t{{.Label "env"}}"#,
                &rows,
                &cols
            )
            .unwrap(),
            "NAME      CREATED   env\ndb        x         prod\ncache     y         \n"
        );
        assert_eq!(
            listing(r#"{{.Name}}\t{{.ID}}"#, &rows, &cols).unwrap(),
            "db\t1\ncache\t2\n"
        );
        assert_eq!(derived_header("CreatedAt"), "CREATED AT");
        assert_eq!(derived_header("ID"), "ID");
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
