//! The search over one partition.

use std::collections::HashSet;
use std::time::Instant;

use crate::{Model, Operation};

/// How far a partition's search may go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) deadline: Option<Instant>,
    pub(crate) max_steps: Option<u64>,
    pub(crate) unknown_horizon: Option<u64>,
}

/// The verdict on one partition; indices are into the whole history.
#[derive(Debug)]
pub(crate) enum Outcome<S> {
    Ok,
    Illegal {
        prefix: Vec<usize>,
        state: S,
        stuck: usize,
        candidates: Vec<usize>,
    },
    Timeout {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// A set of operations (local indices), hashable as a cache key.
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The call/return events in time order, as a doubly linked list (slot 0 is the head) from
/// which an operation's events are unlinked when it is placed and relinked, in reverse order,
/// when the search backtracks over it.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each slot: the operation (local index) and whether it is the call.
    slot: Vec<(usize, bool)>,
    /// For each operation: its call's slot and its return's (none if the outcome is unknown
    /// and there is no horizon).
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl Events {
    fn new<I, O>(ops: &[&Operation<I, O>], unknown_horizon: Option<u64>) -> Self {
        // (time, is_return, op): at equal times calls come first, so operations that merely
        // touch count as concurrent.
        let mut ev: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            ev.push((op.call, false, i));
            if op.output.is_some() {
                ev.push((op.ret.max(op.call), true, i));
            } else if let Some(h) = unknown_horizon {
                ev.push((op.call.saturating_add(h), true, i));
            }
        }
        ev.sort_unstable();
        let len = ev.len() + 1;
        let mut events = Events {
            next: (1..=len).map(|i| if i == len { NIL } else { i }).collect(),
            prev: (0..len).map(|i| if i == 0 { NIL } else { i - 1 }).collect(),
            slot: Vec::with_capacity(len),
            call: vec![NIL; ops.len()],
            ret: vec![NIL; ops.len()],
        };
        events.slot.push((NIL, false));
        for (s, &(_, is_return, i)) in ev.iter().enumerate() {
            events.slot.push((i, !is_return));
            if is_return {
                events.ret[i] = s + 1;
            } else {
                events.call[i] = s + 1;
            }
        }
        events
    }

    fn unlink(&mut self, s: usize) {
        let (p, n) = (self.prev[s], self.next[s]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, s: usize) {
        let (p, n) = (self.prev[s], self.next[s]);
        self.next[p] = s;
        if n != NIL {
            self.prev[n] = s;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        if self.ret[op] != NIL {
            self.unlink(self.ret[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.ret[op] != NIL {
            self.relink(self.ret[op]);
        }
        self.relink(self.call[op]);
    }
}

struct Best<S> {
    depth: usize,
    prefix: Vec<usize>,
    state: S,
    stuck: usize,
    candidates: Vec<usize>,
}

/// Check the operations `part` (indices into `all`).
pub(crate) fn check_part<M: Model>(
    all: &[Operation<M::Input, M::Output>],
    part: &[usize],
    budget: Budget,
) -> Outcome<M::State> {
    let ops: Vec<&Operation<M::Input, M::Output>> = part.iter().map(|&i| &all[i]).collect();
    let mut events = Events::new(&ops, budget.unknown_horizon);
    let mut known_left = ops.iter().filter(|op| op.output.is_some()).count();
    let mut state = M::init();
    let mut placed = Bitset::new(ops.len());
    // (operation, state before it, whether it was abandoned rather than placed)
    let mut stack: Vec<(usize, M::State, bool)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut best: Option<Best<M::State>> = None;
    let mut steps: u64 = 0;
    let mut entry = events.next[HEAD];

    loop {
        if known_left == 0 {
            return Outcome::Ok;
        }
        steps += 1;
        if budget.max_steps.is_some_and(|m| steps > m)
            || (steps.is_multiple_of(1024) && budget.deadline.is_some_and(|d| Instant::now() >= d))
        {
            return Outcome::Timeout { steps };
        }

        if entry != NIL {
            let (op, is_call) = events.slot[entry];
            if is_call {
                let next_state = match &ops[op].output {
                    Some(out) => M::step(&state, &ops[op].input, out),
                    // An unknown operation that would change nothing here need not be placed
                    // here: leaving it pending keeps every option placing it would give.
                    None => M::step_unknown(&state, &ops[op].input).filter(|s| *s != state),
                };
                if let Some(next_state) = next_state {
                    placed.set(op);
                    if seen.insert((placed.0.clone(), next_state.clone())) {
                        stack.push((op, std::mem::replace(&mut state, next_state), false));
                        events.lift(op);
                        if ops[op].output.is_some() {
                            known_left -= 1;
                        }
                        entry = events.next[HEAD];
                        continue;
                    }
                    placed.clear(op);
                }
                entry = events.next[entry];
                continue;
            }
            if ops[op].output.is_none() {
                // The horizon of an unknown operation that could not be placed before it: from
                // here on it never took effect. (No choice is made, so backtracking goes past.)
                placed.set(op);
                stack.push((op, state.clone(), true));
                events.lift(op);
                entry = events.next[entry];
                continue;
            }
            // A return: its operation had to be placed before anything further, and could not
            // be. Remember the deepest such point as the explanation.
            if best.as_ref().is_none_or(|b| stack.len() > b.depth) {
                let mut candidates = Vec::new();
                let mut s = events.next[HEAD];
                while s != entry {
                    let (o, c) = events.slot[s];
                    if c && o != op {
                        candidates.push(part[o]);
                    }
                    s = events.next[s];
                }
                best = Some(Best {
                    depth: stack.len(),
                    prefix: stack.iter().filter(|e| !e.2).map(|e| part[e.0]).collect(),
                    state: state.clone(),
                    stuck: part[op],
                    candidates,
                });
            }
        }
        // Backtrack: undo the last placement (and the abandonments after it) and try the next
        // candidate after it.
        let Some((op, previous, abandoned)) = stack.pop() else {
            let best = best.expect("a partition with an operation left to place has a return");
            return Outcome::Illegal {
                prefix: best.prefix,
                state: best.state,
                stuck: best.stuck,
                candidates: best.candidates,
            };
        };
        state = previous;
        placed.clear(op);
        events.unlift(op);
        if ops[op].output.is_some() {
            known_left += 1;
        }
        entry = if abandoned {
            NIL
        } else {
            events.next[events.call[op]]
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register holding one integer: `Some(v)` writes, `None` reads.
    struct Register;
    impl Model for Register {
        type State = u64;
        type Input = Option<u64>;
        type Output = u64;
        fn init() -> u64 {
            0
        }
        fn step(state: &u64, input: &Option<u64>, out: &u64) -> Option<u64> {
            match input {
                Some(v) => Some(*v),
                None => (out == state).then_some(*state),
            }
        }
        fn step_unknown(state: &u64, input: &Option<u64>) -> Option<u64> {
            Some(input.unwrap_or(*state))
        }
    }

    fn op(
        input: Option<u64>,
        call: u64,
        output: Option<u64>,
        ret: u64,
    ) -> Operation<Option<u64>, u64> {
        Operation {
            client: 0,
            input,
            call,
            output,
            ret,
        }
    }

    #[test]
    fn events_sort_calls_before_returns_at_equal_times() {
        let ops = [op(Some(1), 0, Some(0), 5), op(None, 5, Some(1), 9)];
        let refs: Vec<_> = ops.iter().collect();
        let ev = Events::new(&refs, None);
        let order: Vec<_> = (1..ev.slot.len()).map(|s| ev.slot[s]).collect();
        assert_eq!(order, [(0, true), (1, true), (0, false), (1, false)]);
    }

    #[test]
    fn lift_and_unlift_restore_the_list() {
        let ops = [
            op(Some(1), 0, Some(0), 5),
            op(None, 1, None, 0),
            op(None, 2, Some(1), 9),
        ];
        let refs: Vec<_> = ops.iter().collect();
        let mut ev = Events::new(&refs, None);
        let (next, prev) = (ev.next.clone(), ev.prev.clone());
        ev.lift(0);
        ev.lift(1);
        assert_eq!(ev.slot[ev.next[HEAD]], (2, true));
        ev.unlift(1);
        ev.unlift(0);
        assert_eq!((ev.next, ev.prev), (next, prev));
    }

    #[test]
    fn bitset_sets_and_clears_across_words() {
        let mut b = Bitset::new(130);
        b.set(0);
        b.set(129);
        assert_eq!(b.0, [1, 0, 2]);
        b.clear(129);
        assert_eq!(b.0, [1, 0, 0]);
    }

    #[test]
    fn register_histories() {
        // write 1 overlaps a read of 1 and a read of 0: both orders are possible.
        let ok = [
            op(Some(1), 0, Some(0), 10),
            op(None, 1, Some(0), 3),
            op(None, 2, Some(1), 4),
        ];
        let budget = Budget {
            deadline: None,
            max_steps: None,
            unknown_horizon: None,
        };
        assert!(matches!(
            check_part::<Register>(&ok, &[0, 1, 2], budget),
            Outcome::Ok
        ));
        // a read of 0 after a read of 1 returned, with one write of 1: not linearizable.
        let bad = [
            op(Some(1), 0, Some(0), 10),
            op(None, 1, Some(1), 3),
            op(None, 4, Some(0), 5),
        ];
        let Outcome::Illegal { prefix, stuck, .. } =
            check_part::<Register>(&bad, &[0, 1, 2], budget)
        else {
            panic!("not found illegal")
        };
        assert_eq!((prefix, stuck), (vec![0, 1], 2));
        // an unknown write of 1 explains the read of 1, and may also never have happened.
        let unknown = [
            op(Some(1), 0, None, 0),
            op(None, 5, Some(1), 6),
            op(None, 1, Some(0), 2),
        ];
        assert!(matches!(
            check_part::<Register>(&unknown, &[0, 1, 2], budget),
            Outcome::Ok
        ));
        assert!(matches!(
            check_part::<Register>(&unknown, &[0, 2], budget),
            Outcome::Ok
        ));
    }

    #[test]
    fn budget_of_steps_times_out() {
        let ops = [op(Some(1), 0, Some(0), 5), op(None, 6, Some(1), 9)];
        let budget = Budget {
            deadline: None,
            max_steps: Some(1),
            unknown_horizon: None,
        };
        assert!(matches!(
            check_part::<Register>(&ops, &[0, 1], budget),
            Outcome::Timeout { .. }
        ));
    }
}
