//! Secondary indexes for listing with Docker's filters, so that a filtered list reads the
//! records it returns instead of decoding every record of the kind.
//!
//! `names` (kind, lowercased name → ID) already answers `name` (prefix) and `names` (exact);
//! `objects` keys answer `id` (prefix). This module adds the label index and the planner
//! that picks, for one filter set, the smallest of those candidate sets. The result is
//! always checked against every filter ([`crate::read`]'s `matches`), so an index only
//! narrows what is read: it cannot change an answer.
//!
//! The label index is derived state: it is not part of snapshots or dumps (they carry the
//! objects, and an import or restore rebuilds it), and a store written before it existed
//! gets it built the first time this version opens the file.
use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::StoreError;
use crate::machine::{NAMES, OBJECTS, decode};
use crate::model::{Kind, ObjectRecord};
use crate::validate::Filters;

/// (kind, label key, label value, object ID) → nothing; see [`label_key`].
pub(crate) const LABELS: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("index.labels");

/// The kind's tag, then the label's key and value each with its length in front (so a key
/// that is a prefix of another, or holds any byte, cannot be confused with it), then the ID.
fn label_prefix(kind: Kind, key: &str, value: Option<&str>) -> Vec<u8> {
    let mut k = vec![kind.tag()];
    let mut field = |s: &str| {
        k.extend_from_slice(&(s.len() as u32).to_be_bytes());
        k.extend_from_slice(s.as_bytes());
    };
    field(key);
    if let Some(v) = value {
        field(v);
    }
    k
}

fn label_key(kind: Kind, key: &str, value: &str, id: &str) -> Vec<u8> {
    let mut k = label_prefix(kind, key, Some(value));
    k.extend_from_slice(id.as_bytes());
    k
}

/// Brings the label index from `old` labels to `new` ones for one object (`None`: the
/// object did not exist, or no longer does).
pub(crate) fn relabel(
    txn: &WriteTransaction,
    kind: Kind,
    id: &str,
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(LABELS)?;
    let empty = BTreeMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    for (k, v) in old {
        if new.get(k) != Some(v) {
            table.remove(label_key(kind, k, v, id).as_slice())?;
        }
    }
    for (k, v) in new {
        if old.get(k) != Some(v) {
            table.insert(label_key(kind, k, v, id).as_slice(), [].as_slice())?;
        }
    }
    Ok(())
}

/// Rebuilds the label index from the objects table (after an import or a restore, which
/// write objects directly, and on the first open of a store older than the index).
pub(crate) fn rebuild(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(LABELS)?;
    let mut table = txn.open_table(LABELS)?;
    let objects = txn.open_table(OBJECTS)?;
    for row in objects.iter()? {
        let (_, v) = row?;
        let rec: ObjectRecord = decode(v.value())?;
        for (k, val) in &rec.labels {
            table.insert(
                label_key(rec.kind, k, val, &rec.id).as_slice(),
                [].as_slice(),
            )?;
        }
    }
    Ok(())
}

/// Creates the label index if this store has none yet, building it from the objects.
pub(crate) fn ensure(txn: &WriteTransaction) -> Result<(), StoreError> {
    let exists = txn
        .list_tables()?
        .any(|t| redb::TableHandle::name(&t) == redb::TableHandle::name(&LABELS));
    if !exists {
        rebuild(txn)?;
    }
    Ok(())
}

/// Every key of `table` that starts with `prefix`, with the prefix cut off.
fn suffixes<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), StoreError> {
    for row in table.range(prefix..)? {
        let (k, v) = row?;
        let Some(rest) = k.value().strip_prefix(prefix) else {
            break;
        };
        each(rest, v.value());
    }
    Ok(())
}

/// The IDs that may pass `filters`, from the smallest index that answers one of them, or
/// `None` when no filter narrows the list (every object is a candidate).
pub(crate) fn candidates(
    txn: &redb::ReadTransaction,
    kind: Kind,
    filters: &Filters,
) -> Result<Option<BTreeSet<String>>, StoreError> {
    let id_text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut best: Option<BTreeSet<String>> = None;
    let mut narrow = |set: BTreeSet<String>| {
        if best.as_ref().is_none_or(|b| set.len() < b.len()) {
            best = Some(set);
        }
    };
    let tag = [kind.tag()];
    for (key, vals) in filters {
        if vals.is_empty() {
            continue;
        }
        match key.as_str() {
            "names" | "name" => {
                let names = txn.open_table(NAMES)?;
                let mut set = BTreeSet::new();
                for v in vals {
                    let mut p = tag.to_vec();
                    p.extend_from_slice(v.to_ascii_lowercase().as_bytes());
                    if key == "names" {
                        if let Some(id) = names.get(p.as_slice())? {
                            set.insert(id_text(id.value()));
                        }
                    } else {
                        suffixes(&names, &p, |_, id| {
                            set.insert(id_text(id));
                        })?;
                    }
                }
                narrow(set);
            }
            "id" => {
                let objects = txn.open_table(OBJECTS)?;
                let mut set = BTreeSet::new();
                for v in vals {
                    let mut p = tag.to_vec();
                    p.extend_from_slice(v.as_bytes());
                    suffixes(&objects, &p, |rest, _| {
                        set.insert(format!("{v}{}", id_text(rest)));
                    })?;
                }
                narrow(set);
            }
            "label" => {
                // Every label filter must hold: the candidates of one are enough; the
                // smallest is found by trying each.
                let labels = txn.open_table(LABELS)?;
                for v in vals {
                    let prefix = match v.split_once('=') {
                        Some((k, "")) => label_prefix(kind, k, None),
                        Some((k, want)) => label_prefix(kind, k, Some(want)),
                        None => label_prefix(kind, v, None),
                    };
                    let exact = matches!(v.split_once('='), Some((_, w)) if !w.is_empty());
                    let mut set = BTreeSet::new();
                    suffixes(&labels, &prefix, |rest, _| {
                        let id = if exact {
                            rest
                        } else {
                            // Skip the value (length, bytes) to reach the ID.
                            skip_field(rest)
                        };
                        set.insert(id_text(id));
                    })?;
                    narrow(set);
                }
            }
            // An unknown key matches nothing (see `matches`); the caller's check says so.
            _ => {}
        }
    }
    Ok(best)
}

/// What follows one length-prefixed field.
fn skip_field(b: &[u8]) -> &[u8] {
    let Some((len, rest)) = b.split_first_chunk::<4>() else {
        return &[];
    };
    let len = u32::from_be_bytes(*len) as usize;
    rest.get(len..).unwrap_or(&[])
}
