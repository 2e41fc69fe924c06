//! Secret delivery primitives for lockbox: everything that puts plaintext somewhere a consumer
//! can read it.
//!
//! * [`AtomicWriter`]: the Kubernetes atomic-writer protocol on a tmpfs directory. Files go into
//!   a fresh `..<timestamp>` directory which is published by renaming a `..data_tmp` symlink over
//!   `..data`; every visible name is a relative symlink `name -> ..data/name`. A reader that
//!   opens a file sees one complete version; a reader that opens `..data` once and reads
//!   relative to it sees one consistent set.
//! * [`Staging`]: a per-workload host tmpfs (root-only, `nosuid,nodev,noexec`, size-bounded,
//!   `noswap` where the kernel has it) for `lockbox docker run`, and [`reap`] for leftovers.
//! * [`Supervisor`] and [`shim_main`]: `lockbox run`: a process in a private mount namespace that
//!   sees its secrets read-only at `/run/secrets` (and at absolute targets), with live rotation.
//!
//! Invariant 1 of the design: plaintext only in memory and on tmpfs mounted for a consumer. Every
//! buffer holding plaintext here is [`zeroize::Zeroizing`], every write checks `statfs` first,
//! and secrets travel to the shim over a pipe, never argv or the environment.
//!
//! # Wiring into the `lockbox` binary
//!
//! ```no_run
//! # fn real_main() {}
//! fn main() {
//!     // First thing, before tokio or anything else starts a thread:
//!     let mut args = std::env::args_os().skip(1);
//!     if args.next().is_some_and(|a| a == "__shim") {
//!         lockbox_tmpfs::shim_main(args.collect());
//!     }
//!     real_main()
//! }
//! ```
//!
//! and for `lockbox run` (inside `spawn_blocking` if under tokio):
//!
//! ```no_run
//! # use lockbox_tmpfs::*;
//! # fn f(files: Vec<SecretFile>, new_files: Vec<SecretFile>) -> Result<(), Error> {
//! let shim = ShimCommand::current_exe_subcommand("__shim")?;
//! let mut sup = Supervisor::spawn(&shim, RunOptions::new(["my-server", "--flag"]), files)?;
//! sup.rotate(new_files)?; // whenever a new version arrives
//! let code = sup.wait()?; // exit with it
//! # Ok(()) }
//! ```
//!
//! There is no `unsafe` here at all (the workspace forbids it, and `forbid` cannot be relaxed
//! per module): the pipes reach the shim by path (`/proc/<supervisor>/fd/N`) instead of through a
//! `pre_exec` hook, and read-only clones of mounts are made with a temporary bind and remount
//! instead of `mount_setattr(2)`, for which rustix has no wrapper.
#![forbid(unsafe_code)]

mod error;
mod nsbind;
mod placeholder;
mod shim;
mod staging;
mod supervisor;
mod wire;
mod writer;

pub use error::Error;
pub use nsbind::nsbind_main;
pub use placeholder::DEFAULT_STATE_DIR;
pub use shim::shim_main;
pub use staging::{DEFAULT_STAGING_SIZE, Staging, reap};
pub use supervisor::{RunOptions, ShimCommand, Supervisor, parse_user_spec};
pub use writer::{AtomicWriter, DATA_DIR, DEFAULT_GRACE, SecretFile, ensure_tmpfs};

/// `statfs.f_type` of tmpfs (`TMPFS_MAGIC` in `linux/magic.h`).
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Signals the supervisor (and the shim) pass on to the command, as `docker run` does.
pub const FORWARDED_SIGNALS: [rustix::process::Signal; 6] = [
    rustix::process::Signal::INT,
    rustix::process::Signal::TERM,
    rustix::process::Signal::HUP,
    rustix::process::Signal::QUIT,
    rustix::process::Signal::USR1,
    rustix::process::Signal::USR2,
];
