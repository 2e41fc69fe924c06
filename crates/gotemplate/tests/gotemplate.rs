//! The engine against the real docker CLI, and Go's documented semantics.
//!
//! `docker-recorded.json` holds what the docker CLI 28.2.2 printed (stdout, stderr) for
//! each template, run against a real single-node Swarm on Engine 26.1.5: `docker secret
//! inspect --format T`, `docker config inspect --format T`, `docker secret ls --format T`
//! and `docker config ls --format T` on two secrets and two configs, together with the
//! objects themselves as `docker … inspect` printed them. `record-docker.py` (beside this
//! file) made it; run it again (as root, with a dockerd answering) to re-record. Here each
//! template runs over the same objects and must print the same bytes, except the few
//! cases in `KNOWN_DIFFERENCES`, where docker prints a Go struct or a `[]byte` that JSON
//! data cannot stand for.
mod gotemplate {
    pub(crate) mod docker;
    pub(crate) mod go;
    pub(crate) mod robustness;
}
