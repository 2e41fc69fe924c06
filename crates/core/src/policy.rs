//! Grants: which non-administrators may have which secrets and configs delivered to their
//! workloads (`lockbox policy grant --uid N|--gid G --use PATTERN`).
//!
//! The model is the smallest that keeps a socket-group member from being root-equivalent:
//! a grant names a subject the kernel vouches for (a uid, or a gid the caller holds as its
//! primary or supplementary group, resolved by the daemon, never taken from a request) and
//! a name pattern. A covered name may be delivered to a workload the caller starts, as files
//! owned by the caller; it is never listed, shown, changed or removed through a grant. There
//! are no tokens: nothing a caller holds can be copied to another caller.
//!
//! Grants are replicated like every other object (proposed through the raft log, so every
//! manager decides alike) and each change is audited with the granting caller.
use lockbox_audit::Event;
use lockbox_store::{Command, GrantRecord, GrantSubject, validate};

use crate::ApiError;
use crate::daemon::{Caller, Daemon, now_ns};

/// The longest pattern accepted (a name is at most 64 characters; a few `*` more).
const MAX_PATTERN: usize = 128;

/// Checks a grant's pattern: name characters (`[a-zA-Z0-9_.-]`) and `*`, nothing else, so
/// no pattern can reach outside the names the store accepts. `*` alone covers every name.
pub fn validate_pattern(pattern: &str) -> Result<(), ApiError> {
    if pattern.is_empty() {
        return Err(ApiError::bad_request("a grant needs a pattern (--use)"));
    }
    if pattern.len() > MAX_PATTERN {
        return Err(ApiError::bad_request(format!(
            "pattern {pattern:?} is longer than {MAX_PATTERN} characters"
        )));
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*')))
    {
        return Err(ApiError::bad_request(format!(
            "pattern {pattern:?} holds {c:?}: use name characters [a-zA-Z0-9_.-] and * (any run of them)"
        )));
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` matches any run (also empty) of characters and
/// everything else matches itself, case-sensitively. `name` must be a valid secret or config
/// name; anything else (such as a name holding `*`) matches nothing.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if validate::name(name).is_err() {
        return false;
    }
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether `grant` covers `name` for the caller with user `uid` and groups `gids`.
pub fn covers(grant: &GrantRecord, uid: u32, gids: &[u32], name: &str) -> bool {
    let subject = match grant.subject {
        GrantSubject::Uid(u) => u == uid,
        GrantSubject::Gid(g) => gids.contains(&g),
        GrantSubject::Volumes => false,
    };
    subject && pattern_matches(&grant.pattern, name)
}

/// `uid:N` or `gid:N`, as listings and audit records show a subject.
pub fn subject_text(s: GrantSubject) -> String {
    match s {
        GrantSubject::Uid(u) => format!("uid:{u}"),
        GrantSubject::Gid(g) => format!("gid:{g}"),
        GrantSubject::Volumes => "volumes".to_owned(),
    }
}

/// The grants as one read found them; `None` when the store could not be read (a worker,
/// an error), and then every check fails closed.
pub struct GrantView(Option<Vec<GrantRecord>>);

impl GrantView {
    /// May the caller with user `uid` and groups `gids` have `name` delivered?
    pub fn allows(&self, uid: u32, gids: &[u32], name: &str) -> bool {
        self.0.iter().flatten().any(|g| covers(g, uid, gids, name))
    }

    /// Whether any grant names the caller at all.
    pub fn has_grant(&self, uid: u32, gids: &[u32]) -> bool {
        self.0.iter().flatten().any(|g| match g.subject {
            GrantSubject::Uid(u) => u == uid,
            GrantSubject::Gid(x) => gids.contains(&x),
            GrantSubject::Volumes => false,
        })
    }

    /// May a volume name the secret or config `name`? Until an administrator grants
    /// volumes anything (`lockbox policy grant --volumes`), any: their one caller is
    /// dockerd, root, which may read every secret anyway. Once a grant names volumes, only
    /// what such grants cover. An unreadable store allows nothing.
    pub fn volume_allows(&self, name: &str) -> bool {
        let Some(all) = &self.0 else { return false };
        let mut volume_grants = all
            .iter()
            .filter(|g| g.subject == GrantSubject::Volumes)
            .peekable();
        volume_grants.peek().is_none() || volume_grants.any(|g| pattern_matches(&g.pattern, name))
    }
}

impl Daemon {
    /// Every grant in the store.
    pub fn grants(&self) -> Result<Vec<GrantRecord>, ApiError> {
        Ok(self.reader()?.grants()?)
    }

    /// The grants as of one read of the store, for checks over many names (a list, a
    /// workload's set) without a table read per name.
    pub fn grant_view(&self) -> GrantView {
        GrantView(self.grants().ok())
    }

    /// The check other features call: may the caller with user `uid` and groups `gids`
    /// (primary and supplementary, as the daemon resolved them from the kernel's peer
    /// credentials) have the secret or config `name` delivered? See [`GrantView::allows`].
    pub fn allows(&self, uid: u32, gids: &[u32], name: &str) -> bool {
        self.grant_view().allows(uid, gids, name)
    }

    /// Whether any grant names the caller at all (the gate's first question for a member).
    pub fn has_grant(&self, uid: u32, gids: &[u32]) -> bool {
        self.grant_view().has_grant(uid, gids)
    }

    /// `lockbox policy grant`: adds a grant (the same one again changes nothing but its
    /// time), proposed through the log and audited (`policy-grant`).
    pub async fn grant(
        &self,
        subject: GrantSubject,
        pattern: &str,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        validate_pattern(pattern)?;
        let grant = GrantRecord {
            subject,
            pattern: pattern.to_owned(),
            created_ns: now_ns(),
            created_by: caller.actor.clone(),
            index: 0,
        };
        let event = Event::new("policy-grant", &caller.actor)
            .detail("subject", &subject_text(subject))
            .detail("pattern", pattern);
        self.propose_audited(Command::PutGrant { grant }, event)
            .await?;
        Ok(())
    }

    /// `lockbox policy revoke`: removes a grant (404 if there is none), audited
    /// (`policy-revoke`). Workloads already running keep the files they were given.
    pub async fn revoke(
        &self,
        subject: GrantSubject,
        pattern: &str,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        let exists = self
            .fresh_reader()
            .await?
            .grants()?
            .iter()
            .any(|g| g.subject == subject && g.pattern == pattern);
        if !exists {
            return Err(ApiError::new(
                404,
                format!(
                    "no grant of {pattern:?} to {} (lockbox policy ls lists them)",
                    subject_text(subject)
                ),
            ));
        }
        let event = Event::new("policy-revoke", &caller.actor)
            .detail("subject", &subject_text(subject))
            .detail("pattern", pattern);
        self.propose_audited(
            Command::RemoveGrant {
                subject,
                pattern: pattern.to_owned(),
            },
            event,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_nothing_else() {
        for (p, n, want) in [
            ("app_*", "app_db", true),
            ("app_*", "app_", false), // not a valid name: ends in `_`
            ("app_*", "App_db", false),
            ("app_*", "xapp_db", false),
            ("*", "anything", true),
            ("a*b*c", "a1b2c", true),
            ("a*b*c", "a1b2", false),
            ("db", "db", true),
            ("db", "db2", false),
            ("app_*", "app_*", false), // a name holding `*` is no name
            ("app_*", "app_../x", false),
            ("*", "", false),
        ] {
            assert_eq!(pattern_matches(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn patterns_are_name_characters_and_stars() {
        assert!(validate_pattern("app_*").is_ok());
        assert!(validate_pattern("*").is_ok());
        for bad in ["", "app/*", "a b", "?x", "[ab]", "a\u{0}"] {
            assert!(validate_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_grant_covers_its_subject_only() {
        let g = GrantRecord {
            subject: GrantSubject::Gid(100),
            pattern: "app_*".into(),
            created_ns: 0,
            created_by: String::new(),
            index: 0,
        };
        assert!(covers(&g, 1001, &[5, 100], "app_x"));
        assert!(!covers(&g, 1001, &[5], "app_x"));
        assert!(!covers(&g, 100, &[], "app_x"), "a uid is not a gid");
    }
}
