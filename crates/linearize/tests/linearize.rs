//! The checker against known linearizable and non-linearizable lockbox histories, generated
//! linearizable ones, and a large one for timing.

use std::time::{Duration, Instant};

use lockbox_linearize::{
    CheckOptions, CheckResult, History, Operation, Recorder, SecretInput, SecretOp, SecretOutput,
    SecretState, SecretsModel, check, check_file, check_with, read_history, render, write_history,
};
use proptest::prelude::*;

use SecretOp::{Create, Delete, Read, Rotate};
use SecretOutput::{AlreadyExists, Created, Deleted, Error, NotFound, Rotated};

type Op = Operation<SecretInput, SecretOutput>;

fn op(name: &str, input: SecretOp, call: u64, output: Option<SecretOutput>, ret: u64) -> Op {
    Operation {
        client: call,
        input: SecretInput {
            name: name.into(),
            op: input,
        },
        call,
        output,
        ret,
    }
}

/// An operation on secret "a" with an answer.
fn a(input: SecretOp, call: u64, output: SecretOutput, ret: u64) -> Op {
    op("a", input, call, Some(output), ret)
}

/// An operation on secret "a" that got no answer.
fn lost(input: SecretOp, call: u64) -> Op {
    op("a", input, call, None, u64::MAX)
}

fn created() -> SecretOutput {
    Created { id: None }
}

fn value(version: u64, value: u64) -> SecretOutput {
    SecretOutput::Value {
        version,
        value,
        id: None,
    }
}

fn assert_ok(ops: &[Op]) {
    let result = check::<SecretsModel>(ops);
    assert!(
        result.is_ok(),
        "expected linearizable:\n{}",
        render(ops, &result)
    );
}

/// Asserts the history is illegal and that `stuck` is the operation reported as unplaceable.
fn assert_illegal(ops: &[Op], stuck: usize) -> String {
    let result = check::<SecretsModel>(ops);
    let report = render(ops, &result);
    let CheckResult::Illegal(v) = &result else {
        panic!("expected a violation, got:\n{report}");
    };
    assert_eq!(v.stuck, stuck, "{report}");
    assert_eq!(v.label.as_deref(), Some(ops[stuck].input.name.as_str()));
    report
}

#[test]
fn concurrent_overlapping_operations_may_go_either_way() {
    // A read overlapping the create may see it or not, even two reads that overlap each other
    // in "reverse" order (the later-starting one sees less).
    assert_ok(&[
        a(Create { value: 7 }, 0, created(), 10),
        a(Read, 2, value(1, 7), 6),
        a(Read, 3, NotFound, 5),
    ]);
    // Rotate overlapping reads: old then new, and new seen by an earlier-called read.
    assert_ok(&[
        a(Create { value: 7 }, 0, created(), 1),
        a(Rotate { value: 8 }, 10, Rotated { version: 2 }, 20),
        a(Read, 11, value(2, 8), 13),
        a(Read, 12, value(2, 8), 14),
        a(Read, 15, value(2, 8), 25),
        a(Read, 2, value(1, 7), 30),
    ]);
    // Two concurrent creates: one wins, the other is told it already exists; either order of
    // their calls.
    assert_ok(&[
        a(Create { value: 1 }, 0, AlreadyExists, 10),
        a(Create { value: 2 }, 1, created(), 9),
        a(Read, 11, value(1, 2), 12),
    ]);
    // Delete concurrent with a rotate that found nothing.
    assert_ok(&[
        a(Create { value: 1 }, 0, created(), 1),
        a(Delete, 2, Deleted, 10),
        a(Rotate { value: 2 }, 3, NotFound, 9),
        a(Create { value: 3 }, 11, created(), 12),
        a(Read, 13, value(1, 3), 14),
    ]);
}

#[test]
fn stale_read_after_a_completed_rotate() {
    let ops = [
        a(Create { value: 7 }, 0, created(), 1),
        a(Rotate { value: 8 }, 2, Rotated { version: 2 }, 3),
        a(Read, 4, value(1, 7), 5),
    ];
    let report = assert_illegal(&ops, 2);
    assert!(report.contains("key \"a\""), "{report}");
    assert!(report.contains("version: 2, value: 8"), "{report}");
    println!("{report}");
}

#[test]
fn read_of_a_value_never_written() {
    assert_illegal(
        &[
            a(Create { value: 7 }, 0, created(), 1),
            a(Read, 2, value(1, 99), 3),
        ],
        1,
    );
    // Not even while a concurrent write of something else is in flight.
    assert_illegal(
        &[
            a(Create { value: 7 }, 0, created(), 1),
            a(Rotate { value: 8 }, 2, Rotated { version: 2 }, 10),
            a(Read, 3, value(2, 99), 4),
        ],
        2,
    );
}

#[test]
fn lost_acknowledged_create() {
    let ops = [
        a(Create { value: 7 }, 0, created(), 1),
        a(Read, 2, NotFound, 3),
    ];
    assert_illegal(&ops, 1);
    // A delete that may have happened (no answer) explains it...
    let mut with_lost_delete = ops.to_vec();
    with_lost_delete.push(lost(Delete, 1));
    assert_ok(&with_lost_delete);
    // ...but not one called after the read returned.
    let mut late_delete = ops.to_vec();
    late_delete.push(lost(Delete, 4));
    assert_illegal(&late_delete, 1);
}

#[test]
fn version_going_backwards() {
    assert_illegal(
        &[
            a(Create { value: 7 }, 0, created(), 1),
            a(Rotate { value: 8 }, 2, Rotated { version: 2 }, 20),
            a(Read, 3, value(2, 8), 4),
            a(Read, 5, value(1, 7), 6),
        ],
        3,
    );
    // A rotate that reports a version it cannot have made.
    assert_illegal(
        &[
            a(Create { value: 7 }, 0, created(), 1),
            a(Rotate { value: 8 }, 2, Rotated { version: 2 }, 3),
            a(Rotate { value: 9 }, 4, Rotated { version: 2 }, 5),
        ],
        2,
    );
}

#[test]
fn two_creates_without_a_delete_between() {
    let ops = [
        a(Create { value: 1 }, 0, created(), 10),
        a(Create { value: 2 }, 1, created(), 11),
    ];
    let result = check::<SecretsModel>(&ops);
    assert!(result.is_illegal(), "{}", render(&ops, &result));
    // With a delete that succeeded in between (concurrent with both), it is fine, and a
    // re-created secret starts again at version 1.
    let mut ok = ops.to_vec();
    ok.push(a(Delete, 2, Deleted, 9));
    ok.push(a(Read, 12, value(1, 2), 13));
    assert_ok(&ok);
    ok.push(a(Read, 14, value(2, 2), 15));
    assert_illegal(&ok, 4);
}

#[test]
fn unknown_outcomes_either_took_effect_or_did_not() {
    // A create that timed out: later reads may find it...
    assert_ok(&[lost(Create { value: 7 }, 0), a(Read, 5, value(1, 7), 6)]);
    // ...or not, and even first not, then yes: it may take effect long after the client gave up.
    assert_ok(&[
        lost(Create { value: 7 }, 0),
        a(Read, 5, NotFound, 6),
        a(Read, 7, value(1, 7), 8),
    ]);
    // But once seen it stays: no going back to NotFound without a delete.
    assert_illegal(
        &[
            lost(Create { value: 7 }, 0),
            a(Read, 5, value(1, 7), 6),
            a(Read, 7, NotFound, 8),
        ],
        2,
    );
    // It cannot take effect before it was called.
    assert_illegal(
        &[a(Read, 0, value(1, 7), 1), lost(Create { value: 7 }, 2)],
        0,
    );
    // A rotate that timed out, then a create that succeeded: the rotate found nothing.
    assert_ok(&[
        lost(Rotate { value: 8 }, 0),
        a(Create { value: 7 }, 1, created(), 2),
        a(Read, 3, value(1, 7), 4),
    ]);
    // Two lost rotates; a read sees version 3 — both took effect, in some order.
    assert_ok(&[
        a(Create { value: 7 }, 0, created(), 1),
        lost(Rotate { value: 8 }, 2),
        lost(Rotate { value: 9 }, 3),
        a(Read, 10, value(3, 8), 11),
        a(Read, 12, value(3, 8), 13),
    ]);
}

#[test]
fn a_clear_refusal_had_no_effect() {
    let refused = [
        a(Create { value: 7 }, 0, created(), 1),
        a(Rotate { value: 8 }, 2, Error, 3),
        a(Read, 4, value(2, 8), 5),
    ];
    assert_illegal(&refused, 2);
    let mut timed_out = refused.to_vec();
    timed_out[1].output = None;
    assert_ok(&timed_out);
}

#[test]
fn keys_are_independent_and_the_bad_one_is_named() {
    let ops = [
        op("a", Create { value: 1 }, 0, Some(created()), 1),
        op("b", Create { value: 2 }, 0, Some(created()), 1),
        op("a", Read, 2, Some(value(1, 1)), 3),
        op("b", Read, 2, Some(value(1, 1)), 3),
    ];
    let result = check::<SecretsModel>(&ops);
    let CheckResult::Illegal(v) = &result else {
        panic!("{}", render(&ops, &result))
    };
    assert_eq!(
        (v.label.as_deref(), v.stuck, v.prefix.as_slice()),
        (Some("b"), 3, &[1][..])
    );
    assert_eq!(
        v.state,
        SecretState::Present {
            id: None,
            version: 1,
            value: 2
        }
    );
}

#[test]
fn histories_round_trip_through_json_lines() {
    let ops = vec![
        a(Create { value: 7 }, 0, Created { id: Some(3) }, 1),
        lost(Rotate { value: 8 }, 2),
        a(
            Read,
            4,
            SecretOutput::Value {
                version: 2,
                value: 8,
                id: Some(3),
            },
            5,
        ),
        a(Delete, 6, Error, 7),
    ];
    let mut bytes = Vec::new();
    write_history(&mut bytes, &ops).expect("write");
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 4);
    assert!(
        text.lines()
            .nth(1)
            .expect("line 2")
            .contains("\"output\":null"),
        "{text}"
    );
    let back: History<SecretsModel> = read_history(bytes.as_slice()).expect("read");
    assert_eq!(back, ops);

    // Hand-written: output absent means no answer; ids optional.
    let hand = concat!(
        r#"{"client":1,"input":{"name":"x","op":{"create":{"value":5}}},"call":0}"#,
        "\n\n",
        r#"{"client":2,"input":{"name":"x","op":"read"},"call":3,"output":{"value":{"version":1,"value":5}},"ret":4}"#,
        "\n"
    );
    let hand: History<SecretsModel> = read_history(hand.as_bytes()).expect("read");
    assert_eq!(hand[0].output, None);
    assert!(check::<SecretsModel>(&hand).is_ok());
    let bad = read_history::<SecretInput, SecretOutput>("{}\n".as_bytes());
    assert!(bad.expect_err("not an op").to_string().contains("line 1"));

    let path = std::env::temp_dir().join(format!("lockbox-linearize-{}.jsonl", std::process::id()));
    let stale = [
        a(Create { value: 7 }, 0, created(), 1),
        a(Rotate { value: 8 }, 2, Rotated { version: 2 }, 3),
        a(Read, 4, value(1, 7), 5),
    ];
    write_history(std::fs::File::create(&path).expect("create"), &stale).expect("save");
    let (loaded, result) =
        check_file::<SecretsModel>(&path, &CheckOptions::default()).expect("check_file");
    let _ = std::fs::remove_file(&path);
    assert_eq!(loaded, stale);
    assert!(result.is_illegal());
}

#[test]
fn the_recorder_keeps_unanswered_operations_open() {
    let rec = Recorder::<SecretInput, SecretOutput>::new();
    let input = |op| SecretInput {
        name: "a".into(),
        op,
    };
    let create = rec.call(1, input(Create { value: 7 }));
    let rotate = rec.call(2, input(Rotate { value: 8 }));
    rec.ret(create, created());
    rec.unknown(rotate);
    let read = rec.call(1, input(Read));
    rec.ret(read, value(2, 8));
    let ops = rec.finish();
    assert_eq!(ops[1].output, None);
    assert!(ops[0].call <= ops[0].ret && ops[0].ret <= ops[2].call);
    assert_ok(&ops);
}

#[test]
fn the_budget_gives_up() {
    // Many lost rotates and a read of a version none of their orders can reach.
    let mut ops = vec![a(Create { value: 0 }, 0, created(), 1)];
    for i in 0..20 {
        ops.push(lost(Rotate { value: i + 1 }, 2 + i));
    }
    ops.push(a(Read, 100, value(30, 1), 101));
    let options = CheckOptions {
        timeout: Some(Duration::from_secs(10)),
        max_steps: Some(1000),
        ..CheckOptions::default()
    };
    let result = check_with::<SecretsModel>(&ops, &options);
    assert!(
        matches!(result, CheckResult::Timeout { .. }),
        "{}",
        render(&ops, &result)
    );
    assert!(render(&ops, &result).contains("ran out of budget"));
}

/// What happens to a generated operation.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Takes effect at its point; the answer arrives.
    Answered,
    /// Takes effect; the answer is lost.
    AppliedLost,
    /// Never takes effect; no answer.
    NotAppliedLost,
    /// Refused, no effect.
    Refused,
}

/// A linearizable history: operations run one at a time at points `10 * i`, each with its call
/// up to `jitter[i].0` before its point and its return up to `jitter[i].1` after — so operations
/// overlap, yet each point lies within its operation, and the order of points is a legal
/// linearization.
fn sequential(
    keys: usize,
    steps: &[(usize, u8, (u64, u64), Fate)],
) -> Vec<Operation<SecretInput, SecretOutput>> {
    let mut states = vec![SecretState::Absent; keys];
    let mut ops = Vec::with_capacity(steps.len());
    for (i, &(key, kind, (before, after), fate)) in steps.iter().enumerate() {
        let value = i as u64 + 1;
        let input = match kind % 4 {
            0 => Create { value },
            1 => Rotate { value },
            2 => Read,
            _ => Delete,
        };
        let point = 1_000_000 + 10 * i as u64;
        let (output, applied) = match fate {
            Fate::Answered => (None, true),
            Fate::AppliedLost => (None, true),
            Fate::NotAppliedLost => (None, false),
            Fate::Refused => (Some(Error), false),
        };
        let output = if applied {
            let (out, next) = states[key].apply(&input);
            states[key] = next;
            if matches!(fate, Fate::Answered) {
                Some(out)
            } else {
                output
            }
        } else {
            output
        };
        ops.push(Operation {
            client: i as u64 % 7,
            input: SecretInput {
                name: format!("k{key}"),
                op: input,
            },
            call: point - before,
            output,
            ret: point + after,
        });
    }
    ops
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        16 => Just(Fate::Answered),
        1 => Just(Fate::AppliedLost),
        1 => Just(Fate::NotAppliedLost),
        1 => Just(Fate::Refused),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn jittered_sequential_histories_are_linearizable(
        steps in prop::collection::vec(
            (0..3usize, 0..4u8, (0..40u64, 0..40u64), fate()),
            0..60,
        )
    ) {
        let ops = sequential(3, &steps);
        let result = check::<SecretsModel>(&ops);
        prop_assert!(result.is_ok(), "{}", render(&ops, &result));
    }
}

/// xorshift64*, to build a large history without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` operations over `keys` keys, `lost` in 200 of them without an answer and as many refused.
fn big(n: usize, keys: u64, lost: u64) -> Vec<Op> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let steps: Vec<_> = (0..n)
        .map(|_| {
            let r = rng.below(200);
            let fate = if r < lost / 2 {
                Fate::AppliedLost
            } else if r < lost {
                Fate::NotAppliedLost
            } else if r < 2 * lost {
                Fate::Refused
            } else {
                Fate::Answered
            };
            // Kinds weighted towards reads and rotates.
            let kind = [0, 1, 1, 1, 2, 2, 2, 2, 2, 3][rng.below(10) as usize];
            // Calls up to 20 operations before the operation's point, returns as late.
            let jitter = (rng.below(200), rng.below(200));
            (rng.below(keys) as usize, kind, jitter, fate)
        })
        .collect();
    sequential(keys as usize, &steps)
}

/// A read, after everything else, of a value nobody wrote.
fn read_of_nothing(ops: &mut Vec<Op>) {
    let end = ops
        .iter()
        .map(|op| op.call.max(op.ret))
        .filter(|&t| t != u64::MAX)
        .max();
    let end = end.unwrap_or(0);
    ops.push(op("k0", Read, end + 1, Some(value(1, 0)), end + 2));
}

#[test]
fn a_few_thousand_operations_over_twenty_keys() {
    let mut ops = big(5000, 20, 2);
    let started = Instant::now();
    let result = check::<SecretsModel>(&ops);
    let elapsed = started.elapsed();
    assert!(result.is_ok(), "{}", render(&ops, &result));
    println!(
        "checked {} operations over 20 keys in {elapsed:?}",
        ops.len()
    );

    read_of_nothing(&mut ops);
    let started = Instant::now();
    let result = check::<SecretsModel>(&ops);
    let elapsed = started.elapsed();
    assert!(result.is_illegal(), "{}", render(&ops, &result));
    println!(
        "found a violation among {} operations in {elapsed:?}",
        ops.len()
    );
}

#[test]
fn many_unknown_outcomes_with_a_horizon() {
    // One operation in ten without an answer, one in ten refused: proving a violation means
    // trying subsets of the unanswered ones, unless they are known to take effect soon if ever
    // (here within 200 ns of their call: their points are at most 199 after).
    let options = CheckOptions {
        unknown_horizon: Some(200),
        ..CheckOptions::default()
    };
    let mut ops = big(2000, 20, 20);
    let started = Instant::now();
    let result = check_with::<SecretsModel>(&ops, &options);
    let elapsed = started.elapsed();
    assert!(result.is_ok(), "{}", render(&ops, &result));
    println!(
        "checked {} operations, 10% unanswered, with a horizon in {elapsed:?}",
        ops.len()
    );
    read_of_nothing(&mut ops);
    let started = Instant::now();
    let result = check_with::<SecretsModel>(&ops, &options);
    let elapsed = started.elapsed();
    assert!(result.is_illegal(), "{}", render(&ops, &result));
    println!("found a violation among them in {elapsed:?}");
    // Without the horizon the same search is larger (and may run out of budget).
    let budget = CheckOptions {
        max_steps: Some(200_000),
        ..CheckOptions::default()
    };
    let result = check_with::<SecretsModel>(&ops, &budget);
    println!("without a horizon: {}", render(&ops, &result).trim_end());
}

#[test]
fn a_horizon_bounds_when_an_unknown_operation_may_take_effect() {
    let options = CheckOptions {
        unknown_horizon: Some(10),
        ..CheckOptions::default()
    };
    let check_h = |ops: &[Op]| check_with::<SecretsModel>(ops, &options);
    // Within the horizon, either way.
    let ok = [
        lost(Create { value: 7 }, 0),
        a(Read, 5, NotFound, 6),
        a(Read, 20, value(1, 7), 21),
    ];
    assert!(check_h(&ok).is_ok());
    // Not found after the horizon: it never took effect, so it cannot be seen later.
    let late = [
        lost(Create { value: 7 }, 0),
        a(Read, 11, NotFound, 12),
        a(Read, 20, value(1, 7), 21),
    ];
    let result = check_h(&late);
    let CheckResult::Illegal(v) = &result else {
        panic!("{}", render(&late, &result))
    };
    assert_eq!((v.stuck, v.prefix.as_slice()), (2, &[1][..]));
    assert_ok(&late);
    // The unknown-outcome tests above hold with a generous horizon too.
    let lost_delete = [
        a(Create { value: 7 }, 0, created(), 1),
        a(Read, 2, NotFound, 3),
        lost(Delete, 1),
    ];
    assert!(check_h(&lost_delete).is_ok());
}

/// The definition, by brute force: some order of all answered operations and some of the
/// unanswered ones, in which nothing comes before an answered operation that returned before
/// it was called, is a legal run of the model. With a horizon, an unanswered operation also
/// counts as returned that long after its call.
fn brute_force(
    ops: &[Op],
    horizon: Option<u64>,
    placed: &mut Vec<bool>,
    state: SecretState,
) -> bool {
    use lockbox_linearize::Model as _;
    let open = |i: usize| !placed[i] && ops[i].output.is_some();
    if !(0..ops.len()).any(open) {
        return true;
    }
    let first_return = (0..ops.len())
        .filter(|&i| open(i))
        .map(|i| ops[i].ret)
        .min();
    let first_return = first_return.unwrap_or(u64::MAX);
    let last_call = (0..ops.len())
        .filter(|&i| placed[i])
        .map(|i| ops[i].call)
        .max();
    for i in 0..ops.len() {
        if placed[i] || ops[i].call > first_return {
            continue;
        }
        if let (None, Some(h), Some(last)) = (&ops[i].output, horizon, last_call)
            && ops[i].call + h < last
        {
            continue;
        }
        let next = match &ops[i].output {
            Some(out) => SecretsModel::step(&state, &ops[i].input, out),
            None => SecretsModel::step_unknown(&state, &ops[i].input),
        };
        if let Some(next) = next {
            placed[i] = true;
            let ok = brute_force(ops, horizon, placed, next);
            placed[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

fn small_op() -> impl Strategy<Value = Op> {
    let output = prop_oneof![
        Just(None),
        Just(Some(created())),
        Just(Some(AlreadyExists)),
        (1..4u64).prop_map(|version| Some(Rotated { version })),
        (1..4u64, 0..4u64).prop_map(|(v, x)| Some(value(v, x))),
        Just(Some(NotFound)),
        Just(Some(Deleted)),
        Just(Some(Error)),
    ];
    let input = prop_oneof![
        (1..4u64).prop_map(|value| Create { value }),
        (1..4u64).prop_map(|value| Rotate { value }),
        Just(Read),
        Just(Delete),
    ];
    (input, output, 0..20u64, 0..10u64)
        .prop_map(|(input, output, call, len)| op("a", input, call, output, call + len))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random small histories, mostly not linearizable: the checker agrees with brute force.
    #[test]
    fn agrees_with_brute_force(
        ops in prop::collection::vec(small_op(), 0..7),
        horizon in prop::option::of(0..10u64),
    ) {
        let mut placed = vec![false; ops.len()];
        let expected = brute_force(&ops, horizon, &mut placed, SecretState::Absent);
        let options = CheckOptions { unknown_horizon: horizon, ..CheckOptions::default() };
        let result = check_with::<SecretsModel>(&ops, &options);
        prop_assert_eq!(result.is_ok(), expected, "{}", render(&ops, &result));
        prop_assert!(result.is_ok() || result.is_illegal());
    }
}

/// Small histories where when an unanswered create or delete took effect matters.
fn horizon_op() -> impl Strategy<Value = Op> {
    let create = (
        1..3u64,
        prop_oneof![3 => Just(None), 1 => Just(Some(created()))],
    )
        .prop_map(|(value, out)| (Create { value }, out));
    let delete = prop_oneof![3 => Just(None), 1 => Just(Some(Deleted))].prop_map(|o| (Delete, o));
    let read = prop_oneof![
        (1..3u64).prop_map(|x| Some(value(1, x))),
        Just(Some(NotFound))
    ]
    .prop_map(|o| (Read, o));
    (
        prop_oneof![1 => create, 1 => delete, 2 => read],
        0..20u64,
        0..4u64,
    )
        .prop_map(|((input, output), call, len)| op("a", input, call, output, call + len))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The same, where the horizon often decides.
    #[test]
    fn agrees_with_brute_force_on_horizons(
        ops in prop::collection::vec(horizon_op(), 0..7),
        horizon in prop::option::of(0..6u64),
    ) {
        let mut placed = vec![false; ops.len()];
        let expected = brute_force(&ops, horizon, &mut placed, SecretState::Absent);
        let options = CheckOptions { unknown_horizon: horizon, ..CheckOptions::default() };
        let result = check_with::<SecretsModel>(&ops, &options);
        prop_assert_eq!(result.is_ok(), expected, "{}", render(&ops, &result));
    }
}
