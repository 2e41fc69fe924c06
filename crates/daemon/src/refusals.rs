//! Audit records for refused requests, throttled: every refusal used to be one fsynced
//! record, so any caller who could connect made the daemon fsync at its request rate. Now
//! the first refusal of one caller on one route in a window is recorded in full, the first
//! repeat records that the refusal is being throttled (once per window, like the unlock
//! throttle), and further repeats are only counted; the count is carried by the first
//! record of the caller's next window on that route (`repeats_before`). So at most two
//! records per (uid, route) per window, and every distinct refusal is still on disk.
//!
//! Owns: the throttle's windows. Touches: the core's audit log.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockbox_audit::Event;
use lockbox_core::Daemon;

/// How long repeats of one refusal are counted instead of recorded.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked (actor, route) pairs, expired windows are dropped.
const PRUNE_AT: usize = 4096;

struct Window {
    start: Instant,
    repeats: u64,
}

/// Per (actor, route) windows; kept in the core's extensions.
#[derive(Default)]
pub(crate) struct RefusalThrottle(Mutex<HashMap<(String, String), Window>>);

impl RefusalThrottle {
    /// Records `event` (a refusal of `uid` on `route`) unless it repeats one recorded in
    /// this window; see the module's comment.
    pub(crate) fn record(&self, d: &Daemon, actor: &str, route: &str, event: Event) {
        let now = Instant::now();
        let to_write = {
            let mut map = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() >= PRUNE_AT {
                map.retain(|_, w| now.duration_since(w.start) < WINDOW);
            }
            let key = (actor.to_owned(), route.to_owned());
            match map.get_mut(&key) {
                Some(w) if now.duration_since(w.start) < WINDOW => {
                    w.repeats += 1;
                    (w.repeats == 1).then(|| {
                        Event::new("access-denied-throttled", actor)
                            .detail("route", route)
                            .detail("window_seconds", &WINDOW.as_secs().to_string())
                    })
                }
                previous => {
                    let before = previous.map_or(0, |w| w.repeats);
                    map.insert(
                        key,
                        Window {
                            start: now,
                            repeats: 0,
                        },
                    );
                    Some(if before > 0 {
                        event.detail("repeats_before", &before.to_string())
                    } else {
                        event
                    })
                }
            }
        };
        if let Some(e) = to_write
            && let Err(err) = d.audit_event(e)
        {
            tracing::warn!("cannot audit a refused request: {err}");
        }
    }
}

fn actor(uid: Option<u32>) -> String {
    uid.map_or_else(|| "unknown".to_string(), |u| format!("uid:{u}"))
}

/// Records a refusal of a Unix-socket caller through the daemon's throttle.
pub(crate) fn record(d: &Daemon, uid: Option<u32>, route: &str, event: Event) {
    record_for(d, &actor(uid), route, event);
}

/// Records a refusal of `actor` (`uid:N`, `node:ID`, `peer:ADDR`) through the daemon's
/// throttle: the one for every socket, the node API's included.
pub(crate) fn record_for(d: &Daemon, actor: &str, route: &str, event: Event) {
    d.extensions
        .get_or_init(RefusalThrottle::default)
        .record(d, actor, route, event);
}
