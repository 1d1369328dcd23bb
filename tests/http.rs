//! Plain HTTP proxying (mod_proxy_http) and hostile input, end to end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: front.test:8080\r\nConnection: close\r\n\r\n")
}

/// Reads a request body framed by Content-Length or chunked encoding.
async fn read_body(head: &str, stream: &mut TcpStream) -> Option<Vec<u8>> {
    if let Some(n) = header_value(head, "content-length") {
        let mut body = vec![0u8; n.parse().ok()?];
        stream.read_exact(&mut body).await.ok()?;
        return Some(body);
    }
    if header_value(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                let mut b = [0u8; 1];
                stream.read_exact(&mut b).await.ok()?;
                line.push(b[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).ok()?, 16)
                    .ok()?;
            let mut chunk = vec![0u8; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Vec::new())
}

/// A backend that answers each request with the size of the body it got.
async fn body_counting_backend() -> Backend {
    raw_backend(|head, mut stream| async move {
        let Some(body) = read_body(&head, &mut stream).await else {
            return;
        };
        let text = format!("got {} bytes", body.len());
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            )
            .await;
    })
    .await
}

/// A backend that sends `response` as is and closes.
async fn scripted(response: &'static [u8]) -> Backend {
    raw_backend(move |_, mut stream| async move {
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_head_follows_apaches_order_and_rules() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass /app/ http://{backend}/base/\n"));
    let got = raw_exchange(
        gate.addr,
        b"GET /app/x?q=1 HTTP/1.1\r\nHost: front.test:8080\r\nX-One: 1\r\nX-Forwarded-For: 10.9.9.9\r\nConnection: close, X-Drop\r\nX-Drop: gone\r\nTE: trailers\r\nKeep-Alive: 3\r\nX-Two: 2\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert_eq!(
        seen.last(),
        format!(
            "GET /base/x?q=1 HTTP/1.1\r\nHost: {backend}\r\nX-One: 1\r\nX-Forwarded-For: 10.9.9.9, 127.0.0.1\r\nX-Two: 2\r\nX-Forwarded-Host: front.test:8080\r\nX-Forwarded-Server: proxy.test\r\nConnection: Keep-Alive\r\n\r\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_and_add_headers_off() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!(
        "ProxyPreserveHost On\nProxyAddHeaders Off\nProxyPass / http://{backend}/\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET / HTTP/1.1\r\nHost: Example.TEST:8443\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200);
    let head = seen.last();
    assert!(head.contains("Host: Example.TEST:8443\r\n"), "{head}");
    assert!(!head.contains("X-Forwarded"), "{head}");
}

/// A TCP relay in front of `backend` that counts the connections made to it.
async fn counting_relay(backend: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = relay.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut b = TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
        }
    });
    (relay_addr, connections)
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_connections_are_reused_unless_disabled_or_too_old() {
    let backend = http_backend("b").await;
    let (pooled, pooled_count) = counting_relay(backend.addr).await;
    let (no_reuse, no_reuse_count) = counting_relay(backend.addr).await;
    let (short_ttl, short_ttl_count) = counting_relay(backend.addr).await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /p/ http://{pooled}/\nProxyPass /d/ http://{no_reuse}/ disablereuse=On\nProxyPass /t/ http://{short_ttl}/ ttl=1\n"
    ));
    for i in 0..5 {
        for prefix in ["p", "d"] {
            let got = raw_exchange(gate.addr, get(&format!("/{prefix}/{i}")).as_bytes(), T).await;
            assert!(got.ends_with(&format!("b /{i} body=0")), "{got}");
        }
    }
    assert_eq!(
        pooled_count.load(Ordering::SeqCst),
        1,
        "one pooled backend connection served all five"
    );
    assert_eq!(
        no_reuse_count.load(Ordering::SeqCst),
        5,
        "disablereuse=On: a connection per request"
    );
    for _ in 0..2 {
        let got = raw_exchange(gate.addr, get("/t/x").as_bytes(), T).await;
        assert_eq!(status_of(&got), 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(
        short_ttl_count.load(Ordering::SeqCst),
        2,
        "ttl=1: an idle connection older than 1 s is not reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn small_chunked_bodies_get_a_length_and_large_ones_stream_chunked() {
    let backend = body_counting_backend().await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/\n"));
    let got = raw_exchange(
        gate.addr,
        b"POST /s HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        T,
    )
    .await;
    assert!(got.ends_with("got 3 bytes"), "{got}");
    assert!(
        seen.last().contains("Content-Length: 3\r\n"),
        "CL+TE: chunked wins, sent with a length: {}",
        seen.last()
    );

    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(
        b"POST /l HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..40 {
        let chunk = vec![b'z'; 1000];
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let got = read_until_close(&mut s, T).await;
    assert!(got.ends_with("got 40000 bytes"), "{got}");
    assert!(
        seen.last().contains("Transfer-Encoding: chunked\r\n"),
        "{}",
        seen.last()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_leading_zeros_and_a_slow_body() {
    // CVE-2009-1890.
    let backend = body_counting_backend().await;
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/\n"));
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 0100000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    s.write_all(&vec![b'a'; 50_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&vec![b'b'; 50_000]).await.unwrap();
    let got = read_until_close(&mut s, T).await;
    assert!(got.ends_with("got 100000 bytes"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_framing_is_translated_for_the_client() {
    let chunked =
        scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .await;
    let until_close = scripted(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").await;
    let lf_only = scripted(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok").await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /c/ http://{chunked}/\nProxyPass /u/ http://{until_close}/\nProxyPass /l/ http://{lf_only}/\n"
    ));
    let got = raw_exchange(gate.addr, get("/c/").as_bytes(), T).await;
    assert!(
        got.contains("Transfer-Encoding: chunked\r\n") && got.ends_with("5\r\nhello\r\n0\r\n\r\n"),
        "{got}"
    );
    let got = raw_exchange(gate.addr, get("/u/").as_bytes(), T).await;
    assert!(
        got.contains("Transfer-Encoding: chunked\r\n")
            && got.ends_with("D\r\nuntil the end\r\n0\r\n\r\n"),
        "{got}"
    );
    let got = raw_exchange(gate.addr, b"GET /u/ HTTP/1.0\r\n\r\n", T).await;
    assert!(
        got.ends_with("\r\n\r\nuntil the end") && !got.contains("chunked"),
        "{got}"
    );
    let got = raw_exchange(gate.addr, get("/l/").as_bytes(), T).await;
    assert!(
        got.contains("X-A: b\r\n") && got.ends_with("\r\n\r\nok"),
        "LF-only heads are re-emitted with CRLF: {got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_failures_get_apaches_statuses() {
    let dead = DeadPort::new();
    let garbage = scripted(b"SSH-2.0-OpenSSH\r\n\r\n").await;
    let no_colon = scripted(b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n").await;
    let bare_cr = scripted(b"HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: 1\r\n\r\n").await;
    let http2 = scripted(b"HTTP/2.0 200 OK\r\n\r\n").await;
    let closes = scripted(b"").await;
    let silent = raw_backend(|_, mut stream| async move {
        // Says nothing; held until wsgate gives up on it.
        let _ = read_until_close(&mut stream, T).await;
    })
    .await;
    let ctl_reason = scripted(b"HTTP/1.1 200 O\rX-Evil: 1\r\nContent-Length: 0\r\n\r\n").await;
    let gate = Wsgate::start(&format!(
        "ProxyTimeout 1\nProxyPass /dead/ http://{dead}/\nProxyPass /garbage/ http://{garbage}/\n\
         ProxyPass /nocolon/ http://{no_colon}/\nProxyPass /barecr/ http://{bare_cr}/\nProxyPass /h2/ http://{http2}/\n\
         ProxyPass /closes/ http://{closes}/\nProxyPass /silent/ http://{silent}/\nProxyPass /reason/ http://{ctl_reason}/\n"
    ));
    let cases = [
        ("/dead/", "HTTP/1.1 503 Service Unavailable"),
        ("/garbage/", "HTTP/1.1 502 Bad Gateway"),
        ("/nocolon/", "HTTP/1.1 502 Bad Gateway"),
        ("/barecr/", "HTTP/1.1 500 Internal Server Error"),
        ("/h2/", "HTTP/1.1 502 Proxy Error"),
        ("/closes/", "HTTP/1.1 502 Proxy Error"),
        ("/silent/", "HTTP/1.1 502 Proxy Error"),
        ("/reason/", "HTTP/1.1 200 OK"),
    ];
    for (path, status_line) in cases {
        let got = raw_exchange(gate.addr, get(path).as_bytes(), T).await;
        assert!(
            got.starts_with(&format!("{status_line}\r\n")),
            "{path}: {got}"
        );
        assert!(
            !got.contains("X-Injected") && !got.contains("X-Evil"),
            "{path}: {got}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_reflect_nothing_from_the_request() {
    // CVE-2019-10092.
    let dead = DeadPort::new();
    let gate = Wsgate::start(&format!("ProxyPass /down/ http://{dead}/\n"));
    let got = raw_exchange(
        gate.addr,
        get("/down/%3Cscript%3Ealert(1)%3C/script%3E").as_bytes(),
        T,
    )
    .await;
    assert_eq!(status_of(&got), 503);
    assert!(!got.contains("script") && !got.contains("alert"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_4xx() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/\n"));
    let long = format!("GET /{} HTTP/1.1\r\nHost: f\r\n\r\n", "a".repeat(9000));
    let cases: Vec<(&[u8], u16)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: f\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET @evil/x HTTP/1.1\r\nHost: f\r\n\r\n", 400),
        (b"GET :@evil/x HTTP/1.1\r\nHost: f\r\n\r\n", 400),
        (b"GET /a%2Fb HTTP/1.1\r\nHost: f\r\n\r\n", 404),
        (b"GET /../etc HTTP/1.1\r\nHost: f\r\n\r\n", 400),
        (b"GET /%%32%65 HTTP/1.1\r\nHost: f\r\n\r\n", 400),
        (b"GET /a#b HTTP/1.1\r\nHost: f\r\n\r\n", 400),
        (b"get / http/1.1\r\nHost: f\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: f\r\nContent-Length: 1x\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            500,
        ),
        (b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: f\r\nMax-Forwards: 0\r\n\r\n", 400),
        (long.as_bytes(), 414),
    ];
    for (request, status) in cases {
        let got = raw_exchange(gate.addr, request, T).await;
        assert_eq!(
            status_of(&got),
            status,
            "{:?} -> {got}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(
        seen.all().is_empty(),
        "nothing reached the backend: {:?}",
        seen.all()
    );
    let got = raw_exchange(
        gate.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unread_body_after_an_error_closes_the_connection() {
    // CVE-2022-22720: the rest of the body must not be read as a request.
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass /ok/ http://{backend}/\n"));
    let got = raw_exchange(
        gate.addr,
        b"POST /nothing-here HTTP/1.1\r\nHost: f\r\nContent-Length: 100\r\n\r\n0123456789GET /ok/secret HTTP/1.1\r\nHost: f\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 404, "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "one answer only: {got}");
    assert!(seen.all().is_empty());
}

/// wsgate's own answers (404, a redirect, a refused target) honour the
/// client's wish to close, as Apache does, instead of waiting for the
/// keep-alive timeout; and keep the connection otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_answer_closes_when_the_client_asks() {
    let gate = Wsgate::start(
        "KeepAliveTimeout 60\nRewriteEngine on\nRewriteRule ^/moved$ /elsewhere [R=301]\n",
    );
    for request in [
        "GET /none HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        "GET /moved HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        "GET /none HTTP/1.0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(gate.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let got = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(matches!(status_of(&got), 404 | 301), "{request:?}: {got}");
        assert_eq!(
            header_value(&got, "connection").as_deref(),
            Some("close"),
            "{request:?}: {got}"
        );
    }
    // Without the wish, the connection serves a second request.
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /none HTTP/1.1\r\nHost: f\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await.expect("an answer");
        assert_eq!(status_of(&head), 404, "{head}");
        let len: usize = header_value(&head, "content-length")
            .unwrap()
            .parse()
            .unwrap();
        read_exactly(&mut s, len, Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn proxypassreverse_rewrites_redirects() {
    let redirect = raw_backend(|_, mut stream| async move {
        let addr = stream.local_addr().unwrap();
        let _ = stream
            .write_all(format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/next?x=1\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await;
    })
    .await;
    let gate = Wsgate::start(&format!(
        "ProxyPass /app/ http://{redirect}/\nProxyPassReverse /app/ http://{redirect}/\n"
    ));
    let got = raw_exchange(gate.addr, get("/app/").as_bytes(), T).await;
    assert!(
        got.contains("Location: http://front.test:8080/app/next?x=1\r\n"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_does_not_disturb_a_live_tunnel() {
    let ws = ws_echo_backend().await;
    let gate = Wsgate::start(&format!("ProxyPass /ws/ ws://{ws}/\n"));
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut live, _) = tokio_tungstenite::connect_async(gate.url("/ws/"))
        .await
        .unwrap();
    let junk: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: f\r\nConnection: ,,,;;;,Host,Upgrade,X-Forwarded-For\r\n\r\n".to_vec(),
        format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(5000)).into_bytes(),
        b"GET /ws/ HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\n".to_vec(),
        vec![b'A'; 100_000],
    ];
    for bytes in junk {
        let mut s = TcpStream::connect(gate.addr).await.unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let _ = read_until_close(&mut s, Duration::from_secs(2)).await;
        live.send(Message::Text("still here".into())).await.unwrap();
        let echo = tokio::time::timeout(T, live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_waits_for_the_backend_and_interim_responses_are_relayed() {
    let backend = raw_backend(|head, mut stream| async move {
        if header_value(&head, "expect").is_some() {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .unwrap();
        }
        let body = read_body(&head, &mut stream).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            .await
            .unwrap();
        let text = format!("got {} bytes", body.len());
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            )
            .await;
    })
    .await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/\n"));
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: f\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n").await.unwrap();
    let continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
    let first = read_exactly(&mut s, continue_line.len(), T).await;
    assert_eq!(
        first, continue_line,
        "the body is asked for only once the backend wants it"
    );
    assert!(
        seen.last().contains("Expect: 100-continue\r\n"),
        "{}",
        seen.last()
    );
    s.write_all(b"hello").await.unwrap();
    let rest = read_until_close(&mut s, T).await;
    assert!(rest.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\n"), "{rest}");
    assert!(rest.ends_with("got 5 bytes"), "{rest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_always_rules_work_on_their_own_table_that_goes_first() {
    // Apache keeps `always` headers in err_headers_out: they cannot touch
    // the backend's headers and are written before them.
    let backend =
        scripted(b"HTTP/1.1 200 OK\r\nX-B: from-backend\r\nContent-Length: 0\r\n\r\n").await;
    let gate = Wsgate::start(&format!(
        "Header always unset X-B\nHeader set X-C normal\nHeader always set X-C always\nProxyPass / http://{backend}/\n"
    ));
    let got = raw_exchange(gate.addr, get("/").as_bytes(), T).await;
    assert!(got.contains("X-B: from-backend\r\n"), "{got}");
    let always = got.find("X-C: always").expect("the always header");
    let normal = got.find("X-C: normal").expect("the onsuccess header");
    assert!(always < normal, "{got}");
}
