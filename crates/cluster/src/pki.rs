//! The cluster CA, node keys and certificates, and reading identities back.
//!
//! Everything is ECDSA P-256 with SHA-256, as in Swarm. The CA assigns every field of a
//! node certificate itself; a CSR contributes only its (signature-checked) public key.
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Error, Result, Role};

/// How long a node certificate lives unless told otherwise: 90 days (Swarm's default).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest node certificate lifetime [`ClusterCa::issue`] accepts.
pub const MIN_CERT_VALIDITY: Duration = Duration::from_secs(3600);
/// How long the cluster CA lives: 20 years (7300 days).
pub const CA_VALIDITY: Duration = Duration::from_secs(7300 * 24 * 3600);
/// How far notBefore is back-dated, for clock skew between nodes.
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// The CA's common name.
pub const CA_COMMON_NAME: &str = "lockbox-ca";
/// The DNS name every node certificate carries, and the name clients verify.
pub const NODE_DNS_NAME: &str = "lockbox-node";

/// SHA-256 of a certificate's DER: the join token's digest, and a peer's fingerprint.
pub fn cert_digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The cluster's root CA: its certificate and P-256 private key (PKCS#8 DER).
pub struct ClusterCa {
    cert_der: Vec<u8>,
    key_der: Zeroizing<Vec<u8>>,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// A fresh self-signed root: `CN=lockbox-ca, O=<cluster_id>`, valid 7300 days from 1 h
    /// ago, usable only to sign certificates (path length 0: node certificates are leaves).
    pub fn generate(cluster_id: &str) -> Result<ClusterCa> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Generate(e.to_string()))?;
        let now = SystemTime::now();
        let cert = root_params(cluster_id, now - BACKDATE, now + CA_VALIDITY)?
            .self_signed(&key)
            .map_err(|e| Error::Generate(e.to_string()))?;
        let key_der = Zeroizing::new(key.serialize_der());
        Self::from_parts(cert.der().to_vec(), key_der)
    }

    /// A certificate for `new`'s subject and key signed by this (older) root: during a root
    /// rotation nodes present `[leaf from new, cross-signed new]`, so a peer that still
    /// trusts only this root builds leaf → cross-signed → this root and accepts them. It
    /// ends when the earlier of the two roots ends (a certificate cannot outlive its
    /// issuer's usefulness). Refuses `new` if it is not a root of `cluster_id`.
    pub fn cross_sign(&self, new: &ClusterCa, cluster_id: &str) -> Result<Vec<u8>> {
        let new_key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(&new.key_der[..]),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| Error::BadCa(format!("the new root's key: {e}")))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&new.cert_der)
            .map_err(|e| Error::BadCa(format!("the new root does not parse: {e}")))?;
        let not_before = to_system_time(x509.validity().not_before.timestamp());
        let params = root_params(cluster_id, not_before, new.not_after.min(self.not_after))?;
        let cert = params
            .signed_by(&new_key, &self.issuer)
            .map_err(|e| Error::Generate(e.to_string()))?;
        // Path building matches names: the cross-signed certificate must carry exactly the
        // new root's subject, or a leaf issued by the new root would not chain through it.
        let (_, cross) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|e| Error::Generate(e.to_string()))?;
        if x509.subject().as_raw() != x509.issuer().as_raw()
            || cross.subject().as_raw() != x509.subject().as_raw()
        {
            return Err(Error::BadCa(
                "the new root is not a self-signed root of this cluster".into(),
            ));
        }
        Ok(cert.der().to_vec())
    }

    /// A CA from its certificate DER and PKCS#8 key DER (as stored). Refuses a key that is
    /// not the certificate's.
    pub fn from_parts(cert_der: Vec<u8>, key_der: Zeroizing<Vec<u8>>) -> Result<ClusterCa> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(&key_der[..]),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| Error::BadCa(format!("the key is not a P-256 PKCS#8 key: {e}")))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::BadCa(format!("the certificate does not parse: {e}")))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::BadCa(
                "the private key does not belong to the certificate".into(),
            ));
        }
        if !x509.is_ca() {
            return Err(Error::BadCa("the certificate is not a CA".into()));
        }
        let not_after = to_system_time(x509.validity().not_after.timestamp());
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(&cert_der[..]), key)
            .map_err(|e| Error::BadCa(e.to_string()))?;
        Ok(ClusterCa {
            cert_der,
            key_der,
            not_after,
            issuer,
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 DER. Secret.
    pub fn key_der(&self) -> Zeroizing<Vec<u8>> {
        self.key_der.clone()
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// SHA-256 of the certificate DER (what a join token pins).
    pub fn digest(&self) -> [u8; 32] {
        cert_digest(&self.cert_der)
    }

    /// Signs a node certificate for the key in `csr_der` (PKCS#10, signature verified, key
    /// must be P-256). Everything else in the CSR is ignored: subject
    /// `CN=<node_id>, OU=lockbox-<role>, O=<cluster_id>`, SAN DNS `lockbox-node` and
    /// `lockbox-node-<node_id>`, server and client auth, notBefore `now − 1 h`, notAfter
    /// `now + validity` (capped at the CA's own notAfter). `validity` under 1 h is refused.
    pub fn issue(
        &self,
        csr_der: &[u8],
        node_id: u64,
        role: Role,
        cluster_id: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Vec<u8>> {
        if validity < MIN_CERT_VALIDITY {
            return Err(Error::ExpiryTooShort);
        }
        check_cluster_id(cluster_id)?;
        let mut csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| Error::BadCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(Error::BadCsr("the key is not ECDSA P-256".into()));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id.to_string());
        dn.push(DnType::OrganizationalUnitName, role.ou());
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(
                NODE_DNS_NAME
                    .try_into()
                    .map_err(|e: rcgen::Error| Error::Generate(e.to_string()))?,
            ),
            SanType::DnsName(
                format!("{NODE_DNS_NAME}-{node_id}")
                    .try_into()
                    .map_err(|e: rcgen::Error| Error::Generate(e.to_string()))?,
            ),
        ];
        params.not_before = now.checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH).into();
        let not_after = now
            .checked_add(validity)
            .map_or(self.not_after, |t| t.min(self.not_after));
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| Error::Generate(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("digest", &hex(&self.digest()))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A node's own P-256 key. It never leaves the node; the CA sees only its CSR.
pub struct NodeKey {
    key: KeyPair,
    key_der: Zeroizing<Vec<u8>>,
}

impl NodeKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<NodeKey> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Generate(e.to_string()))?;
        let key_der = Zeroizing::new(key.serialize_der());
        Ok(NodeKey { key, key_der })
    }

    /// A key from its PKCS#8 DER (as stored).
    pub fn from_der(key_der: Zeroizing<Vec<u8>>) -> Result<NodeKey> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(&key_der[..]),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| Error::BadKey(format!("not a P-256 PKCS#8 key: {e}")))?;
        Ok(NodeKey { key, key_der })
    }

    /// A PKCS#10 CSR for this key (its subject is empty: the CA assigns the identity).
    pub fn csr_der(&self) -> Result<Vec<u8>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key)
            .map_err(|e| Error::Generate(e.to_string()))?;
        Ok(csr.der().to_vec())
    }

    /// The private key, PKCS#8 DER. Secret.
    pub fn key_der(&self) -> Zeroizing<Vec<u8>> {
        self.key_der.clone()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}

/// Who a node certificate says its holder is. Read it only from a certificate that was
/// verified against the cluster CA (as [`crate::tls::peer_identity`] does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The CN, a decimal u64.
    pub node_id: u64,
    /// From the OU.
    pub role: Role,
    /// The O.
    pub cluster_id: String,
    /// Validity start.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
    /// SHA-256 of the certificate DER (for revocation lists and logs).
    pub fingerprint: [u8; 32],
}

impl PeerIdentity {
    /// Reads lockbox's fields from a node certificate; a certificate without them (another
    /// CA's, the CA's own, a browser's) is refused with what is missing.
    pub fn from_cert_der(der: &[u8]) -> Result<PeerIdentity> {
        let (_, x509) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::NotANodeCert(format!("it does not parse as X.509: {e}")))?;
        let subject = x509.subject();
        let one = |what: &str, mut it: std::vec::IntoIter<Option<&str>>| -> Result<String> {
            match (it.next(), it.next()) {
                (Some(Some(v)), None) => Ok(v.to_owned()),
                (None, _) => Err(Error::NotANodeCert(format!("its subject has no {what}"))),
                (Some(None), _) => Err(Error::NotANodeCert(format!(
                    "its subject's {what} is not a string"
                ))),
                (Some(Some(_)), Some(_)) => Err(Error::NotANodeCert(format!(
                    "its subject has more than one {what}"
                ))),
            }
        };
        let cn = one(
            "CN",
            subject
                .iter_common_name()
                .map(|a| a.as_str().ok())
                .collect::<Vec<_>>()
                .into_iter(),
        )?;
        let ou = one(
            "OU",
            subject
                .iter_organizational_unit()
                .map(|a| a.as_str().ok())
                .collect::<Vec<_>>()
                .into_iter(),
        )?;
        let o = one(
            "O (cluster ID)",
            subject
                .iter_organization()
                .map(|a| a.as_str().ok())
                .collect::<Vec<_>>()
                .into_iter(),
        )?;
        let node_id = if cn.bytes().all(|b| b.is_ascii_digit()) {
            cn.parse::<u64>().ok()
        } else {
            None
        }
        .ok_or_else(|| {
            Error::NotANodeCert(format!("its CN {cn:?} is not a node ID (a decimal number)"))
        })?;
        let role = Role::from_ou(&ou).ok_or_else(|| {
            Error::NotANodeCert(format!(
                "its OU {ou:?} is neither lockbox-manager nor lockbox-worker"
            ))
        })?;
        Ok(PeerIdentity {
            node_id,
            role,
            cluster_id: o,
            not_before: to_system_time(x509.validity().not_before.timestamp()),
            not_after: to_system_time(x509.validity().not_after.timestamp()),
            fingerprint: cert_digest(der),
        })
    }
}

/// When to renew a certificate: `not_before + lifetime × (0.5 + 0.3 × fraction)`, with
/// `fraction` in [0, 1] (clamped), so a random fraction gives Swarm's random point between
/// 50 % and 80 % of the lifetime. A certificate with notAfter ≤ notBefore renews at once.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, fraction: f64) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return not_before;
    };
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    not_before + lifetime.mul_f64(0.5 + 0.3 * fraction)
}

/// [`renew_at`] with a fraction from the OS random source.
pub fn renew_at_random(not_before: SystemTime, not_after: SystemTime) -> Result<SystemTime> {
    let r = u64::from_le_bytes(*crate::random_bytes::<8>()?);
    // 53 random bits -> [0, 1).
    let fraction = (r >> 11) as f64 / (1u64 << 53) as f64;
    Ok(renew_at(not_before, not_after, fraction))
}

/// A root's fields: `CN=lockbox-ca, O=<cluster_id>`, usable only to sign certificates (path
/// length 0: node certificates are leaves).
fn root_params(
    cluster_id: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams> {
    check_cluster_id(cluster_id)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, cluster_id);
    params.distinguished_name = dn;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn check_cluster_id(cluster_id: &str) -> Result<()> {
    if cluster_id.is_empty()
        || cluster_id.len() > 64
        || !cluster_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::BadClusterId(cluster_id.to_owned()));
    }
    Ok(())
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = *crate::random_bytes::<16>()?;
    // Positive and without a leading zero byte: a canonical 16-byte INTEGER.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn to_system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// PEM with 64-column lines, as openssl writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
