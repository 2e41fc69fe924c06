//! Default locations, as Docker picks them: system paths for root, XDG paths otherwise.
use std::path::PathBuf;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `/var/lib/lockbox` for root, `$XDG_DATA_HOME/lockbox` (or `~/.local/share/lockbox`) otherwise.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/lockbox");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lockbox");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/lockbox")
}

/// `/run/lockbox/lockbox.sock` for root; otherwise `$XDG_RUNTIME_DIR/lockbox/lockbox.sock`,
/// or `/run/user/<uid>/lockbox/lockbox.sock` where that private directory exists, or else
/// the socket beside the data (`~/.local/share/lockbox/lockbox.sock`, a 0700 directory the
/// daemon owns and checks). Never a shared directory such as /tmp: another user could make
/// the path first and receive what clients send (security finding 2).
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/lockbox/lockbox.sock");
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lockbox/lockbox.sock");
    }
    let uid = rustix::process::getuid().as_raw();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let private = rustix::fs::lstat(&run_user).is_ok_and(|st| {
        st.st_uid == uid
            && st.st_mode & 0o077 == 0
            && rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    });
    if private {
        return run_user.join("lockbox/lockbox.sock");
    }
    default_data_dir().join("lockbox.sock")
}
