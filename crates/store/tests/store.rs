//! The state machine at its API boundary: apply commands in redb transactions, read back.
use std::collections::BTreeMap;
use std::sync::Arc;

use lockbox_keyring::{KeyRing, Sealed};
use lockbox_store::validate::{self, parse_filters};
use lockbox_store::{
    CaRotation, ClusterRecord, Command, Kind, NewVersion, NodeRecord, NodeRole, Reader, Response,
    Store, StoreError, object_id,
};
use redb::ReadableDatabase as _;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<redb::Database>,
    index: u64,
    ring: KeyRing,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("s.redb")).unwrap());
        let txn = db.begin_write().unwrap();
        Store::init_tables(&txn).unwrap();
        txn.commit().unwrap();
        Self {
            _dir: dir,
            db,
            index: 0,
            ring: KeyRing::generate().unwrap(),
        }
    }
    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        let txn = self.db.begin_write().unwrap();
        let r = Store::apply(&txn, self.index, &cmd);
        txn.commit().unwrap();
        r
    }
    fn reader(&self) -> Reader {
        Reader::new(self.db.clone())
    }
    fn version(&self, id: &str, n: u64, data: &[u8]) -> NewVersion {
        NewVersion {
            number: n,
            sealed: Sealed::seal(self.ring.current(), id, n, data).unwrap(),
            size: data.len() as u64,
            created_by: "uid:0".into(),
            rollback_of: None,
        }
    }
    fn create(&mut self, kind: Kind, id: &str, name: &str, labels: &[(&str, &str)]) -> Response {
        let value = Some(self.version(id, 1, b"v1"));
        self.apply(Command::Create {
            kind,
            id: id.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_ns: 1_700_000_000_000_000_000,
            driver: None,
            templating: None,
            value,
        })
    }
}

#[test]
fn ids_look_like_swarm_ids() {
    let id = object_id([0xff; 16]);
    assert_eq!(id.len(), 25);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert_eq!(object_id([0; 16]), "0".repeat(25));
}

#[test]
fn name_rules_match_docker() {
    for ok in ["r", "rs..x", "rs__x", &"a".repeat(64), "A-b_c.D9"] {
        assert!(validate::name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "rs_end_",
        "rs_end.",
        "rs_end-",
        "_rs_bad",
        "rs bad",
        "rs_bad/x",
        "rs:x",
        "rs_ü",
        &"a".repeat(65),
    ] {
        assert_eq!(
            validate::name(bad).unwrap_err(),
            StoreError::InvalidName,
            "{bad}"
        );
    }
    assert_eq!(
        validate::name("").unwrap_err().to_string(),
        "rpc error: code = InvalidArgument desc = name must be provided"
    );
    assert!(validate::size(Kind::Secret, 511_999).is_ok());
    assert_eq!(
        validate::size(Kind::Secret, 512_000)
            .unwrap_err()
            .to_string(),
        "rpc error: code = InvalidArgument desc = secret data must be larger than 0 and less than 512000 bytes"
    );
    assert!(validate::size(Kind::Config, 1_023_999).is_ok());
    assert_eq!(
        validate::size(Kind::Config, 0).unwrap_err().to_string(),
        "rpc error: code = InvalidArgument desc = config data must be larger than 0 and less than 1024000 bytes"
    );
}

#[test]
fn create_is_case_insensitively_unique_and_preserves_case() {
    let mut f = Fixture::new();
    assert_eq!(
        f.create(Kind::Secret, "aaaa", "rs_Case", &[]),
        Response::Created { id: "aaaa".into() }
    );
    let r = f.create(Kind::Secret, "bbbb", "rs_case", &[]);
    assert_eq!(
        r,
        Response::Failed(StoreError::AlreadyExists(Kind::Secret, "rs_case".into()))
    );
    assert_eq!(
        r.into_result().unwrap_err().to_string(),
        "rpc error: code = AlreadyExists desc = secret rs_case already exists"
    );
    // A config may share a secret's name.
    assert!(matches!(
        f.create(Kind::Config, "cccc", "rs_case", &[]),
        Response::Created { .. }
    ));
    let got = f.reader().resolve(Kind::Secret, "RS_CASE").unwrap();
    assert_eq!(got.name, "rs_Case");
    assert_eq!(got.index, 1);
}

#[test]
fn resolution_order_and_messages() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "6abc", "one", &[]);
    f.create(Kind::Secret, "6abd", "two", &[]);
    f.create(Kind::Secret, "7xyz", "6abc0", &[]);
    let r = f.reader();
    assert_eq!(r.resolve(Kind::Secret, "6abc").unwrap().name, "one"); // exact ID
    assert_eq!(r.resolve(Kind::Secret, "6ABC0").unwrap().id, "7xyz"); // name beats prefix
    assert_eq!(r.resolve(Kind::Secret, "7").unwrap().name, "6abc0"); // 1-char prefix
    assert_eq!(
        r.resolve(Kind::Secret, "6").unwrap_err().to_string(),
        "secret 6 is ambiguous (2 matches found)"
    );
    assert_eq!(
        r.resolve(Kind::Secret, "nope").unwrap_err().to_string(),
        "secret nope not found"
    );
    assert_eq!(
        r.resolve(Kind::Config, "nope").unwrap_err().to_string(),
        "config nope not found"
    );
    // ID prefix is case-sensitive.
    assert!(r.resolve(Kind::Secret, "7XY").is_err());
}

#[test]
fn filters_follow_docker_rules() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "a1", "rs_two", &[("env", "prod"), ("k", "v")]);
    f.create(Kind::Secret, "a2", "rs_one", &[("env", "dev")]);
    f.create(Kind::Secret, "b3", "other", &[]);
    let r = f.reader();
    let names = |json: &str| -> Vec<String> {
        let fl = parse_filters(Kind::Secret, Some(json)).unwrap();
        r.list(Kind::Secret, &fl)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    };
    assert_eq!(names(r#"{"name":{"RS_":true}}"#), ["rs_two", "rs_one"]);
    assert_eq!(names(r#"{"name":["two"]}"#), Vec::<String>::new()); // prefix, not substring
    // `false` still names the term, as in Docker (its Args.Get returns the map's keys).
    assert_eq!(names(r#"{"name":{"rs_one":false}}"#), ["rs_one"]);
    assert_eq!(names(r#"{"names":{"RS_ONE":true}}"#), ["rs_one"]);
    assert_eq!(names(r#"{"id":{"a":true}}"#), ["rs_two", "rs_one"]);
    assert_eq!(names(r#"{"id":{"A":true}}"#), Vec::<String>::new());
    assert_eq!(names(r#"{"label":{"env":true}}"#), ["rs_two", "rs_one"]);
    assert_eq!(names(r#"{"label":{"env=prod":true}}"#), ["rs_two"]);
    assert_eq!(names(r#"{"label":{"env=":true}}"#), ["rs_two", "rs_one"]);
    assert_eq!(names(r#"{"label":{"env":true,"k=v":true}}"#), ["rs_two"]); // labels AND
    assert_eq!(
        names(r#"{"name":{"rs_":true},"label":{"env=dev":true}}"#),
        ["rs_one"]
    ); // keys AND
    assert_eq!(
        parse_filters(Kind::Secret, Some(r#"{"bogus":{"x":true}}"#))
            .unwrap_err()
            .to_string(),
        "invalid filter 'bogus'"
    );
    assert_eq!(
        parse_filters(Kind::Config, Some(r#"{"names":{"x":true}}"#))
            .unwrap_err()
            .to_string(),
        "invalid filter 'names'"
    );
    // JSON of the wrong shape is refused the same way, whichever key it is under.
    // Values inside the term map must be booleans, list items strings (security finding 8:
    // these returned every secret, and `ls -q --filter … | xargs rm` removed them all).
    for bad in [
        "[1]",
        r#"{"name":5}"#,
        r#"{"label":"x"}"#,
        "null",
        r#"{"name":{"x":"y"}}"#,
        r#"{"name":[1,2]}"#,
        r#"{"name":["rs_one",null]}"#,
    ] {
        let e = parse_filters(Kind::Secret, Some(bad)).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter", "{bad}");
    }
    // Keys are checked after the shape: an unknown key is named.
    assert_eq!(
        validate::parse_filter_map(Some(r#"{"type":["secret"]}"#)).unwrap()["type"],
        ["secret"]
    );
    // Not JSON at all: Engine 23+'s answer, 400 `invalid filter`.
    let e = parse_filters(Kind::Secret, Some("garbage")).unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "invalid filter")
    );
}

#[test]
fn label_update_checks_sequence_and_moves_the_global_index() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "s1", "x", &[("a", "1")]);
    f.create(Kind::Secret, "s2", "y", &[]);
    let stale = Command::UpdateLabels {
        kind: Kind::Secret,
        id: "s1".into(),
        expected_index: 2,
        labels: BTreeMap::new(),
        time_ns: 5,
    };
    assert_eq!(f.apply(stale), Response::Failed(StoreError::OutOfSequence));
    let ok = Command::UpdateLabels {
        kind: Kind::Secret,
        id: "s1".into(),
        expected_index: 1,
        labels: BTreeMap::from([("b".into(), "2".into())]),
        time_ns: 7,
    };
    assert_eq!(f.apply(ok), Response::Ok);
    let rec = f.reader().get(Kind::Secret, "s1").unwrap().unwrap();
    assert_eq!(rec.index, 4); // the global index, not a per-object counter
    assert_eq!(rec.labels, BTreeMap::from([("b".into(), "2".into())]));
    assert_eq!(rec.updated_ns, 7);
}

#[test]
fn versions_rotate_prune_and_destroy_old_keys() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "s", "db", &[]);
    for n in 2..=5u64 {
        let value = f.version("s", n, format!("v{n}").as_bytes());
        let r = f.apply(Command::AddVersion {
            kind: Kind::Secret,
            id: "s".into(),
            value,
            keep: 2,
            time_ns: n as i64,
        });
        assert!(
            matches!(r, Response::Versioned { version, .. } if version == n),
            "{r:?}"
        );
    }
    let rec = f.reader().get(Kind::Secret, "s").unwrap().unwrap();
    assert_eq!(rec.current, 5);
    assert_eq!(
        rec.versions.iter().map(|v| v.number).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let r = f.reader();
    assert_eq!(
        &r.sealed(&rec, 5)
            .unwrap()
            .open(f.ring.current(), "s", 5)
            .unwrap()[..],
        b"v5"
    );
    assert_eq!(
        r.sealed(&rec, 1).unwrap_err().to_string(),
        "secret db has no version 1"
    );
    // A stale version number (a lost race) is refused, not applied twice.
    let value = f.version("s", 5, b"again");
    assert_eq!(
        f.apply(Command::AddVersion {
            kind: Kind::Secret,
            id: "s".into(),
            value,
            keep: 2,
            time_ns: 9
        }),
        Response::Failed(StoreError::OutOfSequence)
    );
}

#[test]
fn remove_destroys_everything_and_frees_the_name() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "s", "db", &[]);
    assert_eq!(
        f.apply(Command::Remove {
            kind: Kind::Secret,
            id: "s".into()
        }),
        Response::Ok
    );
    assert!(f.reader().get(Kind::Secret, "s").unwrap().is_none());
    assert!(f.reader().all_sealed().unwrap().is_empty());
    assert!(matches!(
        f.create(Kind::Secret, "t", "DB", &[]),
        Response::Created { .. }
    ));
    assert_eq!(
        f.apply(Command::Remove {
            kind: Kind::Secret,
            id: "zz".into()
        })
        .into_result()
        .unwrap_err()
        .to_string(),
        "secret zz not found"
    );
}

#[test]
fn export_import_round_trips_byte_identically() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "s", "db", &[("k", "v")]);
    f.create(Kind::Config, "c", "cfg", &[]);
    let snap = Store::export(&f.db.begin_read().unwrap()).unwrap();
    let g = Fixture::new();
    let txn = g.db.begin_write().unwrap();
    Store::import(&txn, &snap).unwrap();
    txn.commit().unwrap();
    assert_eq!(Store::export(&g.db.begin_read().unwrap()).unwrap(), snap);
    assert_eq!(
        g.reader().resolve(Kind::Secret, "db").unwrap().labels["k"],
        "v"
    );
}

mod determinism {
    //! Invariant 2: any sequence of commands applied to two replicas gives byte-identical
    //! state, and a refused command changes nothing.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Create(u8, u8),
        Label(u8, u64),
        Remove(u8),
        Rotate(u8, u64, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u8..4).prop_map(|(i, n)| Op::Create(i, n)),
            (0u8..6, 0u64..40).prop_map(|(i, v)| Op::Label(i, v)),
            (0u8..6).prop_map(Op::Remove),
            (0u8..6, 1u64..8, 0u32..3).prop_map(|(i, n, k)| Op::Rotate(i, n, k)),
        ]
    }

    /// Commands are built once (sealed once), then applied to both replicas: replicas
    /// receive the same bytes, as they do from the raft log.
    fn commands(ops: &[Op], ring: &KeyRing) -> Vec<Command> {
        ops.iter()
            .enumerate()
            .map(|(t, op)| match op {
                Op::Create(i, n) => Command::Create {
                    kind: if i % 2 == 0 {
                        Kind::Secret
                    } else {
                        Kind::Config
                    },
                    id: format!("id{i}"),
                    name: format!("name{n}"),
                    labels: BTreeMap::from([("t".to_string(), t.to_string())]),
                    time_ns: t as i64,
                    driver: None,
                    templating: None,
                    value: Some(NewVersion {
                        number: 1,
                        sealed: Sealed::seal(ring.current(), &format!("id{i}"), 1, b"v").unwrap(),
                        size: 1,
                        created_by: "uid:0".into(),
                        rollback_of: None,
                    }),
                },
                Op::Label(i, v) => Command::UpdateLabels {
                    kind: Kind::Secret,
                    id: format!("id{i}"),
                    expected_index: *v,
                    labels: BTreeMap::from([("x".to_string(), v.to_string())]),
                    time_ns: t as i64,
                },
                Op::Remove(i) => Command::Remove {
                    kind: Kind::Secret,
                    id: format!("id{i}"),
                },
                Op::Rotate(i, n, keep) => Command::AddVersion {
                    kind: Kind::Secret,
                    id: format!("id{i}"),
                    value: NewVersion {
                        number: *n,
                        sealed: Sealed::seal(ring.current(), &format!("id{i}"), *n, b"w").unwrap(),
                        size: 1,
                        created_by: "uid:0".into(),
                        rollback_of: None,
                    },
                    keep: *keep,
                    time_ns: t as i64,
                },
            })
            .collect()
    }

    fn snapshot(f: &Fixture) -> Vec<u8> {
        Store::export(&f.db.begin_read().unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn replicas_agree_byte_for_byte(ops in proptest::collection::vec(op(), 1..40)) {
            let ring = KeyRing::generate().unwrap();
            let cmds = commands(&ops, &ring);
            let (mut a, mut b) = (Fixture::new(), Fixture::new());
            for c in &cmds {
                let before = snapshot(&a);
                let ra = a.apply(c.clone());
                let rb = b.apply(c.clone());
                prop_assert_eq!(&ra, &rb);
                if matches!(ra, Response::Failed(_)) {
                    prop_assert_eq!(before, snapshot(&a), "a refused command changed the state");
                }
            }
            prop_assert_eq!(snapshot(&a), snapshot(&b));
        }
    }
}

fn cluster_record(f: &Fixture) -> ClusterRecord {
    let seal = |object: &str| Sealed::seal(f.ring.current(), object, 1, b"secret").unwrap();
    ClusterRecord {
        cluster_id: "c1".into(),
        created_ns: 1,
        updated_ns: 1,
        ca_cert: b"old root".to_vec(),
        ca_key: seal("cluster/ca-key"),
        ca_version: 1,
        worker_token: seal("cluster/token/worker"),
        manager_token: seal("cluster/token/manager"),
        token_version: 1,
        unlock_key: None,
        unlock_version: 1,
        keks: Vec::new(),
        cert_validity_s: 3600,
        revoked: Vec::new(),
    }
}

fn node_record(id: u64, fingerprint: &[u8]) -> NodeRecord {
    NodeRecord {
        id,
        role: NodeRole::Manager,
        addr: "127.0.0.1:1".into(),
        hostname: "h".into(),
        labels: BTreeMap::new(),
        availability: "active".into(),
        cert_fingerprint: fingerprint.to_vec(),
        prev_fingerprint: Vec::new(),
        cert_not_after_ns: 0,
        created_ns: 1,
        updated_ns: 1,
        index: 0,
    }
}

#[test]
fn a_ca_rotation_finishes_only_when_every_node_has_a_new_root_certificate() {
    let mut f = Fixture::new();
    let cluster = cluster_record(&f);
    assert_eq!(
        f.apply(Command::InitCluster {
            cluster,
            node: node_record(1, b"n1-old"),
        }),
        Response::Ok
    );
    f.apply(Command::PutNode {
        node: node_record(2, b"n2-old"),
    });
    let new_key = Sealed::seal(f.ring.current(), "cluster/ca-key", 2, b"new key").unwrap();
    let rotation = |started_ns: i64, cert: &[u8]| CaRotation {
        new_cert: cert.to_vec(),
        new_key: new_key.clone(),
        cross_cert: b"cross".to_vec(),
        started_ns,
        rotated: BTreeMap::new(),
    };
    let start = |r: CaRotation, v: u64| Command::StartCaRotation {
        rotation: r,
        expected_ca_version: v,
    };
    let finish = |started_ns: i64| Command::FinishCaRotation {
        rotation_started_ns: started_ns,
        time_ns: 99,
    };
    // A rotation prepared against another CA version is refused.
    let stale = rotation(10, b"new root");
    assert_eq!(
        f.apply(start(stale, 7)),
        Response::Failed(StoreError::OutOfSequence)
    );
    assert!(matches!(
        f.apply(finish(10)),
        Response::Failed(StoreError::Invalid(_))
    ));
    let r1 = rotation(10, b"new root");
    assert_eq!(f.apply(start(r1.clone(), 1)), Response::Ok);
    f.apply(Command::PutIssuedNode {
        node: node_record(1, b"n1-new"),
        ca_version: 1,
        rotation_started_ns: Some(10),
    });
    // Re-sealing the same rotation keeps its progress; node 2 still holds it open.
    assert_eq!(f.apply(start(r1, 1)), Response::Ok);
    let (_, r) = f.reader().cluster_and_rotation().unwrap().unwrap();
    assert_eq!(r.unwrap().rotated.len(), 1);
    match f.apply(finish(10)) {
        Response::Failed(StoreError::Invalid(m)) => assert!(m.contains("node(s) 2 "), "{m}"),
        other => panic!("{other:?}"),
    }
    // Renewed from another (replaced) rotation: not counted.
    f.apply(Command::PutIssuedNode {
        node: node_record(2, b"n2-new"),
        ca_version: 1,
        rotation_started_ns: Some(9),
    });
    assert!(matches!(f.apply(finish(10)), Response::Failed(_)));
    // Counted only while it is the node's current certificate.
    f.apply(Command::PutIssuedNode {
        node: node_record(2, b"n2-new"),
        ca_version: 1,
        rotation_started_ns: Some(10),
    });
    f.apply(Command::PutNode {
        node: node_record(2, b"n2-other"),
    });
    assert!(matches!(f.apply(finish(10)), Response::Failed(_)));
    f.apply(Command::PutIssuedNode {
        node: node_record(2, b"n2-new"),
        ca_version: 1,
        rotation_started_ns: Some(10),
    });
    assert_eq!(
        f.apply(finish(9)),
        Response::Failed(StoreError::OutOfSequence),
        "another rotation's finish"
    );
    assert_eq!(f.apply(finish(10)), Response::Ok);
    let (c, r) = f.reader().cluster_and_rotation().unwrap().unwrap();
    assert!(r.is_none());
    assert_eq!(
        (c.ca_cert.as_slice(), c.ca_version, c.updated_ns),
        (&b"new root"[..], 2, 99)
    );
    // A certificate issued before the finish, recorded after it, is refused: it may be
    // from the root just dropped.
    assert!(matches!(
        f.apply(Command::PutIssuedNode {
            node: node_record(2, b"n2-late"),
            ca_version: 1,
            rotation_started_ns: None,
        }),
        Response::Failed(StoreError::Invalid(_))
    ));
    assert_eq!(
        f.reader().node(2).unwrap().unwrap().cert_fingerprint,
        b"n2-new"
    );
    // A new rotation starts from nobody.
    assert_eq!(f.apply(start(rotation(20, b"newer"), 2)), Response::Ok);
    let (_, r) = f.reader().cluster_and_rotation().unwrap().unwrap();
    assert!(r.unwrap().rotated.is_empty());
}

/// Sealed values written before the `versions.by-time` table existed (they sit in
/// `versions`, keyed by object ID) are still read, rewrapped, pruned and removed.
#[test]
fn values_in_the_id_keyed_versions_table_still_work() {
    const BY_TIME: redb::TableDefinition<'_, &[u8], &[u8]> =
        redb::TableDefinition::new("versions.by-time");
    const BY_ID: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("versions");
    let mut f = Fixture::new();
    f.create(Kind::Secret, "s", "db", &[]);
    // Rewind to the old layout: the timed key is 8 bytes of creation time, then the old key.
    {
        let txn = f.db.begin_write().unwrap();
        {
            let mut by_time = txn.open_table(BY_TIME).unwrap();
            let mut by_id = txn.open_table(BY_ID).unwrap();
            let rows: Vec<(Vec<u8>, Vec<u8>)> = redb::ReadableTable::iter(&by_time)
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect();
            assert_eq!(rows.len(), 1, "the create wrote one timed row");
            for (k, v) in rows {
                by_time.remove(k.as_slice()).unwrap();
                by_id.insert(&k[8..], v.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let db = f.db.clone();
    let rows = move |t| {
        let txn = db.begin_read().unwrap();
        redb::ReadableTableMetadata::len(&txn.open_table(t).unwrap()).unwrap()
    };
    let rec = f.reader().get(Kind::Secret, "s").unwrap().unwrap();
    let old = f.reader().sealed(&rec, 1).unwrap();
    assert_eq!(&old.open(f.ring.current(), "s", 1).unwrap()[..], b"v1");

    // A rewrap rewrites it where it is.
    f.apply(Command::Rewrap {
        entries: vec![lockbox_store::Rewrapped {
            kind: Kind::Secret,
            id: "s".into(),
            version: 1,
            kek_id: 77,
            wrapped_dek: old.wrapped_dek.clone(),
        }],
    });
    assert_eq!(f.reader().sealed(&rec, 1).unwrap().kek_id, 77);
    assert_eq!((rows(BY_ID), rows(BY_TIME)), (1, 0));

    // A new version goes to the timed table; pruning the old one empties the old table.
    let value = f.version("s", 2, b"v2");
    f.apply(Command::AddVersion {
        kind: Kind::Secret,
        id: "s".into(),
        value,
        keep: 0,
        time_ns: 5,
    });
    assert_eq!((rows(BY_ID), rows(BY_TIME)), (0, 1));
    let rec = f.reader().get(Kind::Secret, "s").unwrap().unwrap();
    assert_eq!(
        &f.reader()
            .sealed(&rec, 2)
            .unwrap()
            .open(f.ring.current(), "s", 2)
            .unwrap()[..],
        b"v2"
    );
    f.apply(Command::Remove {
        kind: Kind::Secret,
        id: "s".into(),
    });
    assert_eq!((rows(BY_ID), rows(BY_TIME)), (0, 0));
}

#[path = "store/index.rs"]
mod index;
