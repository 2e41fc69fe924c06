//! What a workload started by anyone but root may have: only secrets its grants cover
//! (`lockbox policy grant`), as files owned by the caller the kernel named (uid and the
//! connection's gid from `SO_PEERCRED`), readable by that owner alone. A request cannot
//! ask for another owner, and a mode's group and other bits are dropped: a granted value
//! never becomes readable by a user who holds no grant for it.
//!
//! Owns: the rule and its refusals. Touches: the core's grants, identity, refusals (audit).
use lockbox_audit::Event;
use lockbox_core::Daemon;
use lockbox_core::policy::GrantView;
use lockbox_store::ServiceSecret;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::identity::Peer;
use crate::services::RefRequest;

/// A non-root caller's workload: who owns its files, and the groups its grants are
/// matched against (resolved when it started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Confined {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) gids: Vec<u32>,
}

impl Confined {
    /// `None` for root (unconfined); the caller's confinement otherwise.
    pub(crate) fn of(who: &Peer) -> Result<Option<Self>, ApiError> {
        match who.uid {
            Some(0) => Ok(None),
            Some(uid) => Ok(Some(Confined {
                uid,
                gid: who.gid.unwrap_or(uid),
                gids: crate::identity::groups_of(who),
            })),
            None => Err(ApiError::new(
                403,
                "permission denied: the kernel did not say who is calling",
            )),
        }
    }

    /// Refuses a reference that asks for a file owner other than the caller (an empty or
    /// `0` UID/GID is the default, which becomes the caller's).
    pub(crate) fn check_owner(
        &self,
        d: &Daemon,
        who: &Peer,
        refs: &[RefRequest],
    ) -> Result<(), ApiError> {
        for r in refs {
            let Some(f) = &r.file else { continue };
            for (what, asked, own) in [("uid", &f.uid, self.uid), ("gid", &f.gid, self.gid)] {
                let asked = asked.trim();
                if asked.is_empty() || asked == "0" || asked == own.to_string() {
                    continue;
                }
                let message = format!(
                    "permission denied: a workload started by uid {} gets files owned by {what} {own}; it cannot ask for {what} {asked} (secret {:?})",
                    self.uid, r.secret_name
                );
                self.refuse(d, who, &format!("owner {what}"), &r.secret_name, &message);
                return Err(ApiError::new(403, message));
            }
        }
        Ok(())
    }

    /// Refuses the first reference whose secret no grant of the caller covers, naming it
    /// and the grant that is missing; audited (throttled like every refusal).
    /// Called with the names as requested, before any is looked up, so that a refusal
    /// never tells whether a secret the caller may not use exists.
    pub(crate) fn check_names<'a>(
        &self,
        d: &Daemon,
        who: &Peer,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        let grants = d.grant_view();
        for name in names {
            if !grants.allows(self.uid, &self.gids, name) {
                let message = format!(
                    "permission denied: uid {} holds no grant for secret {name:?} (an administrator gives one with: lockbox policy grant --uid {} --use PATTERN)",
                    self.uid, self.uid
                );
                self.refuse(d, who, "grant", name, &message);
                return Err(ApiError::new(403, message));
            }
        }
        Ok(())
    }

    /// Whether a grant still covers `r` (a running workload's references are checked again
    /// at every change, so a revoked grant delivers nothing new); `grants` is one read of
    /// them for the whole set.
    pub(crate) fn allows(&self, grants: &GrantView, r: &ServiceSecret) -> bool {
        grants.allows(self.uid, &self.gids, &r.secret_name)
    }

    /// The reference as the caller gets it: its owner, owner-only mode.
    pub(crate) fn own(&self, mut r: ServiceSecret) -> ServiceSecret {
        r.uid = self.uid;
        r.gid = self.gid;
        r.mode &= 0o700;
        r
    }

    fn refuse(&self, d: &Daemon, who: &Peer, needs: &str, secret: &str, message: &str) {
        let e = Event::new("access-denied", &who.actor())
            .detail("socket", "native")
            .detail("method", "POST")
            .detail("path", "/v1/workloads")
            .detail("needs", needs)
            .detail("secret", secret)
            .detail("reason", message);
        // Keyed by what was missing, not by the name: a caller cycling through made-up
        // names is one route to the throttle, not one fsync per name.
        crate::refusals::record(d, who.uid, &format!("native POST /v1/workloads {needs}"), e);
    }
}
