//! `lockbox __nsbind <pid> <host-file> <target>…`: swaps single-file secret binds inside a
//! running container after a rotation.
//!
//! Docker binds an absolute target as one file, so the host's `..data` swap never reaches it:
//! the bind pins the old inode. This helper makes a read-only detached clone of each new file
//! on the host, enters the container's mount namespace through `/proc/<pid>/ns/mnt`, mounts the
//! clone *beneath* the current bind (`MOVE_MOUNT_BENEATH`, Linux ≥ 6.5) and unmounts the old
//! one, so a reader opens the old file or the new one and nothing in between. Older kernels:
//! the clone is stacked on top (the old one stays hidden until the container ends).
//!
//! A separate process because `setns(CLONE_NEWNS)` refuses a caller whose filesystem context
//! is shared with other threads (the daemon runs tokio), and because the switch is one way.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};
use rustix::thread::LinkNameSpaceType;

use crate::error::{Context, Error};
use crate::shim::remount_ro;

/// A read-only detached clone of `src`, made through a scratch bind next to the staging
/// (root-only directory) because a clone keeps the flags of the mount it was taken from.
fn ro_clone(src: &Path, n: usize) -> Result<OwnedFd, Error> {
    // src = <root>/<workload>/secrets/...: the scratch lives in <root>/<workload>, the tmpfs
    // root, which is 0700 and never bound into the container.
    let tmpfs_root = src
        .ancestors()
        .find(|a| a.file_name().is_some_and(|f| f == "secrets"))
        .and_then(Path::parent)
        .ok_or_else(|| Error::Protocol(format!("{} is not in a staging tmpfs", src.display())))?;
    let scratch = tmpfs_root.join(format!(".swap-{}-{n}", std::process::id()));
    rustix::fs::open(
        &scratch,
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0),
    )
    .ctx(|| format!("create {}", scratch.display()))?;
    let r = rustix::mount::mount_bind(src, &scratch)
        .ctx(|| format!("bind {}", src.display()))
        .and_then(|()| remount_ro(&scratch))
        .and_then(|()| {
            rustix::mount::open_tree(
                rustix::fs::CWD,
                &scratch,
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .ctx(|| format!("clone {}", src.display()))
        });
    let _ = rustix::mount::unmount(&scratch, UnmountFlags::DETACH);
    let _ = std::fs::remove_file(&scratch);
    r
}

fn swap(clone: &OwnedFd, target: &Path) -> Result<(), Error> {
    match rustix::mount::move_mount(
        clone.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH,
    ) {
        // Detached, not plain: a reader that has the old file open right now would make a
        // plain unmount fail with EBUSY; detaching lets it finish reading the old version
        // while every new open already sees the new one.
        Ok(()) => rustix::mount::unmount(target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
            .ctx(|| format!("unmount old {}", target.display())),
        Err(rustix::io::Errno::INVAL) => rustix::mount::move_mount(
            clone.as_fd(),
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .ctx(|| format!("mount new {}", target.display())),
        Err(e) => Err(e).ctx(|| format!("mount new {} beneath", target.display())),
    }
}

fn run(args: Vec<OsString>) -> Result<(), Error> {
    let mut it = args.into_iter();
    let pid: u32 = it
        .next()
        .and_then(|p| p.to_str()?.parse().ok())
        .ok_or_else(|| Error::Protocol("usage: __nsbind <pid> (<host-file> <target>)…".into()))?;
    let rest: Vec<PathBuf> = it.map(PathBuf::from).collect();
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(Error::Protocol(
            "usage: __nsbind <pid> (<host-file> <target>)…".into(),
        ));
    }
    // Everything from the host side first: after setns the host paths are gone.
    let mut clones = Vec::new();
    for (n, pair) in rest.chunks(2).enumerate() {
        clones.push((ro_clone(&pair[0], n)?, pair[1].clone()));
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = rustix::fs::open(
        ns_path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {ns_path}"))?;
    rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Mount))
        .ctx(|| format!("enter the mount namespace of {pid}"))?;
    for (clone, target) in &clones {
        swap(clone, target)?;
    }
    Ok(())
}

/// Entry point of the hidden `__nsbind` subcommand; call it before any thread starts.
pub fn nsbind_main(args: Vec<OsString>) -> ! {
    match run(args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("lockbox __nsbind: {e}");
            std::process::exit(1)
        }
    }
}
