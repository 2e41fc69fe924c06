//! Recording histories, and saving them as JSON lines to re-check later.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{CheckOptions, CheckResult, Model, Operation, check_with};

/// Write `ops` to `out`, one JSON object a line.
pub fn write_history<I: Serialize, O: Serialize>(
    out: impl Write,
    ops: &[Operation<I, O>],
) -> std::io::Result<()> {
    let mut out = BufWriter::new(out);
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Read a history written by [`write_history`]. Blank lines are skipped; a line that does not
/// parse is an `InvalidData` error naming it.
pub fn read_history<I: DeserializeOwned, O: DeserializeOwned>(
    input: impl std::io::Read,
) -> std::io::Result<Vec<Operation<I, O>>> {
    let mut ops = Vec::new();
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {e}", n + 1),
            )
        })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Read the history saved at `path` and check it against `M`; returns the history too, for
/// [`render`](crate::render).
#[allow(clippy::type_complexity)]
pub fn check_file<M>(
    path: impl AsRef<Path>,
    options: &CheckOptions,
) -> std::io::Result<(Vec<Operation<M::Input, M::Output>>, CheckResult<M::State>)>
where
    M: Model,
    M::Input: DeserializeOwned,
    M::Output: DeserializeOwned,
{
    let path = path.as_ref();
    let file = std::fs::File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let ops = read_history(file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let result = check_with::<M>(&ops, options);
    Ok((ops, result))
}

/// Records a history from concurrent clients, timing everything against one clock.
///
/// ```
/// use lockbox_linearize::{Recorder, SecretInput, SecretOp, SecretOutput};
/// let rec = Recorder::<SecretInput, SecretOutput>::new();
/// let id = rec.call(1, SecretInput { name: "db".into(), op: SecretOp::Read });
/// // ... send the request; on an answer:
/// rec.ret(id, SecretOutput::NotFound);
/// // on a timeout: nothing (or `rec.unknown(id)`); the operation stays open.
/// let history = rec.finish();
/// assert_eq!(history.len(), 1);
/// ```
#[derive(Debug)]
pub struct Recorder<I, O> {
    start: Instant,
    ops: Mutex<Vec<Operation<I, O>>>,
}

/// Names an operation recorded by [`Recorder::call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(usize);

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, Vec<Operation<I, O>>> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Note that `client` is about to send `input`; call it right *before* sending.
    pub fn call(&self, client: u64, input: I) -> OpId {
        let call = self.now();
        let mut ops = self.ops();
        ops.push(Operation {
            client,
            input,
            call,
            output: None,
            ret: u64::MAX,
        });
        OpId(ops.len() - 1)
    }

    /// Note the answer to `id`; call it right *after* receiving it. Use the model's "refused
    /// without effect" output only when the request certainly was not applied.
    pub fn ret(&self, id: OpId, output: O) {
        let ret = self.now();
        let mut ops = self.ops();
        let op = &mut ops[id.0];
        op.output = Some(output);
        op.ret = ret;
    }

    /// Note that `id` got no answer (timeout, connection lost): it may or may not have taken
    /// effect. The same as never calling [`ret`](Self::ret); here for clarity.
    pub fn unknown(&self, id: OpId) {
        let mut ops = self.ops();
        let op = &mut ops[id.0];
        op.output = None;
        op.ret = u64::MAX;
    }

    /// The history recorded so far.
    pub fn finish(self) -> Vec<Operation<I, O>> {
        self.ops
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// A copy of the history recorded so far (operations still in flight have no output).
    pub fn snapshot(&self) -> Vec<Operation<I, O>> {
        self.ops().clone()
    }
}
