//! TLS toward clients (`SSLEngine on`): certificates chosen by SNI among
//! name-based virtual hosts, wss:// through wsgate to a ws:// backend, the
//! answers Apache gives to a Host that is not the SNI's server and to plain
//! HTTP on a TLS port, `SSLProtocol`, and certificates re-read on reload —
//! with a rustls client and certificates from a test CA made here.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// Records the certificate a server presented, and the OCSP response it
/// stapled (empty for none), and accepts it: the tests compare them with
/// the ones expected, also where the name would not verify.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<(CertificateDer<'static>, Vec<u8>)>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some((end_entity.clone().into_owned(), ocsp.to_vec()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate wsgate presents to a client sending `sni` (`None`: no
/// SNI extension at all).
async fn presented(w: &Wsgate, sni: Option<&str>) -> CertificateDer<'static> {
    let recorder = Arc::new(Recorder::default());
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("unnamed.test").to_string()).unwrap();
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let cert = recorder.0.lock().unwrap().clone();
    cert.expect("a certificate was presented").0
}

/// A verified TLS connection to wsgate for `name`.
async fn connect(
    w: &Wsgate,
    ca: &Ca,
    name: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<TlsStream<TcpStream>> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(w.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Sends `request` on a TLS connection and reads the answer until the
/// server closes or `limit` passes.
async fn tls_exchange(s: &mut TlsStream<TcpStream>, request: &str, limit: Duration) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A complete answer with a length: stop there.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    if let Some(len) = header_value(head, "content-length") {
                        if body.len() >= len.parse::<usize>().unwrap_or(0) {
                            break;
                        }
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn two_vhosts(ca: &Ca, backend: &Backend) -> (String, Issued, Issued) {
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let pass = format!("ProxyPass /ws ws://127.0.0.1:{}/\n", backend.port());
    let conf = format!(
        "Listen 127.0.0.1:0 https\nServerName proxy.test\n{}{}",
        tls_vhost("a.test", &a, &pass),
        tls_vhost("b.test", &b, &pass)
    );
    (conf, a, b)
}

#[tokio::test]
async fn sni_chooses_the_virtual_hosts_certificate_and_no_name_gets_the_first() {
    let ca = Ca::new();
    let backend = ws_echo_backend().await;
    let (conf, a, b) = two_vhosts(&ca, &backend);
    let w = Wsgate::start_file(&conf);
    assert!(presented(&w, Some("a.test")).await == a.der, "SNI a.test");
    assert!(presented(&w, Some("b.test")).await == b.der, "SNI b.test");
    assert!(
        presented(&w, Some("B.Test")).await == b.der,
        "names compare without case"
    );
    // As in Apache: no name, or one no vhost has, gets the first vhost's.
    assert!(presented(&w, None).await == a.der, "no SNI");
    assert!(
        presented(&w, Some("c.test")).await == a.der,
        "an unknown name"
    );
    // And a client that verifies the chain for the name is served.
    let mut s = connect(&w, &ca, "b.test", BOTH)
        .await
        .expect("verified handshake");
    let answer = tls_exchange(
        &mut s,
        "GET /nowhere HTTP/1.1\r\nHost: b.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 404, "{answer}");
}

#[tokio::test]
async fn wss_through_a_tls_listener_reaches_a_ws_backend_and_echoes() {
    let ca = Ca::new();
    let backend = ws_echo_backend().await;
    let (conf, _a, _b) = two_vhosts(&ca, &backend);
    let w = Wsgate::start_file(&conf);
    let tls = connect(&w, &ca, "a.test", BOTH).await.expect("handshake");
    let url = format!("wss://a.test:{}/ws", w.addr.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake through TLS");
    assert_eq!(response.status().as_u16(), 101);
    for i in 0..3 {
        let text = format!("over tls {i}");
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(got, Message::Text(text.into()));
    }
    ws.close(None).await.unwrap();
    backend.finish().await;
}

/// Reads exactly `n` bytes from a TLS stream within `limit`.
async fn tls_read_exactly(s: &mut TlsStream<TcpStream>, n: usize, limit: Duration) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(limit, s.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .expect("bytes");
    String::from_utf8_lossy(&buf).into_owned()
}

/// A quiet wss:// tunnel is parked with its TLS 1.3 session as its keys
/// and sequence numbers (no rustls session, no buffer), and wakes whole:
/// for the client's messages, for the backend's, after KeyUpdates rustls
/// answered before the park, for a KeyUpdate the client asks wsgate to
/// answer, again after a second park with thousands of one-byte records,
/// and for the client's close_notify, which reaches the backend as a
/// half-close while its answer still comes back, ended by wsgate's own
/// close_notify.
#[tokio::test(flavor = "multi_thread")]
async fn quiet_wss_tunnels_park_their_tls_session_and_wake_whole() {
    let ca = Ca::new();
    let echo = ws_echo_backend().await;
    let speak = Arc::new(tokio::sync::Notify::new());
    let told = speak.clone();
    let late = raw_backend(move |_head, mut stream| {
        let told = told.clone();
        async move {
            let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            told.notified().await;
            if stream.write_all(b"late").await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.write_all(b"bye").await;
        }
    })
    .await;
    let a = ca.issue("a.test");
    let pass = format!(
        "ProxyPass /late ws://127.0.0.1:{}/\nProxyPass /ws ws://127.0.0.1:{}/\n",
        late.port(),
        echo.port()
    );
    let conf = format!(
        "LogLevel debug\nListen 127.0.0.1:0 https\nServerName proxy.test\n{}",
        tls_vhost("a.test", &a, &pass)
    );
    let w = Wsgate::start_file(&conf);
    let url = format!("wss://a.test:{}/ws", w.addr.port());
    let t = Duration::from_secs(5);
    let mut sockets = Vec::new();
    // One per TLS 1.3 cipher suite.
    for suite in [
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![suite];
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let tcp = TcpStream::connect(w.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .expect("handshake");
        let (mut ws, _) = tokio_tungstenite::client_async(url.clone(), tls)
            .await
            .expect("WebSocket handshake through TLS");
        ws.send(Message::Text("first".into())).await.unwrap();
        let got = tokio::time::timeout(t, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text("first".into()));
        sockets.push(ws);
    }
    let mut raw = connect(&w, &ca, "a.test", &[&rustls::version::TLS13])
        .await
        .unwrap();
    raw.write_all(
        b"GET /late HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(t, raw.read_exact(&mut byte))
            .await
            .expect("101 in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert_eq!(status_of(&String::from_utf8_lossy(&head)), 101);
    // KeyUpdates that rustls handles before the park, with no data after
    // them: its answer and both new generations of keys go with the
    // session.
    sockets[2]
        .get_mut()
        .get_mut()
        .1
        .refresh_traffic_keys()
        .unwrap();
    sockets[2].flush().await.unwrap();
    raw.get_mut().1.refresh_traffic_keys().unwrap();
    raw.flush().await.unwrap();

    // Parked 5 s after their last byte, as TLS sessions.
    let log = w.wait_log("tunnel parked", 4).await;
    assert_eq!(log.matches("tls=true").count(), 4, "{log}");
    // The client speaks: each wakes, in every suite.
    for (i, ws) in sockets.iter_mut().enumerate() {
        let text = format!("after the park {i}");
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let got = tokio::time::timeout(t, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text(text.into()), "suite {i}");
    }
    // The backend speaks first.
    speak.notify_one();
    assert_eq!(tls_read_exactly(&mut raw, 4, t).await, "late");
    // The client asks for new keys, twice; wsgate follows and answers.
    // (The third did so before the park too: its secrets are a generation
    // on from the handshake's.)
    for round in 0..4 {
        let ws = &mut sockets[1 + round % 2];
        ws.get_mut().get_mut().1.refresh_traffic_keys().unwrap();
        let text = format!("new keys {round}");
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let got = tokio::time::timeout(t, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text(text.into()));
    }
    // Parked again, and woken again: thousands of one-byte records.
    w.wait_log("tunnel parked", 8).await;
    for _ in 0..3000 {
        raw.write_all(b"x").await.unwrap();
    }
    raw.flush().await.unwrap();
    assert_eq!(tls_read_exactly(&mut raw, 3000, t).await, "x".repeat(3000));
    raw.write_all(b"echo").await.unwrap();
    assert_eq!(tls_read_exactly(&mut raw, 4, t).await, "echo");
    for ws in sockets.iter_mut() {
        ws.send(Message::Text("once more".into())).await.unwrap();
        let got = tokio::time::timeout(t, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text("once more".into()));
        ws.close(None).await.unwrap();
    }
    // close_notify and FIN: the backend sees the end and answers; then
    // wsgate's close_notify ends the stream (no error: a clean TLS close).
    raw.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(t, raw.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("closed with close_notify");
    assert_eq!(rest, b"bye");
    assert!(w.stderr().matches("tunnel woken").count() >= 8);
}

/// `SSLSessionTickets` on (the default): a client resumes its session on
/// its next connection, in TLS 1.3 and 1.2; off: every handshake is a full
/// one, as Apache with no `SSLSessionCache` (its default) gives.
#[tokio::test]
async fn session_tickets_allow_resumption_and_off_means_none() {
    let ca = Ca::new();
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{}{}",
        tls_vhost("a.test", &a, ""),
        tls_vhost("b.test", &b, "SSLSessionTickets off\n"),
    );
    let w = Wsgate::start_file(&conf);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for (name, resumes) in [("a.test", true), ("b.test", false)] {
            // One client configuration, so its session store carries over.
            let config = Arc::new(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates(ca.roots())
                    .with_no_client_auth(),
            );
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let tcp = TcpStream::connect(w.addr).await.unwrap();
                let mut s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(ServerName::try_from(name).unwrap(), tcp)
                    .await
                    .expect("handshake");
                // A request and its answer: TLS 1.3 tickets arrive after
                // the handshake.
                let host = format!("GET /nowhere HTTP/1.1\r\nHost: {name}\r\n\r\n");
                let answer = tls_exchange(&mut s, &host, Duration::from_secs(5)).await;
                assert_eq!(status_of(&answer), 404, "{answer}");
                kinds.push(s.get_ref().1.handshake_kind());
            }
            let want = if resumes {
                rustls::HandshakeKind::Resumed
            } else {
                rustls::HandshakeKind::Full
            };
            assert_eq!(
                kinds,
                [Some(rustls::HandshakeKind::Full), Some(want)],
                "{name} {version:?}"
            );
        }
    }
}

/// An OCSP response for `issued`, made and signed by the test CA with
/// `openssl ocsp` as a responder would; `status` is `V` (good) or `R`
/// (revoked) in the responder's index.
fn ocsp_response(ca: &Ca, issued: &Issued, status: char) -> PathBuf {
    let dir = ca.dir.path();
    let (ca_pem, ca_key) = (ca.ca_pem_file(), ca.key_pem_file());
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cert = issued.cert.to_str().unwrap();
    let serial = run(&["x509", "-in", cert, "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    let revoked = if status == 'R' { "250101000000Z" } else { "" };
    std::fs::write(
        dir.join("index.txt"),
        format!("{status}\t301231235959Z\t{revoked}\t{serial}\tunknown\t/CN=x\n"),
    )
    .unwrap();
    let ca_pem = ca_pem.to_str().unwrap();
    run(&[
        "ocsp",
        "-issuer",
        ca_pem,
        "-cert",
        cert,
        "-no_nonce",
        "-reqout",
        "req.der",
    ]);
    let out = dir.join(format!("ocsp-{status}.der"));
    run(&[
        "ocsp",
        "-index",
        "index.txt",
        "-rsigner",
        ca_pem,
        "-rkey",
        ca_key.to_str().unwrap(),
        "-CA",
        ca_pem,
        "-reqin",
        "req.der",
        "-respout",
        out.to_str().unwrap(),
        "-ndays",
        "1",
    ]);
    out
}

/// `SSLUseStapling on` with `WsgateStaplingFile`: the response is stapled
/// to the handshake (rustls and `openssl s_client -status` see it), for
/// the virtual host that asks and not for another; `wsgate -t` refuses
/// stapling without a file, a revoked certificate's response and another
/// certificate's, each with the line.
#[tokio::test]
async fn ocsp_stapling_sends_the_response_from_the_file() {
    let ca = Ca::new();
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let good = ocsp_response(&ca, &a, 'V');
    let staple = |file: &Path| {
        format!(
            "SSLUseStapling on\n<IfModule wsgate_module>\nWsgateStaplingFile {}\n</IfModule>\n",
            file.display()
        )
    };
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\nSSLStaplingCache shmcb:/tmp/x(32768)\n{}{}",
        tls_vhost("a.test", &a, &staple(&good)),
        tls_vhost("b.test", &b, ""),
    );
    let w = Wsgate::start_file(&conf);
    let stapled = |sni: &'static str| {
        let w = &w;
        async move {
            let verifier = Arc::new(Recorder::default());
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            let tcp = TcpStream::connect(w.addr).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from(sni).unwrap(), tcp)
                .await
                .expect("handshake");
            let got = verifier.0.lock().unwrap().clone();
            got.expect("verified").1
        }
    };
    assert_eq!(stapled("a.test").await, std::fs::read(&good).unwrap());
    assert!(stapled("b.test").await.is_empty(), "b.test staples nothing");
    // OpenSSL's client sees a good response too.
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &w.addr.to_string(),
            "-servername",
            "a.test",
            "-status",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OCSP Response Status: successful"), "{text}");
    assert!(text.contains("Cert Status: good"), "{text}");

    // What -t refuses, with the line.
    let head = "Listen 127.0.0.1:0\nServerName proxy.test\n";
    let revoked = ocsp_response(&ca, &a, 'R');
    let cases = [
        (
            tls_vhost("a.test", &a, "SSLUseStapling on\n"),
            "fetches none",
        ),
        (tls_vhost("a.test", &a, &staple(&revoked)), "revoked"),
        (
            tls_vhost("b.test", &b, &staple(&good)),
            "another certificate",
        ),
    ];
    for (vhost, why) in cases {
        let file = write(ca.dir.path(), "stapling.conf", &format!("{head}{vhost}"));
        let out = std::process::Command::new(WSGATE)
            .args(["-t", "-f", file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: {err}");
        assert!(
            err.contains("stapling.conf:") && err.contains(why),
            "{why}: {err}"
        );
    }
}

/// A TLS connection to wsgate for `name` that verifies nothing (to send
/// no SNI, or a name the certificate does not hold).
async fn connect_unverified(w: &Wsgate, sni: Option<&str>) -> TlsStream<TcpStream> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder::default()))
        .with_no_client_auth();
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("unnamed.test").to_string()).unwrap();
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// As Apache 2.4.71 answers (its default `SSLVHostSNIPolicy secure`,
/// recorded against it): a Host that selects another virtual host than the
/// handshake's gets 421 and the connection closes, unless the two share
/// their TLS setup (the same certificate and key files, the same
/// protocols); a request without Host after an SNI name gets 400.
#[tokio::test]
async fn a_host_for_another_tls_setup_than_the_handshakes_gets_421_and_a_close() {
    let ca = Ca::new();
    let backend = http_backend("tls").await;
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let pass = format!("ProxyPass / http://127.0.0.1:{}/\n", backend.port());
    // c.test shares a.test's certificate files and protocols.
    let conf = format!(
        "Listen 127.0.0.1:0 https\nServerName proxy.test\n{}{}{}",
        tls_vhost("a.test", &a, &pass),
        tls_vhost("b.test", &b, &pass),
        tls_vhost("c.test", &a, &pass),
    );
    let w = Wsgate::start_file(&conf);
    let ask = |host: &str| format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let limit = Duration::from_secs(5);

    let mut s = connect(&w, &ca, "a.test", BOTH).await.unwrap();
    for host in ["A.test", "a.test:443", "c.test", "unknown.test"] {
        let answer = tls_exchange(&mut s, &ask(host), limit).await;
        assert_eq!(status_of(&answer), 200, "Host {host}: {answer}");
    }
    let other = tls_exchange(&mut s, &ask("b.test"), limit).await;
    assert!(
        other.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
        "{other}"
    );
    let after = tls_exchange(&mut s, &ask("a.test"), limit).await;
    assert_eq!(after, "", "the connection closed after the 421");

    // Without SNI the handshake was the address's first host's, a.test.
    let mut s = connect_unverified(&w, None).await;
    let answer = tls_exchange(&mut s, &ask("b.test"), limit).await;
    assert_eq!(status_of(&answer), 421, "{answer}");
    let mut s = connect_unverified(&w, None).await;
    let answer = tls_exchange(&mut s, &ask("a.test"), limit).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    // SNI b.test, and a Host that selects the first host: 421 too.
    let mut s = connect(&w, &ca, "b.test", BOTH).await.unwrap();
    let answer = tls_exchange(&mut s, &ask("unknown.test"), limit).await;
    assert_eq!(status_of(&answer), 421, "{answer}");
    // An SNI name and no Host.
    let mut s = connect(&w, &ca, "a.test", BOTH).await.unwrap();
    let answer = tls_exchange(&mut s, "GET /x HTTP/1.0\r\n\r\n", limit).await;
    assert_eq!(status_of(&answer), 400, "{answer}");

    drop(s);
    drop(w);
    backend.finish().await;
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_apaches_400_and_a_close() {
    let ca = Ca::new();
    let backend = ws_echo_backend().await;
    let (conf, _a, _b) = two_vhosts(&ca, &backend);
    let w = Wsgate::start_file(&conf);
    let answer = raw_exchange(
        w.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("speaking plain HTTP to an SSL-enabled server port"),
        "{answer}"
    );
    assert!(
        header_value(&answer, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close")),
        "{answer}"
    );
    // Other methods, as with OpenSSL: no answer, a close.
    let answer = raw_exchange(
        w.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer, "");
}

/// `Listen … https` turns TLS on for a virtual host with a certificate and
/// no `SSLEngine` line (mod_ssl's default for an https listener).
#[tokio::test]
async fn an_https_listener_serves_tls_for_a_vhost_with_a_certificate() {
    let ca = Ca::new();
    let a = ca.issue("a.test");
    let conf = format!(
        "Listen 127.0.0.1:0 https\nServerName proxy.test\n<VirtualHost *>\nServerName a.test\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n</VirtualHost>\n",
        a.cert.display(),
        a.key.display()
    );
    let w = Wsgate::start_file(&conf);
    let mut s = connect(&w, &ca, "a.test", BOTH).await.expect("TLS");
    let answer = tls_exchange(
        &mut s,
        "GET /none HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 404, "{answer}");
    // Without https on the listener, the same vhost speaks plain HTTP.
    let plain = Wsgate::start_file(&conf.replace(" https\n", "\n"));
    let answer = raw_exchange(
        plain.addr,
        b"GET /none HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 404, "{answer}");
}

#[tokio::test]
async fn sslprotocol_tls13_only_refuses_a_tls12_client() {
    let ca = Ca::new();
    let backend = ws_echo_backend().await;
    let a = ca.issue("a.test");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{}",
        tls_vhost("a.test", &a, "SSLProtocol -all +TLSv1.3\n")
    );
    let w = Wsgate::start_file(&conf);
    assert!(
        connect(&w, &ca, "a.test", &[&rustls::version::TLS12])
            .await
            .is_err(),
        "TLS 1.2 refused"
    );
    let s = connect(&w, &ca, "a.test", &[&rustls::version::TLS13])
        .await
        .expect("TLS 1.3 served");
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(backend);
}

#[tokio::test]
async fn a_reload_reads_new_certificates_and_keeps_live_tunnels() {
    let ca = Ca::new();
    let backend = ws_echo_backend().await;
    let (conf, a, _b) = two_vhosts(&ca, &backend);
    let w = Wsgate::start_file(&conf);
    let tls = connect(&w, &ca, "a.test", BOTH).await.unwrap();
    let url = format!("wss://a.test:{}/ws", w.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    // A new certificate for a.test in the same files, then a reload.
    let renewed = ca.issue("a.test");
    assert!(renewed.der != a.der);
    w.reload(&conf).await;
    assert!(
        presented(&w, Some("a.test")).await == renewed.der,
        "new handshakes get the new certificate"
    );
    ws.send(Message::Text("still here".into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(
        got,
        Message::Text("still here".into()),
        "the tunnel opened before the reload"
    );
    // A broken certificate on reload keeps the old one running.
    std::fs::write(&renewed.key, "not a key\n").unwrap();
    w.signal("HUP");
    let log = w.wait_log("reload failed", 1).await;
    assert!(log.contains(&format!("{}", renewed.key.display())), "{log}");
    assert!(
        presented(&w, Some("a.test")).await == renewed.der,
        "still served after the failed reload"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `-t` refuses what a TLS server cannot start with, naming the line.
#[test]
fn broken_tls_configurations_are_refused_with_the_line_and_why() {
    let ca = Ca::new();
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let dir = ca.dir.path();
    let key_text = std::fs::read_to_string(&a.key).unwrap();
    let encrypted = write(
        dir,
        "encrypted.key",
        &key_text
            .replace("BEGIN PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY")
            .replace("END PRIVATE KEY", "END ENCRYPTED PRIVATE KEY"),
    );
    let head = "Listen 127.0.0.1:0\nServerName proxy.test\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{head}<VirtualHost *>\nServerName a.test\nSSLEngine on\n</VirtualHost>\n"),
            ":5: SSLEngine on for a.test, but no SSLCertificateFile",
        ),
        (
            format!("{head}<VirtualHost *>\nServerName a.test\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n</VirtualHost>\n", a.cert.display(), b.key.display()),
            ":7: SSLCertificateKeyFile: Certificate and private key from",
        ),
        (
            format!("{head}<VirtualHost *>\nServerName a.test\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n</VirtualHost>\n", a.cert.display(), encrypted.display()),
            "is encrypted",
        ),
        (
            format!("{head}<VirtualHost *>\nServerName a.test\nSSLEngine on\nSSLCertificateFile {}/missing.crt\n</VirtualHost>\n", dir.display()),
            ":6: SSLCertificateFile: file",
        ),
        (
            format!("{head}SSLProtocol TLSv9\n"),
            ":3: SSLProtocol: Illegal protocol 'TLSv9'",
        ),
        (
            format!("{head}SSLProtocol -all +TLSv1.1\n"),
            ":3: SSLProtocol -all +TLSv1.1 leaves no protocol wsgate speaks",
        ),
        (
            format!(
                "{head}{}<VirtualHost *>\nServerName plain.test\n</VirtualHost>\n",
                tls_vhost("a.test", &a, "")
            ),
            "mix TLS and plain HTTP",
        ),
    ];
    for (text, want) in cases {
        let out = check_file(&text, |_| {});
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}\n{stderr}");
        assert!(
            stderr.contains(want),
            "wanted {want:?} for\n{text}\ngot: {stderr}"
        );
    }
    // The key mismatch names both files.
    let text = format!("{head}<VirtualHost *>\nServerName a.test\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n</VirtualHost>\n", a.cert.display(), b.key.display());
    let stderr = String::from_utf8_lossy(&check_file(&text, |_| {}).stderr).into_owned();
    assert!(
        stderr.contains(&b.key.display().to_string())
            && stderr.contains(&a.cert.display().to_string()),
        "{stderr}"
    );
}

/// What a client offering `suites` (in its order of preference) and
/// `groups` negotiates with wsgate for `name`: the suite and the group.
async fn negotiate(
    w: &Wsgate,
    ca: &Ca,
    name: &str,
    suites: &[rustls::SupportedCipherSuite],
    groups: Option<&[&'static dyn rustls::crypto::SupportedKxGroup]>,
) -> Result<(rustls::CipherSuite, rustls::NamedGroup), String> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites.to_vec();
    if let Some(groups) = groups {
        provider.kx_groups = groups.to_vec();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_string()).unwrap();
    let s = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("in time")
        .map_err(|e| e.to_string())?;
    let conn = s.get_ref().1;
    Ok((
        conn.negotiated_cipher_suite().unwrap().suite(),
        conn.negotiated_key_exchange_group().unwrap().name(),
    ))
}

/// `SSLCipherSuite` (both lists, in OpenSSL's syntax), `SSLHonorCipherOrder`
/// and `SSLOpenSSLConfCmd Curves` decide what a handshake negotiates; the
/// suites rustls lacks are reported once at startup.
#[tokio::test]
async fn cipher_suites_their_order_and_groups_follow_the_configuration() {
    use rustls::crypto::ring::cipher_suite as cs;
    use rustls::crypto::ring::kx_group;
    let ca = Ca::new();
    // The test CA's keys are ECDSA P-256.
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{}{}",
        tls_vhost(
            "a.test",
            &a,
            "SSLProtocol -all +TLSv1.2\nSSLCipherSuite ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256\nSSLHonorCipherOrder on\nSSLOpenSSLConfCmd Curves secp384r1:X25519\n"
        ),
        tls_vhost(
            "b.test",
            &b,
            "SSLCipherSuite TLSv1.3 TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256\nSSLCipherSuite ECDSA+AESGCM\n"
        ),
    );
    let w = Wsgate::start_file(&conf);
    let chacha12 = cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
    let aes12 = cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    // The server's order wins (SSLHonorCipherOrder on); the group is one
    // of the server's (rustls takes the client's order among them).
    let (suite, group) = negotiate(&w, &ca, "a.test", &[chacha12, aes12], None)
        .await
        .unwrap();
    assert_eq!(suite, aes12.suite());
    assert_eq!(group, rustls::NamedGroup::X25519);
    let only384: &[&'static dyn rustls::crypto::SupportedKxGroup] = &[kx_group::SECP384R1];
    let (_, group) = negotiate(&w, &ca, "a.test", &[aes12], Some(only384))
        .await
        .unwrap();
    assert_eq!(group, rustls::NamedGroup::secp384r1);
    // Only what the list holds.
    let (suite, _) = negotiate(&w, &ca, "a.test", &[chacha12], None)
        .await
        .unwrap();
    assert_eq!(suite, chacha12.suite());
    let refused = negotiate(
        &w,
        &ca,
        "a.test",
        &[cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
        None,
    )
    .await;
    assert!(refused.is_err(), "AES256 is not in the list: {refused:?}");
    let refused = negotiate(&w, &ca, "a.test", &[aes12], Some(&[kx_group::SECP256R1])).await;
    assert!(refused.is_err(), "P-256 is not in the groups: {refused:?}");
    // b.test: TLS 1.3 suites from their own list; its TLS 1.2 list is
    // ECDSA+AESGCM, and the client's order wins there (no honour order).
    let (suite, _) = negotiate(
        &w,
        &ca,
        "b.test",
        &[
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        suite,
        cs::TLS13_AES_128_GCM_SHA256.suite(),
        "the client's order"
    );
    let refused = negotiate(&w, &ca, "b.test", &[cs::TLS13_AES_256_GCM_SHA384], None).await;
    assert!(refused.is_err(), "{refused:?}");
    let (suite, _) = negotiate(
        &w,
        &ca,
        "b.test",
        &[chacha12, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
        None,
    )
    .await
    .unwrap();
    assert_eq!(suite, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384.suite());
    let log = w.stderr();
    assert!(
        log.contains(
            "SSLCipherSuite: wsgate (rustls) has no suite for DHE-RSA-AES128-GCM-SHA256; left out"
        ),
        "{log}"
    );
}

/// `SSLStrictSNIVHostCheck on`: a client that sends no name gets 403 from
/// that server, and from every server when the first one asks for it.
#[tokio::test]
async fn strict_sni_refuses_clients_without_a_name() {
    let ca = Ca::new();
    let backend = http_backend("strict").await;
    let a = ca.issue("a.test");
    let b = ca.issue("b.test");
    let pass = format!("ProxyPass / http://127.0.0.1:{}/\n", backend.port());
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{}{}",
        tls_vhost("a.test", &a, &pass),
        tls_vhost("b.test", &b, &format!("{pass}SSLStrictSNIVHostCheck on\n")),
    );
    let w = Wsgate::start_file(&conf);
    let ask = |host: &str| format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let limit = Duration::from_secs(5);
    let mut s = connect_unverified(&w, None).await;
    assert_eq!(
        status_of(&tls_exchange(&mut s, &ask("a.test"), limit).await),
        200
    );
    let mut s = connect_unverified(&w, None).await;
    let answer = tls_exchange(&mut s, &ask("b.test"), limit).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    // With the name, b.test is served.
    let mut s = connect(&w, &ca, "b.test", BOTH).await.unwrap();
    assert_eq!(
        status_of(&tls_exchange(&mut s, &ask("b.test"), limit).await),
        200
    );
    drop(s);
    drop(w);
    backend.finish().await;
}

/// Headless Chromium loading the demo page from https://a.test through a
/// TLS virtual host (with `vhost` lines besides its two ProxyPass, and
/// `server` lines before it) until the page shows the browser's echo; the
/// gate, for its log. `None` when Chromium is not installed (SKIP).
fn chromium_echo_over_tls(server: &str, vhost: &str) -> Option<Wsgate> {
    if !require_program("chromium", "chromium") {
        return None;
    }
    let demo = start_demo();
    let ca = Ca::new();
    let a = ca.issue("a.test");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{server}{}",
        tls_vhost(
            "a.test",
            &a,
            &format!(
                "{vhost}ProxyPass /echo ws://{0}/echo\nProxyPass / http://{0}/\n",
                demo.addr
            )
        )
    );
    let w = Wsgate::start_file(&conf);
    let port = w.addr.port();
    let dom = chromium_dom_until(
        &format!("https://a.test:{port}/"),
        &[
            "--host-resolver-rules=MAP a.test 127.0.0.1",
            // The test CA is not the system's.
            "--ignore-certificate-errors",
        ],
        "<li>echo: hello from the browser</li>",
    )
    .unwrap_or_else(|last| panic!("no echo over wss://; last DOM:\n{last}\n{}", w.stderr()));
    assert!(dom.contains("<span id=\"state\">open</span>"), "{dom}");
    Some(w)
}

/// A browser on an https:// page: headless Chromium loads the demo page
/// through a TLS virtual host and echoes over wss:// through the same one.
#[test]
fn chromium_loads_an_https_page_and_echoes_over_wss() {
    chromium_echo_over_tls("", "");
}

/// The same over HTTP/2: Chromium loads the page on an HTTP/2 connection
/// and, the server offering RFC 8441, opens its WebSocket as a stream of
/// that connection (the debug log names each such stream).
#[test]
fn chromium_opens_its_websocket_over_http2() {
    let Some(w) = chromium_echo_over_tls(
        "LogLevel debug\n",
        "Protocols h2 http/1.1\nH2WebSockets on\n",
    ) else {
        return;
    };
    let log = w.stderr();
    assert!(
        log.contains("WebSocket over an HTTP/2 stream") && log.contains("path=/echo"),
        "the WebSocket did not go over HTTP/2: {log}"
    );
}
