//! `GET /events` as Docker serves it: a bounded history of past events replayed from
//! `since` (and up to `until`), then live events until `until` passes, all through Docker's
//! event filters (`type`, `event`, `scope`, `label`, and the name filters `secret`, `config`,
//! `container`, …, which match an ID or name prefix; other keys filter nothing).
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::ApiError;
use lockbox_core::Daemon;

/// Docker keeps its last 256 events for replay; so does lockbox.
const HISTORY: usize = 256;

/// Keys matched against the actor's ID or name, by prefix (Docker's "fuzzy" match).
const NAME_KEYS: [&str; 10] = [
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "secret",
    "config",
    "service",
    "volume",
];

/// The daemon's last [`HISTORY`] events. They are read from a subscription of the daemon's
/// own event channel when a request needs them; while nobody asks, that channel keeps the
/// newest of them (a lagging receiver skips the oldest), so nothing runs in between.
pub(crate) struct EventHistory {
    recorded: Mutex<(broadcast::Receiver<String>, VecDeque<String>)>,
}

impl EventHistory {
    /// Starts recording the daemon's events (from now on).
    pub(crate) fn start(d: &Daemon) -> Arc<Self> {
        Arc::new(Self {
            recorded: Mutex::new((d.subscribe(), VecDeque::with_capacity(HISTORY))),
        })
    }

    /// The past events to replay (as raw lines) and a subscription to the ones after them.
    /// Subscribing before reading the history leaves no gap; an event that lands in both
    /// is dropped from the live side by the caller.
    fn subscribe(&self, d: &Daemon, q: &Query) -> (Vec<Value>, broadcast::Receiver<String>) {
        let live = d.subscribe();
        let mut guard = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let (rx, past) = &mut *guard;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    if past.len() == HISTORY {
                        past.pop_front();
                    }
                    past.push_back(line);
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        let replay = if q.since.is_none() && q.until.is_none() {
            Vec::new()
        } else {
            let since = q.since.unwrap_or(i128::MIN);
            past.iter()
                .filter_map(|l| docker_event(l))
                .filter(|ev| {
                    let t = time_nano(ev);
                    t >= since && q.until.is_none_or(|u| t <= u) && q.includes(ev)
                })
                .collect()
        };
        (replay, live)
    }
}

/// One of the daemon's event lines in Docker's shape.
fn docker_event(line: &str) -> Option<Value> {
    let mut ev: Value = serde_json::from_str(line).ok()?;
    // Secrets and configs are cluster objects: Docker reports their events with the swarm
    // scope.
    ev["scope"] = Value::from("swarm");
    Some(ev)
}

fn time_nano(ev: &Value) -> i128 {
    ev["timeNano"].as_i64().map_or(0, i128::from)
}

/// A `since`/`until` value: Unix seconds with an optional fraction (`1700000000.5`), as the
/// docker CLI sends them. In nanoseconds.
fn parse_time(s: &str) -> Result<i128, ApiError> {
    let bad = || ApiError::bad_request(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().map_err(|_| bad())?;
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(i128::from(sec) * 1_000_000_000 + if sec < 0 { -nanos } else { nanos })
}

/// One `/events` request.
struct Query {
    since: Option<i128>,
    until: Option<i128>,
    filters: BTreeMap<String, Vec<String>>,
}

impl Query {
    fn parse(q: &std::collections::HashMap<String, String>) -> Result<Self, ApiError> {
        let time = |k: &str| {
            q.get(k)
                .filter(|s| !s.is_empty())
                .map(|s| parse_time(s))
                .transpose()
        };
        let (since, until) = (time("since")?, time("until")?);
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            return Err(ApiError::bad_request(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.get("since").map_or("", String::as_str),
                q.get("until").map_or("", String::as_str)
            )));
        }
        // Engine 26 does not check the keys: one it does not know filters nothing.
        let filters =
            lockbox_store::validate::parse_filter_map(q.get("filters").map(String::as_str))?;
        Ok(Self {
            since,
            until,
            filters: filters.into_iter().collect(),
        })
    }

    fn values(&self, key: &str) -> &[String] {
        self.filters.get(key).map_or(&[], Vec::as_slice)
    }

    fn exact(&self, key: &str, v: &str) -> bool {
        let vals = self.values(key);
        vals.is_empty() || vals.iter().any(|x| x == v)
    }

    fn fuzzy(&self, key: &str, v: &str) -> bool {
        let vals = self.values(key);
        vals.is_empty() || vals.iter().any(|x| v.starts_with(x.as_str()))
    }

    /// Docker's `events.Filter.Include`.
    fn includes(&self, ev: &Value) -> bool {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let (id, name) = (s(&ev["Actor"]["ID"]), s(&ev["Actor"]["Attributes"]["name"]));
        let attrs = &ev["Actor"]["Attributes"];
        self.exact("type", &s(&ev["Type"]))
            && self.exact("scope", &s(&ev["scope"]))
            && self.exact("event", &s(&ev["Action"]))
            && NAME_KEYS
                .iter()
                .all(|k| self.fuzzy(k, &id) || self.fuzzy(k, &name))
            && self
                .values("label")
                .iter()
                .all(|l| match l.split_once('=') {
                    Some((k, v)) => attrs[k].as_str() == Some(v),
                    None => attrs.get(l.as_str()).is_some(),
                })
    }
}

fn line(ev: &Value) -> Bytes {
    let mut out = ev.to_string();
    out.push('\n');
    Bytes::from(out)
}

/// `GET /events`.
pub(crate) fn events(
    d: &Daemon,
    history: &EventHistory,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let now = lockbox_core::now_ns() as i128;
    let (past, rx) = history.subscribe(d, &q);
    // An `until` already past: the replay is the whole answer.
    let live_for = match q.until {
        Some(u) if u <= now => None,
        Some(u) => Some(Some(
            tokio::time::Instant::now()
                + Duration::from_nanos(u64::try_from(u - now).unwrap_or(u64::MAX)),
        )),
        None => Some(None),
    };
    let seen: Vec<Value> = past.clone();
    let replay = futures_util::stream::iter(
        past.into_iter()
            .map(|ev| Ok::<Bytes, std::convert::Infallible>(line(&ev))),
    );
    let live = futures_util::stream::unfold(
        (live_for.map(|at| (rx, at)), q, seen),
        |(state, q, seen)| async move {
            let (mut rx, deadline) = state?;
            loop {
                let next = match deadline {
                    Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(l) => {
                        let Some(ev) = docker_event(&l) else { continue };
                        if q.includes(&ev) && !seen.contains(&ev) {
                            return Some((Ok(line(&ev)), (Some((rx, deadline)), q, seen)));
                        }
                    }
                    // A slow reader misses events rather than slowing the daemon down.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let stream = futures_util::StreamExt::chain(replay, live);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_unix_seconds_with_a_fraction() {
        assert_eq!(parse_time("12").unwrap(), 12_000_000_000);
        assert_eq!(parse_time("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_time("12.000000001").unwrap(), 12_000_000_001);
        assert!(parse_time("12.0000000001").is_err());
        assert!(parse_time("10m").is_err());
    }

    fn q(pairs: &[(&str, &str)]) -> Result<Query, ApiError> {
        Query::parse(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn filters_are_dockers() {
        let ev = json!({"Type":"secret","Action":"create","scope":"swarm",
            "Actor":{"ID":"abc123","Attributes":{"name":"db_pw"}},"timeNano":5});
        let yes = |f: &str| q(&[("filters", f)]).unwrap().includes(&ev);
        assert!(yes(r#"{"type":{"secret":true}}"#));
        assert!(!yes(r#"{"type":{"config":true}}"#));
        assert!(yes(r#"{"event":["create","remove"]}"#));
        assert!(yes(r#"{"secret":{"db_":true}}"#));
        assert!(yes(r#"{"secret":{"abc":true}}"#));
        assert!(!yes(r#"{"secret":{"pw":true}}"#));
        assert!(!yes(r#"{"container":{"x":true}}"#));
        assert!(yes(r#"{"label":{"name=db_pw":true}}"#));
        assert!(!yes(r#"{"scope":{"local":true}}"#));
        assert!(yes(r#"{"bogus":{"x":true}}"#));
        assert_eq!(
            q(&[("since", "20"), ("until", "10")])
                .err()
                .map(|e| e.message),
            Some("`since` time (20) cannot be after `until` time (10)".to_owned())
        );
    }
}
