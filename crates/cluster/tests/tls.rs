//! Real TLS over TCP loopback.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lockbox_cluster::Role;
use lockbox_cluster::pki::{ClusterCa, NODE_CERT_VALIDITY, NodeKey, PeerIdentity};
use lockbox_cluster::tls::{
    bootstrap_client_config, client_config, client_config_roots, fetch_ca, peer_identity,
    pinned_ca, server_config, server_config_roots, server_name,
};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A node's credentials: (chain [leaf, CA], key).
struct Creds {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

fn node(ca: &ClusterCa, id: u64, role: Role, now: SystemTime) -> Creds {
    let key = NodeKey::generate().unwrap();
    let cert = ca
        .issue(
            &key.csr_der().unwrap(),
            id,
            role,
            "c1",
            now,
            NODE_CERT_VALIDITY,
        )
        .unwrap();
    Creds {
        chain: vec![cert, ca.cert_der().to_vec()],
        key: key.key_der().to_vec(),
    }
}

fn server(ca: &ClusterCa, c: &Creds) -> Arc<ServerConfig> {
    server_config(ca.cert_der(), c.chain.clone(), &c.key).unwrap()
}

fn client(ca: &ClusterCa, c: &Creds) -> Arc<ClientConfig> {
    client_config(ca.cert_der(), c.chain.clone(), &c.key).unwrap()
}

/// What the server saw on its one connection.
type Seen = std::io::Result<(Option<PeerIdentity>, Vec<u8>)>;

/// Serves one connection: handshake, then reads to EOF and answers "ok".
async fn serve_one(
    config: Arc<ServerConfig>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let who = peer_identity(tls.get_ref().1);
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        tls.write_all(b"ok").await?;
        tls.shutdown().await?;
        Ok((who, got))
    });
    (addr, task)
}

/// Connects, sends `hello`, and returns the answer and the server's identity.
async fn talk(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<(Option<PeerIdentity>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name(), tcp)
        .await?;
    let who = peer_identity(tls.get_ref().1);
    tls.write_all(b"hello").await?;
    tls.shutdown().await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok((who, answer))
}

/// A certificate signed by another CA: rejected as an unknown issuer, or, when the other CA
/// has the same name (same cluster ID), as a bad signature.
fn foreign_ca(err: &std::io::Error) -> bool {
    let s = err.to_string();
    s.contains("UnknownIssuer") || s.contains("BadSignature")
}

async fn timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn mutual_tls_between_two_nodes() {
    let ca = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let a = node(&ca, 1, Role::Manager, now);
    let b = node(&ca, 2, Role::Manager, now);
    let (addr, srv) = serve_one(server(&ca, &a)).await;
    let (server_id, answer) = timeout(talk(addr, client(&ca, &b))).await.unwrap();
    assert_eq!(answer, b"ok");
    let server_id = server_id.unwrap();
    assert_eq!((server_id.node_id, server_id.role), (1, Role::Manager));
    assert_eq!(server_id.cluster_id, "c1");
    let (client_id, got) = timeout(srv).await.unwrap().unwrap();
    assert_eq!(got, b"hello");
    let client_id = client_id.unwrap();
    assert_eq!((client_id.node_id, client_id.role), (2, Role::Manager));
}

#[tokio::test]
async fn a_worker_certificate_reports_role_worker() {
    let ca = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    timeout(talk(addr, client(&ca, &node(&ca, 9, Role::Worker, now))))
        .await
        .unwrap();
    let (who, _) = timeout(srv).await.unwrap().unwrap();
    let who = who.unwrap();
    assert_eq!((who.node_id, who.role), (9, Role::Worker));
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate("c1").unwrap();
    let evil = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    // Trusts the right CA, but presents a certificate from another one.
    let intruder = node(&evil, 2, Role::Manager, now);
    let config = client_config(ca.cert_der(), intruder.chain.clone(), &intruder.key).unwrap();
    let _ = timeout(talk(addr, config)).await; // TLS 1.3: the client may finish first.
    let err = timeout(srv).await.unwrap().unwrap_err();
    assert!(foreign_ca(&err), "{err}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate("c1").unwrap();
    let evil = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let (addr, srv) = serve_one(server(&evil, &node(&evil, 1, Role::Manager, now))).await;
    let err = timeout(talk(addr, client(&ca, &node(&ca, 2, Role::Manager, now))))
        .await
        .unwrap_err();
    assert!(foreign_ca(&err), "{err}");
    assert!(timeout(srv).await.unwrap().is_err());
}

#[tokio::test]
async fn expired_certificates_are_refused_both_ways() {
    let ca = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let long_ago = now - Duration::from_secs(200 * 24 * 3600);
    // An expired server.
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, long_ago))).await;
    let err = timeout(talk(addr, client(&ca, &node(&ca, 2, Role::Manager, now))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
    assert!(timeout(srv).await.unwrap().is_err());
    // An expired client.
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    let _ = timeout(talk(
        addr,
        client(&ca, &node(&ca, 2, Role::Manager, long_ago)),
    ))
    .await;
    let err = timeout(srv).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[tokio::test]
async fn bootstrap_with_the_right_digest_pins_the_ca() {
    let ca = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    let config = bootstrap_client_config(ca.digest()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = timeout(tokio_rustls::TlsConnector::from(config).connect(server_name(), tcp))
        .await
        .unwrap();
    assert_eq!(
        pinned_ca(tls.get_ref().1, ca.digest()).unwrap(),
        ca.cert_der()
    );
    assert_eq!(peer_identity(tls.get_ref().1).unwrap().node_id, 1);
    tls.write_all(b"LBXTKN-1-...").await.unwrap();
    tls.shutdown().await.unwrap();
    let (who, got) = timeout(srv).await.unwrap().unwrap();
    assert_eq!(
        who, None,
        "a joining node has no certificate, and the server allows that"
    );
    assert_eq!(got, b"LBXTKN-1-...");

    // The same through the helper.
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    assert_eq!(
        timeout(fetch_ca(addr, ca.digest())).await.unwrap(),
        ca.cert_der()
    );
    let _ = timeout(srv).await;
}

#[tokio::test]
async fn bootstrap_with_a_wrong_digest_fails_before_any_byte_is_sent() {
    let ca = ClusterCa::generate("c1").unwrap();
    let other = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    let err = timeout(fetch_ca(addr, other.digest())).await.unwrap_err();
    assert!(
        err.to_string().contains("does not match the join token"),
        "{err}"
    );
    // The handshake never completed, so no application data reached the server.
    assert!(timeout(srv).await.unwrap().is_err());

    let (addr, srv) = serve_one(server(&ca, &node(&ca, 1, Role::Manager, now))).await;
    let err = timeout(talk(addr, bootstrap_client_config(other.digest()).unwrap()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match the join token"),
        "{err}"
    );
    assert!(timeout(srv).await.unwrap().is_err());
}

#[tokio::test]
async fn bootstrap_refuses_an_impostor_that_copied_the_ca_certificate() {
    // The impostor presents the real CA certificate (it is public) next to a leaf from its
    // own CA: the digest matches, but the leaf does not verify under it.
    let ca = ClusterCa::generate("c1").unwrap();
    let evil = ClusterCa::generate("c1").unwrap();
    let now = SystemTime::now();
    let mut fake = node(&evil, 1, Role::Manager, now);
    fake.chain[1] = ca.cert_der().to_vec();
    let config = server_config(evil.cert_der(), fake.chain.clone(), &fake.key).unwrap();
    let (addr, srv) = serve_one(config).await;
    let err = timeout(fetch_ca(addr, ca.digest())).await.unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("BadSignature"),
        "{err}"
    );
    assert!(timeout(srv).await.unwrap().is_err());

    // A server presenting only its leaf gives nothing to pin.
    let real = node(&ca, 1, Role::Manager, now);
    let config = server_config(ca.cert_der(), real.chain[..1].to_vec(), &real.key).unwrap();
    let (addr, srv) = serve_one(config).await;
    let err = timeout(fetch_ca(addr, ca.digest())).await.unwrap_err();
    assert!(
        err.to_string().contains("does not match the join token"),
        "{err}"
    );
    let _ = timeout(srv).await;
}

/// A CA rotation's middle: `a` has a certificate from the new root and presents it with the
/// cross-signed new root; `b` still has the old root's and trusts only the old root.
struct Rotation {
    old: ClusterCa,
    new: ClusterCa,
    a: Creds,
    b: Creds,
}

fn rotation() -> Rotation {
    let old = ClusterCa::generate("c1").unwrap();
    let new = ClusterCa::generate("c1").unwrap();
    let cross = old.cross_sign(&new, "c1").unwrap();
    let now = SystemTime::now();
    let mut a = node(&new, 1, Role::Manager, now);
    a.chain = vec![a.chain[0].clone(), cross, old.cert_der().to_vec()];
    let b = node(&old, 2, Role::Worker, now);
    Rotation { old, new, a, b }
}

#[tokio::test]
async fn during_a_ca_rotation_new_and_old_certificates_accept_each_other() {
    let r = rotation();
    let both = [r.old.cert_der(), r.new.cert_der()];
    // a (new certificate, trusts both) serves b (old certificate, trusts only the old root).
    let config = server_config_roots(&both, r.a.chain.clone(), &r.a.key).unwrap();
    let (addr, srv) = serve_one(config).await;
    let (server_id, answer) = timeout(talk(addr, client(&r.old, &r.b))).await.unwrap();
    assert_eq!((server_id.unwrap().node_id, answer), (1, b"ok".to_vec()));
    assert_eq!(timeout(srv).await.unwrap().unwrap().0.unwrap().node_id, 2);
    // And the other way round: b serves, a is the client with its cross-signed chain.
    let (addr, srv) = serve_one(server(&r.old, &r.b)).await;
    let config = client_config_roots(&both, r.a.chain.clone(), &r.a.key).unwrap();
    let (server_id, _) = timeout(talk(addr, config)).await.unwrap();
    assert_eq!(server_id.unwrap().node_id, 2);
    assert_eq!(timeout(srv).await.unwrap().unwrap().0.unwrap().node_id, 1);
}

#[tokio::test]
async fn a_joiner_pinned_to_the_old_root_accepts_a_rotated_server() {
    let r = rotation();
    let both = [r.old.cert_der(), r.new.cert_der()];
    let (addr, _srv) =
        serve_one(server_config_roots(&both, r.a.chain.clone(), &r.a.key).unwrap()).await;
    assert_eq!(
        timeout(fetch_ca(addr, r.old.digest())).await.unwrap(),
        r.old.cert_der()
    );
}

#[tokio::test]
async fn after_a_ca_rotation_an_old_root_certificate_is_refused() {
    let r = rotation();
    // Finalized: a trusts only the new root and presents [leaf, new root].
    let chain = vec![r.a.chain[0].clone(), r.new.cert_der().to_vec()];
    let (addr, srv) =
        serve_one(server_config_roots(&[r.new.cert_der()], chain, &r.a.key).unwrap()).await;
    // The client trusts both roots, so it is the server that refuses.
    let both = [r.old.cert_der(), r.new.cert_der()];
    let config = client_config_roots(&both, r.b.chain.clone(), &r.b.key).unwrap();
    let _ = timeout(talk(addr, config)).await;
    let err = timeout(srv).await.unwrap().unwrap_err();
    assert!(foreign_ca(&err), "{err}");
}

#[test]
fn cross_signing_keeps_the_new_roots_subject_and_key() {
    let old = ClusterCa::generate("c1").unwrap();
    let new = ClusterCa::generate("c1").unwrap();
    let cross = old.cross_sign(&new, "c1").unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&cross).unwrap();
    let (_, n) = x509_parser::parse_x509_certificate(new.cert_der()).unwrap();
    let (_, o) = x509_parser::parse_x509_certificate(old.cert_der()).unwrap();
    assert_eq!(c.subject().as_raw(), n.subject().as_raw());
    assert_eq!(c.public_key().raw, n.public_key().raw);
    assert_eq!(c.issuer().as_raw(), o.subject().as_raw());
    assert!(c.is_ca());
    // A root of another cluster is not cross-signed under this cluster's name.
    let other = ClusterCa::generate("c2").unwrap();
    assert!(old.cross_sign(&other, "c1").is_err());
}
