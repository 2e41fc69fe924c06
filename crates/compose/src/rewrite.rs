//! The project Compose actually runs: the user's merged, interpolated model with every
//! `secrets:`/`configs:` reference replaced by read-only binds of lockbox's per-workload tmpfs,
//! and a label tying each container to its workload. Nothing else changes.
//!
//! Layout inside a service's published directory (the atomic writer's, on tmpfs):
//!
//! ```text
//! <published>/db_pw                       /run/secrets/db_pw   (the directory is bound there)
//! <published>/.lockbox-abs/etc/app/key.pem /etc/app/key.pem    (a file bind, one per target)
//! ```
//!
//! Binding the directory (not the files) at `/run/secrets` is what lets rotation reach a
//! running container: each name is a symlink through `..data`, resolved at open time inside
//! the container. A file bound elsewhere is resolved when the container starts; the daemon
//! swaps those binds inside the container on rotation (the layout is the daemon's: it answers
//! with the host path of each absolute target).
//!
//! The result holds no value: only host paths of tmpfs directories, so it can be written to
//! a temporary file for Compose to read. Every `$` is doubled on the way out, since Compose
//! interpolates the file again and the values here are already final.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::Reference;
use crate::project::Project;
use crate::yaml::{Node, Value};

/// The label put on every container of a service that receives secrets.
pub const WORKLOAD_LABEL: &str = "lockbox.workload";
/// The label naming the Compose project (for `down` and the event follower).
pub const PROJECT_LABEL: &str = "lockbox.compose.project";

/// What was set up for one service: the daemon's answer for its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDelivery {
    pub workload: String,
    /// Host directory (a tmpfs) bound read-only at `/run/secrets`, if the service has
    /// targets there.
    pub secrets_dir: Option<PathBuf>,
    /// Single-file binds (host path, container path) for the other targets.
    pub files: Vec<(PathBuf, String)>,
}

impl ServiceDelivery {
    /// The delivery for `refs` given the published directory and the daemon's host path of
    /// each target outside `/run/secrets`.
    pub fn new(
        workload: impl Into<String>,
        published_dir: &Path,
        refs: &[Reference],
        absolute: &[(PathBuf, String)],
    ) -> Self {
        let under_secrets = |t: &str| t.starts_with("/run/secrets/");
        ServiceDelivery {
            workload: workload.into(),
            secrets_dir: refs
                .iter()
                .any(|r| under_secrets(&r.target))
                .then(|| published_dir.to_path_buf()),
            files: absolute
                .iter()
                .filter(|(_, t)| !under_secrets(t))
                .cloned()
                .collect(),
        }
    }

    /// The binds, as `volumes:` short syntax (`host:container:ro`), which every Compose file
    /// version and both Compose implementations accept.
    pub fn volumes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = &self.secrets_dir {
            out.push(format!("{}:/run/secrets:ro", d.display()));
        }
        for (host, target) in &self.files {
            out.push(format!("{}:{target}:ro", host.display()));
        }
        out
    }
}

/// The rewritten project as JSON (which is YAML): `deliveries` by service name.
pub fn rewrite(
    project: &Project,
    deliveries: &BTreeMap<String, ServiceDelivery>,
) -> serde_json::Value {
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
            // Compose resolves `extends.file` against the file that names it, which is now a
            // temporary file elsewhere: make it absolute (against the project directory).
            if let Some(file) = svc.get_mut("extends").and_then(|e| e.get_mut("file"))
                && let Value::Str(f) = &mut file.value
                && !Path::new(f.as_str()).is_absolute()
            {
                *f = project.directory.join(&*f).display().to_string();
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
