//! The model of lockbox's versioned secret store, one independent object per secret name.

use serde::{Deserialize, Serialize};

use crate::{Model, Operation};

/// A request about one secret. Its `Debug` is short, for reports: `"name" Op`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretInput {
    /// The secret's name; the history is partitioned by it.
    pub name: String,
    /// What is asked.
    pub op: SecretOp,
}

impl std::fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}", self.name, self.op)
    }
}

/// What is asked of a secret. Values are opaque `u64`s: a test should write unique ones
/// (e.g. a counter), so that a read names the write it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretOp {
    /// Create the secret, at version 1. Answers `Created` or `AlreadyExists`.
    Create { value: u64 },
    /// Add a version. Answers `Rotated` or `NotFound`.
    Rotate { value: u64 },
    /// Read the latest version. Answers `Value` or `NotFound`.
    Read,
    /// Delete the secret and all its versions. Answers `Deleted` or `NotFound`.
    Delete,
}

/// What a client was told. An operation that got *no* answer (timeout, connection cut, client
/// killed) is recorded with `output: None` instead: it may or may not have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretOutput {
    /// Create succeeded. `id`: the new secret's identity as a token, if the test tracks it
    /// (map lockbox's secret ID to a number); a later `Value` with an `id` must match it.
    Created {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Create refused: the name is taken.
    AlreadyExists,
    /// Rotate succeeded and made this version.
    Rotated { version: u64 },
    /// Read succeeded.
    Value {
        version: u64,
        value: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Delete succeeded.
    Deleted,
    /// No secret of that name (Rotate, Read, Delete).
    NotFound,
    /// Refused *for certain without effect*: e.g. the manager had no quorum, or was not the
    /// leader, and said so before proposing anything. Such an operation is left out of the
    /// check. Anything that might have been proposed — a timeout, a dropped connection, an
    /// error after the proposal was sent — must be recorded as `output: None`, never as this:
    /// calling a maybe-applied write `Error` makes a correct cluster look wrong.
    Error,
}

/// One secret's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    /// No secret of that name (never created, or deleted).
    Absent,
    /// The secret exists. `id`: its identity token, once known (a create with an unknown
    /// outcome, or one that did not report an id, leaves it `None` until a read reports one).
    Present {
        id: Option<u64>,
        version: u64,
        value: u64,
    },
}

impl SecretState {
    /// Apply `op` to this state: what a correct, sequential store answers and the state after.
    /// (`Created` and `Value` carry no id.) Useful to generate reference histories.
    pub fn apply(&self, op: &SecretOp) -> (SecretOutput, SecretState) {
        use SecretOp as I;
        use SecretOutput as O;
        use SecretState::{Absent, Present};
        match (*self, *op) {
            (Absent, I::Create { value }) => (
                O::Created { id: None },
                Present {
                    id: None,
                    version: 1,
                    value,
                },
            ),
            (Present { .. }, I::Create { .. }) => (O::AlreadyExists, *self),
            (Present { id, version, .. }, I::Rotate { value }) => (
                O::Rotated {
                    version: version + 1,
                },
                Present {
                    id,
                    version: version + 1,
                    value,
                },
            ),
            (Present { version, value, .. }, I::Read) => (
                O::Value {
                    version,
                    value,
                    id: None,
                },
                *self,
            ),
            (Present { .. }, I::Delete) => (O::Deleted, Absent),
            (Absent, I::Rotate { .. } | I::Read | I::Delete) => (O::NotFound, Absent),
        }
    }
}

/// The lockbox secret store: per name, `Absent` until created; create makes version 1; each
/// rotate adds one; delete removes the secret, and a create after it starts again at
/// version 1. Partitioned by secret name. Operations answered [`SecretOutput::Error`], and
/// reads that got no answer, are left out of the check: they had no effect and observed
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct SecretsModel;

impl Model for SecretsModel {
    type State = SecretState;
    type Input = SecretInput;
    type Output = SecretOutput;

    fn init() -> SecretState {
        SecretState::Absent
    }

    fn step(
        state: &SecretState,
        input: &SecretInput,
        output: &SecretOutput,
    ) -> Option<SecretState> {
        use SecretOutput as O;
        if *output == O::Error {
            return Some(*state);
        }
        let (expected, next) = state.apply(&input.op);
        match (expected, *output, next) {
            // Ids: a create that reports one fixes it; a read that reports one must match it,
            // or fixes it if it was not known yet.
            (O::Created { .. }, O::Created { id }, SecretState::Present { version, value, .. }) => {
                Some(SecretState::Present { id, version, value })
            }
            (
                O::Value {
                    version: v,
                    value: x,
                    ..
                },
                O::Value {
                    version,
                    value,
                    id: seen,
                },
                SecretState::Present { id, .. },
            ) if (v, x) == (version, value) => match (id, seen) {
                (Some(a), Some(b)) if a != b => None,
                _ => Some(SecretState::Present {
                    id: id.or(seen),
                    version,
                    value,
                }),
            },
            (expected, output, next) if expected == output => Some(next),
            _ => None,
        }
    }

    fn step_unknown(state: &SecretState, input: &SecretInput) -> Option<SecretState> {
        Some(state.apply(&input.op).1)
    }

    fn partition(ops: &[Operation<SecretInput, SecretOutput>]) -> Vec<Vec<usize>> {
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut parts: Vec<Vec<usize>> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let idle = match op.output {
                Some(SecretOutput::Error) => true,
                None => op.input.op == SecretOp::Read,
                Some(_) => false,
            };
            if idle {
                continue;
            }
            let p = *index.entry(op.input.name.as_str()).or_insert_with(|| {
                parts.push(Vec::new());
                parts.len() - 1
            });
            parts[p].push(i);
        }
        parts
    }

    fn partition_label(
        ops: &[Operation<SecretInput, SecretOutput>],
        part: &[usize],
    ) -> Option<String> {
        part.first().map(|&i| ops[i].input.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecretOp as I;
    use SecretOutput as O;

    fn input(op: SecretOp) -> SecretInput {
        SecretInput {
            name: "a".into(),
            op,
        }
    }

    const ONE: SecretState = SecretState::Present {
        id: None,
        version: 1,
        value: 7,
    };

    #[test]
    fn step_follows_the_sequential_store() {
        let s = SecretState::Absent;
        let create = input(I::Create { value: 7 });
        assert_eq!(
            SecretsModel::step(&s, &create, &O::Created { id: None }),
            Some(ONE)
        );
        assert_eq!(SecretsModel::step(&s, &create, &O::AlreadyExists), None);
        assert_eq!(
            SecretsModel::step(&ONE, &create, &O::AlreadyExists),
            Some(ONE)
        );
        let rotate = input(I::Rotate { value: 8 });
        let two = SecretState::Present {
            id: None,
            version: 2,
            value: 8,
        };
        assert_eq!(
            SecretsModel::step(&ONE, &rotate, &O::Rotated { version: 2 }),
            Some(two)
        );
        assert_eq!(
            SecretsModel::step(&ONE, &rotate, &O::Rotated { version: 3 }),
            None
        );
        assert_eq!(SecretsModel::step(&s, &rotate, &O::NotFound), Some(s));
        let read = input(I::Read);
        let v17 = O::Value {
            version: 1,
            value: 7,
            id: None,
        };
        assert_eq!(SecretsModel::step(&ONE, &read, &v17), Some(ONE));
        assert_eq!(SecretsModel::step(&two, &read, &v17), None);
        assert_eq!(SecretsModel::step(&s, &read, &O::NotFound), Some(s));
        assert_eq!(SecretsModel::step(&ONE, &read, &O::NotFound), None);
        let delete = input(I::Delete);
        assert_eq!(SecretsModel::step(&two, &delete, &O::Deleted), Some(s));
        assert_eq!(SecretsModel::step(&s, &delete, &O::Deleted), None);
        // A mismatched answer is never allowed; Error always is, without effect.
        assert_eq!(SecretsModel::step(&ONE, &read, &O::Deleted), None);
        assert_eq!(SecretsModel::step(&ONE, &delete, &O::Error), Some(ONE));
    }

    #[test]
    fn ids_must_match_once_known() {
        let create = input(I::Create { value: 7 });
        let made = SecretsModel::step(&SecretState::Absent, &create, &O::Created { id: Some(4) });
        let made = made.expect("create from absent");
        let read = |id| O::Value {
            version: 1,
            value: 7,
            id,
        };
        let read_input = input(I::Read);
        assert_eq!(
            SecretsModel::step(&made, &read_input, &read(Some(4))),
            Some(made)
        );
        assert_eq!(
            SecretsModel::step(&made, &read_input, &read(None)),
            Some(made)
        );
        assert_eq!(SecretsModel::step(&made, &read_input, &read(Some(5))), None);
        // Unknown until a read reports it.
        let learnt = SecretsModel::step(&ONE, &read_input, &read(Some(5)));
        assert_eq!(
            learnt,
            Some(SecretState::Present {
                id: Some(5),
                version: 1,
                value: 7
            })
        );
    }

    #[test]
    fn unknown_outcomes_take_their_effect() {
        let s = SecretState::Absent;
        assert_eq!(
            SecretsModel::step_unknown(&s, &input(I::Create { value: 7 })),
            Some(ONE)
        );
        assert_eq!(
            SecretsModel::step_unknown(&ONE, &input(I::Create { value: 9 })),
            Some(ONE)
        );
        assert_eq!(SecretsModel::step_unknown(&ONE, &input(I::Delete)), Some(s));
        assert_eq!(
            SecretsModel::step_unknown(&s, &input(I::Rotate { value: 1 })),
            Some(s)
        );
    }

    #[test]
    fn partition_by_name_leaving_out_idle_operations() {
        let op = |name: &str, op, output| Operation {
            client: 0,
            input: SecretInput {
                name: name.into(),
                op,
            },
            call: 0,
            output,
            ret: 1,
        };
        let ops = [
            op("a", I::Create { value: 1 }, Some(O::Created { id: None })),
            op("b", I::Read, Some(O::NotFound)),
            op("a", I::Read, None),
            op("a", I::Delete, Some(O::Error)),
            op("a", I::Delete, None),
            op("b", I::Rotate { value: 2 }, None),
        ];
        assert_eq!(SecretsModel::partition(&ops), [vec![0, 4], vec![1, 5]]);
        assert_eq!(
            SecretsModel::partition_label(&ops, &[1, 5]).as_deref(),
            Some("b")
        );
    }
}
