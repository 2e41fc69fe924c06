//! The Docker Engine API subset (secrets, configs, ping, version, info) that lets the stock
//! `docker secret …` / `docker config …` commands work against lockbox, and the Swarm
//! secret-driver plugin protocol. Handlers call [`crate::ops::Daemon`] like the native API.
use std::sync::Arc;

use axum::Router;

use crate::ApiError;
use crate::ops::Daemon;

/// The Docker Engine API router.
pub(crate) fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .fallback(|| async { ApiError::new(404, "page not found") })
        .with_state(d)
}

/// The Swarm secret-driver plugin router (`/Plugin.Activate`, `/SecretProvider.GetSecret`).
pub(crate) fn plugin_router(d: Arc<Daemon>) -> Router {
    Router::new()
        .fallback(|| async { ApiError::new(404, "page not found") })
        .with_state(d)
}
