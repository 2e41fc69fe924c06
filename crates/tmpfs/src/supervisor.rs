//! The parent side of `lockbox run`: spawns the shim, feeds it secrets over a pipe, relays
//! signals, applies rotations, and reports the command's exit code.
//!
//! Blocking and thread-based on purpose: it works the same from a plain `main` or from inside a
//! tokio `spawn_blocking`, and it never does namespace work itself (see [`crate::shim_main`]).

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::pipe::PipeFlags;
use rustix::process::Signal;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use signal_hook::low_level::siginfo::Cause;

use crate::error::{Context, Error};
use crate::placeholder::{DEFAULT_STATE_DIR, Placeholder, Record, reap_orphans};
use crate::shim::DEFAULT_SHIM_SIZE;
use crate::staging::{set_bytes, tmpfs_size_for};
use crate::writer::SecretFile;
use crate::{FORWARDED_SIGNALS, wire};

/// How to start the shim: `<program> <prefix_args…> <shim arguments…>`.
#[derive(Debug, Clone)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub prefix_args: Vec<OsString>,
}

impl ShimCommand {
    pub fn new(
        program: impl Into<PathBuf>,
        prefix_args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        ShimCommand {
            program: program.into(),
            prefix_args: prefix_args.into_iter().map(Into::into).collect(),
        }
    }

    /// The running executable's hidden `__shim` subcommand (what the `lockbox` binary uses).
    pub fn current_exe_subcommand(subcommand: impl Into<OsString>) -> Result<Self, Error> {
        let exe = std::env::current_exe().ctx(|| "locate the current executable".into())?;
        Ok(ShimCommand::new(exe, [subcommand.into()]))
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The command and its arguments (looked up in `PATH` like `execvp`).
    pub command: Vec<OsString>,
    /// Where relative targets appear (default `/run/secrets`).
    pub secrets_dir: PathBuf,
    /// Drop to this uid:gid (supplementary groups cleared, no_new_privs set).
    pub user: Option<(u32, u32)>,
    /// Size bound of the process's tmpfs, in bytes: a floor; a set that needs more (twice its
    /// pages plus slack, so a rotation fits beside it) gets more, and a rotation grows it.
    pub tmpfs_size: u64,
    /// Extra environment for the command (paths such as `DB_PASSWORD_FILE`, never values).
    pub env: Vec<(OsString, OsString)>,
    /// Relay SIGINT/TERM/HUP/QUIT/USR1/USR2 sent to this process to the command.
    pub forward_signals: bool,
    /// Where the placeholders for absolute targets are recorded (0700), so that those of a
    /// supervisor killed before it could remove them are reaped by the next one.
    pub state_dir: PathBuf,
}

/// Parses `--user UID[:GID]` (numeric only: names would need the target's passwd database;
/// GID defaults to UID).
pub fn parse_user_spec(spec: &str) -> Result<(u32, u32), Error> {
    let bad = || Error::BadUser(spec.to_owned());
    let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
    let id = |s: &str| match s.parse::<u32>() {
        Ok(u32::MAX) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    };
    Ok((id(u)?, id(g)?))
}

impl RunOptions {
    pub fn new(command: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        RunOptions {
            command: command.into_iter().map(Into::into).collect(),
            secrets_dir: PathBuf::from("/run/secrets"),
            user: None,
            tmpfs_size: DEFAULT_SHIM_SIZE,
            env: Vec::new(),
            forward_signals: true,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// A running `lockbox run` command.
pub struct Supervisor {
    shim: Child,
    shim_pidfd: Arc<OwnedFd>,
    command_pid: u32,
    command_pidfd: Option<OwnedFd>,
    control: Option<File>,
    status: BufReader<File>,
    forwarder: Option<(Handle, JoinHandle<()>)>,
    secrets_dir: PathBuf,
    record: Record,
    placeholders: Vec<Placeholder>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("shim_pid", &self.shim.id())
            .field("command_pid", &self.command_pid)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts the command with `files` delivered; returns once they are in place and the command
    /// has been started (or with the shim's reason for failing).
    pub fn spawn(
        shim: &ShimCommand,
        opts: RunOptions,
        files: Vec<SecretFile>,
    ) -> Result<Self, Error> {
        if opts.command.is_empty() {
            return Err(Error::Shim("no command given".into()));
        }
        let files = normalize(files, &opts.secrets_dir);
        // Catch the forwarded signals from before the shim exists: one arriving during setup is
        // held (signal-hook keeps it pending) and relayed once the command runs, instead of
        // killing this process and orphaning the command.
        let signals = if opts.forward_signals {
            Some(
                SignalsInfo::<WithOrigin>::new(FORWARDED_SIGNALS.map(|s| s.as_raw()))
                    .ctx(|| "install signal handlers".into())?,
            )
        } else {
            None
        };
        let mut placeholders = Vec::new();
        reap_orphans(&opts.state_dir);
        let record = Record::for_this_process(&opts.state_dir);
        if let Err(e) = add_placeholders(&files, &record, &mut placeholders) {
            record.remove_all(&placeholders);
            return Err(e);
        }

        // Both pipes stay close-on-exec: the shim opens its ends through /proc/<our pid>/fd/N,
        // so no other process this (maybe multithreaded) parent spawns can inherit them.
        let (ctl_r, ctl_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ctx(|| "pipe".into())?;
        let (st_r, st_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ctx(|| "pipe".into())?;
        let mut cmd = Command::new(&shim.program);
        cmd.args(&shim.prefix_args)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--control-fd")
            .arg(ctl_r.as_raw_fd().to_string())
            .arg("--status-fd")
            .arg(st_w.as_raw_fd().to_string())
            .arg("--secrets-dir")
            .arg(&opts.secrets_dir)
            .arg("--size")
            .arg(
                opts.tmpfs_size
                    .max(tmpfs_size_for(set_bytes(&files)))
                    .to_string(),
            );
        if let Some((u, g)) = opts.user {
            cmd.arg("--user").arg(format!("{u}:{g}"));
        }
        cmd.arg("--").args(&opts.command);
        cmd.envs(opts.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())));
        let spawned = cmd.spawn();
        let mut shim_child = match spawned {
            Ok(c) => c,
            Err(e) => {
                record.remove_all(&placeholders);
                return Err(e).ctx(|| format!("start shim {}", shim.program.display()));
            }
        };
        let shim_pidfd = match rustix::process::Pid::from_raw(shim_child.id() as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
        {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = shim_child.kill();
                let _ = shim_child.wait();
                record.remove_all(&placeholders);
                return Err(e).ctx(|| "pidfd_open(shim)".into());
            }
        };
        // Wait until the shim holds its own descriptions of the pipes; only then may ours of its
        // ends go (they must go, or EOF would never be seen on either pipe). The pidfd tells a
        // shim that died first from one that is merely slow.
        let attached = wait_attached(&st_r, &shim_pidfd);
        drop(ctl_r);
        drop(st_w);
        let mut sup = Supervisor {
            shim: shim_child,
            shim_pidfd,
            command_pid: 0,
            command_pidfd: None,
            control: Some(File::from(ctl_w)),
            status: BufReader::new(File::from(st_r)),
            forwarder: None,
            secrets_dir: opts.secrets_dir.clone(),
            record,
            placeholders,
        };
        match attached {
            Ok(true) => {}
            Ok(false) => return Err(sup.fail(Error::ChildGone)),
            Err(e) => {
                let _ = rustix::process::pidfd_send_signal(&*sup.shim_pidfd, Signal::KILL);
                return Err(sup.fail(e));
            }
        }
        // A write error (EPIPE: the shim already failed) is reported through the status line.
        let wrote = wire::write_files(sup.control.as_mut().expect("just set"), &files);
        drop(files);
        match sup.read_status() {
            Ok(line) if line.starts_with("ready ") => {
                sup.command_pid = match line[6..].trim().parse() {
                    Ok(pid) => pid,
                    Err(_) => return Err(sup.fail(Error::Protocol(line))),
                };
                // The helper reaps the command only after it exits, and it is alive right now:
                // the pid cannot have been recycled yet unless the command already died.
                sup.command_pidfd = rustix::process::Pid::from_raw(sup.command_pid as i32)
                    .and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                    });
            }
            Ok(line) if line.starts_with("err ") => {
                return Err(sup.fail(Error::Shim(line[4..].to_owned())));
            }
            Ok(line) => return Err(sup.fail(Error::Protocol(format!("unexpected {line:?}")))),
            Err(e) => {
                let e = match (e, wrote) {
                    (Error::ChildGone, Err(w)) => Error::Io {
                        context: "send secrets to the shim".into(),
                        source: w,
                    },
                    (e, _) => e,
                };
                return Err(sup.fail(e));
            }
        }
        if let Some(signals) = signals {
            sup.forwarder = Some(start_forwarder(signals, sup.shim_pidfd.clone())?);
        }
        Ok(sup)
    }

    /// Pid of the command (a child of the shim helper).
    pub fn command_pid(&self) -> u32 {
        self.command_pid
    }

    /// Pid of the shim helper (the direct child).
    pub fn shim_pid(&self) -> u32 {
        self.shim.id()
    }

    /// Replaces the command's whole file set atomically (relative targets: one `..data` swap;
    /// absolute targets: one mount swap each). Returns when the new files are visible.
    pub fn rotate(&mut self, files: Vec<SecretFile>) -> Result<(), Error> {
        let files = normalize(files, &self.secrets_dir);
        add_placeholders(&files, &self.record, &mut self.placeholders)?;
        let control = self.control.as_mut().ok_or(Error::ChildGone)?;
        if wire::write_files(control, &files).is_err() {
            return Err(Error::ChildGone);
        }
        drop(files);
        let line = self.read_status()?;
        if line == "ok" {
            Ok(())
        } else if let Some(msg) = line.strip_prefix("err ") {
            Err(Error::Shim(msg.to_owned()))
        } else {
            Err(Error::Protocol(format!("unexpected {line:?}")))
        }
    }

    /// Sends `sig` to the command (through the helper), e.g. for the `signal:SIG` rotation policy.
    pub fn signal(&self, sig: Signal) -> Result<(), Error> {
        rustix::process::pidfd_send_signal(&*self.shim_pidfd, sig).ctx(|| format!("send {sig:?}"))
    }

    /// Kills the command with SIGKILL; the helper then exits with 137.
    pub fn kill(&self) -> Result<(), Error> {
        match &self.command_pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL)
                .ctx(|| "kill the command".into()),
            None => self.signal(Signal::KILL),
        }
    }

    /// Waits for the command; returns its exit code, or 128+N if a signal N ended it. Everything
    /// is torn down by then: the namespace and its tmpfs die with their last process.
    pub fn wait(mut self) -> Result<i32, Error> {
        let st = self.shim.wait().ctx(|| "wait for the shim".into());
        self.finish();
        let st = st?;
        Ok(st
            .code()
            .or_else(|| st.signal().map(|s| 128 + s))
            .unwrap_or(1))
    }

    fn finish(&mut self) {
        self.control = None;
        if let Some((handle, thread)) = self.forwarder.take() {
            handle.close();
            let _ = thread.join();
        }
        self.record
            .remove_all(&std::mem::take(&mut self.placeholders));
    }

    fn read_status(&mut self) -> Result<String, Error> {
        let mut line = String::new();
        match self.status.read_line(&mut line) {
            Ok(0) | Err(_) => Err(Error::ChildGone),
            Ok(_) => Ok(line.trim_end().to_owned()),
        }
    }

    /// Turns a failed start into the best error: the shim's own message if it sent one.
    fn fail(&mut self, e: Error) -> Error {
        let mut err = e;
        if matches!(err, Error::ChildGone) {
            // The shim may have written its reason just before exiting.
            if let Ok(line) = self.read_status()
                && let Some(msg) = line.strip_prefix("err ")
            {
                err = Error::Shim(msg.to_owned());
            }
        }
        if let Error::Protocol(_) = err {
            let _ = self.kill();
        }
        let _ = self.shim.wait();
        self.finish();
        err
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Like std's Child: dropping does not kill. Closing the control pipe ends rotations;
        // the command then lives as long as this process (the shim kills it when we exit).
        self.finish();
    }
}

/// Absolute targets that point inside the secrets directory are relative ones in disguise.
fn normalize(files: Vec<SecretFile>, secrets_dir: &Path) -> Vec<SecretFile> {
    files
        .into_iter()
        .map(|mut f| {
            if let Ok(rel) = f.target.strip_prefix(secrets_dir) {
                f.target = rel.to_path_buf();
            }
            f
        })
        .collect()
}

fn add_placeholders(
    files: &[SecretFile],
    record: &Record,
    placeholders: &mut Vec<Placeholder>,
) -> Result<(), Error> {
    for f in files.iter().filter(|f| f.target.is_absolute()) {
        crate::writer::relative_components(f.target.strip_prefix("/").unwrap_or(&f.target))?;
        if placeholders.iter().any(|p| p.path == f.target) {
            continue;
        }
        if let Some(p) = record.create(&f.target)? {
            placeholders.push(p);
        }
    }
    Ok(())
}

/// How long a shim may take to open its pipes: it does nothing else before, so only a wrong
/// [`ShimCommand`] (a program that does not speak the protocol) can exceed it.
const ATTACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for the shim's `attached` line or its death. `Ok(false)`: it died first.
fn wait_attached(status: &OwnedFd, shim: &OwnedFd) -> Result<bool, Error> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = std::time::Instant::now() + ATTACH_TIMEOUT;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::Protocol(format!(
                "the shim did not attach within {ATTACH_TIMEOUT:?} (is the shim command right?)"
            )));
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [
            PollFd::new(status, PollFlags::IN),
            PollFd::new(shim, PollFlags::IN),
        ];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).ctx(|| "poll the shim".into()),
        }
        let status_ready = !fds[0].revents().is_empty();
        let shim_dead = !fds[1].revents().is_empty();
        if status_ready {
            // Byte by byte: nothing after the newline may be consumed here.
            let mut b = [0u8; 1];
            match rustix::io::read(status, &mut b) {
                Ok(0) => return Ok(false),
                Ok(_) if b[0] == b'\n' => {
                    return if line == b"attached" {
                        Ok(true)
                    } else {
                        Err(Error::Shim(
                            String::from_utf8_lossy(line.strip_prefix(b"err ").unwrap_or(&line))
                                .into_owned(),
                        ))
                    };
                }
                Ok(_) if line.len() < 4096 => line.push(b[0]),
                Ok(_) => return Err(Error::Protocol("overlong line from the shim".into())),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).ctx(|| "read from the shim".into()),
            }
        } else if shim_dead {
            return Ok(false);
        }
    }
}

fn start_forwarder(
    mut signals: SignalsInfo<WithOrigin>,
    pidfd: Arc<OwnedFd>,
) -> Result<(Handle, JoinHandle<()>), Error> {
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("lockbox-signals".into())
        .spawn(move || {
            for info in signals.forever() {
                // ^C and friends from a terminal already reached the command (same foreground
                // process group): relaying them would deliver them twice.
                if matches!(info.cause, Cause::Kernel) {
                    continue;
                }
                if let Some(sig) = Signal::from_named_raw(info.signal) {
                    let _ = rustix::process::pidfd_send_signal(&*pidfd, sig);
                }
            }
        })
        .ctx(|| "start the signal thread".into())?;
    Ok((handle, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_spec() {
        assert_eq!(parse_user_spec("1000").unwrap(), (1000, 1000));
        assert_eq!(parse_user_spec("1000:33").unwrap(), (1000, 33));
        assert!(parse_user_spec("nobody").is_err());
        assert!(parse_user_spec("1:").is_err());
        assert!(parse_user_spec("4294967295").is_err());
    }
}
