//! Liveness on both legs of a tunnel: `WsgateTCPUserTimeout` ends a tunnel
//! whose peer stopped taking bytes (its window shut for longer than the
//! timeout: what a frozen or unplugged peer looks like to the sender), and
//! `WsgateTCPKeepAlive` (or Apache's `keepalive=On`) arms the kernel's
//! keepalive timer on the proxy's sockets, read from `/proc/net/tcp`.
//!
//! Dropping a live peer's packets needs netfilter, which these tests do not
//! touch (the machine is shared); a peer that stops reading is seen the same
//! way by `TCP_USER_TIMEOUT` and can be made on loopback. A keepalive probe
//! on loopback is always answered, so for keepalive the tests check that
//! the timer runs with the configured idle time, on both legs.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{raw_backend, read_head, ws_request, Wsgate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Far longer than any wait here: a tunnel closed within the test was not
/// closed by the idle timeout.
const LONG_TIMEOUT: &str = "Timeout 600";

const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// A client socket with a small receive buffer, so that a peer sending to
/// it fills its window soon.
async fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Opens a tunnel through `proxy` to `/ws`, returning the client's socket
/// after the 101.
async fn open_tunnel(proxy: &Wsgate) -> TcpStream {
    let mut client = small_window_client(proxy.addr).await;
    client
        .write_all(ws_request("/ws", "websocket").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut client).await.expect("the 101");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
}

/// Writes `chunk` to `s` until a write fails (the peer closed or reset),
/// which must happen within `limit`.
async fn write_until_refused(s: &mut TcpStream, limit: Duration, what: &str) {
    let chunk = vec![b'x'; 64 * 1024];
    let flood = async { while s.write_all(&chunk).await.is_ok() {} };
    tokio::time::timeout(limit, flood)
        .await
        .unwrap_or_else(|_| panic!("{what}: the tunnel stayed open for {limit:?}"));
}

#[tokio::test]
async fn user_timeout_ends_a_tunnel_whose_client_stopped_reading() {
    let refused = Arc::new(AtomicBool::new(false));
    let seen = refused.clone();
    // The backend answers the handshake, then sends until it cannot.
    let backend = raw_backend(move |_, mut s| {
        let seen = seen.clone();
        async move {
            s.write_all(SWITCH).await.unwrap();
            write_until_refused(&mut s, Duration::from_secs(30), "backend").await;
            seen.store(true, Ordering::SeqCst);
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let proxy = Wsgate::start(&format!(
        "{LONG_TIMEOUT}\nLogLevel info\nProxyPass /ws ws://{backend}/\n\
         CustomLog {} \"%>s %{{wsgate-close}}n %{{wsgate-closed-by}}n\"\n\
         <IfModule wsgate_module>\nWsgateTCPUserTimeout client 1\n</IfModule>",
        access.display()
    ));
    // The client is alive (its kernel acknowledges) but never reads.
    let _client = open_tunnel(&proxy).await;
    proxy.wait_log("a peer stopped answering", 1).await;
    backend.finish().await;
    assert!(refused.load(Ordering::SeqCst), "the backend saw the close");
    assert_eq!(access_line(&access).await, "101 dead-peer client");
}

/// The first line of an access log, once written (lines are written off
/// the request path).
async fn access_line(path: &std::path::Path) -> String {
    let mut line = String::new();
    common::eventually(Duration::from_secs(10), "the access log line", || {
        line = std::fs::read_to_string(path).unwrap_or_default();
        line.ends_with('\n')
    })
    .await;
    line.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn user_timeout_ends_a_tunnel_whose_backend_stopped_reading() {
    // The backend answers the handshake, then holds its socket without
    // reading until the tunnel ends.
    let backend = raw_backend(|_, mut s| async move {
        s.write_all(SWITCH).await.unwrap();
        let mut one = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(40), s.peek(&mut one)).await;
        tokio::time::sleep(Duration::from_secs(40)).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let proxy = Wsgate::start(&format!(
        "{LONG_TIMEOUT}\nLogLevel info\nProxyPass /ws ws://{backend}/\n\
         CustomLog {} \"%>s %{{wsgate-close}}n %{{wsgate-closed-by}}n\"\n\
         <IfModule wsgate_module>\nWsgateTCPUserTimeout backend 1\n</IfModule>",
        access.display()
    ));
    let mut client = open_tunnel(&proxy).await;
    write_until_refused(&mut client, Duration::from_secs(30), "client").await;
    proxy.wait_log("a peer stopped answering", 1).await;
    assert_eq!(access_line(&access).await, "101 dead-peer backend");
}

/// A TCP socket's entry in `/proc/net/tcp`: which timer runs, and in how
/// many seconds it fires.
#[derive(Debug, Clone, Copy)]
struct TcpEntry {
    timer: u8,
    fires_in: Duration,
}

/// The entry of the socket with these local and remote addresses (IPv4).
fn tcp_entry(local: SocketAddr, remote: SocketAddr) -> Option<TcpEntry> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("IPv4 only"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f[1] != local || f[2] != remote {
            return None;
        }
        let (timer, when) = f[5].split_once(':')?;
        // Clock ticks of USER_HZ (100 a second).
        let ticks = u64::from_str_radix(when, 16).ok()?;
        Some(TcpEntry {
            timer: u8::from_str_radix(timer, 16).ok()?,
            fires_in: Duration::from_millis(ticks * 10),
        })
    })
}

/// The keepalive timer of the two sockets wsgate holds for a tunnel.
struct Legs {
    client: TcpEntry,
    backend: TcpEntry,
}

/// Opens a tunnel through a wsgate with `settings` and reads the timers
/// of wsgate's two sockets.
async fn legs(settings: &str, worker_params: &str) -> Legs {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let backend = raw_backend(move |_, mut s| {
        let peer = s.peer_addr().unwrap();
        let local = s.local_addr().unwrap();
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send((peer, local));
        }
        async move {
            s.write_all(SWITCH).await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
    })
    .await;
    let proxy = Wsgate::start(&format!(
        "{LONG_TIMEOUT}\nProxyPass /ws ws://{backend}/ {worker_params}\n\
         <IfModule wsgate_module>\n{settings}\n</IfModule>"
    ));
    let client = open_tunnel(&proxy).await;
    let (proxy_side, backend_addr) = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the backend was reached")
        .unwrap();
    let client_leg = tcp_entry(proxy.addr, client.local_addr().unwrap()).expect("client leg");
    let backend_leg = tcp_entry(proxy_side, backend_addr).expect("backend leg");
    drop(client);
    backend.finish().await;
    Legs {
        client: client_leg,
        backend: backend_leg,
    }
}

/// Linux's `TIMER_KEEPALIVE` in `/proc/net/tcp`'s `tr` column.
const KEEPALIVE_TIMER: u8 = 2;

#[tokio::test]
async fn keepalive_runs_on_both_legs_with_the_configured_idle_time() {
    let legs = legs("WsgateTCPKeepAlive 7 3 4", "").await;
    for (name, leg) in [("client", legs.client), ("backend", legs.backend)] {
        assert_eq!(leg.timer, KEEPALIVE_TIMER, "{name} leg: {leg:?}");
        assert!(
            leg.fires_in <= Duration::from_secs(7),
            "{name} leg: {leg:?}"
        );
    }
}

#[tokio::test]
async fn without_settings_no_keepalive_timer_runs() {
    let legs = legs("", "").await;
    assert_eq!(legs.client.timer, 0, "{:?}", legs.client);
    assert_eq!(legs.backend.timer, 0, "{:?}", legs.backend);
}

#[tokio::test]
async fn apache_keepalive_on_uses_the_systems_idle_time_on_the_backend_leg() {
    let system: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let legs = legs("", "keepalive=On").await;
    assert_eq!(legs.backend.timer, KEEPALIVE_TIMER, "{:?}", legs.backend);
    assert!(
        legs.backend.fires_in > Duration::from_secs(system.saturating_sub(60)),
        "the system's {system} s: {:?}",
        legs.backend
    );
    assert_eq!(legs.client.timer, 0, "keepalive=On is the backend's only");
}

#[tokio::test]
async fn a_side_word_sets_only_that_leg() {
    let legs = legs("WsgateTCPKeepAlive client 9 3 4", "").await;
    assert_eq!(legs.client.timer, KEEPALIVE_TIMER, "{:?}", legs.client);
    assert_eq!(legs.backend.timer, 0, "{:?}", legs.backend);
}
