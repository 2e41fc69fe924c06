//! Join tokens and the unlock key across managers (`join-token`, `cluster unlock-key`
//! with rotation and Shamir shares).
//!
//! Owns: token and unlock-key reads and rotations. Touches: the core's keys, `record`.
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use lockbox_audit::Event;
use lockbox_keyring::UnlockKey;
use lockbox_store::cluster::{MANAGER_TOKEN_OBJECT, UNLOCK_KEY_OBJECT, WORKER_TOKEN_OBJECT};
use lockbox_store::{Command, NodeRole};
use serde::Deserialize;

use crate::ApiError;
use crate::body::json_response;
use crate::identity::Peer;
use lockbox_core::{Caller, Daemon, now_ns};

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// local API: tokens, inspect, nodes, leave, unlock key

#[derive(Debug, Default, Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    pub(super) rotate: Option<String>,
}

pub(super) fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True" | "yes"))
}

pub(super) async fn join_token(
    d: Arc<Daemon>,
    who: Peer,
    role: String,
    q: TokenQuery,
) -> Result<Response> {
    let role = match role.as_str() {
        "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown role {other}: worker or manager"
            )));
        }
    };
    let cluster = d.cluster_or_err()?;
    let mut c = d.cluster_record()?;
    if truthy(&q.rotate) {
        let expected = c.updated_ns;
        let version = c.token_version + 1;
        // Both secrets are re-sealed under the new version; only `role`'s changes.
        let (w, m) = (
            d.open_cluster_secret(&c.worker_token, WORKER_TOKEN_OBJECT, c.token_version)?,
            d.open_cluster_secret(&c.manager_token, MANAGER_TOKEN_OBJECT, c.token_version)?,
        );
        let fresh = random_secret16()?;
        let (w, m): (&[u8], &[u8]) = match role {
            NodeRole::Worker => (&fresh[..], &m),
            NodeRole::Manager => (&w, &fresh[..]),
        };
        c.worker_token = d.seal_cluster_secret(w, WORKER_TOKEN_OBJECT, version)?;
        c.manager_token = d.seal_cluster_secret(m, MANAGER_TOKEN_OBJECT, version)?;
        c.token_version = version;
        c.updated_ns = now_ns();
        d.propose(Command::UpdateCluster {
            cluster: c.clone(),
            expected_updated_ns: expected,
        })
        .await?;
        d.audit_event(
            Event::new("join-token-rotate", &Caller::uid(who.uid).actor)
                .detail("role", role.as_str()),
        )?;
    }
    let token = d.join_token(&c, role)?;
    // A join token admits a node (a manager's receives the KEK): its every read is recorded
    // before it leaves, like a hand-out.
    d.audit_event(
        Event::new("join-token-read", &Caller::uid(who.uid).actor).detail("role", role.as_str()),
    )?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"Token": token.to_string(), "Addr": cluster.config().advertise_addr}),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct UnlockKeyQuery {
    #[serde(default)]
    pub(super) rotate: Option<String>,
    #[serde(default)]
    pub(super) split: Option<String>,
}

pub(super) fn parse_split(s: &str) -> Result<(u8, u8)> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid --split {s:?}: use K/N with 2 <= K <= N <= 255"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u8, u8) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k < 2 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// `lockbox cluster unlock-key [--rotate] [--split K/N]`: a rotation reaches every manager
/// through the store (sealed under the KEK); each re-seals its own ring file with it.
pub(super) async fn cluster_unlock_key(
    d: Arc<Daemon>,
    who: Peer,
    q: UnlockKeyQuery,
) -> Result<Response> {
    let caller = Caller::uid(who.uid);
    let split = q.split.as_deref().map(parse_split).transpose()?;
    let key = if truthy(&q.rotate) {
        let text = d.unlock_key(true, &caller)?;
        if d.cluster().is_some() {
            let mut c = d.cluster_record()?;
            let expected = c.updated_ns;
            let raw = d
                .unlock_key_bytes()?
                .ok_or_else(|| ApiError::internal("no unlock key after rotation"))?;
            c.unlock_version += 1;
            c.unlock_key =
                Some(d.seal_cluster_secret(&raw[..], UNLOCK_KEY_OBJECT, c.unlock_version)?);
            c.updated_ns = now_ns();
            d.propose(Command::UpdateCluster {
                cluster: c,
                expected_updated_ns: expected,
            })
            .await?;
        }
        // A new unlock key comes with a new KEK, across managers (see `Daemon::autolock`).
        d.rotate_kek_after_key_change(&caller).await;
        text
    } else {
        d.unlock_key(false, &caller)?
    };
    let shares = match split {
        Some((k, n)) => {
            let parsed = UnlockKey::parse(&key)?;
            let shares = lockbox_keyring::shamir::split(parsed.raw(), k, n)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            d.audit_event(
                Event::new("unlock-key-split", &caller.actor)
                    .detail("threshold", &k.to_string())
                    .detail("shares", &n.to_string()),
            )?;
            Some(
                shares
                    .iter()
                    .map(|s| s.to_text().to_string())
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "UnlockKey": if shares.is_some() { None } else { Some(key.as_str()) },
            "Shares": shares,
        }),
    ))
}
