//! The daemon's state ([`Daemon`]) and what every operation needs: the store slot, the
//! key state, the audit log, events, proposals and reads, and how a record becomes Docker's
//! object. The operations themselves are in `objects.rs` (secrets and configs) and
//! `keys.rs` (unlock, autolock, unlock keys, the KEK).
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::{Event, GroupCommit};
use lockbox_keyring::{KeyMode, KeyRing, RingFile, Sealed, UnlockKey, Zeroizing};
use lockbox_proto::{AuditRecord, AuditVerify, Driver, Info, Object, ObjectVersion, Spec};
use lockbox_replication::Replica;
use lockbox_store::{Command, DriverRec, Kind, ObjectRecord, Reader, Response};
use tokio::sync::broadcast;

use crate::ApiError;

use crate::Extensions;

/// Who is asking: `uid:N` for a local client (from the socket's peer credentials).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
}

impl Caller {
    /// A caller known by its Unix user ID.
    pub fn uid(uid: Option<u32>) -> Self {
        Self {
            actor: uid.map_or_else(|| "unknown".to_string(), |u| format!("uid:{u}")),
        }
    }
}

pub enum Keys {
    Unlocked {
        ring: KeyRing,
        mode: KeyMode,
        unlock: Option<UnlockKey>,
    },
    Locked {
        file: RingFile,
    },
}

/// A manager's replica of the store and a reader over it. Swapped as a whole when the node
/// joins a cluster (its single-node store is replaced by the cluster's).
pub struct NodeStore {
    pub replica: Replica,
    pub reader: Reader,
}

/// The daemon's state and operations.
pub struct Daemon {
    /// `None` on a worker node, which holds no store.
    pub store: RwLock<Option<Arc<NodeStore>>>,
    pub keys: RwLock<Keys>,
    pub audit: GroupCommit,
    pub ring_path: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub keep: u32,
    pub node_id: String,
    pub cluster_id: String,
    pub events: broadcast::Sender<String>,
    /// The features' own state (workloads, agents, the cluster slot, their hooks), held
    /// for them without the core knowing their types: see [`Extensions`].
    pub extensions: Extensions,
}

/// Go's `time.Time` JSON form: RFC 3339 with nanoseconds, trailing zeros trimmed.
pub fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Now, in nanoseconds since the epoch (times proposed in commands).
pub fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// A new object ID: 25 base36 characters of 128 random bits, like Swarm's. (IDs ordered by
/// creation time made creates ~18 % faster at 64 clients — a batch then dirties the same
/// B-tree leaves — but short ID prefixes became ambiguous, and Docker users resolve by
/// prefix: the stock-CLI parity test caught it. Random it stays.)
pub(crate) fn new_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(lockbox_store::object_id(b))
}

/// Decodes `Data` the way Go's `[]byte` JSON field does, with Go's message on failure.
pub fn decode_data(b64: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    // Go's StdEncoding, which Docker clients write with, tolerates non-zero trailing bits;
    // so must we, or a value Docker accepts would be refused here.
    const GO_STD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    GO_STD.decode(b64).map(Zeroizing::new).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => i,
            base64::DecodeError::InvalidLength(n) => n - n % 4,
            base64::DecodeError::InvalidPadding => b64.trim_end_matches('=').len(),
        };
        ApiError::bad_request(format!("illegal base64 data at input byte {at}"))
    })
}

pub(crate) fn driver_rec(d: &Option<Driver>) -> Option<DriverRec> {
    d.as_ref().map(|d| DriverRec {
        name: d.name.clone(),
        options: d.options.clone(),
    })
}

pub(crate) fn driver_out(d: &Option<DriverRec>) -> Option<Driver> {
    d.as_ref().map(|d| Driver {
        name: d.name.clone(),
        options: d.options.clone(),
    })
}

impl Daemon {
    pub fn emit(&self, kind: Kind, action: &str, id: &str, name: &str) {
        self.emit_typed(kind.as_str(), action, id, name);
    }

    /// An event about something that is not a secret or config (a workload, a node): `ty` is
    /// its Docker event type.
    pub fn emit_typed(&self, ty: &str, action: &str, id: &str, name: &str) {
        let ev = serde_json::json!({
            "Type": ty,
            "Action": action,
            "Actor": {"ID": id, "Attributes": {"name": name}},
            "scope": "local",
            "time": now_ns() / 1_000_000_000,
            "timeNano": now_ns(),
        });
        let _ = self.events.send(ev.to_string());
    }

    /// Subscribes to the event stream (create, update, remove, rotate, hand-out).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Appends an audit record (fsynced before this returns).
    pub fn audit_event(&self, e: Event) -> Result<AuditRecord, ApiError> {
        self.audit(e)
    }

    /// The key mode, `None` while locked.
    pub fn key_mode(&self) -> Option<KeyMode> {
        match self.keys.read().as_deref() {
            Ok(Keys::Unlocked { mode, .. }) => Some(*mode),
            _ => None,
        }
    }

    /// The raw unlock key of an autolocked, unlocked node.
    pub fn unlock_key_bytes(&self) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { unlock, .. } => {
                Ok(unlock.as_ref().map(|k| Zeroizing::new(k.raw().to_vec())))
            }
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    /// Adds KEKs rotated in on another manager (each sealed under its predecessor) to the
    /// local ring, and persists it.
    pub fn adopt_keks(&self, sealed: &[(u32, Sealed)]) {
        // The common case (nothing new) under the read lock only.
        if sealed.iter().all(|(id, _)| self.ring_has(*id)) {
            return;
        }
        let Ok(mut keys) = self.keys.write() else {
            return;
        };
        let Keys::Unlocked { ring, unlock, .. } = &mut *keys else {
            return;
        };
        let mut changed = false;
        // In order: each may be sealed under the one before it.
        for (id, s) in sealed {
            if ring.has(*id) {
                continue;
            }
            let opened = ring.get(s.kek_id).ok().and_then(|kek| {
                s.open(kek, lockbox_store::cluster::KEK_OBJECT, u64::from(*id))
                    .ok()
            });
            let Some(bytes) = opened else {
                tracing::warn!(kek = id, "cannot open a KEK rotated in on another manager");
                continue;
            };
            let Ok(key) = <[u8; 32]>::try_from(&bytes[..]) else {
                continue;
            };
            let newest = *id > ring.current().id();
            ring.insert(*id, Zeroizing::new(key), newest);
            changed = true;
        }
        if changed {
            if let Err(e) = RingFile::write(&self.ring_path, ring, unlock.as_ref()) {
                tracing::warn!("cannot persist the key ring after a cluster KEK rotation: {e}");
            } else {
                tracing::info!("added the cluster's rotated KEK to the local key ring");
            }
        }
    }

    /// Re-seals the local key ring with an unlock key rotated on another manager.
    pub fn adopt_unlock_key(&self, key: UnlockKey) {
        let Ok(mut keys) = self.keys.write() else {
            return;
        };
        if let Keys::Unlocked { ring, mode, unlock } = &mut *keys {
            if unlock.as_ref().is_some_and(|k| k.raw() == key.raw()) {
                return;
            }
            if let Err(e) = RingFile::write(&self.ring_path, ring, Some(&key)) {
                tracing::warn!(
                    "cannot re-seal the key ring with the cluster's new unlock key: {e}"
                );
                return;
            }
            *mode = KeyMode::Autolock;
            *unlock = Some(key);
            tracing::info!("key ring re-sealed with the cluster's rotated unlock key");
        }
    }

    pub(crate) fn audit(&self, e: Event) -> Result<AuditRecord, ApiError> {
        // The append blocks until its group's fdatasync returns; tell the runtime, so other
        // requests keep running (and join the same group commit) meanwhile.
        let append = || self.audit.append(e);
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(append)
            }
            _ => append(),
        };
        result.map_err(|e| ApiError::internal(format!("cannot write the audit log: {e}")))
    }

    /// Proposes `cmd` while `event`, its audit record, is written: the raft commit's fsyncs
    /// and the audit log's fdatasync overlap instead of adding up on the request's path.
    /// Should the write then fail, a second record says so (`outcome: failed` and the
    /// error), so the chain never claims a write that was refused. A record with no such
    /// follow-up whose object does not exist means the daemon stopped before the write
    /// committed. (Hand-outs of secret values are different: their record is on disk before
    /// any byte leaves; see `audit`.)
    pub async fn propose_audited(&self, cmd: Command, event: Event) -> Result<Response, ApiError> {
        let audit_error = |e: lockbox_audit::AuditError| {
            ApiError::internal(format!("cannot write the audit log: {e}"))
        };
        let (proposed, audited) = tokio::join!(self.propose(cmd), self.audit.submit(event.clone()));
        match proposed {
            Ok(response) => {
                audited.map_err(audit_error)?;
                Ok(response)
            }
            Err(e) => {
                if audited.is_ok() {
                    let failed = event
                        .detail("outcome", "failed")
                        .detail("error", &e.message);
                    if let Err(ae) = self.audit.submit(failed).await {
                        tracing::error!("cannot record a failed write in the audit log: {ae}");
                    }
                }
                Err(e)
            }
        }
    }

    /// Runs `f` with the unlocked key ring, or answers 503 while locked.
    pub(crate) fn with_ring<T>(
        &self,
        f: impl FnOnce(&KeyRing) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, .. } => f(ring),
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    /// Answers 503 while locked; data routes call it first.
    pub fn check_unlocked(&self) -> Result<(), ApiError> {
        self.with_ring(|_| Ok(()))
    }

    /// Whether the key ring is locked.
    pub fn is_locked(&self) -> bool {
        matches!(self.keys.read().as_deref(), Ok(Keys::Locked { .. }))
    }

    /// Proposes `cmd` through the raft log (forwarded to the leader when this manager is a
    /// follower) and turns a store refusal into an error.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ApiError> {
        let store = self.store()?;
        Ok(store.replica.propose_forwarded(cmd).await?.into_result()?)
    }

    /// The replicated store, or 503 on a worker (which holds no store).
    pub fn store(&self) -> Result<Arc<NodeStore>, ApiError> {
        match &*self
            .store
            .read()
            .map_err(|_| ApiError::internal("store state poisoned"))?
        {
            Some(s) => Ok(s.clone()),
            None => Err(ApiError::not_a_manager()),
        }
    }

    /// A reader of the store's tables (see [`Daemon::store`]).
    pub fn reader(&self) -> Result<Reader, ApiError> {
        Ok(self.store()?.reader.clone())
    }

    /// A reader that sees every write committed before this call, for a write that resolves
    /// a name before proposing (remove, rotate, rollback, update): in a cluster this node's
    /// tables may lag the leader's, and a name resolved against them can miss an object whose
    /// creation was already acknowledged (a rotate or delete answering 404 after a create
    /// returned 201) or find one already deleted. So, as `http::read_barrier` does for reads,
    /// confirm a raft read index with the leader and wait until this node applied it. Nothing
    /// is proposed if that fails (503, no quorum).
    pub async fn fresh_reader(&self) -> Result<Reader, ApiError> {
        let store = self.store()?;
        if store.replica.has_peers() {
            store.replica.linearizable_read().await?;
        }
        Ok(store.reader.clone())
    }

    pub(crate) fn open_version(
        &self,
        rec: &ObjectRecord,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let sealed = self.reader()?.sealed(rec, version)?;
        let open = || {
            self.with_ring(|ring| Ok(sealed.open(ring.get(sealed.kek_id)?, &rec.id, version)?))
        };
        match open() {
            // A KEK rotated in on another manager that this one has not adopted yet.
            Err(_) if !self.ring_has(sealed.kek_id) => {
                if let Some(c) = self.reader()?.cluster()? {
                    self.adopt_keks(&c.keks);
                }
                open()
            }
            other => other,
        }
    }

    pub(crate) fn ring_has(&self, id: u32) -> bool {
        matches!(self.keys.read().as_deref(), Ok(Keys::Unlocked { ring, .. }) if ring.has(id))
    }

    /// The object as Docker shows it; configs carry their data, secrets never do.
    pub fn to_object(&self, rec: &ObjectRecord) -> Result<Object, ApiError> {
        let data = if rec.kind == Kind::Config && rec.current > 0 {
            Some(STANDARD.encode(&self.open_version(rec, rec.current)?[..]))
        } else {
            None
        };
        Ok(Object {
            id: rec.id.clone(),
            version: ObjectVersion { index: rec.index },
            created_at: rfc3339(rec.created_ns),
            updated_at: rfc3339(rec.updated_ns),
            spec: Spec {
                name: rec.name.clone(),
                labels: rec.labels.clone(),
                data,
                driver: driver_out(&rec.driver),
                templating: driver_out(&rec.templating),
            },
        })
    }

    /// `lockbox info`.
    pub fn info(&self) -> Result<Info, ApiError> {
        let (lock_state, key_mode) = match self.keys.read().as_deref() {
            Ok(Keys::Unlocked { mode, .. }) => ("unlocked", mode.as_str()),
            Ok(Keys::Locked { .. }) => ("locked", "autolock"),
            Err(_) => return Err(ApiError::internal("key state poisoned")),
        };
        let key_warning = (key_mode == "file").then(|| {
            format!(
                "the key-encryption key is stored in {} next to the data: this protects against a stolen store file only, not a stolen disk or a root user. Use 'lockbox autolock enable' to seal it with an unlock key.",
                self.ring_path.display()
            )
        });
        let audit_records = self.audit.len();
        Ok(Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.data_dir.display().to_string(),
            socket: self.socket.display().to_string(),
            lock_state: lock_state.into(),
            key_mode: key_mode.into(),
            key_warning,
            secrets: self.reader()?.count(Kind::Secret)?,
            configs: self.reader()?.count(Kind::Config)?,
            audit_records,
            raft_index: self
                .store()
                .ok()
                .and_then(|s| s.replica.applied_index().ok().flatten())
                .unwrap_or(0),
            node_id: self.node_id.clone(),
            cluster_id: self.cluster_id.clone(),
        })
    }

    /// `lockbox audit ls [--since]`.
    pub fn audit_list(&self, since: Option<&str>) -> Result<Vec<AuditRecord>, ApiError> {
        let since = since
            .map(parse_since)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let path = self.audit.path().to_owned();
        lockbox_audit::read(&path, since).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// `lockbox audit verify`.
    pub fn audit_verify(&self) -> Result<AuditVerify, ApiError> {
        let path = self.audit.path().to_owned();
        lockbox_audit::verify(&path).map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// `--since` as Docker takes it: an RFC 3339 time, a Unix timestamp, or a duration ago
/// (`10m`, `2h`, `3d`).
pub fn parse_since(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return jiff::Timestamp::from_second(secs).map_err(|e| e.to_string());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("invalid --since value {s:?}: use an RFC 3339 time, a Unix time, or a duration like 10m, 2h, 3d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "invalid --since value {s:?}: use an RFC 3339 time, a Unix time, or a duration like 10m, 2h, 3d"
            ));
        }
    };
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| e.to_string())
}

/// Stops raft and closes the store file, once every request holding it is done.
pub async fn close_store(store: Arc<NodeStore>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut store = store;
    loop {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                drop(s.reader);
                if let Err(e) = s.replica.shutdown().await {
                    tracing::warn!("closing the store: {e}");
                }
                return;
            }
            Err(shared) if tokio::time::Instant::now() < deadline => {
                store = shared;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(_) => {
                tracing::warn!("the store is still in use at shutdown; leaving it to the OS");
                return;
            }
        }
    }
}
