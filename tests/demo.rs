//! `wsgate demo`: the page and the echo through the proxy, with a WebSocket
//! client and in headless Chromium.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Demo {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let mut child = Command::new(WSGATE)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first line names the address the system gave it.
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the demo says where it listens");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    Demo { child, addr }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_the_page_and_echoes_through_the_proxy() {
    let demo = start_demo();
    let page = raw_exchange(
        demo.addr,
        b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("new WebSocket("), "{page}");
    let echo = ws_roundtrip(&format!("ws://{}/echo", demo.addr), "ping").await;
    assert_eq!(echo, "ping");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_echo_backend_answers_a_close_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;
    let demo = start_demo();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", demo.addr))
        .await
        .unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer to the close");
    match reply {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the close echoed with code 1000, got {other:?}"),
    }
}

#[test]
fn demo_page_shows_an_echo_in_headless_chromium() {
    if !require_program("chromium", "chromium") {
        return;
    }
    let demo = start_demo();
    let profile = tempfile::tempdir().unwrap();
    let mut last = String::new();
    // Chromium's first start on a fresh machine can be slow: a few tries.
    for _ in 0..3 {
        let out = Command::new("timeout")
            .args([
                "60",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=10000", "--dump-dom"])
            .arg(format!("http://{}/", demo.addr))
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains("<li>echo: hello from the browser</li>") {
            assert!(last.contains("<span id=\"state\">open</span>"), "{last}");
            return;
        }
    }
    panic!("the page never showed the echo; last DOM:\n{last}");
}
