//! `/v1/policies`: list, add and remove grants (`lockbox policy ls|grant|revoke`). The
//! gate lets administrators only; the decisions and the audit records are the core's
//! (`lockbox_core::policy`).
//!
//! Owns: the routes' request shapes. Touches: the core's grants, identity (group names).
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lockbox_core::policy::subject_text;
use lockbox_core::{Caller, Daemon, rfc3339};
use lockbox_store::GrantSubject;
use serde::Deserialize;

use crate::ApiError;
use crate::body::{json_response, parse_required};
use crate::identity::Peer;

/// A grant or revoke request: exactly one of `UID`, `Group` (a name or a number, looked
/// up in the daemon's `/etc/group`) and `Volumes`, and the pattern.
#[derive(Debug, Deserialize)]
struct GrantRequest {
    #[serde(rename = "UID", default)]
    uid: Option<u32>,
    #[serde(rename = "Group", default)]
    group: Option<String>,
    /// The volume driver's volumes as the subject.
    #[serde(rename = "Volumes", default)]
    volumes: bool,
    #[serde(rename = "Pattern", default)]
    pattern: String,
}

impl GrantRequest {
    fn subject(&self) -> Result<GrantSubject, ApiError> {
        match (self.uid, &self.group, self.volumes) {
            (Some(u), None, false) => Ok(GrantSubject::Uid(u)),
            (None, Some(g), false) => crate::identity::resolve_group(g)
                .map(GrantSubject::Gid)
                .map_err(ApiError::bad_request),
            (None, None, true) => Ok(GrantSubject::Volumes),
            _ => Err(ApiError::bad_request(
                "a grant is for one subject: give one of --uid, --gid and --volumes",
            )),
        }
    }
}

type App = State<Arc<Daemon>>;

async fn change(d: Arc<Daemon>, who: Peer, body: Bytes, grant: bool) -> Result<Response, ApiError> {
    let req: GrantRequest = parse_required(&body)?;
    let subject = req.subject()?;
    let caller = Caller::uid(who.uid);
    if grant {
        d.grant(subject, &req.pattern, &caller).await?;
    } else {
        d.revoke(subject, &req.pattern, &caller).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes under `/v1/policies`.
pub(crate) fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route(
            "/",
            get(|State(d): App| async move {
                let out: Vec<serde_json::Value> = d
                    .grants()?
                    .into_iter()
                    .map(|g| {
                        let (uid, gid) = match g.subject {
                            GrantSubject::Uid(u) => (Some(u), None),
                            GrantSubject::Gid(x) => (None, Some(x)),
                            GrantSubject::Volumes => (None, None),
                        };
                        serde_json::json!({
                            "Subject": subject_text(g.subject),
                            "UID": uid,
                            "GID": gid,
                            "Pattern": g.pattern,
                            "CreatedAt": rfc3339(g.created_ns),
                            "CreatedBy": g.created_by,
                            "Version": {"Index": g.index},
                        })
                    })
                    .collect();
                Ok::<_, ApiError>(json_response(StatusCode::OK, &out))
            }),
        )
        .route(
            "/grant",
            post(
                |State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Bytes| async move {
                    change(d, who, body, true).await
                },
            ),
        )
        .route(
            "/revoke",
            post(
                |State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Bytes| async move {
                    change(d, who, body, false).await
                },
            ),
        )
}
