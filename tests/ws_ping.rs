//! WebSocket liveness (`WsgateWebSocketPing EVERY WAIT`): a side of a
//! tunnel silent for EVERY gets a Ping at a frame boundary; one that sends
//! nothing back within WAIT is dead, and its tunnel closes (`dead-peer`,
//! by that side, in the log). Live peers — real WebSocket libraries that
//! answer Pings — keep their tunnels, parked ones included; a side that
//! talks is never pinged.

mod common;

use std::time::{Duration, Instant};

use common::{raw_backend, ws_echo_backend, Wsgate};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const HANDSHAKE: &[u8] = b"GET /ws/raw HTTP/1.1\r\nHost: h.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn config(backend: u16, ping: &str, log: &std::path::Path) -> String {
    format!(
        "ProxyPass /ws/ ws://127.0.0.1:{backend}/ws/\n\
         <IfModule wsgate_module>\n  WsgateWebSocketPing {ping}\n</IfModule>\n\
         CustomLog {} \"%U %{{wsgate-close}}n %{{wsgate-closed-by}}n\"\n",
        log.display()
    )
}

/// A client that completes the handshake and then never answers: what it
/// reads until wsgate closes the connection.
async fn silent_client(w: &Wsgate, limit: Duration) -> Vec<u8> {
    let mut c = TcpStream::connect(w.addr).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let head = common::read_head(&mut c).await.unwrap();
    assert_eq!(common::status_of(&head), 101, "{head}");
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}; read {got:?}"),
        }
    }
}

/// A client gone silent gets one Ping (a server's: unmasked, no payload),
/// and when nothing comes back its tunnel closes, the backend's too.
#[tokio::test]
async fn a_client_that_does_not_answer_its_ping_is_closed_as_dead() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&config(backend.port(), "300ms 300ms", &log));
    let got = silent_client(&w, Duration::from_secs(5)).await;
    // Its Ping, and the backend's answer to the backend's own Ping passed
    // on as an unsolicited Pong (RFC 6455 §5.5.3), then the close.
    assert_eq!(got, [0x89, 0x00, 0x8a, 0x00], "a Ping, a Pong, the close");
    let lines = common::file_with_lines(&log, 1).await;
    assert_eq!(lines, "/ws/raw dead-peer client\n");
    backend.finish().await;
}

/// A backend gone silent after its 101 gets a masked Ping, and its tunnel
/// closes when it does not answer; the client sees the connection end.
#[tokio::test]
async fn a_backend_that_does_not_answer_its_ping_is_closed_as_dead() {
    let backend = raw_backend(|_head, mut s: TcpStream| async move {
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
            .await;
        // Reads (the Ping arrives) and never answers.
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
        // One masked Ping, and the client's Pong passed on (masked as the
        // client sent it).
        assert_eq!(got.len(), 12, "a Ping and a Pong: {got:?}");
        assert_eq!(got[..2], [0x89, 0x80]);
        assert_eq!(got[6..], [0x8a, 0x80, 1, 2, 3, 4]);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&config(backend.port(), "300ms 300ms", &log));
    // The client talks to nobody but answers every Ping: it stays alive.
    let mut c = TcpStream::connect(w.addr).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let head = common::read_head(&mut c).await.unwrap();
    assert_eq!(common::status_of(&head), 101, "{head}");
    let mut buf = [0u8; 64];
    let mut pings = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                assert_eq!(&buf[..n], [0x89, 0x00], "a Ping");
                pings += 1;
                // A Pong, masked as a client's.
                c.write_all(&[0x8a, 0x80, 1, 2, 3, 4]).await.unwrap();
            }
            Err(_) => panic!("the tunnel outlived its dead backend"),
        }
    }
    assert!(pings >= 1);
    let lines = common::file_with_lines(&log, 1).await;
    assert_eq!(lines, "/ws/raw dead-peer backend\n");
    backend.finish().await;
}

/// Sides that talk more often than EVERY are never pinged: a client and
/// an echo backend exchanging a message every 100 ms for 3 s with pings
/// after 2 s of silence (a margin a loaded machine keeps).
#[tokio::test]
async fn a_side_that_talks_is_never_pinged() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&config(backend.port(), "2s 2s", &log));
    let (mut ws, _) = tokio_tungstenite::connect_async(w.url("/ws/talk"))
        .await
        .unwrap();
    for i in 0..30 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("m{i}")), "no Ping in between");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.close(None).await.unwrap();
    backend.finish().await;
}

/// Real WebSocket libraries answer Pings: a quiet client parked by wsgate
/// is woken when its Ping is due, answers, and its tunnel goes on; a silent
/// raw client next to it, parked too, is closed as dead.
#[tokio::test]
async fn parked_tunnels_are_woken_for_their_pings_and_live_ones_stay() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // Tunnels are parked after 5 s of quiet: a Ping after 6 s finds them
    // parked.
    let w = Wsgate::start(&config(backend.port(), "6 1", &log));
    let (mut ws, _) = tokio_tungstenite::connect_async(w.url("/ws/live"))
        .await
        .unwrap();
    let started = Instant::now();
    let silent = silent_client(&w, Duration::from_secs(15));
    let live = async {
        // tungstenite answers the Ping while reading, and shows it.
        let msg = tokio::time::timeout(Duration::from_secs(12), ws.next())
            .await
            .expect("a Ping within 12 s")
            .unwrap()
            .unwrap();
        assert!(matches!(msg, Message::Ping(_)), "{msg:?}");
        // Its Pong is queued by the read; an application reading on would
        // send it with its next read or write: send it now.
        ws.flush().await.unwrap();
        started.elapsed()
    };
    let (got, pinged_after) = tokio::join!(silent, live);
    assert_eq!(
        got,
        [0x89, 0x00, 0x8a, 0x00],
        "the silent client's Ping, and its backend's Pong passed on"
    );
    assert!(
        pinged_after >= Duration::from_secs(5),
        "pinged after {pinged_after:?}, before it could park"
    );
    // Its Pong went through: the tunnel still carries messages, past the
    // WAIT in which a dead peer is closed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ws.send(Message::text("still")).await.unwrap();
    // The backend's Pong to its own Ping comes through first.
    let mut echo = ws.next().await.unwrap().unwrap();
    while matches!(echo, Message::Pong(_) | Message::Ping(_)) {
        echo = ws.next().await.unwrap().unwrap();
    }
    assert_eq!(echo, Message::text("still"));
    let lines = common::file_with_lines(&log, 1).await;
    assert_eq!(lines, "/ws/raw dead-peer client\n");
    ws.close(None).await.unwrap();
    backend.finish().await;
}

/// A Ping never cuts into a frame: while the backend is in the middle of
/// a frame toward the client, the client's Ping waits for its end.
#[tokio::test]
async fn a_ping_waits_for_the_end_of_the_frame_in_flight() {
    let backend = raw_backend(|_head, mut s: TcpStream| async move {
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
            .await
            .unwrap();
        // A text frame "hello", of which "he" goes now.
        s.write_all(&[0x81, 0x05, b'h', b'e']).await.unwrap();
        // The rest once wsgate pings this backend (it has gone quiet).
        let mut ping = [0u8; 6];
        s.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping[..2], [0x89, 0x80], "a masked Ping");
        s.write_all(b"llo").await.unwrap();
        s.write_all(&[0x8a, 0x00]).await.unwrap();
        let mut sink = [0u8; 64];
        while let Ok(1..) = s.read(&mut sink).await {}
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&config(backend.port(), "300ms 1s", &log));
    let mut c = TcpStream::connect(w.addr).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let head = common::read_head(&mut c).await.unwrap();
    assert_eq!(common::status_of(&head), 101, "{head}");
    // The frame whole, then the backend's Pong and wsgate's Ping to this
    // client (in either order: each is a whole frame).
    let mut got = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("the frame and two control frames in time")
        .unwrap();
    assert_eq!(got[..7], [0x81, 0x05, b'h', b'e', b'l', b'l', b'o']);
    let mut control = [got[7..9].to_vec(), got[9..].to_vec()];
    control.sort();
    assert_eq!(control, [vec![0x89, 0x00], vec![0x8a, 0x00]]);
    drop(c);
    backend.finish().await;
}

/// The directive's errors name the line and say what to write.
#[test]
fn bad_ping_lines_are_configuration_errors() {
    for (line, want) in [
        ("WsgateWebSocketPing", "takes EVERY [WAIT], or Off"),
        ("WsgateWebSocketPing 0", "must be more than 0"),
        ("WsgateWebSocketPing 30 soon", "is not a time"),
        ("WsgateWebSocketPing 1 2 3", "takes EVERY [WAIT], or Off"),
    ] {
        let err = common::config_check(&format!("<IfModule wsgate_module>\n{line}\n</IfModule>\n"))
            .expect_err(line);
        assert!(err.contains(want), "{line}: {err}");
    }
    common::config_check("<Location /ws>\nWsgateWebSocketPing Off\n</Location>\n").unwrap();
}
