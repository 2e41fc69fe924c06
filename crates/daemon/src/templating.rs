//! Templated secrets and configs, as Swarm has them: one created with
//! `Templating: {Name: golang}` is stored as written and rendered as a Go template for each
//! consumer at delivery.
//!
//! A template sees `{{ secret "NAME" }}` (only the secrets delivered with it: the consumer's
//! grant), `{{ config "NAME" }}`, `{{ env "VAR" }}` (always empty: lockbox never learns a
//! consumer's environment) and the consumer's context — `.Service` (`Name`, `ID`,
//! `Labels`), `.Node` (`ID`, `Hostname`, `Platform.OS`, `Platform.Architecture`) and
//! `.Task` (`Name`, `ID` = the workload ID, `Slot` = 1). Every inclusion is a hand-out,
//! audited through the core's `reveal` before the rendered file is written anywhere.
//! Workloads render for local consumers; a manager renders for a worker's (agent.rs).
//!
//! Go templates run function calls in order and values can steer control flow, so the
//! names a template includes are known only by running it: a pass that meets a value not
//! yet fetched records it and yields an empty string; the values are then revealed and the
//! template runs again, until a pass needs nothing new.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use lockbox_gotemplate::{Arity, FuncError, Funcs, Template};
use lockbox_keyring::Zeroizing;
use lockbox_store::{Kind, ObjectRecord, ServiceSecret, node_id_text};
use serde_json::{Value, json};

use crate::ApiError;
use crate::cluster::ClusterRecords;
use crate::services::ServiceRecords;
use lockbox_core::{Caller, Daemon};

/// The one template driver Swarm (and lockbox) knows.
const GOLANG: &str = "golang";

/// Bounds the fetch-and-rerun loop (each pass fetches at least one new value).
const MAX_PASSES: usize = 64;

/// Whether a record's value is a template to render at delivery.
pub(crate) fn is_templated(rec: &ObjectRecord) -> bool {
    rec.templating.as_ref().is_some_and(|t| !t.name.is_empty())
}

/// A secret the consumer is granted: its name, ID and the version it gets.
struct Grant {
    name: String,
    id: String,
    version: u64,
}

/// Who a template is rendered for.
pub(crate) struct Consumer<'a> {
    pub(crate) workload: &'a str,
    pub(crate) service: Option<&'a str>,
    pub(crate) caller: &'a Caller,
    /// The consumer's node (ID, hostname) when it is not this one: a manager rendering
    /// for a worker.
    pub(crate) node: Option<(String, String)>,
}

/// Values fetched so far, and those the last pass asked for and did not have.
#[derive(Default)]
struct Fetch {
    values: HashMap<(Kind, String), String>,
    wanted: Vec<(Kind, String)>,
}

fn lookup(fetch: &Mutex<Fetch>, kind: Kind, name: &str) -> Result<Value, FuncError> {
    let mut f = fetch
        .lock()
        .map_err(|_| FuncError::call("template state poisoned"))?;
    let key = (kind, name.to_owned());
    if let Some(v) = f.values.get(&key) {
        return Ok(Value::String(v.clone()));
    }
    if !f.wanted.contains(&key) {
        f.wanted.push(key);
    }
    Ok(Value::String(String::new()))
}

fn funcs(fetch: &Arc<Mutex<Fetch>>, granted: Vec<String>) -> Funcs {
    let mut f = Funcs::builtin();
    let s = fetch.clone();
    f.insert("secret", Arity::Exact(1), move |a| {
        let name = a.str(0)?;
        if !granted.iter().any(|g| g == name) {
            return Err(FuncError::call(format!(
                "secret {name:?} is not granted to this consumer (a template may include only the secrets delivered with it)"
            )));
        }
        lookup(&s, Kind::Secret, name)
    });
    let c = fetch.clone();
    f.insert("config", Arity::Exact(1), move |a| {
        lookup(&c, Kind::Config, a.str(0)?)
    });
    f.insert("env", Arity::Exact(1), |a| {
        a.str(0)?;
        Ok(Value::String(String::new()))
    });
    f
}

/// The context a template runs over, with lockbox's equivalents of Swarm's task.
fn context(d: &Daemon, c: &Consumer<'_>) -> Value {
    let svc = c.service.and_then(|n| d.service(n).ok());
    let (svc_name, svc_id, labels) = match &svc {
        Some(s) => (s.name.clone(), s.id.clone(), s.labels.clone()),
        None => (
            c.service.unwrap_or_default().to_owned(),
            String::new(),
            BTreeMap::new(),
        ),
    };
    let (node_id, hostname) = match &c.node {
        Some(n) => n.clone(),
        None => (
            d.cluster()
                .map(|cl| node_id_text(cl.config().node_id))
                .unwrap_or_default(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        ),
    };
    let task_name = match c.service {
        Some(s) => format!("{s}.1.{}", c.workload),
        None => c.workload.to_owned(),
    };
    json!({
        "Service": {"Name": svc_name, "ID": svc_id, "Labels": labels},
        "Node": {
            "ID": node_id,
            "Hostname": hostname,
            "Platform": {"OS": std::env::consts::OS, "Architecture": std::env::consts::ARCH},
        },
        "Task": {"Name": task_name, "ID": c.workload, "Slot": 1},
    })
}

/// A rendered file: its index in the set and its value.
pub(crate) type Rendered = (usize, Zeroizing<Vec<u8>>);

/// Renders the templates of a consumer's file set: `files` are every file it gets
/// (reference, version, raw value: its grant), `templates` the indexes of the templated
/// ones with their records. Returns each index with its rendered value, or the first error;
/// nothing is returned half-rendered. A template that includes a templated secret gets its
/// source.
pub(crate) fn render_set(
    d: &Daemon,
    c: &Consumer<'_>,
    files: &[(&ServiceSecret, u64, &[u8])],
    templates: &[(usize, ObjectRecord)],
) -> Result<Vec<Rendered>, ApiError> {
    // Configs delivered beside a template are not secrets it may include by `secret`.
    let reader = d.reader()?;
    let mut granted: Vec<Grant> = Vec::with_capacity(files.len());
    for (r, version, _) in files {
        if reader.get(Kind::Secret, &r.secret_id)?.is_none() {
            continue;
        }
        granted.push(Grant {
            name: r.secret_name.clone(),
            id: r.secret_id.clone(),
            version: *version,
        });
    }
    let mut out = Vec::with_capacity(templates.len());
    for (i, rec) in templates {
        let (r, _, src) = files
            .get(*i)
            .ok_or_else(|| ApiError::internal("template outside its file set"))?;
        out.push((*i, render(d, c, &granted, rec, &r.target, src)?));
    }
    Ok(out)
}

/// Renders secret or config `rec` (value `src`) delivered at `target`. Any failure is an
/// error naming it.
fn render(
    d: &Daemon,
    c: &Consumer<'_>,
    granted: &[Grant],
    rec: &ObjectRecord,
    target: &str,
    src: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let name = &rec.name;
    let noun = rec.kind.as_str();
    let fail = |msg: String| ApiError::bad_request(format!("{noun} {name}: {msg}"));
    let driver = rec
        .templating
        .as_ref()
        .map(|t| t.name.as_str())
        .unwrap_or_default();
    if driver != GOLANG {
        return Err(fail(format!(
            "unknown template driver {driver:?} (lockbox renders {GOLANG:?})"
        )));
    }
    let text =
        std::str::from_utf8(src).map_err(|_| fail("the template is not UTF-8 text".to_owned()))?;
    let fetch = Arc::new(Mutex::new(Fetch::default()));
    let funcs = funcs(&fetch, granted.iter().map(|g| g.name.clone()).collect());
    let template = Template::parse_named(name, text, &funcs).map_err(|e| fail(e.to_string()))?;
    let data = context(d, c);
    let detail = [
        ("service", c.service.unwrap_or("")),
        ("workload", c.workload),
        ("target", target),
        ("template", name.as_str()),
    ];
    for _ in 0..MAX_PASSES {
        // The output of a pass that lacked values is discarded: it may hold empty stand-ins.
        let out = template.execute(&data, &funcs).map(Zeroizing::new);
        let wanted = match fetch.lock() {
            Ok(mut f) => std::mem::take(&mut f.wanted),
            Err(_) => return Err(ApiError::internal("template state poisoned")),
        };
        if wanted.is_empty() {
            return out
                .map(|s| Zeroizing::new(s.as_bytes().to_vec()))
                .map_err(|e| fail(e.to_string()));
        }
        for (kind, what) in wanted {
            let value = match kind {
                Kind::Secret => {
                    let g = granted
                        .iter()
                        .find(|g| g.name == what)
                        .ok_or_else(|| fail(format!("secret {what:?} is not granted")))?;
                    d.reveal(kind, &g.id, Some(g.version), c.caller, &detail)
                }
                Kind::Config => d.reveal(kind, &what, None, c.caller, &detail),
            }
            .map_err(|e| fail(format!("{} {what:?}: {}", kind.as_str(), e.message)))?
            .2;
            let text = String::from_utf8_lossy(&value).into_owned();
            if let Ok(mut f) = fetch.lock() {
                f.values.insert((kind, what), text);
            }
        }
    }
    Err(fail(format!(
        "the template includes more than {MAX_PASSES} values"
    )))
}
