//! Heuristics on names and values: "does this variable name look like it holds a secret?",
//! "is this value a literal or a reference/placeholder?". Shared by the Compose, Dockerfile,
//! shell, image and content rules so they agree with each other.

/// Name parts that mark a variable as secret on their own (after splitting on `_`, `-`,
/// `.` and camelCase). The union of what BuildKit's `SecretsUsedInArgOrEnv`, hadolint DL3064
/// and dockle look at, minus `key` (handled separately: only as the last part).
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pword",
    "pass",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "apikey",
    "auth",
    "privatekey",
    "salt",
];

/// Whole-name substrings that are secret however they are split (`NPMAUTHTOKEN`, `DBPASSWORD`).
const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "apikey",
];

/// A name whose last part is one of these describes *where* or *what kind* of secret, not
/// the secret: `DB_PASSWORD_FILE`, `TOKEN_URL`, `SECRET_NAME`, `JWT_SECRET_LENGTH`.
const NON_VALUE_SUFFIXES: &[&str] = &[
    "file",
    "files",
    "path",
    "dir",
    "directory",
    "url",
    "uri",
    "endpoint",
    "host",
    "hosts",
    "port",
    "name",
    "names",
    "user",
    "username",
    "usr",
    "id",
    "ids",
    "type",
    "types",
    "version",
    "length",
    "len",
    "size",
    "ttl",
    "expiry",
    "expires",
    "expiration",
    "timeout",
    "lifetime",
    "header",
    "method",
    "algorithm",
    "alg",
    "policy",
    "prefix",
    "suffix",
    "min",
    "max",
    "hint",
    "format",
    "mode",
    "count",
    "enabled",
    "enable",
    "disabled",
    "required",
    "required",
    "location",
    "env",
    "var",
    "field",
    "param",
    "provider",
    "store",
    "backend",
    "rotation",
    "cmd",
    "command",
    "script",
    "hash_algorithm",
    "kind",
    "scope",
    "scopes",
    "issuer",
    "audience",
    "sid",
    "prompt",
    "label",
    "message",
    "msg",
    "text",
    "title",
    "description",
    "desc",
    "help",
    "error",
    "err",
    "pattern",
    "regex",
    "re",
    "validator",
    "validation",
    "input",
    "widget",
    "column",
    "attr",
    "attribute",
    "option",
    "opt",
    "flag",
    "arg",
    "args",
    "class",
    "cls",
    "module",
    "func",
    "fn",
    "handler",
    "callback",
    "factory",
    "manager",
    "mgr",
    "service",
    "policy",
    "template",
    "spec",
    "schema",
    "params",
    "config",
    "settings",
    "option",
    "options",
    "index",
    "idx",
    "func",
    "list",
    "map",
    "dict",
    "set",
    "info",
    "data_type",
    "ref",
    "reference",
    "source",
    "src",
];

/// A part anywhere that makes the whole name non-secret: `PUBLIC_KEY`, `STRIPE_PUBLISHABLE_KEY`,
/// `GPG_KEY` (official images set it to a public fingerprint), `ALLOW_EMPTY_PASSWORD`.
const NON_SECRET_PARTS: &[&str] = &[
    "public",
    "publishable",
    "pub",
    "gpg",
    "pgp",
    "primary",
    "sort",
    "cache",
    "partition",
    "foreign",
    "allow",
    "empty",
    "random",
    "generate",
    "generated",
    "skip",
    "no",
    "disable",
    "keyid",
    "fingerprint",
    "keyserver",
    "keyring",
    "check",
    "checksum",
    "sha256",
    "sha512",
    "md5",
    "reset",
    "forgot",
    "expire",
    "expired",
    "input",
    "output",
    "next",
    "page",
    "paging",
    "pagination",
    "continuation",
    "result",
    "results",
    "dest",
    "destination",
    "limit",
    "marker",
    "csrf",
    "xsrf",
    "lookup",
    "dedupe",
    "idempotency",
    "cursor",
    "tag",
];

/// For names that end in `_KEY` or say `token`/`auth`/`secret` only, content scanning wants
/// one more word that makes it a credential (`API_KEY`, `SIGNING_KEY`), because code is full
/// of `result_key`, `sort_key`, `next_token`.
const CREDENTIAL_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "signing",
    "sign",
    "encryption",
    "encrypt",
    "master",
    "client",
    "app",
    "application",
    "auth",
    "license",
    "account",
    "service",
    "session",
    "shared",
    "hmac",
    "jwt",
    "ssh",
    "aes",
    "crypt",
    "cipher",
    "webhook",
    "bot",
    "bearer",
    "refresh",
    "personal",
    "deploy",
    "registry",
    "npm",
    "pypi",
    "github",
    "gitlab",
    "slack",
    "stripe",
    "aws",
    "gcp",
    "azure",
    "db",
    "database",
    "root",
    "admin",
    "user",
    "oauth",
    "consumer",
    "storage",
    "vault",
    "sentry",
    "twilio",
    "sendgrid",
    "mailgun",
    "openai",
    "docker",
];

pub(crate) fn split_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' || c == ' ' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        // camelCase boundary: `dbPassword` → db, password.
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

/// Does a variable / key / build-arg name look like it holds a secret value?
///
/// `MYSQL_ROOT_PASSWORD`, `NPM_AUTH_TOKEN`, `STRIPE_KEY`, `apiKey`, `RABBITMQ_DEFAULT_PASS`
/// yes; `MYSQL_ROOT_PASSWORD_FILE`, `PUBLIC_KEY`, `TOKEN_URL`, `GPG_KEY`,
/// `MYSQL_ALLOW_EMPTY_PASSWORD`, `KEYBOARD` no.
pub fn is_secret_name(name: &str) -> bool {
    let name = name
        .trim_start_matches('$')
        .trim_matches(|c| c == '{' || c == '}');
    if name.is_empty() || name.len() > 128 {
        return false;
    }
    let parts = split_parts(name);
    let Some(last) = parts.last() else {
        return false;
    };
    if NON_VALUE_SUFFIXES.contains(&last.as_str()) {
        return false;
    }
    if parts.iter().any(|p| NON_SECRET_PARTS.contains(&p.as_str())) {
        return false;
    }
    if parts.iter().any(|p| SECRET_PARTS.contains(&p.as_str())) {
        return true;
    }
    // `*_KEY`, `*_KEYS` only as the last part, with something before it (a bare `KEY` is
    // usually a dictionary key, not a credential).
    if parts.len() >= 2 && (last == "key" || last == "keys") {
        return true;
    }
    // Glued names: `NPMAUTHTOKEN`, `dbpassword`, `x_apikey`.
    let lower = name.to_ascii_lowercase();
    SECRET_SUBSTRINGS.iter().any(|s| lower.contains(s))
}

/// Does a name (in source code or config, not an env var) hold a password? Such names take
/// any literal value.
pub fn is_password_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    is_secret_name(name)
        && (["password", "passwd", "pwd", "passphrase", "pword"]
            .iter()
            .any(|p| lower.contains(p))
            || split_parts(name).iter().any(|p| p == "pass"))
}

/// The stricter name test for content scanning: a password name, or a secret name with a
/// credential qualifier (`API_KEY` yes, `result_key` no, `client_secret` yes).
pub fn is_credential_name(name: &str) -> bool {
    if !is_secret_name(name) {
        return false;
    }
    if is_password_name(name) {
        return true;
    }
    let parts = split_parts(name);
    let glued = name.to_ascii_lowercase().replace(['_', '-', '.'], "");
    if [
        "apikey",
        "secretkey",
        "accesskey",
        "privatekey",
        "authtoken",
        "accesstoken",
        "credential",
    ]
    .iter()
    .any(|g| glued.contains(g))
    {
        return true;
    }
    if (parts.len() >= 2
        && parts
            .iter()
            .any(|p| CREDENTIAL_QUALIFIERS.contains(&p.as_str())))
        || parts
            .iter()
            .any(|p| p == "secret" || p == "secrets" || p == "credentials")
    {
        return true;
    }
    // `token`, `my_token`, `DATADOG_TOKEN`, `adafruit_key`: a name that ends in the
    // credential word holds one, unless the word before it says what kind of lookup key or
    // pagination token it is (`dict_key`, `page_token` are excluded above or here).
    let Some(last) = parts.last() else {
        return false;
    };
    let ends_in_credential = matches!(last.as_str(), "token" | "tokens")
        || (parts.len() >= 2 && matches!(last.as_str(), "key" | "keys"));
    ends_in_credential && !parts.iter().any(|p| LOOKUP_KEY_PARTS.contains(&p.as_str()))
}

/// Words before `_key`/`_token` that name a lookup key, a parser token or a UI key, not a
/// credential (`dict_key`, `env_key`, `hot_key`, `lexer_token`).
const LOOKUP_KEY_PARTS: &[&str] = &[
    "dict",
    "map",
    "hash",
    "row",
    "index",
    "field",
    "column",
    "header",
    "param",
    "env",
    "var",
    "config",
    "setting",
    "settings",
    "translation",
    "i18n",
    "label",
    "message",
    "attr",
    "prop",
    "property",
    "object",
    "item",
    "entry",
    "node",
    "group",
    "hot",
    "short",
    "shortcut",
    "keyboard",
    "lexer",
    "parser",
    "syntax",
    "start",
    "end",
    "eof",
    "bos",
    "eos",
    "pad",
    "unk",
    "mask",
    "sep",
    "cls",
    "special",
    "type",
    "kind",
    "sort",
    "order",
    "group",
    "unique",
    "composite",
    "natural",
    "surrogate",
    "api_key_header",
    "sync",
    "lock",
    "meta",
    "data",
    "state",
    "storage_key",
    "query",
    "search",
    "route",
    "url",
    "menu",
    "dom",
    "react",
];

/// Words that are not real secrets when they are the whole value (documentation,
/// templates, defaults meant to be replaced).
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "changeit",
    "password",
    "passwd",
    "secret",
    "token",
    "example",
    "sample",
    "dummy",
    "placeholder",
    "redacted",
    "removed",
    "hidden",
    "none",
    "null",
    "nil",
    "undefined",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "empty",
    "required",
    "optional",
    "todo",
    "fixme",
    "tbd",
    "xxx",
    "your_password",
    "yourpassword",
    "your_token",
    "your_secret",
    "your_api_key",
    "mypassword",
    "my_password",
    "mysecret",
    "my_secret",
    "secretpassword",
    "notasecret",
    "not_a_secret",
    "insert_here",
    "replace_me",
    "replaceme",
    "fake",
    "test",
    "testing",
    "string",
    "str",
    "value",
];

/// Substrings that mark a value as a placeholder wherever they appear.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "example",
    "changeme",
    "change_me",
    "placeholder",
    "your_",
    "your-",
    "<your",
    "xxxxxx",
    "******",
    "......",
    "redacted",
    "dummy",
    "replace_",
    "insert_",
    "notreal",
    "not_real",
    "fake_",
];

/// Is the value a reference to something else rather than a literal: `${VAR}`, `$VAR`,
/// `$(cmd)`, `{{ template }}`, `%(name)s`, `<angle>`, `@Microsoft.KeyVault(...)`, `env(X)`.
pub fn is_reference(value: &str) -> bool {
    let v = value.trim();
    v.starts_with('$')
        || v.contains("${")
        || v.contains("$(")
        || v.contains("{{")
        || v.contains("%(")
        || v.contains("#{")
        || (v.starts_with('<') && v.ends_with('>'))
        || (v.starts_with('[') && v.ends_with(']'))
        || (v.starts_with('%') && v.ends_with('%'))
        || v.starts_with("/run/secrets/")
        || v.starts_with("@Microsoft.KeyVault")
        || v.starts_with("vault:")
        || v.starts_with("env:")
        || v.starts_with("file:")
        // SOPS and Datadog's secret backend write `ENC[…]` for what they encrypt.
        || v.starts_with("ENC[")
        || is_yaml_tag_reference(v)
        || is_config_reference(v)
}

/// YAML tags that stand for a value held elsewhere: Ansible `!vault`, CloudFormation
/// `!Ref`/`!Sub`/`!GetAtt`/`!ImportValue`, Home Assistant `!secret`, `!ENV`.
fn is_yaml_tag_reference(v: &str) -> bool {
    let tag = v.split_whitespace().next().unwrap_or("");
    [
        "!vault",
        "!Ref",
        "!Sub",
        "!GetAtt",
        "!ImportValue",
        "!FindInMap",
        "!Join",
        "!secret",
        "!ENV",
        "!env",
        "!include",
    ]
    .contains(&tag)
}

/// A dotted path into a configuration language's variables — Terraform `var.db_password`,
/// `local.x`, `data.y.z`, `module.m.out`, GitHub Actions `secrets.TOKEN`, Helm `.Values.x` —
/// names where the value lives, it is not the value.
fn is_config_reference(v: &str) -> bool {
    const ROOTS: &[&str] = &[
        "var.",
        "local.",
        "locals.",
        "data.",
        "module.",
        "each.",
        "self.",
        "env.",
        "secrets.",
        "vars.",
        "inputs.",
        "params.",
        "parameters.",
        ".values.",
        "values.",
        "process.env.",
        "settings.",
        "config.",
        "os.environ",
    ];
    let lower = v.to_ascii_lowercase();
    ROOTS.iter().any(|r| lower.starts_with(r))
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'.' | b'-' | b'[' | b']' | b'"' | b'\'')
        })
}

/// Is the value a placeholder, a reference, a boolean/number switch, or otherwise clearly
/// not a secret?
pub fn is_placeholder(value: &str) -> bool {
    let v = value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '`');
    if v.is_empty() || is_reference(v) {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) {
        return true;
    }
    if PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    // One repeated character (`xxxxxxxx`, `********`, `00000000`).
    let first = v.chars().next().unwrap_or(' ');
    if v.chars().all(|c| c == first) {
        return true;
    }
    // A long run of one character inside (`123456789:AAAAAAAAAAAA…`) is fill, not entropy.
    if v.len() >= 16 && longest_run(v.as_bytes()) * 2 > v.len() {
        return true;
    }
    // Pure small numbers are ports, counts and flags.
    if v.len() <= 5 && v.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    // Sequential runs (`abcdefgh`, `12345678`, `0123456789abcdef`) are demo values.
    if v.len() >= 6 && is_sequential(v.as_bytes()) {
        return true;
    }
    false
}

fn longest_run(b: &[u8]) -> usize {
    let (mut best, mut cur) = (0, 0);
    for (i, &c) in b.iter().enumerate() {
        cur = if i > 0 && b[i - 1] == c { cur + 1 } else { 1 };
        best = best.max(cur);
    }
    best
}

fn is_sequential(b: &[u8]) -> bool {
    b.windows(2)
        .all(|w| w[1] == w[0].wrapping_add(1) || (w[0] == b'9' && (w[1] == b'a' || w[1] == b'A')))
}

/// Paths whose generic (keyword and entropy) findings are noise: lock files and vendored
/// package metadata hold integrity hashes; test fixtures hold fake credentials on purpose.
/// Provider-format rules still run there: a real token in a fixture is still a leak.
pub fn is_generic_allowlisted_path(rel_path: &str) -> bool {
    let lower = rel_path.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    const LOCK_FILES: &[&str] = &[
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "cargo.lock",
        "poetry.lock",
        "pipfile.lock",
        "composer.lock",
        "gemfile.lock",
        "go.sum",
        "uv.lock",
        "pdm.lock",
        "mix.lock",
        "flake.lock",
        "packages.lock.json",
    ];
    if LOCK_FILES.contains(&file) || file.ends_with(".lock") || file.ends_with(".sum") {
        return true;
    }
    if file.ends_with(".min.js") || file.ends_with(".map") || file.ends_with(".svg") {
        return true;
    }
    const TEST_DIRS: &[&str] = &[
        "test",
        "tests",
        "testing",
        "testdata",
        "test_data",
        "fixtures",
        "fixture",
        "__tests__",
        "__fixtures__",
        "spec",
        "mocks",
        "__mocks__",
        "node_modules",
        "vendor",
        "third_party",
    ];
    lower
        .split('/')
        .rev()
        .skip(1)
        .any(|dir| TEST_DIRS.contains(&dir))
        || file.starts_with("test_")
        || file.contains("_test.")
        || file.contains(".test.")
        || file.contains(".spec.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "MYSQL_ROOT_PASSWORD",
            "NPM_AUTH_TOKEN",
            "STRIPE_KEY",
            "apiKey",
            "RABBITMQ_DEFAULT_PASS",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "db_passwd",
            "CLIENT_SECRET",
            "NPMAUTHTOKEN",
            "WORDPRESS_AUTH_SALT",
            "MARIADB_ROOT_PASSWORD_HASH",
        ] {
            assert!(is_secret_name(n), "{n} should look secret");
        }
        for n in [
            "MYSQL_ROOT_PASSWORD_FILE",
            "PUBLIC_KEY",
            "TOKEN_URL",
            "GPG_KEY",
            "MYSQL_ALLOW_EMPTY_PASSWORD",
            "MYSQL_RANDOM_ROOT_PASSWORD",
            "KEYBOARD",
            "KEY",
            "PATH",
            "MYSQL_USER",
            "AWS_ACCESS_KEY_ID",
            "SECRET_NAME",
            "STRIPE_PUBLISHABLE_KEY",
            "PYTHON_VERSION",
        ] {
            assert!(!is_secret_name(n), "{n} should not look secret");
        }
    }

    #[test]
    fn placeholders_and_references() {
        for v in [
            "${DB_PASSWORD}",
            "$TOKEN",
            "changeme",
            "<your-token>",
            "{{ .Values.password }}",
            "********",
            "yes",
            "",
            "/run/secrets/db",
            "12345678",
            "your_api_key_here",
        ] {
            assert!(is_placeholder(v), "{v:?} should be a placeholder");
        }
        for v in ["foobar", "hunter2!", "s3cr3t-Pa55", "cb-SUPERSECRET-456"] {
            assert!(!is_placeholder(v), "{v:?} should be a literal");
        }
    }

    #[test]
    fn allowlisted_paths() {
        assert!(is_generic_allowlisted_path("web/package-lock.json"));
        assert!(is_generic_allowlisted_path("Lib/test/test_ssl.py"));
        assert!(is_generic_allowlisted_path("pkg/config_test.go"));
        assert!(!is_generic_allowlisted_path("app/settings.py"));
        assert!(!is_generic_allowlisted_path("docker-compose.yml"));
    }
}
