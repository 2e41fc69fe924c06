//! The command line: one definition that gives parsing, `--help` and completions.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lockbox",
    version,
    about = "Secrets for containers: Swarm's secrets model for docker run, Compose, builds and processes",
    long_about = "lockbox keeps secrets encrypted at rest (a data key per version, wrapped by a key-encryption key), \
delivers them on tmpfs at /run/secrets, versions them under stable names, and audits every change and hand-out \
in a hash-chained log. The 'lockbox secret' and 'lockbox config' commands behave like 'docker secret' and 'docker config'.",
    after_help = "Examples:\n  lockbox daemon &                          # start the daemon (root: /var/lib/lockbox, /run/lockbox/lockbox.sock)\n  printf 's3cr3t' | lockbox secret create db_password -\n  lockbox secret ls\n  printf 'n3w' | lockbox secret rotate db_password -\n  lockbox audit verify\n\nExit codes: 0 success; 1 the daemon refused or failed the request; 2 usage error;\n3 no daemon answers; 4 the daemon is locked; 5 the audit chain is broken.",
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    /// The daemon's socket (unix:///path or a path)
    #[arg(
        short = 'H',
        long = "host",
        env = "LOCKBOX_HOST",
        global = true,
        value_name = "SOCKET"
    )]
    pub(crate) host: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the lockbox daemon in the foreground
    #[command(
        after_help = "Examples:\n  lockbox daemon\n  lockbox daemon --data-dir /srv/lockbox -H /run/lockbox/lockbox.sock\n  lockbox daemon --autolock      # first start only: seal the keys with an unlock key ('lockbox unlock-key' shows it)
  lockbox daemon --group lockbox # members of group lockbox may connect (not administer)"
    )]
    Daemon(DaemonArgs),
    /// Manage secrets (values are never shown back)
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Manage configs (non-sensitive data, shown by inspect)
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Read and verify the audit log
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Unlock a daemon whose keys are sealed (autolock)
    #[command(
        after_help = "Examples:\n  lockbox unlock                 # prompts for the key\n  lockbox unlock < keyfile"
    )]
    Unlock,
    /// Show the unlock key, or rotate it
    #[command(name = "unlock-key")]
    UnlockKey {
        /// Make a new unlock key and print it
        #[arg(long)]
        rotate: bool,
        /// Print only the key
        #[arg(short, long)]
        quiet: bool,
    },
    /// Turn autolock on or off
    #[command(subcommand)]
    Autolock(AutolockCmd),
    /// Manage the key-encryption key
    #[command(subcommand)]
    Kek(KekCmd),
    /// Show the daemon's state
    Info {
        /// json, or a Go template over the daemon's state ({{.Secrets}} {{.LockState}} {{.KeyMode}}…)
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Show the client's and the daemon's version
    Version {
        /// A Go template over {"Client": {"Version"}, "Server": the daemon's answer} ({{.Client.Version}}, {{.Server.Version}}), or json
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Stream events (create, update, remove, rotate, hand-out) as JSON lines
    Events {
        /// A Go template over each event ({{.Type}} {{.Action}} {{.Actor.Attributes.name}}…), or json
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Find the secret leaks the Docker guides warn about (Compose, Dockerfiles, scripts, content, images)
    #[command(after_help = lockbox_scan::cli::SCAN_AFTER_HELP)]
    Scan(lockbox_scan::cli::ScanArgs),
    /// Manage the cluster: init, join, leave, join tokens, the managers' unlock key
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCmd),
    /// Manage the cluster's nodes (on a manager)
    #[command(subcommand)]
    Node(crate::cluster::NodeCmd),
    /// Manage services: named sets of secret references with a rotation policy
    #[command(subcommand)]
    Service(crate::delivery::ServiceCmd),
    /// Grant users or groups the use of secrets by name pattern (administrators only)
    #[command(subcommand)]
    Policy(crate::policy::PolicyCmd),
    /// Run a process with its secrets on a private read-only tmpfs at /run/secrets
    Run(crate::delivery::RunArgs),
    /// Docker with secrets: 'lockbox docker run … -- <docker run arguments>'
    #[command(subcommand)]
    Docker(crate::delivery::DockerCmd),
    /// Run a Compose command with secrets and configs on tmpfs: 'lockbox compose [-f FILE]… -- <compose arguments>'
    Compose(crate::compose::ComposeArgs),
    /// Build an image with lockbox secrets for RUN --mount=type=secret: 'lockbox build --secret id=ID -- <docker build arguments>'
    Build(crate::build::BuildArgs),
    /// Write an encrypted, integrity-checked snapshot of the secrets, configs, services and keys (root only)
    #[command(after_help = crate::backup::BACKUP_AFTER_HELP)]
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into a new data directory, offline (no daemon runs on it)
    #[command(after_help = crate::backup::RESTORE_AFTER_HELP)]
    Restore(crate::backup::RestoreArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  lockbox completion bash > /etc/bash_completion.d/lockbox\n  lockbox completion zsh > \"${fpath[1]}/_lockbox\"\n  lockbox completion fish > ~/.config/fish/completions/lockbox.fish"
    )]
    Completion {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Where the store, keys and audit log live [default: /var/lib/lockbox for root, $XDG_DATA_HOME/lockbox otherwise]
    #[arg(long, env = "LOCKBOX_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// On first start, seal the keys with an unlock key (shown to an administrator by 'lockbox unlock-key', never printed by the daemon); every restart then needs 'lockbox unlock'
    #[arg(long)]
    pub(crate) autolock: bool,
    /// Old versions kept per secret besides the current one
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub(crate) keep_versions: u32,
    /// Serve the Docker Engine API (secrets, configs) here, for the stock docker CLI: a socket path or unix:///path; 'none' disables it [default: docker.sock next to the daemon's socket]
    #[arg(long, value_name = "ADDR")]
    pub(crate) docker_api: Option<String>,
    /// Serve the Swarm secret-driver plugin protocol (off unless given) [default path when given without a value: /run/docker/plugins/lockbox.sock]
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "/run/docker/plugins/lockbox.sock")]
    pub(crate) swarm_driver: Option<PathBuf>,
    /// Serve Docker's volume plugin protocol here, so 'docker volume create -d lockbox -o secret=NAME VOL' and 'docker run -v VOL:/run/secrets' deliver secrets with no wrapper; the driver's name is the socket's file name; 'none' disables it [default: /run/docker/plugins/lockbox.sock when the daemon is root and /run/docker/plugins exists, else off]
    #[arg(long, value_name = "PATH")]
    pub(crate) volume_driver: Option<String>,
    /// Let this group's members connect to the sockets (mode 0660; a name or a gid, like dockerd's -G). Members are not administrators: they may only ask for the version until an admin grants more [default: none, the sockets are 0600]
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Members of this group (a name or a gid) administer the daemon, as root and the daemon's own user do
    #[arg(long, value_name = "GROUP")]
    pub(crate) admin_group: Option<String>,
    /// With --autolock on a first start: write the unlock key to this new file (mode 0600) instead of leaving it to 'lockbox unlock-key'
    #[arg(long, value_name = "FILE", requires = "autolock")]
    pub(crate) autolock_key_file: Option<PathBuf>,
    /// The store's page cache, which bounds the daemon's memory as the store grows: bytes or a number with K, M or G (powers of 1024), from 1MiB to 64GiB
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = lockbox_daemon::budget::parse_cache_size)]
    pub(crate) cache_size: u64,
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter
    #[arg(long, env = "LOCKBOX_LOG", default_value = "info,openraft=warn")]
    pub(crate) log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

pub(crate) fn label(raw: &str) -> Result<(String, String), String> {
    let (k, v) = raw.split_once('=').unwrap_or((raw, ""));
    if k.is_empty() {
        return Err(format!("invalid label '{raw}': empty name"));
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(format!("label '{raw}' contains whitespaces"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Secret label (K=V)
    #[arg(short, long = "label", value_name = "K=V", value_parser = label)]
    pub(crate) labels: Vec<(String, String)>,
    /// Template driver (golang): the value is a Go template, rendered for each consumer at delivery
    #[arg(long, value_name = "DRIVER")]
    pub(crate) template_driver: Option<String>,
    /// The name consumers refer to it by
    pub(crate) name: String,
    /// A file, or - for standard input
    pub(crate) file: String,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Only show IDs
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Filter output (id=, name=, names=, label=K or label=K=V)
    #[arg(short, long = "filter", value_name = "K=V")]
    pub(crate) filters: Vec<String>,
    /// json, table, or a Go template as docker takes it ({{.ID}} {{.Name}} {{.Driver}} {{.CreatedAt}} {{.UpdatedAt}} {{.Labels}} {{.Label "k"}}; 'table …' adds a header and columns)
    #[arg(long)]
    pub(crate) format: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Human-readable output
    #[arg(long)]
    pub(crate) pretty: bool,
    /// json, or a Go template over the object as docker's inspect runs it ({{.Spec.Name}}, {{json .Spec.Labels}}, {{printf "%s" .ID}}…)
    #[arg(short, long)]
    pub(crate) format: Option<String>,
    /// Names, IDs or ID prefixes
    #[arg(required = true, value_name = "NAME|ID")]
    pub(crate) names: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCmd {
    /// Create a secret from a file or standard input
    #[command(
        after_help = "Examples:\n  printf 's3cr3t' | lockbox secret create db_password -\n  lockbox secret create --label env=prod tls_key ./server.key"
    )]
    Create(CreateArgs),
    /// List secrets
    #[command(
        alias = "list",
        after_help = "Examples:\n  lockbox secret ls\n  lockbox secret ls --filter name=db_ --filter label=env=prod\n  lockbox secret ls --format '{{.Name}}'"
    )]
    Ls(LsArgs),
    /// Show secrets' metadata (never their values)
    #[command(
        after_help = "Examples:\n  lockbox secret inspect db_password\n  lockbox secret inspect --pretty db_password\n  lockbox secret inspect --format '{{.Version.Index}}' db_password"
    )]
    Inspect(InspectArgs),
    /// Remove secrets (all their versions are destroyed)
    #[command(
        alias = "remove",
        after_help = "Examples:\n  lockbox secret rm db_password old_token"
    )]
    Rm {
        /// Names, IDs or ID prefixes
        #[arg(required = true, value_name = "NAME|ID")]
        names: Vec<String>,
    },
    /// Change a secret's labels
    #[command(
        after_help = "Examples:\n  lockbox secret update db_password --label-add owner=team-a --label-rm env"
    )]
    Update(UpdateArgs),
    /// Add a new version under the same name (running consumers get it)
    #[command(
        after_help = "Examples:\n  printf 'n3w' | lockbox secret rotate db_password -\n  lockbox secret rotate --keep 3 tls_key ./new.key"
    )]
    Rotate {
        /// Old versions to keep besides the new one [default: the daemon's --keep-versions]
        #[arg(long, value_name = "N")]
        keep: Option<u32>,
        /// The secret's name, ID or ID prefix
        #[arg(value_name = "NAME|ID")]
        name: String,
        /// A file, or - for standard input
        file: String,
    },
    /// List a secret's versions
    #[command(after_help = "Examples:\n  lockbox secret versions db_password")]
    Versions {
        /// The secret's name, ID or ID prefix
        #[arg(value_name = "NAME|ID")]
        name: String,
        /// json, or a Go template over each version ({{.Version}} {{.CreatedAt}} {{.Size}} {{.CreatedBy}} {{.Current}}), 'table …' for columns
        #[arg(long)]
        format: Option<String>,
    },
    /// Make an older version current again (as a new version)
    #[command(after_help = "Examples:\n  lockbox secret rollback db_password 3")]
    Rollback {
        /// The secret's name, ID or ID prefix
        #[arg(value_name = "NAME|ID")]
        name: String,
        /// The version to make current again (see 'lockbox secret versions')
        version: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Add or change a label (K=V)
    #[arg(long = "label-add", value_name = "K=V", value_parser = label)]
    pub(crate) add: Vec<(String, String)>,
    /// Remove a label
    #[arg(long = "label-rm", value_name = "K")]
    pub(crate) rm: Vec<String>,
    /// The secret's name, ID or ID prefix
    #[arg(value_name = "NAME|ID")]
    pub(crate) name: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCmd {
    /// Create a config from a file or standard input
    #[command(after_help = "Examples:\n  lockbox config create nginx_conf ./nginx.conf")]
    Create(CreateArgs),
    /// List configs
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show configs, data included
    Inspect(InspectArgs),
    /// Remove configs
    #[command(alias = "remove")]
    Rm {
        /// Names, IDs or ID prefixes
        #[arg(required = true, value_name = "NAME|ID")]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// List audit records
    #[command(
        after_help = "Examples:\n  lockbox audit ls\n  lockbox audit ls --since 1h\n  lockbox audit ls --since 2026-11-26T00:00:00Z --format json"
    )]
    Ls {
        /// Only records at or after this time (RFC 3339, Unix seconds, or 10m/2h/3d ago)
        #[arg(long)]
        since: Option<String>,
        /// json (one record a line), or a Go template over each record ({{.seq}} {{.time}} {{.action}} {{.actor}} {{.name}}…), 'table …' for columns
        #[arg(long)]
        format: Option<String>,
    },
    /// Check the hash chain; exit 5 and name the line if it is broken
    Verify,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AutolockCmd {
    /// Seal the keys with a new unlock key (printed once)
    Enable,
    /// Keep the keys in a 0600 file again
    Disable,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KekCmd {
    /// Make a new key-encryption key and rewrap every data key under it
    Rotate,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every subcommand and every argument (flags and positionals, at every depth) says
    /// what it is in `--help`. clap's own `--help`/`--version` are left out.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                let text = arg
                    .get_help()
                    .or(arg.get_long_help())
                    .map(|h| h.to_string());
                if text.is_none_or(|t| t.trim().is_empty()) {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                let about = sub
                    .get_about()
                    .or(sub.get_long_about())
                    .map(|h| h.to_string());
                if about.is_none_or(|t| t.trim().is_empty()) {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let cmd = Cli::command();
        let mut missing = Vec::new();
        walk(&cmd, "lockbox", &mut missing);
        assert!(
            missing.is_empty(),
            "{} without help text:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
}
