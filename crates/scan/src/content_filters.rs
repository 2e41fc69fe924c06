//! The filters a content match passes before it is reported: names that must say
//! credential, values that must be literals (not placeholders, references, published
//! examples or a URL's own user name), format checksums, and the entropy scan's tests of
//! what a random-looking string is.

use crate::content::FileCtx;
use crate::content_rules::{Check, ContentRule};
use crate::finding::{Severity, shannon_entropy};
use crate::names;

/// Rules whose first capture group is the name a value is assigned to, and whose value
/// counts only when that name says secret.
pub(crate) fn is_named_rule(id: &str) -> bool {
    matches!(
        id,
        "content.secret-assignment" | "content.secret-property-call" | "content.xml-secret-element"
    )
}

pub(crate) fn is_url_credential_rule(id: &str) -> bool {
    matches!(
        id,
        "content.connection-string-password" | "content.url-basic-auth"
    )
}

/// `postgres://postgres:postgres@db`: a password equal to the user name is a local default
/// (the official images' own examples), not a leaked credential.
pub(crate) fn url_password_is_user(hay: &[u8], secret_start: usize, secret: &[u8]) -> bool {
    let before = &hay[..secret_start];
    let Some(colon) = before
        .last()
        .filter(|&&b| b == b':')
        .map(|_| before.len() - 1)
    else {
        return false;
    };
    let user_start = memchr::memmem::rfind(&before[..colon], b"//").map_or(0, |i| i + 2);
    let user = &before[user_start..colon];
    user.eq_ignore_ascii_case(secret)
}

/// The severity a match is reported at after the rule's structural check, or `None` when
/// the check says it is not a token at all.
pub(crate) fn checked_severity(rule: &ContentRule, s: &[u8]) -> Option<Severity> {
    match rule.check {
        Check::None => Some(rule.severity),
        Check::GithubCrc => Some(if crate::checksum::github_style_checksum_ok(s) {
            rule.severity
        } else {
            lower_severity(rule.severity)
        }),
        Check::Base64Jwt => base64_wraps_jwt(s).then_some(rule.severity),
    }
}

pub(crate) fn lower_severity(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        Severity::Medium | Severity::Low => Severity::Low,
        Severity::Info => Severity::Info,
    }
}

/// Does a base64 string decode to `eyJ…` (a JWT's JSON header) with a `.` separator?
pub(crate) fn base64_wraps_jwt(s: &[u8]) -> bool {
    use base64::Engine as _;
    let body: Vec<u8> = s.iter().copied().filter(|&b| b != b'=').collect();
    let whole = body.len() - body.len() % 4;
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(&body[..whole]) {
        Ok(d) => d.starts_with(b"eyJ") && d.contains(&b'.'),
        Err(_) => false,
    }
}

/// Values published as examples by the vendors themselves, which documentation and
/// samples copy verbatim.
const PUBLISHED_EXAMPLES: &[&[u8]] = &[
    // The browser key in Google's Maps JavaScript API samples.
    b"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    // The token jwt.io shows by default (HS256, "John Doe").
    b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
];

/// Vendor documentation values (`AKIAIOSFODNN7EXAMPLE`) and obviously fake fill.
pub(crate) fn is_example_value(s: &[u8]) -> bool {
    if PUBLISHED_EXAMPLES.contains(&s) {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    memchr::memmem::find(&lower, b"example").is_some()
        || memchr::memmem::find(&lower, b"xxxxxxxx").is_some()
        || memchr::memmem::find(&lower, b"00000000000").is_some()
}

const CODE_EXTS: &[&str] = &[
    "py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "rs", "java", "kt", "kts", "scala",
    "c", "h", "cc", "cpp", "hpp", "cs", "rb", "php", "swift", "m", "mm", "lua", "pl", "pm", "r",
    "dart", "ex", "exs", "erl", "clj", "groovy", "vb", "fs", "jl", "zig", "nim", "el", "lisp",
];

/// Prose documentation: its long random-looking strings are example IDs and hashes, and
/// provider rules still cover real tokens pasted into it.
pub(crate) fn is_doc_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [
        ".md", ".rst", ".txt", ".html", ".htm", ".adoc", ".xml", ".svg", ".csv",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

/// Whether a path names source code (see [`FileCtx::is_code`]).
pub fn is_code_path(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((_, ext)) => CODE_EXTS.contains(&ext.to_ascii_lowercase().as_str()),
        None => false,
    }
}

/// Filters for the keyword-assignment rule, modelled on what makes detect-secrets'
/// KeywordDetector noisy: indirect references, comparisons, prose, placeholders.
pub(crate) fn assignment_is_secret(
    name: &[u8],
    caps: &regex::bytes::Captures<'_>,
    hay: &[u8],
    ctx: &FileCtx<'_>,
) -> bool {
    let name = String::from_utf8_lossy(name);
    // `self.db_password`, `config.auth.token` → the last segment names the value.
    let last = name.rsplit(['.', '>']).next().unwrap_or(&name);
    if !names::is_credential_name(last) {
        return false;
    }
    let password_name = names::is_password_name(last);
    let (value, quoted) = match (caps.get(2), caps.get(3), caps.get(4), caps.get(5)) {
        (Some(v), ..) | (_, Some(v), ..) | (_, _, Some(v), _) => (v, true),
        (_, _, _, Some(v)) => (v, false),
        _ => return false,
    };
    let whole = caps.get(0).map_or(&b""[..], |m| m.as_bytes());
    // `password == other`, `token != x`: comparisons, not assignments.
    if memchr::memmem::find(whole, b"==").is_some() || memchr::memmem::find(whole, b"!=").is_some()
    {
        return false;
    }
    let v = String::from_utf8_lossy(value.as_bytes());
    if names::is_placeholder(&v) || v.len() < 4 {
        return false;
    }
    // `passwordKey: db-password`, `existingSecret: app-credentials`: a lower-case
    // identifier that names a secret is the name of a Secret or key holding it.
    let lower_v = v.to_ascii_lowercase();
    if v.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && (v.contains('-') || v.contains('_'))
        && ["password", "passwd", "secret", "credential", "token"]
            .iter()
            .any(|w| lower_v.contains(w))
    {
        return false;
    }
    // `pass_stmt: 'pass'`, `password: "password"`: the value names the key, it is no secret.
    if name.to_ascii_lowercase().contains(&v.to_ascii_lowercase()) {
        return false;
    }
    // OIDs, versions, format strings: no letters, or printf/format placeholders.
    if !v.bytes().any(|b| b.is_ascii_alphabetic()) || v.contains("%d") || v.contains("%r") {
        return false;
    }
    // Prose ("Password required", "Enter your token") and format strings are not secrets.
    if v.contains(' ') || v.contains("%s") || v.contains("{}") || v.contains("{0}") {
        return false;
    }
    // A dotted path or a bare identifier (`Items.Name`, `NextToken`) is a reference to a
    // field, unless the name says password (where `foobar` is exactly what leaks).
    let identifier = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if identifier && !password_name && !v.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    if !quoted && let Some(q @ (b'"' | b'\'')) = caps.get(0).and_then(|w| hay.get(w.end())).copied()
    {
        // `"secretsmanager:resource/Type"`: the "assignment" is inside a string — unless
        // the string is a whole `NAME=value` pair (`"env": ["API_TOKEN=…"]`).
        let opened = caps
            .get(1)
            .and_then(|n| n.start().checked_sub(1))
            .and_then(|i| hay.get(i))
            == Some(&q);
        let env_pair =
            memchr::memchr(b'=', whole).is_some() && memchr::memchr(b':', whole).is_none();
        if !(opened && env_pair) {
            return false;
        }
    }
    if !quoted && ctx.is_code {
        // In code an unquoted right-hand side is an expression: a variable, a call, an
        // attribute, a literal of another type.
        return false;
    }
    if !quoted {
        // Unquoted config values: reject obvious expressions and file paths.
        if v.contains('(') || v.starts_with('/') || v.starts_with("./") || v.starts_with('~') {
            return false;
        }
        // `random_password.db.result`, `aws_secretsmanager_secret.x.arn`: an HCL/Terraform
        // attribute path (two dots or more between identifiers) names where a value lives.
        let segments: Vec<&str> = v.split('.').collect();
        if segments.len() >= 3
            && segments.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
        {
            return false;
        }
    } else if ctx.is_code {
        // A quoted identifier-looking word in code is usually a key name or enum value
        // (`auth_method = "basic_auth"`); require something a human password has.
        let has_digit = v.bytes().any(|b| b.is_ascii_digit());
        let has_upper = v.bytes().any(|b| b.is_ascii_uppercase());
        let has_symbol = v.bytes().any(|b| !b.is_ascii_alphanumeric() && b != b'_');
        if !(has_digit || has_upper || has_symbol) || v.contains('/') && !has_digit {
            return false;
        }
    }
    true
}

/// Filters for the name/value rules other than the assignment rule (setter calls, XML
/// elements): the name must say credential and the value must be a literal.
pub(crate) fn literal_is_secret(name: &[u8], value: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name);
    let last = name.rsplit(['.', ':']).next().unwrap_or(&name);
    if !names::is_credential_name(last) {
        return false;
    }
    let v = String::from_utf8_lossy(value);
    let v = v.trim();
    if v.len() < 4 || names::is_placeholder(v) || is_example_value(v.as_bytes()) {
        return false;
    }
    if v.contains(' ') || !v.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    !name.to_ascii_lowercase().contains(&v.to_ascii_lowercase())
}

pub(crate) fn is_b64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

pub(crate) fn looks_random(s: &[u8]) -> bool {
    let upper = s.iter().any(u8::is_ascii_uppercase);
    let lower = s.iter().any(u8::is_ascii_lowercase);
    let digits = s.iter().filter(|b| b.is_ascii_digit()).count();
    if !(upper && lower && digits >= 2) {
        return false;
    }
    // Paths and dotted identifiers are not tokens.
    if s.iter().filter(|&&b| b == b'/').count() > 2 || s.contains(&b'.') {
        return false;
    }
    let threshold = if s.len() >= 32 { 4.3 } else { 4.0 };
    if shannon_entropy(s) < threshold {
        return false;
    }
    !names::is_placeholder(&String::from_utf8_lossy(s)) && !is_example_value(s)
}

/// Does the name assigned to (the word before `=`/`:`) say what the value is — font or image
/// data, a digest, an identifier? Such strings are random by nature and are not credentials
/// (gitleaks' stopwords play the same role).
pub(crate) fn names_a_non_secret(buf: &[u8], q: usize) -> bool {
    let ls = memchr::memrchr(b'\n', &buf[..q]).map_or(0, |i| i + 1);
    let before = String::from_utf8_lossy(&buf[ls..q]);
    let name = before
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '=' | ':' | '>' | '"' | '\''))
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .next()
        .unwrap_or("");
    if names::is_credential_name(name) {
        return false;
    }
    const HINTS: &[&str] = &[
        "font",
        "icon",
        "image",
        "img",
        "logo",
        "png",
        "jpeg",
        "gif",
        "svg",
        "woff",
        "data",
        "blob",
        "hash",
        "digest",
        "checksum",
        "sha1",
        "sha256",
        "sha512",
        "md5",
        "crc",
        "etag",
        "uuid",
        "guid",
        "nonce",
        "integrity",
        "fingerprint",
        "commit",
        "revision",
        "rev",
        "id",
    ];
    names::split_parts(name)
        .iter()
        .any(|part| HINTS.contains(&part.as_str()))
}

/// Is the quote at `q` the right-hand side of an assignment (`=`, `:` or `=>` before it on
/// the same line)?
pub(crate) fn assignment_before(buf: &[u8], q: usize) -> bool {
    let mut k = q;
    while k > 0 && (buf[k - 1] == b' ' || buf[k - 1] == b'\t') {
        k -= 1;
    }
    k > 0 && matches!(buf[k - 1], b'=' | b':' | b'>')
}
