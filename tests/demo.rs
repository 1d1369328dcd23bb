//! `wsgate demo`: the page and the echo through the proxy, with a WebSocket
//! client and in headless Chromium.

mod common;

use std::time::Duration;

use common::*;

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
    let dom = chromium_dom_until(
        &format!("http://{}/", demo.addr),
        &[],
        "<li>echo: hello from the browser</li>",
    )
    .unwrap_or_else(|last| panic!("the page never showed the echo; last DOM:\n{last}"));
    assert!(dom.contains("<span id=\"state\">open</span>"), "{dom}");
}
