//! rustls configurations for the cluster's mutual TLS (TLS 1.3 only, aws-lc-rs).
//!
//! * [`server_config`]: presents `[node cert, CA cert]`; verifies a client certificate
//!   against the CA *if one is presented*, and accepts a client without one, because a
//!   joining node has no certificate yet. Authorize every request from [`peer_identity`].
//! * [`client_config`]: presents the node's chain; verifies the server against the CA under
//!   the name [`SERVER_NAME`].
//! * [`bootstrap_client_config`]: for a node that has only a join token. It accepts the
//!   server only if the chain it presents holds a certificate whose SHA-256 is the token's
//!   digest *and* the leaf verifies under that certificate as the root (directly, or through
//!   the other certificates of the chain: the cross-signed new root during a CA rotation). Anything else fails
//!   the handshake ("… does not match the join token"), before the node sends a byte.
//!   [`pinned_ca`] (or [`fetch_ca`]) then gives the CA certificate that was pinned.
use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::pki::{PeerIdentity, cert_digest};
use crate::{Error, Result};

/// The name clients verify in the server's certificate (every node cert has it).
pub const SERVER_NAME: &str = crate::pki::NODE_DNS_NAME;
/// The only ALPN protocol offered and accepted.
pub const ALPN: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(cas: &[&[u8]]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for ca_der in cas {
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .map_err(|e| Error::Tls(format!("the CA certificate is not usable as a root: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn chain_and_key(
    chain: Vec<Vec<u8>>,
    key_der: &[u8],
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        chain.into_iter().map(CertificateDer::from).collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
    )
}

fn tls_err(e: impl fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// The server side: `chain` is `[node cert, CA cert]` (DER), `key_der` the node's PKCS#8
/// key. Client certificates are verified against `ca_der` when presented, optional
/// otherwise. ALPN `http/1.1`.
pub fn server_config(
    ca_der: &[u8],
    chain: Vec<Vec<u8>>,
    key_der: &[u8],
) -> Result<Arc<ServerConfig>> {
    server_config_roots(&[ca_der], chain, key_der)
}

/// [`server_config`] trusting several roots: during a CA rotation both the old and the new
/// root, and `chain` is `[node cert, cross-signed new root, old root]` (see
/// [`crate::pki::ClusterCa::cross_sign`]).
pub fn server_config_roots(
    cas: &[&[u8]],
    chain: Vec<Vec<u8>>,
    key_der: &[u8],
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(tls_err)?;
    let (chain, key) = chain_and_key(chain, key_der);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The mTLS client side: presents `chain` (`[node cert, CA cert]`) with `key_der`, and
/// verifies the server against `ca_der`. Connect with the server name [`SERVER_NAME`].
pub fn client_config(
    ca_der: &[u8],
    chain: Vec<Vec<u8>>,
    key_der: &[u8],
) -> Result<Arc<ClientConfig>> {
    client_config_roots(&[ca_der], chain, key_der)
}

/// [`client_config`] trusting several roots (a CA rotation, as [`server_config_roots`]).
pub fn client_config_roots(
    cas: &[&[u8]],
    chain: Vec<Vec<u8>>,
    key_der: &[u8],
) -> Result<Arc<ClientConfig>> {
    let (chain, key) = chain_and_key(chain, key_der);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots(cas)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client side for a node that has only a join token: no client certificate, and the
/// server is accepted only if it presents the CA whose SHA-256 is `expected_ca_digest` and
/// its leaf verifies under that CA (for [`SERVER_NAME`]).
pub fn bootstrap_client_config(expected_ca_digest: [u8; 32]) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        digest: expected_ca_digest,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// After a handshake made with [`bootstrap_client_config`]: the CA certificate (DER) the
/// server presented whose digest is `ca_digest` (the verifier has already checked that the
/// leaf chains to it). `None` before the handshake or on another kind of connection.
pub fn pinned_ca(conn: &CommonState, ca_digest: [u8; 32]) -> Option<Vec<u8>> {
    conn.peer_certificates()?
        .iter()
        .find(|c| cert_digest(c) == ca_digest)
        .map(|c| c.to_vec())
}

/// Connects to `addr`, makes a bootstrap handshake pinned to `ca_digest`, and returns the
/// cluster CA certificate (DER). Fails if the server does not present that CA.
pub async fn fetch_ca(addr: impl ToSocketAddrs, ca_digest: [u8; 32]) -> Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt as _;
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(bootstrap_client_config(ca_digest)?);
    let mut tls = connector.connect(server_name(), tcp).await?;
    let ca = pinned_ca(tls.get_ref().1, ca_digest);
    // Best effort close_notify; the CA is what we came for.
    let _ = tls.shutdown().await;
    ca.ok_or_else(|| Error::Tls("the server presented no certificate".into()))
}

/// [`SERVER_NAME`] as rustls wants it.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .expect("lockbox-node is a valid DNS name")
            .to_owned(),
    )
}

/// The identity in the peer's certificate, when the peer presented one. rustls has verified
/// it against the cluster CA during the handshake (with the configs above), so it can be
/// used for authorization. `None` for a peer without a certificate (a joining node) or a
/// certificate without lockbox's fields. Works on a `ServerConnection`/`ClientConnection`
/// (e.g. `tls_stream.get_ref().1`) through deref.
pub fn peer_identity(conn: &CommonState) -> Option<PeerIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    PeerIdentity::from_cert_der(leaf).ok()
}

/// The error a bootstrap handshake fails with when the server's CA is not the token's.
struct CaDigestMismatch;

impl fmt::Debug for CaDigestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the server's cluster CA digest does not match the join token (wrong cluster, rotated CA, or an impostor)",
        )
    }
}

impl fmt::Display for CaDigestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for CaDigestMismatch {}

/// Accepts a server whose chain holds the CA with the pinned digest and whose leaf verifies
/// under it (webpki, as for any server: validity, key usage, name).
struct PinnedCaVerifier {
    digest: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCaVerifier")
            .field("digest", &crate::pki::hex(&self.digest))
            .finish()
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mismatch = || {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                CaDigestMismatch,
            ))))
        };
        let ca = intermediates
            .iter()
            .find(|c| cert_digest(c) == self.digest)
            .ok_or_else(mismatch)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|_| mismatch())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        // The pinned CA is the only trust anchor; the other certificates may be needed as
        // intermediates: during a CA rotation the leaf is the new root's and chains through
        // the cross-signed new root to the pinned (old) one.
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
