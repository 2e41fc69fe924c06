//! Backups: `POST /v1/backup` writes an encrypted, integrity-checked snapshot of the store
//! and the key ring; [`restore`] turns one into a fresh data directory, offline.
//!
//! # File format (`LBXBAK1`)
//!
//! ```text
//! "LBXBAK1\n"                                   magic (8 bytes)
//! {"format":1,"created_at":…,"key":…,…}\n       header: one JSON line, no names, no values
//! nonce ‖ XChaCha20-Poly1305(key, payload,      the sealed payload
//!         aad = "lockbox/backup/v1\0" ‖ header line)
//! CRC-32 (big-endian) of everything above       trailer
//! ```
//!
//! The payload is `u32 BE length ‖ key ring export ‖ store dump` ([`Store::export`], one read
//! transaction): the store holds only sealed values, so a secret's plaintext never enters
//! the file, and the key ring that opens them is inside the AEAD. The header is bound to the
//! payload as associated data, so editing it (a count, the key kind) fails the open.
//!
//! The key is the cluster's unlock key under autolock (`"key":"unlock-key"`), otherwise a
//! fresh random backup key (`"key":"backup-key"`, `LBXKEY-1-…`) that the response carries
//! once in `X-Lockbox-Backup-Key` and the daemon forgets.
//!
//! Telling a wrong key from a damaged file: an AEAD cannot, so the header also carries a key
//! check (the key sealing the empty string under its own AAD), and the trailer's CRC catches
//! accidental damage anywhere, the key check included, before any key is tried. A wrong key
//! fails the key check; a file whose CRC holds but whose payload does not open was edited on
//! purpose, and is refused as damaged.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::{AuditLog, Event};
use lockbox_keyring::{KeyRing, KeyringError, RingFile, UnlockKey, Zeroizing};
use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::{Command, Kind, Reader, Store};
use redb::ReadableDatabase as _;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::identity::Peer;
use lockbox_core::{Caller, Daemon, Keys, NodeStore};

/// How a restored key ring is kept.
pub use lockbox_keyring::KeyMode;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"LBXBAK1\n";
/// The header format this lockbox writes and reads.
pub const FORMAT: u32 = 1;
/// The response header that carries a fresh backup key, once.
pub const KEY_HEADER: &str = "x-lockbox-backup-key";
/// `key` in the header: sealed with the cluster's unlock key (autolock).
pub const KEY_UNLOCK: &str = "unlock-key";
/// `key` in the header: sealed with a backup key made for this backup.
pub const KEY_BACKUP: &str = "backup-key";

const PAYLOAD_AAD: &[u8] = b"lockbox/backup/v1\0";
const KEY_CHECK_AAD: &[u8] = b"lockbox/backup/v1/key-check";
/// The longest header line accepted (it is a few hundred bytes).
const MAX_HEADER: usize = 64 * 1024;

/// The backup's header line: what a backup is, readable without the key. Names and values
/// are never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub created_at: String,
    pub lockbox_version: String,
    pub cluster_id: String,
    /// [`KEY_UNLOCK`] or [`KEY_BACKUP`].
    pub key: String,
    /// base64 of the key sealing the empty string (AAD `lockbox/backup/v1/key-check`).
    pub key_check: String,
    pub secrets: u64,
    pub configs: u64,
    pub services: u64,
    /// Sealed versions, all objects together.
    pub versions: u64,
}

/// Why a backup could not be read or restored. The messages are what `lockbox restore`
/// prints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("this is not a lockbox backup (it does not start with LBXBAK1)")]
    NotABackup,
    #[error("backup is damaged or was not made by lockbox")]
    Damaged,
    #[error(
        "backup format {0} is not supported by this lockbox ({v}); restore it with the lockbox version that made it or a newer one",
        v = env!("CARGO_PKG_VERSION")
    )]
    Unsupported(u32),
    #[error("invalid key string: a backup key looks like LBXKEY-1-…")]
    BadKey,
    #[error("the key does not open this backup")]
    WrongKey,
    #[error("{dir} is not empty ({what}); restore needs a new or empty directory")]
    NotEmpty { dir: String, what: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("restoring the store: {0}")]
    Store(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// CRC-32 (IEEE 802.3, as zlib and gzip compute it).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A backup split into its parts, checked for magic, CRC and format (no key needed).
struct Parts<'a> {
    header: BackupHeader,
    header_line: &'a [u8],
    sealed: &'a [u8],
}

fn split(file: &[u8]) -> Result<Parts<'_>, BackupError> {
    let Some(rest) = file.strip_prefix(MAGIC.as_slice()) else {
        return Err(BackupError::NotABackup);
    };
    if rest.len() < 4 {
        return Err(BackupError::Damaged);
    }
    let (body, trailer) = file.split_at(file.len() - 4);
    if crc32(body).to_be_bytes() != trailer {
        return Err(BackupError::Damaged);
    }
    let rest = &body[MAGIC.len()..];
    let end = rest
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or(BackupError::Damaged)?;
    let (header_line, sealed) = rest.split_at(end + 1);
    // The format is read on its own first, so a newer format with other fields is reported
    // as unsupported rather than as damaged.
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let f: Format = serde_json::from_slice(header_line).map_err(|_| BackupError::Damaged)?;
    if f.format != FORMAT {
        return Err(BackupError::Unsupported(f.format));
    }
    let header: BackupHeader =
        serde_json::from_slice(header_line).map_err(|_| BackupError::Damaged)?;
    if header.key != KEY_UNLOCK && header.key != KEY_BACKUP {
        return Err(BackupError::Damaged);
    }
    Ok(Parts {
        header,
        header_line,
        sealed,
    })
}

/// Reads a backup's header after checking its magic, CRC and format; needs no key.
pub fn read_header(file: &[u8]) -> Result<BackupHeader, BackupError> {
    split(file).map(|p| p.header)
}

fn payload_aad(header_line: &[u8]) -> Vec<u8> {
    [PAYLOAD_AAD, header_line].concat()
}

/// What a backup holds once opened.
struct Opened {
    header: BackupHeader,
    ring: KeyRing,
    dump: Zeroizing<Vec<u8>>,
}

fn open(file: &[u8], key: &UnlockKey) -> Result<Opened, BackupError> {
    let parts = split(file)?;
    let check = STANDARD
        .decode(&parts.header.key_check)
        .map_err(|_| BackupError::Damaged)?;
    key.open(&check, KEY_CHECK_AAD)
        .map_err(|_| BackupError::WrongKey)?;
    let payload = key
        .open(parts.sealed, &payload_aad(parts.header_line))
        .map_err(|_| BackupError::Damaged)?;
    let len = payload
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or(BackupError::Damaged)?;
    let ring_bytes = payload.get(4..4 + len).ok_or(BackupError::Damaged)?;
    let ring = KeyRing::import(ring_bytes).map_err(|_| BackupError::Damaged)?;
    let dump = Zeroizing::new(payload[4 + len..].to_vec());
    Ok(Opened {
        header: parts.header,
        ring,
        dump,
    })
}

/// Counts of a store, and a check that every sealed version's data key opens with `ring`
/// (the values themselves are not opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    secrets: u64,
    configs: u64,
    services: u64,
    versions: u64,
}

fn count_and_check(reader: &Reader, ring: &KeyRing) -> Result<Counts, String> {
    let sealed = reader.all_sealed().map_err(|e| e.to_string())?;
    for (kind, id, version, s) in &sealed {
        let kek = ring.get(s.kek_id).map_err(|e| {
            format!(
                "{} {id} version {version}: {e}: the backup's key ring does not match its store",
                kind.as_str()
            )
        })?;
        s.rewrap(kek, kek, id, *version).map_err(|_| {
            format!(
                "{} {id} version {version}: its data key does not open with the key ring",
                kind.as_str()
            )
        })?;
    }
    Ok(Counts {
        secrets: reader.count(Kind::Secret).map_err(|e| e.to_string())?,
        configs: reader.count(Kind::Config).map_err(|e| e.to_string())?,
        services: reader.services().map_err(|e| e.to_string())?.len() as u64,
        versions: sealed.len() as u64,
    })
}

/// Loads a dump into a throw-away in-memory store, to count and check it.
fn count_dump(dump: &[u8], ring: &KeyRing) -> Result<Counts, String> {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| e.to_string())?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    Store::init_tables(&txn).map_err(|e| e.to_string())?;
    Store::import(&txn, dump).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    count_and_check(&Reader::new(Arc::new(db)), ring)
}

/// A backup as the daemon made it.
pub struct Backup {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    pub header: BackupHeader,
    /// A fresh backup key (no autolock); shown to the caller once, kept nowhere.
    pub new_key: Option<Zeroizing<String>>,
}

/// Backup and restore over the core's store and keys.
pub(crate) trait BackupOps {
    /// `lockbox backup`: the store and the key ring, sealed (see the module docs). Audited
    /// before the bytes leave.
    fn backup(&self, caller: &Caller) -> Result<Backup, ApiError>;
}

impl BackupOps for Daemon {
    /// `lockbox backup`: the store and the key ring, sealed (see the module docs). Audited
    /// before the bytes leave.
    fn backup(&self, caller: &Caller) -> Result<Backup, ApiError> {
        let store = self.store()?;
        let (ring_bytes, dump, unlock, counts) = {
            let mut attempt = 0;
            loop {
                attempt += 1;
                // In a cluster, a KEK rotated in on another manager may not be in the local
                // ring yet: adopt it first (the dump leaves the cluster record behind).
                if let Some(c) = store.reader.cluster()? {
                    self.adopt_keks(&c.keks);
                }
                let (ring_bytes, dump, unlock) = self.snapshot(&store)?;
                let ring = KeyRing::import(&ring_bytes)?;
                match count_dump(&dump, &ring) {
                    Ok(counts) => break (ring_bytes, dump, unlock, counts),
                    Err(_) if attempt < 3 => continue,
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "refusing to write a bad backup: {e}"
                        )));
                    }
                }
            }
        };

        let (key, kind, new_key) = match unlock {
            Some(k) => (k, KEY_UNLOCK, None),
            None => {
                let k = UnlockKey::generate()?;
                let text = k.to_text();
                (k, KEY_BACKUP, Some(text))
            }
        };
        let header = BackupHeader {
            format: FORMAT,
            created_at: jiff::Timestamp::now().to_string(),
            lockbox_version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_id: self.cluster_id.clone(),
            key: kind.to_string(),
            key_check: STANDARD.encode(key.seal(b"", KEY_CHECK_AAD)?),
            secrets: counts.secrets,
            configs: counts.configs,
            services: counts.services,
            versions: counts.versions,
        };
        let mut header_line = serde_json::to_vec(&header).expect("serialisable");
        header_line.push(b'\n');
        let mut payload = Zeroizing::new(Vec::with_capacity(4 + ring_bytes.len() + dump.len()));
        let ring_len = u32::try_from(ring_bytes.len())
            .map_err(|_| ApiError::internal("the key ring is too large for a backup"))?;
        payload.extend_from_slice(&ring_len.to_be_bytes());
        payload.extend_from_slice(&ring_bytes);
        payload.extend_from_slice(&dump);
        let sealed = key.seal(&payload, &payload_aad(&header_line))?;
        drop(payload);

        let mut bytes = Vec::with_capacity(MAGIC.len() + header_line.len() + sealed.len() + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&header_line);
        bytes.extend_from_slice(&sealed);
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());

        self.audit_event(
            Event::new("backup", &caller.actor)
                .detail("key", kind)
                .detail("secrets", &counts.secrets.to_string())
                .detail("configs", &counts.configs.to_string())
                .detail("services", &counts.services.to_string())
                .detail("bytes", &bytes.len().to_string()),
        )?;
        Ok(Backup {
            bytes,
            header,
            new_key,
        })
    }
}

/// A consistent copy of the key ring and the store, for a backup.
pub(crate) trait BackupSnapshot {
    /// The key ring's export, the store's dump and a copy of the unlock key, read under the
    /// key lock: a KEK rotation writes the ring under the write lock before and after its
    /// rewrap, so the exported ring holds every KEK the dump's data keys name.
    fn snapshot(&self, store: &NodeStore) -> Result<Snapshot, ApiError>;
}

impl BackupSnapshot for Daemon {
    /// The key ring's export, the store's dump and a copy of the unlock key, read under the
    /// key lock: a KEK rotation writes the ring under the write lock before and after its
    /// rewrap, so the exported ring holds every KEK the dump's data keys name.
    fn snapshot(&self, store: &NodeStore) -> Result<Snapshot, ApiError> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        let Keys::Unlocked { ring, unlock, .. } = &*keys else {
            return Err(ApiError::locked());
        };
        let ring_bytes = ring.export()?;
        let txn = store
            .replica
            .db()
            .begin_read()
            .map_err(|e| ApiError::internal(format!("cannot read the store: {e}")))?;
        let dump = Store::export(&txn)
            .map_err(|e| ApiError::internal(format!("cannot read the store: {e}")))?;
        let unlock = unlock
            .as_ref()
            .map(|k| UnlockKey::from_raw(k.raw()))
            .transpose()?;
        Ok((ring_bytes, dump, unlock))
    }
}

type Snapshot = (Zeroizing<Vec<u8>>, Vec<u8>, Option<UnlockKey>);

/// `POST /v1/backup`: root callers only (a backup holds every secret, sealed, and the keys
/// that open them).
pub(crate) async fn handler(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(who): ConnectInfo<Peer>,
) -> Response {
    let caller = Caller::uid(who.uid);
    if who.uid != Some(0) {
        let _ = d.audit_event(Event::new("backup-denied", &caller.actor));
        return ApiError::new(
            403,
            "backup needs root: a backup holds every secret (sealed) and the keys that open them; run lockbox backup as root",
        )
        .into_response();
    }
    let b = match d.backup(&caller) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut r = Response::new(Body::from(b.bytes));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(k) = &b.new_key
        && let Ok(mut v) = HeaderValue::from_str(k)
    {
        v.set_sensitive(true);
        h.insert(KEY_HEADER, v);
    }
    *r.status_mut() = StatusCode::OK;
    r
}

/// What [`restore`] put in the new data directory.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub header: BackupHeader,
    pub data_dir: PathBuf,
    pub secrets: u64,
    pub configs: u64,
    pub services: u64,
    pub versions: u64,
    /// How the restored key ring is kept: sealed with the same unlock key (autolock) or in
    /// file mode.
    pub key_mode: KeyMode,
}

/// Refuses a `data_dir` that exists and is not an empty directory, naming what is there.
pub fn check_target(data_dir: &Path) -> Result<(), BackupError> {
    let rd = match std::fs::read_dir(data_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(BackupError::NotEmpty {
                dir: data_dir.display().to_string(),
                what: "it is a file".into(),
            });
        }
        Err(e) => return Err(io(data_dir)(e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let n = names.len();
    names.truncate(5);
    let mut what = names.join(", ");
    if n > 5 {
        what.push_str(&format!(" and {} more", n - 5));
    }
    Err(BackupError::NotEmpty {
        dir: data_dir.display().to_string(),
        what,
    })
}

/// `lockbox restore`, offline (no daemon): checks `file` (magic, CRC, format, the key, the
/// AEAD) and, only if all hold, builds a new data directory at `data_dir` (absent or empty):
/// a fresh one-voter store filled through its raft log ([`Command::Restore`], which leaves
/// out any cluster membership), `keyring.json` (sealed with the same unlock key if the backup
/// was made under autolock, file mode otherwise), and an audit log whose first record is the
/// restore. Every data key is checked against the ring before the directory appears.
///
/// The directory is built beside `data_dir` and renamed into place at the end, so a failure
/// at any step leaves no `data_dir` (or the empty one that was there).
pub async fn restore(
    file: &[u8],
    data_dir: &Path,
    key: &str,
) -> Result<RestoreSummary, BackupError> {
    check_target(data_dir)?;
    // Refuse a damaged or foreign file before looking at the key.
    split(file)?;
    let key = UnlockKey::parse(key).map_err(|_| BackupError::BadKey)?;
    let opened = open(file, &key)?;

    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Io {
            path: data_dir.display().to_string(),
            source: std::io::Error::other("not a directory name"),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let staging = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io(&staging))?;
    }
    match build(&staging, &opened, &key).await {
        Ok((counts, key_mode)) => {
            // An empty directory is replaced by rename(2); a non-empty one (a daemon started
            // on it meanwhile) makes the rename fail.
            if let Err(e) = std::fs::rename(&staging, data_dir) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(io(data_dir)(e));
            }
            if let Ok(d) = std::fs::File::open(&parent) {
                let _ = d.sync_all();
            }
            Ok(RestoreSummary {
                header: opened.header,
                data_dir: data_dir.to_path_buf(),
                secrets: counts.secrets,
                configs: counts.configs,
                services: counts.services,
                versions: counts.versions,
                key_mode,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

async fn build(
    dir: &Path,
    opened: &Opened,
    key: &UnlockKey,
) -> Result<(Counts, KeyMode), BackupError> {
    let store = |e: &dyn std::fmt::Display| BackupError::Store(e.to_string());
    let replica = Replica::open(&dir.join("store.redb"), ReplicaConfig::default())
        .await
        .map_err(|e| store(&e))?;
    let applied = async {
        replica
            .propose(Command::Restore {
                dump: opened.dump.to_vec(),
            })
            .await
            .map_err(|e| store(&e))?
            .into_result()
            .map_err(|e| store(&e))?;
        let reader = Reader::new(replica.db());
        let counts = count_and_check(&reader, &opened.ring).map_err(|e| store(&e))?;
        drop(reader);
        Ok::<_, BackupError>(counts)
    }
    .await;
    let closed = replica.shutdown().await.map_err(|e| store(&e));
    let counts = applied?;
    closed?;
    let h = &opened.header;
    if (
        counts.secrets,
        counts.configs,
        counts.services,
        counts.versions,
    ) != (h.secrets, h.configs, h.services, h.versions)
    {
        return Err(BackupError::Store(format!(
            "the restored store holds {} secrets, {} configs, {} services and {} versions; the backup's header says {}, {}, {} and {}",
            counts.secrets,
            counts.configs,
            counts.services,
            counts.versions,
            h.secrets,
            h.configs,
            h.services,
            h.versions
        )));
    }

    let (seal_with, key_mode) = if h.key == KEY_UNLOCK {
        (Some(key), KeyMode::Autolock)
    } else {
        (None, KeyMode::File)
    };
    RingFile::write(&dir.join("keyring.json"), &opened.ring, seal_with)
        .map_err(|e: KeyringError| store(&e))?;

    let audit_path = dir.join("audit.log");
    let mut audit = AuditLog::open(&audit_path).map_err(|e| store(&e))?;
    let actor = format!("uid:{}", rustix::process::getuid().as_raw());
    audit
        .append(
            Event::new("restore", &actor)
                .detail("backup_created_at", &h.created_at)
                .detail("backup_lockbox_version", &h.lockbox_version)
                .detail("backup_cluster_id", &h.cluster_id)
                .detail("key", &h.key)
                .detail("secrets", &counts.secrets.to_string())
                .detail("configs", &counts.configs.to_string())
                .detail("services", &counts.services.to_string()),
        )
        .map_err(|e| store(&e))?;
    drop(audit);
    Ok((counts, key_mode))
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
