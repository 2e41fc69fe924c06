//! `lockbox scan`: finds the secret leaks the Docker secrets guide warns about — secrets in
//! environment variables, build args, image history, Compose files, unignored secret files —
//! plus hard-coded credentials in any text file.
//!
//! The binary wires it with one line: `lockbox_scan::cli::run(&args, &mut stdout, &mut stderr)`.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod checksum;
pub mod cli;
pub mod compose;
pub mod content;
pub mod content_filters;
pub mod content_rules;
pub mod docker;
pub mod dockerfile;
pub mod finding;
pub mod fix;
pub mod fix_plan;
pub mod kubernetes;
pub mod named_rules;
pub mod names;
pub mod output;
pub mod provider_rules;
pub mod rules;
pub mod shell;
pub mod syntax_rules;
pub mod walk;

pub use cli::{SCAN_AFTER_HELP, ScanArgs, run, run_with_store};
pub use finding::{Finding, Redacted, Severity};
pub use fix::SecretStore;
