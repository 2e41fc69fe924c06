//! lockbox-cluster at its API boundary: PKI, join tokens, and real TLS over loopback.
mod pki;
mod tls;
mod token;
