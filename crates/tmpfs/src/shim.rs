//! The shim: the single-threaded process that builds a command's private view of its secrets.
//!
//! # Why a separate process, and why it stays
//!
//! `unshare(CLONE_NEWNS)` only works for a process whose filesystem context is not shared with
//! other threads, so the multithreaded `lockbox` (tokio) cannot do it in place; and a `pre_exec`
//! hook may not allocate, so it cannot write files. Hence `lockbox __shim`, run before any
//! runtime starts: it reads the files from a pipe, unshares, makes `/` a recursive slave (its
//! mounts must not propagate back to the host, the host's unmounts must reach it), mounts a tmpfs on the secrets directory, writes
//! the files there with the atomic writer, then covers that mount with a read-only,
//! `nosuid,nodev,noexec` bind of the published subdirectory, binds absolute targets read-only over
//! their paths, and starts the command.
//!
//! For rotations the shim does **not** exec the command itself: it spawns it (dropping to
//! `--user` there) and stays behind as a small helper in the same namespace. The helper keeps
//! directory handles on the writable tmpfs (hidden from the command beneath the read-only bind)
//! and applies every new file set the supervisor sends through the same pipe: relative targets by
//! the atomic writer's `..data` swap, absolute targets by mounting the new file *beneath* the old
//! bind (`MOVE_MOUNT_BENEATH`, Linux ≥ 6.5) and unmounting the old one, so that an `open` sees
//! the old file or the new one and nothing in between (older kernels: the new bind is stacked on
//! top and the old one stays hidden until the namespace ends). The alternative, a helper that
//! enters the namespace later through `/proc/<pid>/ns/mnt`, would have to find the writable tmpfs
//! again by path, i.e. leave it reachable from the command's view, and `setns` also needs a
//! single-threaded caller: a fresh process per rotation for no gain.
//!
//! The helper also relays signals (the supervisor signals the helper; the helper signals the
//! command through a pidfd, so a recycled pid can never be hit), waits for the command and exits
//! with its status (128+N when killed by signal N). When the command and its descendants are
//! gone, the namespace and its tmpfs die with them: nothing ever appears in the host's mount
//! table. [`crate::Supervisor::kill`] kills the command itself (through a pidfd), and the
//! helper follows when it sees the command die. The helper also holds a pidfd on the
//! supervisor: once the supervisor process is gone (`kill -9` included) and the control pipe
//! closed, it kills the command, so no command runs on unsupervised.
//!
//! Protocol on the two pipes (fd numbers on the command line; the secrets are never in argv or
//! the environment): supervisor → shim: [`crate::wire`] frames, the first one being the initial
//! set; shim → supervisor: one line per event, `ready <pid>`, `ok`, or `err <message>`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use crate::error::{Context, Error};
use crate::staging::{SLACK, grow_tmpfs, mount_tmpfs, set_bytes, tmpfs_size_for};
use crate::writer::{AtomicWriter, SecretFile};
use crate::{FORWARDED_SIGNALS, wire};

/// Default size bound of the per-process tmpfs (the floor; a larger set gets more, see
/// [`tmpfs_size_for`]).
pub(crate) const DEFAULT_SHIM_SIZE: u64 = crate::staging::DEFAULT_STAGING_SIZE;
const REL_DIR: &str = "rel";
const ABS_DIR: &str = "abs";

/// Exit codes for failures before the command runs, as `docker run` uses them.
const EXIT_SETUP: i32 = 125;
const EXIT_CANNOT_EXEC: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

struct ShimArgs {
    parent_pid: i32,
    control_fd: i32,
    status_fd: i32,
    secrets_dir: PathBuf,
    user: Option<(u32, u32)>,
    size: u64,
    command: Vec<OsString>,
}

fn parse_args(args: Vec<OsString>) -> Result<ShimArgs, String> {
    let mut it = args.into_iter();
    let mut parent_pid = None;
    let mut control_fd = None;
    let mut status_fd = None;
    let mut secrets_dir = PathBuf::from("/run/secrets");
    let mut user = None;
    let mut size = DEFAULT_SHIM_SIZE;
    let mut command = Vec::new();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_bytes() {
            b"--parent-pid" => {
                parent_pid = Some(
                    value("--parent-pid")?
                        .parse()
                        .map_err(|_| "bad --parent-pid")?,
                )
            }
            b"--control-fd" => {
                control_fd = Some(
                    value("--control-fd")?
                        .parse()
                        .map_err(|_| "bad --control-fd")?,
                )
            }
            b"--status-fd" => {
                status_fd = Some(
                    value("--status-fd")?
                        .parse()
                        .map_err(|_| "bad --status-fd")?,
                )
            }
            b"--secrets-dir" => secrets_dir = PathBuf::from(value("--secrets-dir")?),
            b"--size" => size = value("--size")?.parse().map_err(|_| "bad --size")?,
            b"--user" => {
                let v = value("--user")?;
                let (u, g) = v.split_once(':').unwrap_or((&v, &v));
                let bad = || format!("--user {v}: expected numeric UID[:GID]");
                user = Some((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?));
            }
            b"--" => {
                command.extend(it);
                break;
            }
            _ => return Err(format!("unknown shim argument {:?}", a)),
        }
    }
    if !secrets_dir.is_absolute() {
        return Err("--secrets-dir must be absolute".into());
    }
    if command.is_empty() {
        return Err("no command given".into());
    }
    Ok(ShimArgs {
        parent_pid: parent_pid.ok_or("--parent-pid is required")?,
        control_fd: control_fd.ok_or("--control-fd is required")?,
        status_fd: status_fd.ok_or("--status-fd is required")?,
        secrets_dir,
        user,
        size,
        command,
    })
}

/// Entry point of `lockbox __shim …` (and of the crate's test shim binary). Must be called while
/// the process is still single-threaded: before tokio or anything else starts a thread.
pub fn shim_main(args: Vec<OsString>) -> ! {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lockbox shim: {e}");
            std::process::exit(EXIT_SETUP);
        }
    };
    let mut status = match open_parent_fd(args.parent_pid, args.status_fd, OFlags::WRONLY) {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            eprintln!("lockbox shim: status pipe: {e}");
            std::process::exit(EXIT_SETUP);
        }
    };
    let control = match open_parent_fd(args.parent_pid, args.control_fd, OFlags::RDONLY) {
        Ok(f) => f,
        Err(e) => report_fatal(&mut status, EXIT_SETUP, &e),
    };
    // The helper kills the command once the supervisor is gone (kill -9 included).
    let supervisor = match open_parent_pidfd(args.parent_pid) {
        Ok(fd) => fd,
        Err(e) => report_fatal(&mut status, EXIT_SETUP, &e),
    };
    // Tells the supervisor it may close its copies of our ends (so EOF works both ways).
    if writeln!(status, "attached")
        .and_then(|()| status.flush())
        .is_err()
    {
        std::process::exit(EXIT_SETUP);
    }
    // The helper holds plaintext during rotations: keep it out of core dumps and away from
    // ptrace by a same-uid command. (The command's own exec resets this for the command.)
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);

    let helper = match Helper::setup(&args, control) {
        Ok(h) => h,
        Err(e) => report_fatal(&mut status, EXIT_SETUP, &e),
    };
    // Catch the forwarded signals before the command exists, so one sent right after `ready`
    // cannot kill the helper. Handlers reset to default in the command on exec.
    let mut signals = match SignalsInfo::<WithOrigin>::new(FORWARDED_SIGNALS.map(|s| s.as_raw())) {
        Ok(s) => s,
        Err(e) => report_fatal(
            &mut status,
            EXIT_SETUP,
            &Error::Io {
                context: "signal handlers".into(),
                source: e,
            },
        ),
    };
    let mut child = match spawn_command(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                io::ErrorKind::PermissionDenied => EXIT_CANNOT_EXEC,
                _ => EXIT_SETUP,
            };
            let e = Error::Io {
                context: format!("exec {:?}", args.command[0]),
                source: e,
            };
            report_fatal(&mut status, code, &e)
        }
    };
    let pidfd = match rustix::process::Pid::from_raw(child.id() as i32)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()))
    {
        Ok(fd) => Arc::new(fd),
        Err(e) => {
            let _ = child.kill();
            report_fatal(
                &mut status,
                EXIT_SETUP,
                &Error::Io {
                    context: "pidfd_open".into(),
                    source: e.into(),
                },
            )
        }
    };
    if writeln!(status, "ready {}", child.id())
        .and_then(|()| status.flush())
        .is_err()
    {
        // The supervisor is gone before we started: do not leave the command running alone.
        let _ = child.kill();
    }

    // From here on threads are fine: the namespace work is done.
    {
        let pidfd = pidfd.clone();
        std::thread::spawn(move || {
            for info in signals.forever() {
                // A terminal's ^C/^\ (and hangup) reaches the whole foreground process group,
                // the command included: relaying those would deliver them twice.
                if matches!(info.cause, Cause::Kernel) {
                    continue;
                }
                if let Some(sig) = rustix::process::Signal::from_named_raw(info.signal) {
                    let _ = rustix::process::pidfd_send_signal(&*pidfd, sig);
                }
            }
        });
    }
    let status = Arc::new(Mutex::new(status));
    {
        let status = status.clone();
        let pidfd = pidfd.clone();
        std::thread::spawn(move || {
            helper.serve_rotations(&status);
            // The control pipe closed: the supervisor died (kill -9), or let go of the
            // command (dropped without waiting) and may live on. Either way, once it is gone
            // nobody is left to rotate, relay signals or report the exit: the command must
            // not run on unsupervised.
            if wait_until_gone(&supervisor) {
                let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
            }
        });
    }
    let code = match child.wait() {
        Ok(st) => st
            .code()
            .or_else(|| st.signal().map(|s| 128 + s))
            .unwrap_or(EXIT_SETUP),
        Err(_) => EXIT_SETUP,
    };
    std::process::exit(code);
}

/// Tells the supervisor why setup failed, then exits with a `docker run`-style code.
fn report_fatal(status: &mut BufWriter<File>, code: i32, e: &Error) -> ! {
    let msg = e.to_string().replace('\n', " ");
    let _ = writeln!(status, "err {msg}");
    let _ = status.flush();
    std::process::exit(code);
}

/// Opens one of the supervisor's pipe ends through `/proc/<pid>/fd/<n>`: a new description of
/// the same pipe. The supervisor's ends stay close-on-exec, so no other child it spawns (it may
/// be multithreaded) can ever inherit the secret channel, and no `pre_exec` hook is needed.
fn open_parent_fd(parent: i32, fd: i32, access: OFlags) -> Result<File, Error> {
    let check_parent = || {
        let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        if ppid == parent {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "parent is {ppid}, expected {parent}: the supervisor is gone"
            )))
        }
    };
    check_parent()?;
    let path = format!("/proc/{parent}/fd/{fd}");
    let f = rustix::fs::open(path.as_str(), access | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("open {path}"))?;
    // Re-check: if the supervisor died in between, its pid may name another process now.
    check_parent()?;
    let st = rustix::fs::fstat(&f).ctx(|| format!("stat {path}"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Fifo {
        return Err(Error::Protocol(format!("{path} is not a pipe")));
    }
    Ok(File::from(f))
}

/// A pidfd on the supervisor, which must still be our parent once it is open (so the pid
/// cannot name a recycled process).
fn open_parent_pidfd(parent: i32) -> Result<OwnedFd, Error> {
    let pid = rustix::process::Pid::from_raw(parent)
        .ok_or_else(|| Error::Protocol(format!("bad supervisor pid {parent}")))?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .ctx(|| "pidfd_open(supervisor)".into())?;
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if ppid != parent {
        return Err(Error::Protocol(format!(
            "parent is {ppid}, expected {parent}: the supervisor is gone"
        )));
    }
    Ok(fd)
}

/// Blocks until the process behind `pidfd` has exited (its pidfd turns readable); `false`
/// if that cannot be watched.
fn wait_until_gone(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    loop {
        match poll(&mut fds, None) {
            Ok(n) if n > 0 => return true,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

fn spawn_command(args: &ShimArgs) -> io::Result<Child> {
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if let Some((uid, gid)) = args.user {
        // no_new_privs is inherited through fork and exec and can never be cleared: set on the
        // helper (which execs nothing), it binds the command so a setuid binary cannot climb
        // back to root.
        rustix::thread::set_no_new_privs(true)?;
        // std calls setgroups(0, NULL) (when root), then setgid, then setuid, in that order.
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
}

/// `unshare(CLONE_NEWNS)`. rustix deprecated its safe `unshare` because `CLONE_FILES` can
/// invalidate descriptors other code owns; `CLONE_NEWNS` touches no descriptor, and the
/// workspace forbids `unsafe`, so the safe spelling is the right one here.
#[allow(deprecated)]
fn unshare_mount_namespace() -> io::Result<()> {
    rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNS)?;
    Ok(())
}

/// Counts the threads of this process: `unshare(CLONE_NEWNS)` needs exactly one.
fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// What the helper keeps after setup to apply rotations.
struct Helper {
    control: File,
    /// The tmpfs's current size bound, and what the published set occupies on it.
    size: u64,
    set_bytes: u64,
    /// The writable tmpfs root (hidden beneath the read-only bind), for scratch mounts.
    root: OwnedFd,
    rel: AtomicWriter,
    abs: AtomicWriter,
    /// Absolute targets currently bound, by path inside the namespace.
    abs_bound: BTreeMap<PathBuf, ()>,
}

impl Helper {
    fn setup(args: &ShimArgs, mut control: File) -> Result<Helper, Error> {
        let n = thread_count();
        if n != 1 {
            return Err(Error::NotSingleThreaded(n));
        }
        let files = wire::read_files(&mut control)
            .ctx(|| "read secrets from the supervisor".into())?
            .ok_or_else(|| Error::Protocol("no file set before end of stream".into()))?;

        unshare_mount_namespace().ctx(|| "unshare(CLONE_NEWNS)".into())?;
        // Without this, systemd's shared `/` would propagate our mounts back to the host.
        // A slave, not private: the host's unmounts still reach this namespace, so a workload
        // never pins a file system the host unmounted (a private copy kept it alive, and an
        // operator's `umount` + `fsck` then ran on a file system still mounted here). Where
        // `/` is not shared this is the same as private.
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
        )
        .ctx(|| "make / a slave of the host's mounts".into())?;

        let dir = &args.secrets_dir;
        if !dir.is_dir() {
            // An empty mount point on the host filesystem; no secret ever lands there.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .ctx(|| format!("create {}", dir.display()))?;
        }
        mount_tmpfs(dir, args.size, 0o700)?;
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", dir.display()))?;
        let mut rel = make_writer(&root, dir, REL_DIR)?;
        let mut abs = make_writer(&root, dir, ABS_DIR)?;
        // Absolute targets are read through binds of single inodes, never through `abs/..data`,
        // so no reader can be caught mid-lookup there: no grace period needed.
        abs.set_grace(std::time::Duration::ZERO);
        let published = set_bytes(&files);
        let size = args.size.max(tmpfs_size_for(published));
        if size > args.size {
            grow_tmpfs(&fd_path(root.as_fd()), size)?;
        }
        let (rel_files, abs_files) = split(files)?;
        rel.write(&rel_files)?;
        abs.write(&abs_files)?;

        // Cover the writable tmpfs with a read-only view of the published directory. The
        // writable mount stays underneath, reachable only through our descriptors.
        let rel_path = fd_path(rel.dir_fd());
        rustix::mount::mount_bind(rel_path.as_path(), dir)
            .ctx(|| format!("bind {}", dir.display()))?;
        remount_ro(dir)?;

        let mut helper = Helper {
            control,
            size,
            set_bytes: published,
            root,
            rel,
            abs,
            abs_bound: BTreeMap::new(),
        };
        for f in &abs_files {
            helper.bind_abs_initial(&f.target)?;
        }
        Ok(helper)
    }

    fn bind_abs_initial(&mut self, encoded: &Path) -> Result<(), Error> {
        let target = Path::new("/").join(encoded);
        let src = fd_path(self.abs.dir_fd()).join(encoded);
        rustix::mount::mount_bind(src.as_path(), &target)
            .ctx(|| format!("bind secret over {}", target.display()))?;
        remount_ro(&target)?;
        self.abs_bound.insert(target, ());
        Ok(())
    }

    /// Replaces the bind at an absolute target with the current version's file.
    fn rebind_abs(&mut self, encoded: &Path) -> Result<(), Error> {
        let target = Path::new("/").join(encoded);
        if !self.abs_bound.contains_key(&target) {
            return self.bind_abs_initial(encoded);
        }
        let clone = self.ro_clone(encoded)?;
        match rustix::mount::move_mount(
            clone.as_fd(),
            "",
            rustix::fs::CWD,
            &target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH,
        ) {
            Ok(()) => {
                // The new file is in place beneath the old one: dropping the old one is the
                // atomic switch for readers.
                // Detached: a command holding the old file open would make a plain
                // unmount fail with EBUSY (and the rotation with it).
                rustix::mount::unmount(&target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                    .ctx(|| format!("unmount old {}", target.display()))
            }
            // Kernels before 6.5: stack on top. The old file stays pinned (hidden) until the
            // namespace ends.
            Err(rustix::io::Errno::INVAL) => rustix::mount::move_mount(
                clone.as_fd(),
                "",
                rustix::fs::CWD,
                &target,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .ctx(|| format!("mount new {}", target.display())),
            Err(e) => Err(e).ctx(|| format!("mount new {} beneath", target.display())),
        }
    }

    /// A detached, read-only clone of the current version of an absolute target's file. The
    /// clone must be read-only *before* it becomes visible; without `mount_setattr(2)` (no
    /// rustix wrapper, and no `unsafe` here) that means: bind it on a scratch file in the hidden
    /// tmpfs root, remount that read-only, clone it (clones keep the flags), drop the scratch.
    fn ro_clone(&self, encoded: &Path) -> Result<OwnedFd, Error> {
        const SCRATCH: &str = ".swap";
        let scratch = fd_path(self.root.as_fd()).join(SCRATCH);
        match rustix::fs::openat(
            &self.root,
            SCRATCH,
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o000),
        ) {
            Ok(_) => {}
            Err(e) => return Err(e).ctx(|| format!("create {}", scratch.display())),
        }
        let src = fd_path(self.abs.dir_fd()).join(encoded);
        rustix::mount::mount_bind(src.as_path(), scratch.as_path())
            .ctx(|| format!("bind new /{}", encoded.display()))?;
        let cloned = remount_ro(&scratch).and_then(|()| {
            rustix::mount::open_tree(
                rustix::fs::CWD,
                scratch.as_path(),
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .ctx(|| format!("clone new /{}", encoded.display()))
        });
        let _ = rustix::mount::unmount(scratch.as_path(), UnmountFlags::DETACH);
        cloned
    }

    /// Grows the tmpfs before a set that would not fit beside the current one (the old set
    /// stays until the new one is published), or refuses the rotation with the sizes named;
    /// the command keeps the previous version either way.
    fn make_room(&mut self, incoming: u64) -> Result<(), Error> {
        let need = self.set_bytes + incoming + SLACK;
        if need <= self.size {
            return Ok(());
        }
        let size = tmpfs_size_for(incoming).max(need);
        grow_tmpfs(&fd_path(self.root.as_fd()), size).map_err(|e| Error::TmpfsTooSmall {
            set: incoming,
            size: self.size,
            wanted: size,
            reason: e.to_string(),
        })?;
        self.size = size;
        Ok(())
    }

    fn apply(&mut self, files: Vec<SecretFile>) -> Result<(), Error> {
        let incoming = set_bytes(&files);
        self.make_room(incoming)?;
        let (rel_files, abs_files) = split(files)?;
        self.rel.write(&rel_files)?;
        self.abs.write(&abs_files)?;
        let wanted: Vec<PathBuf> = abs_files
            .iter()
            .map(|f| Path::new("/").join(&f.target))
            .collect();
        for f in &abs_files {
            self.rebind_abs(&f.target)?;
        }
        // Targets dropped from the set: uncover whatever the path showed before.
        let gone: Vec<PathBuf> = self
            .abs_bound
            .keys()
            .filter(|p| !wanted.contains(p))
            .cloned()
            .collect();
        for p in gone {
            rustix::mount::unmount(&p, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                .ctx(|| format!("unmount {}", p.display()))?;
            self.abs_bound.remove(&p);
        }
        self.set_bytes = incoming;
        Ok(())
    }

    fn serve_rotations(mut self, status: &Mutex<BufWriter<File>>) {
        loop {
            let reply = match wire::read_files(&mut self.control) {
                // The supervisor closed its end (or died): no more rotations, the command runs on.
                Ok(None) | Err(_) => return,
                Ok(Some(files)) => match self.apply(files) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err {}", e.to_string().replace('\n', " ")),
                },
            };
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
            if writeln!(s, "{reply}").and_then(|()| s.flush()).is_err() {
                return;
            }
        }
    }
}

pub(crate) fn remount_ro(path: &Path) -> Result<(), Error> {
    rustix::mount::mount_remount(
        path,
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .ctx(|| format!("remount {} read-only", path.display()))
}

/// `/proc/self/fd/N`: a path that reaches a directory we hold even where no path does.
fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
}

fn make_writer(root: &OwnedFd, root_path: &Path, name: &str) -> Result<AtomicWriter, Error> {
    let path = root_path.join(name);
    rustix::fs::mkdirat(root, name, Mode::from_raw_mode(0o755))
        .ctx(|| format!("mkdir {}", path.display()))?;
    let fd = rustix::fs::openat(
        root,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
        .ctx(|| format!("chmod {}", path.display()))?;
    AtomicWriter::from_fd(fd, path)
}

/// Relative targets go to the published directory; absolute ones are stored under `abs/` with
/// the leading `/` dropped (`/etc/app/pw` → `etc/app/pw`).
fn split(files: Vec<SecretFile>) -> Result<(Vec<SecretFile>, Vec<SecretFile>), Error> {
    let mut rel = Vec::new();
    let mut abs = Vec::new();
    for mut f in files {
        if f.target.is_absolute() {
            let stripped = f
                .target
                .strip_prefix("/")
                .map(Path::to_path_buf)
                .unwrap_or_default();
            f.target = stripped;
            abs.push(f);
        } else {
            rel.push(f);
        }
    }
    Ok((rel, abs))
}
