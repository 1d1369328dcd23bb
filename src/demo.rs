//! `wsgate demo`: the proxy in front of two built-in backends (a page and a
//! WebSocket echo), configured through the same Apache-syntax parser as any
//! other configuration.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config;
use crate::proxy::server::Handle;

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>wsgate demo</title>
<style>
body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
#state { font-weight: bold; }
li { font-family: monospace; }
</style></head>
<body>
<h1>wsgate demo</h1>
<p>This page came through wsgate from a backend; the box below talks to a
WebSocket echo backend at <code>/echo</code>, tunnelled by wsgate.</p>
<p>WebSocket: <span id="state">connecting…</span></p>
<form id="form"><input id="text" value="hello from the browser" size="30">
<button>Send</button></form>
<ul id="log"></ul>
<script>
const log = document.getElementById("log");
const state = document.getElementById("state");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/echo");
ws.onopen = () => { state.textContent = "open"; ws.send("hello from the browser"); };
ws.onmessage = (e) => {
  const li = document.createElement("li");
  li.textContent = "echo: " + e.data;
  log.appendChild(li);
};
ws.onclose = () => { state.textContent = "closed"; };
ws.onerror = () => { state.textContent = "error"; };
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  ws.send(document.getElementById("text").value);
};
</script>
</body></html>
"#;

/// The configuration the demo runs, in Apache syntax.
pub fn config_text(listen: SocketAddr, page: SocketAddr, echo: SocketAddr) -> String {
    format!(
        "# wsgate demo: the proxy, a page backend and a WebSocket echo backend\n\
         Listen {listen}\n\
         ServerName demo.wsgate\n\
         ProxyPass /echo ws://{echo}/echo\n\
         ProxyPass / http://{page}/\n"
    )
}

pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let page_listener = TcpListener::bind("127.0.0.1:0").await?;
    let echo_listener = TcpListener::bind("127.0.0.1:0").await?;
    let page = page_listener.local_addr()?;
    let echo = echo_listener.local_addr()?;
    tokio::spawn(serve_page(page_listener));
    tokio::spawn(serve_echo(echo_listener));

    let text = config_text(listen, page, echo);
    let config = config::from_str(&text, "demo.conf")?;
    let handle = Handle::start(config).await?;
    // With port 0 the system chose one: say which.
    let listen = handle.local_addrs().first().copied().unwrap_or(listen);
    println!("wsgate demo is running. Open http://{listen}/ in a browser,");
    println!("or connect a WebSocket client to ws://{listen}/echo.");
    println!("The configuration it runs:\n");
    for line in text.lines() {
        println!("    {line}");
    }
    println!("\nPress Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    handle
        .shutdown(Some(std::time::Duration::from_secs(1)))
        .await;
    Ok(())
}

/// A minimal HTTP/1.1 server that answers every request with the page.
async fn serve_page(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(page_connection(stream));
    }
}

async fn page_connection(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut chunk = [0u8; 4096];
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return;
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let (status, body) = if head.starts_with("get ") || head.starts_with("head ") {
                ("200 OK", PAGE)
            } else {
                ("405 Method Not Allowed", "")
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{}",
                body.len(),
                if head.starts_with("head ") { "" } else { body }
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// A WebSocket server that sends every text or binary message back.
async fn serve_echo(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            // Reading on after a close frame sends the library's answer to
            // it (a browser then sees code 1000, not 1006) and ends when the
            // client closes the connection.
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}
