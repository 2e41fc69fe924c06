//! The no-plaintext audit (hardening issue): the whole product runs with secrets holding
//! random markers — daemon, `lockbox run`, `lockbox docker run`, `lockbox compose`,
//! `lockbox build`, `docker run -v` of a lockbox volume, rotation, backup — and then every
//! marker is searched for, raw, base64, hex and
//! UTF-16, in the data directory, the daemon's logs, `/var/lib/docker` (container configs,
//! layers, image history), `docker inspect`/`history`/`save` output, every process's
//! environment and command line, and the host's mount table. Zero hits are allowed: the
//! consumers' tmpfs is gone by the time we look.
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::support::{BIN, Daemon, marker};

const IMAGE: &str = "lockbox-test/busybox:latest";

fn encodings(m: &str) -> Vec<(String, Vec<u8>)> {
    let b = m.as_bytes();
    vec![
        ("raw".into(), b.to_vec()),
        (
            "base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes(),
        ),
        (
            "base64 (unpadded)".into(),
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(b)
                .into_bytes(),
        ),
        (
            "hex".into(),
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "utf-16".into(),
            m.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        ),
    ]
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Regular files under `dir`, not following links, skipping huge ones and /proc-like trees.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            files(&p, out);
        } else if ft.is_file() && e.metadata().map(|m| m.len() < 256 << 20).unwrap_or(false) {
            out.push(p);
        }
    }
}

fn cmd(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("missing prerequisite: {what} (run scripts/prereqs.sh)");
    }
    eprintln!("SKIPPED: missing prerequisite: {what}");
    false
}

#[test]
fn no_marker_survives_anywhere_outside_consumer_tmpfs() {
    no_marker_survives(None);
}

/// The same, the consumers started by a socket-group member holding a grant for the
/// secrets (in the docker socket's group, as `lockbox docker run` needs): files owned by
/// it, no value anywhere else either. `lockbox run` (it makes a mount namespace) and
/// `lockbox build` (its client reads the daemon's root-only staging) stay root's, so those
/// steps run as root here too.
#[test]
fn no_marker_survives_when_a_granted_user_runs_the_consumers() {
    let Some(docker_gid) = crate::grants::docker_gid() else {
        require(false, "the Docker engine's socket /var/run/docker.sock");
        return;
    };
    no_marker_survives(Some(docker_gid));
}

/// With `Some(docker socket's gid)`, the consumers are started by [`crate::authz::GRANTED`].
fn no_marker_survives(granted_user: Option<u32>) {
    if !require(
        cmd("docker", &["image", "inspect", IMAGE]).status.success(),
        "Docker engine with the test image",
    ) || !require(
        Path::new("/usr/bin/docker-compose").exists(),
        "docker-compose",
    ) || !require(
        Path::new("/usr/bin/docker").exists(),
        "/usr/bin/docker (BuildKit client)",
    ) {
        return;
    }
    // The volume driver under the tests' one name, one test at a time (see volumes.rs).
    let driver = crate::volumes::DRIVER.to_string();
    let plugin = format!("/run/docker/plugins/{driver}.sock");
    let socket_gid = crate::authz::SOCKET_GID.to_string();
    let mut d = match granted_user {
        None => Daemon::start_with(&["--log-level", "trace", "--volume-driver", &plugin]),
        Some(_) => {
            let d = Daemon::start_with(&[
                "--log-level",
                "trace",
                "--group",
                &socket_gid,
                "--volume-driver",
                &plugin,
            ]);
            std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let o = d.lb(&["policy", "grant", "--uid", "64206", "--use", "np_*"]);
            assert_eq!(o.code, 0, "{o:?}");
            d
        }
    };
    // A consumer command: as root, or as the granted user.
    let consumer = || match granted_user {
        None => Command::new(BIN),
        Some(docker_gid) => crate::grants::lockbox_as(crate::authz::GRANTED, &[docker_gid]),
    };
    let m: Vec<String> = (0..7).map(|_| marker()).collect();
    for (name, v) in [
        ("np_run", &m[0]),
        ("np_dock", &m[1]),
        ("np_comp", &m[2]),
        ("np_build", &m[3]),
        ("np_vol", &m[6]),
    ] {
        d.create(name, v.as_bytes());
    }
    let tag = &m[5][7..17];

    // lockbox run: a process reads its secret.
    let o = d.lb(&[
        "run",
        "--secret",
        "np_run",
        "--",
        "sh",
        "-c",
        "test -s /run/secrets/np_run",
    ]);
    assert_eq!(o.code, 0, "lockbox run: {o:?}");

    // lockbox docker run: a container reads its secret.
    let o = consumer()
        .arg("-H")
        .arg(d.sock())
        .args([
            "docker",
            "run",
            "--secret",
            "np_dock",
            "--",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "test -s /run/secrets/np_dock",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lockbox docker run: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The volume driver: plain docker run mounts a lockbox volume; the volume goes after.
    let vol = format!("{driver}-vol");
    let o = cmd(
        "docker",
        &[
            "volume",
            "create",
            "-d",
            &driver,
            "-o",
            "secret=np_vol",
            &vol,
        ],
    );
    assert!(o.status.success(), "volume create: {o:?}");
    let mount = format!("{vol}:/run/secrets:ro");
    let o = cmd(
        "docker",
        &[
            "run",
            "--rm",
            "-v",
            &mount,
            IMAGE,
            "test",
            "-s",
            "/run/secrets/np_vol",
        ],
    );
    let _ = cmd("docker", &["volume", "rm", "-f", &vol]);
    assert!(o.status.success(), "docker run -v: {o:?}");

    // lockbox compose: a service keeps running while its secret is rotated, then goes down.
    let proj = tempfile::tempdir().unwrap();
    std::fs::set_permissions(proj.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pname = format!("lbnp{tag}");
    std::fs::write(
        proj.path().join("docker-compose.yml"),
        format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"while true; do cat /run/secrets/db > /dev/null; sleep 0.2; done\"]\n    secrets:\n      - source: db\n        target: db\n        mode: 0400\nsecrets:\n  db:\n    external: true\n    name: np_comp\n"
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let mut c = consumer();
        c.current_dir(proj.path())
            .arg("-H")
            .arg(d.sock())
            .args(["compose", "--compose", "docker-compose", "-p", &pname, "--"])
            .args(args)
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let o = compose(&["up", "-d"]);
    assert!(
        o.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.lb_in(&["secret", "rotate", "np_comp", "-"], Some(m[4].as_bytes()));
    assert_eq!(o.code, 0, "{o:?}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // While it runs: nothing in docker inspect or the container process's environment.
    let ids = String::from_utf8_lossy(
        &cmd(
            "docker",
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={pname}"),
            ],
        )
        .stdout,
    )
    .into_owned();
    let mut live: Vec<(String, Vec<u8>)> = Vec::new();
    for id in ids.split_whitespace() {
        live.push((
            format!("docker inspect {id}"),
            cmd("docker", &["inspect", id]).stdout,
        ));
        let pid = String::from_utf8_lossy(
            &cmd("docker", &["inspect", "-f", "{{.State.Pid}}", id]).stdout,
        )
        .trim()
        .to_string();
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            live.push((format!("environ of container {id}"), env));
        }
    }
    assert!(!live.is_empty(), "the compose service is running");
    let o = compose(&["down"]);
    assert!(
        o.status.success(),
        "compose down: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // lockbox build: a RUN step reads the secret. Root's in both runs: the build client
    // reads the file from the daemon's staging directory, which only root may open.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo ok > /built\n"),
    )
    .unwrap();
    let image = format!("lbnp-{tag}:1");
    let o = Command::new(BIN)
        .current_dir(ctx.path())
        .arg("-H")
        .arg(d.sock())
        .args([
            "build",
            "--secret",
            "id=tok,src=np_build",
            "--",
            "--no-cache",
            "-t",
            &image,
            ".",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let built = o.status.success();
    let mut places = live;
    if built {
        places.push((
            "docker history".into(),
            cmd("docker", &["history", "--no-trunc", &image]).stdout,
        ));
        places.push((
            "docker image inspect".into(),
            cmd("docker", &["image", "inspect", &image]).stdout,
        ));
        places.push((
            "docker save".into(),
            cmd("docker", &["save", &image]).stdout,
        ));
        let _ = cmd("docker", &["rmi", "-f", &image]);
    }
    assert!(
        built,
        "lockbox build: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Process metadata of everything still running (the daemon included).
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            for f in ["environ", "cmdline"] {
                if let Ok(b) = std::fs::read(p.join(f)) {
                    places.push((format!("{}/{f}", p.display()), b));
                }
            }
        }
    }
    places.push((
        "host mountinfo".into(),
        std::fs::read("/proc/self/mountinfo").unwrap(),
    ));
    // A backup of everything above: ciphertext only.
    let bak_dir = tempfile::tempdir().unwrap();
    let bak = bak_dir.path().join("all.lbxbak");
    let o = d.lb(&["backup", bak.to_str().unwrap()]);
    assert_eq!(o.code, 0, "lockbox backup: {o:?}");
    places.push(("backup file".into(), std::fs::read(&bak).unwrap()));
    d.stop();
    places.push(("daemon log".into(), d.log_text().into_bytes()));

    let mut paths = Vec::new();
    files(&d.data(), &mut paths);
    files(Path::new("/var/lib/docker"), &mut paths);
    assert!(paths.iter().any(|p| p.ends_with("store.redb")));
    let needles: Vec<(String, Vec<u8>)> = m[..5]
        .iter()
        .chain(&m[6..])
        .enumerate()
        .flat_map(|(i, mk)| {
            encodings(mk)
                .into_iter()
                .map(move |(e, b)| (format!("marker {i} ({e})"), b))
        })
        .collect();
    let mut hits = Vec::new();
    for (what, bytes) in &places {
        for (n, needle) in &needles {
            if find(bytes, needle) {
                hits.push(format!("{n} in {what}"));
            }
        }
    }
    for p in &paths {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        for (n, needle) in &needles {
            if find(&bytes, needle) {
                hits.push(format!("{n} in {}", p.display()));
            }
        }
    }
    eprintln!(
        "no-plaintext audit: searched {} files and {} other places for {} encodings",
        paths.len(),
        places.len(),
        needles.len()
    );
    assert!(
        hits.is_empty(),
        "plaintext found outside consumers' tmpfs:\n{}",
        hits.join("\n")
    );
}
