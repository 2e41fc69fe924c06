use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockbox_cluster::pki::{
    ClusterCa, NODE_CERT_VALIDITY, NodeKey, PeerIdentity, cert_digest, renew_at, renew_at_random,
};
use lockbox_cluster::{Error, Role};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn role_display_and_parse() {
    assert_eq!(Role::Manager.to_string(), "manager");
    assert_eq!(Role::Worker.to_string(), "worker");
    assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
    assert_eq!("worker".parse::<Role>().unwrap(), Role::Worker);
    let err = "Manager".parse::<Role>().unwrap_err();
    assert!(
        err.to_string().contains("\"manager\" or \"worker\""),
        "{err}"
    );
}

#[test]
fn ca_is_a_20_year_p256_root_with_the_cluster_id() {
    let before = SystemTime::now();
    let ca = ClusterCa::generate("cluster-abc").unwrap();
    let (_, x) = parse_x509_certificate(ca.cert_der()).unwrap();
    assert!(x.is_ca());
    assert_eq!(x.subject().to_string(), "CN=lockbox-ca, O=cluster-abc");
    assert_eq!(x.issuer().to_string(), x.subject().to_string());
    let nb = x.validity().not_before.timestamp() as u64;
    let na = x.validity().not_after.timestamp() as u64;
    assert!(nb.abs_diff(secs(before) - 3600) <= 2, "backdated 1 h");
    assert!(
        (na - nb).abs_diff((7300 * 24 + 1) * 3600) <= 2,
        "7300 days + 1 h"
    );
    assert_eq!(
        x.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    assert_eq!(ca.digest(), <[u8; 32]>::from(Sha256::digest(ca.cert_der())));
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(format!("{ca:?}").contains("<redacted>"));

    // Stored and reloaded: same certificate, can still issue.
    let again = ClusterCa::from_parts(ca.cert_der().to_vec(), ca.key_der()).unwrap();
    assert_eq!(again.digest(), ca.digest());
    let node = NodeKey::generate().unwrap();
    let cert = again
        .issue(
            &node.csr_der().unwrap(),
            7,
            Role::Manager,
            "cluster-abc",
            SystemTime::now(),
            NODE_CERT_VALIDITY,
        )
        .unwrap();
    assert_eq!(PeerIdentity::from_cert_der(&cert).unwrap().node_id, 7);

    // A key that is not the certificate's is refused.
    let other = ClusterCa::generate("cluster-abc").unwrap();
    let err = ClusterCa::from_parts(ca.cert_der().to_vec(), other.key_der()).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(ClusterCa::generate("").is_err());
}

#[test]
fn issued_node_certificate_has_lockbox_identity() {
    let ca = ClusterCa::generate("c1").unwrap();
    let node = NodeKey::generate().unwrap();
    let now = SystemTime::now();
    let der = ca
        .issue(
            &node.csr_der().unwrap(),
            42,
            Role::Worker,
            "c1",
            now,
            NODE_CERT_VALIDITY,
        )
        .unwrap();
    let id = PeerIdentity::from_cert_der(&der).unwrap();
    assert_eq!(id.node_id, 42);
    assert_eq!(id.role, Role::Worker);
    assert_eq!(id.cluster_id, "c1");
    assert_eq!(secs(id.not_before), secs(now) - 3600);
    assert_eq!(secs(id.not_after), secs(now) + 90 * 24 * 3600);
    assert_eq!(id.fingerprint, cert_digest(&der));

    let (_, x) = parse_x509_certificate(&der).unwrap();
    assert_eq!(x.subject().to_string(), "CN=42, OU=lockbox-worker, O=c1");
    assert_eq!(x.issuer().to_string(), "CN=lockbox-ca, O=c1");
    assert!(!x.is_ca());
    let san = x.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["DNSName(lockbox-node)", "DNSName(lockbox-node-42)"]);
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(x.key_usage().unwrap().unwrap().value.digital_signature());
    // The certificate carries the node's key, not the CA's.
    let csr_key = NodeKey::from_der(node.key_der()).unwrap();
    drop(csr_key);
    assert_ne!(
        x.public_key().raw,
        parse_x509_certificate(ca.cert_der())
            .unwrap()
            .1
            .public_key()
            .raw
    );

    let m = ca
        .issue(
            &node.csr_der().unwrap(),
            u64::MAX,
            Role::Manager,
            "c1",
            now,
            NODE_CERT_VALIDITY,
        )
        .unwrap();
    let id = PeerIdentity::from_cert_der(&m).unwrap();
    assert_eq!((id.node_id, id.role), (u64::MAX, Role::Manager));
}

#[test]
fn issue_refuses_short_validity_and_bad_csrs() {
    let ca = ClusterCa::generate("c1").unwrap();
    let node = NodeKey::generate().unwrap();
    let csr = node.csr_der().unwrap();
    let now = SystemTime::now();
    let err = ca
        .issue(&csr, 1, Role::Manager, "c1", now, Duration::from_secs(3599))
        .unwrap_err();
    assert!(matches!(err, Error::ExpiryTooShort));
    assert_eq!(
        err.to_string(),
        "minimum certificate expiry time is: 1h0m0s"
    );
    ca.issue(&csr, 1, Role::Manager, "c1", now, Duration::from_secs(3600))
        .unwrap();

    assert!(matches!(
        ca.issue(
            b"not a csr",
            1,
            Role::Manager,
            "c1",
            now,
            NODE_CERT_VALIDITY
        ),
        Err(Error::BadCsr(_))
    ));
    // A CSR whose signature does not verify (last byte of the signature flipped).
    let mut bad = csr.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = ca
        .issue(&bad, 1, Role::Manager, "c1", now, NODE_CERT_VALIDITY)
        .unwrap_err();
    assert!(matches!(err, Error::BadCsr(_)), "{err}");

    // Capped at the CA's own expiry.
    let far = ca
        .issue(
            &csr,
            1,
            Role::Manager,
            "c1",
            now,
            Duration::from_secs(100 * 365 * 24 * 3600),
        )
        .unwrap();
    let (_, x) = parse_x509_certificate(ca.cert_der()).unwrap();
    assert_eq!(
        secs(PeerIdentity::from_cert_der(&far).unwrap().not_after),
        x.validity().not_after.timestamp() as u64
    );
}

#[test]
fn certificates_without_lockbox_fields_are_refused() {
    let ca = ClusterCa::generate("c1").unwrap();
    let err = PeerIdentity::from_cert_der(ca.cert_der()).unwrap_err();
    assert!(matches!(err, Error::NotANodeCert(_)));
    assert!(err.to_string().contains("its subject has no OU"), "{err}");
    let err = PeerIdentity::from_cert_der(b"garbage").unwrap_err();
    assert!(err.to_string().contains("does not parse"), "{err}");

    // A certificate from some other tool: no OU.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "12");
    let foreign = params.self_signed(&key).unwrap();
    let err = PeerIdentity::from_cert_der(foreign.der()).unwrap_err();
    assert!(err.to_string().contains("no OU"), "{err}");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "swarm-manager");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "x");
    let foreign = params.self_signed(&key).unwrap();
    let err = PeerIdentity::from_cert_der(foreign.der()).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither lockbox-manager nor lockbox-worker"),
        "{err}"
    );
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "node-1");
    dn.push(rcgen::DnType::OrganizationalUnitName, "lockbox-manager");
    dn.push(rcgen::DnType::OrganizationName, "x");
    params.distinguished_name = dn;
    let foreign = params.self_signed(&key).unwrap();
    let err = PeerIdentity::from_cert_der(foreign.der()).unwrap_err();
    assert!(
        err.to_string().contains("CN \"node-1\" is not a node ID"),
        "{err}"
    );
}

#[test]
fn renewal_is_between_50_and_80_percent() {
    let nb = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let na = nb + Duration::from_secs(1000);
    assert_eq!(renew_at(nb, na, 0.0), nb + Duration::from_secs(500));
    assert_eq!(renew_at(nb, na, 1.0), nb + Duration::from_secs(800));
    assert_eq!(renew_at(nb, na, 7.0), nb + Duration::from_secs(800));
    assert_eq!(renew_at(nb, na, -1.0), nb + Duration::from_secs(500));
    assert_eq!(renew_at(nb, na, f64::NAN), nb + Duration::from_secs(500));
    assert_eq!(
        renew_at(na, nb, 0.5),
        na,
        "a backwards lifetime renews at once"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let t = renew_at_random(nb, na).unwrap();
        assert!(t >= nb + Duration::from_secs(500) && t <= nb + Duration::from_secs(800));
        seen.insert(t);
    }
    assert!(seen.len() > 150, "random: {}", seen.len());
}
