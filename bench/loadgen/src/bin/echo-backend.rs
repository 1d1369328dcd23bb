//! The benchmark's backend: a WebSocket echo server written against the
//! frame format directly (no per-message allocation: frames are unmasked from
//! the read buffer into one reused write buffer, every complete frame of a
//! read answered with one write), which also answers any plain HTTP request
//! with a small keep-alive `200`.
//!
//! echo-backend [--listen 127.0.0.1:9001] [--threads 1]

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use wsgate_loadgen::rbuf::RBuf;
use wsgate_loadgen::ws;

const HTTP_BODY: &[u8] = b"hello, world\n";

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut threads = 1usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--listen" => listen = v.parse().expect("--listen ADDR"),
            "--threads" => threads = v.parse().expect("--threads N"),
            "-h" | "--help" => {
                println!("echo-backend [--listen 127.0.0.1:9001] [--threads 1]");
                return;
            }
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    let rt = wsgate_loadgen::runtime(threads).expect("runtime");
    rt.block_on(async move {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).unwrap();
        sock.bind(listen)
            .unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        let l = sock.listen(4096).expect("listen");
        eprintln!("echo-backend listening on {listen}");
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = conn(s).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off a little rather than spin.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    for line in text.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case(name) {
                return Some(v.trim());
            }
        }
    }
    None
}

async fn conn(mut s: TcpStream) -> io::Result<()> {
    let mut rb = RBuf::new(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // HTTP phase: answer requests (pipelined ones with one write) until an upgrade.
    loop {
        let mut close = false;
        while let Some(end) = ws::head_end(rb.avail()) {
            let head = &rb.avail()[..end];
            let http10 = head.windows(8).take(200).any(|w| w == b"HTTP/1.0");
            let upgrade = header(head, "upgrade")
                .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
            let conn_close =
                header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if upgrade {
                let key = header(head, "sec-websocket-key").unwrap_or("").to_string();
                rb.consume(end);
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Accept: {}\r\n\r\n",
                        ws::accept_for(&key)
                    )
                    .as_bytes(),
                );
                s.write_all(&out).await?;
                out.clear();
                return echo(s, rb, out).await;
            }
            let body: usize = header(head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if rb.len() < end + body {
                break; // wait for the body
            }
            rb.consume(end + body);
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ",
            );
            out.extend_from_slice(HTTP_BODY.len().to_string().as_bytes());
            if http10 || conn_close {
                out.extend_from_slice(b"\r\nConnection: close");
                close = true;
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(HTTP_BODY);
            if close {
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if close {
            return s.shutdown().await;
        }
        if rb.len() > 64 * 1024 {
            return Ok(()); // no head in 64 KiB: not a client of ours
        }
        if rb.fill(&mut s, 0).await? == 0 {
            return Ok(());
        }
    }
}

async fn echo(mut s: TcpStream, mut rb: RBuf, mut out: Vec<u8>) -> io::Result<()> {
    loop {
        let mut need = 0;
        let mut closing = false;
        while let Some(h) = ws::parse_header(rb.avail()) {
            if rb.len() < h.total() {
                need = h.total();
                break;
            }
            let op = h.opcode();
            let byte0 = match op {
                ws::OP_PING => 0x80 | ws::OP_PONG,
                _ => h.byte0,
            };
            if op != ws::OP_PONG {
                ws::push_header(&mut out, byte0, h.plen, None);
                let at = out.len();
                out.extend_from_slice(&rb.avail()[h.hlen..h.total()]);
                if let Some(m) = h.mask {
                    ws::apply_mask(&mut out[at..], m);
                }
            }
            rb.consume(h.total());
            if op == ws::OP_CLOSE {
                closing = true;
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
            if out.capacity() > 1 << 20 {
                out.shrink_to(64 * 1024);
            }
        }
        if closing {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            return s.shutdown().await;
        }
        if rb.fill(&mut s, need).await? == 0 {
            return Ok(());
        }
    }
}
