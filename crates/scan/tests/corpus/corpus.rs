//! Expands `samples.txt` (see README.md beside it) into a directory tree: one directory per
//! sample, `<provider-slug>/<n>/<path>`. Shared by the corpus test and the `scan-corpus`
//! example that `bench/scan/run` calls, so lockbox and its peers see the same files.

// The example uses the writer only; the test uses the scorer too.
#![allow(dead_code)]

use std::path::Path;

pub(crate) const SAMPLES: &str = include_str!("samples.txt");

#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) provider: String,
    /// Whether the sample holds a secret (`@@ +`) or is a clean look-alike (`@@ -`).
    pub(crate) secret: bool,
    /// `<slug>/<n>`: the directory the sample is written to, relative to the corpus root.
    pub(crate) dir: String,
    /// The file inside `dir`.
    pub(crate) path: String,
    pub(crate) content: Vec<u8>,
}

/// Deterministic pseudo-random generator (xorshift), so runs and snapshots are stable
/// while the values still look random to entropy checks.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, set: &[u8]) -> char {
        set[(self.next() % set.len() as u64) as usize] as char
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn class_set(class: &str) -> Option<&'static [u8]> {
    Some(match class {
        "a" => ALNUM,
        "h" => HEX,
        "H" => b"0123456789ABCDEF",
        "u" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "l" => b"abcdefghijklmnopqrstuvwxyz0123456789",
        "d" => b"0123456789",
        "b" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        "w" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
        "c" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        "U" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "L" => b"abcdefghijklmnopqrstuvwxyz",
        "B" => b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
        _ => return None,
    })
}

fn uuid(rng: &mut Rng, fill: bool) -> String {
    let mut s = String::new();
    for (i, n) in [8, 4, 4, 4, 12].iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        for _ in 0..*n {
            s.push(if fill { 'x' } else { rng.pick(HEX) });
        }
    }
    s
}

/// Expands one template. Any brace that is not a known placeholder is literal text (JSON,
/// Go, `{SumoAccessKey}`-style placeholders in the clean samples). With `fill`, every
/// generated run is a repeated placeholder character instead (a rule's negative case).
pub(crate) fn expand(template: &str, rng: &mut Rng, fill: bool) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let close = tail.find('}');
        let inner = close.map(|j| &tail[1..j]).unwrap_or("");
        let expanded = match inner {
            "uuid" => Some(uuid(rng, fill)),
            "UUID" => Some(uuid(rng, fill).to_ascii_uppercase()),
            _ => inner.split_once(':').and_then(|(class, n)| {
                let n: usize = n.parse().ok()?;
                if fill {
                    class_set(class).or((class == "G").then_some(ALNUM))?;
                    return Some((if class == "d" { "0" } else { "x" }).repeat(n));
                }
                if class == "G" {
                    let body: String = (0..30).map(|_| rng.pick(ALNUM)).collect();
                    let sum = lockbox_scan::checksum::crc32(body.as_bytes());
                    return Some(body + &lockbox_scan::checksum::base62(sum, n - 30));
                }
                let set = class_set(class)?;
                Some((0..n).map(|_| rng.pick(set)).collect())
            }),
        };
        match (expanded, close) {
            (Some(s), Some(j)) => {
                out.push_str(&s);
                rest = &tail[j + 1..];
            }
            _ => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn slug(provider: &str) -> String {
    provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// PKCS#12 files are binary: their sample content is hex, padded with random bytes the way
/// a DER body would be.
fn binary_content(hex: &str, rng: &mut Rng) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    let mut out: Vec<u8> = digits
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect();
    out.push(0);
    while out.len() < 512 {
        out.push((rng.next() & 0xff) as u8);
    }
    out
}

/// The assignment syntaxes a `@@ matrix` line expands into: (file name, template), `{i}`
/// the identifier, `{I}` it upper-cased, `{s}` the secret. Written for lockbox from each
/// language's own syntax (the idea of testing every provider rule in every syntax comes
/// from gitleaks' rule tests).
const SYNTAXES: &[(&str, &str)] = &[
    ("settings.ini", "{i}Token=\"{s}\""),
    ("settings2.ini", "{i}Token = \"{s}\""),
    ("plain.ini", "{i}Token={s}"),
    ("plain2.ini", "{i}Token = {s}"),
    ("config.json", "{\n  \"{i}_token\": \"{s}\"\n}"),
    (
        "bundle.json",
        "{\"app.env\": \"{I}_TOKEN={s}\\nDEBUG=false\"}",
    ),
    ("element.xml", "<{i}Token>{s}</{i}Token>"),
    ("element-multiline.xml", "<{i}Token>\n    {s}\n</{i}Token>"),
    ("plain.yaml", "{i}_token: {s}"),
    ("single.yaml", "{i}_token: '{s}'"),
    ("double.yaml", "{i}_token: \"{s}\""),
    ("Program.cs", "string {i}Token = \"{s}\";"),
    ("typed.go", "var {i}Token string = \"{s}\""),
    ("short.go", "{i}Token := \"{s}\""),
    ("raw.go", "{i}Token := `{s}`"),
    ("Main.java", "String {i}Token = \"{s}\";"),
    ("Main.kt", "var {i}Token = \"{s}\""),
    ("concat.php", "${i}Token .= \"{s}\";"),
    ("single.py", "{i}Token = '{s}'"),
    ("double.py", "{i}Token = \"{s}\""),
    ("Props.java", "System.setProperty(\"{I}_TOKEN\", \"{s}\");"),
    ("pipeline.conf", "  \"{i}Token\" => \"{s}\""),
    ("recursive.mk", "{i}_TOKEN = \"{s}\""),
    ("simple.mk", "{i}_TOKEN := \"{s}\""),
    ("shell.mk", "{i}_TOKEN ::= \"{s}\""),
    ("evaluated.mk", "{i}_TOKEN :::= \"{s}\""),
    ("conditional.mk", "{i}_TOKEN ?= \"{s}\""),
    ("export.sh", "export {I}_TOKEN={s}"),
    ("app.env", "{I}_TOKEN={s}"),
    ("config.toml", "{i}_token = '{s}'"),
];

/// Numbers the samples of each provider, so every sample gets its own directory.
#[derive(Default)]
struct Collector {
    out: Vec<Sample>,
    counter: std::collections::HashMap<String, usize>,
}

impl Collector {
    fn push(&mut self, provider: &str, secret: bool, path: String, content: Vec<u8>) {
        let n = self.counter.entry(provider.to_string()).or_insert(0);
        *n += 1;
        self.out.push(Sample {
            provider: provider.to_string(),
            secret,
            dir: format!("{}/{}", slug(provider), n),
            path,
            content,
        });
    }

    fn push_template(&mut self, provider: &str, cur: (bool, String, Vec<&str>), rng: &mut Rng) {
        let (secret, path, lines) = cur;
        let text = lines.join("\n") + "\n";
        let lower = path.to_ascii_lowercase();
        let content = if lower.ends_with(".p12") || lower.ends_with(".pfx") {
            binary_content(&text, rng)
        } else {
            expand(&text, rng, false).into_bytes()
        };
        self.push(provider, secret, path, content);
    }

    /// `@@ matrix IDENT VALUE`: one secret sample per syntax.
    fn push_matrix(&mut self, provider: &str, spec: &str, rng: &mut Rng) {
        let (ident, value) = spec.trim().split_once(' ').unwrap_or((spec.trim(), ""));
        for (file, form) in SYNTAXES {
            let secret = expand(value, rng, false);
            let text = form
                .replace("{i}", ident)
                .replace("{I}", &ident.to_ascii_uppercase())
                .replace("{s}", &secret);
            self.push(
                provider,
                true,
                (*file).to_string(),
                (text + "\n").into_bytes(),
            );
        }
    }
}

pub(crate) fn samples() -> Vec<Sample> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut c = Collector::default();
    let mut provider = String::new();
    let mut current: Option<(bool, String, Vec<&str>)> = None;
    for line in SAMPLES.lines() {
        if let Some(rest) = line.strip_prefix("@@ ") {
            if let Some(cur) = current.take() {
                c.push_template(&provider, cur, &mut rng);
            }
            if let Some(p) = rest.strip_prefix("provider ") {
                provider = p.trim().to_string();
            } else if let Some(m) = rest.strip_prefix("matrix ") {
                c.push_matrix(&provider, m, &mut rng);
            } else if let Some(p) = rest.strip_prefix("+ ") {
                current = Some((true, p.trim().to_string(), Vec::new()));
            } else if let Some(p) = rest.strip_prefix("- ") {
                current = Some((false, p.trim().to_string(), Vec::new()));
            } else {
                panic!("samples.txt: unknown header {line:?}");
            }
        } else if let Some((_, _, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some(cur) = current.take() {
        c.push_template(&provider, cur, &mut rng);
    }
    c.out
}

/// Writes every sample under `root` (created) and returns them.
pub(crate) fn write_corpus(root: &Path) -> std::io::Result<Vec<Sample>> {
    let all = samples();
    for s in &all {
        let p = root.join(&s.dir).join(&s.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &s.content)?;
    }
    Ok(all)
}

/// Per-provider score: (provider, secrets found, secrets, clean samples flagged, clean).
pub(crate) type ProviderScore = (String, usize, usize, usize, usize);

/// Scores a scanner from the sample directories it reported anything in.
pub(crate) fn score(
    all: &[Sample],
    flagged_dirs: &std::collections::BTreeSet<String>,
) -> Vec<ProviderScore> {
    let mut rows: Vec<ProviderScore> = Vec::new();
    for s in all {
        let i = match rows.iter().position(|r| r.0 == s.provider) {
            Some(i) => i,
            None => {
                rows.push((s.provider.clone(), 0, 0, 0, 0));
                rows.len() - 1
            }
        };
        let hit = flagged_dirs.contains(&s.dir);
        if s.secret {
            rows[i].2 += 1;
            rows[i].1 += usize::from(hit);
        } else {
            rows[i].4 += 1;
            rows[i].3 += usize::from(hit);
        }
    }
    rows
}

/// The sample directory (`<slug>/<n>`) a reported path belongs to.
pub(crate) fn sample_dir(path: &str) -> Option<String> {
    let p = path.trim_start_matches("./");
    let mut parts = p.splitn(3, '/');
    let a = parts.next()?;
    let b = parts.next()?;
    Some(format!("{a}/{b}"))
}
