//! `lockbox scan` through the binary: wiring, exit codes, redaction (the rules themselves are
//! tested in `lockbox-scan`).
use std::process::Command;

use crate::support::BIN;

/// `lockbox scan ARGS… DIR`, which must exit with `code`; its standard output.
fn run_scan(args: &[&str], dir: &std::path::Path, code: i32) -> String {
    let o = Command::new(BIN)
        .arg("scan")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(code),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// `lockbox scan --format json DIR`, which must exit 1 (findings); its standard output.
fn scan_json_with_findings(dir: &std::path::Path) -> String {
    run_scan(&["--format", "json", "--no-progress"], dir, 1)
}

#[test]
fn scan_finds_the_docker_guide_example_and_redacts_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  db:\n    image: mysql\n    environment:\n      MYSQL_ROOT_PASSWORD: foobar\n",
    )
    .unwrap();
    let out = scan_json_with_findings(dir.path());
    assert!(out.contains("compose.env-literal-secret"), "{out}");
    assert!(
        !out.contains("foobar"),
        "the secret must be redacted: {out}"
    );

    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  db:\n    image: mysql\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .arg("scan")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let o = Command::new(BIN)
        .args(["scan", "/nonexistent/path"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// Provider formats, the generic syntaxes and the clean look-alikes through the binary:
/// findings per file, severities from the checksum, nothing printed in full.
#[test]
fn scan_reports_provider_tokens_and_stays_quiet_on_references() {
    let dir = tempfile::tempdir().unwrap();
    let random = "Q7wErTy8UiOp9AsDfGh1JkLzXcVbNm";
    let token = format!(
        "ghp_{random}{}",
        lockbox_scan::checksum::base62(lockbox_scan::checksum::crc32(random.as_bytes()), 6)
    );
    let secret_value = "k8sV4lueZ9xQ2mW7";
    let files = [
        ("ci.env", format!("GITHUB_TOKEN={token}\n")),
        (
            "secret.yaml",
            format!("data:\n  password: {secret_value}\nkind: secret\napiVersion: v1\n"),
        ),
        ("Makefile", "DEPLOY_TOKEN ::= \"Zr8Kq2Lm5Nx7Pw4Tj9Hv\"\n".to_string()),
        (
            "main.tf",
            "resource \"x\" \"y\" {\n  password = var.db_password\n}\n".to_string(),
        ),
        (
            "sops.yaml",
            "kind: Secret\ndata:\n  password: ENC[AES256_GCM,data:abc,type:str]\nsops:\n  version: 3.8.1\n"
                .to_string(),
        ),
    ];
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let out = scan_json_with_findings(dir.path());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hits: Vec<(String, String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |path: &str, rule: &str| hits.iter().any(|h| h.0 == path && h.1 == rule);
    assert!(has("ci.env", "content.github-pat"), "{hits:?}");
    assert!(
        hits.iter()
            .any(|h| h.1 == "content.github-pat" && h.2 == "critical"),
        "a verified checksum keeps the rule's severity: {hits:?}"
    );
    assert!(
        has("secret.yaml", "content.kubernetes-secret-data"),
        "{hits:?}"
    );
    assert!(has("Makefile", "content.secret-assignment"), "{hits:?}");
    assert!(
        !hits.iter().any(|h| h.0 == "main.tf" || h.0 == "sops.yaml"),
        "{hits:?}"
    );
    assert!(
        !out.contains(&token) && !out.contains(secret_value),
        "{out}"
    );
}

/// `lockbox scan --fix` without a terminal writes: the values become lockbox secrets in the
/// daemon, the project scans clean and no file holds a value. A name the daemon already has
/// stops the fix with the files untouched and nothing left behind.
#[test]
fn scan_fix_moves_the_docker_guide_example_into_lockbox_secrets() {
    let d = crate::support::Daemon::start();
    let dir = tempfile::Builder::new()
        .prefix("scanfix")
        .tempdir()
        .unwrap();
    let project = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_ascii_lowercase();
    let (root_pw, user_pw) = ("Fx9-root-Pw-4471", "Us3r-Pw-8812-q");
    let compose = format!(
        "services:\n  db:\n    image: mysql:8\n    env_file: db.env\n    environment:\n      MYSQL_ROOT_PASSWORD: {root_pw}\n"
    );
    std::fs::write(dir.path().join("compose.yaml"), &compose).unwrap();
    let env_file = format!("MYSQL_USER=app\nMYSQL_PASSWORD={user_pw}\n");
    std::fs::write(dir.path().join("db.env"), &env_file).unwrap();

    // A secret of that name already exists: refused, the other one created is removed again.
    let taken = format!("{project}_db_mysql_password");
    d.create(&taken, b"older");
    let o = d.lb(&["scan", "--fix", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("creating secret {taken} in lockbox"))
            && o.stderr.contains("the files were left unchanged"),
        "{o:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("compose.yaml")).unwrap(),
        compose
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("db.env")).unwrap(),
        env_file
    );
    let ls = d.lb(&["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls.stdout.trim(), taken, "{ls:?}");
    assert_eq!(d.lb(&["secret", "rm", &taken]).code, 0);

    let o = d.lb(&["scan", "--fix", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        !o.stdout.contains(root_pw) && !o.stdout.contains(user_pw),
        "{o:?}"
    );
    let ls = d.lb(&["secret", "ls", "--format", "{{.Name}} {{.Labels}}"]);
    let names: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(
        names,
        vec![
            format!("{project}_db_mysql_password lockbox.created-by=scan --fix"),
            format!("{project}_db_mysql_root_password lockbox.created-by=scan --fix"),
        ],
        "{ls:?}"
    );
    let fixed = std::fs::read_to_string(dir.path().join("compose.yaml")).unwrap();
    assert!(
        fixed.contains("MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db_mysql_root_password")
            && fixed.contains(&format!("name: {project}_db_mysql_root_password")),
        "{fixed}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("db.env")).unwrap(),
        "MYSQL_USER=app\nMYSQL_PASSWORD_FILE=/run/secrets/db_mysql_password\n"
    );
    run_scan(&["--no-progress"], dir.path(), 0);
    for value in [root_pw, user_pw] {
        assert_eq!(files_holding(dir.path(), value), Vec::<String>::new());
    }
}

/// Every file under `dir` holding `value` (the no-plaintext audit of a project directory).
pub(crate) fn files_holding(dir: &std::path::Path, value: &str) -> Vec<String> {
    let mut holders = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(value.len())
                .any(|w| w == value.as_bytes())
            {
                holders.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    holders.sort();
    holders
}
