//! A linearizability checker for histories recorded by lockbox's nemesis tests.
//!
//! A *history* is a list of [`Operation`]s: which client invoked what, when the call was sent,
//! what came back and when. The checker asks whether there is a total order of the operations
//! that (a) respects real time — an operation that returned before another was called comes
//! first — and (b) is a legal run of a sequential [`Model`]. If there is, the history is
//! linearizable.
//!
//! The search is Wing & Gong's, with Lowe's memoisation, as popularised by Porcupine: call and
//! return events sorted by time in a doubly linked list; repeatedly take a pending call that
//! precedes the first remaining return, step the model, unlink the operation and go on; on
//! reaching a return whose call could not be placed, backtrack. A set of (operations linearized
//! so far, model state) pairs already explored prunes the search. A model may split a history
//! into independent partitions (lockbox: one per secret name), each checked on its own —
//! linearizability is compositional (Herlihy & Wing), so the whole is linearizable iff every
//! part is.
//!
//! # Unknown outcomes
//!
//! An operation whose response never arrived (timeout, client killed, connection cut) has
//! `output: None`. It may have taken effect at any instant after its call — possibly long after
//! the client gave up — or never. The checker treats its return time as +∞ and does not require
//! it to be linearized at all: the history is accepted if every operation *with* a response is
//! placed. When an unknown operation is placed, the model's [`Model::step_unknown`] gives its
//! effect.
//!
//! A response that proves the request had no effect (for lockbox: [`SecretOutput::Error`], a
//! refusal before anything was proposed) is a known output like any other; the model decides
//! what it means ([`SecretsModel`] leaves such operations out of the search altogether).
#![forbid(unsafe_code)]

mod checker;
mod history;
mod render;
mod secrets;

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use history::{OpId, Recorder, check_file, read_history, write_history};
pub use render::render;
pub use secrets::{SecretInput, SecretOp, SecretOutput, SecretState, SecretsModel};

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Who issued it. Informational only: the checker relies on the times, so one client's
    /// operations must not overlap (each must return before the next is called) unless the
    /// client really was concurrent with itself.
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When the request was sent, in nanoseconds on a clock shared by all clients (e.g. from
    /// one `Instant` in the test process). Taken *before* sending.
    pub call: u64,
    /// What came back; `None` if nothing did (timeout, crash): the operation may or may not
    /// have taken effect. (In JSON: `null` or absent.)
    pub output: Option<O>,
    /// When the response arrived, in nanoseconds, taken *after* receiving it. Ignored when
    /// `output` is `None` (the return time is then +∞). A `ret` before `call` is taken as
    /// `call`.
    #[serde(default)]
    pub ret: u64,
}

/// A sequential specification of the system under test.
pub trait Model {
    /// The model's state. Explored (operations placed, state) pairs are remembered, so equal
    /// states should compare equal however they were reached.
    type State: Clone + Eq + Hash + Debug;
    /// What a client asks.
    type Input: Debug;
    /// What a client is told.
    type Output: Debug;

    /// The state before any operation.
    fn init() -> Self::State;

    /// The state after `input` was applied to `state` and answered with `output`, or `None` if
    /// that answer is not possible from that state.
    fn step(state: &Self::State, input: &Self::Input, output: &Self::Output)
    -> Option<Self::State>;

    /// The state after `input` took effect on `state` with its answer unknown, or `None` if it
    /// cannot have taken effect there. (The checker already covers "it never took effect" by
    /// not placing the operation at all.)
    fn step_unknown(state: &Self::State, input: &Self::Input) -> Option<Self::State>;

    /// Split a history into independently checkable parts, as lists of indices into `ops`.
    /// Indices left out of every part are not checked at all (useful for operations known to
    /// have had no effect and to have observed nothing). Default: one part with everything.
    fn partition(ops: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..ops.len()).collect()]
    }

    /// A name for a part, for reports (lockbox: the secret's name).
    fn partition_label(
        ops: &[Operation<Self::Input, Self::Output>],
        part: &[usize],
    ) -> Option<String> {
        let _ = (ops, part);
        None
    }
}

/// A history for model `M`.
pub type History<M> = Vec<Operation<<M as Model>::Input, <M as Model>::Output>>;

/// Limits on the search. The problem is NP-complete; a pathological history (many operations
/// with unknown outcomes on one key, say) can take very long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Wall-clock budget for the whole check.
    pub timeout: Option<Duration>,
    /// Budget of search steps (one step: one candidate considered), per partition.
    pub max_steps: Option<u64>,
    /// Assume an operation without an answer took effect, if at all, within this many
    /// nanoseconds of its call (by default: at any time). Each such operation stays a candidate
    /// for the rest of the history otherwise, and proving a violation means trying the subsets
    /// of them — exponential once many time out on one key. With a horizon the search stays
    /// small, but the check is only sound if the assumption holds: under Raft a proposal the
    /// client gave up on can still commit whenever a later leader commits anything, so pick it
    /// generously (client timeout + several election timeouts), or re-check a `Timeout` with
    /// one.
    pub unknown_horizon: Option<u64>,
}

impl Default for CheckOptions {
    /// One minute, no step limit, no horizon.
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(60)),
            max_steps: None,
            unknown_horizon: None,
        }
    }
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum CheckResult<S> {
    /// The history is linearizable.
    Ok,
    /// It is not; here is why (for the first offending partition).
    Illegal(Box<Violation<S>>),
    /// The budget ran out before an answer was found, in this partition. No partition checked
    /// before it was illegal.
    Timeout {
        /// Index of the part (in [`Model::partition`]'s order).
        partition: usize,
        /// [`Model::partition_label`] of it.
        label: Option<String>,
        /// Search steps spent on it.
        steps: u64,
    },
}

impl<S> CheckResult<S> {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history was found not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal(_))
    }
}

/// Why a partition is not linearizable: the longest prefix the search managed to linearize,
/// and the operation that then could not be placed. All indices are into the checked history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<S> {
    /// Index of the part (in [`Model::partition`]'s order).
    pub partition: usize,
    /// [`Model::partition_label`] of it (lockbox: the secret name).
    pub label: Option<String>,
    /// The longest linearization found, in order.
    pub prefix: Vec<usize>,
    /// The model state after `prefix`.
    pub state: S,
    /// The operation with a response that had to come next (its response precedes every
    /// operation not yet placed) but which the model does not allow from `state`, or which
    /// leads to a dead end.
    pub stuck: usize,
    /// The other operations that could have been placed at that point (their calls precede
    /// `stuck`'s return); each was tried and led nowhere.
    pub candidates: Vec<usize>,
}

/// Check `ops` against model `M`, with [`CheckOptions::default`].
pub fn check<M: Model>(ops: &[Operation<M::Input, M::Output>]) -> CheckResult<M::State> {
    check_with::<M>(ops, &CheckOptions::default())
}

/// Check `ops` against model `M` within the given budget.
pub fn check_with<M: Model>(
    ops: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> CheckResult<M::State> {
    let deadline = options.timeout.map(|t| std::time::Instant::now() + t);
    let mut timed_out = None;
    for (partition, part) in M::partition(ops).into_iter().enumerate() {
        let budget = checker::Budget {
            deadline,
            max_steps: options.max_steps,
            unknown_horizon: options.unknown_horizon,
        };
        match checker::check_part::<M>(ops, &part, budget) {
            checker::Outcome::Ok => {}
            checker::Outcome::Illegal {
                prefix,
                state,
                stuck,
                candidates,
            } => {
                return CheckResult::Illegal(Box::new(Violation {
                    partition,
                    label: M::partition_label(ops, &part),
                    prefix,
                    state,
                    stuck,
                    candidates,
                }));
            }
            checker::Outcome::Timeout { steps } => {
                if timed_out.is_none() {
                    timed_out = Some(CheckResult::Timeout {
                        partition,
                        label: M::partition_label(ops, &part),
                        steps,
                    });
                }
                // Past the deadline every later part times out at once; a step budget is per
                // part, so the rest may still find a violation.
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    break;
                }
            }
        }
    }
    timed_out.unwrap_or(CheckResult::Ok)
}
