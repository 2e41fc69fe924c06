//! Writes lockbox's labelled scan corpus to a directory and its labels to a JSON file
//! outside it (so no scanner reads the labels), for `bench/scan/run` to score lockbox and
//! its peers on the same files.
//!
//! Usage: `scan-corpus DIR LABELS.json` (DIR must not exist yet).

#[path = "../tests/corpus/corpus.rs"]
mod corpus;

fn main() -> std::process::ExitCode {
    let (Some(dir), Some(labels_path)) = (std::env::args_os().nth(1), std::env::args_os().nth(2))
    else {
        eprintln!("usage: scan-corpus DIR LABELS.json");
        return std::process::ExitCode::from(2);
    };
    let root = std::path::PathBuf::from(dir);
    if root.exists() {
        eprintln!("scan-corpus: {} already exists", root.display());
        return std::process::ExitCode::from(2);
    }
    let samples = match corpus::write_corpus(&root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scan-corpus: writing {}: {e}", root.display());
            return std::process::ExitCode::from(2);
        }
    };
    let labels: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "provider": s.provider,
                "secret": s.secret,
                "dir": s.dir,
                "path": s.path,
            })
        })
        .collect();
    let text = match serde_json::to_string_pretty(&labels) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("scan-corpus: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(&labels_path, text) {
        eprintln!(
            "scan-corpus: writing {}: {e}",
            std::path::Path::new(&labels_path).display()
        );
        return std::process::ExitCode::from(2);
    }
    println!("{} samples in {}", samples.len(), root.display());
    std::process::ExitCode::SUCCESS
}
