//! Loading a project as Compose does: which files, which environment, which name; each file
//! parsed, interpolated, then merged in order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env::parse_env_file;
use crate::interpolate::interpolate;
use crate::yaml::{self, Key, Node, Pos, Value};

/// A problem in the user's files, with where it is and which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Dotted path of the offending key (`services.app.secrets[1].mode`), empty if none.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.key, self.message)
        }
    }
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(Diagnostic),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no configuration file provided: not found (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml in {0} and its parents)"
    )]
    NoFile(PathBuf),
    #[error("{0}")]
    Other(String),
}

impl LoadError {
    pub(crate) fn at(pos: &Pos, key: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError::Invalid(Diagnostic {
            pos: pos.clone(),
            key: key.into(),
            message: message.into(),
        })
    }
}

/// What `lockbox compose` was told, in Compose's terms.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order (empty: `COMPOSE_FILE`, then the default names).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file` (default: `.env` in the project directory).
    pub env_file: Option<PathBuf>,
    /// `--project-directory` (default: the first file's directory).
    pub project_directory: Option<PathBuf>,
    /// Where relative paths given here are resolved.
    pub working_dir: PathBuf,
    /// The process environment.
    pub environ: BTreeMap<String, String>,
}

/// A loaded project: the merged, interpolated tree and what was decided on the way.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub directory: PathBuf,
    pub files: Vec<PathBuf>,
    /// The environment used for interpolation and `environment:` secrets: the `.env` file
    /// overridden by the process environment.
    pub environment: BTreeMap<String, String>,
    /// The `--env-file` actually read, if any.
    pub env_file: Option<PathBuf>,
    pub model: Node,
    pub warnings: Vec<Diagnostic>,
}

const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_env_file(&text).map_err(|e| {
        LoadError::Invalid(Diagnostic {
            pos: Pos {
                file: path.display().to_string().into(),
                line: e.line as u64,
                column: 1,
            },
            key: String::new(),
            message: e.message,
        })
    })
}

/// Lowercase, and only `[a-z0-9_-]` kept (Compose's rule for names it derives).
pub fn normalize_project_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_owned()
}

fn valid_project_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Which files: `-f`, else `COMPOSE_FILE`, else the default names (plus the override file)
/// in the working directory or the nearest parent that has one.
fn find_files(
    opts: &LoadOptions,
    env: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, LoadError> {
    if !opts.files.is_empty() {
        return Ok(opts
            .files
            .iter()
            .map(|f| absolute(&opts.working_dir, f))
            .collect());
    }
    if let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .and_then(|s| s.chars().next())
            .unwrap_or(':');
        let files: Vec<PathBuf> = list
            .split(sep)
            .filter(|s| !s.is_empty())
            .map(|f| absolute(&opts.working_dir, Path::new(f)))
            .collect();
        // `COMPOSE_FILE=:` names no file: look for the default names, as if it were unset.
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let mut dir = Some(opts.working_dir.as_path());
    while let Some(d) = dir {
        if let Some(found) = DEFAULT_FILES
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
        {
            let mut files = vec![found];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                files.push(o);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(LoadError::NoFile(opts.working_dir.clone()))
}

/// Loads the project.
pub fn load(opts: &LoadOptions) -> Result<Project, LoadError> {
    // COMPOSE_FILE and COMPOSE_PROJECT_NAME may come from the working directory's `.env`.
    let cwd_env_path = opts.working_dir.join(".env");
    let mut early_env = if opts.env_file.is_none() && cwd_env_path.is_file() {
        read_env_file(&cwd_env_path)?
    } else {
        BTreeMap::new()
    };
    early_env.extend(opts.environ.clone());
    let files = find_files(opts, &early_env)?;
    let directory = match &opts.project_directory {
        Some(d) => absolute(&opts.working_dir, d),
        None => files[0]
            .parent()
            .map_or_else(|| opts.working_dir.clone(), Path::to_path_buf),
    };
    let env_file = match &opts.env_file {
        Some(f) => Some(absolute(&opts.working_dir, f)),
        None => Some(directory.join(".env")).filter(|p| p.is_file()),
    };
    let mut environment = match &env_file {
        Some(f) => read_env_file(f)?,
        None => BTreeMap::new(),
    };
    // The shell wins over the file.
    environment.extend(opts.environ.clone());

    let mut warnings = Vec::new();
    let mut merged: Option<Node> = None;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        let shown = display_path(file, &opts.working_dir);
        let mut node = yaml::parse(&shown, &text).map_err(|e| {
            LoadError::Invalid(Diagnostic {
                pos: e.pos,
                key: String::new(),
                message: e.message,
            })
        })?;
        if node.as_map().is_none() {
            return Err(LoadError::at(
                &node.pos,
                "",
                format!("top-level object must be a mapping, not {}", node.kind()),
            ));
        }
        interpolate_tree(&mut node, "", &environment, &mut warnings)?;
        normalize(&mut node)?;
        merged = Some(match merged {
            None => node,
            Some(base) => merge_top(base, node),
        });
    }
    let model = merged.expect("at least one file");

    let name = match &opts.project_name {
        Some(p) => p.clone(),
        None => match environment
            .get("COMPOSE_PROJECT_NAME")
            .filter(|s| !s.is_empty())
        {
            Some(p) => p.clone(),
            None => match model.get("name").and_then(Node::as_str) {
                Some(n) => n.to_owned(),
                None => normalize_project_name(
                    &directory
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
            },
        },
    };
    if !valid_project_name(&name) {
        return Err(LoadError::Other(format!(
            "invalid project name {name:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
        )));
    }
    Ok(Project {
        name,
        directory,
        files,
        environment,
        env_file,
        model,
        warnings,
    })
}

fn display_path(file: &Path, cwd: &Path) -> String {
    file.strip_prefix(cwd).unwrap_or(file).display().to_string()
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Interpolates every string value (never keys); `x-` extensions are left alone.
fn interpolate_tree(
    node: &mut Node,
    path: &str,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<(), LoadError> {
    match &mut node.value {
        Value::Str(s) => {
            let mut unset = Vec::new();
            let lookup = |k: &str| env.get(k).cloned();
            let out = interpolate(s, &lookup, &mut |v: &str| unset.push(v.to_owned()))
                .map_err(|e| LoadError::at(&node.pos, path, e.to_string()))?;
            for v in unset {
                warnings.push(Diagnostic {
                    pos: node.pos.clone(),
                    key: path.to_owned(),
                    message: format!("the {v} variable is not set, defaulting to a blank string"),
                });
            }
            *s = out;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, warnings)?;
            }
        }
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                if k.name.starts_with("x-") {
                    continue;
                }
                interpolate_tree(v, &child_path(path, &k.name), env, warnings)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Brings shorthand forms to one shape so that files merge as Compose merges them:
/// list-form `environment`/`labels`/... become mappings, `build: dir` becomes `{context: dir}`,
/// list-form service `networks` a mapping.
fn normalize(root: &mut Node) -> Result<(), LoadError> {
    let Some(services) = root.get_mut("services") else {
        return Ok(());
    };
    let Value::Map(services) = &mut services.value else {
        return Err(LoadError::at(
            &services.pos,
            "services",
            format!("must be a mapping, not {}", services.kind()),
        ));
    };
    for (name, svc) in services.iter_mut() {
        let Value::Map(fields) = &mut svc.value else {
            if matches!(svc.value, Value::Null) {
                svc.value = Value::Map(Vec::new());
                continue;
            }
            return Err(LoadError::at(
                &svc.pos,
                format!("services.{}", name.name),
                format!("must be a mapping, not {}", svc.kind()),
            ));
        };
        for (k, v) in fields.iter_mut() {
            match k.name.as_str() {
                "environment" | "labels" | "annotations" | "sysctls" | "extra_hosts" => {
                    let sep = if k.name == "extra_hosts" { ':' } else { '=' };
                    list_to_map(v, sep);
                }
                "networks" => {
                    if let Value::Seq(items) = &v.value {
                        let m = items
                            .iter()
                            .filter_map(|n| {
                                n.as_str().map(|s| {
                                    (
                                        Key {
                                            name: s.to_owned(),
                                            pos: n.pos.clone(),
                                        },
                                        Node::at(Value::Null, n.pos.clone()),
                                    )
                                })
                            })
                            .collect();
                        v.value = Value::Map(m);
                    }
                }
                "build" => {
                    if let Value::Str(ctx) = &v.value {
                        let pos = v.pos.clone();
                        v.value = Value::Map(vec![(
                            Key {
                                name: "context".into(),
                                pos: pos.clone(),
                            },
                            Node::at(Value::Str(ctx.clone()), pos),
                        )]);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn list_to_map(v: &mut Node, sep: char) {
    if let Value::Seq(items) = &v.value {
        let mut m: Vec<(Key, Node)> = Vec::new();
        for n in items {
            let Some(s) = n.scalar_string() else { continue };
            let (k, val) = match s.split_once(sep) {
                Some((k, val)) => (k.to_owned(), Value::Str(val.to_owned())),
                None => (s.clone(), Value::Null),
            };
            m.retain(|(e, _)| e.name != k);
            m.push((
                Key {
                    name: k,
                    pos: n.pos.clone(),
                },
                Node::at(val, n.pos.clone()),
            ));
        }
        v.value = Value::Map(m);
    }
}

/// Merges mappings key by key; the override wins for anything else.
fn merge_map(base: Node, over: Node, merge_value: &dyn Fn(&str, Node, Node) -> Node) -> Node {
    match (base.value, over.value) {
        (Value::Map(mut b), Value::Map(o)) => {
            for (k, v) in o {
                if let Some(i) = b.iter().position(|(e, _)| e.name == k.name) {
                    let old = std::mem::replace(&mut b[i].1, Node::new(Value::Null));
                    b[i].1 = merge_value(&k.name, old, v);
                } else {
                    b.push((k, v));
                }
            }
            Node {
                value: Value::Map(b),
                pos: base.pos,
                raw: None,
            }
        }
        (_, o) => Node {
            value: o,
            pos: over.pos,
            raw: over.raw,
        },
    }
}

fn merge_top(base: Node, over: Node) -> Node {
    merge_map(base, over, &|key, b, o| match key {
        "services" => merge_map(b, o, &|_, b, o| merge_service(b, o)),
        // Top-level resources: each named entry merges as a mapping.
        "networks" | "volumes" | "secrets" | "configs" => {
            merge_map(b, o, &|_, b, o| merge_map(b, o, &|_, _, o| o))
        }
        _ => merge_generic(b, o),
    })
}

fn merge_generic(b: Node, o: Node) -> Node {
    match (&b.value, &o.value) {
        (Value::Map(_), Value::Map(_)) => merge_map(b, o, &|_, b, o| merge_generic(b, o)),
        (Value::Seq(_), Value::Seq(_)) => append(b, o, |_| None),
        _ => o,
    }
}

/// Appends the override's items; an item whose unique key (if any) is already present
/// replaces the earlier one in place.
fn append(b: Node, o: Node, unique: impl Fn(&Node) -> Option<String>) -> Node {
    let (Value::Seq(mut items), Value::Seq(more)) = (b.value, o.value) else {
        unreachable!("append is only called on two sequences")
    };
    for item in more {
        let key = unique(&item);
        let existing = key
            .as_ref()
            .and_then(|k| items.iter().position(|i| unique(i).as_ref() == Some(k)));
        match existing {
            Some(i) => items[i] = item,
            None if key.is_none() && items.contains(&item) => {}
            None => items.push(item),
        }
    }
    Node {
        value: Value::Seq(items),
        pos: b.pos,
        raw: None,
    }
}

/// The container path a `volumes:` entry mounts at.
fn volume_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_owned()),
                _ => Some(parts[1].to_owned()),
            }
        }
        Value::Map(_) => n.get("target").and_then(Node::scalar_string),
        _ => None,
    }
}

/// A `secrets:`/`configs:` entry's target as Compose keys the merge (target, default source).
fn reference_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Map(_) => n
            .get("target")
            .or_else(|| n.get("source"))
            .and_then(Node::scalar_string),
        _ => None,
    }
}

fn port_key(n: &Node) -> Option<String> {
    match &n.value {
        Value::Map(_) => Some(
            ["host_ip", "target", "published", "protocol"]
                .iter()
                .map(|k| n.get(k).and_then(Node::scalar_string).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|"),
        ),
        _ => n.scalar_string(),
    }
}

fn merge_service(b: Node, o: Node) -> Node {
    merge_map(b, o, &|key, b, o| {
        let both_seq = matches!((&b.value, &o.value), (Value::Seq(_), Value::Seq(_)));
        match key {
            "command" | "entrypoint" => o,
            "healthcheck" => merge_map(b, o, &|_, _, o| o),
            "volumes" | "devices" if both_seq => append(b, o, volume_target),
            "secrets" | "configs" if both_seq => append(b, o, reference_target),
            "ports" if both_seq => append(b, o, port_key),
            "build" => merge_map(b, o, &|k, b, o| match k {
                "secrets" if matches!((&b.value, &o.value), (Value::Seq(_), Value::Seq(_))) => {
                    append(b, o, reference_target)
                }
                _ => merge_generic(b, o),
            }),
            _ => merge_generic(b, o),
        }
    })
}
