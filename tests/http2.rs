//! HTTP/2 toward clients, with the `h2` crate's client over rustls: ALPN
//! as `Protocols` says, requests and bodies proxied to HTTP/1.1 backends,
//! WebSockets over HTTP/2 streams (RFC 8441) — a hundred on one connection
//! — a reload that leaves a live stream alone, and a rapid-reset flood
//! (CVE-2023-44487) that leaves other clients served.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::pki::*;
use common::*;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// A TLS connection offering `alpn`; the protocol the server chose.
async fn tls(
    w: &Wsgate,
    ca: &Ca,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>) {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let stream = tokio::time::timeout(
        LIMIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("a.test").unwrap(), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let chosen = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (stream, chosen)
}

/// An HTTP/2 client on a new connection (its driver runs in a task).
async fn h2_client(w: &Wsgate, ca: &Ca) -> SendRequest<Bytes> {
    let (stream, chosen) = tls(w, ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"h2"[..]), "ALPN chose h2");
    let (client, conn) = h2::client::handshake(stream)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.expect("ready")
}

/// An HTTP/2 client without TLS (prior knowledge), its driver in a task.
async fn h2c_client(w: &Wsgate) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Reads a stream's whole body.
async fn body(mut recv: h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(piece) = tokio::time::timeout(LIMIT, recv.data())
        .await
        .expect("data in time")
    {
        let piece = piece.expect("a DATA frame");
        let _ = recv.flow_control().release_capacity(piece.len());
        out.extend_from_slice(&piece);
    }
    out
}

fn config(ca: &Ca, http_backend: &Backend, ws_backend: &Backend, more: &str) -> String {
    let a = ca.issue("a.test");
    format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{}",
        tls_vhost(
            "a.test",
            &a,
            &format!(
                "Protocols h2 http/1.1\n{more}ProxyPass /ws ws://{ws_backend}/\nProxyPass / http://{http_backend}/\n"
            )
        )
    )
}

/// A backend that reads a chunked request body and answers with its size.
async fn chunked_body_backend() -> Backend {
    raw_backend(|head, mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the body ended early");
            raw.extend_from_slice(&buf[..n]);
        }
        // Decode: size line, data, CRLF, until the zero chunk.
        let mut size_total = 0;
        let mut rest = &raw[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            assert!(rest[..size].iter().all(|&b| b == b'z'));
            size_total += size;
            rest = &rest[size + 2..];
        }
        let text = format!("chunked body={size_total}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_bodies_go_to_http1_backends() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let seen = http.seen.clone();
    let ws = ws_echo_backend().await;
    let w = Wsgate::start_file(&config(&ca, &http, &ws, ""));
    let mut client = h2_client(&w, &ca).await;

    let request = http::Request::get("https://a.test/x?y=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(LIMIT, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "h1");
    assert!(response.headers().get("connection").is_none());
    assert_eq!(body(response.into_body()).await, b"h1 /x?y=1 body=0");
    let head = seen.last();
    // As from HTTP/1: the backend's Host, the client's in X-Forwarded-Host.
    assert!(
        head.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:"),
        "{head}"
    );
    // Cookies joined, names as mod_http2 writes them for HTTP/1.1.
    assert!(head.contains("\r\nCookie: a=1; b=2\r\n"), "{head}");
    assert!(head.contains("\r\nX-Forwarded-Host: a.test\r\n"), "{head}");

    // A body of unknown length goes on chunked; the backend gets it whole.
    let chunked = chunked_body_backend().await;
    let w = Wsgate::start_file(&config(&ca, &chunked, &ws, ""));
    let client = h2_client(&w, &ca).await;
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post("https://a.test/upload")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    let payload = vec![b'z'; 100_000];
    send.reserve_capacity(payload.len());
    let mut rest = Bytes::from(payload);
    while !rest.is_empty() {
        let n = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .unwrap()
            .unwrap();
        send.send_data(rest.split_to(n.min(rest.len())), false)
            .unwrap();
    }
    send.send_data(Bytes::new(), true).unwrap();
    let response = tokio::time::timeout(LIMIT, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response.into_body()).await, b"chunked body=100000");
    drop(w);
    chunked.finish().await;

    // wsgate's own answers go as HTTP/2 responses too.
    let w2 = Wsgate::start_file(
        &config(&ca, &http, &ws, "").replace("ProxyPass / http", "ProxyPass /only http"),
    );
    let mut client = h2_client(&w2, &ca).await;
    let (response, _) = client
        .send_request(
            http::Request::get("https://a.test/nothing")
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    let response = tokio::time::timeout(LIMIT, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(String::from_utf8_lossy(&body(response.into_body()).await).contains("404 Not Found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_offers_h2_only_where_protocols_lists_it() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let w = Wsgate::start_file(&config(&ca, &http, &ws, "").replace("Protocols h2 http/1.1\n", ""));
    let (_, chosen) = tls(&w, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]));
    let w = Wsgate::start_file(&config(&ca, &http, &ws, ""));
    let (_, chosen) = tls(&w, &ca, &[b"http/1.1"]).await;
    assert_eq!(
        chosen.as_deref(),
        Some(&b"http/1.1"[..]),
        "an HTTP/1.1 client still served"
    );
}

/// A masked WebSocket text frame, as a client sends it.
fn text_frame(text: &str) -> Bytes {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![0x81, 0x80 | text.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Bytes::from(out)
}

/// Opens a WebSocket on a new stream (extended CONNECT).
async fn open_websocket(
    client: &mut SendRequest<Bytes>,
) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let mut request = http::Request::connect("https://a.test/ws/chat")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let mut ready = client.clone().ready().await.unwrap();
    let (response, send) = ready.send_request(request, false).unwrap();
    let response = match tokio::time::timeout(LIMIT, response).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("no answer to the extended CONNECT"),
    };
    assert_eq!(response.status(), 200, "extended CONNECT accepted");
    (send, response.into_body())
}

/// Sends a text message and reads the echo (an unmasked frame).
async fn echo(send: &mut h2::SendStream<Bytes>, recv: &mut h2::RecvStream, text: &str) {
    send.reserve_capacity(64);
    send.send_data(text_frame(text), false).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 + text.len() {
        let piece = tokio::time::timeout(LIMIT, recv.data())
            .await
            .expect("echo in time")
            .expect("the stream open")
            .unwrap();
        let _ = recv.flow_control().release_capacity(piece.len());
        got.extend_from_slice(&piece);
    }
    assert_eq!(got[0], 0x81);
    assert_eq!(&got[2..], text.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_websockets_share_one_http2_connection() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let w = Wsgate::start_file(&format!(
        "LogLevel debug\n{}",
        config(
            &ca,
            &http,
            &ws,
            "H2WebSockets on\nH2MaxSessionStreams 200\n",
        )
    ));
    let client = h2_client(&w, &ca).await;
    // The client applies the server's SETTINGS in its connection task.
    eventually(LIMIT, "SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        client.is_extended_connect_protocol_enabled()
    })
    .await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let mut c = client.clone();
        let w2 = &w;
        let opened =
            tokio::time::timeout(LIMIT - Duration::from_secs(1), open_websocket(&mut c)).await;
        match opened {
            Ok(s) => sockets.push(s),
            Err(_) => panic!("no answer to the extended CONNECT: {}", w2.stderr()),
        }
    }
    for (i, (send, recv)) in sockets.iter_mut().enumerate() {
        echo(send, recv, &format!("stream {i}")).await;
    }
    let log = w.stderr();
    // Each went over HTTP/2 (the debug log names every such stream).
    assert_eq!(log.matches("WebSocket over an HTTP/2 stream").count(), 100);
    // Closing one stream leaves the others.
    let (mut send, _) = sockets.remove(0);
    send.send_data(Bytes::new(), true).unwrap();
    let (send, recv) = &mut sockets[0];
    echo(send, recv, "still").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_over_http2_need_h2websockets() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let w = Wsgate::start_file(&config(&ca, &http, &ws, ""));
    let client = h2_client(&w, &ca).await;
    assert!(
        !client.is_extended_connect_protocol_enabled(),
        "not offered without H2WebSockets on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_leaves_websocket_streams_running() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let conf = config(&ca, &http, &ws, "H2WebSockets on\n");
    let w = Wsgate::start_file(&conf);
    let mut client = h2_client(&w, &ca).await;
    eventually(LIMIT, "SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        client.is_extended_connect_protocol_enabled()
    })
    .await;
    let (mut send, mut recv) = open_websocket(&mut client).await;
    echo(&mut send, &mut recv, "before").await;
    w.reload(&conf).await;
    echo(&mut send, &mut recv, "after the reload").await;
    // New streams on the same connection work too.
    let (mut send2, mut recv2) = open_websocket(&mut client).await;
    echo(&mut send2, &mut recv2, "new stream").await;
}

/// CVE-2023-44487: a client opening and resetting streams as fast as it
/// can loses its connection (GOAWAY); another client is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_rapid_reset_flood_does_not_starve_other_clients() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let w = Wsgate::start_file(&config(&ca, &http, &ws, ""));
    let (stream, _) = tls(&w, &ca, &[b"h2"]).await;
    let (attacker, conn) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(conn);
    let flood = tokio::spawn(async move {
        let mut sent = 0;
        while sent < 100_000 {
            let Ok(mut ready) = attacker.clone().ready().await else {
                break;
            };
            let request = http::Request::get("https://a.test/flood").body(()).unwrap();
            let Ok((_, mut stream)) = ready.send_request(request, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            sent += 1;
            if sent % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        sent
    });
    // Meanwhile, another client gets its answers.
    let client = h2_client(&w, &ca).await;
    for i in 0..20 {
        let request = http::Request::get(format!("https://a.test/ok/{i}"))
            .body(())
            .unwrap();
        let mut ready = client.clone().ready().await.unwrap();
        let (response, _) = ready.send_request(request, true).unwrap();
        let response = tokio::time::timeout(LIMIT, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // The attacker's connection was closed by the server, with a reason.
    let ended = tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("the flooding connection closes")
        .unwrap();
    let e = ended.expect_err("closed with an error");
    // GOAWAY ENHANCE_YOUR_CALM, or the close behind it when the client was
    // still writing.
    assert!(
        e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || e.is_io(),
        "{e}"
    );
    let sent = flood.await.unwrap();
    assert!(sent < 100_000, "{sent} resets");
}

/// `Protocols h2c http/1.1` on an address without TLS: a client that opens
/// with HTTP/2's preface (prior knowledge) is served HTTP/2 — requests and
/// a WebSocket over a stream — and one that sends an HTTP/1.1 request on
/// the same address is served HTTP/1.1; without `h2c`, the preface is not
/// HTTP/2 to wsgate.
#[tokio::test(flavor = "multi_thread")]
async fn h2c_serves_http2_with_prior_knowledge_beside_http1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = http_backend("h1").await;
    let ws = ws_echo_backend().await;
    let w = Wsgate::start(&format!(
        "LogLevel debug\nProtocols h2c http/1.1\nH2WebSockets on\nProxyPass /ws ws://{ws}/\nProxyPass / http://{http}/\n"
    ));
    let client = h2c_client(&w).await;
    let mut ready = client.clone().ready().await.unwrap();
    let request = http::Request::get("http://a.test/over/h2c")
        .body(())
        .unwrap();
    let (response, _) = ready.send_request(request, true).unwrap();
    let response = tokio::time::timeout(LIMIT, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(body(response.into_body()).await).unwrap();
    assert!(text.contains("/over/h2c"), "{text}");
    let seen = http.seen.last();
    assert!(seen.starts_with("GET /over/h2c HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("Host: a.test\r\n"), "{seen}");
    // A WebSocket over a stream of the same connection.
    let mut c = client.clone();
    eventually(LIMIT, "SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        c.is_extended_connect_protocol_enabled()
    })
    .await;
    let (mut send, mut recv) = open_websocket(&mut c).await;
    echo(&mut send, &mut recv, "over h2c").await;
    assert_eq!(
        w.stderr()
            .matches("WebSocket over an HTTP/2 stream")
            .count(),
        1
    );
    // HTTP/1.1 on the same address.
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"GET /h1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Without h2c, the preface is an HTTP/1 request wsgate refuses: the
    // client gets no HTTP/2 answer (whichever step finds out), and a raw
    // look shows HTTP/1.1's 505 for a version it does not speak.
    let plain = Wsgate::start(&format!("ProxyPass / http://{http}/\n"));
    let tcp = TcpStream::connect(plain.addr).await.unwrap();
    let attempt = async {
        let (client, conn) = h2::client::handshake(tcp).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut ready = client.ready().await?;
        let request = http::Request::get("http://a.test/x").body(()).unwrap();
        let (response, _) = ready.send_request(request, true)?;
        response.await
    };
    let got = tokio::time::timeout(LIMIT, attempt)
        .await
        .expect("an end in time");
    assert!(got.is_err(), "no HTTP/2 answer without h2c: {got:?}");
    let raw = raw_exchange(plain.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", LIMIT).await;
    assert!(raw.starts_with("HTTP/1.1 505 "), "{raw}");
}

/// `H2StreamTimeout`: a stream whose request body stops arriving is reset
/// after it, not after the much longer `Timeout`; other streams on the
/// same connection are served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn h2streamtimeout_bounds_a_stalled_request_body() {
    let http = http_backend("h1").await;
    let w = Wsgate::start(&format!(
        "Protocols h2c http/1.1\nTimeout 30\nH2StreamTimeout 1\nProxyPass / http://{http}/\n"
    ));
    let client = h2c_client(&w).await;
    let mut ready = client.clone().ready().await.unwrap();
    let request = http::Request::post("http://a.test/upload")
        .body(())
        .unwrap();
    let started = std::time::Instant::now();
    let (response, mut body) = ready.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(b"the start, then nothing"), false)
        .unwrap();
    // Meanwhile another stream is answered.
    let mut ready = client.clone().ready().await.unwrap();
    let other = http::Request::get("http://a.test/other").body(()).unwrap();
    let (other, _) = ready.send_request(other, true).unwrap();
    let other = tokio::time::timeout(LIMIT, other).await.unwrap().unwrap();
    assert_eq!(other.status(), 200);
    let answer = tokio::time::timeout(LIMIT, response)
        .await
        .expect("the stalled stream ends well before Timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "after {waited:?}"
    );
    // A stalled stream gets no answer: it is reset (over HTTP/1.1 a body
    // too slow gets Apache's 408, see tests/timeouts.rs).
    let e = answer.expect_err("no answer");
    assert!(e.is_reset(), "{e}");
}

/// A WebSocket backend behind TLS (certificate for `localhost` from
/// `ca`): echoes text; `bye` makes it close (a close frame, then its end
/// of the connection). Counts the connections that saw their client end.
async fn wss_backend(ca: &Ca) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let issued = ca.issue("localhost");
    let certs = rustls_pemfile::certs(&mut std::fs::read(&issued.cert).unwrap().as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut std::fs::read(&issued.key).unwrap().as_slice())
        .unwrap()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = ended.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.as_str() == "bye" => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        Some(Ok(Message::Text(t))) => {
                            if ws.send(Message::Text(t)).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, ended)
}

/// WebSockets over HTTP/2 streams to a `wss://` backend: the echo goes
/// through both TLS sessions; the backend's close ends the stream with
/// END_STREAM (not a reset), and the client's END_STREAM reaches the
/// backend as its client's end. Then wss:// to the same backend over
/// HTTP/1.1.
#[tokio::test(flavor = "multi_thread")]
async fn http2_websockets_reach_a_wss_backend_and_each_end_closes_cleanly() {
    let ca = Ca::new();
    let http = http_backend("h1").await;
    let (wss, ended) = wss_backend(&ca).await;
    let a = ca.issue("a.test");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\nSSLProxyEngine on\nSSLProxyCACertificateFile {}\n{}",
        ca.ca_pem_file().display(),
        tls_vhost(
            "a.test",
            &a,
            &format!(
                "Protocols h2 http/1.1\nH2WebSockets on\nProxyPass /ws wss://localhost:{}/\nProxyPass / http://{http}/\n",
                wss.port()
            )
        )
    );
    let w = Wsgate::start_file(&conf);
    let client = h2_client(&w, &ca).await;
    let mut c = client.clone();
    eventually(LIMIT, "SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        c.is_extended_connect_protocol_enabled()
    })
    .await;
    // The backend ends: END_STREAM after its close frame.
    let (mut send, mut recv) = open_websocket(&mut c).await;
    echo(&mut send, &mut recv, "through two TLS sessions").await;
    send.reserve_capacity(64);
    send.send_data(text_frame("bye"), false).unwrap();
    let mut rest = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, recv.data())
            .await
            .expect("the end in time")
        {
            Some(Ok(piece)) => {
                let _ = recv.flow_control().release_capacity(piece.len());
                rest.extend_from_slice(&piece);
            }
            Some(Err(e)) => panic!("the stream was reset, not ended: {e}"),
            None => break,
        }
    }
    assert_eq!(
        rest.first(),
        Some(&0x88),
        "a close frame before the end: {rest:?}"
    );
    assert!(recv.is_end_stream());
    // The client ends: the backend sees its client go.
    let (mut send, mut recv) = open_websocket(&mut c).await;
    echo(&mut send, &mut recv, "once").await;
    send.send_data(Bytes::new(), true).unwrap();
    eventually(LIMIT, "the backend saw its client end", || {
        ended.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    // And wss:// to wss:// over HTTP/1.1.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (tls, chosen) = tls(&w, &ca, &[b"http/1.1"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]));
    let url = format!("wss://a.test:{}/ws", w.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake over HTTP/1.1 and TLS");
    ws.send(Message::Text("h1 both sides".into()))
        .await
        .unwrap();
    let got = tokio::time::timeout(LIMIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Text("h1 both sides".into()));
}
