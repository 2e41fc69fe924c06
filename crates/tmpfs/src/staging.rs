//! Host staging tmpfs for `lockbox docker run` and friends: one tmpfs per workload under a
//! root-only directory, published read-only into the container by the caller.
//!
//! ```text
//! <root>/                       0700 root, on any filesystem (holds only mount points)
//! <root>/<workload>/            tmpfs, mode 0700, nosuid,nodev,noexec,size=…(,noswap)
//! <root>/<workload>/secrets/    the atomic writer's directory: bind this at /run/secrets
//! ```
//!
//! The tmpfs root stays 0700 so no other host user can reach the files; the `secrets`
//! subdirectory is 0755 so that, once bound into a container, a non-root consumer can traverse it
//! (each file then has its own owner and mode).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::{Context, Error};
use crate::writer::{AtomicWriter, SecretFile};

/// Default size bound of a staging tmpfs: far above any real set of secrets (500 KiB each), low
/// enough that a runaway writer cannot eat the host's memory.
pub const DEFAULT_STAGING_SIZE: u64 = 16 * 1024 * 1024;
const PUBLISHED: &str = "secrets";

fn valid_workload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Makes `root` exist as a directory owned by us with mode 0700.
fn prepare_root(root: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => {}
        Err(e) => return Err(e).ctx(|| format!("create {}", root.display())),
    }
    let meta = fs::symlink_metadata(root).ctx(|| format!("stat {}", root.display()))?;
    if !meta.is_dir() {
        return Err(Error::Io {
            context: format!("staging root {}", root.display()),
            source: io::Error::other("not a directory"),
        });
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::Io {
            context: format!("staging root {}", root.display()),
            source: io::Error::other(format!("owned by uid {}, not by us", meta.uid())),
        });
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .ctx(|| format!("chmod 0700 {}", root.display()))?;
    }
    Ok(())
}

/// Room beyond the files' pages: directories, symlinks and the scratch file of a rotation.
pub(crate) const SLACK: u64 = 1024 * 1024;
/// tmpfs gives every file whole pages.
const PAGE: u64 = 4096;

/// What a set occupies on tmpfs: each file rounded up to whole pages.
pub(crate) fn set_bytes(files: &[SecretFile]) -> u64 {
    files
        .iter()
        .map(|f| (f.data.len() as u64).div_ceil(PAGE).max(1) * PAGE)
        .sum()
}

/// The tmpfs size a set needs: a rotation writes the whole new set before the old one goes
/// (the atomic writer's `..data` swap), so twice the set, plus slack, and never less than
/// [`DEFAULT_STAGING_SIZE`].
pub(crate) fn tmpfs_size_for(bytes: u64) -> u64 {
    (2 * bytes + SLACK).max(DEFAULT_STAGING_SIZE)
}
/// Raises the size bound of the tmpfs mounted at `path` (for the shim's hidden tmpfs, a
/// `/proc/self/fd` path to its root). The mount keeps its `nosuid,nodev,noexec` (and its
/// `noswap`, which a remount leaves as it was).
pub(crate) fn grow_tmpfs(path: &Path, size: u64) -> Result<(), Error> {
    let data = std::ffi::CString::new(format!("size={size}")).expect("no NUL");
    rustix::mount::mount_remount(
        path,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .ctx(|| format!("resize the secrets tmpfs to {size} bytes"))
}

/// Mounts a tmpfs at `target`, asking for `noswap` (Linux ≥ 6.4) and falling back without it.
pub(crate) fn mount_tmpfs(target: &Path, size: u64, mode: u32) -> Result<bool, Error> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let base = format!("size={size},mode={mode:o}");
    let with_noswap = std::ffi::CString::new(format!("{base},noswap")).expect("no NUL");
    let base = std::ffi::CString::new(base).expect("no NUL");
    match rustix::mount::mount(
        "lockbox",
        target,
        "tmpfs",
        flags,
        Some(with_noswap.as_c_str()),
    ) {
        Ok(()) => Ok(true),
        // Older kernels reject the unknown option with EINVAL: secrets may then reach swap, which
        // is what Docker's own secrets tmpfs allows too.
        Err(rustix::io::Errno::INVAL) => {
            rustix::mount::mount("lockbox", target, "tmpfs", flags, Some(base.as_c_str()))
                .ctx(|| format!("mount tmpfs on {}", target.display()))?;
            Ok(false)
        }
        Err(e) => Err(e).ctx(|| format!("mount tmpfs on {}", target.display())),
    }
}

/// Unmounts `path`, detaching lazily when something still uses it (a container being torn
/// down). `Ok(false)` when nothing was mounted there.
fn unmount(path: &Path) -> Result<bool, Error> {
    match rustix::mount::unmount(path, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(path, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                .ctx(|| format!("lazy unmount {}", path.display()))?;
            Ok(true)
        }
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e).ctx(|| format!("unmount {}", path.display())),
    }
}

/// One workload's tmpfs on the host. Dropping it unmounts and removes it (best effort); call
/// [`Staging::remove`] to see errors, or [`Staging::persist`] to keep it for a detached
/// container whose removal will be noticed later.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    writer: Mutex<AtomicWriter>,
    noswap: bool,
    removed: bool,
}

impl Staging {
    /// Mounts a fresh tmpfs at `root/workload_id` with [`DEFAULT_STAGING_SIZE`].
    pub fn create(root: &Path, workload_id: &str) -> Result<Self, Error> {
        Self::create_with_size(root, workload_id, DEFAULT_STAGING_SIZE)
    }

    pub fn create_with_size(root: &Path, workload_id: &str, size: u64) -> Result<Self, Error> {
        if !valid_workload_id(workload_id) {
            return Err(Error::BadWorkloadId(workload_id.to_owned()));
        }
        prepare_root(root)?;
        let path = root.join(workload_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .ctx(|| format!("create {}", path.display()))?;
        let noswap = match mount_tmpfs(&path, size, 0o700) {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e);
            }
        };
        let done = (|| {
            let published = path.join(PUBLISHED);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&published)
                .ctx(|| format!("create {}", published.display()))?;
            fs::set_permissions(&published, fs::Permissions::from_mode(0o755))
                .ctx(|| format!("chmod {}", published.display()))?;
            // The statfs check inside `open` is the guard that matters: if the mount above had
            // silently not happened, this refuses to write.
            AtomicWriter::open(&published)
        })();
        match done {
            Ok(writer) => Ok(Staging {
                path,
                writer: Mutex::new(writer),
                noswap,
                removed: false,
            }),
            Err(e) => {
                let _ = unmount(&path);
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Takes over a staging tmpfs made earlier (by a daemon that crashed or restarted), so a
    /// running consumer keeps its files and gets later rotations. The atomic writer's statfs
    /// check refuses a directory that is no longer a tmpfs.
    pub fn open(root: &Path, workload_id: &str) -> Result<Self, Error> {
        if !valid_workload_id(workload_id) {
            return Err(Error::BadWorkloadId(workload_id.to_owned()));
        }
        let path = root.join(workload_id);
        let writer = AtomicWriter::open(&path.join(PUBLISHED))?;
        Ok(Staging {
            path,
            writer: Mutex::new(writer),
            noswap: false,
            removed: false,
        })
    }

    /// The tmpfs mount point (`root/workload_id`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory to bind read-only at `/run/secrets` in the consumer.
    pub fn published_dir(&self) -> PathBuf {
        self.path.join(PUBLISHED)
    }

    /// Whether the kernel accepted `noswap`.
    pub fn noswap(&self) -> bool {
        self.noswap
    }

    /// Replaces the file set atomically (relative targets only). The tmpfs is grown first
    /// when the new set would not fit beside what it holds (the old set stays until the new
    /// one is published), or the write is refused with the sizes named.
    pub fn write(&self, files: &[SecretFile]) -> Result<(), Error> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let st =
            rustix::fs::fstatfs(w.dir_fd()).ctx(|| format!("statfs {}", self.path.display()))?;
        // Field types differ between architectures.
        #[allow(clippy::unnecessary_cast)]
        let (blocks, free, bsize) = (st.f_blocks as u64, st.f_bfree as u64, st.f_bsize as u64);
        let (size, used) = (blocks * bsize, (blocks - free) * bsize);
        let incoming = set_bytes(files);
        if used + incoming + SLACK > size {
            let wanted = tmpfs_size_for(incoming).max(used + incoming + SLACK);
            grow_tmpfs(&self.path, wanted).map_err(|e| Error::TmpfsTooSmall {
                set: incoming,
                size,
                wanted,
                reason: e.to_string(),
            })?;
        }
        w.write(files)
    }

    /// Unmounts (lazily if busy) and removes the mount point.
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        self.teardown()
    }

    /// Keeps the tmpfs after this value is gone; [`reap`] or a later `remove` cleans it up.
    pub fn persist(mut self) -> PathBuf {
        self.removed = true;
        self.path.clone()
    }

    fn teardown(&self) -> Result<(), Error> {
        unmount(&self.path)?;
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", self.path.display())),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.teardown();
        }
    }
}

/// Removes leftover workload tmpfs directories under `root` (after a crash), except those
/// `keep` says are still in use. Returns the names removed.
pub fn reap(root: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("list {}", root.display())),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.ctx(|| format!("list {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_workload_id(&name) || keep(&name) {
            continue;
        }
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // Unmount every layer (a crashed run may have mounted twice), then the empty dir goes.
        while unmount(&path)? {}
        match fs::remove_dir(&path) {
            Ok(()) => removed.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => removed.push(name),
            Err(e) => return Err(e).ctx(|| format!("remove {}", path.display())),
        }
    }
    removed.sort();
    Ok(removed)
}
