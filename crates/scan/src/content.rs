//! The content scanner: one Aho–Corasick keyword pass over the bytes, then, on the lines that
//! hold a keyword, one multi-pattern regex pass (`meta::Regex::new_many`) that says which
//! rules match there, then the capture regex of only those rules. Files are read in chunks,
//! so memory stays bounded whatever the file size.

use std::io::Read;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcMatchKind};
use regex_automata::{Input, MatchKind, PatternSet, meta, util::syntax};

use crate::content_rules::{CONTENT_RULES, ContentRule, HIGH_ENTROPY_ID, Kind};
use crate::finding::{Finding, Redacted, Severity, shannon_entropy};
use crate::names;

/// Chunk size for streaming reads. Large enough that per-chunk overhead vanishes, small
/// enough that many files in flight on every thread stay in the tens of MB.
const CHUNK: usize = 1 << 20;
/// How far past its first line a multi-line (key block) rule may look.
const BLOCK_WINDOW: usize = 8 << 10;
/// Binary detection looks for a NUL byte in this prefix, as git and ripgrep do.
const BINARY_PROBE: usize = 8 << 10;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("building the keyword automaton: {0}")]
    Keywords(#[from] aho_corasick::BuildError),
    #[error("building the rule automaton: {0}")]
    Regex(#[from] Box<regex_automata::meta::BuildError>),
    #[error("compiling rule {id}: {source}")]
    Rule {
        id: &'static str,
        source: regex::Error,
    },
}

/// The compiled rule set. Built once per scan and shared by all threads.
pub struct Engine {
    keywords: AhoCorasick,
    /// keyword index → bitset of rules that keyword enables.
    keyword_rules: Vec<u128>,
    /// keyword index → the exact bytes it must match, for case-sensitive keywords.
    keyword_exact: Vec<Option<Vec<u8>>>,
    /// Rules whose regex runs on its own on a candidate line instead of inside the
    /// combined automaton (see `Engine::new`).
    solo_rules: u128,
    /// All line (non-block) rules as one automaton; pattern id → rule index.
    all: meta::Regex,
    pattern_rule: Vec<usize>,
    /// Per-rule capture regexes, run only on lines where `all` said the rule matches.
    per_rule: Vec<regex::bytes::Regex>,
    block_rules: u128,
    /// Lazy-DFA caches, reused across files: a fresh cache per file would rebuild the
    /// same DFA states for every file (it was 75% of the run time on the CPython tree).
    caches: std::sync::Mutex<Vec<meta::Cache>>,
}

/// What the engine needs to know about the file it scans.
pub struct FileCtx<'a> {
    /// Path shown in findings (relative to the scan root).
    pub display: &'a str,
    /// Whether generic rules are muted here (lock files, fixtures).
    pub generic_allowlisted: bool,
    /// Source code, where an unquoted right-hand side is an expression, not a value.
    pub is_code: bool,
}

impl Engine {
    pub fn new() -> Result<Engine, EngineError> {
        assert!(CONTENT_RULES.len() <= 128, "rule bitsets are u128");
        let mut kw_list: Vec<&str> = Vec::new();
        let mut keyword_rules: Vec<u128> = Vec::new();
        for (i, rule) in CONTENT_RULES.iter().enumerate() {
            for kw in rule.keywords {
                let k = match kw_list.iter().position(|x| x == kw) {
                    Some(k) => k,
                    None => {
                        kw_list.push(kw);
                        keyword_rules.push(0);
                        kw_list.len() - 1
                    }
                };
                keyword_rules[k] |= 1u128 << i;
            }
        }
        // Overlapping search: a leftmost one would let `-pass` hide `password:` and lose the
        // rules only the hidden keyword enables; measured, both cost the same here.
        let keyword_exact = kw_list
            .iter()
            .map(|k| {
                k.bytes()
                    .any(|b| b.is_ascii_uppercase())
                    .then(|| k.as_bytes().to_vec())
            })
            .collect();
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(AcMatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&kw_list)?;
        let mut patterns = Vec::new();
        let mut pattern_rule = Vec::new();
        let mut block_rules = 0u128;
        let mut solo_rules = 0u128;
        let mut per_rule = Vec::new();
        for (i, rule) in CONTENT_RULES.iter().enumerate() {
            // ASCII classes keep the DFA small; secrets are ASCII anyway.
            let re = regex::bytes::RegexBuilder::new(rule.pattern)
                .unicode(false)
                .size_limit(64 << 20)
                .build()
                .map_err(|source| EngineError::Rule {
                    id: rule.id,
                    source,
                })?;
            per_rule.push(re);
            if rule.kind == Kind::Block {
                block_rules |= 1u128 << i;
            } else if rule.kind == Kind::Generic {
                // The keyword/assignment heuristics start with unbounded name patterns that,
                // inside an all-patterns overlapping DFA, multiply its states until the lazy
                // DFA spends its time determinizing (measured: ~45% of the run on the CPython
                // tree). They run alone on their candidate lines; the provider formats, with
                // their distinctive prefixes, share the one automaton.
                solo_rules |= 1u128 << i;
            } else {
                patterns.push(rule.pattern);
                pattern_rule.push(i);
            }
        }
        let all = meta::Regex::builder()
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::All)
                    .nfa_size_limit(Some(256 << 20))
                    .hybrid_cache_capacity(32 << 20),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build_many(&patterns)
            .map_err(Box::new)?;
        Ok(Engine {
            keywords,
            keyword_rules,
            keyword_exact,
            solo_rules,
            all,
            pattern_rule,
            per_rule,
            block_rules,
            caches: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Scans a reader in bounded chunks. Returns `Ok(false)` when the content is binary
    /// (and nothing was scanned).
    pub fn scan_reader<R: Read>(
        &self,
        mut reader: R,
        ctx: &FileCtx<'_>,
        out: &mut Vec<Finding>,
    ) -> std::io::Result<bool> {
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut base_line = 1usize;
        let mut first = true;
        let mut eof = false;
        let mut cache = self.take_cache();
        while !eof {
            // Fill the buffer up to one chunk past what is carried over.
            let target = buf.len() + CHUNK;
            while buf.len() < target {
                let old = buf.len();
                buf.resize(target, 0);
                let n = read_retry(&mut reader, &mut buf[old..])?;
                buf.truncate(old + n);
                if n == 0 {
                    eof = true;
                    break;
                }
            }
            if first {
                first = false;
                let probe = &buf[..buf.len().min(BINARY_PROBE)];
                if memchr::memchr(0, probe).is_some() {
                    return Ok(false);
                }
            }
            // Process whole lines only, keeping the tail (and a block window's worth of
            // look-ahead) for the next round.
            let region_end = if eof {
                buf.len()
            } else {
                let limit = buf.len().saturating_sub(BLOCK_WINDOW);
                match memchr::memrchr(b'\n', &buf[..limit]) {
                    Some(nl) => nl + 1,
                    // One giant line: give up on line integrity rather than on memory.
                    None => limit.max(1),
                }
            };
            self.scan_region(&buf, region_end, base_line, ctx, &mut cache, out);
            base_line += memchr::memchr_iter(b'\n', &buf[..region_end]).count();
            buf.drain(..region_end);
        }
        self.give_cache(cache);
        Ok(true)
    }

    fn take_cache(&self) -> meta::Cache {
        let popped = self.caches.lock().unwrap_or_else(|p| p.into_inner()).pop();
        popped.unwrap_or_else(|| self.all.create_cache())
    }

    fn give_cache(&self, cache: meta::Cache) {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cache);
    }

    /// Scans an in-memory buffer (Compose files, Dockerfiles, image history lines).
    pub fn scan_bytes(&self, data: &[u8], ctx: &FileCtx<'_>, out: &mut Vec<Finding>) {
        let mut cache = self.take_cache();
        self.scan_region(data, data.len(), 1, ctx, &mut cache, out);
        self.give_cache(cache);
    }

    fn scan_region(
        &self,
        buf: &[u8],
        region_end: usize,
        base_line: usize,
        ctx: &FileCtx<'_>,
        cache: &mut meta::Cache,
        out: &mut Vec<Finding>,
    ) {
        let region = &buf[..region_end];
        // (line start, line end, candidate rules)
        let mut lines: Vec<(usize, usize, u128)> = Vec::new();
        for m in self.keywords.find_overlapping_iter(region) {
            let p = m.start();
            let k = m.pattern().as_usize();
            if let Some(exact) = &self.keyword_exact[k]
                && &region[p..m.end()] != exact.as_slice()
            {
                continue;
            }
            let rules = self.keyword_rules[k];
            if let Some(last) = lines.last_mut()
                && p >= last.0
                && p < last.1.max(last.0 + 1)
            {
                last.2 |= rules;
                continue;
            }
            let ls = memchr::memrchr(b'\n', &region[..p]).map_or(0, |i| i + 1);
            let le = memchr::memchr(b'\n', &region[p..]).map_or(region_end, |i| p + i);
            match lines.last_mut() {
                Some(last) if last.0 == ls => last.2 |= rules,
                _ => lines.push((ls, le, rules)),
            }
        }
        let mut cursor = LineCursor {
            buf,
            pos: 0,
            line: base_line,
        };
        let mut set = PatternSet::new(self.all.pattern_len());
        for &(ls, le, mask) in &lines {
            let line_no = cursor.line_at(ls);
            let line = &buf[ls..le];
            for ri in bits(mask & self.solo_rules) {
                self.extract(ri, line, line, line_no, ctx, out);
            }
            let line_rules = mask & !self.block_rules & !self.solo_rules;
            if line_rules != 0 {
                set.clear();
                self.all
                    .which_overlapping_matches_with(cache, &Input::new(line), &mut set);
                for pid in set.iter() {
                    let ri = self.pattern_rule[pid.as_usize()];
                    if line_rules & (1u128 << ri) == 0 {
                        continue;
                    }
                    self.extract(ri, line, line, line_no, ctx, out);
                }
            }
            let block = mask & self.block_rules;
            if block != 0 {
                let end = (ls + BLOCK_WINDOW).min(buf.len());
                let window = &buf[ls..end];
                for ri in bits(block) {
                    self.extract_block(ri, window, line, line_no, ctx, out);
                }
            }
        }
        if !ctx.generic_allowlisted && !is_doc_path(ctx.display) {
            self.entropy_scan(buf, region_end, base_line, ctx, out);
        }
    }

    fn extract(
        &self,
        ri: usize,
        hay: &[u8],
        line: &[u8],
        line_no: usize,
        ctx: &FileCtx<'_>,
        out: &mut Vec<Finding>,
    ) {
        let rule = &CONTENT_RULES[ri];
        if rule.kind == Kind::Generic && ctx.generic_allowlisted {
            return;
        }
        for caps in self.per_rule[ri].captures_iter(hay) {
            let Some(secret) = secret_group(rule, &caps) else {
                continue;
            };
            let s = secret.as_bytes();
            if rule.id == "content.secret-assignment" {
                let name = caps.get(1).map_or(&b""[..], |m| m.as_bytes());
                if !assignment_is_secret(name, &caps, hay, ctx) {
                    continue;
                }
            } else if rule.kind == Kind::Generic {
                let text = String::from_utf8_lossy(s);
                if names::is_placeholder(&text) {
                    continue;
                }
            } else if is_example_value(s) {
                continue;
            }
            if rule.min_entropy > 0.0 && shannon_entropy(s) < rule.min_entropy {
                continue;
            }
            if inline_ignored(line, rule.id) {
                continue;
            }
            out.push(make_finding(
                rule.id,
                rule.severity,
                rule.title,
                ctx.display,
                line_no,
                line,
                secret.start(),
                secret.end(),
                s,
            ));
        }
    }

    fn extract_block(
        &self,
        ri: usize,
        window: &[u8],
        line: &[u8],
        line_no: usize,
        ctx: &FileCtx<'_>,
        out: &mut Vec<Finding>,
    ) {
        let rule = &CONTENT_RULES[ri];
        let Some(caps) = self.per_rule[ri].captures(window) else {
            return;
        };
        let Some(m) = secret_group(rule, &caps) else {
            return;
        };
        // Only report a block that begins on this line; later lines of the same block are
        // reached from their own keyword hits only if they start a new block.
        if m.start() >= line.len() || inline_ignored(line, rule.id) {
            return;
        }
        let s = m.as_bytes();
        if is_example_value(s) {
            return;
        }
        let end = m.end().min(line.len());
        out.push(make_finding(
            rule.id,
            rule.severity,
            rule.title,
            ctx.display,
            line_no,
            line,
            m.start(),
            end,
            s,
        ));
    }

    /// detect-secrets-style high-entropy check on quoted strings, done as a byte scan so it
    /// costs one memchr pass instead of a regex over every line.
    fn entropy_scan(
        &self,
        buf: &[u8],
        region_end: usize,
        base_line: usize,
        ctx: &FileCtx<'_>,
        out: &mut Vec<Finding>,
    ) {
        let mut cursor = LineCursor {
            buf,
            pos: 0,
            line: base_line,
        };
        let mut i = 0;
        while let Some(q) = memchr::memchr2(b'"', b'\'', &buf[i..region_end]) {
            let qpos = i + q;
            let quote = buf[qpos];
            let start = qpos + 1;
            let mut j = start;
            while j < region_end && is_b64_byte(buf[j]) {
                j += 1;
            }
            let closed = j < region_end && buf[j] == quote;
            if closed && (24..=200).contains(&(j - start)) {
                let s = &buf[start..j];
                if looks_random(s) && assignment_before(buf, qpos) && !names_a_non_secret(buf, qpos)
                {
                    let ls = memchr::memrchr(b'\n', &buf[..qpos]).map_or(0, |x| x + 1);
                    let le =
                        memchr::memchr(b'\n', &buf[j..region_end]).map_or(region_end, |x| j + x);
                    let line = &buf[ls..le];
                    if !inline_ignored(line, HIGH_ENTROPY_ID) {
                        let line_no = cursor.line_at(ls);
                        out.push(make_finding(
                            HIGH_ENTROPY_ID,
                            Severity::Low,
                            "High-entropy string assigned in source",
                            ctx.display,
                            line_no,
                            line,
                            start - ls,
                            j - ls,
                            s,
                        ));
                    }
                }
            }
            i = if closed { j + 1 } else { j.max(start) };
            if i >= region_end {
                break;
            }
        }
    }
}

fn read_retry<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn bits(mut x: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if x == 0 {
            None
        } else {
            let i = x.trailing_zeros() as usize;
            x &= x - 1;
            Some(i)
        }
    })
}

/// Moves forward through a buffer counting newlines, so line numbers cost one pass total.
struct LineCursor<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
}

impl LineCursor<'_> {
    fn line_at(&mut self, off: usize) -> usize {
        if off > self.pos {
            self.line += memchr::memchr_iter(b'\n', &self.buf[self.pos..off]).count();
            self.pos = off;
        }
        self.line
    }
}

fn secret_group<'h>(
    rule: &ContentRule,
    caps: &regex::bytes::Captures<'h>,
) -> Option<regex::bytes::Match<'h>> {
    let skip = usize::from(rule.id == "content.secret-assignment");
    if caps.len() == 1 {
        return caps.get(0);
    }
    (1 + skip..caps.len()).find_map(|i| caps.get(i))
}

/// Vendor documentation values (`AKIAIOSFODNN7EXAMPLE`) and obviously fake fill.
fn is_example_value(s: &[u8]) -> bool {
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
fn is_doc_path(path: &str) -> bool {
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
fn assignment_is_secret(
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
    if !quoted
        && matches!(
            caps.get(0).and_then(|w| hay.get(w.end())),
            Some(b'"' | b'\'')
        )
    {
        // `"secretsmanager:resource/Type"`: the "assignment" is inside a string.
        return false;
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

fn is_b64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

fn looks_random(s: &[u8]) -> bool {
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
fn names_a_non_secret(buf: &[u8], q: usize) -> bool {
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
fn assignment_before(buf: &[u8], q: usize) -> bool {
    let mut k = q;
    while k > 0 && (buf[k - 1] == b' ' || buf[k - 1] == b'\t') {
        k -= 1;
    }
    k > 0 && matches!(buf[k - 1], b'=' | b':' | b'>')
}

/// `lockbox:ignore` alone silences every rule on the line; `lockbox:ignore a,b` only the
/// listed rules (a rule id or a family prefix such as `content`).
pub fn inline_ignored(line: &[u8], rule_id: &str) -> bool {
    let Some(at) = memchr::memmem::find(line, b"lockbox:ignore") else {
        return false;
    };
    let rest = &line[at + "lockbox:ignore".len()..];
    let rest = String::from_utf8_lossy(rest);
    let list = rest.trim_start();
    if rest.len() == list.len() && !rest.is_empty() {
        // `lockbox:ignored-something`: not our marker.
        return false;
    }
    let list: Vec<&str> = list
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        // A reason may follow the list (`lockbox:ignore content.jwt test token`): the list
        // ends at the first word that is not a rule id or family.
        .take_while(|t| {
            let id_chars = t
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
            let family = crate::rules::Family::ALL.iter().any(|f| f.as_str() == *t);
            id_chars && !t.starts_with('-') && (family || t.contains('.'))
        })
        .collect();
    if list.is_empty() {
        return true;
    }
    list.iter().any(|t| {
        *t == rule_id || (rule_id.starts_with(t) && rule_id.as_bytes().get(t.len()) == Some(&b'.'))
    })
}

fn char_col(line: &[u8], byte_off: usize) -> usize {
    let off = byte_off.min(line.len());
    1 + line[..off].iter().filter(|&&b| (b & 0xC0) != 0x80).count()
}

#[allow(clippy::too_many_arguments)]
fn make_finding(
    rule_id: &str,
    severity: Severity,
    title: &str,
    path: &str,
    line_no: usize,
    line: &[u8],
    start: usize,
    end: usize,
    secret: &[u8],
) -> Finding {
    let secret_text = String::from_utf8_lossy(secret);
    let redacted = Redacted::of(&secret_text);
    Finding {
        rule: rule_id.to_string(),
        severity,
        path: path.to_string(),
        line: line_no,
        column: char_col(line, start),
        end_column: char_col(line, end),
        message: format!("{title}: {redacted}"),
        fix: crate::rules::fix_for(rule_id).to_string(),
        fingerprint: Finding::fingerprint_of(rule_id, path, &secret_text),
        secret: Some(redacted),
    }
}

#[cfg(test)]
mod tests {
    use super::inline_ignored;

    #[test]
    fn inline_ignore_lists() {
        assert!(inline_ignored(b"x = 1 # lockbox:ignore", "content.jwt"));
        assert!(inline_ignored(
            b"x # lockbox:ignore content.jwt, compose",
            "compose.env-literal-secret"
        ));
        assert!(inline_ignored(
            b"x # lockbox:ignore content.jwt test token only",
            "content.jwt"
        ));
        assert!(!inline_ignored(
            b"x # lockbox:ignore content.jwt test token",
            "content.github-pat"
        ));
        assert!(inline_ignored(
            b"x # lockbox:ignore -- fixture",
            "content.github-pat"
        ));
        assert!(!inline_ignored(b"x # lockbox:ignored", "content.jwt"));
        assert!(!inline_ignored(b"x = 1", "content.jwt"));
    }
}
