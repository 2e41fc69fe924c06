//! Secrets and configs: create, list, inspect, update, remove, rotate, roll back, and the
//! hand-out of a value (`reveal`), each audited.
use std::collections::BTreeMap;

use lockbox_audit::Event;
use lockbox_keyring::{Sealed, Zeroizing};
use lockbox_proto::{IdResponse, Object, Spec, VersionInfo, VersionResponse};
use lockbox_store::{Command, Kind, NewVersion, ObjectRecord, StoreError, validate};
use subtle::ConstantTimeEq as _;

use crate::ApiError;

use crate::daemon::{Caller, Daemon, decode_data, driver_rec, new_id, now_ns, rfc3339};

impl Daemon {
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

    /// `GET /secrets`, `GET /configs`: the JSON array (and a newline), written one object at
    /// a time as the store yields them, so that the answer is the only thing of its size
    /// in memory (not also every record and every object).
    pub fn list_json(&self, kind: Kind, filters: Option<&str>) -> Result<Vec<u8>, ApiError> {
        self.list_json_where(kind, filters, |_| true)
    }

    /// [`Self::list_json`] of the objects whose name `keep` accepts (a member's grants).
    pub fn list_json_where(
        &self,
        kind: Kind,
        filters: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<u8>, ApiError> {
        self.check_unlocked()?;
        let f = validate::parse_filters(kind, filters)?;
        let mut out = b"[".to_vec();
        self.reader()?.visit(kind, &f, |rec| {
            if !keep(&rec.name) {
                return Ok(());
            }
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &self.to_object(&rec)?)
                .map_err(|e| ApiError::internal(format!("encoding the list: {e}")))
        })?;
        out.extend_from_slice(b"]\n");
        Ok(out)
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
                // Docker's answer, but recorded: a run of these is someone using update as an
                // oracle for the value (only administrators reach this route; see the gate).
                self.audit(
                    Event::new("update-refused", &caller.actor)
                        .object(kind.as_str(), &rec.id, &rec.name)
                        .detail("reason", "Data differs from the current value"),
                )?;
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
    pub(crate) async fn add_version(
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

    /// Labels of an object, for callers that need them (Docker API's stack deploy path).
    pub fn labels(&self, kind: Kind, input: &str) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(self.reader()?.resolve(kind, input)?.labels)
    }
}
