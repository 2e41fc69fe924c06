//! Placeholders on the host for absolute targets: a bind mount needs an existing file to
//! cover, so the supervisor creates an empty, mode-0 file where a target does not exist yet,
//! and removes it when the run ends.
//!
//! These are root's writes into directories a workload's user may control, so none of them
//! follows a symlink: the target's directory is opened with `openat2(RESOLVE_NO_SYMLINKS)`
//! (a symlink anywhere on the path is refused with the path named), the file is created
//! through that handle (`O_CREAT|O_EXCL|O_NOFOLLOW`), and it is removed through the same
//! handle (still the directory it was made in, even if the path was re-pointed since) and
//! only while it is still the inode that was created, empty and regular.
//!
//! Each supervisor records its placeholders (device, inode, path) in a root-only state
//! directory as soon as each is made (the record is fsynced before the run goes on). A supervisor killed with `kill -9` cannot remove them;
//! the next supervisor reaps the records whose owner is gone ([`reap_orphans`]), with the same
//! checks, reopening the directory without following symlinks.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::{Context, Error};

/// Where supervisors record their placeholders (0700, root's).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lockbox-run";

/// A placeholder this supervisor created.
#[derive(Debug)]
pub(crate) struct Placeholder {
    pub(crate) path: PathBuf,
    dir: OwnedFd,
    leaf: OsString,
    dev: u64,
    ino: u64,
}

/// Opens the directory that holds `target` without following any symlink on the way.
fn open_parent(target: &Path) -> Result<(OwnedFd, OsString), Error> {
    let bad = |reason| Error::BadTarget {
        target: target.to_owned(),
        reason,
    };
    let (Some(parent), Some(leaf)) = (target.parent(), target.file_name()) else {
        return Err(bad("an absolute target needs a directory and a file name"));
    };
    match rustix::fs::openat2(
        rustix::fs::CWD,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok((fd, leaf.to_owned())),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => Err(bad(
            "its directory path goes through a symlink; lockbox creates files on the host only along real directories (give the resolved path)",
        )),
        Err(e) => Err(e).ctx(|| {
            format!(
                "open the directory of absolute target {} (it must exist)",
                target.display()
            )
        }),
    }
}

/// The placeholder's identity, or `None` when `leaf` is no longer an empty regular file.
fn identity(dir: &OwnedFd, leaf: &OsStr) -> Option<(u64, u64)> {
    let st = rustix::fs::statat(dir, leaf, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_size == 0)
        .then_some((st.st_dev, st.st_ino))
}

/// Removes `leaf` from `dir` if it is still the inode `(dev, ino)`, empty and regular: never
/// something a user put there since.
fn remove_if_same(dir: &OwnedFd, leaf: &OsStr, dev: u64, ino: u64) {
    if identity(dir, leaf) == Some((dev, ino)) {
        let _ = rustix::fs::unlinkat(dir, leaf, AtFlags::empty());
    }
}

/// The record of one supervisor's placeholders.
#[derive(Debug)]
pub(crate) struct Record {
    state_dir: PathBuf,
    path: PathBuf,
}

impl Record {
    /// The record for this process, in `state_dir`; nothing is written until a placeholder
    /// is made.
    pub(crate) fn for_this_process(state_dir: &Path) -> Record {
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or_default();
        Record {
            state_dir: state_dir.to_owned(),
            path: state_dir.join(format!("{pid}-{start}")),
        }
    }

    /// Creates a placeholder for `target` unless something exists there (`Ok(None)`), and
    /// records it before returning.
    pub(crate) fn create(&self, target: &Path) -> Result<Option<Placeholder>, Error> {
        let (dir, leaf) = open_parent(target)?;
        if rustix::fs::statat(&dir, &leaf, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Ok(None);
        }
        let fd = match rustix::fs::openat(
            &dir,
            &leaf,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => return Ok(None),
            Err(e) => {
                return Err(e).ctx(|| {
                    format!(
                        "create mount point for absolute target {}",
                        target.display()
                    )
                });
            }
        };
        let st = rustix::fs::fstat(&fd).ctx(|| format!("stat {}", target.display()))?;
        let p = Placeholder {
            path: target.to_owned(),
            dir,
            leaf,
            dev: st.st_dev,
            ino: st.st_ino,
        };
        if let Err(e) = self.append(&p) {
            remove_if_same(&p.dir, &p.leaf, p.dev, p.ino);
            return Err(e);
        }
        Ok(Some(p))
    }

    fn append(&self, p: &Placeholder) -> Result<(), Error> {
        ensure_private_dir(&self.state_dir)?;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .mode(0o600)
            .open(&self.path)
            .ctx(|| format!("record placeholder in {}", self.path.display()))?;
        writeln!(
            f,
            "{} {} {}",
            p.dev,
            p.ino,
            hex(p.path.as_os_str().as_bytes())
        )
        .and_then(|()| f.sync_data())
        .ctx(|| format!("record placeholder in {}", self.path.display()))
    }

    /// Removes this supervisor's placeholders (through the directory handles they were made
    /// in) and its record.
    pub(crate) fn remove_all(&self, placeholders: &[Placeholder]) {
        for p in placeholders {
            remove_if_same(&p.dir, &p.leaf, p.dev, p.ino);
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates `dir` 0700 if missing; refuses a symlink or a directory others can write.
fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).ctx(|| format!("create state directory {}", dir.display())),
    }
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .ctx(|| format!("open state directory {} (symlinks refused)", dir.display()))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
        .ctx(|| format!("chmod 0700 {}", dir.display()))?;
    let st = rustix::fs::fstat(&fd).ctx(|| format!("stat {}", dir.display()))?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(Error::Protocol(format!(
            "state directory {} is owned by uid {}, not by this user",
            dir.display(),
            st.st_uid
        )));
    }
    Ok(())
}

/// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with
/// the pid it names one process for the life of the boot, even once the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Removes the placeholders recorded by supervisors that are gone (killed before they could
/// clean up), each only if still the empty inode that was created, and their records.
pub(crate) fn reap_orphans(state_dir: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        if start_time(pid) == Some(start) {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut it = line.split(' ');
            let (Some(dev), Some(ino), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let (Ok(dev), Ok(ino), Some(path)) = (dev.parse(), ino.parse(), unhex(path)) else {
                continue;
            };
            let path = PathBuf::from(OsString::from_vec(path));
            if let Ok((dir, leaf)) = open_parent(&path) {
                remove_if_same(&dir, &leaf, dev, ino);
            }
        }
        let _ = fs::remove_file(entry.path());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
