//! The content scanner: one Aho–Corasick keyword pass over the bytes, then, on the lines that
//! hold a keyword, the capture regex of only the rules those keywords enable. Files are read
//! in chunks, so memory stays bounded whatever the file size.
//!
//! An earlier version asked one all-patterns automaton (`meta::Regex::build_many`) which rules
//! match a candidate line before running their capture regexes. A line's keywords enable
//! one to three rules as a rule, and on the CPython tree running those small regexes
//! directly cost 10% less CPU than the shared automaton, whose lazy DFA kept determinizing
//! new states for every new line, and it no longer has to be built at start.

use std::io::Read;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcMatchKind};

pub use crate::content_filters::is_code_path;
use crate::content_filters::{
    assignment_before, assignment_is_secret, checked_severity, is_b64_byte, is_doc_path,
    is_example_value, is_named_rule, is_url_credential_rule, literal_is_secret, looks_random,
    names_a_non_secret, url_password_is_user,
};
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
    #[error("compiling rule {id}: {source}")]
    Rule {
        id: &'static str,
        source: regex::Error,
    },
}

/// A set of rule indexes: the rule table outgrew one machine word.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; 4]);

const MAX_RULES: usize = 256;

impl Bits {
    fn one(i: usize) -> Bits {
        let mut b = Bits::default();
        b.0[i / 64] |= 1u64 << (i % 64);
        b
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn iter(self) -> impl Iterator<Item = usize> {
        self.0
            .into_iter()
            .enumerate()
            .flat_map(|(w, word)| bits(word).map(move |b| w * 64 + b))
    }
}

impl std::ops::BitOr for Bits {
    type Output = Bits;
    fn bitor(mut self, o: Bits) -> Bits {
        self |= o;
        self
    }
}

impl std::ops::BitOrAssign for Bits {
    fn bitor_assign(&mut self, o: Bits) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }
}

impl std::ops::BitAnd for Bits {
    type Output = Bits;
    fn bitand(mut self, o: Bits) -> Bits {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a &= b;
        }
        self
    }
}

impl std::ops::Not for Bits {
    type Output = Bits;
    fn not(mut self) -> Bits {
        for a in self.0.iter_mut() {
            *a = !*a;
        }
        self
    }
}

/// The compiled rule set. Built once per scan and shared by all threads.
pub struct Engine {
    keywords: AhoCorasick,
    /// keyword index → bitset of rules that keyword enables.
    keyword_rules: Vec<Bits>,
    /// keyword index → the exact bytes it must match, for case-sensitive keywords.
    keyword_exact: Vec<Option<Vec<u8>>>,
    /// Per-rule capture regexes, run only on lines where one of the rule's keywords hit.
    /// Compiled on first use: most rules never meet a candidate line, and compiling 200
    /// regexes up front was a third of a small scan's run time.
    per_rule: Vec<std::sync::OnceLock<Option<regex::bytes::Regex>>>,
    block_rules: Bits,
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
        assert!(
            CONTENT_RULES.len() <= MAX_RULES,
            "rule bitsets hold {MAX_RULES}"
        );
        let mut kw_list: Vec<&str> = Vec::new();
        let mut keyword_rules: Vec<Bits> = Vec::new();
        for (i, rule) in CONTENT_RULES.iter().enumerate() {
            for kw in rule.keywords {
                let k = match kw_list.iter().position(|x| x == kw) {
                    Some(k) => k,
                    None => {
                        kw_list.push(kw);
                        keyword_rules.push(Bits::default());
                        kw_list.len() - 1
                    }
                };
                keyword_rules[k] |= Bits::one(i);
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
        let mut block_rules = Bits::default();
        let mut per_rule = Vec::new();
        for (i, rule) in CONTENT_RULES.iter().enumerate() {
            per_rule.push(std::sync::OnceLock::new());
            if rule.kind == Kind::Block {
                block_rules |= Bits::one(i);
            }
        }
        Ok(Engine {
            keywords,
            keyword_rules,
            keyword_exact,
            per_rule,
            block_rules,
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
            self.scan_region(&buf, region_end, base_line, ctx, out);
            base_line += memchr::memchr_iter(b'\n', &buf[..region_end]).count();
            buf.drain(..region_end);
        }
        Ok(true)
    }

    /// The capture regex of rule `ri`. The patterns are static and every one is compiled by
    /// the test suite; one that failed would only find nothing.
    fn rule_regex(&self, ri: usize) -> Option<&regex::bytes::Regex> {
        self.per_rule[ri]
            .get_or_init(|| compile_rule(CONTENT_RULES[ri]).ok())
            .as_ref()
    }

    /// Scans an in-memory buffer (Compose files, Dockerfiles, image history lines).
    pub fn scan_bytes(&self, data: &[u8], ctx: &FileCtx<'_>, out: &mut Vec<Finding>) {
        self.scan_region(data, data.len(), 1, ctx, out);
    }

    fn scan_region(
        &self,
        buf: &[u8],
        region_end: usize,
        base_line: usize,
        ctx: &FileCtx<'_>,
        out: &mut Vec<Finding>,
    ) {
        let region = &buf[..region_end];
        // (line start, line end, candidate rules). A plain leftmost search finds the next
        // line with any keyword; only that line gets the overlapping search that collects
        // every rule its keywords enable (a `-pass` hit must not hide `password:`). Keyword
        // lines are rare, and the overlapping walk costs more per byte than the plain one
        // (measured on the CPython tree: the keyword pass was half the run time).
        let mut lines: Vec<(usize, usize, Bits)> = Vec::new();
        let mut at = 0;
        while at < region_end {
            let input = aho_corasick::Input::new(region).span(at..region_end);
            let Some(m) = self.keywords.find(input) else {
                break;
            };
            let p = m.start();
            let ls = memchr::memrchr(b'\n', &region[..p]).map_or(0, |i| i + 1);
            let le = memchr::memchr(b'\n', &region[p..]).map_or(region_end, |i| p + i);
            let line = &region[ls..le];
            let mut rules = Bits::default();
            for m in self.keywords.find_overlapping_iter(line) {
                let k = m.pattern().as_usize();
                if let Some(exact) = &self.keyword_exact[k]
                    && &line[m.start()..m.end()] != exact.as_slice()
                {
                    continue;
                }
                rules |= self.keyword_rules[k];
            }
            if !rules.is_empty() {
                lines.push((ls, le, rules));
            }
            at = le + 1;
        }
        let mut cursor = LineCursor {
            buf,
            pos: 0,
            line: base_line,
        };
        for &(ls, le, mask) in &lines {
            let line_no = cursor.line_at(ls);
            let line = &buf[ls..le];
            for ri in (mask & !self.block_rules).iter() {
                self.extract(ri, line, line, line_no, ctx, out);
            }
            let block = mask & self.block_rules;
            if !block.is_empty() {
                let end = (ls + BLOCK_WINDOW).min(buf.len());
                let window = &buf[ls..end];
                for ri in block.iter() {
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
        let rule = CONTENT_RULES[ri];
        if rule.kind == Kind::Generic && ctx.generic_allowlisted {
            return;
        }
        let Some(re) = self.rule_regex(ri) else {
            return;
        };
        for caps in re.captures_iter(hay) {
            let Some(secret) = secret_group(rule, &caps) else {
                continue;
            };
            let s = secret.as_bytes();
            if rule.id == "content.secret-assignment" {
                let name = caps.get(1).map_or(&b""[..], |m| m.as_bytes());
                if !assignment_is_secret(name, &caps, hay, ctx) {
                    continue;
                }
            } else if is_named_rule(rule.id) {
                let name = caps.get(1).map_or(&b""[..], |m| m.as_bytes());
                if !literal_is_secret(name, s) {
                    continue;
                }
            } else if matches!(rule.kind, Kind::Generic | Kind::Context) {
                let text = String::from_utf8_lossy(s);
                if names::is_placeholder(&text) || is_example_value(s) {
                    continue;
                }
                if is_url_credential_rule(rule.id) && url_password_is_user(hay, secret.start(), s) {
                    continue;
                }
            } else if is_example_value(s) {
                continue;
            }
            if rule.min_entropy > 0.0 && shannon_entropy(s) < rule.min_entropy {
                continue;
            }
            let Some(severity) = checked_severity(rule, s) else {
                continue;
            };
            if inline_ignored(line, rule.id) {
                continue;
            }
            out.push(make_finding(
                rule.id,
                severity,
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
        let rule = CONTENT_RULES[ri];
        let Some(caps) = self.rule_regex(ri).and_then(|re| re.captures(window)) else {
            return;
        };
        let Some(m) = secret_group(rule, &caps) else {
            return;
        };
        // Only report a block that begins on this line; later lines of the same block are
        // reached from their own keyword hits only if they start a new block.
        let begins = caps.get(0).map_or(m.start(), |w| w.start());
        if begins >= line.len() || inline_ignored(line, rule.id) {
            return;
        }
        let s = m.as_bytes();
        if is_example_value(s) {
            return;
        }
        if is_named_rule(rule.id) {
            let name = caps.get(1).map_or(&b""[..], |n| n.as_bytes());
            if ctx.generic_allowlisted || !literal_is_secret(name, s) {
                return;
            }
        }
        // A value on a later line of the block (XML elements) is shown at the block's start.
        let (start, end) = if m.start() < line.len() {
            (m.start(), m.end().min(line.len()))
        } else {
            (begins, line.len())
        };
        out.push(make_finding(
            rule.id,
            rule.severity,
            rule.title,
            ctx.display,
            line_no,
            line,
            start,
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

/// ASCII classes keep the DFA small; secrets are ASCII anyway.
pub fn compile_rule(rule: &ContentRule) -> Result<regex::bytes::Regex, EngineError> {
    regex::bytes::RegexBuilder::new(rule.pattern)
        .unicode(false)
        .size_limit(64 << 20)
        .build()
        .map_err(|source| EngineError::Rule {
            id: rule.id,
            source,
        })
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

fn bits(mut x: u64) -> impl Iterator<Item = usize> {
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
    let skip = usize::from(is_named_rule(rule.id));
    if caps.len() == 1 {
        return caps.get(0);
    }
    (1 + skip..caps.len()).find_map(|i| caps.get(i))
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
pub(crate) fn make_finding(
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
