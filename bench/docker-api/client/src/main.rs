//! Runs the same Docker Engine API requests against several engines and prints a table.
//!
//! usage: docker-api-bench [--n 1000] [--mem 10000] [--out RESULTS.md] NAME=SOCKET:PID...
//!
//! Per engine, over one keep-alive connection (as the docker CLI and SDKs do), one request
//! at a time: create N secrets, inspect each by name, list all N (repeated), delete each;
//! then create MEM secrets and read the server's resident memory (VmRSS of PID).
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn open(sock: &str) -> Self {
        let s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("{sock}: {e}"));
        Self {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// One request; returns the status and the body.
    fn req(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: docker-api-bench\r\n"
        );
        if let Some(b) = body {
            write!(
                head,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
            .unwrap();
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b.as_bytes());
        }
        self.w.write_all(&out).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.trim().eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if method != "HEAD" {
            body.resize(len, 0);
            self.r.read_exact(&mut body).unwrap();
        }
        (status, body)
    }

    fn expect(&mut self, method: &str, path: &str, body: Option<&str>, want: u16) -> Vec<u8> {
        let (st, b) = self.req(method, path, body);
        assert_eq!(st, want, "{method} {path}: {}", String::from_utf8_lossy(&b));
        b
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut lat: Vec<Duration>, wall: Duration) -> Stats {
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: lat.len() as f64 / wall.as_secs_f64(),
    }
}

fn timed(n: usize, mut f: impl FnMut(usize)) -> Stats {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i);
        lat.push(t.elapsed());
    }
    stats(lat, start.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A 33-byte value (a typical password or token), as 44 base64 characters: a multiple of
/// three bytes, so every character is significant and any of them is canonical.
fn value(i: usize) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..44)
        .map(|k| B64[(i * 7 + k * 13) % 64] as char)
        .collect()
}

struct Row {
    op: String,
    per_engine: Vec<Stats>,
}

fn run_engine(
    sock: &str,
    pid: u32,
    n: usize,
    mem: usize,
    list_reps: usize,
) -> (Vec<(String, Stats)>, u64, u64) {
    let mut c = Conn::open(sock);
    c.expect("HEAD", "/_ping", None, 200);
    let name = |i: usize| format!("bench_{i:05}");
    let mut out = Vec::new();
    out.push((
        "create".to_owned(),
        timed(n, |i| {
            let body = format!(
                r#"{{"Name":"{}","Labels":{{"app":"bench"}},"Data":"{}"}}"#,
                name(i),
                value(i)
            );
            c.expect("POST", "/v1.41/secrets/create", Some(&body), 201);
        }),
    ));
    out.push((
        "inspect".to_owned(),
        timed(n, |i| {
            c.expect("GET", &format!("/v1.41/secrets/{}", name(i)), None, 200);
        }),
    ));
    out.push((
        format!("list ({n} secrets)"),
        timed(list_reps, |_| {
            let b = c.expect("GET", "/v1.41/secrets", None, 200);
            assert!(b.len() > n * 100, "a list of {n} secrets");
        }),
    ));
    out.push((
        "delete".to_owned(),
        timed(n, |i| {
            c.expect("DELETE", &format!("/v1.41/secrets/{}", name(i)), None, 204);
        }),
    ));
    // Memory: the server's resident set with `mem` secrets stored.
    let before = rss_kib(pid);
    for i in 0..mem {
        let body = format!(
            r#"{{"Name":"mem_{i:05}","Labels":{{"app":"bench"}},"Data":"{}"}}"#,
            value(i)
        );
        c.expect("POST", "/v1.41/secrets/create", Some(&body), 201);
    }
    // A list touches every object, as a client would.
    c.expect("GET", "/v1.41/secrets", None, 200);
    let after = rss_kib(pid);
    for i in 0..mem {
        c.expect("DELETE", &format!("/v1.41/secrets/mem_{i:05}"), None, 204);
    }
    (out, before, after)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut mem, mut out_path, mut reps) = (1000usize, 10_000usize, None, 200usize);
    let mut engines: Vec<(String, String, u32)> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().unwrap().parse().unwrap(),
            "--mem" => mem = args.next().unwrap().parse().unwrap(),
            "--list-reps" => reps = args.next().unwrap().parse().unwrap(),
            "--out" => out_path = args.next(),
            spec => {
                let (name, rest) = spec.split_once('=').expect("NAME=SOCKET:PID");
                let (sock, pid) = rest.rsplit_once(':').expect("NAME=SOCKET:PID");
                engines.push((name.into(), sock.into(), pid.parse().expect("PID")));
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut mems = Vec::new();
    for (name, sock, pid) in &engines {
        eprintln!("{name}: {n} secrets, then {mem} for memory …");
        let (ops, before, after) = run_engine(sock, *pid, n, mem, reps);
        for (op, s) in ops {
            match rows.iter_mut().find(|r| r.op == op) {
                Some(r) => r.per_engine.push(s),
                None => rows.push(Row {
                    op,
                    per_engine: vec![s],
                }),
            }
        }
        mems.push((before, after));
    }
    let names: Vec<&str> = engines.iter().map(|e| e.0.as_str()).collect();
    let mut t = String::new();
    write!(t, "| operation |").unwrap();
    for m in ["p50", "p99", "per second"] {
        for e in &names {
            write!(t, " {e} {m} |").unwrap();
        }
    }
    t.push('\n');
    t.push_str(&"|---".repeat(1 + 3 * names.len()));
    t.push_str("|\n");
    for r in &rows {
        write!(t, "| {} |", r.op).unwrap();
        for s in &r.per_engine {
            write!(t, " {} |", ms(s.p50)).unwrap();
        }
        for s in &r.per_engine {
            write!(t, " {} |", ms(s.p99)).unwrap();
        }
        for s in &r.per_engine {
            write!(t, " {:.0} |", s.per_sec).unwrap();
        }
        t.push('\n');
    }
    write!(t, "\n| memory (VmRSS of the server) |").unwrap();
    for e in &names {
        write!(t, " {e} |").unwrap();
    }
    t.push('\n');
    t.push_str(&"|---".repeat(1 + names.len()));
    t.push_str("|\n");
    write!(t, "| before the {mem} secrets |").unwrap();
    for (b, _) in &mems {
        write!(t, " {:.1} MiB |", *b as f64 / 1024.0).unwrap();
    }
    write!(t, "\n| with {mem} secrets |").unwrap();
    for (_, a) in &mems {
        write!(t, " {:.1} MiB |", *a as f64 / 1024.0).unwrap();
    }
    t.push('\n');
    print!("{t}");
    if let Some(p) = out_path {
        std::fs::write(&p, t).unwrap();
    }
}
