//! Everything a request can do, independent of how it arrived (native API, Docker API).
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::{Event, GroupCommit};
use lockbox_keyring::{KeyMode, KeyRing, RingFile, Sealed, UnlockKey, Zeroizing};
use lockbox_proto::{
    AuditRecord, AuditVerify, Driver, IdResponse, Info, Object, ObjectVersion, Spec, VersionInfo,
    VersionResponse,
};
use lockbox_replication::Replica;
use lockbox_store::{
    Command, DriverRec, Kind, NewVersion, ObjectRecord, Reader, Response, Rewrapped, StoreError,
    validate,
};
use subtle::ConstantTimeEq as _;
use tokio::sync::broadcast;

use crate::ApiError;

/// State that features built on the core keep beside it, one value per type.
///
/// The core never names a feature (services, workloads, agents, the cluster); a feature
/// that needs per-daemon state defines its own type and reaches it through this map, and a
/// feature that must be called back (the cluster starting a worker's agent) installs a hook
/// type that the composition root (serve.rs) fills. So dependencies run one way: features
/// → core, never core → features.
#[derive(Default)]
pub struct Extensions(RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Extensions {
    /// Installs `value` as the one `T` (replacing any earlier one).
    pub fn insert<T: Any + Send + Sync>(&self, value: Arc<T>) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.insert(TypeId::of::<T>(), value);
    }

    /// The one `T`, if installed.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = match self.0.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }

    /// The one `T`, made by `init` the first time it is asked for.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        if let Some(v) = self.get::<T>() {
            return v;
        }
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
        {
            return v;
        }
        let v = Arc::new(init());
        map.insert(TypeId::of::<T>(), v.clone());
        v
    }
}

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

pub(crate) enum Keys {
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
    pub(crate) replica: Replica,
    pub(crate) reader: Reader,
}

/// The daemon's state and operations.
pub struct Daemon {
    /// `None` on a worker node, which holds no store.
    pub(crate) store: RwLock<Option<Arc<NodeStore>>>,
    pub(crate) keys: RwLock<Keys>,
    pub(crate) audit: GroupCommit,
    pub(crate) ring_path: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) keep: u32,
    pub(crate) node_id: String,
    pub(crate) cluster_id: String,
    pub(crate) events: broadcast::Sender<String>,
    /// The features' own state (workloads, agents, the cluster slot, their hooks), held
    /// for them without the core knowing their types: see [`Extensions`].
    pub(crate) extensions: Extensions,
}

/// Go's `time.Time` JSON form: RFC 3339 with nanoseconds, trailing zeros trimmed.
pub fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Now, in nanoseconds since the epoch (times proposed in commands).
pub(crate) fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// A new object ID: 25 base36 characters of 128 random bits, like Swarm's. (IDs ordered by
/// creation time made creates ~18 % faster at 64 clients — a batch then dirties the same
/// B-tree leaves — but short ID prefixes became ambiguous, and Docker users resolve by
/// prefix: the stock-CLI parity test caught it. Random it stays.)
fn new_id() -> Result<String, ApiError> {
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

fn driver_rec(d: &Option<Driver>) -> Option<DriverRec> {
    d.as_ref().map(|d| DriverRec {
        name: d.name.clone(),
        options: d.options.clone(),
    })
}

fn driver_out(d: &Option<DriverRec>) -> Option<Driver> {
    d.as_ref().map(|d| Driver {
        name: d.name.clone(),
        options: d.options.clone(),
    })
}

impl Daemon {
    pub(crate) fn emit(&self, kind: Kind, action: &str, id: &str, name: &str) {
        let ev = serde_json::json!({
            "Type": kind.as_str(),
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
    pub(crate) fn audit_event(&self, e: Event) -> Result<AuditRecord, ApiError> {
        self.audit(e)
    }

    /// The key mode, `None` while locked.
    pub(crate) fn key_mode(&self) -> Option<KeyMode> {
        match self.keys.read().as_deref() {
            Ok(Keys::Unlocked { mode, .. }) => Some(*mode),
            _ => None,
        }
    }

    /// The raw unlock key of an autolocked, unlocked node.
    pub(crate) fn unlock_key_bytes(&self) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
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
    pub(crate) fn adopt_keks(&self, sealed: &[(u32, Sealed)]) {
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
    pub(crate) fn adopt_unlock_key(&self, key: UnlockKey) {
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

    fn audit(&self, e: Event) -> Result<AuditRecord, ApiError> {
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
    pub(crate) async fn propose_audited(
        &self,
        cmd: Command,
        event: Event,
    ) -> Result<Response, ApiError> {
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
    fn with_ring<T>(&self, f: impl FnOnce(&KeyRing) -> Result<T, ApiError>) -> Result<T, ApiError> {
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
    pub(crate) async fn propose(&self, cmd: Command) -> Result<Response, ApiError> {
        let store = self.store()?;
        Ok(store.replica.propose_forwarded(cmd).await?.into_result()?)
    }

    /// The replicated store, or 503 on a worker (which holds no store).
    pub(crate) fn store(&self) -> Result<Arc<NodeStore>, ApiError> {
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
    pub(crate) fn reader(&self) -> Result<Reader, ApiError> {
        Ok(self.store()?.reader.clone())
    }

    /// A reader that sees every write committed before this call, for a write that resolves
    /// a name before proposing (remove, rotate, rollback, update): in a cluster this node's
    /// tables may lag the leader's, and a name resolved against them can miss an object whose
    /// creation was already acknowledged (a rotate or delete answering 404 after a create
    /// returned 201) or find one already deleted. So, as `http::read_barrier` does for reads,
    /// confirm a raft read index with the leader and wait until this node applied it. Nothing
    /// is proposed if that fails (503, no quorum).
    pub(crate) async fn fresh_reader(&self) -> Result<Reader, ApiError> {
        let store = self.store()?;
        if store.replica.has_peers() {
            store.replica.linearizable_read().await?;
        }
        Ok(store.reader.clone())
    }

    fn open_version(
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

    fn ring_has(&self, id: u32) -> bool {
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

    /// `POST /secrets/create`, `POST /configs/create`.
    pub async fn create(
        &self,
        kind: Kind,
        spec: Spec,
        caller: &Caller,
    ) -> Result<IdResponse, ApiError> {
        self.check_unlocked()?;
        validate::name(&spec.name)?;
        let (driver, templating) = match kind {
            Kind::Secret => (driver_rec(&spec.driver), driver_rec(&spec.templating)),
            // Docker drops a Driver sent to /configs/create.
            Kind::Config => (None, driver_rec(&spec.templating)),
        };
        if let Some(d) = &driver {
            if d.name.is_empty() {
                return Err(StoreError::DriverName.into());
            }
            // lockbox has no external secret drivers of its own, so any named one is missing,
            // which is what Docker answers for a plugin it cannot find.
            return Err(ApiError::internal(format!(
                "rpc error: code = Unknown desc = plugin \"{}\" not found",
                d.name
            )));
        }
        let data = decode_data(spec.data.as_deref().unwrap_or(""))?;
        validate::size(kind, data.len())?;
        let id = new_id()?;
        let sealed = self.with_ring(|ring| Ok(Sealed::seal(ring.current(), &id, 1, &data)?))?;
        let value = NewVersion {
            number: 1,
            sealed,
            size: data.len() as u64,
            created_by: caller.actor.clone(),
            rollback_of: None,
        };
        let cmd = Command::Create {
            kind,
            id: id.clone(),
            name: spec.name.clone(),
            labels: spec.labels,
            time_ns: now_ns(),
            driver,
            templating,
            value: Some(value),
        };
        self.propose_audited(
            cmd,
            Event::new("create", &caller.actor)
                .object(kind.as_str(), &id, &spec.name)
                .version(1),
        )
        .await?;
        self.emit(kind, "create", &id, &spec.name);
        Ok(IdResponse { id })
    }

    /// `GET /secrets`, `GET /configs`.
    pub fn list(&self, kind: Kind, filters: Option<&str>) -> Result<Vec<Object>, ApiError> {
        self.check_unlocked()?;
        let f = validate::parse_filters(kind, filters)?;
        self.reader()?
            .list(kind, &f)?
            .iter()
            .map(|r| self.to_object(r))
            .collect()
    }

    /// `GET /secrets/{id}`.
    pub fn inspect(&self, kind: Kind, input: &str) -> Result<Object, ApiError> {
        self.inspect_current(kind, input).map(|(o, _)| o)
    }

    /// [`Daemon::inspect`] and the number of the version the object shows (its current one),
    /// read from the same record: the native API answers both, so a client can tell which
    /// version a config's `Data` is without a second, non-atomic `versions` call.
    pub fn inspect_current(&self, kind: Kind, input: &str) -> Result<(Object, u64), ApiError> {
        self.check_unlocked()?;
        let rec = self.reader()?.resolve(kind, input)?;
        Ok((self.to_object(&rec)?, rec.current))
    }

    /// `POST /secrets/{id}/update?version=N`: labels only, Docker's checks in Docker's order.
    pub async fn update(
        &self,
        kind: Kind,
        input: &str,
        version: Option<&str>,
        spec: Spec,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        self.check_unlocked()?;
        let expected: u64 = version
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid {} version", kind.as_str())))?;
        let rec = self.fresh_reader().await?.resolve(kind, input)?;
        if spec.name != rec.name {
            return Err(StoreError::OnlyLabels.into());
        }
        if let Some(b64) = &spec.data {
            let given = decode_data(b64)?;
            let same = rec.current > 0 && {
                let current = self.open_version(&rec, rec.current)?;
                bool::from(current.as_slice().ct_eq(given.as_slice()))
            };
            if !same {
                return Err(StoreError::OnlyLabels.into());
            }
        }
        let cmd = Command::UpdateLabels {
            kind,
            id: rec.id.clone(),
            expected_index: expected,
            labels: spec.labels,
            time_ns: now_ns(),
        };
        self.propose_audited(
            cmd,
            Event::new("update", &caller.actor).object(kind.as_str(), &rec.id, &rec.name),
        )
        .await?;
        self.emit(kind, "update", &rec.id, &rec.name);
        Ok(())
    }

    /// `DELETE /secrets/{id}`.
    pub async fn remove(&self, kind: Kind, input: &str, caller: &Caller) -> Result<(), ApiError> {
        self.check_unlocked()?;
        let rec = self.fresh_reader().await?.resolve(kind, input)?;
        self.propose_audited(
            Command::Remove {
                kind,
                id: rec.id.clone(),
            },
            Event::new("remove", &caller.actor).object(kind.as_str(), &rec.id, &rec.name),
        )
        .await?;
        self.emit(kind, "remove", &rec.id, &rec.name);
        Ok(())
    }

    /// Appends a version sealed from `data`, retrying if another rotation took the number.
    async fn add_version(
        &self,
        kind: Kind,
        input: &str,
        data: &[u8],
        rollback_of: Option<u64>,
        keep: Option<u32>,
        caller: &Caller,
    ) -> Result<(ObjectRecord, u64), ApiError> {
        validate::size(kind, data.len())?;
        for _ in 0..16 {
            let rec = self.fresh_reader().await?.resolve(kind, input)?;
            let number = rec.next;
            let sealed =
                self.with_ring(|ring| Ok(Sealed::seal(ring.current(), &rec.id, number, data)?))?;
            let value = NewVersion {
                number,
                sealed,
                size: data.len() as u64,
                created_by: caller.actor.clone(),
                rollback_of,
            };
            let cmd = Command::AddVersion {
                kind,
                id: rec.id.clone(),
                value,
                keep: keep.unwrap_or(self.keep),
                time_ns: now_ns(),
            };
            match self.propose(cmd).await {
                Ok(_) => return Ok((rec, number)),
                Err(e) if e.message == StoreError::OutOfSequence.to_string() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::OutOfSequence.into())
    }

    /// `lockbox secret rotate`: a new version under the same name.
    pub async fn rotate(
        &self,
        kind: Kind,
        input: &str,
        data_b64: &str,
        keep: Option<u32>,
        caller: &Caller,
    ) -> Result<VersionResponse, ApiError> {
        self.check_unlocked()?;
        let data = decode_data(data_b64)?;
        let (rec, version) = self
            .add_version(kind, input, &data, None, keep, caller)
            .await?;
        self.audit(
            Event::new("rotate", &caller.actor)
                .object(kind.as_str(), &rec.id, &rec.name)
                .version(version),
        )?;
        self.emit(kind, "rotate", &rec.id, &rec.name);
        Ok(VersionResponse {
            id: rec.id,
            version,
        })
    }

    /// `lockbox secret rollback`: an older version's value becomes current, as a new version.
    pub async fn rollback(
        &self,
        kind: Kind,
        input: &str,
        to: u64,
        caller: &Caller,
    ) -> Result<VersionResponse, ApiError> {
        self.check_unlocked()?;
        let rec = self.fresh_reader().await?.resolve(kind, input)?;
        let data = self.open_version(&rec, to)?;
        let (rec, version) = self
            .add_version(kind, &rec.id, &data, Some(to), None, caller)
            .await?;
        self.audit(
            Event::new("rollback", &caller.actor)
                .object(kind.as_str(), &rec.id, &rec.name)
                .version(version)
                .detail("from_version", &to.to_string()),
        )?;
        self.emit(kind, "rotate", &rec.id, &rec.name);
        Ok(VersionResponse {
            id: rec.id,
            version,
        })
    }

    /// `lockbox secret versions`.
    pub fn versions(&self, kind: Kind, input: &str) -> Result<Vec<VersionInfo>, ApiError> {
        self.check_unlocked()?;
        let rec = self.reader()?.resolve(kind, input)?;
        Ok(rec
            .versions
            .iter()
            .map(|v| VersionInfo {
                version: v.number,
                created_at: rfc3339(v.created_ns),
                size: v.size,
                created_by: v.created_by.clone(),
                current: v.number == rec.current,
                rollback_of: v.rollback_of,
            })
            .collect())
    }

    /// Hands a plaintext value out (delivery). The audit record is on disk before the
    /// value leaves this function.
    pub fn reveal(
        &self,
        kind: Kind,
        input: &str,
        version: Option<u64>,
        caller: &Caller,
        detail: &[(&str, &str)],
    ) -> Result<(ObjectRecord, u64, Zeroizing<Vec<u8>>), ApiError> {
        self.check_unlocked()?;
        let rec = self.reader()?.resolve(kind, input)?;
        let v = version.unwrap_or(rec.current);
        let data = self.open_version(&rec, v)?;
        let mut e = Event::new("handout", &caller.actor)
            .object(kind.as_str(), &rec.id, &rec.name)
            .version(v);
        for (k, val) in detail {
            e = e.detail(k, val);
        }
        self.audit(e)?;
        self.emit(kind, "handout", &rec.id, &rec.name);
        Ok((rec, v, data))
    }

    /// `lockbox cluster unlock --shares`: any K of the N shares rebuild the unlock key.
    pub fn unlock_with_shares(&self, shares: &[String], caller: &Caller) -> Result<(), ApiError> {
        let parsed = shares
            .iter()
            .map(|s| s.parse::<lockbox_keyring::shamir::Share>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let raw = lockbox_keyring::shamir::combine(&parsed)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = UnlockKey::from_raw(&raw)?;
        self.unlock(&key.to_text(), caller)
    }

    /// `lockbox unlock`.
    pub fn unlock(&self, key_text: &str, caller: &Caller) -> Result<(), ApiError> {
        let key = UnlockKey::parse(key_text)?;
        let mut keys = self
            .keys
            .write()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        let ring = match &*keys {
            Keys::Unlocked { .. } => return Err(ApiError::bad_request("lockbox is not locked")),
            Keys::Locked { file } => match file.unlock(&key) {
                Ok(r) => r,
                Err(e) => {
                    drop(keys);
                    let _ = self.audit(Event::new("unlock-failed", &caller.actor));
                    return Err(e.into());
                }
            },
        };
        *keys = Keys::Unlocked {
            ring,
            mode: KeyMode::Autolock,
            unlock: Some(key),
        };
        drop(keys);
        self.audit(Event::new("unlock", &caller.actor))?;
        Ok(())
    }

    /// `lockbox autolock enable|disable`. Enabling returns the new unlock key, shown once.
    pub fn set_autolock(
        &self,
        enable: bool,
        caller: &Caller,
    ) -> Result<Option<Zeroizing<String>>, ApiError> {
        let mut keys = self
            .keys
            .write()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        let Keys::Unlocked { ring, mode, unlock } = &mut *keys else {
            return Err(ApiError::locked());
        };
        let shown = if enable {
            let key = UnlockKey::generate()?;
            RingFile::write(&self.ring_path, ring, Some(&key))?;
            let text = key.to_text();
            *mode = KeyMode::Autolock;
            *unlock = Some(key);
            Some(text)
        } else {
            RingFile::write(&self.ring_path, ring, None)?;
            *mode = KeyMode::File;
            *unlock = None;
            None
        };
        drop(keys);
        self.audit(Event::new(
            if enable {
                "autolock-enable"
            } else {
                "autolock-disable"
            },
            &caller.actor,
        ))?;
        Ok(shown)
    }

    /// `lockbox unlock-key [--rotate]`.
    pub fn unlock_key(&self, rotate: bool, caller: &Caller) -> Result<Zeroizing<String>, ApiError> {
        if rotate {
            {
                let keys = self
                    .keys
                    .read()
                    .map_err(|_| ApiError::internal("key state poisoned"))?;
                match &*keys {
                    Keys::Unlocked {
                        mode: KeyMode::Autolock,
                        ..
                    } => {}
                    Keys::Unlocked { .. } => {
                        return Err(ApiError::bad_request(
                            "autolock is not enabled; there is no unlock key (enable it with 'lockbox autolock enable')",
                        ));
                    }
                    Keys::Locked { .. } => return Err(ApiError::locked()),
                }
            }
            let key = self
                .set_autolock(true, caller)?
                .expect("enable returns a key");
            self.audit(Event::new("unlock-key-rotate", &caller.actor))?;
            return Ok(key);
        }
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked {
                unlock: Some(k), ..
            } => Ok(k.to_text()),
            Keys::Unlocked { .. } => Err(ApiError::bad_request(
                "autolock is not enabled; there is no unlock key (enable it with 'lockbox autolock enable')",
            )),
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    /// `lockbox kek rotate`: a new KEK; every data key is rewrapped, no value is touched.
    pub async fn rotate_kek(&self, caller: &Caller) -> Result<(u32, usize), ApiError> {
        // 1. Add the new KEK and persist the ring with both keys, so a crash at any later
        //    point leaves every data key openable.
        let (old_id, new_id) = {
            let mut keys = self
                .keys
                .write()
                .map_err(|_| ApiError::internal("key state poisoned"))?;
            let Keys::Unlocked { ring, unlock, .. } = &mut *keys else {
                return Err(ApiError::locked());
            };
            let old = ring.current().id();
            let new = ring.rotate()?;
            RingFile::write(&self.ring_path, ring, unlock.as_ref())?;
            (old, new)
        };
        // 1b. In a cluster the other managers learn the new KEK from the store, sealed under
        //     the old one, before any data key depends on it.
        if let Some(c) = self.reader()?.cluster()? {
            let sealed = self.with_ring(|ring| {
                Ok(Sealed::seal(
                    ring.get(old_id)?,
                    lockbox_store::cluster::KEK_OBJECT,
                    u64::from(new_id),
                    &ring.kek_bytes(new_id)?[..],
                )?)
            })?;
            let mut next = c.clone();
            next.keks.push((new_id, sealed));
            next.updated_ns = now_ns();
            self.propose(Command::UpdateCluster {
                cluster: next,
                expected_updated_ns: c.updated_ns,
            })
            .await?;
        }
        // 2. Rewrap every data key under the new KEK, through the log.
        let all = self.reader()?.all_sealed()?;
        let entries = self.with_ring(|ring| {
            let new = ring.get(new_id)?;
            all.iter()
                .map(|(kind, id, version, sealed)| {
                    let old = ring.get(sealed.kek_id)?;
                    Ok(Rewrapped {
                        kind: *kind,
                        id: id.clone(),
                        version: *version,
                        kek_id: new_id,
                        wrapped_dek: sealed.rewrap(old, new, id, *version)?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })?;
        let n = entries.len();
        self.propose(Command::Rewrap { entries }).await?;
        // 2b. The cluster's own secrets (CA key, join tokens, unlock key) move too.
        if let Some(c) = self.reader()?.cluster()? {
            let next = self.with_ring(|ring| {
                let new = ring.get(new_id)?;
                let reseal = |s: &Sealed, object: &str, version: u64| -> Result<Sealed, ApiError> {
                    let plain = s.open(ring.get(s.kek_id)?, object, version)?;
                    Ok(Sealed::seal(new, object, version, &plain)?)
                };
                use lockbox_store::cluster as k;
                let mut n = c.clone();
                n.ca_key = reseal(&c.ca_key, k::CA_KEY_OBJECT, c.ca_version)?;
                n.worker_token = reseal(&c.worker_token, k::WORKER_TOKEN_OBJECT, c.token_version)?;
                n.manager_token =
                    reseal(&c.manager_token, k::MANAGER_TOKEN_OBJECT, c.token_version)?;
                n.unlock_key = c
                    .unlock_key
                    .as_ref()
                    .map(|u| reseal(u, k::UNLOCK_KEY_OBJECT, c.unlock_version))
                    .transpose()?;
                n.updated_ns = now_ns();
                Ok(n)
            })?;
            self.propose(Command::UpdateCluster {
                cluster: next,
                expected_updated_ns: c.updated_ns,
            })
            .await?;
        }
        // 2c. And the new root's key of a CA rotation in progress.
        if let Some((c, Some(r))) = self.reader()?.cluster_and_rotation()? {
            let version = c.ca_version + 1;
            let mut next = r.clone();
            next.new_key = self.with_ring(|ring| {
                let object = lockbox_store::cluster::CA_KEY_OBJECT;
                let plain = r
                    .new_key
                    .open(ring.get(r.new_key.kek_id)?, object, version)?;
                Ok(Sealed::seal(ring.get(new_id)?, object, version, &plain)?)
            })?;
            self.propose(Command::StartCaRotation {
                rotation: next,
                expected_ca_version: c.ca_version,
            })
            .await?;
        }
        // 3. Only now drop the old KEK. (Other managers keep it: harmless, and a KEK
        //    rotation racing on two managers cannot strand either.)
        {
            let mut keys = self
                .keys
                .write()
                .map_err(|_| ApiError::internal("key state poisoned"))?;
            let Keys::Unlocked { ring, unlock, .. } = &mut *keys else {
                return Err(ApiError::locked());
            };
            ring.retire_old();
            RingFile::write(&self.ring_path, ring, unlock.as_ref())?;
        }
        self.audit(
            Event::new("kek-rotate", &caller.actor)
                .detail("old_kek", &old_id.to_string())
                .detail("new_kek", &new_id.to_string())
                .detail("rewrapped", &n.to_string()),
        )?;
        Ok((new_id, n))
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

    /// Labels of an object, for callers that need them (Docker API's stack deploy path).
    pub fn labels(&self, kind: Kind, input: &str) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(self.reader()?.resolve(kind, input)?.labels)
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
pub(crate) async fn close_store(store: Arc<NodeStore>) {
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
