//! Process hardening that keeps plaintext out of core dumps and swap.
use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// What hardening took effect, for the startup log.
#[derive(Debug)]
pub(crate) struct Hardening {
    pub(crate) mlocked: bool,
}

/// Not dumpable (no core file, no ptrace by other users, /proc/self/mem closed), core size
/// zero, and all memory locked when the limit allows — so a secret in memory does not reach
/// a disk through a core file or swap.
pub(crate) fn harden() -> Hardening {
    let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    // The allocator commits its arenas eagerly; with transparent huge pages each first touch
    // faulted in (and, locked, pinned) 2 MiB instead of 4 KiB: 53 of an idle daemon's 72 MiB.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let mlocked = rustix::mm::mlockall(
        rustix::mm::MlockAllFlags::CURRENT
            | rustix::mm::MlockAllFlags::FUTURE
            | rustix::mm::MlockAllFlags::ONFAULT,
    )
    .is_ok();
    Hardening { mlocked }
}
