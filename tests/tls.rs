//! wss:// and https:// backends: TLS with SNI and the SSLProxy* checks, against
//! a WebSocket echo backend behind a certificate from a test CA made here.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A CA and a certificate for `localhost` (DNS name only) signed by it.
fn make_pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wsgate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        leaf: leaf_cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A TLS acceptor presenting the test CA's leaf certificate.
fn acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS WebSocket echo backend; records the SNI name of each handshake.
async fn wss_echo_backend(pki: &Pki) -> (SocketAddr, Seen) {
    let acceptor = acceptor(pki);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls
                    .get_ref()
                    .1
                    .server_name()
                    .unwrap_or("(none)")
                    .to_string();
                record.0.lock().unwrap().push(sni);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// wsgate verifying backends against the CA file `ca`, with `routes`.
fn verifying_gate(ca: &std::path::Path, routes: &str) -> Wsgate {
    Wsgate::start(&format!(
        "SSLProxyEngine On\nSSLProxyVerify require\nSSLProxyCACertificateFile {}\n{routes}",
        ca.display()
    ))
}

/// What a WebSocket upgrade for `path` through `gate` gets back.
async fn upgrade_through(gate: &Wsgate, path: &str) -> String {
    let request = ws_request(path, "websocket");
    raw_exchange(gate.addr, request.as_bytes(), Duration::from_secs(5)).await
}

fn write_ca(dir: &std::path::Path, pki: &Pki) -> std::path::PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_wss_backend_verified_against_the_ca() {
    let pki = make_pki();
    let (backend, sni) = wss_echo_backend(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    let gate = verifying_gate(
        &ca,
        &format!(
            "ProxyPass \"/wss2/\" \"wss://localhost:{}/\"\n",
            backend.port()
        ),
    );
    assert_eq!(
        ws_roundtrip(&gate.url("/wss2/"), "over tls").await,
        "over tls"
    );
    assert_eq!(sni.last(), "localhost", "SNI names the target host");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_backends_need_sslproxyengine() {
    let pki = make_pki();
    let (backend, _) = wss_echo_backend(&pki).await;
    let gate = Wsgate::start(&format!(
        "ProxyPass / wss://localhost:{}/\n",
        backend.port()
    ));
    let got = upgrade_through(&gate, "/").await;
    assert!(
        got.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn name_and_chain_checks_fail_with_500_and_can_be_turned_off() {
    let pki = make_pki();
    let (backend, _) = wss_echo_backend(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    let port = backend.port();
    // The certificate names localhost; 127.0.0.1 is not in it.
    let gate = verifying_gate(&ca, &format!("ProxyPass /ip/ wss://127.0.0.1:{port}/\n"));
    let got = upgrade_through(&gate, "/ip/").await;
    assert!(got.starts_with("HTTP/1.1 500 Proxy Error\r\n"), "{got}");
    assert!(gate.stderr().contains("TLS handshake"), "{}", gate.stderr());

    let gate = verifying_gate(
        &ca,
        &format!("SSLProxyCheckPeerName off\nProxyPass /ip/ wss://127.0.0.1:{port}/\n"),
    );
    assert_eq!(
        ws_roundtrip(&gate.url("/ip/"), "no name check").await,
        "no name check"
    );

    // Without SSLProxyVerify the chain is not checked, but the name still is.
    let gate = Wsgate::start(&format!(
        "SSLProxyEngine On\nProxyPass /name/ wss://localhost:{port}/\nProxyPass /ip/ wss://127.0.0.1:{port}/\n"
    ));
    assert_eq!(
        ws_roundtrip(&gate.url("/name/"), "unverified chain").await,
        "unverified chain"
    );
    let got = upgrade_through(&gate, "/ip/").await;
    assert_eq!(status_of(&got), 500, "{got}");

    // A chain from another CA fails verification.
    refused_with_another_ca_file(dir.path(), &make_pki(), port).await;
}

/// wsgate trusting only `other`'s CA file, in front of the backend on
/// `port`: a 500 for the upgrade. Returns the gate, for its log.
async fn refused_with_another_ca_file(dir: &std::path::Path, other: &Pki, port: u16) -> Wsgate {
    let other_ca = dir.join("other.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let gate = verifying_gate(&other_ca, &format!("ProxyPass / wss://localhost:{port}/\n"));
    let got = upgrade_through(&gate, "/").await;
    assert_eq!(status_of(&got), 500, "{got}");
    gate
}

/// A self-signed certificate as `openssl req -x509 -subj /CN=localhost`
/// makes it: a CA certificate, its name in the CN only.
fn self_signed_localhost() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pki {
        ca_pem: cert.pem(),
        leaf: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_backend_certificate_in_the_ca_file_is_trusted_as_apache_trusts_it() {
    let pki = self_signed_localhost();
    let (backend, _) = wss_echo_backend(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    let port = backend.port();
    let gate = verifying_gate(
        &ca,
        &format!(
            "ProxyPass /name/ wss://localhost:{port}/\nProxyPass /ip/ wss://127.0.0.1:{port}/\n"
        ),
    );
    assert_eq!(
        ws_roundtrip(&gate.url("/name/"), "self-signed").await,
        "self-signed"
    );
    // Trusted, but still checked: 127.0.0.1 is not its name.
    let got = upgrade_through(&gate, "/ip/").await;
    assert_eq!(status_of(&got), 500, "{got}");

    // Another self-signed certificate in the file trusts nothing else.
    let gate = refused_with_another_ca_file(dir.path(), &self_signed_localhost(), port).await;
    assert!(
        gate.stderr()
            .contains("is not itself in SSLProxyCACertificateFile"),
        "{}",
        gate.stderr()
    );
}

/// An HTTPS backend (certificate for `localhost` from `pki`) answering every
/// request with a 200 naming it; counts the requests for /health.
async fn https_backend(pki: &Pki) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let acceptor = acceptor(pki);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = checks.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tokio::io::AsyncReadExt::read(&mut tls, &mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if target == "/health" {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let body = format!("tls {target}");
                let _ = tls
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, checks)
}

/// Issue 15: a balancer of the main server used by a virtual host that
/// alone enables SSLProxyEngine. Apache checks its https:// members with
/// the main server's settings (no TLS: every check fails, although requests
/// through the vhost work); wsgate checks them with the vhost's.
#[tokio::test(flavor = "multi_thread")]
async fn health_checks_of_https_members_use_the_ssl_settings_of_the_vhost_that_enables_tls() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    let (member, checks) = https_backend(&pki).await;
    let gate = Wsgate::start(&format!(
        "LogLevel info\n\
         <Proxy balancer://tls>\n\
         BalancerMember https://localhost:{port} hcmethod=GET hcuri=/health hcinterval=100ms hcfails=1\n\
         </Proxy>\n\
         <VirtualHost *:*>\n\
         ServerName proxy.test\n\
         SSLProxyEngine On\n\
         SSLProxyVerify require\n\
         SSLProxyCACertificateFile {ca}\n\
         ProxyPass / balancer://tls/\n\
         </VirtualHost>\n",
        port = member.port(),
        ca = ca.display()
    ));
    // Checks reach the member over TLS: it counts them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while checks.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS health checks reached the member: {}",
            gate.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !gate.stderr().contains("health checks: out of use"),
        "{}",
        gate.stderr()
    );
    let got = raw_exchange(
        gate.addr,
        b"GET /app HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(got.ends_with("\r\n\r\ntls /app"), "{got}");
}
