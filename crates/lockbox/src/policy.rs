//! `lockbox policy grant|revoke|ls`: who besides root may have which secrets delivered.
//! The daemon decides and audits; this side only shapes the request and the listing.
use clap::{Args, Subcommand};
use lockbox_proto::exit_codes;
use serde_json::{Value, json};

use crate::Exit;
use crate::client::Client;
use crate::format::{own_listing, table};

/// Whom a grant is for: one of `--uid`, `--gid` and `--volumes`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Subject {
    /// A numeric user ID
    #[arg(long, value_name = "UID")]
    uid: Option<u32>,
    /// A group, by name (from the daemon's /etc/group) or number: every process holding it as
    /// primary or supplementary group
    #[arg(long, value_name = "GROUP")]
    gid: Option<String>,
    /// The volume driver's volumes: once any grant names them, `docker volume create -d
    /// lockbox` may name only the secrets such grants cover (before that, any)
    #[arg(long)]
    volumes: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Let a user or group have secrets and configs delivered to its own workloads
    #[command(
        after_help = "Examples:\n  lockbox policy grant --gid devs --use 'app_*'   # every member of devs: secrets named app_…\n  lockbox policy grant --uid 1001 --use db_password\n  lockbox policy grant --volumes --use 'app_*'     # lockbox volumes: only app_… from now on\n\nA grant lets its subject start workloads (lockbox docker run, lockbox compose) with the\nsecrets whose names match PATTERN (* matches any run of name characters). The files are\nowned by the caller and readable by it alone; the subject may also list and inspect the\nnames it covers. A grant never lets anyone see a value otherwise, change or remove anything,\nsee keys, or administer the daemon. Administrators only; audited."
    )]
    Grant {
        #[command(flatten)]
        subject: Subject,
        /// Secret or config names: [a-zA-Z0-9_.-] and * (any run of them)
        #[arg(long = "use", value_name = "PATTERN")]
        pattern: String,
    },
    /// Take a grant back (running workloads keep what they have, and get nothing new)
    #[command(
        after_help = "Examples:\n  lockbox policy revoke --gid devs --use 'app_*'\n\nThe subject and pattern must be exactly those of the grant (lockbox policy ls). Audited."
    )]
    Revoke {
        #[command(flatten)]
        subject: Subject,
        /// The grant's pattern, as given
        #[arg(long = "use", value_name = "PATTERN")]
        pattern: String,
    },
    /// List grants
    #[command(
        alias = "list",
        after_help = "Examples:\n  lockbox policy ls\n  lockbox policy ls --format '{{.Subject}} {{.Pattern}}'\n  lockbox policy ls --format json"
    )]
    Ls {
        /// json, or a Go template over each grant ({{.Subject}} {{.UID}} {{.GID}} {{.Pattern}} {{.CreatedAt}} {{.CreatedBy}}), 'table …' for columns
        #[arg(long)]
        format: Option<String>,
    },
}

fn body(subject: &Subject, pattern: &str) -> Value {
    match (&subject.uid, &subject.gid) {
        (Some(u), _) => json!({"UID": u, "Pattern": pattern}),
        (None, Some(g)) => json!({"Group": g, "Pattern": pattern}),
        (None, None) => json!({"Volumes": subject.volumes, "Pattern": pattern}),
    }
}

pub(crate) async fn policy(c: &Client, cmd: PolicyCmd) -> anyhow::Result<i32> {
    match cmd {
        PolicyCmd::Grant { subject, pattern } => {
            c.post_empty("/v1/policies/grant", &body(&subject, &pattern))
                .await?;
            Ok(0)
        }
        PolicyCmd::Revoke { subject, pattern } => {
            c.post_empty("/v1/policies/revoke", &body(&subject, &pattern))
                .await?;
            Ok(0)
        }
        PolicyCmd::Ls { format } => {
            let all: Vec<Value> = c.get("/v1/policies").await?;
            if format.as_deref() == Some("json") {
                for g in &all {
                    println!("{g}");
                }
                return Ok(0);
            }
            if let Some(f) = format.filter(|f| f != "table") {
                print!(
                    "{}",
                    own_listing(&f, &all).map_err(|e| Exit(exit_codes::USAGE, e))?
                );
                return Ok(0);
            }
            let mut rows = vec![vec![
                "SUBJECT".to_string(),
                "PATTERN".into(),
                "CREATED".into(),
                "BY".into(),
            ]];
            for g in &all {
                let s = |k: &str| g[k].as_str().unwrap_or_default().to_string();
                rows.push(vec![
                    s("Subject"),
                    s("Pattern"),
                    s("CreatedAt"),
                    s("CreatedBy"),
                ]);
            }
            print!("{}", table(&rows));
            Ok(0)
        }
    }
}
