//! `lockbox compose`'s library: a narrow Compose model and the project rewrite.
//!
//! * [`load`]: which files (`-f`, `COMPOSE_FILE`, default names), `.env` and `--env-file`,
//!   interpolation, YAML anchors and merge keys, the merge of several files, the project name.
//! * [`model()`]: top-level `secrets:`/`configs:`, service references (short and long syntax,
//!   relative and absolute targets, uid/gid/mode), `build.secrets`, with Compose's checks and
//!   lockbox's (`mode: 440` warns; a diagnostic names file, line, column and key).
//! * [`resolve`] and [`read_local`]: where a value comes from (lockbox, a file, a variable,
//!   inline content) and reading the local ones into memory.
//! * [`rewrite()`]: the project Compose runs, with binds of lockbox's tmpfs instead of
//!   Compose's own secret delivery, and nothing else changed.
//!
//! No value ever goes into the rewritten project; values only pass through [`Zeroizing`]
//! buffers on their way to a tmpfs.
#![forbid(unsafe_code)]

mod env;
mod interpolate;
mod model;
mod project;
mod rewrite;
mod yaml;

use zeroize::Zeroizing;

pub use env::{EnvFileError, parse_env_file};
pub use interpolate::{InterpolationError, interpolate};
pub use model::{
    BuildSecret, Kind, Model, Reference, ResolveError, Resource, ServiceSecrets, Source, model,
    resolve,
};
pub use project::{Diagnostic, LoadError, LoadOptions, Project, load, normalize_project_name};
pub use rewrite::{PROJECT_LABEL, ServiceDelivery, WORKLOAD_LABEL, rewrite};
pub use yaml::{Key, Node, Pos, SyntaxError, Value, parse};

/// Docker's bound on a secret's size (500 KiB).
pub const MAX_VALUE_SIZE: usize = 500 * 1024;

/// Why a local value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{kind} {key}: cannot read {path}: {source}")]
    File {
        kind: &'static str,
        key: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable \"{var}\" required by {kind} \"{key}\" is not set")]
    Unset {
        kind: &'static str,
        key: String,
        var: String,
    },
    #[error("{kind} {key}: {size} bytes is more than the 500 KiB a secret may hold")]
    TooBig {
        kind: &'static str,
        key: String,
        size: usize,
    },
    #[error("{kind} {key} comes from lockbox, not from a local source")]
    NotLocal { kind: &'static str, key: String },
}

/// Reads a file, environment or inline value into memory.
pub fn read_local(
    project: &Project,
    resource: &Resource,
    source: &Source,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let kind = resource.kind.noun();
    let key = resource.key.clone();
    let data = match source {
        Source::File { path } => {
            Zeroizing::new(std::fs::read(path).map_err(|e| ReadError::File {
                kind,
                key: key.clone(),
                path: path.clone(),
                source: e,
            })?)
        }
        Source::Environment { var } => match project.environment.get(var) {
            Some(v) => Zeroizing::new(v.as_bytes().to_vec()),
            None => {
                return Err(ReadError::Unset {
                    kind,
                    key,
                    var: var.clone(),
                });
            }
        },
        Source::Content { text } => Zeroizing::new(text.as_bytes().to_vec()),
        Source::Lockbox { .. } => return Err(ReadError::NotLocal { kind, key }),
    };
    if data.len() > MAX_VALUE_SIZE {
        return Err(ReadError::TooBig {
            kind,
            key,
            size: data.len(),
        });
    }
    Ok(data)
}
