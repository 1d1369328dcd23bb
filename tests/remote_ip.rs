//! mod_remoteip's header and mod_proxy's ProxySourceAddress through the
//! real binary: a WebSocket whose X-Forwarded-For names its client is
//! logged, listed on the status page and forwarded with that client, and
//! backend connections come from the configured local address. What the
//! backend sees of plain requests, and the access log's %a and %{c}a, are
//! compared with Apache in tests/conformance/30-remoteip-proxy-extras.scn.

mod common;

use std::time::Duration;

use common::{eventually, raw_exchange, serve, ws_echo_backend, Wsgate};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_websocket_from_a_header_named_client_is_that_client_everywhere() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&format!(
        "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy 127.0.0.1 10.0.0.0/8\n\
         ProxyPass /server-status !\nProxyPass /ws/ ws://{backend}/ws/\n\
         <Location /server-status>\nSetHandler server-status\n</Location>\n\
         LogFormat \"%a %{{c}}a %{{remote}}p %U\" peers\nCustomLog {} peers\n",
        log.display()
    ));
    let mut request = w
        .url("/ws/chat")
        .replace("http", "ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", "198.51.100.7, 10.1.2.3".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(request))
        .await
        .expect("a handshake in time")
        .expect("the upgrade succeeds");
    ws.send(Message::text("hi")).await.unwrap();
    let echo = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo, Message::text("hi"));

    // The internal proxy presented 10.1.2.3, an internal proxy too, which
    // presented 198.51.100.7:
    // both taken, the field gone, the client appended as X-Forwarded-For.
    let head = backend.seen.last();
    assert!(
        head.contains("x-forwarded-for: 198.51.100.7\n"),
        "the backend's head: {head}"
    );

    let page = raw_exchange(
        w.addr,
        b"GET /server-status HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(
        page.contains("<tr><td>198.51.100.7:0</td>"),
        "the status page lists the tunnel's client: {page}"
    );

    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(T, ws.next()).await {}
    drop(ws);
    let path = log.clone();
    eventually(T, "the tunnel's log line", || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("/ws/chat")
    })
    .await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        lines.contains("198.51.100.7 127.0.0.1 0 /ws/chat"),
        "%a is the client named, %{{c}}a the peer: {lines}"
    );
    drop(w);
    backend.finish().await;
}

#[tokio::test]
async fn backend_connections_come_from_proxy_source_address() {
    // Every 127/8 address is the loopback's on Linux.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = serve(listener, |mut stream| async move {
        let peer = stream.peer_addr().unwrap().ip().to_string();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{peer}",
            peer.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    });
    let get = |w: &Wsgate, host: &'static str| {
        let addr = w.addr;
        async move {
            let req = format!("GET /p/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            raw_exchange(addr, req.as_bytes(), T).await
        }
    };
    let w = Wsgate::start(&format!(
        "ProxySourceAddress 127.0.0.2\nProxyPass /p/ http://{backend}/p/\n\
         <VirtualHost *:*>\nServerName own.test\nProxySourceAddress 127.0.0.3\n\
         ProxyPass /p/ http://{backend}/p/\n</VirtualHost>\n\
         <VirtualHost *:*>\nServerName inherits.test\nProxyPass /p/ http://{backend}/p/\n</VirtualHost>\n"
    ));
    let own = get(&w, "own.test").await;
    assert!(own.ends_with("\r\n\r\n127.0.0.3"), "{own}");
    let inherited = get(&w, "inherits.test").await;
    assert!(inherited.ends_with("\r\n\r\n127.0.0.2"), "{inherited}");
    drop(w);

    let unbound = Wsgate::start(&format!(
        "ProxySourceAddress 192.0.2.1\nProxyPass /p/ http://{backend}/p/\n"
    ));
    let refused = get(&unbound, "h.test").await;
    assert!(
        refused.starts_with("HTTP/1.1 503 "),
        "an address that is not this machine's cannot be bound: {refused}"
    );
    drop(unbound);
    backend.finish().await;
}
