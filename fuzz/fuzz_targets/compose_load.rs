//! The Compose loader (`lockbox-compose`) on arbitrary files: YAML (anchors, merge keys),
//! `.env`, interpolation, the merge of an override file, the model's checks and the rewrite.
//!
//! The crate has no entry that loads a project from a string: `load` reads the files a
//! project directory holds, as `lockbox compose` does. So the input is split on NUL bytes
//! into `compose.yaml`, `.env` and `compose.override.yaml` (missing parts: no such file),
//! written to a fresh directory that `load` discovers as Compose would. The same text also
//! goes straight to `parse`, `interpolate` and `parse_env_file`.
//!
//! Must hold for any input: no panic; every error and warning formats; a loaded project
//! goes through `model`, `resolve` and `rewrite`, and the rewritten project (JSON, which
//! is what Compose is then given) parses again.
#![no_main]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use lockbox_compose::{
    Kind, LoadOptions, ServiceDelivery, Source, interpolate, load, model, parse, parse_env_file,
    resolve, rewrite,
};

fn environ() -> BTreeMap<String, String> {
    [
        ("HOME", "/home/fuzz"),
        ("A", "a"),
        ("EMPTY", ""),
        ("PORT", "8080"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `COMPOSE_FILE` (set in the `.env`) may name any path; keep the loader inside the
/// project directory, so that the run never reads `/dev/zero` or waits on a FIFO.
fn stays_inside(env: &str) -> bool {
    let Ok(vars) = parse_env_file(env) else {
        return true;
    };
    let Some(list) = vars.get("COMPOSE_FILE") else {
        return true;
    };
    list.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:;, ".contains(c))
        && !list.contains("..")
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0).map(String::from_utf8_lossy);
    let compose = parts.next().unwrap_or_default();
    let env = parts.next();
    let over = parts.next();

    // The pieces on their own.
    let vars = environ();
    let lookup = |k: &str| vars.get(k).cloned();
    if let Err(e) = parse("compose.yaml", &compose) {
        let _ = format!("{}: {}", e.pos, e.message);
    }
    let _ = interpolate(&compose, &lookup, &mut |_| {}).map_err(|e| e.to_string());
    if let Some(env) = &env {
        let _ = parse_env_file(env);
        if !stays_inside(env) {
            return;
        }
    }

    // The whole loader, as `lockbox compose` runs it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), compose.as_bytes()).unwrap();
    if let Some(env) = &env {
        std::fs::write(dir.path().join(".env"), env.as_bytes()).unwrap();
    }
    if let Some(over) = &over {
        std::fs::write(dir.path().join("compose.override.yaml"), over.as_bytes()).unwrap();
    }
    let opts = LoadOptions {
        working_dir: dir.path().to_path_buf(),
        environ: vars.clone(),
        ..LoadOptions::default()
    };
    let project = match load(&opts) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for w in &project.warnings {
        let _ = w.to_string();
    }
    let m = match model(&project) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for w in &m.warnings {
        let _ = w.to_string();
    }
    for r in &m.resources {
        // Half the names "are in lockbox", half are not.
        match resolve(r, &|_: Kind, name: &str| name.len() % 2 == 0) {
            Ok(Source::File { path }) => {
                assert!(path.is_absolute(), "file source {path:?} is relative")
            }
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let published = Path::new("/run/lockbox/w/published");
    let deliveries: BTreeMap<String, ServiceDelivery> = m
        .services
        .iter()
        .map(|s| {
            let absolute: Vec<(PathBuf, String)> = s
                .references
                .iter()
                .filter(|r| !r.target.starts_with("/run/secrets/"))
                .map(|r| {
                    (
                        published.join(".lockbox-abs").join(&r.target[1..]),
                        r.target.clone(),
                    )
                })
                .collect();
            let d = ServiceDelivery::new(
                format!("w-{}", s.service),
                published,
                &s.references,
                &absolute,
            );
            (s.service.clone(), d)
        })
        .collect();
    let out = rewrite(&project, &deliveries).to_string();
    if let Err(e) = parse("rewritten.json", &out) {
        panic!(
            "the rewritten project does not parse: {}: {}\n{out}",
            e.pos, e.message
        );
    }
});
