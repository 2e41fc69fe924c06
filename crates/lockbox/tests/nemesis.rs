//! The nemesis test: several clients issue concurrent creates, rotates, reads and deletes of
//! configs against a 3-manager cluster (each manager in its own network namespace) while a
//! nemesis partitions, kills (-9) and pauses (SIGSTOP) nodes, one fault at a time. The history
//! is checked for linearizability (`lockbox-linearize`, `SecretsModel`), and two properties
//! are asserted directly so a failure reads plainly: no acknowledged write is lost, and no
//! read returns an older version than a read that completed before it began.
//!
//! Configs, not secrets, so that a read returns the value: every written value is a unique
//! counter, so a read names the write it saw. The native inspect answer carries
//! `CurrentVersion` (the version whose value `Spec.Data` shows).
//!
//! Size: `LOCKBOX_NEMESIS_SECONDS` (default 20; `scripts/soak` runs it longer). Randomness:
//! `LOCKBOX_TEST_SEED` (printed first, and again on failure). The history is saved to the
//! test's temp dir, and on failure to `target/nemesis-<seed>.jsonl` (re-check it with
//! `lockbox_linearize::check_file::<SecretsModel>`).
use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lockbox_linearize::{
    CheckOptions, CheckResult, Operation, Recorder, SecretInput, SecretOp, SecretOutput,
    SecretsModel, check_with, render, write_history,
};
use serde_json::Value;

use crate::cluster::{Cluster, Net, base64, netns_cluster, seed};

const CLIENTS: u64 = 4;
const NAMES: u64 = 5;
/// Longer than the daemon's `write_timeout` (5 s), so that a refusal for want of a quorum
/// usually arrives as one (a known no-op) rather than as a timeout (an unknown outcome, which
/// the checker must consider at every later point of the history).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);

type Op = Operation<SecretInput, SecretOutput>;

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        // The high half: the low bits of xorshift64* are visibly biased modulo small n.
        (self.next() >> 32) % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

/// Why a request got no HTTP answer.
enum Failure {
    /// The connection was refused (daemon down): nothing was sent, so nothing happened.
    NotSent,
    /// Sent, but no (complete) answer: a timeout, a reset, the daemon killed mid-request.
    Lost,
}

/// One request over the node's Unix socket, with a read timeout.
fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Value), Failure> {
    let mut s = UnixStream::connect(sock).map_err(|_| Failure::NotSent)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|_| Failure::NotSent)?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|_| Failure::NotSent)?;
    let b = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: lockbox\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).map_err(|_| Failure::Lost)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|_| Failure::Lost)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(Failure::Lost)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::Lost)?;
    // With `Connection: close` the body is everything after the head (hyper sends no chunked
    // encoding for a known length); an empty or non-JSON body is kept as a string.
    let v = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    Ok((status, v))
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// A 503 that proves nothing was written: the daemon found no leader with a quorum before it
/// proposed anything (`ReplicationError::NoQuorum` from `propose_forwarded` or the leader's
/// quorum check). Every other 503 — `OutcomeUnknown`, `NotApplied` (committed, not yet applied
/// here), a broken forward — may hide a write.
fn refused_without_effect(status: u16, v: &Value) -> bool {
    let m = message(v);
    status == 503 && m.contains("no raft quorum is reachable") && !m.contains("may still commit")
}

/// Identity tokens for config IDs, so the checker can tell a re-created object from the old.
#[derive(Default)]
struct Ids(Mutex<HashMap<String, u64>>);
impl Ids {
    fn token(&self, id: &str) -> u64 {
        let mut m = self.0.lock().unwrap();
        let n = m.len() as u64 + 1;
        *m.entry(id.to_string()).or_insert(n)
    }
}

/// Performs `op` on `name` at `sock`; `None` when the outcome is unknown.
fn perform(sock: &Path, name: &str, op: SecretOp, ids: &Ids) -> Option<SecretOutput> {
    use SecretOutput as O;
    let r = match op {
        SecretOp::Create { value } => {
            let body =
                serde_json::json!({"Name": name, "Data": base64(value.to_string().as_bytes())});
            request(sock, "POST", "/v1/configs/create", Some(&body.to_string()))
        }
        SecretOp::Rotate { value } => {
            let body = serde_json::json!({"Data": base64(value.to_string().as_bytes())});
            request(
                sock,
                "POST",
                &format!("/v1/configs/{name}/rotate"),
                Some(&body.to_string()),
            )
        }
        SecretOp::Read => request(sock, "GET", &format!("/v1/configs/{name}"), None),
        SecretOp::Delete => request(sock, "DELETE", &format!("/v1/configs/{name}"), None),
    };
    let (status, v) = match r {
        Ok(a) => a,
        Err(Failure::NotSent) => return Some(O::Error),
        Err(Failure::Lost) => return None,
    };
    if refused_without_effect(status, &v) {
        return Some(O::Error);
    }
    match (op, status) {
        (SecretOp::Create { .. }, 201) => Some(O::Created {
            id: v["ID"].as_str().map(|id| ids.token(id)),
        }),
        (SecretOp::Create { .. }, 409) => Some(O::AlreadyExists),
        (SecretOp::Rotate { .. }, 200) => {
            v["Version"].as_u64().map(|version| O::Rotated { version })
        }
        // Every rotation attempt was refused by the state machine (another rotation kept
        // taking the number): nothing written.
        (SecretOp::Rotate { .. }, 500) if message(&v).contains("out of sequence") => Some(O::Error),
        (SecretOp::Read, 200) => {
            let data = v["Spec"]["Data"].as_str()?;
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()?;
            let value = String::from_utf8(bytes).ok()?.parse().ok()?;
            Some(O::Value {
                version: v["CurrentVersion"].as_u64()?,
                value,
                id: v["ID"].as_str().map(|id| ids.token(id)),
            })
        }
        // A read observes nothing unless it succeeds; reads without a value are left out.
        (SecretOp::Read, 404) => Some(O::NotFound),
        (SecretOp::Read, _) => Some(O::Error),
        (SecretOp::Rotate { .. } | SecretOp::Delete, 404) => Some(O::NotFound),
        (SecretOp::Delete, 204) => Some(O::Deleted),
        // Anything else might have been written: unknown.
        _ => None,
    }
}

fn name(i: u64) -> String {
    format!("nem-{i}")
}

/// Runs `kill -SIG pid`.
fn signal(sig: &str, pid: u32) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

#[derive(Default, Debug)]
struct Faults {
    partitions: u32,
    kills: u32,
    pauses: u32,
}

/// Injects one fault at a time until `stop`, restoring each before the next.
fn nemesis(
    c: &mut Cluster,
    net: &Net,
    seed: u64,
    stop: &AtomicBool,
    log: &Mutex<Vec<String>>,
) -> Faults {
    let mut rng = Rng::new(seed ^ 0xFA17);
    let mut f = Faults::default();
    let t0 = Instant::now();
    let note = |s: String| {
        log.lock()
            .unwrap()
            .push(format!("{:>7.3}s {s}", t0.elapsed().as_secs_f64()))
    };
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(rng.millis(500, 2000));
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let i = rng.below(3) as usize;
        match rng.below(3) {
            0 => {
                f.partitions += 1;
                let d = rng.millis(1000, 4000);
                note(format!("cut node {i} for {d:?}"));
                net.cut(i);
                std::thread::sleep(d);
                net.heal(i);
                note(format!("healed node {i}"));
            }
            1 => {
                f.kills += 1;
                let d = rng.millis(200, 2000);
                note(format!("kill -9 node {i}, down {d:?}"));
                c.nodes[i].d.kill9();
                std::thread::sleep(d);
                c.nodes[i].d.spawn(&[]);
                note(format!("restarted node {i}"));
            }
            _ => {
                f.pauses += 1;
                let d = rng.millis(500, 3000);
                let pid = c.nodes[i].d.pid();
                note(format!("SIGSTOP node {i} for {d:?}"));
                signal("STOP", pid);
                std::thread::sleep(d);
                signal("CONT", pid);
                note(format!("SIGCONT node {i}"));
            }
        }
    }
    f
}

/// One client: random operations on random names at random nodes until `stop`.
fn client(
    n: u64,
    socks: &[PathBuf],
    seed: u64,
    stop: &AtomicBool,
    rec: &Recorder<SecretInput, SecretOutput>,
    counter: &AtomicU64,
    ids: &Ids,
) {
    let mut rng = Rng::new(seed ^ (n + 1).wrapping_mul(0x1234_5678_9ABC));
    while !stop.load(Ordering::SeqCst) {
        let sock = &socks[rng.below(socks.len() as u64) as usize];
        let nm = name(rng.below(NAMES));
        let op = match rng.below(20) {
            0..=3 => SecretOp::Create {
                value: counter.fetch_add(1, Ordering::SeqCst),
            },
            4..=8 => SecretOp::Rotate {
                value: counter.fetch_add(1, Ordering::SeqCst),
            },
            9..=16 => SecretOp::Read,
            _ => SecretOp::Delete,
        };
        let id = rec.call(
            n,
            SecretInput {
                name: nm.clone(),
                op,
            },
        );
        match perform(sock, &nm, op, ids) {
            Some(out) => rec.ret(id, out),
            None => rec.unknown(id),
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
    }
}

/// Waits until every node answers a linearizable read (a leader with a quorum, every node
/// caught up).
fn settle(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, n) in c.nodes.iter().enumerate() {
        loop {
            if let Ok((200, _)) = request(&n.d.sock(), "GET", "/v1/configs", None) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not settle:\n{}",
                n.d.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn kind(op: &SecretOp) -> &'static str {
    match op {
        SecretOp::Create { .. } => "create",
        SecretOp::Rotate { .. } => "rotate",
        SecretOp::Read => "read",
        SecretOp::Delete => "delete",
    }
}

fn outcome(o: &Option<SecretOutput>) -> &'static str {
    match o {
        None => "unknown",
        Some(SecretOutput::Error) => "refused",
        Some(SecretOutput::NotFound) => "not-found",
        Some(SecretOutput::AlreadyExists) => "exists",
        Some(_) => "ok",
    }
}

fn ret_time(op: &Op) -> u64 {
    if op.output.is_some() {
        op.ret.max(op.call)
    } else {
        u64::MAX
    }
}

/// Whether `op` may have written (created, rotated or deleted) something.
fn may_write(op: &Op) -> bool {
    match op.output {
        None => op.input.op != SecretOp::Read,
        Some(
            SecretOutput::Created { .. } | SecretOutput::Rotated { .. } | SecretOutput::Deleted,
        ) => true,
        Some(_) => false,
    }
}

/// The written value of a create or rotate.
fn written(op: &SecretOp) -> Option<u64> {
    match op {
        SecretOp::Create { value } | SecretOp::Rotate { value } => Some(*value),
        _ => None,
    }
}

/// Direct check: for each name, the last acknowledged create/rotate (by return time) that no
/// delete can have followed is readable at the end (`finals`: one read per node, after the
/// cluster settled), with its value or that of a write that may have come after it, and a
/// version at least as high.
fn check_no_lost_write(
    ops: &[Op],
    finals: &BTreeMap<String, Vec<Option<SecretOutput>>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (nm, reads) in finals {
        let on: Vec<&Op> = ops
            .iter()
            .filter(|o| &o.input.name == nm && o.client < 1000)
            .collect();
        let acked = on
            .iter()
            .filter(|o| {
                matches!(
                    o.output,
                    Some(SecretOutput::Created { .. } | SecretOutput::Rotated { .. })
                )
            })
            .max_by_key(|o| o.ret);
        let Some(w) = acked else { continue };
        let deleted_after = on
            .iter()
            .any(|o| o.input.op == SecretOp::Delete && may_write(o) && ret_time(o) > w.call);
        if deleted_after {
            continue;
        }
        let w_version = match w.output {
            Some(SecretOutput::Rotated { version }) => version,
            _ => 1,
        };
        // Values that may legitimately be current: w's, or one written by a create/rotate not
        // over before w began.
        let newer: Vec<u64> = on
            .iter()
            .filter(|o| may_write(o) && ret_time(o) >= w.call)
            .filter_map(|o| written(&o.input.op))
            .collect();
        for (node, r) in reads.iter().enumerate() {
            match r {
                Some(SecretOutput::Value { version, value, .. })
                    if *version >= w_version && newer.contains(value) => {}
                other => problems.push(format!(
                    "lost write: {nm:?} {:?} acknowledged ({:?}) at {} ns, never deleted after, but node {node} reads {other:?} at the end",
                    w.input.op, w.output, w.ret
                )),
            }
        }
        if reads.windows(2).any(|p| p[0] != p[1]) {
            problems.push(format!("nodes disagree at the end on {nm:?}: {reads:?}"));
        }
    }
    problems
}

/// Direct check: no completed read returns an older version of an object than a read that
/// completed before it began.
fn check_monotonic_reads(ops: &[Op]) -> Vec<String> {
    /// (call, ret, version, value) of a successful read.
    type Seen = (u64, u64, u64, u64);
    let mut problems = Vec::new();
    let mut reads: HashMap<(&str, u64), Vec<Seen>> = HashMap::new();
    for o in ops {
        if let Some(SecretOutput::Value {
            version,
            value,
            id: Some(id),
        }) = o.output
        {
            reads
                .entry((o.input.name.as_str(), id))
                .or_default()
                .push((o.call, o.ret, version, value));
        }
    }
    for ((nm, id), rs) in reads {
        for a in &rs {
            for b in &rs {
                if a.1 < b.0 && b.2 < a.2 {
                    problems.push(format!(
                        "stale read: {nm:?} (object {id}) read version {} (value {}) at [{}, {}] ns after a read of version {} (value {}) completed at {} ns",
                        b.2, b.3, b.0, b.1, a.2, a.3, a.1
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.truncate(20);
    problems
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[test]
fn nemesis_history_is_linearizable() {
    let seed = seed();
    println!("LOCKBOX_TEST_SEED={seed}");
    let seconds: u64 = std::env::var("LOCKBOX_NEMESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let net = Net::new(3);
    let mut c = netns_cluster(&net);
    c.leader(Duration::from_secs(10));
    let socks: Vec<PathBuf> = c.nodes.iter().map(|n| n.d.sock()).collect();

    let rec = Recorder::<SecretInput, SecretOutput>::new();
    let stop = AtomicBool::new(false);
    let counter = AtomicU64::new(1);
    let ids = Ids::default();
    let fault_log = Mutex::new(Vec::new());
    let started = Instant::now();
    let faults = std::thread::scope(|s| {
        for n in 0..CLIENTS {
            let (socks, rec, stop, counter, ids) = (&socks, &rec, &stop, &counter, &ids);
            s.spawn(move || client(n, socks, seed, stop, rec, counter, ids));
        }
        let (stop_ref, log) = (&stop, &fault_log);
        let cluster = &mut c;
        let net_ref = &net;
        let nem = s.spawn(move || nemesis(cluster, net_ref, seed, stop_ref, log));
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::SeqCst);
        nem.join().expect("nemesis thread")
    });
    let ran = started.elapsed();
    // Everything restored (each fault is undone before the next); wait for a quorum and for
    // every node to catch up, then read every name on every node.
    for i in 0..3 {
        net.heal(i);
    }
    settle(&c);
    // One definite read per name and node (a slow node may time out: retry, recording every
    // attempt in the history too).
    let mut finals: BTreeMap<String, Vec<Option<SecretOutput>>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for k in 0..NAMES {
        let nm = name(k);
        for (i, n) in c.nodes.iter().enumerate() {
            let out = loop {
                let id = rec.call(
                    1000 + i as u64,
                    SecretInput {
                        name: nm.clone(),
                        op: SecretOp::Read,
                    },
                );
                let out = perform(&n.d.sock(), &nm, SecretOp::Read, &ids);
                match out {
                    Some(o) => rec.ret(id, o),
                    None => rec.unknown(id),
                }
                if matches!(
                    out,
                    Some(SecretOutput::Value { .. } | SecretOutput::NotFound)
                ) || Instant::now() > deadline
                {
                    break out;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            finals.entry(nm.clone()).or_default().push(out);
        }
    }
    let ops = rec.finish();

    // Summary.
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for o in &ops {
        *counts
            .entry((kind(&o.input.op), outcome(&o.output)))
            .or_default() += 1;
    }
    let unknown_writes = ops
        .iter()
        .filter(|o| o.output.is_none() && o.input.op != SecretOp::Read)
        .count();
    println!(
        "nemesis: {} ops in {ran:?} from {CLIENTS} clients on {NAMES} names; {unknown_writes} writes with unknown outcome",
        ops.len()
    );
    for ((k, o), n) in &counts {
        println!("  {k:<6} {o:<9} {n}");
    }
    println!("  faults: {faults:?}");
    for l in fault_log.lock().unwrap().iter() {
        println!("    {l}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("nemesis-{seed}.jsonl"));
    write_history(std::fs::File::create(&path).unwrap(), &ops).unwrap();

    // The check. Without a horizon an unknown write stays a candidate for the rest of its
    // partition; if that search runs out of time, re-check assuming every unknown write took
    // effect (if at all) within 60 s of its call: far more than the client timeout (6 s) plus
    // the daemon's write and apply budgets (5 s + 10 s) plus a fault (≤ 4 s) and an election.
    // That assumption is printed when used.
    let t = Instant::now();
    let mut result = check_with::<SecretsModel>(
        &ops,
        &CheckOptions {
            timeout: Some(Duration::from_secs(120)),
            ..CheckOptions::default()
        },
    );
    if let CheckResult::Timeout { label, steps, .. } = &result {
        println!(
            "  plain check timed out on {label:?} after {steps} steps; re-checking with a 60 s unknown horizon"
        );
        result = check_with::<SecretsModel>(
            &ops,
            &CheckOptions {
                timeout: Some(Duration::from_secs(300)),
                max_steps: None,
                unknown_horizon: Some(60_000_000_000),
            },
        );
    }
    println!(
        "  checker: {:?} in {:?}",
        if result.is_ok() {
            "ok"
        } else if result.is_illegal() {
            "ILLEGAL"
        } else {
            "timeout"
        },
        t.elapsed()
    );

    let mut problems = Vec::new();
    if !result.is_ok() {
        problems.push(render(&ops, &result));
    }
    problems.extend(check_no_lost_write(&ops, &finals));
    problems.extend(check_monotonic_reads(&ops));
    if !problems.is_empty() {
        let saved = target_dir().join(format!("nemesis-{seed}.jsonl"));
        let _ = std::fs::copy(&path, &saved);
        panic!(
            "LOCKBOX_TEST_SEED={seed}: history saved to {}\n{}",
            saved.display(),
            problems.join("\n")
        );
    }
    println!("  history: {}", path.display());
}
