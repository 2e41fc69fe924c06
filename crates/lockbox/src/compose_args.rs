//! Compose's own command line after `lockbox compose … --`, read as Compose reads it.
//!
//! Compose (v1 and v2) takes its global options only before its command:
//! `docker compose -p shop up -d`, never `docker compose up -p shop` (there `-p` is
//! `run`'s `--publish`, or an error). So the options that choose the project — `-p`, `-f`,
//! `--project-directory`, `--env-file` — are looked for there, lifted out and used by lockbox
//! to load the same project Compose will run; `--profile` and the other global options pass
//! through to Compose. An option lockbox cannot place, or a command it does not know, is
//! refused rather than guessed at: a wrong guess could start services without their secrets.
use std::ffi::OsString;
use std::path::PathBuf;

/// Global options that take a value, by every spelling Compose v1 or v2 accepts.
const VALUED: [&str; 13] = [
    "--ansi",
    "--log-level",
    "-H",
    "--host",
    "--context",
    "-c",
    "--profile",
    "--parallel",
    "--progress",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--env-file",
];
/// Global options without a value.
const FLAGS: [&str; 12] = [
    "--verbose",
    "--no-ansi",
    "--tls",
    "--tlsverify",
    "--skip-hostname-check",
    "--compatibility",
    "--dry-run",
    "--all-resources",
    "-v",
    "--version",
    "-h",
    "--help",
];

/// Compose's commands (v1 and v2), and which of them create containers.
const COMMANDS: [&str; 37] = [
    "alpha", "attach", "build", "commit", "config", "cp", "create", "down", "events", "exec",
    "export", "help", "images", "kill", "logs", "ls", "pause", "port", "ps", "publish", "pull",
    "push", "restart", "rm", "run", "scale", "start", "stats", "stop", "top", "unpause", "up",
    "version", "viz", "wait", "watch", "bridge",
];
const CREATING: [&str; 5] = ["up", "run", "create", "scale", "watch"];

/// What the arguments after `--` say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ComposeLine {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) project_name: Option<String>,
    pub(crate) project_directory: Option<PathBuf>,
    pub(crate) env_file: Option<PathBuf>,
    /// Compose's command (`up`, `run`, …), if there is one.
    pub(crate) command: Option<String>,
    /// The arguments to hand to Compose, without the lifted options.
    pub(crate) rest: Vec<OsString>,
}

impl ComposeLine {
    /// Whether Compose will create containers (so their secrets must be ready first).
    pub(crate) fn creates(&self) -> bool {
        self.command
            .as_deref()
            .is_some_and(|c| CREATING.contains(&c))
    }
}

/// `--opt value`, `--opt=value`, `-o value`, `-ovalue` and `-o=value`: the value of `name`
/// (long) or `short` at `args[i]`, and how many arguments it used.
fn value_of(
    args: &[String],
    i: usize,
    long: &str,
    short: Option<&str>,
) -> Option<(Option<String>, usize)> {
    let a = &args[i];
    if a == long || short.is_some_and(|s| a == s) {
        return Some((args.get(i + 1).cloned(), 2));
    }
    if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
        return Some((Some(v.to_owned()), 1));
    }
    if let Some(s) = short
        && let Some(v) = a.strip_prefix(s)
        && !a.starts_with("--")
    {
        return Some((Some(v.strip_prefix('=').unwrap_or(v).to_owned()), 1));
    }
    None
}

/// Reads Compose's global options and command from the arguments after `--`.
pub(crate) fn read(args: &[OsString]) -> Result<ComposeLine, String> {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut line = ComposeLine::default();
    let mut i = 0;
    while i < text.len() {
        let a = text[i].as_str();
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        let missing = |opt: &str| format!("compose: {opt} needs a value");
        if let Some((v, used)) = value_of(&text, i, "--project-name", Some("-p")) {
            let v = v.ok_or_else(|| missing("-p"))?;
            if line.project_name.replace(v).is_some() {
                return Err("compose: -p/--project-name is given twice".into());
            }
            i += used;
            continue;
        }
        if let Some((v, used)) = value_of(&text, i, "--file", Some("-f")) {
            line.files.push(v.ok_or_else(|| missing("-f"))?.into());
            i += used;
            continue;
        }
        if let Some((v, used)) = value_of(&text, i, "--project-directory", None) {
            let v = v.ok_or_else(|| missing("--project-directory"))?;
            if line.project_directory.replace(v.into()).is_some() {
                return Err("compose: --project-directory is given twice".into());
            }
            i += used;
            continue;
        }
        if let Some((v, used)) = value_of(&text, i, "--env-file", None) {
            let v = v.ok_or_else(|| missing("--env-file"))?;
            if line.env_file.replace(v.into()).is_some() {
                return Err(
                    "compose: lockbox compose reads one --env-file (put it before --: lockbox compose --env-file FILE -- …)"
                        .into(),
                );
            }
            i += used;
            continue;
        }
        let name = a.split('=').next().unwrap_or(a);
        if VALUED.contains(&name) {
            let used = if a.contains('=') { 1 } else { 2 };
            line.rest
                .extend(args[i..(i + used).min(args.len())].iter().cloned());
            i += used;
            continue;
        }
        if FLAGS.contains(&a) {
            line.rest.push(args[i].clone());
            i += 1;
            continue;
        }
        return Err(format!(
            "compose: unknown Compose option {a} before the command: lockbox cannot tell whether it takes a value, so it cannot find the command. Compose's project options go before --: lockbox compose [-f FILE]… [-p NAME] [--project-directory DIR] [--env-file FILE] -- [--profile P] COMMAND …"
        ));
    }
    if let Some(c) = text.get(i).filter(|c| c.as_str() != "--") {
        if !COMMANDS.contains(&c.as_str()) {
            return Err(format!(
                "compose: unknown Compose command {c}: lockbox knows {}",
                COMMANDS.join(", ")
            ));
        }
        line.command = Some(c.clone());
    }
    line.rest.extend(args[i..].iter().cloned());
    Ok(line)
}

/// lockbox's own option and the same one after `--`: one value, or a refusal naming both.
pub(crate) fn merge<T: PartialEq + std::fmt::Debug>(
    opt: &str,
    before: Option<T>,
    after: Option<T>,
) -> Result<Option<T>, String> {
    match (before, after) {
        (Some(b), Some(a)) if b != a => Err(format!(
            "compose: {opt} is given before -- ({b:?}) and after it ({a:?}): give it once"
        )),
        (b, a) => Ok(a.or(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn project_options_before_the_command_are_lifted() {
        let l = read(&args("-p shop -f a.yaml --file=b.yaml --project-directory d --env-file e --profile web up -d")).unwrap();
        assert_eq!(l.project_name.as_deref(), Some("shop"));
        assert_eq!(l.files, [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
        assert_eq!(l.project_directory, Some(PathBuf::from("d")));
        assert_eq!(l.env_file, Some(PathBuf::from("e")));
        assert_eq!(l.command.as_deref(), Some("up"));
        assert_eq!(l.rest, args("--profile web up -d"));
        assert!(l.creates());
        for spelled in ["-pshop up", "-p=shop up", "--project-name=shop up"] {
            assert_eq!(
                read(&args(spelled)).unwrap().project_name.as_deref(),
                Some("shop"),
                "{spelled}"
            );
        }
    }

    #[test]
    fn options_after_the_command_are_the_commands() {
        // `run -p` is --publish; the container's own -f is its own.
        let l = read(&args("run -p 80:80 app sh -f x")).unwrap();
        assert_eq!(l.project_name, None);
        assert!(l.files.is_empty());
        assert_eq!(l.rest, args("run -p 80:80 app sh -f x"));
        let l = read(&args("--ansi never ps")).unwrap();
        assert_eq!(l.command.as_deref(), Some("ps"));
        assert!(!l.creates());
    }

    #[test]
    fn what_cannot_be_placed_is_refused() {
        assert!(
            read(&args("--bogus up"))
                .unwrap_err()
                .contains("unknown Compose option --bogus")
        );
        assert!(
            read(&args("shop up"))
                .unwrap_err()
                .contains("unknown Compose command shop")
        );
        assert!(
            read(&args("-p a -p b up"))
                .unwrap_err()
                .contains("given twice")
        );
        assert!(read(&args("-p")).unwrap_err().contains("-p needs a value"));
        assert_eq!(
            merge("-p", Some("a".to_owned()), Some("b".to_owned())).unwrap_err(),
            "compose: -p is given before -- (\"a\") and after it (\"b\"): give it once"
        );
        assert_eq!(merge("-p", Some(1), Some(1)).unwrap(), Some(1));
    }
}
