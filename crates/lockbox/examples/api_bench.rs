//! Core API benchmark: create / inspect / list / delete latency over ONE persistent
//! connection to a running daemon, plus the daemon's RSS when idle.
//!
//! Usage: api_bench SOCKET DAEMON_PID [N]
//! Prints a Markdown table; `bench/core/run` starts a release daemon and calls this.
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn new(sock: &str) -> Self {
        let s = UnixStream::connect(sock).expect("connect to the daemon");
        Self {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// One keep-alive request; returns (status, body).
    fn req(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        write!(
            self.w,
            "{method} {path} HTTP/1.1\r\nHost: lockbox\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).unwrap();
        (status, buf)
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn rss_kib(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sock = &args[1];
    let pid = &args[2];
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let idle_rss = rss_kib(pid);
    let mut c = Conn::new(sock);
    let run = std::process::id();

    let mut create = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let body = format!(
            r#"{{"Name":"b{run}_{i}","Labels":{{"bench":"1"}},"Data":"c2VjcmV0LXZhbHVlLTEyMzQ1Ng=="}}"#
        );
        let t = Instant::now();
        let (st, b) = c.req("POST", "/v1/secrets/create", &body);
        create.push(t.elapsed());
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        ids.push(v["ID"].as_str().unwrap().to_string());
    }
    let create_total = t0.elapsed();

    let mut inspect = Vec::with_capacity(n);
    for id in &ids {
        let t = Instant::now();
        let (st, _) = c.req("GET", &format!("/v1/secrets/{id}"), "");
        inspect.push(t.elapsed());
        assert_eq!(st, 200);
    }
    let mut list = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (st, _) = c.req("GET", "/v1/secrets", "");
        list.push(t.elapsed());
        assert_eq!(st, 200);
    }
    let loaded_rss = rss_kib(pid);
    let mut delete = Vec::with_capacity(n);
    for id in &ids {
        let t = Instant::now();
        let (st, _) = c.req("DELETE", &format!("/v1/secrets/{id}"), "");
        delete.push(t.elapsed());
        assert_eq!(st, 204);
    }
    println!("| operation (one keep-alive connection, n={n}) | p50 ms | p99 ms | per second |");
    println!("|---|---|---|---|");
    let row = |name: &str, v: &mut Vec<Duration>| {
        let total: f64 = v.iter().map(Duration::as_secs_f64).sum();
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "| {name} | {p50:.3} | {p99:.3} | {:.0} |",
            v.len() as f64 / total
        );
    };
    row("create", &mut create);
    row("inspect", &mut inspect);
    row(&format!("list ({n} secrets)"), &mut list);
    row("delete", &mut delete);
    println!();
    println!(
        "sequential creates: {:.0}/s over {:.2} s",
        n as f64 / create_total.as_secs_f64(),
        create_total.as_secs_f64()
    );
    println!(
        "daemon RSS: idle {:.1} MiB, with {n} secrets {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0
    );
}
