//! lockbox's cluster PKI: the cluster CA, node certificates, join tokens and mTLS configs.
//!
//! A cluster of 3–5 managers (and any number of workers) talks over mutual TLS. The model is
//! Swarm's (see `shared/reference/docker-secrets-api.md` §6.3), with lockbox's names:
//!
//! * **Cluster CA** ([`pki::ClusterCa`]): ECDSA P-256, self-signed, subject
//!   `CN=lockbox-ca, O=<cluster ID>`, valid 20 years (7300 days), notBefore back-dated 1 h.
//! * **Node certificates** ([`pki::ClusterCa::issue`]): a node makes its own key
//!   ([`pki::NodeKey`]) and sends a CSR; the CA ignores what the CSR asks for and assigns the
//!   identity: subject `CN=<node ID>, OU=lockbox-manager|lockbox-worker, O=<cluster ID>`,
//!   SAN DNS `lockbox-node` and `lockbox-node-<node ID>`, server *and* client auth, valid
//!   [`pki::NODE_CERT_VALIDITY`] (90 days) from 1 h before issuance; nothing under 1 h
//!   (Swarm's "minimum certificate expiry time is: 1h0m0s"). Renew at a random point
//!   between 50 % and 80 % of the lifetime ([`pki::renew_at`], [`pki::renew_at_random`]).
//! * **Identity** ([`pki::PeerIdentity`]): node ID, [`Role`], cluster ID, validity and the
//!   SHA-256 fingerprint, read back from a (verified) certificate with x509-parser.
//! * **Join tokens** ([`token::JoinToken`]):
//!   `LBXTKN-1-<SHA-256 of the CA cert, base36, 50 chars>-<128-bit secret, base36, 25 chars>`
//!   (Swarm's `SWMTKN-1-…` with lockbox's prefix). The digest pins the CA for a node that has
//!   nothing yet; the secret is compared in constant time.
//! * **TLS** ([`tls`]): rustls configs. The server verifies client certificates against the
//!   CA *when presented* but does not require one, because the join endpoint is reached by a
//!   node without a certificate: the application authorizes each request from
//!   [`tls::peer_identity`]. Clients verify the server against the CA under the name
//!   [`tls::SERVER_NAME`]. A joining node uses [`tls::bootstrap_client_config`], which
//!   accepts a server only if it presents the CA whose digest is in the join token (and the
//!   leaf verifies under it), so a token is never sent to the wrong server.
//!
//! ```text
//! pki::ClusterCa::generate(cluster_id) -> Result<ClusterCa>
//! pki::ClusterCa::from_parts(cert_der, key_der) -> Result<ClusterCa>
//!     .cert_der() -> &[u8]  .key_der() -> Zeroizing<Vec<u8>>  .cert_pem() -> String
//!     .digest() -> [u8; 32]
//!     .issue(csr_der, node_id, role, cluster_id, now, validity) -> Result<Vec<u8>>
//! pki::NodeKey::generate() / ::from_der(key_der) -> Result<NodeKey>
//!     .csr_der() -> Result<Vec<u8>>  .key_der() -> Zeroizing<Vec<u8>>
//! pki::PeerIdentity::from_cert_der(der) -> Result<PeerIdentity>
//! pki::renew_at(not_before, not_after, fraction) -> SystemTime
//! pki::renew_at_random(not_before, not_after) -> Result<SystemTime>
//! token::JoinToken::generate(ca_digest) -> Result<JoinToken>; Display; FromStr
//!     .secret_matches(&[u8; 16]) -> bool
//! tls::server_config(ca_der, chain, key_der) -> Result<Arc<ServerConfig>>
//! tls::client_config(ca_der, chain, key_der) -> Result<Arc<ClientConfig>>
//! tls::bootstrap_client_config(ca_digest) -> Result<Arc<ClientConfig>>
//! tls::pinned_ca(&CommonState, ca_digest) -> Option<Vec<u8>>
//! tls::fetch_ca(addr, ca_digest) -> Result<Vec<u8>>      (async)
//! tls::peer_identity(&CommonState) -> Option<PeerIdentity>
//! ```
//!
//! Crypto provider: rustls and rcgen both use **aws-lc-rs** (`aws-lc-sys` builds here with
//! its `cc` builder: gcc only, no cmake or clang needed). `ring` appears in `Cargo.lock`
//! only as an unselected optional dependency and is not compiled. Only TLS 1.3 is offered:
//! both ends are lockbox.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

pub mod pki;
pub mod tls;
pub mod token;

/// A node's role, carried in its certificate's OU (`lockbox-manager` / `lockbox-worker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A Raft voter: holds the store, the keys and the CA.
    Manager,
    /// Runs workloads; receives only the secrets assigned to it.
    Worker,
}

impl Role {
    /// "manager" / "worker".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    /// The certificate OU: "lockbox-manager" / "lockbox-worker".
    pub fn ou(self) -> &'static str {
        match self {
            Role::Manager => "lockbox-manager",
            Role::Worker => "lockbox-worker",
        }
    }

    fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            "lockbox-manager" => Some(Role::Manager),
            "lockbox-worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "manager" => Ok(Role::Manager),
            "worker" => Ok(Role::Worker),
            other => Err(Error::BadRole(other.to_owned())),
        }
    }
}

/// Everything this crate can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not "manager" or "worker".
    #[error("invalid role {0:?}: must be \"manager\" or \"worker\"")]
    BadRole(String),
    /// The requested certificate lifetime is under an hour (Swarm's message).
    #[error("minimum certificate expiry time is: 1h0m0s")]
    ExpiryTooShort,
    /// An empty cluster ID, or one that cannot go into a certificate.
    #[error("invalid cluster ID {0:?}")]
    BadClusterId(String),
    /// The CSR does not parse, its signature does not verify, or its key is not P-256.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// Certificate or key generation / signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A certificate does not parse or lacks lockbox's fields.
    #[error("not a lockbox node certificate: {0}")]
    NotANodeCert(String),
    /// The CA certificate and key do not parse or do not belong together.
    #[error("invalid cluster CA: {0}")]
    BadCa(String),
    /// A private key does not parse.
    #[error("invalid private key: {0}")]
    BadKey(String),
    /// A join token does not parse.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// Building a TLS config failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A connection or handshake failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The OS random source failed.
    #[error("cannot read random bytes from the OS: {0}")]
    Random(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn random_bytes<const N: usize>() -> Result<zeroize::Zeroizing<[u8; N]>> {
    let mut buf = zeroize::Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut()).map_err(|e| Error::Random(e.to_string()))?;
    Ok(buf)
}
