//! The watcher: what a node does when the replicated cluster state changes (re-seal the
//! ring after an unlock-key rotation, keep the managers list, follow a CA rotation, turn a
//! demoted manager into a worker, a promoted worker into a manager).
//!
//! Owns: reactions to applied changes. Touches: the core, `state`, `certs`, agents.
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use lockbox_keyring::UnlockKey;
use lockbox_replication::Bootstrap;
use lockbox_store::NodeRole;
use lockbox_store::cluster::UNLOCK_KEY_OBJECT;

use crate::ApiError;
use lockbox_core::Daemon;

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// the watcher: what a manager does when the replicated cluster state changes

/// Follows applied changes on this node: re-seals the local key ring when the cluster's
/// unlock key was rotated elsewhere, keeps the managers list current, and turns a demoted
/// manager into a worker.
pub(super) async fn watch(d: Arc<Daemon>) {
    let mut seen_unlock_version = 0u64;
    // A node promoted a moment ago still reads its old (worker) record until its store has
    // caught up: only a worker record seen *after* a manager record is a demotion.
    let mut seen_as_manager = false;
    let mut retry_trust_at = tokio::time::Instant::now();
    loop {
        let Some(cluster) = d.cluster() else { return };
        if *cluster.stop.borrow() || cluster.config().role != NodeRole::Manager {
            tracing::debug!("cluster watcher ends (not a manager, or stopped)");
            return;
        }
        let store = match d.store() {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Ok(Some((c, rotation))) = store.reader.cluster_and_rotation() {
            follow_ca_rotation(
                &d,
                &cluster,
                &store,
                &c,
                rotation.as_ref(),
                &mut retry_trust_at,
            )
            .await;
            if c.unlock_version > seen_unlock_version {
                if let Some(sealed) = &c.unlock_key
                    && let Ok(raw) =
                        d.open_cluster_secret(sealed, UNLOCK_KEY_OBJECT, c.unlock_version)
                    && let Ok(key) = UnlockKey::from_raw(&raw)
                {
                    d.adopt_unlock_key(key);
                    seen_unlock_version = c.unlock_version;
                } else if c.unlock_key.is_none() {
                    seen_unlock_version = c.unlock_version;
                }
            }
            d.adopt_keks(&c.keks);
            let managers = manager_addrs(&store.reader);
            if !managers.is_empty() {
                set_managers(&d, managers);
            }
            let me = cluster.config().node_id;
            let role = store.reader.node(me).ok().flatten().map(|n| n.role);
            seen_as_manager |= role == Some(NodeRole::Manager);
            if seen_as_manager && role == Some(NodeRole::Worker) {
                tracing::info!(
                    "this manager was demoted; dropping the store and running as a worker"
                );
                become_worker(&d).await;
                return;
            }
        }
        drop(store);
        // Debounced: raft's state changes several times per write, and none of what this
        // loop follows is urgent (a KEK a value needs is also adopted on demand).
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(store) = d.store() {
            store.replica.changed(Duration::from_secs(2)).await;
        }
    }
}

pub(super) async fn become_worker(d: &Arc<Daemon>) {
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        lockbox_core::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    if let Some(c) = d.cluster() {
        let cfg = {
            let Ok(mut cfg) = c.config.write() else {
                return;
            };
            cfg.role = NodeRole::Worker;
            cfg.clone()
        };
        let _ = save_config(&d.data_dir, &cfg);
    }
    (d.agent_hooks().start)(d.clone());
}

/// A worker promoted to manager: open an empty store, ask to be admitted, take the keys.
pub(crate) async fn become_manager(d: &Arc<Daemon>) -> Result<()> {
    let c = d.cluster_or_err()?;
    let mut cfg = c.config();
    cfg.role = NodeRole::Manager;
    // A retry after a failed admission reuses the store it opened.
    if d.store().is_err() {
        let store = open_store(
            &d.data_dir,
            &cfg,
            &c.tls,
            Bootstrap::Join,
            crate::budget::cache_size(d),
        )
        .await?;
        if let Ok(mut s) = d.store.write() {
            *s = Some(Arc::new(store));
        }
    }
    let mut last = None;
    for addr in &cfg.managers {
        match call_leader(
            c.tls.get().client.clone(),
            addr,
            "/cluster/admit",
            b"{}".to_vec(),
        )
        .await
        {
            Ok((_, a)) if a.status == 200 => {
                let admitted = install_keys(d, &a.body)?;
                if let Ok(mut w) = c.config.write() {
                    w.role = NodeRole::Manager;
                    if !admitted.managers.is_empty() {
                        w.managers = admitted.managers.clone();
                    }
                }
                save_config(&d.data_dir, &c.config())?;
                tokio::spawn(watch(d.clone()));
                // A certificate that says what the node now is (in the background: the
                // node already works with the one it has).
                let d2 = d.clone();
                tokio::spawn(async move {
                    if let Some(c) = d2.cluster()
                        && let Err(e) = renew_once(&d2, &c).await
                    {
                        tracing::warn!("could not renew the certificate after promotion: {e}");
                    }
                });
                return Ok(());
            }
            Ok((_, a)) => last = Some(remote_error(&a)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::new(503, "no manager known")))
}

/// How recently the leader heard from a manager.
pub(crate) trait PeerHealth {
    /// Whether the leader heard from manager `id` recently (true when this node is not the
    /// leader and cannot tell).
    fn peer_seen(&self, id: u64) -> bool;
}

impl PeerHealth for Daemon {
    /// Whether the leader heard from manager `id` recently (true when this node is not the
    /// leader and cannot tell).
    fn peer_seen(&self, id: u64) -> bool {
        let Ok(store) = self.store() else {
            return false;
        };
        if !store.replica.is_leader() {
            return true;
        }
        store
            .replica
            .heartbeat_age(id)
            .is_some_and(|age| age < Duration::from_secs(5))
    }
}
