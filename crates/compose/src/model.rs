//! The narrow part of the Compose model lockbox owns: top-level `secrets:`/`configs:`, each
//! service's `secrets:`/`configs:` references (short and long syntax) and `build.secrets`.
//! Everything else stays an opaque [`Node`] tree, kept for the rewrite.

use std::path::{Path, PathBuf};

use crate::project::{Diagnostic, LoadError, Project};
use crate::yaml::{Node, Pos, Value};

/// Secret (sensitive, under `/run/secrets`) or config (non-sensitive, at `/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    /// The top-level key.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
    /// Singular, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The lockbox object of this name (current version; rotations follow).
    Lockbox { name: String },
    /// A host file, read into memory by lockbox (absolute path).
    File { path: PathBuf },
    /// A variable of the project environment (shell, then `.env`).
    Environment { var: String },
    /// Inline `content:` (configs only).
    Content { text: String },
}

/// A top-level `secrets:`/`configs:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: Kind,
    pub key: String,
    /// `name:` if given.
    pub name: Option<String>,
    pub external: bool,
    pub file: Option<PathBuf>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub pos: Pos,
}

impl Resource {
    /// The name looked up in lockbox: `name:` if given, else the key.
    pub fn lockbox_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.key)
    }
}

/// One service's reference to a secret or config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: Kind,
    /// The top-level key it names.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub pos: Pos,
}

/// A `build.secrets` entry: `id` is what `RUN --mount=type=secret,id=…` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    pub source: String,
    pub id: String,
    pub pos: Pos,
}

/// What one service asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSecrets {
    pub service: String,
    pub references: Vec<Reference>,
    pub build_secrets: Vec<BuildSecret>,
}

/// The secret side of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub resources: Vec<Resource>,
    pub services: Vec<ServiceSecrets>,
    pub warnings: Vec<Diagnostic>,
}

impl Model {
    pub fn resource(&self, kind: Kind, key: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.key == key)
    }
}

fn valid_resource_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn expand_home(p: &str, env: &std::collections::BTreeMap<String, String>) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = env.get("HOME")
    {
        return Path::new(home).join(rest);
    }
    PathBuf::from(p)
}

fn want_str(n: &Node, path: &str) -> Result<String, LoadError> {
    n.scalar_string()
        .filter(|_| !matches!(n.value, Value::Seq(_) | Value::Map(_)))
        .ok_or_else(|| LoadError::at(&n.pos, path, format!("must be a string, not {}", n.kind())))
}

/// `external: true` (also the strings "true"/"false" after interpolation, and the
/// deprecated `external: {name: x}`).
fn parse_external(n: &Node, path: &str) -> Result<(bool, Option<String>), LoadError> {
    match &n.value {
        Value::Bool(b) => Ok((*b, None)),
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Ok((true, None)),
            "false" | "no" | "n" | "off" | "0" | "" => Ok((false, None)),
            _ => Err(LoadError::at(
                &n.pos,
                path,
                format!("must be a boolean, not {s:?}"),
            )),
        },
        Value::Map(_) => Ok((true, n.get("name").map(|v| want_str(v, path)).transpose()?)),
        _ => Err(LoadError::at(
            &n.pos,
            path,
            format!("must be a boolean, not {}", n.kind()),
        )),
    }
}

fn resources(
    project: &Project,
    kind: Kind,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<Resource>, LoadError> {
    let Some(top) = project.model.get(kind.key()) else {
        return Ok(Vec::new());
    };
    let Some(entries) = top.as_map() else {
        if matches!(top.value, Value::Null) {
            return Ok(Vec::new());
        }
        return Err(LoadError::at(
            &top.pos,
            kind.key(),
            format!("must be a mapping, not {}", top.kind()),
        ));
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let path = format!("{}.{}", kind.key(), k.name);
        if !valid_resource_key(&k.name) {
            return Err(LoadError::at(
                &k.pos,
                &path,
                format!(
                    "invalid {} name {:?}: only [a-zA-Z0-9._-] characters allowed",
                    kind.noun(),
                    k.name
                ),
            ));
        }
        let mut r = Resource {
            kind,
            key: k.name.clone(),
            name: None,
            external: false,
            file: None,
            environment: None,
            content: None,
            pos: k.pos.clone(),
        };
        let fields = match &v.value {
            Value::Map(m) => m.as_slice(),
            Value::Null => &[],
            _ => {
                return Err(LoadError::at(
                    &v.pos,
                    &path,
                    format!("must be a mapping, not {}", v.kind()),
                ));
            }
        };
        let mut external_name = None;
        for (fk, fv) in fields {
            let fpath = format!("{path}.{}", fk.name);
            match fk.name.as_str() {
                "file" => {
                    let f = want_str(fv, &fpath)?;
                    r.file = Some(
                        project
                            .directory
                            .join(expand_home(&f, &project.environment)),
                    );
                }
                "environment" => r.environment = Some(want_str(fv, &fpath)?),
                "content" if kind == Kind::Config => r.content = Some(want_str(fv, &fpath)?),
                "name" => r.name = Some(want_str(fv, &fpath)?),
                "external" => {
                    let (e, n) = parse_external(fv, &fpath)?;
                    r.external = e;
                    if n.is_some() {
                        warnings.push(Diagnostic {
                            pos: fv.pos.clone(),
                            key: fpath.clone(),
                            message:
                                "external.name is deprecated. Please set name and external: true"
                                    .into(),
                        });
                    }
                    external_name = n;
                }
                "labels" | "driver" | "driver_opts" | "template_driver" => {}
                x if x.starts_with("x-") => {}
                other => {
                    return Err(LoadError::at(
                        &fk.pos,
                        &fpath,
                        format!("additional property {other} is not allowed"),
                    ));
                }
            }
        }
        if let Some(n) = external_name {
            match &r.name {
                Some(existing) if *existing != n => {
                    return Err(LoadError::at(
                        &r.pos,
                        &path,
                        "name and external.name conflict; only use name",
                    ));
                }
                _ => r.name = Some(n),
            }
        }
        let sources = [
            r.file.is_some(),
            r.environment.is_some(),
            r.content.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources > 1 {
            return Err(LoadError::at(
                &r.pos,
                &path,
                "file|environment|content attributes are mutually exclusive",
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// Compose's mode: a YAML number (already octal if written `0440` or `0o440`) or a string
/// parsed as octal. A plain decimal with only octal digits (`440`) is what Compose reads as
/// decimal 440 = 0o670: kept, with a warning naming the octal it probably meant.
fn parse_mode(n: &Node, path: &str, warnings: &mut Vec<Diagnostic>) -> Result<u32, LoadError> {
    let mode = match &n.value {
        Value::Int(i) => {
            let v = u32::try_from(*i)
                .map_err(|_| LoadError::at(&n.pos, path, format!("invalid mode {i}")))?;
            let raw = n.raw.clone().unwrap_or_else(|| i.to_string());
            let plain_decimal =
                raw.len() > 1 && !raw.starts_with('0') && raw.bytes().all(|b| b.is_ascii_digit());
            if plain_decimal && v > 7 {
                let octal_digits = raw.bytes().all(|b| (b'0'..=b'7').contains(&b));
                let meant = if octal_digits {
                    format!(" (if you meant octal {raw}, write 0o{raw} or 0{raw})")
                } else {
                    String::new()
                };
                warnings.push(Diagnostic {
                    pos: n.pos.clone(),
                    key: path.to_owned(),
                    message: format!("mode {raw} is a decimal number: it means 0o{v:o}{meant}"),
                });
            }
            v
        }
        Value::Str(s) => {
            let digits = s
                .strip_prefix("0o")
                .or_else(|| s.strip_prefix("0O"))
                .unwrap_or(s);
            u32::from_str_radix(digits, 8).map_err(|_| {
                LoadError::at(
                    &n.pos,
                    path,
                    format!("invalid mode {s:?}: not an octal number"),
                )
            })?
        }
        _ => {
            return Err(LoadError::at(
                &n.pos,
                path,
                format!("must be a number, not {}", n.kind()),
            ));
        }
    };
    if mode > 0o777 {
        return Err(LoadError::at(
            &n.pos,
            path,
            format!("invalid mode 0o{mode:o}: only permission bits (at most 0o777) can be set"),
        ));
    }
    Ok(mode)
}

fn parse_id(n: &Node, path: &str) -> Result<u32, LoadError> {
    let s = want_str(n, path)?;
    s.parse::<u32>()
        .map_err(|_| LoadError::at(&n.pos, path, format!("invalid {s:?}: must be a numeric id")))
}

fn container_target(kind: Kind, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    match kind {
        Kind::Secret => format!("/run/secrets/{target}"),
        Kind::Config => format!("/{target}"),
    }
}

/// Refuses `..` and empty components: the target must stay where it says.
fn check_target(target: &str, pos: &Pos, path: &str) -> Result<(), LoadError> {
    if target
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(LoadError::at(
            pos,
            path,
            format!("invalid target {target:?}: empty, '.' and '..' components are not allowed"),
        ));
    }
    Ok(())
}

fn references(
    kind: Kind,
    list: &Node,
    svc_path: &str,
    warnings: &mut Vec<Diagnostic>,
    build: bool,
) -> Result<Vec<(Reference, Option<String>)>, LoadError> {
    let path = format!("{svc_path}.{}", kind.key());
    let Value::Seq(items) = &list.value else {
        if matches!(list.value, Value::Null) {
            return Ok(Vec::new());
        }
        return Err(LoadError::at(
            &list.pos,
            &path,
            format!("must be a list, not {}", list.kind()),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let mut r = Reference {
            kind,
            source: String::new(),
            target: String::new(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            pos: item.pos.clone(),
        };
        let mut raw_target = None;
        match &item.value {
            Value::Str(s) => r.source = s.clone(),
            Value::Map(fields) => {
                for (fk, fv) in fields {
                    let fpath = format!("{ipath}.{}", fk.name);
                    match fk.name.as_str() {
                        "source" => r.source = want_str(fv, &fpath)?,
                        "target" => raw_target = Some(want_str(fv, &fpath)?),
                        "uid" => r.uid = parse_id(fv, &fpath)?,
                        "gid" => r.gid = parse_id(fv, &fpath)?,
                        "mode" => r.mode = parse_mode(fv, &fpath, warnings)?,
                        x if x.starts_with("x-") => {}
                        other => {
                            return Err(LoadError::at(
                                &fk.pos,
                                &fpath,
                                format!("additional property {other} is not allowed"),
                            ));
                        }
                    }
                }
                if r.source.is_empty() {
                    return Err(LoadError::at(&item.pos, &ipath, "source is required"));
                }
            }
            _ => {
                return Err(LoadError::at(
                    &item.pos,
                    &ipath,
                    format!("must be a string or a mapping, not {}", item.kind()),
                ));
            }
        }
        let t = raw_target.clone().unwrap_or_else(|| r.source.clone());
        if build {
            r.target = t;
        } else {
            r.target = container_target(kind, &t);
            check_target(&r.target, &r.pos, &ipath)?;
        }
        out.push((r, raw_target));
    }
    Ok(out)
}

/// Reads the secret side of a loaded project, with Compose's checks (undefined references,
/// mutually exclusive sources) and lockbox's (modes, targets).
pub fn model(project: &Project) -> Result<Model, LoadError> {
    let mut warnings = Vec::new();
    let mut res = resources(project, Kind::Secret, &mut warnings)?;
    res.extend(resources(project, Kind::Config, &mut warnings)?);
    let mut services = Vec::new();
    if let Some(svcs) = project.model.get("services").and_then(Node::as_map) {
        for (name, svc) in svcs {
            let svc_path = format!("services.{}", name.name);
            let mut refs = Vec::new();
            for kind in [Kind::Secret, Kind::Config] {
                if let Some(list) = svc.get(kind.key()) {
                    for (r, _) in references(kind, list, &svc_path, &mut warnings, false)? {
                        if !res.iter().any(|x| x.kind == kind && x.key == r.source) {
                            return Err(LoadError::at(
                                &r.pos,
                                format!("{svc_path}.{}", kind.key()),
                                format!(
                                    "service \"{}\" refers to undefined {} {}",
                                    name.name,
                                    kind.noun(),
                                    r.source
                                ),
                            ));
                        }
                        // Two references landing on one path: Compose would silently keep one.
                        if let Some(prev) = refs.iter().find(|p: &&Reference| p.target == r.target)
                        {
                            return Err(LoadError::at(
                                &r.pos,
                                format!("{svc_path}.{}", kind.key()),
                                format!(
                                    "target {} is already used by {} {} ({})",
                                    r.target,
                                    prev.kind.noun(),
                                    prev.source,
                                    prev.pos
                                ),
                            ));
                        }
                        refs.push(r);
                    }
                }
            }
            let mut build_secrets = Vec::new();
            if let Some(list) = svc.get("build").and_then(|b| b.get("secrets")) {
                let bpath = format!("{svc_path}.build");
                for (r, _) in references(Kind::Secret, list, &bpath, &mut warnings, true)? {
                    if !res
                        .iter()
                        .any(|x| x.kind == Kind::Secret && x.key == r.source)
                    {
                        return Err(LoadError::at(
                            &r.pos,
                            format!("{bpath}.secrets"),
                            format!(
                                "service \"{}\" refers to undefined build secret {}",
                                name.name, r.source
                            ),
                        ));
                    }
                    if r.uid != 0 || r.gid != 0 || r.mode != 0o444 {
                        warnings.push(Diagnostic {
                            pos: r.pos.clone(),
                            key: format!("{bpath}.secrets"),
                            message: "uid, gid and mode of build secrets are not supported by BuildKit, they are ignored (set them on the RUN --mount)".into(),
                        });
                    }
                    build_secrets.push(BuildSecret {
                        source: r.source,
                        id: r.target,
                        pos: r.pos,
                    });
                }
            }
            if !refs.is_empty() || !build_secrets.is_empty() {
                services.push(ServiceSecrets {
                    service: name.name.clone(),
                    references: refs,
                    build_secrets,
                });
            }
        }
    }
    Ok(Model {
        resources: res,
        services,
        warnings,
    })
}

/// Why a resource cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{kind} {name} not found in lockbox")]
    NotFound { kind: &'static str, name: String },
    #[error(
        "{pos}: {kind}s.{key}: one of file|environment must be set (or external: true for a lockbox {kind})"
    )]
    NoSource {
        kind: &'static str,
        key: String,
        pos: Pos,
    },
}

/// Decides where each resource's value comes from. `in_lockbox(kind, name)` says whether
/// lockbox has an object of that name. External resources must be in lockbox; any other
/// resource whose name lockbox has comes from lockbox too; the rest from their file,
/// variable or inline content.
pub fn resolve(
    r: &Resource,
    in_lockbox: &dyn Fn(Kind, &str) -> bool,
) -> Result<Source, ResolveError> {
    let name = r.lockbox_name();
    if r.external {
        if in_lockbox(r.kind, name) {
            return Ok(Source::Lockbox {
                name: name.to_owned(),
            });
        }
        return Err(ResolveError::NotFound {
            kind: r.kind.noun(),
            name: name.to_owned(),
        });
    }
    if in_lockbox(r.kind, name) {
        return Ok(Source::Lockbox {
            name: name.to_owned(),
        });
    }
    if let Some(p) = &r.file {
        return Ok(Source::File { path: p.clone() });
    }
    if let Some(v) = &r.environment {
        return Ok(Source::Environment { var: v.clone() });
    }
    if let Some(c) = &r.content {
        return Ok(Source::Content { text: c.clone() });
    }
    Err(ResolveError::NoSource {
        kind: r.kind.noun(),
        key: r.key.clone(),
        pos: r.pos.clone(),
    })
}
