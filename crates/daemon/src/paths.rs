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

/// `/run/lockbox/lockbox.sock` for root, `$XDG_RUNTIME_DIR/lockbox/lockbox.sock` otherwise.
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/lockbox/lockbox.sock");
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("lockbox-{}", rustix::process::getuid().as_raw()))
        });
    base.join("lockbox/lockbox.sock")
}
