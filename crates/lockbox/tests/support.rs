//! A daemon in a temp directory, and helpers to run the CLI and raw HTTP against it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lockbox");

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// A command the daemon runs under (e.g. `ip netns exec NS`), and extra environment.
    pub prefix: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_in(&[], &[], extra)
    }

    /// Starts the daemon under `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`) with `env`.
    pub fn start_in(prefix: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self {
            log: dir.path().join("daemon.log"),
            dir,
            child: None,
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn(extra);
        d
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("lockbox.sock")
    }

    /// Starts the daemon and waits until the socket answers (or the process exits).
    pub fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("daemon")
            .arg("--data-dir")
            .arg(self.data())
            .arg("-H")
            .arg(self.sock())
            .args(extra)
            // A root daemon serves the volume driver at /run/docker/plugins/lockbox.sock by
            // default: test daemons stay off the shared engine's plugin directory unless a
            // test names its own socket.
            .args(
                (!extra.contains(&"--volume-driver"))
                    .then_some(["--volume-driver", "none"])
                    .into_iter()
                    .flatten(),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(self.sock()).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({st}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not listen within 20 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("daemon did not stop on SIGTERM within 15 s");
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, extra: &[&str]) {
        self.stop();
        self.spawn(extra);
    }

    /// Runs the CLI against this daemon.
    pub fn lb(&self, args: &[&str]) -> Out {
        self.lb_in(args, None)
    }

    pub fn lb_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        run_cli(&self.sock(), args, stdin)
    }

    /// Creates a secret from bytes and returns its ID.
    pub fn create(&self, name: &str, value: &[u8]) -> String {
        let o = self.lb_in(&["secret", "create", name, "-"], Some(value));
        assert_eq!(o.code, 0, "create {name}: {}", o.stderr);
        o.stdout.trim().to_string()
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.sock(), method, path, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_cli(sock: &Path, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.arg("-H")
        .arg(sock)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        let mut s = child.stdin.take().unwrap();
        // A command may exit without reading its input (a usage error): that is its answer.
        if let Err(e) = s.write_all(data) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    let o: Output = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// One raw HTTP/1.1 request over the socket; returns status and body.
pub fn http(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (status, _headers, body) = http_full(sock, method, path, body, "application/json");
    (status, body)
}

pub fn http_full(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    ctype: &str,
) -> (u16, String, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let b = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: lockbox\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    parse_response(&resp)
}

/// An HTTP/1.1 response read to its end: status, head and body.
pub fn parse_response(resp: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A random marker for no-plaintext checks, from the OS.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!(
        "LBXMARK{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// The seed of a randomized test: `LOCKBOX_TEST_SEED`, else the clock (odd, so never 0).
/// Tests print it so that a failure can be replayed.
pub fn seed() -> u64 {
    std::env::var("LOCKBOX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// What `lockbox events ARGS…` prints while `during` runs against the daemon.
pub fn events_during(d: &Daemon, args: &[&str], during: impl FnOnce()) -> String {
    let mut child = std::process::Command::new(BIN)
        .arg("-H")
        .arg(d.sock())
        .arg("events")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    during();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
