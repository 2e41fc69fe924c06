//! The atomic writer: Kubernetes' protocol for swapping a whole set of files at once.
//!
//! Layout of a published directory:
//!
//! ```text
//! ..2026_11_26_19_44_40.123456789/   the current version of every file (real files, owner/mode set)
//! ..data -> ..2026_11_26_19_44_40.123456789
//! db_pw -> ..data/db_pw              one relative symlink per top-level visible name
//! conf -> ..data/conf                (nested targets resolve through their top-level directory)
//! ```
//!
//! A write builds a fresh timestamped directory, points a new `..data_tmp` symlink at it and
//! `rename`s that over `..data`. `rename(2)` replaces the link atomically, so path resolution of
//! `db_pw` lands either entirely in the old directory or entirely in the new one: never a partial
//! file (files are complete before the swap) and never a mix for a reader that resolves `..data`
//! once. Nothing is fsynced: this only ever runs on tmpfs, which [`ensure_tmpfs`] checks.
//!
//! Known window, which Kubernetes has too: a reader that resolved `..data` to the old directory a
//! moment before the swap and looks a name up in it after the old directory was removed gets
//! `ENOENT`. Hammering readers hit it (dozens of times in 15 000 reads in our test), and an
//! application that treats a missing secret file as fatal would crash on a rotation. So the old
//! version is removed only after a short grace period ([`DEFAULT_GRACE`], adjustable with
//! [`AtomicWriter::set_grace`]): a reader would now have to stall that long between two steps
//! of one path lookup. Retrying after `ENOENT` always reaches the new version.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Uid};
use zeroize::Zeroizing;

use crate::TMPFS_MAGIC;
use crate::error::{Context, Error};

/// The symlink that names the current version directory.
pub const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file to deliver. Files are keyed by `target`, not by secret: two references to the same
/// secret with different owners or modes are two files (Swarm keys by secret and lets the last
/// reference win).
#[derive(Clone)]
pub struct SecretFile {
    /// Relative to the published directory (the atomic writer), or absolute (`lockbox run`'s
    /// file targets, bound over the given path).
    pub target: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, ≤ 0o777.
    pub mode: u32,
    pub data: Zeroizing<Vec<u8>>,
}

impl SecretFile {
    /// Docker's defaults: owned by 0:0, mode 0444.
    pub fn new(target: impl Into<PathBuf>, data: impl Into<Zeroizing<Vec<u8>>>) -> Self {
        SecretFile {
            target: target.into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data: data.into(),
        }
    }

    /// The file a parsed `--secret` reference asks for, holding `data`.
    pub fn from_reference(
        reference: &lockbox_proto::reference::SecretRef,
        data: impl Into<Zeroizing<Vec<u8>>>,
    ) -> Self {
        SecretFile {
            target: PathBuf::from(&reference.target),
            uid: reference.uid,
            gid: reference.gid,
            mode: reference.mode,
            data: data.into(),
        }
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// Never prints the data.
impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("target", &self.target)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

/// Refuses to go on unless `fd` lives on tmpfs: the guard for "no plaintext on disk".
pub fn ensure_tmpfs(fd: BorrowedFd<'_>, path: &Path) -> Result<(), Error> {
    let st = rustix::fs::fstatfs(fd).ctx(|| format!("statfs {}", path.display()))?;
    // f_type's integer type differs between architectures; widen through i64 to compare.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64 as u64;
    if magic != TMPFS_MAGIC {
        return Err(Error::NotTmpfs {
            path: path.to_owned(),
            magic,
        });
    }
    Ok(())
}

/// Splits a relative target into normal components, refusing anything that could escape the
/// directory or collide with the writer's own `..` names.
pub(crate) fn relative_components(target: &Path) -> Result<Vec<&std::ffi::OsStr>, Error> {
    let bad = |reason| Error::BadTarget {
        target: target.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("\"..\" components are not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("must be relative to the secrets directory"));
            }
        }
    }
    match out.first() {
        None => Err(bad("empty")),
        Some(first) if first.as_encoded_bytes().starts_with(b"..") => {
            Err(bad("top-level names starting with \"..\" are reserved"))
        }
        Some(_) => Ok(out),
    }
}

/// Checks a whole file set: valid targets, no duplicates, no file that is another's directory.
fn check_set(files: &[SecretFile]) -> Result<Vec<PathBuf>, Error> {
    let mut norm = Vec::with_capacity(files.len());
    let mut seen = HashSet::new();
    for f in files {
        if f.mode > 0o777 {
            return Err(Error::BadTarget {
                target: f.target.clone(),
                reason: "mode has bits outside 0o777",
            });
        }
        let p: PathBuf = relative_components(&f.target)?.iter().collect();
        if !seen.insert(p.clone()) {
            return Err(Error::DuplicateTarget(f.target.clone()));
        }
        norm.push(p);
    }
    for p in &norm {
        for anc in p.ancestors().skip(1) {
            if !anc.as_os_str().is_empty() && seen.contains(anc) {
                return Err(Error::BadTarget {
                    target: p.clone(),
                    reason: "lies inside another target's file",
                });
            }
        }
    }
    Ok(norm)
}

/// A timestamped version directory name, Kubernetes style, unique within this process.
fn version_dir_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "..{y:04}_{mo:02}_{d:02}_{:02}_{:02}_{:02}.{:09}{}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// How long an unpublished version stays readable for readers caught mid-lookup.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(10);

/// Writes file sets into one directory on tmpfs with atomic publication.
#[derive(Debug)]
pub struct AtomicWriter {
    dir: OwnedFd,
    path: PathBuf,
    grace: Duration,
}

impl AtomicWriter {
    /// Opens an existing directory; fails unless it is on tmpfs.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", path.display()))?;
        Self::from_fd(dir, path.to_owned())
    }

    /// Uses an already-open directory (`path` is for messages only); fails unless on tmpfs.
    pub fn from_fd(dir: OwnedFd, path: PathBuf) -> Result<Self, Error> {
        ensure_tmpfs(dir.as_fd(), &path)?;
        Ok(AtomicWriter {
            dir,
            path,
            grace: DEFAULT_GRACE,
        })
    }

    /// Sets how long an old version survives its unpublishing (zero: removed at once).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The version directory `..data` points at now, if any.
    pub fn current_version(&self) -> Result<Option<String>, Error> {
        match rustix::fs::readlinkat(&self.dir, DATA_DIR, Vec::new()) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e).ctx(|| format!("readlink {}/{DATA_DIR}", self.path.display())),
        }
    }

    /// Replaces the whole file set atomically. Names not in `files` disappear.
    pub fn write(&mut self, files: &[SecretFile]) -> Result<(), Error> {
        let targets = check_set(files)?;

        // 1. A fresh version directory with every file complete, owned and moded.
        let version = version_dir_name();
        self.mkdir(&self.dir, &version)?;
        let vdir = self.open_dir(&self.dir, &version)?;
        for (file, target) in files.iter().zip(&targets) {
            if let Err(e) = self.write_one(&vdir, target, file) {
                // Leave nothing half-written behind; the old version stays published.
                let _ = remove_tree(&self.dir, &version);
                return Err(e);
            }
        }

        // 2. Publish: a new symlink renamed over `..data` (rename is the atomic step).
        match rustix::fs::unlinkat(&self.dir, DATA_TMP, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e).ctx(|| self.msg("remove stale", DATA_TMP)),
        }
        rustix::fs::symlinkat(version.as_str(), &self.dir, DATA_TMP)
            .ctx(|| self.msg("symlink", DATA_TMP))?;
        rustix::fs::renameat(&self.dir, DATA_TMP, &self.dir, DATA_DIR)
            .ctx(|| self.msg("publish", DATA_DIR))?;

        // 3. Visible names: `name -> ..data/name` for every top-level name, stale ones removed.
        let top: BTreeSet<&std::ffi::OsStr> = targets
            .iter()
            .filter_map(|t| t.components().next())
            .map(|c| c.as_os_str())
            .collect();
        for name in &top {
            self.ensure_link(name)?;
        }
        let entries = self.list(&self.dir)?;
        let stale_versions = entries.iter().any(|(name, ftype)| {
            name.starts_with("..")
                && name != DATA_DIR
                && name != version.as_str()
                && *ftype == FileType::Directory
        });
        if stale_versions && !self.grace.is_zero() {
            std::thread::sleep(self.grace);
        }
        for (name, ftype) in entries {
            let bytes = name.as_bytes();
            if bytes.starts_with(b"..") {
                // 4. Old version directories (and leftovers of a crash) go once unpublished.
                if name != DATA_DIR && name != version.as_str() && ftype == FileType::Directory {
                    remove_tree(&self.dir, &name).ctx(|| self.msg("remove old version", &name))?;
                }
                continue;
            }
            if !top.contains(std::ffi::OsStr::new(&name)) && ftype == FileType::Symlink {
                rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty())
                    .ctx(|| self.msg("remove stale link", &name))?;
            }
        }
        Ok(())
    }

    fn msg(&self, what: &str, name: &str) -> String {
        format!("{what} {}/{name}", self.path.display())
    }

    fn mkdir(&self, parent: &OwnedFd, name: &str) -> Result<(), Error> {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .ctx(|| self.msg("mkdir", name))?;
        // Set the final mode explicitly so the process umask cannot narrow or widen it; 0755
        // lets a non-root consumer traverse to the files its own modes allow.
        let d = self.open_dir(parent, name)?;
        rustix::fs::fchmod(&d, Mode::from_raw_mode(0o755)).ctx(|| self.msg("chmod", name))?;
        Ok(())
    }

    fn open_dir(&self, parent: &OwnedFd, name: &str) -> Result<OwnedFd, Error> {
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| self.msg("open", name))
    }

    fn write_one(&self, vdir: &OwnedFd, target: &Path, file: &SecretFile) -> Result<(), Error> {
        let comps: Vec<&std::ffi::OsStr> = target.components().map(|c| c.as_os_str()).collect();
        let (leaf, dirs) = comps.split_last().expect("checked non-empty");
        let mut cur = vdir.try_clone().ctx(|| "dup directory fd".into())?;
        for d in dirs {
            let d = d.to_string_lossy();
            match rustix::fs::mkdirat(&cur, d.as_ref(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let sub = self.open_dir(&cur, &d)?;
                    rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o755))
                        .ctx(|| self.msg("chmod", &d))?;
                    cur = sub;
                }
                Err(rustix::io::Errno::EXIST) => cur = self.open_dir(&cur, &d)?,
                Err(e) => return Err(e).ctx(|| self.msg("mkdir", &d)),
            }
        }
        let shown = target.display().to_string();
        // 0600 while writing: nobody but us can open it before owner and mode are final.
        let fd = rustix::fs::openat(
            &cur,
            *leaf,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx(|| self.msg("create", &shown))?;
        let mut f = File::from(fd);
        f.write_all(&file.data).ctx(|| self.msg("write", &shown))?;
        // chown before chmod: chown clears set-id bits, and the final mode must be exact.
        rustix::fs::fchown(
            &f,
            Some(Uid::from_raw(file.uid)),
            Some(Gid::from_raw(file.gid)),
        )
        .ctx(|| self.msg("chown", &shown))?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(file.mode)).ctx(|| self.msg("chmod", &shown))?;
        Ok(())
    }

    fn ensure_link(&self, name: &std::ffi::OsStr) -> Result<(), Error> {
        let name_s = name.to_string_lossy();
        let want = format!("{DATA_DIR}/{name_s}");
        match rustix::fs::readlinkat(&self.dir, name, Vec::new()) {
            Ok(t) if t.as_bytes() == want.as_bytes() => return Ok(()),
            Ok(_) => {
                rustix::fs::unlinkat(&self.dir, name, AtFlags::empty())
                    .ctx(|| self.msg("replace link", &name_s))?;
            }
            Err(rustix::io::Errno::NOENT) => {}
            // EINVAL: something that is not a symlink sits on a name we need.
            Err(e) => return Err(e).ctx(|| self.msg("inspect", &name_s)),
        }
        rustix::fs::symlinkat(want.as_str(), &self.dir, name).ctx(|| self.msg("link", &name_s))
    }

    fn list(&self, dir: &OwnedFd) -> Result<Vec<(String, FileType)>, Error> {
        list_dir(dir).ctx(|| format!("list {}", self.path.display()))
    }
}

pub(crate) fn list_dir(dir: impl AsFd) -> rustix::io::Result<Vec<(String, FileType)>> {
    let mut out = Vec::new();
    let mut d = Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        out.push((name, entry.file_type()));
    }
    Ok(out)
}

/// `rm -r parent/name` without following symlinks.
pub(crate) fn remove_tree(parent: impl AsFd, name: &str) -> std::io::Result<()> {
    let parent = parent.as_fd();
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for (child, ftype) in list_dir(&dir)? {
        if ftype == FileType::Directory {
            remove_tree(&dir, &child)?;
        } else {
            rustix::fs::unlinkat(&dir, child.as_str(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn from_reference_keeps_owner_mode_and_target() {
        let r: lockbox_proto::reference::SecretRef =
            "source=pw,target=/etc/app/pw,uid=1000,gid=1001,mode=0400"
                .parse()
                .unwrap();
        let f = SecretFile::from_reference(&r, b"x".to_vec());
        assert_eq!(f.target, PathBuf::from("/etc/app/pw"));
        assert_eq!((f.uid, f.gid, f.mode), (1000, 1001, 0o400));
    }

    #[test]
    fn set_checks() {
        let f = |t: &str| SecretFile::new(t, b"x".to_vec());
        assert!(check_set(&[f("a"), f("b/c")]).is_ok());
        assert!(matches!(
            check_set(&[f("a"), f("./a")]),
            Err(Error::DuplicateTarget(_))
        ));
        assert!(check_set(&[f("a"), f("a/b")]).is_err());
        assert!(check_set(&[f("../a")]).is_err());
        assert!(check_set(&[f("/etc/a")]).is_err());
        assert!(check_set(&[f("..data")]).is_err());
        assert!(check_set(&[f("x").mode(0o4755)]).is_err());
    }
}
