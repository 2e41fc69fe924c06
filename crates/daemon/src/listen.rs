//! The accept loop for every Unix-socket listener.
//!
//! `axum::serve` has no timer, so a client that opens a connection and never finishes its
//! request headers (slowloris) would hold it forever. Here each connection is served by
//! hyper directly with a header-read timeout, the caller's Unix credentials are attached to
//! every request (for `ConnectInfo<Peer>`), and shutdown drains connections gracefully.
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;
use tower::ServiceExt as _;

use crate::identity::Peer;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body once its headers are in: a body
/// trickled a byte at a time would otherwise hold a connection (and its task) forever.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
use crate::body::BODY_LIMIT as BODY_MAX;
/// How long shutdown waits for open requests (event streams, long reads) before closing them.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` turns true, then drains.
pub(crate) async fn serve(
    listener: UnixListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning; the listener stays.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let cred = stream.peer_cred().ok();
                let peer = Peer {
                    uid: cred.map(|c| c.uid()),
                    gid: cred.map(|c| c.gid()),
                    pid: cred.and_then(|c| c.pid()),
                };
                let app = app.clone();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let app = app.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        // Most requests (every GET) carry no body: nothing to wait for.
                        let body = if hyper::body::Body::is_end_stream(&body) {
                            axum::body::Body::empty()
                        } else {
                            match read_body(body).await {
                                Ok(b) => b,
                                Err(refusal) => return Ok(refusal),
                            }
                        };
                        app.oneshot(hyper::Request::from_parts(parts, body)).await
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            // The guard `wait_for` returns must not live across an await (it is not Send).
            () = async { drop(stop.wait_for(|s| *s).await) } => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

/// The whole request body within [`BODY_READ_TIMEOUT`] and [`BODY_MAX`], or the answer that
/// says which limit it broke (408, 413, 400).
async fn read_body(body: Incoming) -> Result<axum::body::Body, axum::response::Response> {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(body, BODY_MAX);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(axum::body::Body::from(collected.to_bytes())),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(crate::ApiError::new(
            413,
            format!("request body too large: lockbox accepts at most {BODY_MAX} bytes"),
        )
        .into_response()),
        Ok(Err(e)) => Err(crate::ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))
        .into_response()),
        Err(_) => Err(crate::ApiError::new(
            408,
            format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )
        .into_response()),
    }
}
