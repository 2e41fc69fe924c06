//! The label and name indexes answer filtered lists exactly as decoding every record does,
//! whatever sequence of creates, label updates and removals came before, and they survive
//! a snapshot import, a restore and a store written before the label index existed.
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8, Vec<(u8, u8)>),
    Relabel(u8, Vec<(u8, u8)>),
    Remove(u8),
}

const NAMES: [&str; 6] = ["app", "App_db", "apple", "web", "WEB-1", "a"];
const KEYS: [&str; 4] = ["team", "env", "team.x", "t"];
const VALUES: [&str; 3] = ["", "prod", "Prod"];

fn labels() -> impl Strategy<Value = Vec<(u8, u8)>> {
    proptest::collection::vec((0u8..4, 0u8..3), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, 0u8..6, labels()).prop_map(|(i, n, l)| Op::Create(i, n, l)),
        2 => (0u8..8, labels()).prop_map(|(i, l)| Op::Relabel(i, l)),
        1 => (0u8..8).prop_map(Op::Remove),
    ]
}

fn label_map(l: &[(u8, u8)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| {
            (
                KEYS[*k as usize].to_string(),
                VALUES[*v as usize].to_string(),
            )
        })
        .collect()
}

fn kind_of(i: u8) -> Kind {
    if i.is_multiple_of(3) {
        Kind::Config
    } else {
        Kind::Secret
    }
}

/// One filter as the Docker CLI sends it: a key and its values.
fn filter() -> impl Strategy<Value = (String, Vec<String>)> {
    let name = (0usize..6, 0usize..4).prop_map(|(n, cut)| {
        let s = NAMES[n];
        s[..s.len().min(cut + 1)].to_ascii_uppercase()
    });
    let label = (0usize..4, 0usize..4).prop_map(|(k, v)| match v {
        0 => KEYS[k].to_string(),
        v => format!("{}={}", KEYS[k], VALUES[v - 1]),
    });
    prop_oneof![
        proptest::collection::vec(name.clone(), 0..3).prop_map(|v| ("name".to_string(), v)),
        proptest::collection::vec(name, 0..3).prop_map(|v| ("names".to_string(), v)),
        proptest::collection::vec(label, 0..3).prop_map(|v| ("label".to_string(), v)),
        proptest::collection::vec("id[0-7]?", 0..3).prop_map(|v| ("id".to_string(), v)),
    ]
}

fn apply_ops(f: &mut Fixture, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Create(i, n, l) => {
                let id = format!("id{i}");
                let value = Some(f.version(&id, 1, b"v"));
                f.apply(Command::Create {
                    kind: kind_of(*i),
                    id,
                    name: format!("{}{}", NAMES[*n as usize], i % 2),
                    labels: label_map(l),
                    time_ns: 1,
                    driver: None,
                    templating: None,
                    value,
                });
            }
            Op::Relabel(i, l) => {
                let kind = kind_of(*i);
                if let Ok(Some(rec)) = f.reader().get(kind, &format!("id{i}")) {
                    f.apply(Command::UpdateLabels {
                        kind,
                        id: rec.id,
                        expected_index: rec.index,
                        labels: label_map(l),
                        time_ns: 2,
                    });
                }
            }
            Op::Remove(i) => {
                f.apply(Command::Remove {
                    kind: kind_of(*i),
                    id: format!("id{i}"),
                });
            }
        }
    }
}

fn assert_same(r: &Reader, filters: &validate::Filters) -> Result<(), TestCaseError> {
    for kind in [Kind::Secret, Kind::Config] {
        let by_index = r.list(kind, filters).unwrap();
        let by_scan = r.list_by_scan(kind, filters).unwrap();
        prop_assert_eq!(by_index, by_scan, "{:?} {:?}", kind, filters);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn indexed_lists_equal_the_full_scan(
        ops in proptest::collection::vec(op(), 1..30),
        queries in proptest::collection::vec(proptest::collection::vec(filter(), 0..3), 1..8),
    ) {
        let mut f = Fixture::new();
        apply_ops(&mut f, &ops);
        // A snapshot installed elsewhere rebuilds the index from the objects it carries.
        let g = Fixture::new();
        let txn = g.db.begin_write().unwrap();
        Store::import(&txn, &Store::export(&f.db.begin_read().unwrap()).unwrap()).unwrap();
        txn.commit().unwrap();
        for q in &queries {
            let filters: validate::Filters = q.iter().cloned().collect();
            assert_same(&f.reader(), &filters)?;
            assert_same(&g.reader(), &filters)?;
            prop_assert_eq!(
                f.reader().list(Kind::Secret, &filters).unwrap(),
                g.reader().list(Kind::Secret, &filters).unwrap()
            );
        }
    }
}

fn ids(r: &Reader, filter: &str) -> Vec<String> {
    let f = parse_filters(Kind::Secret, Some(filter)).unwrap();
    r.list(Kind::Secret, &f)
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect()
}

#[test]
fn a_store_from_before_the_label_index_gets_one_on_open() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "a1", "db", &[("team", "red")]);
    f.create(Kind::Secret, "b2", "web", &[("team", "blue")]);
    // What an older lockbox left: the objects without the index table.
    let txn = f.db.begin_write().unwrap();
    txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new("index.labels"))
        .unwrap();
    txn.commit().unwrap();
    let txn = f.db.begin_write().unwrap();
    Store::init_tables(&txn).unwrap();
    txn.commit().unwrap();
    assert_eq!(ids(&f.reader(), r#"{"label":["team=red"]}"#), ["a1"]);
    assert_eq!(ids(&f.reader(), r#"{"label":["team"]}"#), ["a1", "b2"]);
    assert_eq!(
        ids(&f.reader(), r#"{"label":["team=red"],"name":["w"]}"#),
        Vec::<String>::new()
    );
}

#[test]
fn a_restore_indexes_the_objects_it_brings() {
    let mut f = Fixture::new();
    f.create(Kind::Secret, "a1", "db", &[("team", "red")]);
    let dump = Store::export(&f.db.begin_read().unwrap()).unwrap();
    let mut g = Fixture::new();
    assert_eq!(g.apply(Command::Restore { dump }), Response::Ok);
    assert_eq!(ids(&g.reader(), r#"{"label":["team=red"]}"#), ["a1"]);
    assert_eq!(g.reader().count(Kind::Secret).unwrap(), 1);
    assert_eq!(g.reader().count(Kind::Config).unwrap(), 0);
}
