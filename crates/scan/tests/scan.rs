//! Integration tests for `lockbox scan`: real files in temporary directories, the real
//! `docker` engine for images and containers, everything driven through `run` with
//! in-memory writers exactly as the binary will call it.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockbox_scan::cli::{Format, ScanArgs};
use lockbox_scan::content_rules::{CONTENT_RULES, Kind};
use lockbox_scan::{Severity, run};
use serde_json::Value;

#[path = "corpus/corpus.rs"]
mod corpus_gen;

// ---------------------------------------------------------------------------------------
// helpers

fn args(paths: &[&Path]) -> ScanArgs {
    ScanArgs {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        images: Vec::new(),
        containers: false,
        format: Format::Json,
        baseline: None,
        write_baseline: None,
        min_severity: Severity::Info,
        exit_code: 1,
        threads: Some(2),
        no_progress: true,
        list_rules: false,
        fix: false,
        dry_run: false,
        yes: false,
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.stdout))
    }
    fn findings(&self) -> Vec<Value> {
        self.json()["findings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    /// (rule, path, line) of every finding.
    fn hits(&self) -> Vec<(String, String, u64)> {
        self.findings()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap_or_default().to_string(),
                    f["path"].as_str().unwrap_or_default().to_string(),
                    f["line"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
    fn has(&self, rule: &str, path: &str) -> bool {
        self.hits().iter().any(|(r, p, _)| r == rule && p == path)
    }
    fn rules_in(&self, path: &str) -> Vec<String> {
        self.hits()
            .into_iter()
            .filter(|(_, p, _)| p == path)
            .map(|(r, _, _)| r)
            .collect()
    }
}

fn scan(a: &ScanArgs) -> Outcome {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(a, &mut out, &mut err);
    Outcome {
        code,
        stdout: String::from_utf8(out).expect("utf-8 stdout"),
        stderr: String::from_utf8(err).expect("utf-8 stderr"),
    }
}

fn scan_dir(dir: &Path) -> Outcome {
    scan(&args(&[dir]))
}

fn write(dir: &Path, rel: &str, body: &str) -> PathBuf {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, body).expect("write");
    p
}

use corpus_gen::{Rng, expand};

fn rule_file(id: &str) -> String {
    format!("{}.cfg", id.trim_start_matches("content."))
}

// ---------------------------------------------------------------------------------------
// content rules: one positive and one negative per rule

#[test]
fn every_content_rule_fires_on_its_sample_and_not_on_placeholder_fill() {
    assert!(
        CONTENT_RULES.len() >= 60,
        "the issue asks for at least 60 content rules"
    );
    // The engine compiles capture regexes on first use: compile every one here.
    for r in CONTENT_RULES.iter() {
        if let Err(e) = lockbox_scan::content::compile_rule(r) {
            panic!("{e}");
        }
    }
    let pos = tempfile::tempdir().expect("tempdir");
    let neg = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut secrets = Vec::new();
    for r in CONTENT_RULES.iter() {
        let sample = expand(r.sample, &mut rng, false);
        secrets.push(sample.clone());
        write(
            pos.path(),
            &rule_file(r.id),
            &format!("# {}\n{sample}\n", r.title),
        );
        write(
            neg.path(),
            &rule_file(r.id),
            &format!("# {}\n{}\n", r.title, expand(r.sample, &mut rng, true)),
        );
    }
    let p = scan_dir(pos.path());
    assert_eq!(p.code, 1, "{}", p.stderr);
    let mut missing = Vec::new();
    for r in CONTENT_RULES.iter() {
        let file = rule_file(r.id);
        let rules = p.rules_in(&file);
        if !rules.iter().any(|x| x == r.id) {
            missing.push(format!("{} (got {rules:?})", r.id));
        }
    }
    assert!(
        missing.is_empty(),
        "rules that missed their own sample: {missing:#?}"
    );

    let n = scan_dir(neg.path());
    let mut fired = Vec::new();
    for r in CONTENT_RULES.iter() {
        let file = rule_file(r.id);
        if n.rules_in(&file).iter().any(|x| x == r.id) {
            fired.push(r.id);
        }
    }
    assert!(
        fired.is_empty(),
        "rules that fired on placeholder fill: {fired:?}"
    );

    // Redaction: no output format ever contains a full planted secret value.
    for format in [Format::Text, Format::Json, Format::Sarif] {
        let mut a = args(&[pos.path()]);
        a.format = format;
        let o = scan(&a);
        for (r, s) in CONTENT_RULES.iter().zip(&secrets) {
            // The secret part is what follows the last `=`, `:` or space of the sample line.
            let value = s
                .rsplit(['=', ' ', '\n'])
                .find(|t| t.len() >= 12)
                .unwrap_or(s);
            assert!(
                !o.stdout.contains(value),
                "{:?} output leaks the {} sample {value:?}",
                format,
                r.id
            );
        }
    }
}

#[test]
fn high_entropy_strings_in_assignments() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(61);
    let mut tok = || expand("{a:40}", &mut rng, false);
    let (a, b, c, e, f) = (tok(), tok(), tok(), tok(), tok());
    write(
        d.path(),
        "config.js",
        &format!(
            "const session = \"{a}\";\nconst fontData = \"{b}\";\nconst sha256_digest = \"{c}\";\nconsole.log(\"{e}\");\nconst label = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\";\n"
        ),
    );
    write(d.path(), "README.md", &format!("session = \"{f}\"\n"));
    let o = scan_dir(d.path());
    assert_eq!(
        o.hits(),
        vec![(
            "content.high-entropy-string".to_string(),
            "config.js".to_string(),
            1
        )],
        "{}",
        o.stdout
    );
}

#[test]
fn provider_rules_still_fire_in_test_fixtures_but_generic_ones_do_not() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(7);
    let gh = expand("ghp_{a:36}", &mut rng, false);
    write(
        d.path(),
        "tests/fixtures/config.yml",
        &format!("token: {gh}\ndb_password: \"S3cure!pass\"\n"),
    );
    write(d.path(), "app/config.yml", "db_password: \"S3cure!pass\"\n");
    write(
        d.path(),
        "web/package-lock.json",
        "{\"api_key\": \"k9Xw2Lq8Zt4Rv7Np3Ms6\"}\n",
    );
    let o = scan_dir(d.path());
    assert!(o.has("content.github-pat", "tests/fixtures/config.yml"));
    assert!(
        !o.rules_in("tests/fixtures/config.yml")
            .contains(&"content.secret-assignment".to_string())
    );
    assert!(o.has("content.secret-assignment", "app/config.yml"));
    assert!(o.rules_in("web/package-lock.json").is_empty());
}

#[test]
fn generic_rules_skip_placeholders_references_and_code_expressions() {
    let d = tempfile::tempdir().expect("tempdir");
    write(
        d.path(),
        "settings.py",
        "DB_PASSWORD = os.environ[\"DB_PASSWORD\"]\n\
         password = get_password()\n\
         api_key = settings.API_KEY\n\
         token = \"${API_TOKEN}\"\n\
         secret = \"changeme\"\n\
         if password == other: pass\n\
         result_key = \"Items.Name\"\n\
         next_token = \"NextToken\"\n\
         aws_key = \"AKIAIOSFODNN7EXAMPLE\"\n",
    );
    write(
        d.path(),
        "app.ini",
        "[db]\npassword = <your-password>\nurl = postgres://app:${DB_PASS}@db/app\n",
    );
    let o = scan_dir(d.path());
    assert_eq!(o.hits(), vec![], "{}", o.stdout);
    assert_eq!(o.code, 0);

    write(d.path(), "real.py", "DB_PASSWORD = \"Hunter2-prod!\"\n");
    write(
        d.path(),
        "real.ini",
        "[db]\npassword = s3cr3t-Pa55\nurl = postgres://app:Pr0dPa55w0rd@db/app\n",
    );
    let o = scan_dir(d.path());
    assert!(
        o.has("content.secret-assignment", "real.py"),
        "{}",
        o.stdout
    );
    assert!(o.has("content.secret-assignment", "real.ini"));
    assert!(o.has("content.connection-string-password", "real.ini"));
}

// ---------------------------------------------------------------------------------------
// the Docker guide's examples

#[test]
fn docker_guide_examples_are_flagged() {
    let d = tempfile::tempdir().expect("tempdir");
    write(
        d.path(),
        "compose.yaml",
        "services:\n  db:\n    image: mysql\n    environment:\n      MYSQL_ROOT_PASSWORD: foobar\n",
    );
    write(
        d.path(),
        "list/docker-compose.yml",
        "services:\n  db:\n    image: mysql:8\n    environment:\n      - MYSQL_ROOT_PASSWORD=foobar\n",
    );
    write(
        d.path(),
        "run.sh",
        "#!/bin/sh\ndocker run -d -e MYSQL_ROOT_PASSWORD=foobar mysql\n",
    );
    write(
        d.path(),
        "Dockerfile",
        "FROM node:20\nARG NPM_AUTH_TOKEN\nRUN echo \"//registry.npmjs.org/:_authToken=${NPM_AUTH_TOKEN}\" > ~/.npmrc && npm ci\n",
    );
    let o = scan_dir(d.path());
    let hits = o.hits();
    assert!(
        hits.contains(&(
            "compose.env-literal-secret".into(),
            "compose.yaml".into(),
            5
        )),
        "{hits:?}"
    );
    assert!(hits.contains(&(
        "compose.env-literal-secret".into(),
        "list/docker-compose.yml".into(),
        5
    )));
    assert!(hits.contains(&("shell.docker-run-env-secret".into(), "run.sh".into(), 2)));
    assert!(hits.contains(&("dockerfile.arg-secret".into(), "Dockerfile".into(), 2)));
    assert!(hits.contains(&(
        "dockerfile.arg-secret-in-run".into(),
        "Dockerfile".into(),
        3
    )));
    // The value is never printed, only its first character and length.
    assert!(!o.stdout.contains("foobar"));
    let f = o
        .findings()
        .into_iter()
        .find(|f| f["path"] == "compose.yaml")
        .expect("compose finding");
    assert_eq!(f["secret"]["prefix"], "f");
    assert_eq!(f["secret"]["length"], 6);
    assert_eq!(f["column"], 28);
}

// ---------------------------------------------------------------------------------------
// Compose rules

#[test]
fn compose_rules_positive_and_negative() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    git(root, &["init", "-q"]);
    write(root, ".gitignore", "ignored.txt\n");
    write(root, "ignored.txt", "s3cret\n");
    write(root, "tracked-dir/plain.txt", "s3cret\n");
    write(
        root,
        "app.env",
        "# comment\nAPI_TOKEN=s3cr3tV4lue99\nDEBUG=1\nDB_PASSWORD=${FROM_SHELL}\n",
    );
    write(
        root,
        "compose.yaml",
        r#"services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${PG_PASSWORD}
      POSTGRES_USER: app
      POSTGRES_DB: app
    env_file: app.env
    secrets:
      - source: ok_secret
        mode: 0440
      - source: bad_mode
        mode: 440
      - source: octal_word
        mode: 0o400
      - source: decimal_ok
        mode: 288
  cache:
    image: bitnami/redis
    environment:
      - REDIS_PASSWORD_FILE=/run/secrets/redis
      - ALLOW_EMPTY_PASSWORD=yes
      - SESSION_SECRET=${SESSION_SECRET}
  mq:
    image: rabbitmq:3
    environment:
      RABBITMQ_DEFAULT_PASS: guest-Pr0d
      RABBITMQ_DEFAULT_PASS_FILE: /run/secrets/mq
secrets:
  ignored:
    file: ./ignored.txt
  not_ignored:
    file: ./tracked-dir/plain.txt
  missing:
    file: ./nope.txt
  both:
    file: ./ignored.txt
    external: true
  only_external:
    external: true
"#,
    );
    let o = scan_dir(root);
    let hits = o.hits();
    let at = |rule: &str, path: &str, line: u64| {
        hits.contains(&(rule.to_string(), path.to_string(), line))
    };
    assert!(
        at("compose.use-file-variant", "compose.yaml", 5),
        "{hits:#?}"
    );
    assert!(at("compose.env-file-secret", "app.env", 2));
    assert!(at("compose.secret-mode-decimal", "compose.yaml", 13));
    assert!(at("compose.env-literal-secret", "compose.yaml", 27));
    assert!(at("compose.var-and-file-both-set", "compose.yaml", 27));
    assert!(at("compose.secret-file-not-ignored", "compose.yaml", 33));
    assert!(at("compose.secret-file-missing", "compose.yaml", 35));
    assert!(at("compose.secret-external-and-file", "compose.yaml", 37));
    // Negatives: non-secret vars, `_FILE` vars, `${VAR}` on a non-official image, octal
    // modes, the ignored file, env_file references.
    for (rule, line) in [
        ("compose.use-file-variant", 6),
        ("compose.use-file-variant", 7),
        ("compose.secret-mode-decimal", 11),
        ("compose.secret-mode-decimal", 15),
        ("compose.secret-mode-decimal", 17),
        ("compose.env-literal-secret", 21),
        ("compose.env-literal-secret", 22),
        ("compose.use-file-variant", 23),
        ("compose.secret-file-not-ignored", 31),
    ] {
        assert!(
            !at(rule, "compose.yaml", line),
            "unexpected {rule} at line {line}: {hits:#?}"
        );
    }
    assert!(!at("compose.env-file-secret", "app.env", 4));
    assert_eq!(
        hits.iter()
            .filter(|h| h.0 == "compose.env-file-secret")
            .count(),
        1
    );

    // Tracked files are reported as committed.
    write(root, ".gitignore", "ignored.txt\n");
    git(root, &["add", "tracked-dir/plain.txt"]);
    let o = scan_dir(root);
    let msg = o
        .findings()
        .into_iter()
        .find(|f| f["rule"] == "compose.secret-file-not-ignored")
        .map(|f| f["message"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(msg.contains("committed"), "{msg}");
}

fn git(dir: &Path, a: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(a)
        .status()
        .expect("git");
    assert!(st.success(), "git {a:?}");
}

// ---------------------------------------------------------------------------------------
// Dockerfile rules

#[test]
fn dockerfile_rules_positive_and_negative() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    write(root, ".npmrc", "registry=https://registry.npmjs.org/\n");
    write(
        root,
        "with-token/.npmrc",
        "//registry.npmjs.org/:_authToken=npm_abc\n",
    );
    write(
        root,
        "Dockerfile",
        r#"# syntax=docker/dockerfile:1
ARG BASE_VERSION=20
FROM node:${BASE_VERSION} AS build
ARG PYTHON_VERSION=3.11
ARG GITHUB_TOKEN
ARG DB_PASSWORD=hunter2-default
ENV API_KEY=abcd1234XYZ
ENV TOKEN=$GITHUB_TOKEN
ENV MYSQL_ROOT_PASSWORD_FILE=/run/secrets/db
ENV GPG_KEY=0D96DF4D4110E5C43FBFB17F2D347EA6AA65421D
COPY id_rsa /root/.ssh/id_rsa
COPY id_rsa.pub /root/.ssh/id_rsa.pub
COPY .npmrc ./
COPY with-token/.npmrc ./
ADD certs/server.pem /etc/ssl/private/
COPY package.json .env.example ./
RUN --mount=type=secret,id=npm,target=/root/.npmrc npm ci
RUN git clone https://x-access-token:$GITHUB_TOKEN@github.com/acme/app.git
RUN echo building $PYTHON_VERSION
FROM scratch
RUN echo $GITHUB_TOKEN
"#,
    );
    let o = scan_dir(root);
    let hits: Vec<(String, u64)> = o
        .hits()
        .into_iter()
        .filter(|h| h.1 == "Dockerfile" && h.0.starts_with("dockerfile."))
        .map(|h| (h.0, h.2))
        .collect();
    let want = [
        ("dockerfile.arg-secret", 5),
        ("dockerfile.arg-secret", 6),
        ("dockerfile.env-secret", 7),
        ("dockerfile.env-secret", 8),
        ("dockerfile.copy-secret-file", 11),
        ("dockerfile.copy-secret-file", 14),
        ("dockerfile.copy-secret-file", 15),
        ("dockerfile.arg-secret-in-run", 18),
    ];
    let want: Vec<(String, u64)> = want.iter().map(|(r, l)| (r.to_string(), *l)).collect();
    assert_eq!(hits, want, "{}", o.stdout);
}

// ---------------------------------------------------------------------------------------
// shell, CI and Makefiles

#[test]
fn shell_rules_positive_and_negative() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    write(
        root,
        "deploy.sh",
        r#"#!/usr/bin/env bash
docker run -d -e MYSQL_ROOT_PASSWORD=foobar mysql
docker run -d -e MYSQL_ROOT_PASSWORD mysql
docker run -e "API_TOKEN=$API_TOKEN" app
docker run --env=STRIPE_KEY=rk9Zq2LmW8 app
docker container run \
  --rm \
  --env DB_PASS='s3cr3t!' \
  app
docker build --build-arg NPM_TOKEN=$NPM_TOKEN -t app .
docker buildx build --build-arg=GITHUB_TOKEN -t app .
docker build --build-arg PYTHON_VERSION=3.12 -t app .
echo docker run -e FOO=bar
"#,
    );
    write(
        root,
        "Makefile",
        "image:\n\tdocker build --build-arg SECRET_KEY=$(SECRET_KEY) .\nrun:\n\tdocker run -e PASSWORD=$$PASSWORD app\n",
    );
    write(
        root,
        ".github/workflows/ci.yml",
        "jobs:\n  t:\n    steps:\n      - run: docker run -e SLACK_TOKEN=hardcoded-9f8e7d app\n",
    );
    write(
        root,
        "notes.md",
        "docker run -e MYSQL_ROOT_PASSWORD=foobar mysql\n",
    );
    let o = scan_dir(root);
    let hits: Vec<(String, String, u64)> = o
        .hits()
        .into_iter()
        .filter(|h| h.0.starts_with("shell."))
        .collect();
    let want = [
        ("shell.docker-run-env-secret", "deploy.sh", 2),
        ("shell.docker-run-env-secret", "deploy.sh", 5),
        ("shell.docker-run-env-secret", "deploy.sh", 8),
        ("shell.docker-build-arg-secret", "deploy.sh", 10),
        ("shell.docker-build-arg-secret", "deploy.sh", 11),
        ("shell.docker-run-env-secret", ".github/workflows/ci.yml", 4),
        ("shell.docker-build-arg-secret", "Makefile", 2),
    ];
    let mut want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(r, p, l)| (r.to_string(), p.to_string(), *l))
        .collect();
    want.sort();
    let mut got = hits.clone();
    got.sort();
    assert_eq!(got, want, "{}", o.stdout);
}

// ---------------------------------------------------------------------------------------
// suppression, baseline, exit codes, walking

#[test]
fn inline_ignore_comments() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(11);
    let a = expand("ghp_{a:36}", &mut rng, false);
    let b = expand("ghp_{a:36}", &mut rng, false);
    let c = expand("ghp_{a:36}", &mut rng, false);
    write(
        d.path(),
        "conf.yml",
        &format!(
            "a: {a} # lockbox:ignore\nb: {b} # lockbox:ignore content.github-pat\nc: {c} # lockbox:ignore content.slack-bot-token\n"
        ),
    );
    write(
        d.path(),
        "compose.yaml",
        "services:\n  db:\n    image: mysql\n    environment:\n      MYSQL_ROOT_PASSWORD: foobar # lockbox:ignore\n      MYSQL_PASSWORD: foobar2 # lockbox:ignore compose,content\n",
    );
    let o = scan_dir(d.path());
    assert_eq!(
        o.hits(),
        vec![("content.github-pat".to_string(), "conf.yml".to_string(), 3)]
    );
}

#[test]
fn baseline_roundtrip_and_exit_codes() {
    let d = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(21);
    write(
        d.path(),
        "old.env",
        &format!("GITHUB_TOKEN={}\n", expand("ghp_{a:36}", &mut rng, false)),
    );
    let base = work.path().join("baseline.json");
    let mut a = args(&[d.path()]);
    a.write_baseline = Some(base.clone());
    let o = scan(&a);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let body = std::fs::read_to_string(&base).expect("baseline written");
    assert!(
        !body.contains("ghp_"),
        "the baseline must not hold the secret"
    );

    let mut a = args(&[d.path()]);
    a.baseline = Some(base.clone());
    let o = scan(&a);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json()["summary"]["suppressed_by_baseline"], 2);

    // A line moved down keeps its fingerprint; a new secret is reported.
    let old = std::fs::read_to_string(d.path().join("old.env")).expect("read");
    write(d.path(), "old.env", &format!("# moved\n{old}"));
    write(
        d.path(),
        "new.env",
        &format!(
            "SLACK_TOKEN={}\n",
            expand("xoxb-{d:12}-{d:13}-{a:24}", &mut rng, false)
        ),
    );
    let mut a = args(&[d.path()]);
    a.baseline = Some(base);
    a.exit_code = 7;
    let o = scan(&a);
    assert_eq!(o.code, 7);
    assert!(o.hits().iter().all(|h| h.1 == "new.env"), "{:?}", o.hits());

    // --min-severity hides what is below it.
    let mut a = args(&[d.path()]);
    a.min_severity = Severity::Critical;
    let o = scan(&a);
    assert!(o.findings().iter().all(|f| f["severity"] == "critical"));

    // Usage and I/O errors exit 2.
    let o = scan(&args(&[&d.path().join("does-not-exist")]));
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no such file"), "{}", o.stderr);
    let mut a = args(&[d.path()]);
    a.baseline = Some(work.path().join("missing-baseline.json"));
    assert_eq!(scan(&a).code, 2);
}

#[test]
fn walk_honours_gitignore_and_skips_binary_files() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(31);
    let tok = expand("ghp_{a:36}", &mut rng, false);
    write(d.path(), ".gitignore", "local/\n");
    write(d.path(), "local/secrets.yml", &format!("token: {tok}\n"));
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(format!("token: {tok}\n").as_bytes());
    std::fs::write(d.path().join("blob.bin"), bin).expect("write");
    write(d.path(), "kept.yml", &format!("token: {tok}\n"));
    let o = scan_dir(d.path());
    assert_eq!(
        o.hits(),
        vec![("content.github-pat".to_string(), "kept.yml".to_string(), 1)]
    );
    // .gitignore, blob.bin and kept.yml; local/ is never opened.
    assert_eq!(o.json()["summary"]["files_scanned"], 3);
}

#[test]
fn large_files_are_streamed_with_correct_line_numbers() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(41);
    let tok = expand("glpat-{w:20}", &mut rng, false);
    let key = expand(
        "-----BEGIN RSA PRIVATE KEY-----\n{b:64}\n{b:64}\n-----END RSA PRIVATE KEY-----",
        &mut rng,
        false,
    );
    // ~12 MB: three chunk boundaries; secrets near each boundary and at the end.
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\n";
    let mut body = String::new();
    let mut expected = Vec::new();
    let mut line = 1u64;
    while body.len() < 12 << 20 {
        body.push_str(filler);
        line += 1;
        let near_boundary = body.len() % (1 << 20) > (1 << 20) - 100;
        if near_boundary {
            body.push_str(&format!("token = {tok}\n"));
            expected.push(("content.gitlab-pat".to_string(), line));
            line += 1;
        }
    }
    body.push_str(&key);
    expected.push(("content.private-key".to_string(), line));
    write(d.path(), "big.log", &body);
    let o = scan_dir(d.path());
    let got: Vec<(String, u64)> = o.hits().into_iter().map(|h| (h.0, h.2)).collect();
    assert!(expected.len() >= 4);
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------------------------------
// outputs: snapshots and SARIF schema

fn snapshot_fixture(root: &Path) {
    let mut rng = Rng(0xC0FFEE);
    write(
        root,
        "compose.yaml",
        "services:\n  db:\n    image: mysql:8\n    environment:\n      MYSQL_ROOT_PASSWORD: foobar\n",
    );
    write(
        root,
        "Dockerfile",
        "FROM node:20\nARG NPM_AUTH_TOKEN\nRUN npm ci --token $NPM_AUTH_TOKEN\n",
    );
    write(
        root,
        "ci/deploy.sh",
        "#!/bin/sh\ndocker run -e MYSQL_ROOT_PASSWORD=foobar mysql\n",
    );
    write(
        root,
        "config/app.yml",
        &format!(
            "github: {}\naws_access_key_id: {}\n",
            expand("ghp_{G:36}", &mut rng, false),
            expand("AKIA{c:16}", &mut rng, false)
        ),
    );
}

#[test]
fn output_snapshots() {
    let d = tempfile::tempdir().expect("tempdir");
    snapshot_fixture(d.path());
    let mut a = args(&[d.path()]);
    a.format = Format::Text;
    let text = scan(&a);
    assert_eq!(text.code, 1);
    insta::assert_snapshot!("text", text.stdout);

    let json = scan(&args(&[d.path()]));
    insta::assert_json_snapshot!("json", json.json());

    a.format = Format::Sarif;
    let mut sarif: Value = serde_json::from_str(&scan(&a).stdout).expect("sarif json");
    // The rule catalogue is long and checked by the schema test; keep the snapshot on results.
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(rules > 90);
    sarif["runs"][0]["tool"]["driver"]["rules"] = Value::from(format!("{rules} rules"));
    insta::assert_json_snapshot!("sarif", sarif);
}

/// A Python with `jsonschema`: the system one if it has it, else a venv made once under the
/// target directory (PyPI is reachable from CI; the schema itself is vendored).
fn python_with_jsonschema() -> PathBuf {
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import jsonschema"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if ok(&system) {
        return system;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sarif-venv");
    let py = venv.join("bin/python");
    if !ok(&py) {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "jsonschema==4.26.0"])
            .status()
            .expect("pip");
        assert!(st.success(), "pip install jsonschema failed");
    }
    py
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let d = tempfile::tempdir().expect("tempdir");
    snapshot_fixture(d.path());
    let mut a = args(&[d.path()]);
    a.format = Format::Sarif;
    let o = scan(&a);
    let out = d.path().join("out.sarif");
    std::fs::write(&out, &o.stdout).expect("write sarif");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let check = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
for e in errors[:20]:
    print(list(e.path), e.message)
assert doc["runs"][0]["results"], "no results to validate"
sys.exit(1 if errors else 0)
"#;
    let res = Command::new(python_with_jsonschema())
        .args(["-c", check])
        .arg(&schema)
        .arg(&out)
        .output()
        .expect("python");
    assert!(
        res.status.success(),
        "SARIF is not valid 2.1.0:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // What GitHub code scanning needs beyond the schema: rule ids resolvable, locations and
    // a security-severity on each rule.
    let v: Value = serde_json::from_str(&o.stdout).expect("json");
    let run0 = &v["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().expect("rules");
    for r in run0["results"].as_array().expect("results") {
        let i = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
        assert!(rules[i]["properties"]["security-severity"].is_string());
        assert!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string());
    }
}

// ---------------------------------------------------------------------------------------
// images and containers, on the real engine

fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        // In CI a missing engine is a failure, never a skip.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "docker engine not reachable under CI=true"
        );
        eprintln!("SKIP: docker engine not reachable");
    }
    ok
}

fn docker_build(context: &Path, tag: &str, extra: &[&str]) {
    let out = Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "1")
        .arg("build")
        .args(extra)
        .args(["-q", "-t", tag])
        .arg(context)
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docker_rmi(tag: &str) {
    let _ = Command::new("docker")
        .args(["image", "rm", "-f", tag])
        .output();
}

#[test]
fn image_built_with_build_arg_leaks_and_secret_mount_build_is_clean() {
    if !docker_available() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let token = format!("lbx-{}", std::process::id()) + "-Zq8Lm2Wx9Rt4";
    let leaky_tag = format!("lockbox-scan-test/leaky:{}", std::process::id());
    let clean_tag = format!("lockbox-scan-test/clean:{}", std::process::id());

    let leaky = d.path().join("leaky");
    write(
        &leaky,
        "Dockerfile",
        "FROM lockbox-test/busybox\nARG TOKEN\nRUN test -n \"$TOKEN\" && echo fetched > /fetched\n",
    );
    docker_build(
        &leaky,
        &leaky_tag,
        &["--build-arg", &format!("TOKEN={token}")],
    );

    let clean = d.path().join("clean");
    write(
        &clean,
        "Dockerfile",
        "FROM lockbox-test/busybox\nRUN --mount=type=secret,id=token test -s /run/secrets/token && echo fetched > /fetched\n",
    );
    let token_file = write(d.path(), "token.txt", &token);
    docker_build(
        &clean,
        &clean_tag,
        &[
            "--secret",
            &format!("id=token,src={}", token_file.display()),
        ],
    );

    let mut a = args(&[]);
    a.images = vec![leaky_tag.clone()];
    let o = scan(&a);
    docker_rmi(&leaky_tag);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let hist = format!("docker-image:{leaky_tag}#history");
    assert!(o.has("image.history-build-arg", &hist), "{}", o.stdout);
    assert!(!o.stdout.contains(&token), "the token must be redacted");

    let mut a = args(&[]);
    a.images = vec![clean_tag.clone()];
    let o = scan(&a);
    docker_rmi(&clean_tag);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.findings().is_empty());
}

#[test]
fn image_env_and_layer_files_are_scanned() {
    if !docker_available() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let tag = format!("lockbox-scan-test/layers:{}", std::process::id());
    let mut rng = Rng(51);
    let gh = expand("ghp_{a:36}", &mut rng, false);
    write(d.path(), ".env", &format!("GITHUB_TOKEN={gh}\n"));
    write(
        d.path(),
        "Dockerfile",
        "FROM lockbox-test/busybox\nENV DB_PASSWORD=Pr0d-Pa55word\nENV PUBLIC_URL=https://example.org\nCOPY .env /app/.env\nRUN rm /app/.env\n",
    );
    docker_build(d.path(), &tag, &[]);
    let mut a = args(&[]);
    a.images = vec![tag.clone()];
    let o = scan(&a);
    docker_rmi(&tag);
    assert!(
        o.has(
            "image.env-secret",
            &format!("docker-image:{tag}#config.Env")
        ),
        "{}",
        o.stdout
    );
    let layer = format!("docker-image:{tag}!/app/.env");
    assert!(o.has("image.secret-file", &layer), "{}", o.stdout);
    assert!(o.has("content.github-pat", &layer), "{}", o.stdout);
    assert!(!o.stdout.contains("Pr0d-Pa55word") && !o.stdout.contains(&gh));
    // PUBLIC_URL is not secret-looking.
    assert_eq!(
        o.hits()
            .iter()
            .filter(|h| h.0 == "image.env-secret")
            .count(),
        1
    );
}

#[test]
fn running_container_environment_is_scanned() {
    if !docker_available() {
        return;
    }
    let name = format!("lockbox-scan-test-{}", std::process::id());
    let out = Command::new("docker")
        .args(["run", "-d", "--rm", "--name", &name])
        .args([
            "-e",
            "API_TOKEN=c0ntainer-Tok3n-x9",
            "-e",
            "API_TOKEN_FILE=/run/secrets/t",
            "-e",
            "MODE=prod",
        ])
        .args(["lockbox-test/busybox", "sleep", "120"])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = args(&[]);
    a.containers = true;
    let o = scan(&a);
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    let path = format!("docker-container:{name}#Env");
    let mine: Vec<_> = o.hits().into_iter().filter(|h| h.1 == path).collect();
    assert_eq!(mine.len(), 1, "{}", o.stdout);
    assert_eq!(mine[0].0, "container.env-secret");
    assert!(!o.stdout.contains("c0ntainer-Tok3n-x9"));
}

#[test]
fn every_rule_is_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"))
            .expect("docs/rules.md");
    let missing: Vec<&str> = lockbox_scan::rules::all_rules()
        .iter()
        .map(|r| r.id)
        .filter(|id| !doc.contains(&format!("`{id}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "rules missing from docs/rules.md: {missing:?}"
    );
}

#[test]
fn list_rules_and_help_text() {
    let mut a = args(&[]);
    a.list_rules = true;
    let o = scan(&a);
    assert_eq!(o.code, 0);
    let n = o.stdout.lines().count();
    assert_eq!(n, lockbox_scan::rules::all_rules().len());
    assert!(
        CONTENT_RULES
            .iter()
            .filter(|r| r.kind == Kind::Provider)
            .count()
            >= 60
    );
    assert!(lockbox_scan::SCAN_AFTER_HELP.contains("--format sarif"));
    // The clap derive is valid and every flag parses.
    use clap::{Args, Command as ClapCommand, FromArgMatches};
    let cmd = ScanArgs::augment_args(ClapCommand::new("scan"));
    cmd.clone().debug_assert();
    let m = cmd
        .try_get_matches_from([
            "scan",
            ".",
            "--image",
            "a:1",
            "--image",
            "b",
            "--containers",
            "--format",
            "sarif",
            "--baseline",
            "b.json",
            "--min-severity",
            "high",
            "--exit-code",
            "3",
        ])
        .expect("parse");
    let parsed = ScanArgs::from_arg_matches(&m).expect("from matches");
    assert_eq!(parsed.images, vec!["a:1", "b"]);
    assert_eq!(parsed.format, Format::Sarif);
    assert_eq!(parsed.min_severity, Severity::High);
    assert_eq!(parsed.exit_code, 3);
}

// ---------------------------------------------------------------------------------------
// the labelled corpus (tests/corpus): recall and false alarms per provider

/// The targets issue 18 sets for the corpus.
const MIN_RECALL: f64 = 0.90;
const MAX_FALSE_ALARMS: f64 = 0.02;

#[test]
fn corpus_recall_and_false_alarms_per_provider() {
    let d = tempfile::tempdir().expect("tempdir");
    let samples = corpus_gen::write_corpus(d.path()).expect("write corpus");
    let o = scan_dir(d.path());
    assert!(o.code == 0 || o.code == 1, "{}", o.stderr);
    let flagged: std::collections::BTreeSet<String> = o
        .hits()
        .iter()
        .filter_map(|(_, p, _)| corpus_gen::sample_dir(p))
        .collect();
    let rows = corpus_gen::score(&samples, &flagged);
    let (mut found, mut secrets, mut alarms, mut clean) = (0, 0, 0, 0);
    let mut table = String::from("provider | found/secrets | false alarms/clean\n");
    for (p, f, s, a, c) in &rows {
        table.push_str(&format!("{p} | {f}/{s} | {a}/{c}\n"));
        found += f;
        secrets += s;
        alarms += a;
        clean += c;
    }
    let missed: Vec<&str> = samples
        .iter()
        .filter(|s| s.secret != flagged.contains(&s.dir))
        .map(|s| s.dir.as_str())
        .collect();
    let recall = found as f64 / secrets as f64;
    let false_alarms = alarms as f64 / clean as f64;
    println!(
        "{table}total | {found}/{secrets} = {recall:.3} | {alarms}/{clean} = {false_alarms:.3}"
    );
    println!("wrong: {missed:?}");
    assert!(
        secrets >= 200 && clean >= 50,
        "corpus too small: {secrets} / {clean}"
    );
    assert!(
        recall >= MIN_RECALL && false_alarms <= MAX_FALSE_ALARMS,
        "recall {recall:.3} (min {MIN_RECALL}), false alarms {false_alarms:.3} (max {MAX_FALSE_ALARMS}); wrong: {missed:?}\n{table}"
    );
}

#[test]
fn github_tokens_with_a_bad_checksum_are_reported_one_severity_lower() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(99);
    let good = expand("ghp_{G:36}", &mut rng, false);
    // Change one character of the random part: the CRC-32 suffix no longer matches.
    let mut bad = good.clone().into_bytes();
    bad[6] = if bad[6] == b'Q' { b'R' } else { b'Q' };
    let bad = String::from_utf8(bad).expect("ascii");
    write(d.path(), "good.env", &format!("GITHUB_TOKEN={good}\n"));
    write(d.path(), "bad.env", &format!("GITHUB_TOKEN={bad}\n"));
    let o = scan_dir(d.path());
    let severity = |path: &str| {
        o.findings()
            .iter()
            .find(|f| f["path"] == path && f["rule"] == "content.github-pat")
            .map(|f| f["severity"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        severity("good.env").as_deref(),
        Some("critical"),
        "{}",
        o.stdout
    );
    assert_eq!(severity("bad.env").as_deref(), Some("high"), "{}", o.stdout);
}

// ---------------------------------------------------------------------------------------
// scan --fix

const FIX_COMPOSE: &str = "services:
  db:
    image: mysql:8
    environment:
      MYSQL_ROOT_PASSWORD: S3cretRootPw9
      MYSQL_DATABASE: app
  cache:
    image: postgres:16
    secrets:
      - other
    environment:
      - POSTGRES_PASSWORD=Pg-Pa55w0rd-x
  web:
    image: acme/web:1
    environment:
      API_TOKEN: Zk8Lq2Wm5Rt7Yp3Nv6Xc
  maria:
    image: mariadb:11
    env_file: maria.env
  pg:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${PG_PW}
secrets:
  other:
    external: true
";

fn fix_args(dir: &Path, dry_run: bool) -> ScanArgs {
    let mut a = args(&[dir]);
    a.fix = true;
    a.dry_run = dry_run;
    a.yes = !dry_run;
    a
}

/// The secrets `--fix` created, by name. The daemon lives in the `lockbox` crate, whose
/// tests run `lockbox scan --fix` against a real one (`tests/scan_cli.rs`); here the store
/// only records, and can be told to fail on one name to test the undo.
#[derive(Default)]
struct RecordingStore {
    secrets: std::collections::BTreeMap<String, String>,
    fail_on: Option<String>,
    removed: Vec<String>,
}

impl lockbox_scan::SecretStore for RecordingStore {
    fn create(&mut self, name: &str, value: &[u8]) -> Result<(), String> {
        if self.fail_on.as_deref() == Some(name) || self.secrets.contains_key(name) {
            return Err(format!("secret {name} already exists"));
        }
        self.secrets.insert(
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        );
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), String> {
        self.removed.push(name.to_string());
        self.secrets
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| format!("no secret {name}"))
    }
}

fn fix_with(a: &ScanArgs, store: &mut RecordingStore) -> Outcome {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = lockbox_scan::run_with_store(a, Some(store), &mut out, &mut err);
    Outcome {
        code,
        stdout: String::from_utf8(out).expect("utf-8 stdout"),
        stderr: String::from_utf8(err).expect("utf-8 stderr"),
    }
}

/// Every file under `dir` holding `value`, relative to `dir`.
fn files_holding(dir: &Path, value: &str) -> Vec<String> {
    let mut holders = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .expect("read")
                .windows(value.len())
                .any(|w| w == value.as_bytes())
            {
                holders.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    holders.sort();
    holders
}

/// Compose's default project name for a temporary directory (already `[a-z0-9]` but for case).
fn project_of(dir: &Path) -> String {
    dir.file_name()
        .expect("name")
        .to_string_lossy()
        .to_ascii_lowercase()
}

fn assert_no_temp_files(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("lockbox-fix")),
        "a temporary file is left: {names:?}"
    );
}

const FIX_ENV_FILE: &str =
    "# app settings\nMARIADB_USER=app\nexport MARIADB_PASSWORD=\"Mdb-Pa55-w0rd7\"\n";
const FIX_DOTENV: &str = "PG_PW=Dotenv-Pg-9Secret\nTAG=1\n";

#[test]
fn fix_moves_compose_literals_into_lockbox_secrets_and_never_echoes_them() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("fixproj")
        .tempdir()
        .expect("tempdir");
    let compose = write(d.path(), "compose.yaml", FIX_COMPOSE);
    let env_file = write(d.path(), "maria.env", FIX_ENV_FILE);
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let dotenv = write(d.path(), ".env", FIX_DOTENV);
    let project = project_of(d.path());
    let values = [
        "S3cretRootPw9",
        "Pg-Pa55w0rd-x",
        "Mdb-Pa55-w0rd7",
        "Dotenv-Pg-9Secret",
    ];

    // Dry run: the plan is shown with values redacted, nothing is written or created.
    let mut store = RecordingStore::default();
    let o = fix_with(&fix_args(d.path(), true), &mut store);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let shown = o
        .stdout
        .replace(&d.path().display().to_string(), "[dir]")
        .replace(&project, "[project]");
    insta::assert_snapshot!("fix_dry_run", shown);
    assert!(store.secrets.is_empty());
    assert_eq!(
        std::fs::read_to_string(&compose).expect("read"),
        FIX_COMPOSE
    );

    // Written: the values are lockbox secrets, and no file holds one.
    let o = fix_with(&fix_args(d.path(), false), &mut store);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for out in [&o.stdout, &shown] {
        for v in values {
            assert!(!out.contains(v), "{out}");
        }
    }
    let expected: Vec<(String, &str)> = vec![
        (
            format!("{project}_cache_postgres_password"),
            "Pg-Pa55w0rd-x",
        ),
        (format!("{project}_db_mysql_root_password"), "S3cretRootPw9"),
        (
            format!("{project}_maria_mariadb_password"),
            "Mdb-Pa55-w0rd7",
        ),
        (
            format!("{project}_pg_postgres_password"),
            "Dotenv-Pg-9Secret",
        ),
    ];
    let got: Vec<(String, &str)> = store
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str()))
        .collect();
    assert_eq!(got, expected);
    for v in values {
        assert_eq!(files_holding(d.path(), v), Vec::<String>::new(), "{v}");
    }
    let fixed = std::fs::read_to_string(&compose).expect("read");
    insta::assert_snapshot!("fix_compose_after", fixed.replace(&project, "[project]"));
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("read"),
        "# app settings\nMARIADB_USER=app\nexport MARIADB_PASSWORD_FILE=/run/secrets/maria_mariadb_password\n"
    );
    let mode = std::fs::metadata(&env_file)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640, "the rewritten file keeps its mode");
    assert_eq!(std::fs::read_to_string(&dotenv).expect("read"), "TAG=1\n");
    assert_no_temp_files(d.path());
    let rescan = scan_dir(d.path());
    let left: Vec<String> = rescan
        .findings()
        .iter()
        .filter(|f| {
            f["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("compose."))
        })
        .map(|f| format!("{} {}", f["rule"], f["message"]))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("API_TOKEN"), "{left:?}");

    // A second run has nothing left to move and changes nothing.
    let o = fix_with(&fix_args(d.path(), false), &mut store);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(store.secrets.len(), 4);
    assert_eq!(std::fs::read_to_string(&compose).expect("read"), fixed);
}

#[test]
fn fix_that_cannot_create_a_secret_removes_what_it_created_and_writes_nothing() {
    let d = tempfile::Builder::new()
        .prefix("fixfail")
        .tempdir()
        .expect("tempdir");
    let compose = write(d.path(), "compose.yaml", FIX_COMPOSE);
    let env_file = write(d.path(), "maria.env", FIX_ENV_FILE);
    let project = project_of(d.path());
    let mut store = RecordingStore {
        fail_on: Some(format!("{project}_maria_mariadb_password")),
        ..Default::default()
    };
    let o = fix_with(&fix_args(d.path(), false), &mut store);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(
        o.stderr.contains(&format!(
            "creating secret {project}_maria_mariadb_password in lockbox: secret {project}_maria_mariadb_password already exists; the files were left unchanged"
        )),
        "{}",
        o.stderr
    );
    assert!(store.secrets.is_empty(), "{:?}", store.secrets);
    assert_eq!(store.removed.len(), 2, "{:?}", store.removed);
    assert_eq!(
        std::fs::read_to_string(&compose).expect("read"),
        FIX_COMPOSE
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("read"),
        FIX_ENV_FILE
    );
    assert_no_temp_files(d.path());

    // Without a store (the crate's own example binary) a write is refused, naming why.
    let o = scan(&fix_args(d.path(), false));
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("no daemon to create them in"),
        "{}",
        o.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&compose).expect("read"),
        FIX_COMPOSE
    );
}
