//! Upgrades and tunnels end to end: the real wsgate binary between real
//! clients and backends on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

/// A backend that switches to whatever protocol was asked for and then
/// echoes raw bytes; on EOF it writes "bye" and closes.
async fn switching_echo_backend() -> Backend {
    switching_echo_backend_telling_eof().await.0
}

/// [`switching_echo_backend`], counting the connections that saw their
/// client's end (end of stream or reset).
async fn switching_echo_backend_telling_eof() -> (Backend, Arc<AtomicUsize>) {
    let ended = Arc::new(AtomicUsize::new(0));
    let count = ended.clone();
    let backend = raw_backend(move |head, mut stream| {
        let count = count.clone();
        async move {
            let proto = header_value(&head, "upgrade").unwrap_or_else(|| "none".into());
            let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\nX-Custom: kept\r\n\r\n");
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.write_all(b"bye").await;
                        return;
                    }
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    (backend, ended)
}

/// Sends `head`, then `payload`; returns the answer's head and, after a
/// 101, as many bytes as `payload` (the switching echo backend's echo).
async fn upgrade_exchange(
    addr: std::net::SocketAddr,
    head: &str,
    payload: &[u8],
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(payload).await.unwrap();
    let mut got = read_head(&mut s).await.expect("an answer head in time");
    if status_of(&got) == 101 && !payload.is_empty() {
        got.push_str(&read_exactly(&mut s, payload.len(), T).await);
    }
    (s, got)
}

fn custom(path: &str, proto: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_one_proxies_websockets_by_prefix() {
    let backend = ws_echo_backend().await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass \"/ws2/\" \"ws://{backend}/\"\n"));
    assert_eq!(
        ws_roundtrip(&gate.url("/ws2/chat?room=1"), "hello").await,
        "hello"
    );
    let head = seen.last();
    assert!(head.starts_with("GET /chat?room=1\n"), "{head}");
    assert!(head.contains(&format!("host: {backend}")), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-server: proxy.test"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_two_websocket_path_beside_http() {
    let ws = ws_echo_backend().await;
    let ws_seen = ws.seen.clone();
    let http = http_backend("app").await;
    let http_seen = http.seen.clone();
    let gate = Wsgate::start(&format!(
        "ProxyPassMatch ^/(myApp/ws)$  ws://{ws}/$1\nProxyPass / http://{http}/\n"
    ));
    assert_eq!(ws_roundtrip(&gate.url("/myApp/ws"), "m").await, "m");
    assert!(ws_seen.last().starts_with("GET /myApp/ws\n"));
    let page = raw_exchange(
        gate.addr,
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.ends_with("app /index.html?x=1 body=0"), "{page}");
    assert!(http_seen
        .last()
        .starts_with("GET /index.html?x=1 HTTP/1.1\r\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_protocol_upgrade_tunnels_raw_bytes() {
    let backend = switching_echo_backend().await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass /c/ http://{backend}/ upgrade=foo\n"));
    let (_s, got) = upgrade_exchange(gate.addr, &custom("/c/x", "foo"), b"ping").await;
    assert!(
        got.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{got}"
    );
    assert!(got.contains("X-Custom: kept\r\n"), "{got}");
    assert!(
        got.contains("Connection: Upgrade\r\nUpgrade: foo\r\n\r\n"),
        "{got}"
    );
    assert!(!got.contains("Date:"), "a 101 carries no Date: {got}");
    assert!(
        got.ends_with("\r\n\r\nping"),
        "early bytes reach the backend after the 101: {got}"
    );
    let head = seen.last();
    assert!(
        head.ends_with("Connection: Upgrade\r\nUpgrade: foo\r\n\r\n"),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_any_tunnels_whatever_is_asked_and_warns() {
    let backend = switching_echo_backend().await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/ upgrade=ANY\n"));
    let (_s, got) = upgrade_exchange(gate.addr, &custom("/", "made-up/2"), b"x").await;
    assert_eq!(status_of(&got), 101, "{got}");
    assert!(seen.last().contains("Upgrade: made-up/2\r\n"));
    assert!(
        gate.stderr().contains("upgrade=ANY"),
        "startup warns: {}",
        gate.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_none_only_tunnels_a_client_asking_for_none() {
    let backend = switching_echo_backend().await;
    let seen = backend.seen.clone();
    let plain = http_backend("plain").await;
    let plain_seen = plain.seen.clone();
    let gate = Wsgate::start(&format!(
        "ProxyPass /n/ ws://{backend}/ upgrade=NONE\nProxyPass /p/ ws://{plain}/ upgrade=NONE\n"
    ));
    let (_s, got) = upgrade_exchange(gate.addr, &custom("/n/", "NONE"), b"").await;
    assert_eq!(status_of(&got), 101, "{got}");
    assert!(seen.last().contains("Upgrade: NONE\r\n"));
    let got = raw_exchange(
        gate.addr,
        ws_request("/p/x", "websocket")
            .replace("Connection: Upgrade", "Connection: close")
            .as_bytes(),
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "proxied as plain HTTP: {got}");
    assert!(
        !plain_seen.last().to_ascii_lowercase().contains("upgrade:"),
        "{}",
        plain_seen.last()
    );
    assert!(gate.stderr().contains("upgrade=NONE"), "{}", gate.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_target_without_upgrade_parameter_strips_upgrade() {
    let plain = http_backend("plain").await;
    let seen = plain.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / http://{plain}/\n"));
    let got = raw_exchange(
        gate.addr,
        ws_request("/x", "websocket")
            .replace("Connection: Upgrade", "Connection: close")
            .as_bytes(),
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    let head = seen.last();
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        "Sec-WebSocket-* pass: {head}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ws_target_needs_exactly_websocket() {
    let plain = http_backend("plain").await;
    let seen = plain.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / ws://{plain}/\n"));
    let got = raw_exchange(
        gate.addr,
        ws_request("/x", "websocketx")
            .replace("Connection: Upgrade", "Connection: close")
            .as_bytes(),
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert!(!seen.last().to_ascii_lowercase().contains("upgrade:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_off_skips_ws_routes_for_plain_requests_and_sends_the_configured_protocol() {
    let backend = switching_echo_backend().await;
    let seen = backend.seen.clone();
    let plain = http_backend("plain").await;
    let plain_seen = plain.seen.clone();
    let gate = Wsgate::start(&format!(
        "ProxyWebsocketFallbackToProxyHttp Off\nProxyPass / ws://{backend}/\nProxyPass / http://{plain}/\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET /page HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(
        got.ends_with("plain /page body=0"),
        "no Upgrade: the ws:// route is skipped: {got}"
    );
    assert!(plain_seen.last().starts_with("GET /page "));
    let (_s, got) = upgrade_exchange(gate.addr, &ws_request("/chat", "websocket"), b"hi").await;
    assert_eq!(status_of(&got), 101, "{got}");
    assert!(
        seen.last().contains("Upgrade: WebSocket\r\n"),
        "legacy mode sends the configured spelling: {}",
        seen.last()
    );
    let got = raw_exchange(gate.addr, ws_request("/chat", "foo").as_bytes(), T).await;
    assert_eq!(status_of(&got), 426, "{got}");
    assert!(
        got.contains("Upgrade: WebSocket\r\n") && got.contains("Connection: Upgrade\r\n"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_off_tunnel_closes_both_sides_at_the_first_end() {
    let (backend, ended) = switching_echo_backend_telling_eof().await;
    let gate = Wsgate::start(&format!(
        "ProxyWebsocketFallbackToProxyHttp Off\nProxyPass / ws://{backend}/\n"
    ));
    let (mut s, got) = upgrade_exchange(gate.addr, &ws_request("/", "websocket"), b"").await;
    assert_eq!(status_of(&got), 101);
    s.shutdown().await.unwrap();
    // No half-close in legacy mode (S62): the client's end closes the
    // backend side and the client side at once, so the backend's last
    // words never arrive.
    assert_eq!(
        read_to_close(&mut s, T).await,
        "",
        "the client side is closed"
    );
    eventually(T, "the backend side is closed", || {
        ended.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_is_passed_on_and_the_other_direction_keeps_working() {
    let (backend, ended) = switching_echo_backend_telling_eof().await;
    let gate = Wsgate::start(&format!("ProxyPass / ws://{backend}/\n"));
    let (mut s, got) = upgrade_exchange(gate.addr, &ws_request("/", "websocket"), b"abc").await;
    assert!(got.ends_with("abc"), "{got}");
    s.shutdown().await.unwrap();
    assert_eq!(
        read_to_close(&mut s, T).await,
        "bye",
        "the backend saw EOF, its reply still came through, then both sides closed"
    );
    assert_eq!(ended.load(Ordering::SeqCst), 1);
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_101_answer_is_relayed_and_the_connection_stays_http() {
    let refusing = raw_backend(|_, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 426 X\r\nContent-Length: 4\r\nUpgrade: WebSocket\r\n\r\nnope")
            .await;
        let _ = read_head(&mut stream).await;
    })
    .await;
    let plain = http_backend("plain").await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /ws/ ws://{refusing}/\nProxyPass / http://{plain}/\n"
    ));
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(ws_request("/ws/", "websocket").as_bytes())
        .await
        .unwrap();
    let first = read_for(&mut s, Duration::from_millis(800)).await;
    assert!(first.starts_with("HTTP/1.1 426 X\r\n"), "{first}");
    assert!(
        first.contains("Upgrade: WebSocket\r\n"),
        "an acceptable Upgrade offer is kept: {first}"
    );
    assert!(first.ends_with("nope"), "{first}");
    // CVE-2019-17567: what follows is parsed as HTTP, not tunnelled.
    s.write_all(b"GET /next HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let second = read_until_close(&mut s, T).await;
    assert!(second.ends_with("plain /next body=0"), "{second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_backend_gives_503_and_a_vanishing_one_closes_the_tunnel() {
    let dead = DeadPort::new();
    let vanishing = raw_backend(|head, mut stream| async move {
        let proto = header_value(&head, "upgrade").unwrap_or_default();
        let _ = stream
            .write_all(format!("HTTP/1.1 101 OK\r\nUpgrade: {proto}\r\n\r\n").as_bytes())
            .await;
        // Dropping the stream ends the backend side abruptly.
    })
    .await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /dead/ ws://{dead}/\nProxyPass /gone/ ws://{vanishing}/\n"
    ));
    let got = raw_exchange(gate.addr, ws_request("/dead/", "websocket").as_bytes(), T).await;
    assert_eq!(status_of(&got), 503, "{got}");
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(ws_request("/gone/", "websocket").as_bytes())
        .await
        .unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&got), 101, "then the close, promptly: {got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_101_naming_another_protocol_is_a_502() {
    let liar = raw_backend(|_, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 101 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
            .await;
        // Held open until wsgate closes it.
        let _ = read_until_close(&mut stream, T).await;
    })
    .await;
    let gate = Wsgate::start(&format!("ProxyPass / ws://{liar}/\n"));
    let got = raw_exchange(gate.addr, ws_request("/", "websocket").as_bytes(), T).await;
    assert!(got.starts_with("HTTP/1.1 502 Proxy Error\r\n"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_are_never_upgraded() {
    let plain = http_backend("plain").await;
    let seen = plain.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / ws://{plain}/\n"));
    let got = raw_exchange(
        gate.addr,
        b"GET /x HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert!(!seen.last().to_ascii_lowercase().contains("upgrade:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_close_frames_pass_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;
    let backend = ws_echo_backend().await;
    let gate = Wsgate::start(&format!("ProxyPass / ws://{backend}/\n"));
    let (mut ws, _) = tokio_tungstenite::connect_async(gate.url("/"))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![7u8; 100_000].into()))
        .await
        .unwrap();
    let echo = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_data().len(), 100_000);
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::from(4999),
        reason: "done here".into(),
    })))
    .await
    .unwrap();
    let reply = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match reply {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4999);
            assert_eq!(frame.reason.as_str(), "done here");
        }
        other => panic!("expected the close frame back, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_limits_connections_to_a_backend_and_acquire_bounds_the_wait() {
    let backend = ws_echo_backend().await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /ws/ ws://{backend}/ max=1 acquire=300\n"
    ));
    let (first, _) = tokio_tungstenite::connect_async(gate.url("/ws/"))
        .await
        .unwrap();
    let started = Instant::now();
    let got = raw_exchange(gate.addr, ws_request("/ws/", "websocket").as_bytes(), T).await;
    assert_eq!(
        status_of(&got),
        503,
        "the one connection is taken by the first tunnel: {got}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for acquire= first"
    );
    drop(first);
    // Free again once wsgate has seen the first tunnel close.
    let deadline = Instant::now() + T;
    loop {
        let got = raw_exchange(gate.addr, ws_request("/ws/", "websocket").as_bytes(), T).await;
        if status_of(&got) == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came free: {got}");
    }
}

/// A tunnel quiet for 5 s leaves the runtime (its task and registrations
/// freed, its sockets watched by wsgate's own epoll set) and comes back on
/// whatever happens next on either side: data, a half-close, a close, or
/// its idle timeout running out while it waits.
#[tokio::test(flavor = "multi_thread")]
async fn quiet_tunnels_are_parked_and_wake_for_anything_on_either_side() {
    let echo = switching_echo_backend().await;
    // Speaks first, once its tunnel is parked: wakes it from the backend's
    // side.
    let speak = Arc::new(tokio::sync::Notify::new());
    let told = speak.clone();
    let late = raw_backend(move |_head, mut stream| {
        let told = told.clone();
        async move {
            let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if stream.write_all(resp.as_bytes()).await.is_ok() {
                told.notified().await;
                let _ = stream.write_all(b"late").await;
                let _ = read_until_close(&mut stream, Duration::from_secs(10)).await;
            }
        }
    })
    .await;
    let gate = Wsgate::start(&format!(
        "LogLevel debug\nTimeout 9\nProxyPass /late ws://{late}/\nProxyPass / ws://{echo}/\n"
    ));
    let opened = Instant::now();
    let gate_addr = gate.addr;
    let switch = move |path: &'static str| async move {
        let mut s = TcpStream::connect(gate_addr).await.unwrap();
        s.write_all(ws_request(path, "websocket").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await.unwrap_or_default();
        assert_eq!(status_of(&head), 101, "{head}");
        s
    };
    let mut echoing = Vec::new();
    for _ in 0..40 {
        let mut s = switch("/e").await;
        s.write_all(b"a").await.unwrap();
        let mut a = [0u8; 1];
        tokio::time::timeout(T, s.read_exact(&mut a))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&a, b"a");
        echoing.push(s);
    }
    let mut half_closing = switch("/e").await;
    let mut timing_out = switch("/e").await;
    let timing_out_since = Instant::now();
    let mut woken_by_backend = switch("/late").await;
    assert!(
        opened.elapsed() < Duration::from_secs(1),
        "opening took too long"
    );

    // Parked 5 s after each one's last byte.
    let parked = gate.wait_log("tunnel parked", 43).await;
    assert!(
        opened.elapsed() < Duration::from_secs(7),
        "parking took until {:?}: {parked}",
        opened.elapsed()
    );
    // A reload leaves parked tunnels where they are.
    let conf = std::fs::read_to_string(&gate.conf).unwrap();
    gate.reload(&conf).await;
    // Client data wakes them; the echo comes back through the same tunnel.
    for (i, s) in echoing.iter_mut().enumerate() {
        s.write_all(b"again").await.unwrap();
        let mut again = [0u8; 5];
        let echoed = tokio::time::timeout(T, s.read_exact(&mut again)).await;
        assert!(
            matches!(echoed, Ok(Ok(_))) && &again == b"again",
            "parked tunnel {i} after waking: {echoed:?}"
        );
    }
    // A half-close reaches the backend, whose answer still comes back.
    half_closing.shutdown().await.unwrap();
    assert_eq!(
        read_to_close(&mut half_closing, T).await,
        "bye",
        "the backend saw the client's FIN and answered before closing"
    );
    // The backend speaks first.
    speak.notify_one();
    assert_eq!(read_exactly(&mut woken_by_backend, 4, T).await, "late");
    // Idle since it opened: Timeout 9 closes it while parked.
    assert_eq!(read_to_close(&mut timing_out, T).await, "");
    let idle = timing_out_since.elapsed();
    assert!(
        idle >= Duration::from_millis(8500) && idle < Duration::from_secs(11),
        "closed after {idle:?}, not at the 9 s idle timeout"
    );
    assert!(gate.stderr().matches("tunnel woken").count() >= 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_named_by_host_name_works_and_an_unknown_name_is_a_500() {
    let backend = ws_echo_backend().await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /named/ ws://localhost:{}/\nProxyPass /nowhere/ ws://nonexistent.invalid/\n",
        backend.port()
    ));
    // The first tunnel resolves the name; the others reuse its address.
    for i in 0..3 {
        let msg = format!("m{i}");
        assert_eq!(ws_roundtrip(&gate.url("/named/"), &msg).await, msg);
    }
    let got = raw_exchange(
        gate.addr,
        ws_request("/nowhere/", "websocket").as_bytes(),
        T,
    )
    .await;
    assert_eq!(
        status_of(&got),
        500,
        "as Apache answers a failed lookup: {got}"
    );
    let log = gate.stderr();
    assert!(
        log.contains("DNS lookup failure for: nonexistent.invalid"),
        "{log}"
    );
}
