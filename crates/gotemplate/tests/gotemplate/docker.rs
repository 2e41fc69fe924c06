//! Every case recorded from the docker CLI (see the top of gotemplate.rs).
use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use lockbox_gotemplate::{Arity, Funcs, ListFormat, MissingKey, Template, bytes_value};
use serde_json::{Value, json};

/// Templates whose docker output JSON data cannot reproduce, with what we print instead.
/// docker runs inspect templates over Go structs first: a struct prints as `{v1 v2}` (or
/// through its String method: swarm.Version prints its index); JSON has only maps. (A
/// config's `Spec.Data`, a Go `[]byte`, is given as `bytes_value`, as lockbox does.)
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "{{.Spec}}",
        "map[Labels:map[env:prod tier:db] Name:{name}]\n",
    ),
    ("{{.Version}}", "map[Index:{index}]\n"),
    (
        "{{printf \"%T %T %T %T %T\" 1 1.5 \"s\" true .Spec.Labels}}",
        "int float64 string bool map[string]interface {}\n",
    ),
];

fn recorded() -> Value {
    let text = include_str!("../docker-recorded.json");
    serde_json::from_str(text).expect("docker-recorded.json")
}

/// What the docker CLI prints for an inspect template: the output and a newline, or an
/// empty line and the error.
fn inspect(format: &str, obj: &Value) -> (String, String) {
    let funcs = Funcs::docker();
    let t = match Template::parse(format, &funcs) {
        Ok(t) => t.missing_key(MissingKey::Error),
        Err(e) => return (String::new(), format!("template parsing error: {e}\n")),
    };
    match t.execute(obj, &funcs) {
        Ok(s) => (s + "\n", String::new()),
        Err(e) => ("\n".into(), format!("template parsing error: {e}\n")),
    }
}

/// docker's listing context for a secret or config: its methods as fields, `Label` as a
/// method reading the object's labels.
fn ls(kind: &str, format: &str, objs: &[Value]) -> (String, String) {
    let mut rows = Vec::new();
    let mut labels: BTreeMap<String, Value> = BTreeMap::new();
    let mut sorted: Vec<&Value> = objs.iter().collect();
    sorted.sort_by_key(|o| o["Spec"]["Name"].as_str().unwrap_or_default().to_string());
    for o in sorted {
        let l = o["Spec"]["Labels"].as_object().cloned().unwrap_or_default();
        let joined: Vec<String> = l
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let mut row = json!({
            "ID": o["ID"], "Name": o["Spec"]["Name"], "CreatedAt": "", "UpdatedAt": "",
            "Labels": joined.join(","),
        });
        if kind == "secret" {
            row["Driver"] = json!("");
        }
        labels.insert(
            o["ID"].as_str().unwrap_or_default().into(),
            Value::Object(l),
        );
        rows.push(row);
    }
    let labels = Arc::new(labels);
    let mut funcs = Funcs::docker();
    funcs.insert_method("Label", Arity::Exact(1), move |row, a| {
        let id = row["ID"].as_str().unwrap_or_default();
        let key = a.str(0)?;
        Ok(labels
            .get(id)
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or(json!("")))
    });
    let mut header = json!({"ID": "ID", "Name": "NAME", "CreatedAt": "CREATED",
        "UpdatedAt": "UPDATED", "Labels": "LABELS"});
    if kind == "secret" {
        header["Driver"] = json!("DRIVER");
    }
    let row_type = if kind == "secret" {
        "*secret.secretContext"
    } else {
        "*config.configContext"
    };
    let out = ListFormat::parse(format, &funcs, Some(row_type))
        .and_then(|f| f.render(&rows, &funcs, &header, &Funcs::docker_header()));
    match out {
        Ok(s) => (s, String::new()),
        Err(e) => (String::new(), format!("template parsing error: {e}\n")),
    }
}

#[test]
fn every_recorded_case_prints_what_the_docker_cli_printed() {
    let rec = recorded();
    let cases = rec["cases"].as_array().expect("cases");
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    let mut differing = 0;
    for c in cases {
        let cmd = c["cmd"].as_str().unwrap_or_default();
        let format = c["format"].as_str().unwrap_or_default();
        let (kind, verb) = cmd.split_once(' ').unwrap_or_default();
        let objs = rec["objects"][kind].as_array().cloned().unwrap_or_default();
        let (out, err) = match verb {
            "inspect" => {
                let mut obj = objs[0].clone();
                if let Some(b64) = obj["Spec"]["Data"].as_str() {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    obj["Spec"]["Data"] = bytes_value(&data);
                }
                inspect(format, &obj)
            }
            _ => ls(kind, format, &objs),
        };
        let mut want = (
            c["stdout"].as_str().unwrap_or_default().to_string(),
            c["stderr"].as_str().unwrap_or_default().to_string(),
        );
        if let Some((_, ours)) = KNOWN_DIFFERENCES.iter().find(|(f, _)| *f == format) {
            differing += 1;
            let name = objs[0]["Spec"]["Name"].as_str().unwrap_or_default();
            let index = objs[0]["Version"]["Index"].to_string();
            want = (
                ours.replace("{name}", name).replace("{index}", &index),
                String::new(),
            );
        }
        if (out.as_str(), err.as_str()) != (want.0.as_str(), want.1.as_str()) {
            failures.push(format!(
                "{cmd} --format {format:?}\n  docker: {:?} {:?}\n  ours:   {out:?} {err:?}",
                want.0, want.1
            ));
        }
    }
    assert_eq!(
        differing,
        KNOWN_DIFFERENCES.len(),
        "each known difference is recorded"
    );
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
