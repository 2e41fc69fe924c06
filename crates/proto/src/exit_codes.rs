//! The exit codes of the `lockbox` command. They are part of the stable interface: scripts
//! branch on them, so a value never changes meaning.

/// The command did what was asked.
pub const SUCCESS: i32 = 0;
/// The daemon refused or failed the request (the message says why), or some arguments of a
/// multi-argument command (`rm a b c`) failed while others succeeded. Docker uses 1 here too.
pub const FAILURE: i32 = 1;
/// The command line itself was wrong: unknown flag, missing argument, malformed value.
pub const USAGE: i32 = 2;
/// No daemon answered on the socket.
pub const UNREACHABLE: i32 = 3;
/// The daemon is locked (autolock) and must be unlocked with `lockbox unlock` first.
pub const LOCKED: i32 = 4;
/// `lockbox audit verify` found the audit chain broken.
pub const AUDIT_BROKEN: i32 = 5;
/// The caller may not do this: the daemon answered 403 (an administrator's route, a secret
/// no grant covers, a file owner other than the caller), or the socket refused the
/// connection (`EACCES`: not in the socket's group). The refusal is audited.
pub const DENIED: i32 = 6;
