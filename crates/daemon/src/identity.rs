//! Who is calling, as the kernel says: the peer credentials of a Unix-socket connection,
//! taken when it is accepted (listen.rs). Node-API callers are identified by their verified
//! certificate instead (peers.rs).
//!
//! Owns: the identity type handlers receive. Touches: nothing.

/// The caller's Unix credentials, taken from the socket when it is accepted (listen.rs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) uid: Option<u32>,
}
