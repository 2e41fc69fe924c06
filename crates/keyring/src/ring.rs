use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aead::{open_raw, seal_raw};
use crate::{KeyringError, UnlockKey, random_bytes};

/// A key-encryption key with its ring ID.
pub struct Kek {
    id: u32,
    key: Zeroizing<[u8; 32]>,
}

impl Kek {
    /// The ring ID that sealed values record.
    pub fn id(&self) -> u32 {
        self.id
    }
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({}, <redacted>)", self.id)
    }
}

/// How the ring is protected on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// The KEKs sit in a 0600 file next to the store: this protects a stolen store file,
    /// not a stolen disk or a root attacker.
    File,
    /// The KEKs are sealed by an unlock key that never touches the disk.
    Autolock,
}

impl KeyMode {
    /// `file` or `autolock`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::File => "file",
            KeyMode::Autolock => "autolock",
        }
    }
}

/// The in-memory ring: every KEK still needed to open some data key, and the current one
/// that wraps new data keys.
pub struct KeyRing {
    current: u32,
    keks: BTreeMap<u32, Kek>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("ids", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Plain {
    current: u32,
    keks: BTreeMap<u32, String>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    mode: KeyMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plain: Option<Plain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

const SEAL_AAD: &[u8] = b"lockbox/keyring/v1";

impl KeyRing {
    /// A ring with one fresh KEK (ID 1).
    pub fn generate() -> Result<Self, KeyringError> {
        let mut keks = BTreeMap::new();
        keks.insert(
            1,
            Kek {
                id: 1,
                key: random_bytes::<32>()?,
            },
        );
        Ok(Self { current: 1, keks })
    }

    /// The KEK that wraps new data keys.
    pub fn current(&self) -> &Kek {
        &self.keks[&self.current]
    }

    /// The KEK with this ID, if the ring still holds it.
    pub fn get(&self, id: u32) -> Result<&Kek, KeyringError> {
        self.keks.get(&id).ok_or(KeyringError::UnknownKek(id))
    }

    /// Adds a fresh KEK and makes it current; the old ones stay until [`KeyRing::retire`]
    /// so that a crash half-way through a rewrap loses nothing.
    pub fn rotate(&mut self) -> Result<u32, KeyringError> {
        let id = self.keks.keys().max().copied().unwrap_or(0) + 1;
        self.keks.insert(
            id,
            Kek {
                id,
                key: random_bytes::<32>()?,
            },
        );
        self.current = id;
        Ok(id)
    }

    /// Drops every KEK but the current one (after all data keys were rewrapped).
    pub fn retire_old(&mut self) {
        let cur = self.current;
        self.keks.retain(|id, _| *id == cur);
    }

    /// The ring as bytes, for handing it to a joining manager over mutual TLS (and for
    /// backups, sealed by the unlock key). The buffer is plaintext key material.
    pub fn export(&self) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        serde_json::to_vec(&self.to_plain())
            .map(Zeroizing::new)
            .map_err(|e| KeyringError::RingFile {
                path: "<export>".into(),
                reason: e.to_string(),
            })
    }

    /// The inverse of [`KeyRing::export`].
    pub fn import(bytes: &[u8]) -> Result<Self, KeyringError> {
        let p: Plain = serde_json::from_slice(bytes).map_err(|e| KeyringError::RingFile {
            path: "<import>".into(),
            reason: format!("malformed key ring: {e}"),
        })?;
        Self::from_plain(&p, Path::new("<import>"))
    }

    /// Whether the ring holds KEK `id`.
    pub fn has(&self, id: u32) -> bool {
        self.keks.contains_key(&id)
    }

    /// The raw bytes of KEK `id`, to hand it to the other managers sealed under its
    /// predecessor (a cluster KEK rotation).
    pub fn kek_bytes(&self, id: u32) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        Ok(Zeroizing::new(*self.get(id)?.key()))
    }

    /// Adds a KEK received from another manager (a cluster KEK rotation); it becomes current
    /// if `make_current`. An ID already held with the same key is a no-op.
    pub fn insert(&mut self, id: u32, key: Zeroizing<[u8; 32]>, make_current: bool) {
        self.keks.insert(id, Kek { id, key });
        if make_current {
            self.current = id;
        }
    }

    fn to_plain(&self) -> Plain {
        Plain {
            current: self.current,
            keks: self
                .keks
                .iter()
                .map(|(id, k)| (*id, STANDARD.encode(&k.key[..])))
                .collect(),
        }
    }

    fn from_plain(p: &Plain, path: &Path) -> Result<Self, KeyringError> {
        let bad = |reason: &str| KeyringError::RingFile {
            path: path.display().to_string(),
            reason: reason.into(),
        };
        let mut keks = BTreeMap::new();
        for (id, b64) in &p.keks {
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(b64)
                    .map_err(|_| bad("a key is not valid base64"))?,
            );
            let key: [u8; 32] = bytes[..]
                .try_into()
                .map_err(|_| bad("a key is not 32 bytes"))?;
            keks.insert(
                *id,
                Kek {
                    id: *id,
                    key: Zeroizing::new(key),
                },
            );
        }
        if !keks.contains_key(&p.current) {
            return Err(bad("the current key is missing"));
        }
        Ok(Self {
            current: p.current,
            keks,
        })
    }
}

/// The key ring file (`keyring.json`, mode 0600) as read from disk: either usable at once
/// (file mode) or sealed until an unlock key is given (autolock).
pub struct RingFile {
    path: PathBuf,
    disk: OnDisk,
}

impl RingFile {
    /// Reads the ring file; `Ok(None)` when it does not exist yet.
    pub fn read(path: &Path) -> Result<Option<Self>, KeyringError> {
        let err = |reason: String| KeyringError::RingFile {
            path: path.display().to_string(),
            reason,
        };
        let text = match fs::read(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        let disk: OnDisk =
            serde_json::from_slice(&text).map_err(|e| err(format!("malformed: {e}")))?;
        if disk.format != 1 {
            return Err(err(format!("unsupported format {}", disk.format)));
        }
        Ok(Some(Self {
            path: path.to_owned(),
            disk,
        }))
    }

    /// How the file protects the ring.
    pub fn mode(&self) -> KeyMode {
        self.disk.mode
    }

    /// The ring of a file-mode file.
    pub fn open_plain(&self) -> Result<KeyRing, KeyringError> {
        match &self.disk.plain {
            Some(p) => KeyRing::from_plain(p, &self.path),
            None => Err(KeyringError::Locked),
        }
    }

    /// The ring of an autolock file, opened with the unlock key.
    pub fn unlock(&self, key: &UnlockKey) -> Result<KeyRing, KeyringError> {
        let sealed = self.disk.sealed.as_deref().ok_or(KeyringError::RingFile {
            path: self.path.display().to_string(),
            reason: "not sealed".into(),
        })?;
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| KeyringError::RingFile {
                path: self.path.display().to_string(),
                reason: "sealed ring is not valid base64".into(),
            })?;
        let plain = open_raw(key.bytes(), &raw, SEAL_AAD, "key ring")
            .map_err(|_| KeyringError::WrongUnlockKey)?;
        let p: Plain = serde_json::from_slice(&plain).map_err(|e| KeyringError::RingFile {
            path: self.path.display().to_string(),
            reason: format!("malformed sealed ring: {e}"),
        })?;
        KeyRing::from_plain(&p, &self.path)
    }

    /// Writes `ring` in file mode (`unlock == None`) or sealed by `unlock`, atomically:
    /// a crash leaves either the old file or the new one, never a mix.
    pub fn write(
        path: &Path,
        ring: &KeyRing,
        unlock: Option<&UnlockKey>,
    ) -> Result<(), KeyringError> {
        let err = |reason: String| KeyringError::RingFile {
            path: path.display().to_string(),
            reason,
        };
        let plain = ring.to_plain();
        let disk = match unlock {
            None => OnDisk {
                format: 1,
                mode: KeyMode::File,
                plain: Some(plain),
                sealed: None,
            },
            Some(key) => {
                let json =
                    Zeroizing::new(serde_json::to_vec(&plain).map_err(|e| err(e.to_string()))?);
                let sealed = seal_raw(key.bytes(), &json, SEAL_AAD)?;
                OnDisk {
                    format: 1,
                    mode: KeyMode::Autolock,
                    plain: None,
                    sealed: Some(STANDARD.encode(sealed)),
                }
            }
        };
        let bytes =
            Zeroizing::new(serde_json::to_vec_pretty(&disk).map_err(|e| err(e.to_string()))?);
        let tmp = path.with_extension("json.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(format!("cannot create {}: {e}", tmp.display())))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        drop(f);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        // The rename is durable only once the directory entry is.
        if let Some(Ok(d)) = path.parent().map(fs::File::open) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
