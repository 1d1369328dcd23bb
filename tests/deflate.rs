//! mod_deflate's streams: a file too large to compress whole arrives as a
//! chunked gzip that holds it byte for byte, and a proxied answer the
//! backend is still writing reaches the client compressed as it comes
//! (flushed when the backend pauses), not after the backend ends. (Which
//! answers are compressed, and their heads, are compared with Apache in
//! the conformance suite's deflate groups.)

mod common;

use std::io::Read;
use std::time::Duration;

use common::{header_value, Wsgate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn gunzip_prefix(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut d = flate2::read::GzDecoder::new(data);
    let mut buf = [0u8; 4096];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Decodes a chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[tokio::test]
async fn a_large_file_streams_as_one_chunked_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("line {i} of a large text file\n").into_bytes())
        .collect();
    assert!(text.len() > 256 * 1024, "beyond what is compressed whole");
    std::fs::write(dir.path().join("big.txt"), &text).unwrap();
    let w = Wsgate::start(&format!(
        "DocumentRoot {}\nAddType text/plain .txt\nAddOutputFilterByType DEFLATE text/plain\n",
        dir.path().display()
    ));
    let answer = common::raw_exchange_bytes(
        w.addr,
        b"GET /big.txt HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&answer[..at]).into_owned();
    assert_eq!(
        header_value(&head, "content-encoding").as_deref(),
        Some("gzip"),
        "{head}"
    );
    assert_eq!(
        header_value(&head, "transfer-encoding").as_deref(),
        Some("chunked"),
        "{head}"
    );
    let gz = dechunk(&answer[at..]);
    assert!(
        gz.len() < text.len() / 3,
        "compressed: {} of {}",
        gz.len(),
        text.len()
    );
    assert_eq!(gunzip_prefix(&gz), text);
}

#[tokio::test]
async fn a_streamed_answer_is_compressed_as_it_comes() {
    let (more_tx, more_rx) = tokio::sync::oneshot::channel::<()>();
    let more_rx = std::sync::Mutex::new(Some(more_rx));
    let backend = common::raw_backend(move |_head: String, mut s: TcpStream| {
        let rx = more_rx.lock().unwrap().take();
        async move {
            let first = "first part of the stream, ".repeat(10);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                first.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            // The rest only once the client has seen the first part.
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            s.write_all(b"5\r\n-end-\r\n0\r\n\r\n").await.unwrap();
        }
    })
    .await;
    let w = Wsgate::start(&format!(
        "AddOutputFilterByType DEFLATE text/plain\nProxyPass /s http://127.0.0.1:{}/s\n",
        backend.port()
    ));
    let mut c = TcpStream::connect(w.addr).await.unwrap();
    c.write_all(
        b"GET /s HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let want = "first part of the stream, ".repeat(10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("the first part arrives while the backend waits")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let body = &got[at + 4..];
        // Chunks so far, then what they hold so far.
        let mut gz = Vec::new();
        let mut rest = body;
        while let Some(e) = rest.windows(2).position(|w| w == b"\r\n") {
            let Ok(size) =
                usize::from_str_radix(std::str::from_utf8(&rest[..e]).unwrap_or("x"), 16)
            else {
                break;
            };
            if rest.len() < e + 2 + size + 2 {
                break;
            }
            gz.extend_from_slice(&rest[e + 2..e + 2 + size]);
            rest = &rest[e + 2 + size + 2..];
        }
        if gunzip_prefix(&gz) == want.as_bytes() {
            break;
        }
    }
    more_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let whole = gunzip_prefix(&dechunk(&got[at..]));
    assert_eq!(whole, format!("{want}-end-").as_bytes());
    backend.finish().await;
}
