//! Who is calling, as the kernel says: the peer credentials of a Unix-socket connection,
//! taken when it is accepted (listen.rs). Node-API callers are identified by their verified
//! certificate instead (peers.rs).
//!
//! Owns: the identity type handlers receive. Touches: nothing.

/// The caller's Unix credentials, taken from the socket when it is accepted (listen.rs).
/// `None` where the kernel could not say (never for a Unix socket on Linux).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Peer {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) pid: Option<i32>,
}

impl Peer {
    /// The audit actor: `uid:N` (and the process, which helps an operator find it).
    pub(crate) fn actor(&self) -> String {
        match (self.uid, self.pid) {
            (Some(u), Some(p)) => format!("uid:{u} pid:{p}"),
            (Some(u), None) => format!("uid:{u}"),
            _ => "unknown".to_string(),
        }
    }
}

/// Whether the account `uid` is a member of group `gid`, as the system's group database
/// lists it: its primary group (`/etc/passwd`) or a member list (`/etc/group`). The
/// connecting process's own primary gid is checked by the caller from `SO_PEERCRED`; this
/// answers for supplementary membership, which the kernel does not send with a connection.
pub(crate) fn user_in_group(uid: u32, gid: u32) -> bool {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return false;
    };
    let Some((name, primary)) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid))
            .then(|| (f[0].to_string(), f[3].parse::<u32>().ok()))
    }) else {
        return false;
    };
    if primary == Some(gid) {
        return true;
    }
    let Ok(group) = std::fs::read_to_string("/etc/group") else {
        return false;
    };
    group.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.len() > 3 && f[2].parse() == Ok(gid) && f[3].split(',').any(|m| m == name)
    })
}

/// A group given by name or number (`--group`, `--admin-group`), as dockerd's `-G` takes it.
pub(crate) fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let group = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find group {name:?}: {e}"))?;
    group
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name)
                .then(|| f[2].parse::<u32>().ok())
                .flatten()
        })
        .ok_or_else(|| {
            format!("no group named {name:?} (give a name from /etc/group or a numeric gid)")
        })
}
