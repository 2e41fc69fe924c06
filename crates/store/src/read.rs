//! Queries: listing with Docker's filters, `{id}` resolution, sealed versions.
use std::sync::Arc;

use lockbox_keyring::Sealed;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _};

use crate::StoreError;
use crate::cluster::{CaRotation, ClusterRecord, NodeRecord};
use crate::machine::{
    CA_ROTATION_KEY, CLUSTER, CLUSTER_KEY, GRANTS, NAMES, OBJECTS, SERVICES, VERSIONS,
    VERSIONS_BY_TIME, VOLUMES, decode, name_key, node_key, object_key, timed_version_key,
    version_key,
};
use crate::model::{GrantRecord, Kind, ObjectRecord, ServiceRecord, VolumeRecord};
use crate::validate::Filters;

/// Read access to the state machine's tables. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    db: Arc<Database>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

fn matches(rec: &ObjectRecord, filters: &Filters) -> bool {
    filters.iter().all(|(key, vals)| match key.as_str() {
        // Several values of one key are ORed, except labels, which must all match.
        "id" => vals.is_empty() || vals.iter().any(|v| rec.id.starts_with(v.as_str())),
        "name" => {
            let lower = rec.name.to_ascii_lowercase();
            vals.is_empty()
                || vals
                    .iter()
                    .any(|v| lower.starts_with(&v.to_ascii_lowercase()))
        }
        "names" => vals.is_empty() || vals.iter().any(|v| rec.name.eq_ignore_ascii_case(v)),
        "label" => vals.iter().all(|v| match v.split_once('=') {
            Some((k, "")) => rec.labels.contains_key(k),
            Some((k, want)) => rec.labels.get(k).is_some_and(|have| have == want),
            None => rec.labels.contains_key(v.as_str()),
        }),
        _ => false,
    })
}

/// A visitor that collects what [`Reader::visit`] hands out.
fn push_to(out: &mut Vec<ObjectRecord>) -> impl FnMut(ObjectRecord) -> Result<(), StoreError> + '_ {
    |rec| {
        out.push(rec);
        Ok(())
    }
}

impl Reader {
    /// Reads through `db`, which holds the state-machine tables.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Every object of `kind` that passes `filters`, sorted by ID (as Docker's daemon
    /// answers an unfiltered list).
    pub fn list(&self, kind: Kind, filters: &Filters) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut out = Vec::new();
        self.visit(kind, filters, push_to(&mut out))?;
        Ok(out)
    }

    /// [`Reader::list`] one record at a time, without holding them all: a list of 100,000
    /// secrets is answered without a vector of 100,000 records beside its JSON.
    pub fn visit<E: From<StoreError>>(
        &self,
        kind: Kind,
        filters: &Filters,
        mut each: impl FnMut(ObjectRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let txn = self.txn()?;
        let Some(ids) = crate::index::candidates(&txn, kind, filters)? else {
            return self.visit_by_scan(kind, filters, each);
        };
        let objects = txn.open_table(OBJECTS).map_err(StoreError::from)?;
        // A BTreeSet iterates in byte order: the order of the objects table's keys.
        for id in ids {
            let raw = objects
                .get(object_key(kind, &id).as_slice())
                .map_err(StoreError::from)?;
            if let Some(v) = raw {
                let rec: ObjectRecord = decode(v.value())?;
                if matches(&rec, filters) {
                    each(rec)?;
                }
            }
        }
        Ok(())
    }

    /// [`Reader::list`] by decoding every object of `kind`: what a list without a narrowing
    /// filter has to do, and the reference the indexes are tested against.
    #[doc(hidden)]
    pub fn list_by_scan(
        &self,
        kind: Kind,
        filters: &Filters,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut out = Vec::new();
        self.visit_by_scan(kind, filters, push_to(&mut out))?;
        Ok(out)
    }

    fn visit_by_scan<E: From<StoreError>>(
        &self,
        kind: Kind,
        filters: &Filters,
        mut each: impl FnMut(ObjectRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let txn = self.txn()?;
        let objects = txn.open_table(OBJECTS).map_err(StoreError::from)?;
        let prefix = [kind.tag()];
        for row in objects
            .range(prefix.as_slice()..)
            .map_err(StoreError::from)?
        {
            let (k, v) = row.map_err(StoreError::from)?;
            if k.value().first() != Some(&kind.tag()) {
                break;
            }
            let rec: ObjectRecord = decode(v.value())?;
            if matches(&rec, filters) {
                each(rec)?;
            }
        }
        Ok(())
    }

    /// How many objects of `kind` there are.
    pub fn count(&self, kind: Kind) -> Result<u64, StoreError> {
        let txn = self.txn()?;
        let objects = txn.open_table(OBJECTS)?;
        let mut n = 0;
        // Keys only: no record is decoded.
        for row in objects.range([kind.tag()].as_slice()..)? {
            let (k, _) = row?;
            if k.value().first() != Some(&kind.tag()) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The object with exactly this ID.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<ObjectRecord>, StoreError> {
        let txn = self.txn()?;
        let objects = txn.open_table(OBJECTS)?;
        let raw = objects.get(object_key(kind, id).as_slice())?;
        raw.map(|v| decode(v.value())).transpose()
    }

    /// Docker's `{id}` resolution: exact ID, then exact name (case-insensitive), then ID
    /// prefix; none → not found, several → ambiguous.
    pub fn resolve(&self, kind: Kind, input: &str) -> Result<ObjectRecord, StoreError> {
        if input.is_empty() {
            return Err(StoreError::NotFound(kind, input.to_owned()));
        }
        if let Some(r) = self.get(kind, input)? {
            return Ok(r);
        }
        let by_name = {
            let txn = self.txn()?;
            let names = txn.open_table(NAMES)?;
            let raw = names.get(name_key(kind, input).as_slice())?;
            raw.map(|v| String::from_utf8_lossy(v.value()).into_owned())
        };
        if let Some(id) = by_name
            && let Some(r) = self.get(kind, &id)?
        {
            return Ok(r);
        }
        let mut hits = self.list(
            kind,
            &Filters::from([("id".to_string(), vec![input.to_string()])]),
        )?;
        match hits.len() {
            0 => Err(StoreError::NotFound(kind, input.to_owned())),
            1 => Ok(hits.remove(0)),
            n => Err(StoreError::Ambiguous(kind, input.to_owned(), n)),
        }
    }

    /// The sealed value of one version.
    pub fn sealed(&self, rec: &ObjectRecord, version: u64) -> Result<Sealed, StoreError> {
        let txn = self.txn()?;
        let timed = txn.open_table(VERSIONS_BY_TIME)?;
        let key = timed_version_key(rec.kind, &rec.id, rec.created_ns, version);
        let raw = match timed.get(key.as_slice())? {
            Some(v) => Some(v),
            // Written before `versions.by-time` existed.
            None => txn
                .open_table(VERSIONS)?
                .get(version_key(rec.kind, &rec.id, version).as_slice())?,
        };
        match raw {
            Some(v) => decode(v.value()),
            None => Err(StoreError::NoSuchVersion(
                rec.kind,
                rec.name.clone(),
                version,
            )),
        }
    }

    /// Every sealed version in the store, for KEK rotation.
    pub fn all_sealed(&self) -> Result<Vec<(Kind, String, u64, Sealed)>, StoreError> {
        let mut out = Vec::new();
        for kind in [Kind::Secret, Kind::Config] {
            for rec in self.list(kind, &Filters::new())? {
                for v in &rec.versions {
                    out.push((kind, rec.id.clone(), v.number, self.sealed(&rec, v.number)?));
                }
            }
        }
        Ok(out)
    }

    /// Every row of a table of records, in key order.
    fn all_rows<T: for<'a> serde::Deserialize<'a>>(
        &self,
        table: redb::TableDefinition<'static, &[u8], &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Every service, by name.
    pub fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        self.all_rows(SERVICES)
    }

    /// Every volume of the volume driver, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        self.all_rows(VOLUMES)
    }

    /// Every grant, by subject then pattern.
    pub fn grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        self.all_rows(GRANTS)
    }

    /// One volume by its exact name.
    pub fn volume(&self, name: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(VOLUMES)?;
        table
            .get(name.as_bytes())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Number of rows in the objects table (cheap, for `info`).
    pub fn object_rows(&self) -> Result<u64, StoreError> {
        let txn = self.txn()?;
        Ok(txn.open_table(OBJECTS)?.len()?)
    }

    /// The cluster record, once `cluster init` ran.
    pub fn cluster(&self) -> Result<Option<ClusterRecord>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(CLUSTER)?;
        let raw = table.get(CLUSTER_KEY)?;
        raw.map(|v| decode(v.value())).transpose()
    }

    /// The cluster record and the CA rotation in progress, read together: a rotation
    /// finishing between two separate reads would pair the old root with no rotation.
    pub fn cluster_and_rotation(
        &self,
    ) -> Result<Option<(ClusterRecord, Option<CaRotation>)>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(CLUSTER)?;
        let Some(cluster) = table.get(CLUSTER_KEY)? else {
            return Ok(None);
        };
        let rotation = table
            .get(CA_ROTATION_KEY)?
            .map(|v| decode(v.value()))
            .transpose()?;
        Ok(Some((decode(cluster.value())?, rotation)))
    }

    /// One node's record.
    pub fn node(&self, id: u64) -> Result<Option<NodeRecord>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(CLUSTER)?;
        let raw = table.get(node_key(id).as_slice())?;
        raw.map(|v| decode(v.value())).transpose()
    }

    /// Every node, by raft ID.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let txn = self.txn()?;
        let table = txn.open_table(CLUSTER)?;
        let mut out = Vec::new();
        for row in table.range(b"node/".as_slice()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(b"node/") {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}
