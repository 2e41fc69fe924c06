//! The volume driver end to end: the real engine drives a daemon's plugin socket (`docker
//! volume create -d`, `docker run -v`, `--mount …,volume-opt=`, Compose v2 and v1
//! `driver_opts`), containers read their secrets with the owners and modes asked for, see a
//! rotation live, and every way a mount ends (`docker rm -f`, `compose down -v`, a lockbox
//! restart or crash) leaves no tmpfs in the host's mount table.
//!
//! Every test that serves the volume driver (these and the no-plaintext audit) serves it under
//! one name, `/run/docker/plugins/lbvtest.sock`, one test at a time (the nextest test group
//! `volume-driver`, `.config/nextest.toml`): dockerd remembers every legacy volume plugin it
//! has looked up until it restarts and asks each of them on `docker volume ls` and on a
//! lookup of an unknown volume (Compose makes one per volume), retrying one whose socket is
//! gone for about 30 s. With a name per test, each finished test cost every later Compose
//! volume lookup those 30 s. Needs root, a Docker engine with
//! `lockbox-test/busybox:latest` and both Composes (`scripts/prereqs.sh`); under `CI=true`
//! a missing one is a failure.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::compose::{
    Compose, IMAGE, docker, exec, ok, prereqs, rand_hex, staging_mounts, wait_until, workloads,
};
use crate::support::{Daemon, Out, http};

/// The one name every test serves the volume driver under (see the module's note).
pub(crate) const DRIVER: &str = "lbvtest";

/// A daemon serving the volume driver, and its name.
struct Driver {
    d: Daemon,
    name: String,
    volumes: Vec<String>,
}

impl Driver {
    /// A daemon serving the driver under its one name (`DRIVER`).
    fn start() -> Self {
        let name = DRIVER.to_owned();
        let sock = Self::sock_of(&name);
        let d = Daemon::start_with(&["--volume-driver", sock.to_str().unwrap()]);
        Driver {
            d,
            name,
            volumes: Vec::new(),
        }
    }

    fn sock_of(name: &str) -> PathBuf {
        PathBuf::from(format!("/run/docker/plugins/{name}.sock"))
    }

    fn sock(&self) -> PathBuf {
        Self::sock_of(&self.name)
    }

    fn restart(&mut self) {
        let sock = self.sock();
        self.d.restart(&["--volume-driver", sock.to_str().unwrap()]);
    }

    fn respawn(&mut self) {
        let sock = self.sock();
        self.d.spawn(&["--volume-driver", sock.to_str().unwrap()]);
    }

    /// A volume name of this test (removed by the guard).
    fn volume(&mut self, suffix: &str) -> String {
        let v = format!("{}-{suffix}-{}", self.name, rand_hex(3));
        self.volumes.push(v.clone());
        v
    }

    /// `docker volume create -d <driver> -o …  NAME`.
    fn create(&self, volume: &str, opts: &[&str]) -> Out {
        let mut args = vec!["volume", "create", "-d", &self.name];
        for o in opts {
            args.extend(["-o", o]);
        }
        args.push(volume);
        docker(&args)
    }

    /// One call of the plugin protocol, as dockerd makes it.
    fn plugin(&self, call: &str, body: &str) -> serde_json::Value {
        let (status, body) = http(
            &self.sock(),
            "POST",
            &format!("/VolumeDriver.{call}"),
            Some(body),
        );
        assert_eq!(status, 200, "{call}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        let (st, body) = self.d.http("GET", "/v1/audit", None);
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Driver {
    /// Whether the driver holds volume `name` (its `List`, which dockerd's `volume ls`
    /// merges: asking the driver directly spares the shared engine a walk over every volume
    /// plugin it remembers).
    fn known(&self, name: &str) -> bool {
        // No assertion here: the guard calls it, maybe while the test unwinds.
        let Ok(stream) = std::os::unix::net::UnixStream::connect(self.sock()) else {
            return false;
        };
        drop(stream);
        let (_, body) = http(&self.sock(), "POST", "/VolumeDriver.List", Some("{}"));
        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
            v["Volumes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v["Name"] == name))
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only volumes that exist: dockerd looks an unknown name up in every volume plugin
        // it remembers, retrying those that are gone.
        let volumes: Vec<String> = self
            .volumes
            .iter()
            .filter(|v| self.known(v))
            .cloned()
            .collect();
        for v in &volumes {
            for c in docker(&["ps", "-aq", "--filter", &format!("volume={v}")])
                .stdout
                .lines()
            {
                let _ = docker(&["rm", "-f", c]);
            }
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        // A killed daemon leaves its socket: dockerd would keep finding a dead plugin.
        self.d.kill9();
        let _ = std::fs::remove_file(self.sock());
    }
}

/// `uid gid mode value` of each file, read inside the container.
const SHOW: &str = r#"for f in "$@"; do printf '%s %s|' "$(stat -L -c '%u %g %a' /run/secrets/$f)" "$(cat /run/secrets/$f)"; done"#;

fn show(files: &[&str]) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".to_string(),
        SHOW.to_string(),
        "sh".to_string(),
    ];
    v.extend(files.iter().map(|s| s.to_string()));
    v
}

#[test]
fn run_v_and_mount_volume_opt_deliver_owners_modes_and_rotations_live() {
    if !prereqs(None, false) {
        return;
    }
    let mut drv = Driver::start();
    drv.d.create("vdb", b"db-one");
    drv.d.create("vapi", b"api-key");
    let vol = drv.volume("app");
    ok(
        drv.create(
            &vol,
            &[
                "secret=vdb",
                "secret.k=source=vapi,target=key,uid=101,gid=102,mode=0400",
            ],
        ),
        "volume create",
    );

    // docker run -v: both files, each with its owner and mode, on a read-only tmpfs.
    let mount = format!("{vol}:/run/secrets:ro");
    let mut args = vec!["run", "--rm", "-v", &mount, IMAGE];
    let cmd = show(&["vdb", "key"]);
    args.extend(cmd.iter().map(String::as_str));
    let got = ok(docker(&args), "docker run -v");
    assert_eq!(got, "0 0 444 db-one|101 102 400 api-key|");
    assert!(
        staging_mounts(&drv.d).is_empty(),
        "{:?}",
        staging_mounts(&drv.d)
    );

    // --mount with volume-opt: Docker creates the volume with the options; a full
    // reference (commas) is one quoted CSV field.
    let vol2 = drv.volume("mnt");
    let spec = format!(
        "type=volume,src={vol2},dst=/run/secrets,readonly,volume-driver={},volume-opt=secret=vdb,\"volume-opt=secret.api=source=vapi,target=api,gid=7,mode=0440\"",
        drv.name
    );
    let mut args = vec!["run", "--rm", "--mount", &spec, IMAGE];
    let cmd = show(&["vdb", "api"]);
    args.extend(cmd.iter().map(String::as_str));
    let got = ok(docker(&args), "docker run --mount");
    assert_eq!(got, "0 0 444 db-one|0 7 440 api-key|");
    let mp = ok(
        docker(&[
            "run",
            "--rm",
            "--mount",
            &spec,
            IMAGE,
            "grep",
            " /run/secrets ",
            "/proc/mounts",
        ]),
        "mount table",
    );
    assert!(mp.contains("tmpfs ro,"), "{mp}");

    // A running container sees a rotation through the volume.
    let name = format!("{}-c", drv.name);
    ok(
        docker(&[
            "run", "-d", "--name", &name, "-v", &mount, IMAGE, "sleep", "300",
        ]),
        "docker run -d",
    );
    assert_eq!(staging_mounts(&drv.d).len(), 1);
    let o = drv
        .d
        .lb_in(&["secret", "rotate", "vdb", "-"], Some(b"db-two"));
    assert_eq!(o.code, 0, "{o:?}");
    let t = Instant::now();
    wait_until(
        "the rotation in the container",
        Duration::from_secs(10),
        || exec(&name, "cat /run/secrets/vdb").stdout == "db-two",
    );
    eprintln!(
        "rotation visible through the volume after {:?}",
        t.elapsed()
    );

    // Docker refuses to remove a volume in use; lockbox keeps it.
    let o = docker(&["volume", "rm", &vol]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("volume is in use"), "{o:?}");
    assert!(drv.known(&vol));

    // Every value was handed out audited with the volume and its mount ID.
    let reveals: Vec<_> = drv
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "handout" && r["detail"]["volume"] == vol.as_str())
        .collect();
    assert!(reveals.len() >= 4, "{reveals:#?}");
    assert!(
        reveals.iter().all(|r| r["detail"]["mount_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty())),
        "{reveals:#?}"
    );

    // docker rm -f: Docker unmounts, the tmpfs goes.
    ok(docker(&["rm", "-f", &name]), "rm -f");
    wait_until("no mount left", Duration::from_secs(10), || {
        staging_mounts(&drv.d).is_empty()
    });
    assert_eq!(workloads(&drv.d), serde_json::json!([]));
    ok(docker(&["volume", "rm", &vol, &vol2]), "volume rm");
    let body = drv.plugin("List", "{}");
    assert_eq!(body["Volumes"], serde_json::json!([]), "{body}");
}

#[test]
fn bad_inputs_get_lockbox_messages_and_leave_nothing() {
    if !prereqs(None, false) {
        return;
    }
    let mut drv = Driver::start();
    drv.d.create("vok", b"fine");
    let bad = drv.volume("bad");
    let cases: [(&[&str], &str); 5] = [
        (&["secret=vnope"], "lockbox: secret not found: vnope"),
        (
            &["secret=vok,vnope,vnope2"],
            "lockbox: secrets not found: vnope, vnope2",
        ),
        (&["secrets=vok"], "lockbox: unknown option \"secrets\""),
        (&["secret=source=vok,target=/etc/x"], "is absolute"),
        (
            &["secret=source=vok,mode=0999"],
            "lockbox: option secret=source=vok,mode=0999: ",
        ),
    ];
    for (opts, want) in cases {
        let o = drv.create(&bad, opts);
        assert_ne!(o.code, 0, "{opts:?}: {o:?}");
        assert!(
            o.stderr.starts_with("Error response from daemon: create ") && o.stderr.contains(want),
            "{opts:?}: {o:?}"
        );
        assert!(!drv.known(&bad));
    }
    let o = drv.create(&bad, &[]);
    assert!(
        o.stderr.contains("lockbox: the volume names no secret"),
        "{o:?}"
    );

    // A --mount naming an unknown secret: the run fails with lockbox's message, nothing runs.
    let spec = format!(
        "type=volume,src={bad},dst=/run/secrets,volume-driver={},volume-opt=secret=vnope",
        drv.name
    );
    let o = docker(&["run", "--rm", "--mount", &spec, IMAGE, "true"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("lockbox: secret not found: vnope"),
        "{o:?}"
    );

    // What dockerd may send: an unknown volume, a mount ID twice, an unknown mount ID.
    let e = drv.plugin("Mount", r#"{"Name":"nowhere","ID":"m1"}"#);
    assert!(
        e["Err"]
            .as_str()
            .unwrap()
            .starts_with("lockbox: no volume named nowhere"),
        "{e}"
    );
    let e = drv.plugin("Get", r#"{"Name":"nowhere"}"#);
    assert!(
        e["Err"]
            .as_str()
            .unwrap()
            .starts_with("lockbox: no volume named nowhere"),
        "{e}"
    );
    let good = drv.volume("good");
    ok(drv.create(&good, &["secret=vok"]), "create");
    let body = format!(r#"{{"Name":"{good}","ID":"m1"}}"#);
    let first = drv.plugin("Mount", &body);
    assert_eq!(first["Err"], "", "{first}");
    let again = drv.plugin("Mount", &body);
    assert_eq!(
        again["Err"],
        format!("lockbox: mount ID m1 of volume {good} is already mounted: Unmount it first")
    );
    assert_eq!(staging_mounts(&drv.d).len(), 1);
    let e = drv.plugin("Remove", &format!(r#"{{"Name":"{good}"}}"#));
    assert!(e["Err"].as_str().unwrap().contains("is in use"), "{e}");
    assert_eq!(drv.plugin("Unmount", &body)["Err"], "");
    assert!(staging_mounts(&drv.d).is_empty());
    assert_eq!(
        drv.plugin("Unmount", &body)["Err"],
        "",
        "an unknown mount ID is already unmounted"
    );
    let e = drv.plugin("Mount", r#"{"Name":"x"}"#);
    assert_eq!(e["Err"], "lockbox: the Mount request has no mount ID");
    let e = drv.plugin("Create", "{not json");
    assert!(
        e["Err"]
            .as_str()
            .unwrap()
            .starts_with("lockbox: malformed Create request"),
        "{e}"
    );

    // The policy: once volumes are granted something, a volume names only what it covers,
    // at create and at every mount (a volume made before the grant included).
    drv.d.create("vother", b"not for volumes");
    let wide = drv.volume("wide");
    ok(
        drv.create(&wide, &["secret=vother"]),
        "create before any volume grant",
    );
    let o = drv.d.lb(&["policy", "grant", "--volumes", "--use", "vok"]);
    assert_eq!(o.code, 0, "{o:?}");
    let narrow = drv.volume("narrow");
    let o = drv.create(&narrow, &["secret=vok,vother"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("lockbox: volume ")
            && o.stderr.contains("secret vother is not granted to volumes"),
        "{o:?}"
    );
    assert!(!drv.known(&narrow));
    ok(
        drv.create(&narrow, &["secret=vok"]),
        "create within the grant",
    );
    let o = docker(&["run", "--rm", "-v", &format!("{wide}:/s"), IMAGE, "true"]);
    assert!(
        o.stderr.contains("secret vother is not granted to volumes"),
        "{o:?}"
    );
    assert_eq!(staging_mounts(&drv.d).len(), 0);
    let o = drv.d.lb(&["policy", "revoke", "--volumes", "--use", "vok"]);
    assert_eq!(o.code, 0, "{o:?}");
    let audit = drv.d.lb(&["audit", "ls", "--format", "json"]);
    assert!(audit.stdout.contains("policy-grant"), "{audit:?}");

    // A secret removed after the volume was made fails the next mount, leaving nothing.
    let o = drv.d.lb(&["secret", "rm", "vok"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = docker(&["run", "--rm", "-v", &format!("{good}:/s"), IMAGE, "true"]);
    assert!(o.stderr.contains("lockbox: secret not found: vok"), "{o:?}");
    assert!(staging_mounts(&drv.d).is_empty());
    assert_eq!(workloads(&drv.d), serde_json::json!([]));
}

#[test]
fn a_lockbox_restart_keeps_live_mounts_rotating_and_a_crash_leaves_none_behind() {
    if !prereqs(None, false) {
        return;
    }
    let mut drv = Driver::start();
    drv.d.create("vrs", b"before");
    let vol = drv.volume("rs");
    ok(drv.create(&vol, &["secret=vrs"]), "create");
    let name = format!("{}-c", drv.name);
    let mount = format!("{vol}:/run/secrets:ro");
    ok(
        docker(&[
            "run", "-d", "--name", &name, "-v", &mount, IMAGE, "sleep", "300",
        ]),
        "run -d",
    );
    // A clean restart: the mount is found again and still gets rotations; the volume
    // definition came back from the store.
    drv.restart();
    assert_eq!(staging_mounts(&drv.d).len(), 1);
    let o = drv
        .d
        .lb_in(&["secret", "rotate", "vrs", "-"], Some(b"after"));
    assert_eq!(o.code, 0, "{o:?}");
    wait_until(
        "the rotation after a restart",
        Duration::from_secs(10),
        || exec(&name, "cat /run/secrets/vrs").stdout == "after",
    );
    let got = ok(
        docker(&["volume", "inspect", "--format", "{{json .Status}}", &vol]),
        "inspect",
    );
    assert!(got.contains("\"Mounts\":1"), "{got}");

    // A crash, and the container goes while lockbox is down (dockerd cannot unmount): the
    // next start finds no container using the volume and reaps the mount.
    drv.d.kill9();
    // Its socket goes too: dockerd retries a socket nobody answers on for up to 30 s, which
    // would slow every volume call on the shared engine; "no such file" fails at once.
    let _ = std::fs::remove_file(drv.sock());
    ok(docker(&["rm", "-f", &name]), "rm -f while lockbox is down");
    drv.respawn();
    wait_until("the stale mount reaped", Duration::from_secs(10), || {
        staging_mounts(&drv.d).is_empty()
    });
    assert_eq!(workloads(&drv.d), serde_json::json!([]));
    // The volume is still there and mounts again.
    let got = ok(
        docker(&[
            "run",
            "--rm",
            "-v",
            &mount,
            IMAGE,
            "cat",
            "/run/secrets/vrs",
        ]),
        "run after the crash",
    );
    assert_eq!(got, "after");
    assert!(staging_mounts(&drv.d).is_empty());
}

mod compose_projects {
    #[test]
    fn v2() {
        super::compose_project_reads_secrets_and_down_v_leaves_nothing(super::Compose::V2)
    }
    #[test]
    fn v1() {
        super::compose_project_reads_secrets_and_down_v_leaves_nothing(super::Compose::V1)
    }
}

fn compose_project_reads_secrets_and_down_v_leaves_nothing(compose: Compose) {
    if !prereqs(Some(compose), false) {
        return;
    }
    let drv = Driver::start();
    drv.d.create("vcdb", b"compose-db");
    drv.d.create("vctls", b"compose-tls");
    let project = format!("lbvp{}", rand_hex(4));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  app:
    image: {IMAGE}
    command: ["sleep", "300"]
    user: "101:102"
    volumes:
      - sec:/run/secrets:ro
volumes:
  sec:
    driver: {driver}
    driver_opts:
      secret: vcdb
      secret.tls: "source=vctls,target=tls/key,uid=101,gid=102,mode=0400"
"#,
            driver = drv.name
        ),
    )
    .unwrap();
    let run = |args: &[&str]| -> Out {
        let mut words = compose.command().split_whitespace();
        let o = Command::new(words.next().unwrap())
            .args(words)
            .current_dir(dir.path())
            // Compose v1 gives up on an engine call after 60 s, which a loaded shared
            // machine can exceed.
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .args(["-p", &project])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Out);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "-v"]);
        }
    }
    let _down = Down(&run);
    ok(run(&["up", "-d"]), "compose up");
    let container = match compose {
        Compose::V2 => format!("{project}-app-1"),
        Compose::V1 => format!("{project}_app_1"),
    };
    // The service runs as 101:102: it reads the file given to it, and not the other.
    let got = exec(
        &container,
        r#"stat -L -c '%u %g %a' /run/secrets/tls/key /run/secrets/vcdb; cat /run/secrets/tls/key /run/secrets/vcdb; id -u"#,
    );
    assert_eq!(
        got.stdout, "101 102 400\n0 0 444\ncompose-tlscompose-db101\n",
        "{got:?}"
    );
    assert_eq!(staging_mounts(&drv.d).len(), 1);
    ok(run(&["down", "-v"]), "compose down -v");
    wait_until("no mount after down -v", Duration::from_secs(10), || {
        staging_mounts(&drv.d).is_empty()
    });
    assert!(!drv.known(&format!("{project}_sec")));
    assert_eq!(drv.plugin("List", "{}")["Volumes"], serde_json::json!([]));
}
