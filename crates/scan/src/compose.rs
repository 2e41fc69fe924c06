//! Compose-file rules. A narrow model of the Compose spec (only what the rules read) parsed
//! with serde-saphyr, keeping line/column through `Spanned` so findings point at the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::content::inline_ignored;
use crate::finding::{Finding, Redacted, Severity};
use crate::names::{is_placeholder, is_secret_name};
use crate::rules::fix_for;

/// Official images and the variables their entrypoints accept as `VAR_FILE`
/// (docker-library docs, see reference §4). Only secret-looking ones matter to the rules.
const FILE_VARIANTS: &[(&str, &[&str])] = &[
    (
        "mysql",
        &[
            "MYSQL_ROOT_PASSWORD",
            "MYSQL_ROOT_HOST",
            "MYSQL_DATABASE",
            "MYSQL_USER",
            "MYSQL_PASSWORD",
        ],
    ),
    (
        "percona",
        &[
            "MYSQL_ROOT_PASSWORD",
            "MYSQL_ROOT_HOST",
            "MYSQL_DATABASE",
            "MYSQL_USER",
            "MYSQL_PASSWORD",
        ],
    ),
    (
        "mariadb",
        &[
            "MARIADB_ROOT_PASSWORD",
            "MARIADB_ROOT_PASSWORD_HASH",
            "MARIADB_PASSWORD",
            "MARIADB_PASSWORD_HASH",
            "MARIADB_USER",
            "MARIADB_DATABASE",
            "MYSQL_ROOT_PASSWORD",
            "MYSQL_PASSWORD",
            "MYSQL_USER",
            "MYSQL_DATABASE",
        ],
    ),
    (
        "postgres",
        &[
            "POSTGRES_INITDB_ARGS",
            "POSTGRES_PASSWORD",
            "POSTGRES_USER",
            "POSTGRES_DB",
        ],
    ),
    (
        "mongo",
        &["MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"],
    ),
    (
        "wordpress",
        &[
            "WORDPRESS_DB_HOST",
            "WORDPRESS_DB_USER",
            "WORDPRESS_DB_PASSWORD",
            "WORDPRESS_DB_NAME",
            "WORDPRESS_AUTH_KEY",
            "WORDPRESS_SECURE_AUTH_KEY",
            "WORDPRESS_LOGGED_IN_KEY",
            "WORDPRESS_NONCE_KEY",
            "WORDPRESS_AUTH_SALT",
            "WORDPRESS_SECURE_AUTH_SALT",
            "WORDPRESS_LOGGED_IN_SALT",
            "WORDPRESS_NONCE_SALT",
            "WORDPRESS_TABLE_PREFIX",
            "WORDPRESS_DEBUG",
        ],
    ),
    (
        "redmine",
        &[
            "REDMINE_DB_MYSQL",
            "REDMINE_DB_POSTGRES",
            "REDMINE_DB_PORT",
            "REDMINE_DB_USERNAME",
            "REDMINE_DB_PASSWORD",
            "REDMINE_DB_DATABASE",
            "REDMINE_DB_ENCODING",
            "REDMINE_SECRET_KEY_BASE",
        ],
    ),
    (
        "nextcloud",
        &[
            "MYSQL_DATABASE",
            "MYSQL_USER",
            "MYSQL_PASSWORD",
            "POSTGRES_DB",
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "NEXTCLOUD_ADMIN_USER",
            "NEXTCLOUD_ADMIN_PASSWORD",
        ],
    ),
    (
        "friendica",
        &[
            "MYSQL_DATABASE",
            "MYSQL_USER",
            "MYSQL_PASSWORD",
            "FRIENDICA_ADMIN_MAIL",
        ],
    ),
    (
        "rabbitmq",
        &["RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"],
    ),
    ("joomla", &["JOOMLA_DB_PASSWORD"]),
    (
        "phpmyadmin",
        &[
            "PMA_PASSWORD",
            "PMA_USER",
            "PMA_HOST",
            "PMA_HOSTS",
            "PMA_CONTROLHOST",
            "PMA_CONTROLUSER",
            "PMA_CONTROLPASS",
            "MYSQL_ROOT_PASSWORD",
            "MYSQL_PASSWORD",
        ],
    ),
    (
        "yourls",
        &[
            "YOURLS_DB_HOST",
            "YOURLS_DB_USER",
            "YOURLS_DB_PASS",
            "YOURLS_DB_NAME",
            "YOURLS_DB_PREFIX",
            "YOURLS_SITE",
            "YOURLS_USER",
            "YOURLS_PASS",
        ],
    ),
    (
        "espocrm",
        &["ESPOCRM_DATABASE_PASSWORD", "ESPOCRM_ADMIN_PASSWORD"],
    ),
    ("odoo", &["PASSWORD"]),
    ("satosa", &["STATE_ENCRYPTION_KEY"]),
];

/// `docker.io/library/mysql:8.0@sha256:…` → `mysql`; non-library images → `None`.
pub(crate) fn official_image_name(image: &str) -> Option<&'static str> {
    let no_digest = image.split('@').next().unwrap_or(image);
    // Strip a tag (a colon after the last slash).
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let repo = match no_digest[last_slash..].find(':') {
        Some(c) => &no_digest[..last_slash + c],
        None => no_digest,
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    let repo = repo.strip_prefix("library/").unwrap_or(repo);
    FILE_VARIANTS
        .iter()
        .find(|(n, _)| *n == repo)
        .map(|(n, _)| *n)
}

pub(crate) fn supports_file_variant(image: &str, var: &str) -> bool {
    FILE_VARIANTS
        .iter()
        .any(|(n, vars)| *n == image && vars.contains(&var))
}

// ---------------------------------------------------------------------------------------
// Model

#[derive(Deserialize, Default)]
struct ComposeFile {
    #[serde(default)]
    services: Option<BTreeMap<String, Option<Service>>>,
    #[serde(default)]
    secrets: Option<BTreeMap<String, Option<TopSecret>>>,
}

#[derive(Deserialize, Default)]
struct Service {
    #[serde(default)]
    image: Option<Spanned<Scalar>>,
    #[serde(default)]
    environment: Option<Environment>,
    #[serde(default)]
    env_file: Option<EnvFiles>,
    #[serde(default)]
    secrets: Option<Vec<ServiceSecret>>,
}

#[derive(Deserialize, Default)]
struct TopSecret {
    #[serde(default)]
    file: Option<Spanned<Scalar>>,
    #[serde(default)]
    external: Option<Spanned<Truthy>>,
}

#[derive(Deserialize)]
struct LongSecret {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    mode: Option<Spanned<Scalar>>,
}

enum ServiceSecret {
    Short,
    Long(LongSecret),
}

impl<'de> Deserialize<'de> for ServiceSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret name or a secret reference map")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ServiceSecret, E> {
                Ok(ServiceSecret::Short)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceSecret, A::Error> {
                LongSecret::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ServiceSecret::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any YAML scalar, kept as text (`true`, `3306`, `foo`); `None` for null.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `external: true`, `external: {name: x}` (legacy) → true; `external: false` → false.
struct Truthy(bool);

impl<'de> Deserialize<'de> for Truthy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Scalar::deserialize(d)?;
        Ok(Truthy(!matches!(s.0.as_deref(), Some("false") | None)))
    }
}

/// `environment:` in map or list form, with positions.
enum Environment {
    Map(Vec<(Spanned<String>, Option<Spanned<Scalar>>)>),
    List(Vec<Spanned<Scalar>>),
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Environment;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map or a list of NAME=value strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Environment, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = map.next_entry::<Spanned<String>, Option<Spanned<Scalar>>>()? {
                    v.push(e);
                }
                Ok(Environment::Map(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Environment, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = seq.next_element::<Spanned<Scalar>>()? {
                    v.push(e);
                }
                Ok(Environment::List(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Environment, E> {
                Ok(Environment::List(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `env_file:` as a string, a list of strings, or a list of `{path, required}`.
struct EnvFiles(Vec<String>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Entry {
            path: String,
        }
        struct One(Option<String>);
        impl<'de> Deserialize<'de> for One {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = One;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an env file path")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<One, E> {
                        Ok(One(Some(v.to_string())))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<One, A::Error> {
                        Entry::deserialize(de::value::MapAccessDeserializer::new(map))
                            .map(|e| One(Some(e.path)))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an env file path or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
                let mut v = Vec::new();
                while let Some(One(p)) = seq.next_element::<One>()? {
                    v.extend(p);
                }
                Ok(EnvFiles(v))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Rules

/// Is this file name a Compose file? (`compose.yaml`, `docker-compose.prod.yml`, …)
pub fn is_compose_name(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".yml")
        .or_else(|| lower.strip_suffix(".yaml"));
    match stem {
        Some(s) => {
            s == "compose"
                || s == "docker-compose"
                || s.starts_with("compose.")
                || s.starts_with("docker-compose.")
        }
        None => false,
    }
}

/// Where a Compose file lives and how its paths are shown.
pub struct ComposeCtx<'a> {
    pub path: &'a Path,
    pub display: &'a str,
}

struct Emitter<'a> {
    text: &'a str,
    out: &'a mut Vec<Finding>,
}

impl Emitter<'_> {
    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        rule: &str,
        severity: Severity,
        display: &str,
        line: usize,
        column: usize,
        len: usize,
        message: String,
        secret: Option<&str>,
        key: &str,
    ) {
        if inline_ignored(self.line_text(line).as_bytes(), rule) {
            return;
        }
        self.out.push(Finding {
            rule: rule.to_string(),
            severity,
            path: display.to_string(),
            line,
            column,
            end_column: column + len,
            message,
            fix: fix_for(rule).to_string(),
            secret: secret.map(Redacted::of),
            fingerprint: Finding::fingerprint_of(rule, display, secret.unwrap_or(key)),
        });
    }
}

fn loc_line(s: &serde_saphyr::Location) -> usize {
    s.line() as usize
}
fn loc_col(s: &serde_saphyr::Location) -> usize {
    s.column() as usize
}

/// One `environment:` entry: name, value (`None` for a bare name), line, column of the
/// value, column of the name, and whether it is written in list form (`- NAME=value`).
type EnvVar = (String, Option<String>, usize, usize, usize, bool);

fn service_vars(environment: Option<Environment>, text: &str) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = Vec::new();
    match environment {
        Some(Environment::Map(entries)) => {
            for (k, v) in entries {
                let (val, vline, vcol) = match v {
                    Some(s) => (s.value.0, loc_line(&s.referenced), loc_col(&s.referenced)),
                    None => (None, loc_line(&k.referenced), loc_col(&k.referenced)),
                };
                vars.push((k.value, val, vline, vcol, loc_col(&k.referenced), false));
            }
        }
        Some(Environment::List(items)) => {
            for it in items {
                let Some(s) = it.value.0 else { continue };
                let line = loc_line(&it.referenced);
                let col = loc_col(&it.referenced);
                // A quoted list item starts one column later than its text.
                let quoted = usize::from(
                    s.as_bytes().first()
                        != text
                            .as_bytes()
                            .get(it.referenced.span().byte_offset().unwrap_or(0) as usize),
                );
                match s.split_once('=') {
                    Some((k, v)) => vars.push((
                        k.to_string(),
                        Some(v.to_string()),
                        line,
                        col + quoted + k.len() + 1,
                        col,
                        true,
                    )),
                    None => vars.push((s.clone(), None, line, col, col, true)),
                }
            }
        }
        None => {}
    }
    vars
}

/// One service as `lockbox scan --fix` sees it: its official image, its `environment:`
/// entries and its `env_file:` paths (as written, relative to the Compose file).
pub(crate) struct ServiceEnv {
    pub(crate) service: String,
    /// The official image (see `FILE_VARIANTS`) the service runs, if any.
    pub(crate) image: Option<&'static str>,
    pub(crate) vars: Vec<EnvEntry>,
    pub(crate) env_files: Vec<String>,
}

/// One `environment:` entry with a value.
pub(crate) struct EnvEntry {
    pub(crate) name: String,
    pub(crate) value: String,
    /// 1-based line of the value.
    pub(crate) line: usize,
    /// Written as `- NAME=value`.
    pub(crate) list_form: bool,
}

impl ServiceEnv {
    /// Whether this service's image reads `NAME_FILE` for `name`.
    pub(crate) fn reads_file_variant(&self, name: &str) -> bool {
        self.image
            .is_some_and(|img| supports_file_variant(img, name))
    }
}

/// Whether a text parses as a Compose model.
pub(crate) fn parses(text: &str) -> bool {
    serde_saphyr::from_str::<ComposeFile>(text).is_ok()
}

/// Every service with its environment, in name order; `None` when the text is not a
/// Compose model.
pub(crate) fn services_env(text: &str) -> Option<Vec<ServiceEnv>> {
    let file = serde_saphyr::from_str::<ComposeFile>(text).ok()?;
    let mut out = Vec::new();
    for (service, svc) in file.services.unwrap_or_default() {
        let Some(svc) = svc else { continue };
        let image = official_image_of(&svc);
        let vars = service_vars(svc.environment, text)
            .into_iter()
            .filter_map(|(name, value, line, _, _, list_form)| {
                value.map(|value| EnvEntry {
                    name,
                    value,
                    line,
                    list_form,
                })
            })
            .collect();
        out.push(ServiceEnv {
            service,
            image,
            vars,
            env_files: svc.env_file.map(|e| e.0).unwrap_or_default(),
        });
    }
    Some(out)
}

/// The official image (see `FILE_VARIANTS`) a service runs, if any.
fn official_image_of(svc: &Service) -> Option<&'static str> {
    svc.image
        .as_ref()
        .and_then(|i| i.value.0.as_deref())
        .and_then(official_image_name)
}

/// Runs every Compose rule on one file. A file that is not valid YAML or not a Compose
/// model yields no structural findings (content rules still run on it).
pub fn scan_compose(ctx: &ComposeCtx<'_>, text: &str, out: &mut Vec<Finding>) {
    let Ok(file) = serde_saphyr::from_str::<ComposeFile>(text) else {
        return;
    };
    let dir = ctx.path.parent().unwrap_or(Path::new("."));
    let display_dir = match ctx.display.rfind('/') {
        Some(i) => &ctx.display[..i + 1],
        None => "",
    };
    let mut em = Emitter { text, out };
    let mut env_files_done: BTreeSet<PathBuf> = BTreeSet::new();

    for (_name, svc) in file.services.unwrap_or_default() {
        let Some(svc) = svc else { continue };
        let image = official_image_of(&svc);
        let vars: Vec<EnvVar> = service_vars(svc.environment, text);
        let names: BTreeSet<&str> = vars.iter().map(|v| v.0.as_str()).collect();
        for (name, value, line, vcol, ncol, _) in &vars {
            let supports = image.is_some_and(|img| supports_file_variant(img, name));
            let secretish = is_secret_name(name);
            let literal = value.as_deref().filter(|v| !is_placeholder(v));
            if secretish && let Some(v) = literal {
                let hint = match image {
                    Some(img) if supports => format!(" (the {img} image reads {name}_FILE)"),
                    _ => String::new(),
                };
                em.push(
                    "compose.env-literal-secret",
                    Severity::High,
                    ctx.display,
                    *line,
                    *vcol,
                    v.chars().count(),
                    format!(
                        "{name} has a literal value in `environment:`{hint}: {}",
                        Redacted::of(v)
                    ),
                    Some(v),
                    name,
                );
            } else if supports && secretish {
                em.push(
                    "compose.use-file-variant",
                    Severity::Medium,
                    ctx.display,
                    *line,
                    *ncol,
                    name.len(),
                    format!(
                        "{name} is passed as an environment variable; the {} image supports {name}_FILE=/run/secrets/…",
                        image.unwrap_or_default()
                    ),
                    None,
                    name,
                );
            }
            if supports && names.contains(format!("{name}_FILE").as_str()) && value.is_some() {
                em.push(
                    "compose.var-and-file-both-set",
                    Severity::Medium,
                    ctx.display,
                    *line,
                    *ncol,
                    name.len(),
                    format!(
                        "both {name} and {name}_FILE are set; the {} entrypoint refuses to start",
                        image.unwrap_or_default()
                    ),
                    None,
                    &format!("{name}+file"),
                );
            }
        }
        for f in svc.env_file.map(|e| e.0).unwrap_or_default() {
            let p = dir.join(&f);
            if !env_files_done.insert(p.clone()) {
                continue;
            }
            let Ok(body) = std::fs::read_to_string(&p) else {
                continue;
            };
            let shown = format!("{display_dir}{}", f.trim_start_matches("./"));
            scan_env_file(&shown, &body, em.out);
        }
        for s in svc.secrets.unwrap_or_default() {
            if let ServiceSecret::Long(l) = s
                && let Some(mode) = l.mode
            {
                check_mode(
                    &mut em,
                    ctx,
                    text,
                    &mode,
                    l.source.as_deref().unwrap_or("?"),
                );
            }
        }
    }

    for (name, sec) in file.secrets.unwrap_or_default() {
        let Some(sec) = sec else { continue };
        let external = sec.external.as_ref().is_some_and(|e| e.value.0);
        if let Some(file_s) = &sec.file
            && let Some(fv) = &file_s.value.0
        {
            let line = loc_line(&file_s.referenced);
            let col = loc_col(&file_s.referenced);
            if external {
                em.push(
                    "compose.secret-external-and-file",
                    Severity::Medium,
                    ctx.display,
                    line,
                    col,
                    fv.len(),
                    format!("secret `{name}` is both `external` and read from `file:`"),
                    None,
                    &name,
                );
            }
            let p = dir.join(fv);
            if !p.exists() {
                em.push(
                    "compose.secret-file-missing",
                    Severity::Medium,
                    ctx.display,
                    line,
                    col,
                    fv.len(),
                    format!("secret `{name}`: file `{fv}` does not exist; Compose would create an empty directory there"),
                    None,
                    &name,
                );
            } else if p.is_file() {
                match git_status(&p) {
                    GitStatus::Ignored => {}
                    status => em.push(
                        "compose.secret-file-not-ignored",
                        Severity::High,
                        ctx.display,
                        line,
                        col,
                        fv.len(),
                        match status {
                            GitStatus::Tracked => {
                                format!("secret `{name}`: file `{fv}` is committed to git")
                            }
                            _ => format!("secret `{name}`: file `{fv}` is not ignored by git"),
                        },
                        None,
                        &name,
                    ),
                }
            }
        }
    }
}

fn check_mode(
    em: &mut Emitter<'_>,
    ctx: &ComposeCtx<'_>,
    text: &str,
    mode: &Spanned<Scalar>,
    source: &str,
) {
    // The parsed integer has lost how it was written; the rule is about the spelling.
    let loc = &mode.referenced;
    let raw = match (loc.span().byte_offset(), loc.span().byte_len()) {
        (Some(o), Some(l)) => text.get(o as usize..(o + l) as usize).map(str::to_string),
        _ => None,
    }
    .or_else(|| mode.value.0.clone())
    .unwrap_or_default();
    let raw = raw.trim();
    let decimal_looking_octal = raw.len() >= 3
        && raw.len() <= 4
        && !raw.starts_with('0')
        && raw.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if decimal_looking_octal {
        let n: u32 = raw.parse().unwrap_or(0);
        em.push(
            "compose.secret-mode-decimal",
            Severity::Medium,
            ctx.display,
            loc_line(loc),
            loc_col(loc),
            raw.len(),
            format!(
                "secret `{source}`: `mode: {raw}` is decimal {n} = 0o{n:o}; did you mean 0{raw}?"
            ),
            None,
            source,
        );
    }
}

/// One dotenv line (`KEY=value`, `export KEY=value`, quotes, inline comments): the key and
/// the value as the program sees it; `None` for comments, blank and malformed lines.
pub(crate) fn parse_env_line(raw_line: &str) -> Option<(&str, &str)> {
    let line = raw_line.trim_start();
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    let (k, v) = line.split_once('=')?;
    let mut v = v.trim();
    // Unquoted values end at an inline comment.
    if !v.starts_with('"') && !v.starts_with('\'') {
        if let Some(h) = v.find(" #") {
            v = v[..h].trim_end();
        }
    } else if v.len() >= 2 && v.ends_with(&v[..1]) {
        v = &v[1..v.len() - 1];
    }
    Some((k.trim(), v))
}

/// Parses a dotenv file and flags secret-looking keys with literal values.
pub fn scan_env_file(display: &str, body: &str, out: &mut Vec<Finding>) {
    for (i, raw_line) in body.lines().enumerate() {
        let Some((k, v)) = parse_env_line(raw_line) else {
            continue;
        };
        if !is_secret_name(k)
            || is_placeholder(v)
            || inline_ignored(raw_line.as_bytes(), "compose.env-file-secret")
        {
            continue;
        }
        let vcol = raw_line.find(v).map_or(1, |c| c + 1);
        out.push(Finding {
            rule: "compose.env-file-secret".into(),
            severity: Severity::High,
            path: display.to_string(),
            line: i + 1,
            column: vcol,
            end_column: vcol + v.chars().count(),
            message: format!(
                "{k} has a literal value in an env_file: {}",
                Redacted::of(v)
            ),
            fix: fix_for("compose.env-file-secret").to_string(),
            secret: Some(Redacted::of(v)),
            fingerprint: Finding::fingerprint_of("compose.env-file-secret", display, v),
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum GitStatus {
    Ignored,
    NotIgnored,
    Tracked,
}

/// Asks git itself (exact semantics: nested .gitignore, info/exclude, core.excludesFile);
/// outside a repository, falls back to the `.gitignore` files of the ancestors.
fn git_status(path: &Path) -> GitStatus {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code())
    };
    let tracked = run(&[
        "ls-files".as_ref(),
        "--error-unmatch".as_ref(),
        "--".as_ref(),
        name.as_os_str(),
    ]);
    if tracked == Some(0) {
        return GitStatus::Tracked;
    }
    match run(&[
        "check-ignore".as_ref(),
        "-q".as_ref(),
        "--".as_ref(),
        name.as_os_str(),
    ]) {
        Some(0) => GitStatus::Ignored,
        Some(1) => GitStatus::NotIgnored,
        _ => fallback_gitignore(path),
    }
}

fn fallback_gitignore(path: &Path) -> GitStatus {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for dir in abs.ancestors().skip(1) {
        let gi = dir.join(".gitignore");
        if !gi.is_file() {
            continue;
        }
        let mut b = ignore::gitignore::GitignoreBuilder::new(dir);
        if b.add(&gi).is_some() {
            continue;
        }
        if let Ok(m) = b.build()
            && m.matched_path_or_any_parents(&abs, false).is_ignore()
        {
            return GitStatus::Ignored;
        }
    }
    GitStatus::NotIgnored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_names() {
        assert_eq!(official_image_name("mysql"), Some("mysql"));
        assert_eq!(official_image_name("mysql:8.0"), Some("mysql"));
        assert_eq!(
            official_image_name("docker.io/library/postgres:16@sha256:abc"),
            Some("postgres")
        );
        assert_eq!(official_image_name("bitnami/mysql:8"), None);
        assert_eq!(official_image_name("localhost:5000/mysql"), None);
    }

    #[test]
    fn compose_names() {
        assert!(is_compose_name("compose.yaml"));
        assert!(is_compose_name("docker-compose.prod.yml"));
        assert!(!is_compose_name("values.yaml"));
    }
}
