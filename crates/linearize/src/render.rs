//! A short text account of a verdict.

use std::fmt::{Debug, Write as _};

use crate::{CheckResult, Operation};

/// How many of the prefix's last operations a report shows.
const TAIL: usize = 8;

/// One line for one operation: `#index client c [call..ret] input -> output`.
fn line<I: Debug, O: Debug>(ops: &[Operation<I, O>], i: usize) -> String {
    let op = &ops[i];
    match &op.output {
        Some(out) => format!(
            "#{i} client {} [{}..{}] {:?} -> {:?}",
            op.client,
            op.call,
            op.ret.max(op.call),
            op.input,
            out
        ),
        None => format!(
            "#{i} client {} [{}..] {:?} -> no answer (maybe applied)",
            op.client, op.call, op.input
        ),
    }
}

/// Describe `result` for the history `ops` it was computed from: for a violation, the key, the
/// end of the longest linearizable prefix, the state it leaves, the operation that could not be
/// placed and the others that were tried in its place. Times are the history's nanoseconds.
pub fn render<I: Debug, O: Debug, S: Debug>(
    ops: &[Operation<I, O>],
    result: &CheckResult<S>,
) -> String {
    let mut s = String::new();
    match result {
        CheckResult::Ok => s.push_str("linearizable\n"),
        CheckResult::Timeout {
            partition,
            label,
            steps,
        } => {
            let _ = writeln!(
                s,
                "unknown: the check ran out of budget after {steps} steps on {}",
                name(*partition, label.as_deref())
            );
        }
        CheckResult::Illegal(v) => {
            let _ = writeln!(
                s,
                "NOT linearizable: {}: {} operation(s) linearized, then none fits",
                name(v.partition, v.label.as_deref()),
                v.prefix.len()
            );
            if v.prefix.len() > TAIL {
                let _ = writeln!(s, "  ... {} earlier operation(s)", v.prefix.len() - TAIL);
            }
            for &i in &v.prefix[v.prefix.len().saturating_sub(TAIL)..] {
                let _ = writeln!(s, "  {}", line(ops, i));
            }
            let _ = writeln!(s, "  state then: {:?}", v.state);
            let _ = writeln!(
                s,
                "could not place (it had to come next: it returned before all operations left were called, but those tried below):"
            );
            let _ = writeln!(s, "  {}", line(ops, v.stuck));
            if !v.candidates.is_empty() {
                let _ = writeln!(s, "tried before it, without success:");
                for &i in &v.candidates {
                    let _ = writeln!(s, "  {}", line(ops, i));
                }
            }
        }
    }
    s
}

fn name(partition: usize, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("key {l:?}"),
        None => format!("partition {partition}"),
    }
}
