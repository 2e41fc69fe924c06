//! The project Compose actually runs: the user's merged, interpolated model with every
//! `secrets:`/`configs:` reference replaced by read-only binds of lockbox's per-workload tmpfs,
//! and a label tying each container to its workload. Nothing else changes.
//!
//! Layout inside a service's published directory (the atomic writer's, on tmpfs):
//!
//! ```text
//! <published>/db_pw                       /run/secrets/db_pw   (the directory is bound there)
//! <published>/.targets/etc/app/key.pem    /etc/app/key.pem     (a file bind, one per target)
//! ```
//!
//! Binding the directory (not the files) at `/run/secrets` is what lets rotation reach a
//! running container: each name is a symlink through `..data`, resolved at open time inside
//! the container. A file bound elsewhere is resolved when the container starts; it is fresh
//! after a restart.
//!
//! The result holds no value: only host paths of tmpfs directories, so it can be written to
//! a temporary file for Compose to read. Every `$` is doubled on the way out, since Compose
//! interpolates the file again and the values here are already final.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{Reference, ServiceSecrets};
use crate::project::Project;
use crate::yaml::{Node, Value};

/// The label put on every container of a service that receives secrets.
pub const WORKLOAD_LABEL: &str = "lockbox.workload";
/// The label naming the Compose project (for `down` and the event follower).
pub const PROJECT_LABEL: &str = "lockbox.compose.project";

/// Where the directory bound at `/run/secrets` lives inside the published dir for targets
/// outside it.
pub const OTHER_TARGETS_DIR: &str = ".targets";

/// One file to stage for a service: the reference and its path relative to the published
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub reference: Reference,
    pub staged: PathBuf,
}

/// Where each of a service's references goes on its tmpfs.
pub fn staged_files(svc: &ServiceSecrets) -> Vec<StagedFile> {
    svc.references
        .iter()
        .map(|r| {
            let staged = match r.target.strip_prefix("/run/secrets/") {
                Some(rel) => PathBuf::from(rel),
                None => Path::new(OTHER_TARGETS_DIR).join(r.target.trim_start_matches('/')),
            };
            StagedFile {
                reference: r.clone(),
                staged,
            }
        })
        .collect()
}

/// What was set up for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDelivery {
    pub workload: String,
    /// Host path of the published directory (a tmpfs).
    pub published_dir: PathBuf,
    pub files: Vec<StagedFile>,
}

impl ServiceDelivery {
    /// The binds, as `volumes:` short syntax (`host:container:ro`), which every Compose file
    /// version and both Compose implementations accept.
    pub fn volumes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self
            .files
            .iter()
            .any(|f| !f.staged.starts_with(OTHER_TARGETS_DIR))
        {
            out.push(format!("{}:/run/secrets:ro", self.published_dir.display()));
        }
        for f in &self.files {
            if f.staged.starts_with(OTHER_TARGETS_DIR) {
                out.push(format!(
                    "{}:{}:ro",
                    self.published_dir.join(&f.staged).display(),
                    f.reference.target
                ));
            }
        }
        out
    }
}

/// The rewritten project as JSON (which is YAML): `deliveries` by service name.
pub fn rewrite(project: &Project, deliveries: &BTreeMap<String, ServiceDelivery>) -> serde_json::Value {
    let mut root = project.model.clone();
    // Compose must not see what it would deliver itself (bind the host file, or copy into the
    // container layer), nor `name:` (we pass -p) nor extensions (already expanded).
    root.remove("secrets");
    root.remove("configs");
    root.remove("name");
    if let Value::Map(m) = &mut root.value {
        m.retain(|(k, _)| !k.name.starts_with("x-"));
    }
    if let Some(Value::Map(services)) = root.get_mut("services").map(|s| &mut s.value) {
        for (name, svc) in services.iter_mut() {
            svc.remove("secrets");
            svc.remove("configs");
            if let Some(build) = svc.get_mut("build") {
                build.remove("secrets");
            }
            if let Value::Map(m) = &mut svc.value {
                m.retain(|(k, _)| !k.name.starts_with("x-"));
            }
            let Some(d) = deliveries.get(&name.name) else {
                continue;
            };
            let mut volumes = match svc.remove("volumes") {
                Some(Node {
                    value: Value::Seq(v),
                    ..
                }) => v,
                _ => Vec::new(),
            };
            volumes.extend(d.volumes().into_iter().map(Node::str));
            svc.set("volumes", Node::new(Value::Seq(volumes)));
            let mut labels = svc
                .remove("labels")
                .unwrap_or_else(|| Node::new(Value::Map(Vec::new())));
            if !matches!(labels.value, Value::Map(_)) {
                labels = Node::new(Value::Map(Vec::new()));
            }
            labels.set(WORKLOAD_LABEL, Node::str(&d.workload));
            labels.set(PROJECT_LABEL, Node::str(&project.name));
            svc.set("labels", labels);
        }
    }
    root.to_json()
}

/// A stable workload id for a service of a project (what the tmpfs directory and the
/// container label are named after).
pub fn workload_id(project: &str, service: &str) -> String {
    let clean: String = format!("compose-{project}-{service}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(128).collect()
}
