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
    let account = Peer {
        uid: Some(uid),
        gid: None,
        pid: None,
    };
    groups_of(&account).contains(&gid)
}

/// The groups the caller holds for grants: the primary gid the kernel gave with the
/// connection, the supplementary groups the kernel lists for the connecting process
/// (`/proc/PID/status`, used only while that process still has the caller's uid), the
/// account's primary group (`/etc/passwd`) and every group that lists the account
/// (`/etc/group`). Resolved here from the kernel's word, never taken from a request.
pub(crate) fn groups_of(peer: &Peer) -> Vec<u32> {
    let mut out: Vec<u32> = peer.gid.into_iter().collect();
    let Some(uid) = peer.uid else {
        return out;
    };
    if let Some(pid) = peer.pid {
        out.extend(process_groups(pid, uid));
    }
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return out;
    };
    let Some((name, primary)) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid))
            .then(|| (f[0].to_string(), f[3].parse::<u32>().ok()))
    }) else {
        return out;
    };
    out.extend(primary);
    if let Ok(group) = std::fs::read_to_string("/etc/group") {
        out.extend(group.lines().filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[3].split(',').any(|m| m == name))
                .then(|| f[2].parse::<u32>().ok())
                .flatten()
        }));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The supplementary groups of process `pid` if its real uid is still `uid` (a pid reused by
/// another user's process gives nothing).
fn process_groups(pid: i32, uid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse::<u32>().ok())
                    .collect::<Vec<u32>>()
            })
            .unwrap_or_default()
    };
    if field("Uid:").first() != Some(&uid) {
        return Vec::new();
    }
    field("Groups:")
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

/// A socket-group member the gate let through on a grant (`gate::Need::Grant`): handlers
/// that see it in the request's extensions serve only what the caller's grants cover.
#[derive(Clone, Debug)]
pub(crate) struct Grantee {
    pub(crate) uid: u32,
    pub(crate) gids: Vec<u32>,
}
