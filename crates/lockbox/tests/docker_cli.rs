//! The stock `docker` CLI (every one installed: the one first on PATH and Debian's
//! `/usr/bin/docker`) against lockbox's Docker API socket, compared with the same CLI
//! against a real single-node Swarm engine; the Swarm secret-driver plugin on a real
//! Swarm; and bad input on the Docker API socket.
//!
//! The Swarm engine is a throwaway `dockerd` in its own network and mount namespaces
//! (`bench/docker-api/swarm-engine.sh`), so the machine's own engine is left alone.
//! It needs root, `ip`, `dockerd` and the test image; without them these tests say so and
//! skip, except under `CI=true`, where a missing prerequisite is a failure.
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::{Daemon, Out, http_full, marker};

const IMAGE: &str = "lockbox-test/busybox:latest";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (prints why) outside CI; fails under CI.
fn missing(what: &str) {
    assert!(
        !ci(),
        "CI=true and {what}: a missing prerequisite is a failure"
    );
    eprintln!("SKIPPED: {what}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// The docker CLIs to test: the one first on PATH, and Debian's when it is another binary.
fn docker_clis() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = which("docker") {
        out.push(p);
    }
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file()
        && !out
            .iter()
            .any(|p| p.canonicalize().ok() == debian.canonicalize().ok())
    {
        out.push(debian);
    }
    if out.is_empty() {
        missing("no docker CLI is installed");
    }
    out
}

/// The docker CLI first on PATH (tests that need only one).
fn first_cli() -> PathBuf {
    which("docker").unwrap_or_else(|| panic!("no docker CLI on PATH"))
}

/// One docker CLI pointed at one engine, with a private config directory (no contexts,
/// no credentials of the machine's user).
struct Cli {
    bin: PathBuf,
    host: String,
    config: tempfile::TempDir,
}

impl Cli {
    fn new(bin: &Path, sock: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            host: format!("unix://{}", sock.display()),
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut cmd = Command::new(&self.bin);
        // Relative file arguments are read from the CLI's private directory.
        cmd.args(args)
            .current_dir(self.config.path())
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert_eq!(o.code, 0, "docker {args:?}: {}", o.stderr);
        o.stdout
    }

    fn version(&self) -> String {
        let o = Command::new(&self.bin)
            .args(["version", "--format", "{{.Client.Version}}"])
            .env("DOCKER_HOST", "unix:///nonexistent")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }
}

/// A throwaway single-node Swarm engine; stopped and removed on drop, even on failure.
struct SwarmEngine {
    dir: PathBuf,
    sock: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/docker-api/swarm-engine.sh")
}

impl SwarmEngine {
    fn start(tag: &str) -> Option<Self> {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !is_root {
            missing("a throwaway Swarm engine needs root");
            return None;
        }
        for tool in ["ip", "dockerd", "nsenter", "unshare", "docker"] {
            if which(tool).is_none() {
                missing(&format!("{tool} is not installed"));
                return None;
            }
        }
        let has_image = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_image {
            missing(&format!(
                "the machine's engine has no {IMAGE} (scripts/prereqs.sh builds it)"
            ));
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lbx{}{tag}", std::process::id()));
        let me = Self {
            sock: dir.join("docker.sock"),
            dir,
        };
        let o = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&me.dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "throwaway Swarm engine did not start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Some(me)
    }

    fn plugins(&self) -> PathBuf {
        self.dir.join("plugins")
    }
}

impl Drop for SwarmEngine {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// The daemon's Docker API socket, once it answers: the daemon binds it just after its
/// own socket, which is what `Daemon::start` waits for.
pub(crate) fn docker_sock(d: &Daemon) -> PathBuf {
    let p = d.dir.path().join("docker.sock");
    wait_for(20, "the Docker API socket", || {
        UnixStream::connect(&p).ok().map(|_| ())
    });
    p
}

// ----- normalisation of what differs by nature (IDs, times, store indexes) -----

fn is_id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Replaces every 25-character base36 word (an object or node ID) with `<ID1>`, `<ID2>`…
/// in order of first appearance, so that "the same ID twice" is still visible.
fn redact_ids(s: &str, ids: &mut HashMap<String, String>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_id_char(chars[i]) && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && is_id_char(chars[j]) {
                j += 1;
            }
            let boundary = j == chars.len() || !chars[j].is_ascii_alphanumeric();
            let word: String = chars[i..j].iter().collect();
            if j - i == 25 && boundary && word.chars().any(|c| c.is_ascii_digit()) {
                let n = ids.len() + 1;
                let tag = ids.entry(word).or_insert_with(|| format!("<ID{n}>"));
                out.push_str(tag);
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Times (RFC 3339, the CLI's `--pretty` form, "… ago") and `"Index": N`.
fn redact_times(s: &str) -> String {
    let mut lines = Vec::new();
    for line in s.lines() {
        let mut l = String::new();
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // 2026-11-26T20:03:27.685338691Z or 2026-11-26 20:03:27.685338691 +0000 utc
            if i + 19 <= b.len()
                && b[i..i + 4].iter().all(u8::is_ascii_digit)
                && b[i + 4] == b'-'
                && b[i + 7] == b'-'
                && (b[i + 10] == b'T' || b[i + 10] == b' ')
                && b[i + 13] == b':'
            {
                let mut j = i + 19;
                while j < b.len() && (b[j] == b'.' || b[j].is_ascii_digit()) {
                    j += 1;
                }
                if line[j..].starts_with('Z') {
                    j += 1;
                } else if line[j..].starts_with(" +0000 utc") {
                    j += " +0000 utc".len();
                } else if line[j..].starts_with(" +0000 UTC") {
                    j += " +0000 UTC".len();
                }
                l.push_str("<TIME>");
                i = j;
                continue;
            }
            l.push(b[i] as char);
            i += 1;
        }
        lines.push(redact_ago(&l));
    }
    let mut out = lines.join("\n");
    if s.ends_with('\n') {
        out.push('\n');
    }
    redact_index(&out)
}

fn redact_ago(l: &str) -> String {
    let mut out = l.to_owned();
    for phrase in [
        "Less than a second ago",
        "About a minute ago",
        "About an hour ago",
    ] {
        out = out.replace(phrase, "<AGO>");
    }
    // "N seconds ago" / "N minutes ago"
    let words: Vec<&str> = out.split(' ').collect();
    let mut res: Vec<String> = Vec::new();
    let mut k = 0;
    while k < words.len() {
        if k + 2 < words.len()
            && words[k].parse::<u32>().is_ok()
            && matches!(words[k + 1], "second" | "seconds" | "minute" | "minutes")
            && words[k + 2] == "ago"
        {
            res.push("<AGO>".into());
            k += 3;
        } else {
            res.push(words[k].to_owned());
            k += 1;
        }
    }
    // Table padding (the CLI's tabwriter) follows the widths of these cells, which differ
    // by nature, headers included: runs of spaces inside a line become one. Indentation
    // (JSON, pretty output) stays.
    let joined = res.join(" ");
    let body = joined.trim_start_matches(' ');
    let indent = &joined[..joined.len() - body.len()];
    let mut out = indent.to_owned();
    let mut prev_space = false;
    for ch in body.chars() {
        if ch == ' ' && prev_space {
            continue;
        }
        prev_space = ch == ' ';
        out.push(ch);
    }
    out
}

fn redact_index(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("\"Index\":") {
        let (head, tail) = rest.split_at(p + "\"Index\":".len());
        out.push_str(head);
        let digits = tail.trim_start();
        let skipped = tail.len() - digits.len();
        let n = digits.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&tail[..skipped]);
        out.push_str("<N>");
        rest = &digits[n..];
    }
    out.push_str(rest);
    out
}

/// One step of a scenario: what the CLI was asked and what it answered, redacted.
fn transcript_line(args: &[&str], o: &Out, ids: &mut HashMap<String, String>) -> String {
    let mut r = |s: &str| redact_times(&redact_ids(s, ids));
    let out = r(&o.stdout);
    let err = if o.stderr.is_empty() {
        String::new()
    } else {
        format!("stderr: {}", r(&o.stderr))
    };
    // An ID prefix on the command line is shown as which ID it abbreviates.
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            ids.iter()
                .find(|(id, _)| a.len() >= 4 && a.len() < id.len() && id.starts_with(a))
                .map_or_else(
                    || (*a).to_owned(),
                    |(_, tag)| format!("{tag}[..{}]", a.len()),
                )
        })
        .collect();
    format!(
        "$ docker {}\n{out}{err}[exit {}]\n",
        shown.join(" "),
        o.code
    )
}

/// The newest API version the engine on `sock` speaks (`GET /version`).
fn server_api(sock: &Path) -> String {
    let (_, _, b) = http_full(sock, "GET", "/version", None, "application/json");
    serde_json::from_str::<serde_json::Value>(&b).unwrap()["ApiVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// lockbox speaks up to Docker 28's API version; the reference engine is Engine 26 (1.45).
/// Where a transcript shows the server's own maximum (its "too new" message, the output of
/// `docker version --format '{{.Server.APIVersion}} …'`), it is compared as `<MAX API>`.
fn redact_max_api(t: &str, api: &str) -> String {
    t.replace(
        &format!("Maximum supported API version is {api}"),
        "Maximum supported API version is <MAX API>",
    )
    .replace(&format!("}}}}\n{api} "), "}}\n<MAX API> ")
}

/// The scenario of the issue, run by one CLI against one engine; it removes everything it
/// creates, so it can run again. Returns the redacted transcript.
fn scenario(cli: &Cli, sock: &Path) -> String {
    std::fs::write(cli.config.path().join("value.txt"), "filedata\n").unwrap();
    let f = "value.txt";
    let mut ids = HashMap::new();
    let mut t = String::new();
    let mut step = |args: &[&str], stdin: Option<&[u8]>| -> Out {
        let o = cli.run(args, stdin);
        t.push_str(&transcript_line(args, &o, &mut ids));
        o
    };
    // secrets
    let one = step(&["secret", "create", "rs_one", "-"], Some(b"s3cr3t"));
    let one_id = one.stdout.trim().to_owned();
    step(
        &[
            "secret", "create", "rs_two", f, "--label", "env=prod", "--label", "k=v",
        ],
        None,
    );
    step(
        &["secret", "create", "rs_lbl", "-", "--label", "novalue"],
        Some(b"x"),
    );
    step(&["secret", "create", "RS_TWO", "-"], Some(b"dup"));
    step(&["secret", "create", "rs_bad_", "-"], Some(b"x"));
    step(&["secret", "create", "rs_empty", "-"], Some(b""));
    step(&["secret", "ls"], None);
    step(&["secret", "ls", "-q"], None);
    step(&["secret", "ls", "--filter", "name=rs_t"], None);
    step(&["secret", "ls", "--filter", "name=RS_"], None);
    step(&["secret", "ls", "--filter", "name=two"], None);
    step(&["secret", "ls", "--filter", "label=env=prod"], None);
    step(&["secret", "ls", "--filter", "label=novalue"], None);
    step(&["secret", "ls", "--filter", "label=env=dev"], None);
    step(&["secret", "ls", "--filter", "bogus=1"], None);
    step(&["secret", "ls", "--format", "{{.Name}}"], None);
    // Not `{{.Labels}}`: with several labels the 20.10 CLI prints them in Go's random map
    // order, against any server.
    step(
        &["secret", "ls", "--format", "{{.Name}} {{.Label \"env\"}}"],
        None,
    );
    step(&["secret", "inspect", "rs_two"], None);
    step(
        &["secret", "inspect", "RS_TWO", "--format", "{{.Spec.Name}}"],
        None,
    );
    step(&["secret", "inspect", "--pretty", "rs_two"], None);
    step(&["secret", "inspect", "--pretty", "rs_one"], None);
    step(&["secret", "inspect", &one_id[..6]], None);
    step(&["secret", "inspect", "rs_nope"], None);
    step(&["secret", "inspect", "rs_one", "rs_nope"], None);
    step(&["secret", "rm", "rs_one", "rs_nope"], None);
    step(&["secret", "rm", "rs_two", "rs_lbl"], None);
    step(&["secret", "rm", "rs_two"], None);
    step(&["secret", "ls"], None);
    // "rm while in use" needs services, which lockbox's Docker API does not serve (yet):
    // that case is not in this scenario.

    // configs
    step(&["config", "create", "rc_one", "-"], Some(b"abc"));
    step(
        &["config", "create", "rc_two", f, "--label", "team=web"],
        None,
    );
    step(&["config", "create", "rc_one", "-"], Some(b"again"));
    step(&["config", "ls"], None);
    step(&["config", "ls", "-q"], None);
    step(&["config", "ls", "--filter", "name=rc_t"], None);
    step(&["config", "ls", "--filter", "label=team=web"], None);
    step(&["config", "ls", "--filter", "names=rc_one"], None);
    step(&["config", "ls", "--format", "{{.Name}}"], None);
    step(&["config", "inspect", "rc_one"], None);
    step(&["config", "inspect", "--pretty", "rc_two"], None);
    step(&["config", "inspect", "rc_nope"], None);
    step(&["config", "rm", "rc_one", "rc_nope", "rc_two"], None);
    step(&["config", "ls"], None);

    // what the CLI shows of the server
    step(
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Managers}} {{.Swarm.Nodes}} {{.OSType}}",
        ],
        None,
    );
    step(
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}} {{.Server.Arch}} {{.Server.Experimental}}",
        ],
        None,
    );
    redact_max_api(&t, &server_api(sock))
}

/// The lines of `docker info`'s Swarm section that a single-node manager shows, with the
/// values that name this engine (IDs, addresses) and cluster tunables left out.
fn swarm_section(info: &str) -> Vec<String> {
    let mut ids = HashMap::new();
    info.lines()
        .skip_while(|l| !l.starts_with(" Swarm:"))
        .take_while(|l| l.starts_with(" Swarm:") || l.starts_with("  "))
        .filter(|l| {
            let k = l.trim();
            [
                "Swarm:",
                "NodeID:",
                "Is Manager:",
                "ClusterID:",
                "Managers:",
                "Nodes:",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .map(|l| redact_ids(l, &mut ids))
        .collect()
}

#[test]
fn stock_cli_against_lockbox_prints_what_it_prints_against_a_real_swarm() {
    let clis = docker_clis();
    if clis.is_empty() {
        return;
    }
    let Some(swarm) = SwarmEngine::start("cmp") else {
        return;
    };
    let d = Daemon::start();
    for bin in &clis {
        let lb = Cli::new(bin, &docker_sock(&d));
        let real = Cli::new(bin, &swarm.sock);
        let version = lb.version();
        let ours = scenario(&lb, &docker_sock(&d));
        let theirs = scenario(&real, &swarm.sock);
        if ours != theirs {
            for (a, b) in ours.lines().zip(theirs.lines()) {
                if a != b {
                    eprintln!("first difference:\n lockbox: {a}\n   swarm: {b}");
                    break;
                }
            }
        }
        assert_eq!(
            ours,
            theirs,
            "docker {version} ({}) prints something else against lockbox than against a real Swarm",
            bin.display()
        );
        // docker info: the Swarm section tells the CLI this is an unlocked manager.
        let ours = swarm_section(&lb.ok(&["info"]));
        let theirs = swarm_section(&real.ok(&["info"]));
        assert!(ours.len() >= 5, "{ours:?}");
        assert_eq!(
            ours, theirs,
            "docker {version}: docker info's Swarm section"
        );
        // docker version names lockbox as the server.
        let v = lb.ok(&["version"]);
        assert!(v.contains("Server: lockbox"), "{v}");
        assert!(v.contains("API version:      1.51"), "{v}");
        // The transcript itself, for review (one per CLI version).
        let major = version.split('.').next().unwrap_or("x").to_owned();
        insta::assert_snapshot!(
            format!("scenario_docker_{major}"),
            scenario(&lb, &docker_sock(&d))
        );
    }
}

/// Raw requests whose status, Content-Type and body must be Docker's exactly.
#[test]
fn raw_api_answers_match_a_real_swarm() {
    let Some(swarm) = SwarmEngine::start("raw") else {
        return;
    };
    let d = Daemon::start();
    let ours = raw_transcript(&docker_sock(&d));
    let theirs = raw_transcript(&swarm.sock);
    for (a, b) in ours.lines().zip(theirs.lines()) {
        if a != b {
            eprintln!("first difference:\n lockbox: {a}\n   swarm: {b}");
            break;
        }
    }
    assert_eq!(ours, theirs);
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A raw request step of [`raw_transcript`]: method, path, body → status, body.
type Req<'a> = dyn FnMut(&str, &str, Option<&str>) -> (u16, String) + 'a;

/// `"time":N`, `"timeNano":N` (events) and `since=N`/`until=N` (their query) as `<T>`.
fn redact_event_times(s: &str) -> String {
    let mut out = s.to_owned();
    for key in ["\"time\":", "\"timeNano\":", "since=", "until=", "time ("] {
        let mut done = String::new();
        let mut rest = out.as_str();
        while let Some(p) = rest.find(key) {
            let (head, tail) = rest.split_at(p + key.len());
            done.push_str(head);
            let n = tail
                .bytes()
                .take_while(|b| b.is_ascii_digit() || *b == b'.')
                .count();
            done.push_str("<T>");
            rest = &tail[n..];
        }
        done.push_str(rest);
        out = done;
    }
    out
}

/// A chunked body's data (chunk sizes are transport: Go writes them in lower case, hyper in
/// upper case).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

fn unix_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

fn raw_transcript(sock: &Path) -> String {
    let start = unix_now();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut t = String::new();
    let mut req = |method: &str, path: &str, body: Option<&str>| -> (u16, String) {
        let (st, head, b) = http_full(sock, method, path, body, "application/json");
        let b = if header(&head, "Transfer-Encoding") == Some("chunked") {
            dechunk(&b)
        } else {
            b
        };
        let ct = header(&head, "Content-Type").unwrap_or("-").to_owned();
        // The current index differs by engine; the stale `version=1` stays visible.
        let shown = match path.split_once("?version=") {
            Some((p, v)) if v.parse::<u64>().is_ok_and(|n| n > 1) => format!("{p}?version=<N>"),
            _ => path.to_owned(),
        };
        // An ID prefix in the path is shown as which ID it abbreviates.
        let shown = match shown.rsplit_once('/') {
            Some((dir, last)) if last.len() >= 3 && last.len() < 25 => ids
                .iter()
                .find(|(id, _)| id.starts_with(last))
                .map_or(shown.clone(), |(_, tag)| {
                    format!("{dir}/{tag}[..{}]", last.len())
                }),
            _ => shown,
        };
        let line = format!(
            "{method} {shown} -> {st} [{ct}] {}\n",
            b.replace('\n', "\\n")
        );
        t.push_str(&redact_event_times(&redact_times(&redact_ids(
            &line, &mut ids,
        ))));
        (st, b)
    };
    let (_, b) = req(
        "POST",
        "/v1.41/secrets/create",
        Some(
            r#"{"Name":"rw_stack_sec","Labels":{"com.docker.stack.namespace":"rw"},"Data":"djE="}"#,
        ),
    );
    let id: String = serde_json::from_str::<serde_json::Value>(&b).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = |req: &mut Req<'_>| -> u64 {
        let (_, b) = req("GET", "/v1.41/secrets/rw_stack_sec", None);
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["Version"]["Index"]
            .as_u64()
            .unwrap()
    };
    // docker stack deploy's re-deploy: the full spec, data included.
    let v = index(&mut req);
    req(
        "POST",
        &format!("/v1.41/secrets/{id}/update?version={v}"),
        Some(
            r#"{"Name":"rw_stack_sec","Labels":{"com.docker.stack.namespace":"rw","x":"y"},"Data":"djE="}"#,
        ),
    );
    let v = index(&mut req);
    req(
        "POST",
        &format!("/v1.41/secrets/{id}/update?version={v}"),
        Some(r#"{"Name":"rw_stack_sec","Labels":{},"Data":"djI="}"#),
    );
    req(
        "POST",
        &format!("/v1.41/secrets/{id}/update?version=1"),
        Some(r#"{"Name":"rw_stack_sec","Labels":{}}"#),
    );
    req(
        "POST",
        "/v1.41/secrets/rw_stack_sec/update",
        Some(r#"{"Name":"rw_stack_sec"}"#),
    );
    req(
        "POST",
        "/v1.41/secrets/rw_stack_sec/update?version=abc",
        Some(r#"{"Name":"rw_stack_sec"}"#),
    );
    req(
        "POST",
        &format!("/v1.41/secrets/{id}/update?version={v}"),
        Some(r#"{"Name":"RW_STACK_SEC","Labels":{}}"#),
    );
    req("GET", "/v1.41/secrets/rw_stack_sec", None);
    req("GET", &format!("/secrets/{id}"), None);
    req(
        "GET",
        "/v1.24/secrets?filters=%7B%22names%22%3A%5B%22RW_STACK_SEC%22%5D%7D",
        None,
    );
    req(
        "GET",
        "/v1.41/secrets?filters=%7B%22name%22%3A%7B%22rw_%22%3Atrue%7D%7D",
        None,
    );
    req(
        "GET",
        "/v1.41/secrets?filters=%7B%22id%22%3A%7B%22zzzz%22%3Atrue%7D%7D",
        None,
    );
    req(
        "GET",
        "/v1.41/secrets?filters=%7B%22bogus%22%3A%7B%22x%22%3Atrue%7D%7D",
        None,
    );
    req(
        "GET",
        "/v1.41/configs?filters=%7B%22names%22%3A%7B%22x%22%3Atrue%7D%7D",
        None,
    );
    // creates that fail
    req(
        "POST",
        "/v1.41/secrets/create",
        Some(r#"{"Name":"rw_x","Data":"!!!"}"#),
    );
    req("POST", "/v1.41/secrets/create", Some(r#"{"Name":"rw_x"}"#));
    req("POST", "/v1.41/secrets/create", Some(r#"{"Data":"eA=="}"#));
    req(
        "POST",
        "/v1.41/secrets/create",
        Some(r#"{"Name":"rw x","Data":"eA=="}"#),
    );
    req("POST", "/v1.41/secrets/create", Some("nul"));
    req(
        "POST",
        "/v1.41/secrets/create",
        Some(r#"{"Name":"RW_STACK_SEC","Data":"eA=="}"#),
    );
    req(
        "POST",
        "/v1.41/configs/create",
        Some(r#"{"Name":"rw_c","Data":"eA==","Bogus":1}"#),
    );
    req("DELETE", "/v1.41/configs/rw_c", None);
    // routes
    req("GET", "/v1.41/secrets/", None);
    req("POST", "/v1.41/secrets/rw_stack_sec", None);
    req("GET", "/v1.41/secrets/create", None);
    req("GET", "/v1.99/secrets", None);
    req("GET", "/v1.11/secrets", None);
    req("GET", "/v1.12/secrets/rw_nope", None);
    // Not compared: `..` in a path, which Docker's router cleans and answers with a 301 to
    // the cleaned path; lockbox answers 404 (bad_input_is_refused_and_writes_nothing).
    req("GET", "/v1.23/secrets", None);
    req("GET", "/_ping", None);
    req("HEAD", "/_ping", None);
    // Go's decoder matches field names case-insensitively; clients (the Python SDK) rely on it.
    req(
        "POST",
        "/v1.45/secrets/create",
        Some(r#"{"name":"rw_lower","DATA":"eA==","labels":{"Team":"a"},"Labels":{"k":"v"}}"#),
    );
    req("GET", "/v1.45/secrets/rw_lower", None);
    req(
        "POST",
        "/v1.45/secrets/rw_lower/update?version=1",
        Some(r#"{"name":"rw_lower"}"#),
    );
    req("DELETE", "/v1.45/secrets/rw_lower", None);
    // Templating: from API 1.37 on, in either spelling.
    req(
        "POST",
        "/v1.36/configs/create",
        Some(r#"{"Name":"rw_tpl","Data":"eA==","Templating":{"Name":"golang"}}"#),
    );
    req(
        "POST",
        "/v1.36/secrets/create",
        Some(r#"{"Name":"rw_tpl","Data":"eA==","templating":{"name":"golang"}}"#),
    );
    req(
        "POST",
        "/v1.37/configs/create",
        Some(
            r#"{"name":"rw_tpl","data":"eA==","templating":{"name":"golang","options":{"O":"1"}}}"#,
        ),
    );
    req("GET", "/v1.45/configs/rw_tpl", None);
    req("DELETE", "/v1.45/configs/rw_tpl", None);
    req("DELETE", &format!("/v1.41/secrets/{}", &id[..3]), None);
    req("DELETE", "/v1.41/secrets/rw_stack_sec", None);
    // Events: replayed from `since` up to `until` (both past: the stream then closes), with
    // Docker's filters.
    let until = unix_now();
    let q = |filters: &str| format!("/v1.45/events?since={start}&until={until}&filters={filters}");
    req(
        "GET",
        &q("%7B%22type%22%3A%7B%22secret%22%3Atrue%7D%7D"),
        None,
    );
    req(
        "GET",
        &q("%7B%22config%22%3A%7B%22rw_t%22%3Atrue%7D%7D"),
        None,
    );
    req(
        "GET",
        &q(
            "%7B%22event%22%3A%7B%22remove%22%3Atrue%7D%2C%22type%22%3A%7B%22config%22%3Atrue%7D%7D",
        ),
        None,
    );
    req("GET", &q("%7B%22bogus%22%3A%7B%22x%22%3Atrue%7D%7D"), None);
    req(
        "GET",
        &format!("/v1.45/events?since={until}&until={start}"),
        None,
    );
    redact_max_api(&t, &server_api(sock))
}

#[test]
fn ping_headers_and_locked_state() {
    if docker_clis().is_empty() {
        return;
    }
    let mut d = Daemon::start_with(&["--autolock"]);
    let key = d
        .lb(&["unlock-key", "-q"])
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("LBXKEY-1-"))
        .map(str::to_owned);
    let (st, head, body) = http_full(&docker_sock(&d), "GET", "/_ping", None, "application/json");
    assert_eq!((st, body.as_str()), (200, "OK"));
    for (k, v) in [
        ("Api-Version", "1.51"),
        ("Ostype", "linux"),
        ("Docker-Experimental", "false"),
        ("Swarm", "active/manager"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
    ] {
        assert_eq!(header(&head, k), Some(v), "{k} in {head}");
    }
    d.restart(&[]);
    let sock = docker_sock(&d);
    let (_, head, _) = http_full(&sock, "HEAD", "/_ping", None, "application/json");
    assert_eq!(header(&head, "Swarm"), Some("locked"), "{head}");
    let msg = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";
    let (st, head, body) = http_full(&sock, "GET", "/v1.41/secrets", None, "application/json");
    assert_eq!(st, 503);
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    assert_eq!(body, format!("{}\n", serde_json::json!({"message": msg})));
    for bin in docker_clis() {
        let cli = Cli::new(&bin, &sock);
        let o = cli.run(&["secret", "ls"], None);
        assert_eq!(o.code, 1);
        assert_eq!(
            o.stderr.trim(),
            format!("Error response from daemon: {msg}")
        );
        let o = cli.ok(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Error}}",
        ]);
        assert_eq!(o.trim(), format!("locked false {msg}"));
    }
    // `docker swarm unlock` unlocks lockbox (the key is lockbox's own).
    let key = key.unwrap_or_else(|| panic!("no unlock key in the log:\n{}", d.log_text()));
    let cli = Cli::new(&first_cli(), &sock);
    let o = cli.run(&["swarm", "unlock"], Some(b"wrong-key\n"));
    assert_eq!(o.code, 1, "{o:?}");
    let o = cli.run(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes()));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(cli.ok(&["secret", "ls", "-q"]), "");
}

#[test]
fn unserved_routes_and_events() {
    if docker_clis().is_empty() {
        return;
    }
    let d = Daemon::start();
    let sock = docker_sock(&d);
    for bin in docker_clis() {
        let cli = Cli::new(&bin, &sock);
        for args in [
            &["ps"][..],
            &["images"],
            &["service", "ls"],
            &["network", "ls"],
        ] {
            let o = cli.run(args, None);
            assert_eq!(o.code, 1, "{args:?}: {o:?}");
            assert!(
                o.stderr.contains("Error response from daemon: lockbox")
                    && o.stderr.contains("not implemented"),
                "{args:?}: {}",
                o.stderr
            );
        }
    }
    let (st, head, body) = http_full(&sock, "GET", "/v1.41/nope", None, "application/json");
    assert_eq!(
        (st, body.as_str()),
        (404, "{\"message\":\"page not found\"}\n")
    );
    assert_eq!(
        header(&head, "Api-Version"),
        None,
        "Docker's 404 has no API headers"
    );

    // GET /events with a type filter: only secret events reach this stream.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /v1.41/events?filters=%7B%22type%22%3A%7B%22secret%22%3Atrue%7D%7D HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cli = Cli::new(&first_cli(), &sock);
    cli.run(&["config", "create", "ev_c", "-"], Some(b"c"));
    cli.run(&["secret", "create", "ev_s", "-"], Some(b"s"));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("ev_s") {
        let n = s.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(r#""Type":"secret","Action":"create""#),
        "{text}"
    );
    assert!(
        !text.contains("ev_c"),
        "a config event passed a type=secret filter: {text}"
    );

    // The stock `docker events --filter type=secret` prints lockbox's events.
    let bin = first_cli();
    let cfg = tempfile::tempdir().unwrap();
    let mut ev = Command::new(&bin)
        .args([
            "events",
            "--filter",
            "type=secret",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", cfg.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The CLI subscribes at some point after it starts: act until its first line arrives.
    let stdout = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    for i in 0..60 {
        cli.run(
            &["config", "create", &format!("ev_cli_c{i}"), "-"],
            Some(b"c"),
        );
        cli.run(
            &["secret", "create", &format!("ev_cli_s{i}"), "-"],
            Some(b"s"),
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            lines.push(l);
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = ev.kill();
    let _ = ev.wait();
    lines.extend(rx.try_iter());
    assert!(!lines.is_empty(), "docker events printed nothing");
    for l in &lines {
        assert!(l.starts_with("secret create ev_cli_s"), "{lines:?}");
    }
}

/// One request that tolerates the server answering (and closing) before the whole body is
/// sent, as it does for a body over the bound.
fn raw(sock: &Path, method: &str, path: &str, body: &str, ct: &str) -> (u16, String, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()));
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let d = Daemon::start();
    let sock = docker_sock(&d);
    let audit_before = d.lb(&["audit", "ls"]).stdout.lines().count();
    let send = |method: &str, path: &str, body: &str, ct: &str| {
        let (st, head, b) = raw(&sock, method, path, body, ct);
        (
            st,
            header(&head, "Content-Type").unwrap_or("").to_owned(),
            b,
        )
    };
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "/v1.41/secrets/create",
            "{\"Name\":".into(),
            "application/json",
            400,
            "unexpected EOF",
        ),
        (
            "/v1.41/secrets/create",
            "[1,2]".into(),
            "application/json",
            400,
            "invalid type",
        ),
        (
            "/v1.41/secrets/create",
            r#"{"Name":"x","Data":"eA=="}"#.into(),
            "text/plain",
            400,
            "unsupported Content-Type header (text/plain): must be 'application/json'",
        ),
        (
            "/v1.41/secrets/create",
            format!(r#"{{"Name":"big","Data":"{}"}}"#, "A".repeat(3_000_000)),
            "application/json",
            413,
            "request body too large",
        ),
        (
            "/v1.41/secrets/create",
            format!(
                r#"{{"Name":"big","Data":"{}"}}"#,
                "AAAA".repeat(512_000 / 3 + 1)
            ),
            "application/json",
            400,
            "secret data must be larger than 0 and less than 512000 bytes",
        ),
        (
            "/v1.41/secrets/create",
            format!(r#"{{"Name":"{}","Data":"eA=="}}"#, "a".repeat(65)),
            "application/json",
            400,
            "invalid name",
        ),
        (
            "/v1.41/secrets/create",
            r#"{"Name":"../../etc/x","Data":"eA=="}"#.into(),
            "application/json",
            400,
            "invalid name",
        ),
    ];
    for (path, body, ct, want, msg) in &cases {
        let (st, ctype, b) = send("POST", path, body, ct);
        assert_eq!(st, *want, "{path} {:.80}: {b}", body);
        assert_eq!(ctype, "application/json", "{b}");
        assert!(b.contains(msg) && b.ends_with("}\n"), "{:.60} → {b}", body);
    }
    // absurd filters: huge, deeply nested, wrong types
    let huge = format!(
        "%7B%22name%22%3A%7B%22{}%22%3Atrue%7D%7D",
        "a".repeat(50_000)
    );
    for q in [
        huge.as_str(),
        "%5B%5B%5B%5B%5B%5B",
        "%7B%22name%22%3A5%7D",
        "%7B%22label%22%3A%5B1%2C2%5D%7D",
    ] {
        let (st, _, b) = http_full(
            &sock,
            "GET",
            &format!("/v1.41/secrets?filters={q}"),
            None,
            "application/json",
        );
        assert!(st == 200 || st == 400, "{st} {b}");
    }
    // path traversal in {id}
    for p in [
        "/v1.41/secrets/..%2F..%2Fetc%2Fpasswd",
        "/v1.41/secrets/%2e%2e",
        "/v1.41/configs/..%00x",
    ] {
        let (st, _, b) = http_full(&sock, "DELETE", p, None, "application/json");
        assert_eq!(st, 404, "{p}: {b}");
    }
    // nothing was written
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout, "");
    assert_eq!(d.lb(&["audit", "ls"]).stdout.lines().count(), audit_before);
}

#[test]
fn slow_and_many_clients_do_not_stop_the_others() {
    let d = Daemon::start();
    let sock = docker_sock(&d);
    d.create("many", b"v");
    // Slowloris: connections that send half a header and stall.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /v1.41/secrets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        slow.push(s);
    }
    let (st, _) = crate::support::http(&sock, "GET", "/v1.41/secrets/many", None);
    assert_eq!(st, 200, "a request behind 200 stalled connections");
    // 1,000 concurrent clients.
    let n = 1000;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let sock = sock.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let path = if i % 2 == 0 {
                    "/v1.41/secrets"
                } else {
                    "/v1.41/secrets/many"
                };
                crate::support::http(&sock, "GET", path, None).0
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|&s| s == 200),
        "{:?}",
        statuses.iter().filter(|&&s| s != 200).collect::<Vec<_>>()
    );
    drop(slow);
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 1);
}

/// Polls `f` until it returns `Some`, or fails with `what` after `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn swarm_service_reads_a_driver_backed_secret_from_lockbox_and_rotation_reaches_new_tasks() {
    let Some(swarm) = SwarmEngine::start("drv") else {
        return;
    };
    let plugin = swarm.plugins().join("lockbox.sock");
    let d = Daemon::start_with(&["--swarm-driver", plugin.to_str().unwrap()]);
    wait_for(20, "the plugin socket", || {
        UnixStream::connect(&plugin).ok().map(|_| ())
    });
    let v1 = format!("v1-{}", marker());
    let v2 = format!("v2-{}", marker());
    d.create("db_password", v1.as_bytes());
    let cli = Cli::new(&first_cli(), &swarm.sock);
    cli.ok(&[
        "secret",
        "create",
        "--driver",
        "lockbox",
        "--label",
        "lockbox.secret=db_password",
        "app_db_pw",
    ]);
    let ls = cli.ok(&["secret", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls.trim(), "app_db_pw lockbox");
    cli.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "app",
        "--stop-grace-period",
        "1s",
        "--secret",
        "source=app_db_pw,target=pw",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let read = |task_not: Option<&str>| -> (String, String) {
        wait_for(90, "a running task of the service", || {
            let c = cli
                .run(
                    &[
                        "ps",
                        "-q",
                        "--filter",
                        "label=com.docker.swarm.service.name=app",
                        "--filter",
                        "status=running",
                    ],
                    None,
                )
                .stdout;
            let c = c.lines().next()?.to_owned();
            let task = cli
                .run(
                    &[
                        "inspect",
                        "--format",
                        "{{index .Config.Labels \"com.docker.swarm.task.id\"}}",
                        &c,
                    ],
                    None,
                )
                .stdout
                .trim()
                .to_owned();
            if Some(task.as_str()) == task_not {
                return None;
            }
            let o = cli.run(&["exec", &c, "cat", "/run/secrets/pw"], None);
            (o.code == 0).then_some((task, o.stdout))
        })
    };
    let (task1, got) = read(None);
    assert_eq!(got, v1);
    // The hand-out is audited with what Swarm told us.
    let audit = d.lb(&["audit", "ls"]).stdout;
    let line = audit
        .lines()
        .find(|l| l.contains("handout") && l.contains(&task1))
        .unwrap_or_else(|| panic!("no hand-out audited for task {task1}:\n{audit}"));
    for want in [
        "service_name=app",
        "swarm_secret=app_db_pw",
        "node_id=",
        "task_image=lockbox-test/busybox",
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }
    // Rotate in lockbox; a new task reads the new version.
    let o = d.lb_in(
        &["secret", "rotate", "db_password", "-"],
        Some(v2.as_bytes()),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    cli.ok(&["service", "update", "-d", "--force", "app"]);
    let (task2, got) = read(Some(&task1));
    assert_ne!(task1, task2);
    assert_eq!(got, v2);

    // A Swarm secret naming nothing in lockbox: lockbox answers GetSecret with `Err`, which
    // Swarm keeps to itself (its manager logs it at debug level): the task fails with
    // Swarm's own "secret not found", and nothing is handed out.
    cli.ok(&["secret", "create", "--driver", "lockbox", "not_in_lockbox"]);
    cli.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "orphan",
        "--secret",
        "not_in_lockbox",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let err = wait_for(60, "the orphan task's error", || {
        let e = cli
            .run(
                &[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.Error}}",
                    "orphan",
                ],
                None,
            )
            .stdout;
        e.contains("unable to get secret").then_some(e)
    });
    assert!(err.contains("not found"), "{err}");
    let audit = d.lb(&["audit", "ls"]).stdout;
    assert!(!audit.contains("not_in_lockbox"), "{audit}");
    drop(swarm);
}
