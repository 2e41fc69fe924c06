//! The key state: unlocking (key or Shamir shares), autolock on and off, the unlock key
//! (read and rotate), and KEK rotation with the rewrap of every data key.

use lockbox_audit::Event;
use lockbox_keyring::{KeyMode, RingFile, Sealed, UnlockKey, Zeroizing};
use lockbox_store::{Command, Rewrapped};

use crate::ApiError;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::daemon::{Caller, Daemon, Keys, now_ns};

/// Wrong unlock keys allowed per window before further attempts are refused unseen.
const UNLOCK_FAILURES_PER_WINDOW: u32 = 5;
const UNLOCK_WINDOW: Duration = Duration::from_secs(30);

/// Failed unlocks, counted per window across all callers: each failure is an fsynced audit
/// record, and the key space is large but a caller should not get to search it at disk speed
/// (300 records in 0.5 s before this existed). Past the limit an attempt is refused without
/// trying the key, and the throttle itself is audited once per window.
#[derive(Default)]
struct UnlockThrottle(Mutex<ThrottleWindow>);

#[derive(Default)]
struct ThrottleWindow {
    start: Option<Instant>,
    failures: u32,
    reported: bool,
}

impl UnlockThrottle {
    fn check(&self, d: &Daemon, caller: &Caller) -> Result<(), ApiError> {
        let mut w = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if w.start
            .is_none_or(|s| now.duration_since(s) >= UNLOCK_WINDOW)
        {
            *w = ThrottleWindow {
                start: Some(now),
                ..ThrottleWindow::default()
            };
        }
        if w.failures < UNLOCK_FAILURES_PER_WINDOW {
            return Ok(());
        }
        let wait = w.start.map_or(UNLOCK_WINDOW, |s| {
            UNLOCK_WINDOW.saturating_sub(now.duration_since(s))
        });
        if !w.reported {
            w.reported = true;
            drop(w);
            let _ = d.audit(
                Event::new("unlock-throttled", &caller.actor)
                    .detail("failures", &UNLOCK_FAILURES_PER_WINDOW.to_string())
                    .detail("window_seconds", &UNLOCK_WINDOW.as_secs().to_string()),
            );
        }
        Err(ApiError::new(
            429,
            format!(
                "too many wrong unlock keys ({UNLOCK_FAILURES_PER_WINDOW} in {} s): try again in {} s",
                UNLOCK_WINDOW.as_secs(),
                wait.as_secs().max(1)
            ),
        ))
    }

    fn failed(&self) {
        let mut w = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.failures += 1;
    }
}

impl Daemon {
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
        let throttle = self.extensions.get_or_init(UnlockThrottle::default);
        throttle.check(self, caller)?;
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
                    throttle.failed();
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
            } => {
                // A read of the key is recorded before the key leaves, like a hand-out.
                self.audit(Event::new("unlock-key-read", &caller.actor))?;
                Ok(k.to_text())
            }
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

    /// Autolock on or off. Turning it on also rotates the KEK (and rewraps every data key,
    /// across managers in a cluster), as Swarm rotates its data key when the key sealing it
    /// changes: a `keyring.json` copied while the ring was a plain file must not open what is
    /// written after. If the rotation fails, autolock is on all the same and the key is
    /// returned (it is the only way to unlock); the failure is logged and audited, and
    /// `lockbox kek rotate` retries it.
    pub async fn autolock(
        &self,
        enable: bool,
        caller: &Caller,
    ) -> Result<Option<Zeroizing<String>>, ApiError> {
        let shown = self.set_autolock(enable, caller)?;
        if enable {
            self.rotate_kek_after_key_change(caller).await;
        }
        Ok(shown)
    }

    /// A new unlock key, and with it a new KEK (see [`Daemon::autolock`]).
    pub async fn rotate_unlock_key(&self, caller: &Caller) -> Result<Zeroizing<String>, ApiError> {
        let key = self.unlock_key(true, caller)?;
        self.rotate_kek_after_key_change(caller).await;
        Ok(key)
    }

    /// Rotates the KEK after the unlock key changed; a failure is logged and audited, not
    /// returned (the new unlock key must still reach the caller: it is the only way in).
    pub async fn rotate_kek_after_key_change(&self, caller: &Caller) {
        if let Err(e) = self.rotate_kek(caller).await {
            tracing::error!(
                "the unlock key changed but the KEK could not be rotated: {e}; run 'lockbox kek rotate'"
            );
            let _ = self
                .audit(Event::new("kek-rotate-failed", &caller.actor).detail("error", &e.message));
        }
    }
}
