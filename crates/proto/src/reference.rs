//! Docker's `--secret` reference syntax, parsed like `docker service create --secret`, with the
//! places where Docker is lax or buggy tightened up.
//!
//! Accepted forms:
//!
//! * a bare name: `db_pw` → source = target = `db_pw`, uid 0, gid 0, mode 0o444;
//! * the long form, a CSV record of `key=value` fields (keys are case-insensitive, as in the
//!   Docker CLI): `source|src=…,target=…,uid=…,gid=…,mode=…`, plus lockbox's `version=N` to pin
//!   a version instead of following the latest.
//!
//! Where lockbox is stricter than Docker, and why:
//!
//! * **`mode`**: Docker parses it with Go's base auto-detection, so `mode=0400` is octal but
//!   `mode=400` is decimal 400 = 0o620 (`-rw--w----`), a well-known trap. We accept `0400`,
//!   `0o400` (and Go's unambiguous `0x…`/`0b…`), and single digits 0–7 (same value in either
//!   base), and **reject** any other plain decimal with a message naming the octal the user
//!   probably meant. Rejecting beats warning: a warning on a `service create` scrolls by while the
//!   wrong permissions stay in the store. Bits outside 0o777 are refused too (setuid/sticky bits
//!   make no sense on a secret file).
//! * **`uid`/`gid`**: Docker sends them as strings and the daemon fails the task at container
//!   start on a non-number. We reject non-numeric (and the `-1` sentinel 4294967295) at parse time.
//! * **targets**: a relative target goes under the secrets directory (`/run/secrets`), an absolute
//!   one is used as is. Docker normalises `../../etc/x` into `/etc/x`; we refuse any `..`
//!   component, and refuse relative names whose first component starts with `..` because the
//!   atomic writer reserves those (`..data`, `..<timestamp>`).
//! * **duplicates**: two references with the same target are refused with the Docker CLI's own
//!   message. Two references to the *same secret* with different targets are fine and keep their
//!   own uid/gid/mode (Swarm collapses them to the last one; see the reference notes §4.6).

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where relative targets land inside a consumer.
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";
/// Docker's default mode for a secret file.
pub const DEFAULT_MODE: u32 = 0o444;

/// Why a reference was refused. The `Display` text is what the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty secret reference")]
    Empty,
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("invalid field in secret request: {0}")]
    UnknownField(String),
    #[error("source is required")]
    SourceRequired,
    #[error("invalid secret reference: {0}")]
    Csv(String),
    #[error("invalid mode specified: {0:?} is not a number")]
    ModeNotNumber(String),
    #[error(
        "mode {given} is decimal ({decimal_octal:#o}, {decimal_sym}); write {suggestion} or 0o{suggestion_digits} for {meant_sym}"
    )]
    ModeDecimalOctalDigits {
        given: String,
        decimal_octal: u32,
        decimal_sym: String,
        suggestion: String,
        suggestion_digits: String,
        meant_sym: String,
    },
    #[error(
        "mode {given} is decimal ({decimal_octal:#o}, {decimal_sym}); write modes in octal, e.g. 0{decimal_octal:o} or 0o{decimal_octal:o}"
    )]
    ModeDecimal {
        given: String,
        decimal_octal: u32,
        decimal_sym: String,
    },
    #[error("mode {0:#o} has bits outside 0o777 (setuid, setgid and sticky bits are not allowed)")]
    ModeTooWide(u32),
    #[error("{field} {value:?} is not a numeric id (names are not resolved; use a number)")]
    BadId { field: &'static str, value: String },
    #[error("version {0:?} is not a number")]
    BadVersion(String),
    #[error("target {0:?} escapes the secrets directory (\"..\" components are not allowed)")]
    TargetEscapes(String),
    #[error("target {0:?} is empty after normalisation")]
    TargetEmpty(String),
    #[error("target {0:?}: names starting with \"..\" are reserved for the atomic writer")]
    TargetReserved(String),
    #[error("duplicate secret target for {0} not allowed")]
    DuplicateTarget(String),
    #[error(
        "secret target {inner:?} (source {inner_source}) is inside target {outer:?} (source {outer_source})"
    )]
    NestedTarget {
        inner: String,
        inner_source: String,
        outer: String,
        outer_source: String,
    },
    #[error("invalid --secret-env {0:?}: expected VAR=REFERENCE")]
    EnvSyntax(String),
    #[error("invalid environment variable name {0:?} in --secret-env")]
    EnvName(String),
}

/// One consumer's request for one secret: where the file goes and with which owner and mode.
///
/// Persisted by the store inside services; deserialisation re-validates, so a hand-edited or
/// foreign record cannot smuggle in a `..` target or a bogus mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawSecretRef")]
pub struct SecretRef {
    pub source: String,
    /// As written (relative or absolute); see [`SecretRef::resolved_target`].
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (≤ 0o777).
    pub mode: u32,
    /// `None` follows the latest version (and rotations); `Some(n)` pins version `n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Deserialize)]
struct RawSecretRef {
    source: String,
    target: String,
    uid: u32,
    gid: u32,
    mode: u32,
    #[serde(default)]
    version: Option<u64>,
}

impl TryFrom<RawSecretRef> for SecretRef {
    type Error = ReferenceError;
    fn try_from(r: RawSecretRef) -> Result<Self, Self::Error> {
        let s = SecretRef {
            source: r.source,
            target: r.target,
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
            version: r.version,
        };
        s.validate()?;
        Ok(s)
    }
}

impl SecretRef {
    /// A reference with Docker's defaults: target = source, 0:0, 0444, latest version.
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        SecretRef {
            target: source.clone(),
            source,
            uid: 0,
            gid: 0,
            mode: DEFAULT_MODE,
            version: None,
        }
    }

    /// Checks the invariants `FromStr` establishes (used after deserialisation too).
    pub fn validate(&self) -> Result<(), ReferenceError> {
        if self.source.is_empty() {
            return Err(ReferenceError::SourceRequired);
        }
        if self.mode > 0o777 {
            return Err(ReferenceError::ModeTooWide(self.mode));
        }
        for (field, v) in [("uid", self.uid), ("gid", self.gid)] {
            if v == u32::MAX {
                return Err(ReferenceError::BadId {
                    field,
                    value: v.to_string(),
                });
            }
        }
        normalize_target(&self.target).map(|_| ())
    }

    /// True when the target is an absolute path (bound as a single file, outside the secrets dir).
    pub fn is_absolute(&self) -> bool {
        self.target.starts_with('/')
    }

    /// The target relative to the secrets directory, normalised (`./a//b` → `a/b`); `None` for
    /// an absolute target.
    pub fn relative_target(&self) -> Option<PathBuf> {
        if self.is_absolute() {
            None
        } else {
            normalize_target(&self.target).ok()
        }
    }

    /// Where the file appears inside the consumer: `secrets_dir/target` or the absolute target.
    pub fn resolved_target(&self, secrets_dir: &Path) -> PathBuf {
        let norm = normalize_target(&self.target).unwrap_or_else(|_| PathBuf::from(&self.target));
        if norm.is_absolute() {
            norm
        } else {
            secrets_dir.join(norm)
        }
    }
}

/// Normalises a target: drops `.` and empty components, refuses `..` and reserved names.
fn normalize_target(target: &str) -> Result<PathBuf, ReferenceError> {
    let mut out = PathBuf::new();
    let mut first_normal = true;
    for c in Path::new(target).components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => return Err(ReferenceError::TargetEscapes(target.to_owned())),
            Component::Prefix(_) => return Err(ReferenceError::TargetEscapes(target.to_owned())),
            Component::Normal(n) => {
                if first_normal
                    && !target.starts_with('/')
                    && n.as_encoded_bytes().starts_with(b"..")
                {
                    return Err(ReferenceError::TargetReserved(target.to_owned()));
                }
                first_normal = false;
                out.push(n);
            }
        }
    }
    if out.as_os_str().is_empty() || out == Path::new("/") {
        return Err(ReferenceError::TargetEmpty(target.to_owned()));
    }
    Ok(out)
}

/// Splits one CSV record the way Go's `encoding/csv` does for the Docker CLI: comma-separated,
/// a field may be double-quoted with `""` as an escaped quote, a bare quote inside an unquoted
/// field is an error.
fn split_csv(s: &str) -> Result<Vec<String>, ReferenceError> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(ReferenceError::Csv(
                            "extraneous or missing \" in quoted-field".into(),
                        ));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(ReferenceError::Csv(
                        "extraneous or missing \" in quoted-field".into(),
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(ReferenceError::Csv("bare \" in non-quoted-field".into()));
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// `ls`-style permission string for messages, e.g. 0o640 → `rw-r-----`.
fn symbolic(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Parses `mode` with Go's prefixes, refusing ambiguous plain decimals (see the module docs).
pub fn parse_mode(value: &str) -> Result<u32, ReferenceError> {
    let not_number = || ReferenceError::ModeNotNumber(value.to_owned());
    let v = value.replace('_', ""); // Go's base-0 parsing allows digit separators
    let parsed = if let Some(d) = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")) {
        u32::from_str_radix(d, 8)
    } else if let Some(d) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(d, 16)
    } else if let Some(d) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        u32::from_str_radix(d, 2)
    } else if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8)
    } else if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = v.parse().map_err(|_| not_number())?;
        if n <= 7 {
            // One digit: the same value in octal and decimal, nothing to get wrong.
            Ok(n)
        } else if v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let meant = u32::from_str_radix(&v, 8).map_err(|_| not_number())?;
            return Err(ReferenceError::ModeDecimalOctalDigits {
                given: value.to_owned(),
                decimal_octal: n,
                decimal_sym: symbolic(n),
                suggestion: format!("0{v}"),
                suggestion_digits: v.clone(),
                meant_sym: symbolic(meant),
            });
        } else {
            return Err(ReferenceError::ModeDecimal {
                given: value.to_owned(),
                decimal_octal: n,
                decimal_sym: symbolic(n),
            });
        }
    } else {
        return Err(not_number());
    };
    let mode = parsed.map_err(|_| not_number())?;
    if mode > 0o777 {
        return Err(ReferenceError::ModeTooWide(mode));
    }
    Ok(mode)
}

fn parse_id(field: &'static str, value: &str) -> Result<u32, ReferenceError> {
    let bad = || ReferenceError::BadId {
        field,
        value: value.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u32>() {
        // u32::MAX is chown's "leave unchanged" sentinel (-1), never a real owner.
        Ok(u32::MAX) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    }
}

impl FromStr for SecretRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let fields = split_csv(s)?;
        if fields.len() == 1 && !fields[0].contains('=') {
            let r = SecretRef::new(fields[0].clone());
            r.validate()?;
            return Ok(r);
        }
        let mut r = SecretRef::new(String::new());
        r.target.clear();
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(ReferenceError::NotKeyValue(field.clone()));
            };
            if key.is_empty() {
                return Err(ReferenceError::NotKeyValue(field.clone()));
            }
            // The Docker CLI lower-cases keys; keep that so pasted commands keep working.
            match key.to_ascii_lowercase().as_str() {
                "source" | "src" => r.source = value.to_owned(),
                "target" => r.target = value.to_owned(),
                "uid" => r.uid = parse_id("uid", value)?,
                "gid" => r.gid = parse_id("gid", value)?,
                "mode" => r.mode = parse_mode(value)?,
                "version" => {
                    r.version = Some(
                        value
                            .parse()
                            .map_err(|_| ReferenceError::BadVersion(value.to_owned()))?,
                    )
                }
                _ => return Err(ReferenceError::UnknownField(key.to_owned())),
            }
        }
        if r.source.is_empty() {
            return Err(ReferenceError::SourceRequired);
        }
        if r.target.is_empty() {
            r.target = r.source.clone();
        }
        r.validate()?;
        Ok(r)
    }
}

fn csv_quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

impl fmt::Display for SecretRef {
    /// Always the long form, so what is printed parses back to the same reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},uid={},gid={},mode={:#05o}",
            csv_quote(&format!("source={}", self.source)),
            csv_quote(&format!("target={}", self.target)),
            self.uid,
            self.gid,
            self.mode
        )?;
        if let Some(v) = self.version {
            write!(f, ",version={v}")?;
        }
        Ok(())
    }
}

/// Refuses two references that would write the same file (Docker's message) or a file inside
/// another reference's file path. Relative targets are resolved under `secrets_dir` first, so
/// `a`, `./a` and `/run/secrets/a` all collide.
pub fn check_targets(refs: &[SecretRef], secrets_dir: &Path) -> Result<(), ReferenceError> {
    let mut seen: HashMap<PathBuf, &SecretRef> = HashMap::new();
    for r in refs {
        r.validate()?;
        let path = r.resolved_target(secrets_dir);
        if seen.insert(path, r).is_some() {
            return Err(ReferenceError::DuplicateTarget(r.source.clone()));
        }
    }
    for (inner_path, inner) in &seen {
        for anc in inner_path.ancestors().skip(1) {
            if let Some(outer) = seen.get(anc) {
                return Err(ReferenceError::NestedTarget {
                    inner: inner.target.clone(),
                    inner_source: inner.source.clone(),
                    outer: outer.target.clone(),
                    outer_source: outer.source.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Parses a list of `--secret` values and checks targets against [`DEFAULT_SECRETS_DIR`].
pub fn parse_references<I, S>(items: I) -> Result<Vec<SecretRef>, ReferenceError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let refs = items
        .into_iter()
        .map(|s| s.as_ref().parse())
        .collect::<Result<Vec<SecretRef>, _>>()?;
    check_targets(&refs, Path::new(DEFAULT_SECRETS_DIR))?;
    Ok(refs)
}

/// `--secret-env VAR=REFERENCE`: deliver the secret as a file like `--secret`, and tell the
/// process where it is through `VAR_FILE=<path>` (the `_FILE` convention of the official Docker
/// images). The value itself never goes into the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEnv {
    pub var: String,
    pub reference: SecretRef,
}

impl SecretEnv {
    /// The variable actually set: `VAR_FILE`.
    pub fn env_name(&self) -> String {
        format!("{}_FILE", self.var)
    }

    /// The variable's value: the file's path inside the consumer.
    pub fn env_value(&self, secrets_dir: &Path) -> PathBuf {
        self.reference.resolved_target(secrets_dir)
    }
}

impl FromStr for SecretEnv {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (var, reference) = s
            .split_once('=')
            .ok_or_else(|| ReferenceError::EnvSyntax(s.to_owned()))?;
        let mut bytes = var.bytes();
        let valid = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ReferenceError::EnvName(var.to_owned()));
        }
        if reference.is_empty() {
            return Err(ReferenceError::EnvSyntax(s.to_owned()));
        }
        Ok(SecretEnv {
            var: var.to_owned(),
            reference: reference.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<SecretRef, ReferenceError> {
        s.parse()
    }

    #[test]
    fn bare_name_gets_docker_defaults() {
        let r = p("db_pw").unwrap();
        assert_eq!(r, SecretRef::new("db_pw"));
        assert_eq!((r.uid, r.gid, r.mode, r.version), (0, 0, 0o444, None));
        assert_eq!(r.target, "db_pw");
    }

    #[test]
    fn long_form_all_fields() {
        let r = p("src=db,target=/etc/app/pw,uid=1000,gid=1001,mode=0400,version=3").unwrap();
        assert_eq!(
            r,
            SecretRef {
                source: "db".into(),
                target: "/etc/app/pw".into(),
                uid: 1000,
                gid: 1001,
                mode: 0o400,
                version: Some(3)
            }
        );
        assert!(r.is_absolute());
        // Keys are case-insensitive like the Docker CLI; target defaults to source.
        let r = p("Source=db,MODE=0o440").unwrap();
        assert_eq!((r.target.as_str(), r.mode), ("db", 0o440));
    }

    #[test]
    fn mode_octal_forms_and_the_decimal_trap() {
        assert_eq!(parse_mode("0400").unwrap(), 0o400);
        assert_eq!(parse_mode("0o400").unwrap(), 0o400);
        assert_eq!(parse_mode("0x124").unwrap(), 0o444);
        assert_eq!(parse_mode("0").unwrap(), 0);
        assert_eq!(parse_mode("4").unwrap(), 4);
        let e = parse_mode("400").unwrap_err().to_string();
        assert_eq!(
            e,
            "mode 400 is decimal (0o620, rw--w----); write 0400 or 0o400 for r--------"
        );
        let e = parse_mode("292").unwrap_err().to_string();
        assert!(e.contains("0o444") && e.contains("0444"), "{e}");
        assert!(matches!(
            parse_mode("0o4755"),
            Err(ReferenceError::ModeTooWide(0o4755))
        ));
        assert!(matches!(
            parse_mode("rw"),
            Err(ReferenceError::ModeNotNumber(_))
        ));
        assert!(matches!(
            parse_mode("0o8"),
            Err(ReferenceError::ModeNotNumber(_))
        ));
        assert!(matches!(
            parse_mode(""),
            Err(ReferenceError::ModeNotNumber(_))
        ));
    }

    #[test]
    fn ids_must_be_numeric_at_parse_time() {
        let e = p("source=a,uid=notanumber").unwrap_err();
        assert_eq!(
            e.to_string(),
            "uid \"notanumber\" is not a numeric id (names are not resolved; use a number)"
        );
        assert!(p("source=a,gid=").is_err());
        assert!(p("source=a,gid=-1").is_err());
        assert!(p("source=a,uid=4294967295").is_err());
        assert!(p("source=a,uid=4294967294").is_ok());
    }

    #[test]
    fn docker_cli_messages() {
        assert_eq!(p("target=x").unwrap_err().to_string(), "source is required");
        assert_eq!(
            p("source=a,bogus=1").unwrap_err().to_string(),
            "invalid field in secret request: bogus"
        );
        assert_eq!(
            p("source=a,target").unwrap_err().to_string(),
            "invalid field 'target' must be a key=value pair"
        );
        assert_eq!(p("").unwrap_err(), ReferenceError::Empty);
    }

    #[test]
    fn targets_relative_absolute_and_escapes() {
        let r = p("source=a,target=./sub//x").unwrap();
        assert_eq!(r.relative_target().unwrap(), PathBuf::from("sub/x"));
        assert_eq!(
            r.resolved_target(Path::new("/run/secrets")),
            PathBuf::from("/run/secrets/sub/x")
        );
        assert_eq!(
            p("source=a,target=../x").unwrap_err().to_string(),
            "target \"../x\" escapes the secrets directory (\"..\" components are not allowed)"
        );
        assert!(matches!(
            p("source=a,target=/etc/../shadow"),
            Err(ReferenceError::TargetEscapes(_))
        ));
        assert!(matches!(
            p("source=a,target=..data"),
            Err(ReferenceError::TargetReserved(_))
        ));
        assert!(matches!(
            p("source=a,target=/"),
            Err(ReferenceError::TargetEmpty(_))
        ));
        // A nested `..x` name is harmless and allowed; only the top level is reserved.
        assert!(p("source=a,target=d/..x").is_ok());
    }

    #[test]
    fn duplicate_and_nested_targets() {
        let e = parse_references(["a", "source=b,target=a"]).unwrap_err();
        assert_eq!(e.to_string(), "duplicate secret target for b not allowed");
        // `a` and `/run/secrets/a` are the same file.
        assert!(parse_references(["a", "source=b,target=/run/secrets/a"]).is_err());
        assert!(matches!(
            parse_references(["source=a,target=d", "source=b,target=d/x"]),
            Err(ReferenceError::NestedTarget { .. })
        ));
        // One secret, two targets, different owners: allowed and kept apart (Swarm's bug).
        let refs =
            parse_references(["source=pw,target=/etc/app/pw,uid=1000,mode=0400", "pw"]).unwrap();
        assert_eq!(refs[0].uid, 1000);
        assert_eq!(refs[1].mode, 0o444);
    }

    #[test]
    fn display_round_trips_including_quoting() {
        for s in [
            "db",
            "source=a,target=/etc/x,uid=1,gid=2,mode=0o640,version=7",
            "\"source=a,b\",target=x",
            "\"source=q\"\"uote\",mode=0",
        ] {
            let r = p(s).unwrap();
            let shown = r.to_string();
            assert_eq!(p(&shown).unwrap(), r, "{s} -> {shown}");
        }
        assert_eq!(
            SecretRef::new("db").to_string(),
            "source=db,target=db,uid=0,gid=0,mode=0o444"
        );
        assert!(p("sou\"rce=a").is_err());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let r = p("source=a,target=t,uid=5,mode=0600,version=2").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<SecretRef>(&json).unwrap(), r);
        let bad = r#"{"source":"a","target":"../x","uid":0,"gid":0,"mode":292}"#;
        assert!(serde_json::from_str::<SecretRef>(bad).is_err());
        let latest = r#"{"source":"a","target":"x","uid":0,"gid":0,"mode":292}"#;
        assert_eq!(
            serde_json::from_str::<SecretRef>(latest).unwrap().version,
            None
        );
    }

    #[test]
    fn secret_env() {
        let e: SecretEnv = "DB_PASSWORD=source=db,target=pw,mode=0400".parse().unwrap();
        assert_eq!(e.env_name(), "DB_PASSWORD_FILE");
        assert_eq!(
            e.env_value(Path::new(DEFAULT_SECRETS_DIR)),
            PathBuf::from("/run/secrets/pw")
        );
        assert!(matches!(
            "1X=db".parse::<SecretEnv>(),
            Err(ReferenceError::EnvName(_))
        ));
        assert!("NOEQUALS".parse::<SecretEnv>().is_err());
        assert!("X=".parse::<SecretEnv>().is_err());
    }
}
