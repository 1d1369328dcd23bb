//! The differential harness: a recording backend, a raw client, Apache httpd
//! started per scenario group, a plain TCP forwarder (the negative control),
//! the scenario file reader and the comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- bytes

/// Printable form of bytes: ASCII kept, everything else escaped.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Shortened printable form for bodies and tunnel data.
pub fn preview(b: &[u8]) -> String {
    if b.len() <= 64 {
        show(b)
    } else {
        format!("{}...{}", show(&b[..48]), show(&b[b.len() - 8..]))
    }
}

/// `\r`, `\n`, `\t`, `\0`, `\\`, `\xNN`, `\s` (a space) and `\{N}` (N letters
/// `a`) in scenario text.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'0' => out.push(0),
                b's' => out.push(b' '),
                b'\\' => out.push(b'\\'),
                b'{' => {
                    // `\{N}`: N times the letter a (long lines and values).
                    let end = i + b[i..].iter().position(|&c| c == b'}').expect("\\{N}");
                    let n: usize = std::str::from_utf8(&b[i + 1..end])
                        .unwrap()
                        .parse()
                        .unwrap();
                    out.extend(std::iter::repeat_n(b'a', n));
                    i = end;
                }
                b'x' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).expect("\\xNN in a scenario"));
                    i += 2;
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn header_of<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    header_of_fields(lines.get(1..).unwrap_or_default(), name)
}

/// The value of field `name` among `Name: value` lines.
fn header_of_fields<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields.iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------- buffered connection

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    Done,
    Eof,
    Reset,
    Timeout,
}

pub struct Conn {
    pub io: Box<dyn Io>,
    pub buf: Vec<u8>,
}

impl Conn {
    pub fn new(io: impl Io + 'static) -> Conn {
        Conn {
            io: Box::new(io),
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer before `deadline`.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> End {
        let mut tmp = [0u8; 16384];
        match tokio::time::timeout_at(deadline, self.io.read(&mut tmp)).await {
            Err(_) => End::Timeout,
            Ok(Ok(0)) => End::Eof,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                End::Done
            }
            Ok(Err(_)) => End::Reset,
        }
    }

    /// A head up to and including its blank line; the rest stays buffered.
    pub async fn head(&mut self, limit: Duration) -> Result<Vec<u8>, End> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let rest = self.buf.split_off(i + 4);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            if self.buf.len() > 128 * 1024 {
                return Err(End::Done);
            }
            match self.fill(deadline).await {
                End::Done => {}
                e => return Err(e),
            }
        }
    }

    /// Up to `n` bytes (fewer when the peer closes or time runs out).
    pub async fn exact(&mut self, n: usize, limit: Duration) -> (Vec<u8>, End) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.buf.len() < n {
            match self.fill(deadline).await {
                End::Done => {}
                e => return (std::mem::take(&mut self.buf), e),
            }
        }
        let rest = self.buf.split_off(n);
        (std::mem::replace(&mut self.buf, rest), End::Done)
    }

    /// A chunked body, decoded.
    pub async fn chunked(&mut self, limit: Duration) -> (Vec<u8>, End) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    let rest = self.buf.split_off(i + 2);
                    break std::mem::replace(&mut self.buf, rest);
                }
                match self.fill(deadline).await {
                    End::Done => {}
                    e => return (body, e),
                }
            };
            let size_text = latin1(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or("");
            let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                return (body, End::Reset);
            };
            if size == 0 {
                // Trailer section up to the blank line.
                loop {
                    if self.buf.starts_with(b"\r\n") {
                        self.buf.drain(..2);
                        return (body, End::Done);
                    }
                    if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                        self.buf.drain(..i + 4);
                        return (body, End::Done);
                    }
                    match self.fill(deadline).await {
                        End::Done => {}
                        e => return (body, e),
                    }
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (data, end) = self.exact(size + 2, left).await;
            body.extend_from_slice(&data[..data.len().min(size)]);
            if end != End::Done {
                return (body, end);
            }
        }
    }

    /// Everything until the peer closes, or until `limit`.
    pub async fn until_close(&mut self, limit: Duration) -> (Vec<u8>, End) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.fill(deadline).await {
                End::Done => {}
                e => return (std::mem::take(&mut self.buf), e),
            }
        }
    }

    /// What arrives until nothing more came for `quiet` (or `limit` passed).
    pub async fn until_quiet(&mut self, quiet: Duration, limit: Duration) -> (Vec<u8>, End) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let q = (tokio::time::Instant::now() + quiet).min(deadline);
            match self.fill(q).await {
                End::Done => {}
                End::Timeout if !self.buf.is_empty() || tokio::time::Instant::now() >= deadline => {
                    return (std::mem::take(&mut self.buf), End::Timeout)
                }
                End::Timeout => {}
                e => return (std::mem::take(&mut self.buf), e),
            }
        }
    }

    pub async fn send(&mut self, b: &[u8]) -> bool {
        self.io.write_all(b).await.is_ok() && self.io.flush().await.is_ok()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- recording backend

/// One request as the backend saw it, and what followed on its connection.
#[derive(Clone, Debug)]
pub struct Record {
    pub tag: String,
    pub events: Vec<Ev>,
    /// The backend connection has ended: nothing more will be recorded.
    pub done: bool,
}

#[derive(Clone, Debug)]
pub enum Ev {
    Line(String),
    Data(Vec<u8>),
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Record>>>);

impl Log {
    fn open(&self, tag: &str, lines: Vec<String>) -> usize {
        let mut v = self.0.lock().unwrap();
        v.push(Record {
            tag: tag.to_string(),
            events: lines.into_iter().map(Ev::Line).collect(),
            done: false,
        });
        v.len() - 1
    }
    fn line(&self, i: usize, s: impl Into<String>) {
        self.0.lock().unwrap()[i].events.push(Ev::Line(s.into()));
    }
    /// Received tunnel bytes; consecutive reads are merged, so TCP
    /// segmentation never shows.
    fn data(&self, i: usize, b: &[u8]) {
        let mut v = self.0.lock().unwrap();
        let ev = &mut v[i].events;
        if let Some(Ev::Data(d)) = ev.last_mut() {
            d.extend_from_slice(b);
        } else {
            ev.push(Ev::Data(b.to_vec()));
        }
    }
    fn finish(&self, i: usize) {
        self.0.lock().unwrap()[i].done = true;
    }
    /// Whether every backend connection of `tag` has ended.
    pub fn settled(&self, tag: &str) -> bool {
        let v = self.0.lock().unwrap();
        v.iter().filter(|r| r.tag == tag).all(|r| r.done)
    }
    fn records(&self, tag: &str) -> Vec<Record> {
        let v = self.0.lock().unwrap();
        v.iter().filter(|r| r.tag == tag).cloned().collect()
    }
}

/// The transcript lines of every request that carried `tag`, from every
/// backend in `logs`.
pub fn backend_transcript(logs: &[&Log], tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = 0;
    for r in logs.iter().flat_map(|l| l.records(tag)) {
        n += 1;
        for e in &r.events {
            match e {
                Ev::Line(l) => out.push(format!("backend#{n}: {l}")),
                Ev::Data(d) => out.push(format!("backend#{n}: tunnel received \"{}\"", preview(d))),
            }
        }
    }
    if n == 0 {
        out.push("backend: nothing received".into());
    }
    out
}

pub struct Backend {
    pub addr: SocketAddr,
    pub log: Log,
}

/// Starts the recording backend; with `tls` it speaks TLS (for `wss://`).
pub async fn start_backend(tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let l2 = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let log = l2.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let conn = match tls {
                    Some(acc) => match acc.accept(s).await {
                        Ok(t) => Conn::new(t),
                        Err(_) => return,
                    },
                    None => Conn::new(s),
                };
                if let Some(i) = serve(conn, log.clone()).await {
                    log.finish(i);
                }
            });
        }
    });
    Backend { addr, log }
}

/// Serves one backend connection. The request header `X-Mode` picks the
/// behaviour; `X-Tag` files the record under its case. Returns the
/// record's index, once the connection is over.
async fn serve(c: Conn, log: Log) -> Option<usize> {
    let mut c = c;
    let Ok(head) = c.head(Duration::from_secs(30)).await else {
        return None;
    };
    let text = latin1(&head);
    let lines: Vec<String> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let tag = header_of(&lines, "x-tag").unwrap_or("untagged").to_string();
    let mode = header_of(&lines, "x-mode").unwrap_or("200").to_string();
    let upgrade = header_of(&lines, "upgrade").map(String::from);
    let key = header_of(&lines, "sec-websocket-key").map(String::from);
    let te = header_of(&lines, "transfer-encoding").map(|s| s.to_ascii_lowercase());
    let cl = header_of(&lines, "content-length").and_then(|v| v.parse::<usize>().ok());
    let expect =
        header_of(&lines, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let i = log.open(&tag, lines);
    let t = Duration::from_secs(5);
    if expect && cl.is_some_and(|n| n > 0) && mode != "noexpect" {
        // As an HTTP/1.1 server does: invite the body.
        let _ = c.send(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        log.line(i, "sent 100 Continue");
    }
    if te.as_deref().is_some_and(|v| v.contains("chunked")) {
        let (b, end) = c.chunked(t).await;
        log.line(
            i,
            format!(
                "body {} bytes, chunked \"{}\" {end:?}",
                b.len(),
                preview(&b)
            ),
        );
    } else if let Some(n) = cl {
        let (b, end) = c.exact(n, t).await;
        log.line(
            i,
            format!(
                "body {} bytes, content-length \"{}\" {end:?}",
                b.len(),
                preview(&b)
            ),
        );
    }
    if mode.starts_with("101") || mode == "ws" {
        tunnel(c, &log, i, &mode, upgrade, key).await;
        return Some(i);
    }
    let resp: Vec<u8> = match mode.as_str() {
        "close" => return Some(i),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok200("slow-200")
        }
        "103" => {
            let _ = c
                .send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
        }
        "100" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
        "426" => b"HTTP/1.1 426 X\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nContent-Length: 12\r\n\r\nneed upgrade".to_vec(),
        "426foo" => b"HTTP/1.1 426 X\r\nUpgrade: foo\r\nConnection: Upgrade, close\r\nContent-Length: 12\r\n\r\nneed upgrade".to_vec(),
        "clte" => b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n".to_vec(),
        "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        "fold" => b"HTTP/1.1 200 OK\r\nX-F: a\r\n  b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Sp:   v  \r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "204" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nConnection: close\r\n\r\n".to_vec(),
        "304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nConnection: close\r\n\r\n".to_vec(),
        "eof_body" => b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nbody-until-close".to_vec(),
        "short_body" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-some".to_vec(),
        "badstatus" => b"HTTP/1.1 2x0 Weird\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "badstatus2" => b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "h2status" => b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "barecr" => b"HTTP/1.1 200 OK\r\nX-Bad: a\rInjected: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "crreason" => b"HTTP/1.1 200 Fine\rInjected: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "nocolon" => b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "nul" => b"HTTP/1.1 200 OK\r\nX-N: a\0b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "hop" => b"HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\nTrailer: X\r\nProxy-Authenticate: z\r\nX-Keep: 2\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        "redirect" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{}/plain/next\r\nContent-Location: http://{}/plain/cl\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            header_of(&log_lines(&log, i), "host").unwrap_or(""),
            header_of(&log_lines(&log, i), "host").unwrap_or("")
        )
        .into_bytes(),
        // Answers for mod_deflate: text of a type it may compress, one
        // already encoded, one that forbids transforms, one with a Vary.
        "text" => text_answer("Content-Type: text/plain\r\nETag: \"t1\"\r\n", false),
        "htmlchunked" => text_answer("Content-Type: text/html; charset=utf-8\r\n", true),
        "json" => text_answer("Content-Type: application/json\r\n", false),
        "encoded" => text_answer("Content-Type: text/plain\r\nContent-Encoding: br\r\n", false),
        "notransform" => text_answer("Content-Type: text/plain\r\nCache-Control: no-transform\r\n", false),
        "vary" => text_answer("Content-Type: text/plain\r\nVary: Cookie\r\n", false),
        "server" => b"HTTP/1.1 200 OK\r\nServer: backend/1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        "status500" => b"HTTP/1.1 500 Backend Broke\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops".to_vec(),
        "status404" => b"HTTP/1.1 404 Gone Away\r\nContent-Type: text/plain\r\nX-Backend: 1\r\nContent-Length: 7\r\nConnection: close\r\n\r\nmissing".to_vec(),
        // Cookies for ProxyPassReverseCookiePath and -Domain.
        "cookies" => b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/app/x; Domain=backend.internal\r\nSet-Cookie: b=2; path=/other; domain=BACKEND.Internal.example\r\nSet-Cookie: c=3; Domain=elsewhere; Path=/app\r\nSet-Cookie: d=4;path=/app/;  domain=backend.internal ;HttpOnly\r\nSet-Cookie: path=/app/y; e=5\r\nSet-Cookie: f=6; Path=/App/; Path=/other\r\nSet-Cookie: h=8; Path=/other; Path=/App/x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
        // Three 6000-byte fields: one HTTP/2 header block beyond the
        // default 16 KiB frame (CONTINUATION), each field under Apache's
        // 8190-byte line limit.
        "bigfields" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for n in 1..=3 {
                r.extend_from_slice(format!("X-Big-{n}: {}\r\n", "b".repeat(6000)).as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 2\r\nConnection: close\r\n\r\nok");
            r
        }
        _ => ok200("body-200"),
    };
    let _ = c.send(&resp).await;
    // Every answer ends its connection (`Connection: close`), so that no
    // case depends on which pooled backend connection a proxy picks.
    let _ = c.io.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Some(i)
}

/// A 200 with `fields` and a body of repeated text, by length or chunked.
fn text_answer(fields: &str, chunked: bool) -> Vec<u8> {
    let body = "the quick brown fox jumps over the lazy dog; ".repeat(20);
    let mut r = format!("HTTP/1.1 200 OK\r\n{fields}Connection: close\r\n").into_bytes();
    if chunked {
        r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for part in [&body[..400], &body[400..]] {
            r.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
        }
        r.extend_from_slice(b"0\r\n\r\n");
    } else {
        r.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }
    r
}

fn log_lines(log: &Log, i: usize) -> Vec<String> {
    log.0.lock().unwrap()[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Line(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn ok200(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nX-Back: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers 101 (in the way `mode` says) and then echoes: raw bytes, or
/// WebSocket frames for mode `ws`. `CLOSE` from the client makes the backend
/// half-close first; on EOF it sends `bye-after-eof` (to show whether a
/// half-close passes) and closes.
async fn tunnel(
    mut c: Conn,
    log: &Log,
    i: usize,
    mode: &str,
    up: Option<String>,
    key: Option<String>,
) {
    let up = up.unwrap_or_else(|| "websocket".into());
    let accept = key
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
        .unwrap_or_else(|| "none".into());
    // A WebSocket server (mode `ws`) picks the first subprotocol offered.
    let protocol = header_of(&log_lines(log, i), "sec-websocket-protocol")
        .and_then(|p| p.split(',').next())
        .map(|p| format!("Sec-WebSocket-Protocol: {}\r\n", p.trim()))
        .filter(|_| mode == "ws")
        .unwrap_or_default();
    let head = match mode {
        "101wrong" => format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
        "101badaccept" => format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {up}\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBhY2NlcHQ=\r\n\r\n"),
        "101noup" => format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
        "101hop" => format!("HTTP/1.1 101 Yes Switch\r\nSet-Cookie: a=1\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\nTE: x\r\nTrailer: y\r\nProxy-Authenticate: z\r\nSet-Cookie: b=2\r\nUpgrade: {up}\r\nKeep-Alive: timeout=5\r\nX-Back: 1\r\n\r\n"),
        "101then" => format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {up}\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\nSERVER-FIRST"),
        _ => format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {up}\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}X-Back: 1\r\n\r\n"),
    };
    if !c.send(head.as_bytes()).await {
        log.line(i, "could not send 101");
        return;
    }
    if mode == "ws" {
        return ws_echo(c, log, i).await;
    }
    let mut tmp = [0u8; 16384];
    let mut pending = std::mem::take(&mut c.buf);
    let mut seen = Vec::new();
    loop {
        let n = if !pending.is_empty() {
            let n = pending.len();
            tmp[..n].copy_from_slice(&pending);
            pending.clear();
            n
        } else {
            match tokio::time::timeout(Duration::from_secs(15), c.io.read(&mut tmp)).await {
                Err(_) => {
                    log.line(i, "tunnel idle 15 s");
                    return;
                }
                Ok(Err(_)) => {
                    log.line(i, "tunnel reset by proxy");
                    return;
                }
                Ok(Ok(0)) => {
                    log.line(i, "EOF from proxy");
                    let _ = c.send(b"bye-after-eof").await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
                Ok(Ok(n)) => n,
            }
        };
        log.data(i, &tmp[..n]);
        seen.extend_from_slice(&tmp[..n]);
        if seen.ends_with(b"CLOSE") {
            log.line(i, "backend half-closes");
            let _ = c.io.shutdown().await;
            loop {
                match tokio::time::timeout(Duration::from_secs(10), c.io.read(&mut tmp)).await {
                    Ok(Ok(0)) => {
                        log.line(i, "EOF from proxy after own FIN");
                        return;
                    }
                    Ok(Ok(n)) => log.data(i, &tmp[..n]),
                    Ok(Err(_)) => {
                        log.line(i, "reset after own FIN");
                        return;
                    }
                    Err(_) => {
                        log.line(i, "no EOF 10 s after own FIN");
                        return;
                    }
                }
            }
        }
        if !c.send(&tmp[..n]).await {
            log.line(i, "echo write failed");
            return;
        }
    }
}

/// Echoes WebSocket frames as a WebSocket server does (unmasked replies;
/// a close frame is answered and ends the connection).
async fn ws_echo(mut c: Conn, log: &Log, i: usize) {
    loop {
        match read_frame(&mut c, Duration::from_secs(15)).await {
            None => {
                log.line(i, "ws: connection ended without close frame");
                return;
            }
            Some((opcode, payload)) => {
                log.line(
                    i,
                    format!("ws: frame opcode {opcode} \"{}\"", preview(&payload)),
                );
                let _ = c.send(&frame(opcode, &payload, None)).await;
                if opcode == 8 {
                    let _ = c.io.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// One WebSocket frame (masked when `mask` is given).
pub fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        f.push(m | payload.len() as u8);
    } else {
        f.push(m | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(j, b)| b ^ k[j % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// Reads one frame: (opcode, unmasked payload).
pub async fn read_frame(c: &mut Conn, limit: Duration) -> Option<(u8, Vec<u8>)> {
    let (h, e) = c.exact(2, limit).await;
    if e != End::Done {
        return None;
    }
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as usize;
    if len == 126 {
        let (l, _) = c.exact(2, limit).await;
        len = u16::from_be_bytes([*l.first()?, *l.get(1)?]) as usize;
    } else if len == 127 {
        let (l, _) = c.exact(8, limit).await;
        len = u64::from_be_bytes(l.try_into().ok()?) as usize;
    }
    let key = if masked {
        let (k, _) = c.exact(4, limit).await;
        Some(<[u8; 4]>::try_from(k).ok()?)
    } else {
        None
    };
    let (mut p, e) = c.exact(len, limit).await;
    if e != End::Done {
        return None;
    }
    if let Some(k) = key {
        p.iter_mut().enumerate().for_each(|(j, b)| *b ^= k[j % 4]);
    }
    Some((opcode, p))
}

// ---------------------------------------------------------------- scenarios

#[derive(Clone, Debug)]
pub enum Step {
    /// Read a response (interim ones included) and its body.
    Resp(Duration),
    /// Read whatever arrives until quiet.
    Raw,
    /// Read one response head only (an interim `100 Continue`).
    Head,
    Send(Vec<u8>),
    /// Read as many bytes as the last `send` had, or `n`.
    Echo(Option<usize>),
    ShutWr,
    /// Wait up to the first duration for EOF; with a second, record
    /// whether it came before that.
    Eof(Duration, Option<Duration>),
    /// Whether the connection closes within a second.
    Closed,
    Sleep(Duration),
    /// Send the case's second request.
    Second,
    /// Close the connection, open a new one and send the case's request
    /// again, or with `true` its second request (several requests in
    /// sequence, e.g. through a balancer).
    Again(bool),
    /// Send a masked WebSocket text frame; read one frame.
    WsSend(Vec<u8>),
    WsRead,
    WsClose,
}

#[derive(Clone, Debug)]
pub struct Deliberate {
    pub reason: String,
    pub apache: Vec<regex::Regex>,
    pub wsgate: Vec<regex::Regex>,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub group: String,
    pub name: String,
    pub file: String,
    pub line: usize,
    pub request: Vec<u8>,
    pub second: Option<Vec<u8>>,
    pub steps: Vec<Step>,
    pub deliberate: Option<Deliberate>,
    pub method: String,
    /// `tls NAME` (SNI) or `tls -` (no SNI): the client speaks TLS.
    pub tls: Option<Option<String>>,
    /// `h2`: the request goes as an HTTP/2 stream instead of `request`.
    pub h2: Option<H2Request>,
    /// `identity`: the `Server` field and an error page's signature line
    /// are compared too (lines marked [`IDENTITY_MARK`]).
    pub identity: bool,
}

/// A case's request as an HTTP/2 client sends it (keyword `h2`).
#[derive(Clone, Debug)]
pub struct H2Request {
    pub method: String,
    pub target: String,
    pub authority: String,
    /// `:protocol` of an RFC 8441 extended CONNECT (keyword `ws`).
    pub protocol: Option<String>,
    /// Lower-cased names, in the case's order; `{tag}` still to replace.
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Request fields an HTTP/2 request cannot carry (RFC 9113 §8.2.2, the h2
/// crate refuses to send them), and `host`, which becomes `:authority`.
const NOT_IN_H2: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub file: String,
    pub config: String,
    pub tls: bool,
    /// Some case speaks HTTP/2 (loads mod_http2 in Apache).
    pub h2: bool,
    /// `log FORMAT`: each server writes an access log in this format, and
    /// each case's transcript ends with its line.
    pub log: Option<String>,
    /// `modules NAME...`: more Apache modules the snippet needs.
    pub modules: Vec<&'static str>,
    /// `htpasswd FLAG USER PASSWORD`: users of the group's password file
    /// (`@HTPASSWD@`), each hashed by the real `htpasswd` with FLAG.
    pub users: Vec<[String; 3]>,
    pub cases: Vec<Case>,
}

impl Group {
    /// The Apache modules this group needs beyond the usual ones.
    pub fn extra_modules(&self) -> Vec<&'static str> {
        let mut modules = Vec::new();
        if self.tls {
            modules.extend(["socache_shmcb", "ssl"]);
        }
        if self.h2 {
            modules.push("http2");
        }
        modules.extend(&self.modules);
        modules
    }
}

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Request under construction from the scenario's lines.
#[derive(Default)]
struct ReqBuilder {
    line: Option<String>,
    host: Option<Option<String>>,
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
    raw: Option<Vec<u8>>,
    /// The body's bytes without HTTP/1 framing (for `h2`).
    payload: Vec<u8>,
    /// `ws [VALUE]`: the upgrade asked for.
    ws: Option<String>,
    h2: bool,
}

impl ReqBuilder {
    /// The same request as an HTTP/2 client sends it: the request line's
    /// method and target, the host as `:authority`, the fields lower-cased
    /// without those HTTP/2 forbids, the body as DATA; a `ws` case becomes
    /// an RFC 8441 extended CONNECT (no Sec-WebSocket-Key there, §5).
    fn h2_request(&self, at: &str) -> H2Request {
        assert!(self.raw.is_none(), "{at}: `raw` is HTTP/1 only, not for h2");
        let line = self.line.as_deref().expect("a `req` line");
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let authority = match &self.host {
            None => "h.test".to_string(),
            Some(Some(h)) => h.clone(),
            Some(None) => panic!("{at}: an h2 case needs a host (its :authority)"),
        };
        let mut fields = vec![("x-tag".to_string(), b"{tag}".to_vec())];
        for h in &self.headers {
            let i = h.iter().position(|&b| b == b':').expect("Name: value");
            let name = latin1(&h[..i]).trim().to_ascii_lowercase();
            let value = h[i + 1..].trim_ascii().to_vec();
            let forbidden = NOT_IN_H2.contains(&name.as_str())
                || (name == "te" && !value.eq_ignore_ascii_case(b"trailers"))
                || (self.ws.is_some() && name == "sec-websocket-key");
            if !forbidden {
                fields.push((name, value));
            }
        }
        H2Request {
            method: if self.ws.is_some() {
                "CONNECT".into()
            } else {
                method
            },
            target,
            authority,
            protocol: self.ws.clone(),
            fields,
            body: self.payload.clone(),
        }
    }

    fn build(self) -> Vec<u8> {
        if let Some(raw) = self.raw {
            return raw;
        }
        let mut out = Vec::new();
        out.extend_from_slice(self.line.expect("a `req` line").as_bytes());
        out.extend_from_slice(b"\r\n");
        match self.host {
            None => out.extend_from_slice(b"Host: h.test\r\n"),
            Some(Some(h)) => out.extend_from_slice(format!("Host: {h}\r\n").as_bytes()),
            Some(None) => {}
        }
        out.extend_from_slice(b"X-Tag: {tag}\r\n");
        for h in self.headers {
            out.extend_from_slice(&h);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn parse_step(s: &str) -> Step {
    let (name, arg) = s.split_once(':').unwrap_or((s, ""));
    let secs = |a: &str| Duration::from_secs_f64(a.parse::<f64>().expect("seconds"));
    match name {
        "resp" if arg.is_empty() => Step::Resp(Duration::from_secs(4)),
        "resp" => Step::Resp(secs(arg)),
        "raw" => Step::Raw,
        "head" => Step::Head,
        "send" => Step::Send(unescape(arg)),
        "echo" if arg.is_empty() => Step::Echo(None),
        "echo" => Step::Echo(Some(arg.parse().unwrap())),
        "shutwr" => Step::ShutWr,
        "eof" => match arg.split_once(':') {
            Some((a, b)) => Step::Eof(secs(a), Some(secs(b))),
            None => Step::Eof(secs(if arg.is_empty() { "3" } else { arg }), None),
        },
        "closed" => Step::Closed,
        "sleep" => Step::Sleep(secs(arg)),
        "second" => Step::Second,
        "again" if arg.is_empty() => Step::Again(false),
        "again" if arg == "second" => Step::Again(true),
        "wssend" => Step::WsSend(unescape(arg)),
        "wsread" => Step::WsRead,
        "wsclose" => Step::WsClose,
        _ => panic!("unknown step {s:?}"),
    }
}

/// Reads one scenario file (format described in tests/conformance/README.md).
pub fn parse_file(path: &Path) -> Vec<Group> {
    let text = std::fs::read_to_string(path).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let mut groups: Vec<Group> = Vec::new();
    let mut in_config = false;
    let mut req: Option<ReqBuilder> = None;
    let mut case: Option<Case> = None;

    fn finish(groups: &mut [Group], case: &mut Option<Case>, req: &mut Option<ReqBuilder>) {
        if let Some(mut c) = case.take() {
            let r = req.take().unwrap_or_default();
            if r.h2 {
                let at = format!("{}:{}", c.file, c.line);
                assert!(
                    matches!(c.tls, Some(Some(_))),
                    "{at}: `h2` needs `tls NAME` (ALPN on TLS, with SNI)"
                );
                c.h2 = Some(r.h2_request(&at));
                let steps_ok = match c.steps.split_first() {
                    None => true,
                    Some((Step::Resp(_), rest)) => rest.iter().all(|s| {
                        matches!(
                            s,
                            Step::Send(_)
                                | Step::Echo(_)
                                | Step::ShutWr
                                | Step::Eof(..)
                                | Step::Sleep(_)
                                | Step::WsSend(_)
                                | Step::WsRead
                                | Step::WsClose
                        )
                    }),
                    Some(_) => false,
                };
                assert!(
                    steps_ok,
                    "{at}: an h2 case's steps are `resp`, then only steps on the stream's bytes (send, echo, shutwr, eof, sleep, wssend, wsread, wsclose)"
                );
            }
            c.request = r.build();
            c.method = String::from_utf8_lossy(&c.request)
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string();
            if c.steps.is_empty() {
                c.steps.push(Step::Resp(Duration::from_secs(4)));
            }
            groups.last_mut().expect("case before group").cases.push(c);
        }
    }

    for (n, raw_line) in text.lines().enumerate() {
        let line_no = n + 1;
        if in_config {
            if raw_line.trim() == "end" {
                in_config = false;
            } else {
                let g = groups.last_mut().unwrap();
                g.config.push_str(raw_line.trim_start());
                g.config.push('\n');
            }
            continue;
        }
        let l = raw_line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (kw, rest) = l.split_once(' ').unwrap_or((l, ""));
        let rest = rest.trim();
        match kw {
            "group" => {
                finish(&mut groups, &mut case, &mut req);
                groups.push(Group {
                    name: rest.to_string(),
                    file: file.clone(),
                    config: String::new(),
                    tls: false,
                    h2: false,
                    log: None,
                    modules: Vec::new(),
                    users: Vec::new(),
                    cases: Vec::new(),
                });
            }
            "log" => groups.last_mut().unwrap().log = Some(rest.to_string()),
            // Both load mod_ssl in Apache: TLS toward the TLS backend, and
            // TLS virtual hosts in the snippet (SSLEngine on).
            "tls-backend" | "tls-front" => groups.last_mut().unwrap().tls = true,
            "config" => in_config = true,
            "modules" => {
                for m in rest.split_whitespace() {
                    let m = match m {
                        "authz_host" => "authz_host",
                        "status" => "status",
                        "setenvif" => "setenvif",
                        "headers" => "headers",
                        "deflate" => "deflate",
                        "filter" => "filter",
                        "alias" => "alias",
                        "dir" => "dir",
                        "mime" => "mime",
                        "autoindex" => "autoindex",
                        "access_compat" => "access_compat",
                        "auth_basic" => "auth_basic",
                        "authn_core" => "authn_core",
                        "authn_file" => "authn_file",
                        "authz_user" => "authz_user",
                        "reqtimeout" => "reqtimeout",
                        "remoteip" => "remoteip",
                        "negotiation" => "negotiation",
                        "cgid" => "cgid",
                        "unique_id" => "unique_id",
                        other => panic!(
                            "{file}:{line_no}: modules: {other} is not one the harness knows"
                        ),
                    };
                    groups.last_mut().unwrap().modules.push(m);
                }
            }
            "htpasswd" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [flag, user, password] = words[..] else {
                    panic!("{file}:{line_no}: htpasswd FLAG USER PASSWORD");
                };
                assert!(
                    ["-B", "-m", "-s", "-d", "-2", "-5", "-p"].contains(&flag),
                    "{file}:{line_no}: htpasswd: {flag} is not one of htpasswd's hash flags"
                );
                groups
                    .last_mut()
                    .unwrap()
                    .users
                    .push([flag, user, password].map(String::from));
            }
            "case" => {
                finish(&mut groups, &mut case, &mut req);
                case = Some(Case {
                    group: groups.last().expect("group first").name.clone(),
                    name: rest.split_whitespace().next().unwrap().to_string(),
                    file: file.clone(),
                    line: line_no,
                    request: Vec::new(),
                    second: None,
                    steps: Vec::new(),
                    deliberate: None,
                    method: String::new(),
                    tls: None,
                    h2: None,
                    identity: false,
                });
                req = Some(ReqBuilder::default());
            }
            _ => {
                let c = case
                    .as_mut()
                    .unwrap_or_else(|| panic!("{file}:{line_no}: outside a case"));
                let r = req.as_mut().unwrap();
                match kw {
                    "req" => {
                        let mut parts: Vec<&str> = rest.split(' ').collect();
                        if parts.len() == 2 {
                            parts.push("HTTP/1.1");
                        }
                        r.line = Some(String::from_utf8(unescape(&parts.join(" "))).unwrap());
                    }
                    "host" => r.host = Some(Some(rest.to_string())),
                    "nohost" => r.host = Some(None),
                    "tls" => {
                        c.tls = Some(match rest {
                            "-" => None,
                            name => Some(name.to_string()),
                        })
                    }
                    "h2" => {
                        r.h2 = true;
                        groups.last_mut().unwrap().h2 = true;
                    }
                    "h" => r.headers.push(unescape(rest)),
                    "mode" => r.headers.push(format!("X-Mode: {rest}").into_bytes()),
                    "ws" => {
                        let mut it = rest.splitn(2, ' ');
                        let up = it.next().filter(|s| !s.is_empty()).unwrap_or("websocket");
                        let conn = it.next().unwrap_or("Upgrade");
                        r.ws = Some(up.to_string());
                        r.headers.push(format!("Upgrade: {up}").into_bytes());
                        r.headers.push(format!("Connection: {conn}").into_bytes());
                        r.headers
                            .push(format!("Sec-WebSocket-Key: {WS_KEY}").into_bytes());
                        r.headers.push(b"Sec-WebSocket-Version: 13".to_vec());
                    }
                    "body" => {
                        r.body.extend_from_slice(&unescape(rest));
                        r.payload.extend_from_slice(&unescape(rest));
                    }
                    "chunked" => {
                        let size: usize = rest.parse().unwrap();
                        let data = vec![b'a'; size];
                        for part in data.chunks(7000) {
                            r.body
                                .extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                            r.body.extend_from_slice(part);
                            r.body.extend_from_slice(b"\r\n");
                        }
                        r.body.extend_from_slice(b"0\r\n\r\n");
                        r.payload.extend_from_slice(&data);
                    }
                    "raw" => r.raw = Some(unescape(rest)),
                    "identity" => c.identity = true,
                    "second" => c.second = Some(unescape(rest)),
                    "steps" => c.steps = rest.split_whitespace().map(parse_step).collect(),
                    "deliberate" => {
                        c.deliberate = Some(Deliberate {
                            reason: rest.to_string(),
                            apache: Vec::new(),
                            wsgate: Vec::new(),
                        })
                    }
                    "apache-has" | "wsgate-has" => {
                        let d = c.deliberate.as_mut().unwrap_or_else(|| {
                            panic!("{file}:{line_no}: {kw} needs a `deliberate` line first")
                        });
                        let re = regex::Regex::new(&format!("(?m){rest}"))
                            .unwrap_or_else(|e| panic!("{file}:{line_no}: {e}"));
                        if kw == "apache-has" {
                            d.apache.push(re)
                        } else {
                            d.wsgate.push(re)
                        }
                    }
                    _ => panic!("{file}:{line_no}: unknown keyword {kw:?}"),
                }
            }
        }
    }
    finish(&mut groups, &mut case, &mut req);
    groups
}

// ---------------------------------------------------------------- client

/// A client connection to `addr`: over TLS when the case says (no
/// certificate check: both servers present the same test certificates).
async fn connect(addr: SocketAddr, case: &Case) -> Result<Conn, String> {
    let Some(sni) = &case.tls else {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("client: connect failed: {e}"))?;
        return Ok(Conn::new(s));
    };
    Ok(Conn::new(connect_tls(addr, sni.as_deref(), &[]).await?))
}

/// A TLS connection to `addr` with SNI `sni` (none without), offering the
/// ALPN protocols `alpn` (none when empty).
async fn connect_tls(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("client: connect failed: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCertificate))
    .with_no_client_auth();
    config.enable_sni = sni.is_some();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name =
        rustls::pki_types::ServerName::try_from(sni.unwrap_or("unnamed.test").to_string()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(Duration::from_secs(5), connector.connect(name, s)).await {
        Ok(Ok(tls)) => Ok(tls),
        _ => Err("client: TLS handshake failed".into()),
    }
}

/// Accepts every certificate: the cases compare what the servers answer,
/// not the test certificates.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs one case's client against `addr`; returns the transcript lines.
pub async fn run_client(addr: SocketAddr, case: &Case, tag: &str) -> Vec<String> {
    if let Some(h2) = &case.h2 {
        return run_h2_client(addr, case, h2, tag).await;
    }
    let mut t = Vec::new();
    let mut c = match connect(addr, case).await {
        Ok(c) => c,
        Err(line) => return vec![line],
    };
    let req = replace_tag(&case.request, tag);
    if !c.send(&req).await {
        t.push("client: request write failed".into());
    }
    let mut last_sent = req.len();
    for step in &case.steps {
        match step {
            Step::Resp(limit) => read_response(&mut c, &case.method, *limit, &mut t).await,
            Step::Head => match c.head(Duration::from_secs(4)).await {
                Ok(h) => {
                    let text = latin1(&h);
                    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
                    let first = lines.next().unwrap_or("").to_string();
                    t.push(format!("client: head {first}"));
                    for l in comparable_fields(lines.map(String::from)) {
                        t.push(format!("client:   {l}"));
                    }
                }
                Err(end) => t.push(format!("client: no head: {}", end_word(end))),
            },
            Step::Raw => {
                let (b, end) = c
                    .until_quiet(Duration::from_millis(700), Duration::from_secs(2))
                    .await;
                t.push(format!("client: raw \"{}\" {}", preview(&b), end_word(end)));
            }
            Step::Closed => {
                let (b, end) = c.until_close(Duration::from_secs(1)).await;
                t.push(format!(
                    "client: connection {} (extra bytes \"{}\")",
                    match end {
                        End::Eof | End::Reset => "closed",
                        _ => "kept open",
                    },
                    preview(&b)
                ));
            }
            Step::Second => {
                let r2 = replace_tag(case.second.as_ref().expect("`second` request"), tag);
                let ok = c.send(&r2).await;
                t.push(format!(
                    "client: sent second request{}",
                    if ok { "" } else { " (write failed)" }
                ));
            }
            Step::Again(second) => {
                // The old connection closes as it is replaced.
                c = match connect(addr, case).await {
                    Ok(c) => c,
                    Err(line) => {
                        t.push(format!("{line} (reconnecting)"));
                        return t;
                    }
                };
                let r = if *second {
                    replace_tag(case.second.as_ref().expect("`second` request"), tag)
                } else {
                    req.clone()
                };
                let ok = c.send(&r).await;
                last_sent = r.len();
                t.push(format!(
                    "client: new connection, {} request sent{}",
                    if *second { "second" } else { "first" },
                    if ok { "" } else { " (write failed)" }
                ));
            }
            other => byte_step(&mut c, other, &mut last_sent, &mut t).await,
        }
    }
    t
}

/// A step on the bytes after the response head, the same over an HTTP/1
/// connection and over an HTTP/2 stream: sends, echoes, half-closes, EOFs
/// and WebSocket frames.
async fn byte_step(c: &mut Conn, step: &Step, last_sent: &mut usize, t: &mut Vec<String>) {
    match step {
        Step::Send(b) => {
            let ok = c.send(b).await;
            *last_sent = b.len();
            t.push(format!(
                "client: sent \"{}\"{}",
                show(b),
                if ok { "" } else { " (write failed)" }
            ));
        }
        Step::Echo(n) => {
            let want = n.unwrap_or(*last_sent);
            let (b, end) = c.exact(want, Duration::from_secs(2)).await;
            t.push(format!(
                "client: received \"{}\"{}",
                preview(&b),
                match end {
                    End::Done => String::new(),
                    e => format!(" then {}", end_word(e)),
                }
            ));
        }
        Step::ShutWr => {
            let _ = c.io.shutdown().await;
            t.push("client: half-closed (FIN)".into());
        }
        Step::Eof(limit, split) => {
            let start = Instant::now();
            let (b, end) = c.until_close(*limit).await;
            let mut line = format!(
                "client: waited for EOF: got \"{}\", {}",
                preview(&b),
                end_word(end)
            );
            if let (Some(split), End::Eof | End::Reset) = (split, end) {
                let early = start.elapsed() < *split;
                line.push_str(if early { " before " } else { " after " });
                line.push_str(&format!("{:?}", split));
            }
            t.push(line);
        }
        Step::Sleep(d) => tokio::time::sleep(*d).await,
        Step::WsSend(p) => {
            let ok = c.send(&frame(1, p, Some([1, 2, 3, 4]))).await;
            t.push(format!(
                "client: ws frame sent \"{}\"{}",
                show(p),
                if ok { "" } else { " (write failed)" }
            ));
        }
        Step::WsClose => {
            let ok = c.send(&frame(8, &[3, 232], Some([9, 8, 7, 6]))).await;
            t.push(format!(
                "client: ws close sent{}",
                if ok { "" } else { " (write failed)" }
            ));
        }
        Step::WsRead => match read_frame(c, Duration::from_secs(2)).await {
            Some((op, p)) => t.push(format!("client: ws frame opcode {op} \"{}\"", preview(&p))),
            None => t.push("client: no ws frame".into()),
        },
        other => unreachable!("{other:?} is not a step on bytes"),
    }
}

// ---------------------------------------------------------------- HTTP/2 client

/// Runs an `h2` case: TLS offering ALPN `h2` (and `http/1.1`, so that a
/// server without HTTP/2 shows as the protocol it chose), the h2 crate's
/// client, the case's request as one stream; `resp` records the response
/// as the HTTP/1 client does (status, fields, body), and the steps after
/// it run on the stream's DATA frames (a WebSocket over HTTP/2).
async fn run_h2_client(addr: SocketAddr, case: &Case, req: &H2Request, tag: &str) -> Vec<String> {
    let sni = case.tls.as_ref().and_then(|s| s.as_deref());
    let tls = match connect_tls(addr, sni, &[b"h2", b"http/1.1"]).await {
        Ok(tls) => tls,
        Err(line) => return vec![line],
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(latin1);
    if alpn.as_deref() != Some("h2") {
        return vec![format!(
            "client: ALPN chose {}, not h2",
            alpn.as_deref().unwrap_or("nothing")
        )];
    }
    let limit = Duration::from_secs(5);
    let (client, mut connection) =
        match tokio::time::timeout(limit, h2::client::handshake(tls)).await {
            Ok(Ok(pair)) => pair,
            _ => return vec!["client: HTTP/2 handshake failed".into()],
        };
    let mut ping = connection
        .ping_pong()
        .expect("ping_pong is taken once, before the connection runs");
    let driver = tokio::spawn(connection);
    let mut t = vec!["client: ALPN h2".to_string()];
    // The server's SETTINGS are its first frames: once our PING is
    // answered, they are known (whether it allows extended CONNECT).
    match tokio::time::timeout(limit, ping.ping(h2::Ping::opaque())).await {
        Ok(Ok(_)) => h2_exchange(client, case, req, tag, &mut t).await,
        Ok(Err(e)) => t.push(format!("client: no PING answer: {}", h2_error(&e))),
        Err(_) => t.push("client: no PING answer in time".into()),
    }
    driver.abort();
    t
}

async fn h2_exchange(
    client: h2::client::SendRequest<bytes::Bytes>,
    case: &Case,
    req: &H2Request,
    tag: &str,
    t: &mut Vec<String>,
) {
    let limit = Duration::from_secs(5);
    if req.protocol.is_some() {
        t.push(format!(
            "client: server allows extended CONNECT: {}",
            client.is_extended_connect_protocol_enabled()
        ));
    }
    let mut client = match tokio::time::timeout(limit, client.ready()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            t.push(format!("client: no stream allowed: {}", h2_error(&e)));
            return;
        }
        Err(_) => {
            t.push("client: no stream allowed in time".into());
            return;
        }
    };
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("https://{}{}", req.authority, req.target));
    for (name, value) in &req.fields {
        builder = builder.header(name.as_str(), replace_tag(value, tag));
    }
    let mut request = builder.body(()).expect("a valid h2 request");
    if let Some(p) = &req.protocol {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from(p.as_str()));
    }
    // A WebSocket's stream stays open for the tunnel.
    let open = req.protocol.is_some() || !req.body.is_empty();
    let (response, mut send) = match client.send_request(request, !open) {
        Ok(pair) => pair,
        Err(e) => {
            t.push(format!("client: request not sent: {}", h2_error(&e)));
            return;
        }
    };
    if !req.body.is_empty() {
        let end = req.protocol.is_none();
        if let Err(e) = h2_send_all(&mut send, &req.body, end, limit).await {
            t.push(format!("client: body not sent: {e}"));
        }
    }
    let mut send = Some(send);
    let mut response = Some(response);
    let mut stream: Option<Conn> = None;
    let error = Arc::new(Mutex::new(None::<String>));
    let mut last_sent = 0;
    for step in &case.steps {
        if let Step::Resp(limit) = step {
            let Some(response) = response.take() else {
                t.push("client: one response per stream".into());
                continue;
            };
            let response = match tokio::time::timeout(*limit, response).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    t.push(format!("client: no response: {}", h2_error(&e)));
                    continue;
                }
                Err(_) => {
                    t.push("client: no response: timeout".into());
                    continue;
                }
            };
            let (parts, recv) = response.into_parts();
            let status = parts.status.as_u16();
            let fields = comparable_fields(
                parts
                    .headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", latin1(v.as_bytes()))),
            );
            let mut conn = Conn::new(H2Stream {
                send: send.take(),
                recv,
                pending: bytes::Bytes::new(),
                error: error.clone(),
            });
            if req.protocol.is_some() && (200..300).contains(&status) {
                // RFC 8441: a 2xx opens the WebSocket on the stream.
                t.push(format!("client: HTTP/2 {status}, tunnel open"));
                for f in fields {
                    t.push(format!("client:   {f}"));
                }
            } else {
                // The body is the stream's DATA until END_STREAM.
                let (body, end) = conn.until_close(Duration::from_secs(3)).await;
                let end = if end == End::Eof { End::Done } else { end };
                record_final(
                    t,
                    &format!("HTTP/2 {status}"),
                    fields,
                    &body,
                    "data frames",
                    end,
                );
                if let Some(e) = error.lock().unwrap().take() {
                    t.push(format!("client: stream error: {e}"));
                }
            }
            stream = Some(conn);
        } else if let Some(c) = stream.as_mut() {
            byte_step(c, step, &mut last_sent, t).await;
            if let Some(e) = error.lock().unwrap().take() {
                t.push(format!("client: stream error: {e}"));
            }
        } else {
            t.push(format!("client: {step:?} skipped: no stream"));
        }
    }
}

/// Sends `data` as the server's flow-control window allows; ends the stream
/// with the last piece when `end`.
async fn h2_send_all(
    send: &mut h2::SendStream<bytes::Bytes>,
    data: &[u8],
    end: bool,
    limit: Duration,
) -> Result<(), String> {
    let mut rest = bytes::Bytes::copy_from_slice(data);
    while !rest.is_empty() {
        send.reserve_capacity(rest.len());
        let n = match tokio::time::timeout(limit, std::future::poll_fn(|cx| send.poll_capacity(cx)))
            .await
        {
            Ok(Some(Ok(n))) => n,
            Ok(Some(Err(e))) => return Err(h2_error(&e)),
            Ok(None) => return Err("stream closed".into()),
            Err(_) => return Err("no window in time".into()),
        };
        if n == 0 {
            continue;
        }
        let piece = rest.split_to(n.min(rest.len()));
        send.send_data(piece, end && rest.is_empty())
            .map_err(|e| h2_error(&e))?;
    }
    Ok(())
}

/// An h2 error as a transcript says it: the frame (RST_STREAM, GOAWAY) and
/// its reason, and whether the server sent it.
fn h2_error(e: &h2::Error) -> String {
    let reason = e
        .reason()
        .map_or_else(|| "no reason".to_string(), |r| format!("{r:?}"));
    let from = if e.is_remote() {
        "from the server"
    } else {
        "from the client library"
    };
    if e.is_go_away() {
        format!("GOAWAY {reason} {from}")
    } else if e.is_reset() {
        format!("RST_STREAM {reason} {from}")
    } else if e.is_io() {
        "connection lost".into()
    } else {
        format!("{reason} ({e})")
    }
}

/// An HTTP/2 stream as bytes, for the steps after the response head: reads
/// its DATA frames (giving their window back), writes DATA frames as the
/// server's window allows, ends the stream on shutdown. A stream error is
/// kept for the transcript.
struct H2Stream {
    send: Option<h2::SendStream<bytes::Bytes>>,
    recv: h2::RecvStream,
    pending: bytes::Bytes,
    error: Arc<Mutex<Option<String>>>,
}

impl H2Stream {
    fn failed(&self, e: &h2::Error) -> std::io::Error {
        *self.error.lock().unwrap() = Some(h2_error(e));
        std::io::Error::other(e.to_string())
    }

    fn sender(&mut self) -> std::io::Result<&mut h2::SendStream<bytes::Bytes>> {
        self.send
            .as_mut()
            .ok_or_else(|| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if self.pending.is_empty() {
            match std::task::ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(self.failed(&e))),
            }
        }
        let n = buf.remaining().min(self.pending.len());
        let piece = self.pending.split_to(n);
        buf.put_slice(&piece);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let send = self.sender()?;
        send.reserve_capacity(buf.len());
        // Bounded: each turn either returns or waits for the window.
        loop {
            let capacity = std::task::ready!(self.sender()?.poll_capacity(cx));
            match capacity {
                None => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(self.failed(&e))),
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let piece = bytes::Bytes::copy_from_slice(&buf[..n.min(buf.len())]);
                    let len = piece.len();
                    if let Err(e) = self.sender()?.send_data(piece, false) {
                        return Poll::Ready(Err(self.failed(&e)));
                    }
                    return Poll::Ready(Ok(len));
                }
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let result = match self.send.take() {
            Some(mut send) => send
                .send_data(bytes::Bytes::new(), true)
                .map_err(|e| self.failed(&e)),
            None => Ok(()),
        };
        std::task::Poll::Ready(result)
    }
}

fn end_word(e: End) -> &'static str {
    match e {
        End::Done => "complete",
        End::Eof => "EOF",
        End::Reset => "reset",
        End::Timeout => "no EOF",
    }
}

fn replace_tag(b: &[u8], tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 32);
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{tag}") {
            out.extend_from_slice(tag.as_bytes());
            i += 5;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Marks a `Connection: close` on a proxy-generated error page.
pub const ERROR_PAGE_MARK: &str = "[error page]";

/// Response headers whose presence or value is not part of the contract:
/// Date is the proxy's own.
const IGNORED_RESPONSE_HEADERS: &[&str] = &["date"];

/// Marks the lines that say who answered: the `Server` field and an error
/// page's signature line (`ServerSignature`). Dropped from the comparison
/// unless the case says `identity`.
pub const IDENTITY_MARK: &str = "[identity]";

/// Response header lines as they are compared: without the ignored ones
/// (Date), `Server` marked [`IDENTITY_MARK`], fields with different names
/// in name order (they may come in any order, RFC 9110 §5.3); same-name
/// fields keep their relative order (the sort is stable).
fn comparable_fields(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let name = |l: &str| {
        l.split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let mut fields: Vec<String> = lines
        .into_iter()
        .filter(|l| !IGNORED_RESPONSE_HEADERS.contains(&name(l).as_str()))
        .collect();
    fields.sort_by_key(|l| name(l));
    for f in &mut fields {
        if name(f) == "server" {
            *f = format!("{IDENTITY_MARK} {f}");
        }
    }
    fields
}

/// The lines of a final response, over HTTP/1 or HTTP/2: its status line,
/// its fields (from `comparable_fields`), its body with how it was framed,
/// and how the body ended. A proxy-generated error page (an HTML body) is
/// recorded without its text, length and type, which are each server's own.
fn record_final(
    t: &mut Vec<String>,
    status_line: &str,
    mut fields: Vec<String>,
    body: &[u8],
    framing: &str,
    end: End,
) {
    // A gzip body is compared by what it holds: two zlib builds make
    // different bytes of the same text, so its length is not compared.
    let gunzipped = gunzip(body);
    if gunzipped.is_some() {
        fields.retain(|h| !h.to_ascii_lowercase().starts_with("content-length:"));
    }
    let body = gunzipped.as_deref().unwrap_or(body);
    let lower = String::from_utf8_lossy(&body[..body.len().min(300)]).to_ascii_lowercase();
    let error_page = lower.contains("<html") || lower.contains("<!doctype");
    t.push(format!("client: {status_line}"));
    if error_page {
        fields.retain(|h| {
            let n = h
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            n != "content-length" && n != "content-type"
        });
    }
    for h in &fields {
        if error_page && h.eq_ignore_ascii_case("connection: close") {
            t.push(format!("client:   {h}  {ERROR_PAGE_MARK}"));
        } else {
            t.push(format!("client:   {h}"));
        }
    }
    if error_page {
        t.push("client: body: error page".to_string());
        let text = String::from_utf8_lossy(body);
        if let Some(at) = text.find("<address>") {
            let line = text[at..].lines().next().unwrap_or("");
            t.push(format!("client: {IDENTITY_MARK} signature: {line}"));
        }
    } else {
        t.push(format!(
            "client: body {} bytes{} ({framing}) \"{}\"",
            body.len(),
            if gunzipped.is_some() {
                " gunzipped"
            } else {
                ""
            },
            preview(body)
        ));
    }
    if end != End::Done {
        t.push(format!("client: body ended early: {}", end_word(end)));
    }
}

/// A gzip stream's content, if `body` is one.
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    if !body.starts_with(b"\x1f\x8b") {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

async fn read_response(c: &mut Conn, method: &str, limit: Duration, t: &mut Vec<String>) {
    loop {
        let head = match c.head(limit).await {
            Ok(h) => h,
            Err(end) => {
                let b = std::mem::take(&mut c.buf);
                t.push(format!(
                    "client: no response head: \"{}\" {}",
                    preview(&b),
                    end_word(end)
                ));
                return;
            }
        };
        let text = latin1(&head);
        let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
        let status_line = lines.next().unwrap_or("").to_string();
        let all: Vec<String> = lines.map(String::from).collect();
        let te = header_of_fields(&all, "transfer-encoding").map(|s| s.to_ascii_lowercase());
        let cl = header_of_fields(&all, "content-length").and_then(|v| v.parse::<usize>().ok());
        let headers = comparable_fields(all);
        let code: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&code) {
            t.push(format!(
                "client: {}",
                if code == 101 { "switched" } else { "interim" }
            ));
            t.push(format!("client: {status_line}"));
            for h in &headers {
                t.push(format!("client:   {h}"));
            }
            if code == 101 {
                return;
            }
            continue;
        }
        let (body, framing, end) = if method == "HEAD" || code == 204 || code == 304 {
            (Vec::new(), "none", End::Done)
        } else if te.as_deref().is_some_and(|v| v.contains("chunked")) {
            let (b, e) = c.chunked(Duration::from_secs(3)).await;
            (b, "chunked", e)
        } else if let Some(n) = cl {
            let (b, e) = c.exact(n, Duration::from_secs(3)).await;
            (b, "content-length", e)
        } else {
            let (b, e) = c.until_close(Duration::from_secs(2)).await;
            (b, "until close", if e == End::Eof { End::Done } else { e })
        };
        record_final(t, &status_line, headers, &body, framing, end);
        return;
    }
}

// ---------------------------------------------------------------- servers

/// Writes a group's password file with the real `htpasswd` (Debian's
/// apache2-utils), in a folder Apache's children (nobody, under root) can
/// read; `None` when `htpasswd` is missing (which fails under CI=true).
pub fn write_htpasswd(users: &[[String; 3]]) -> Option<tempfile::TempDir> {
    if !crate::common::require_program("htpasswd", "apache2-utils") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    for (i, [flag, user, password]) in users.iter().enumerate() {
        let mut flags = format!("-b{}", flag.trim_start_matches('-'));
        if i == 0 {
            flags.push('c');
        }
        let out = Command::new("htpasswd")
            .arg(flags)
            .arg(&file)
            .arg(user)
            .arg(password)
            .output()
            .expect("run htpasswd");
        assert!(out.status.success(), "htpasswd {flag} {user}: {out:?}");
    }
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let _ = Command::new("chmod").arg("644").arg(&file).status();
    Some(dir)
}

pub const APACHE: &str = "/usr/sbin/apache2";
pub const MODULES: &str = "/usr/lib/apache2/modules";

pub struct Apache {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Apache {
    /// Starts Apache (event MPM, one child) on `body` in a private folder,
    /// on a free port. Apache cannot listen on port 0 and say which it got,
    /// so a port found free is taken, and if another process took it in
    /// between, another one is tried.
    /// `extra` names modules loaded beyond the usual ones (`ssl`, `http2`...).
    pub fn start(body: &str, extra: &[&str]) -> Apache {
        for _ in 0..5 {
            if let Some(apache) = Apache::start_on(body, crate::common::free_port(), extra) {
                return apache;
            }
        }
        panic!("apache2 found no free port in 5 attempts");
    }

    /// `None`: the port was taken meanwhile.
    fn start_on(body: &str, port: u16, extra: &[&str]) -> Option<Apache> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let root = unsafe_is_root();
        let mut modules = vec![
            "mpm_event",
            "authz_core",
            "proxy",
            "proxy_http",
            "proxy_wstunnel",
            "rewrite",
            "slotmem_shm",
            "proxy_balancer",
            "lbmethod_byrequests",
            "lbmethod_bybusyness",
            "lbmethod_bytraffic",
        ];
        modules.extend_from_slice(extra);
        let mut conf = format!(
            "ServerRoot {d}\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\nDefaultRuntimeDir {d}\nMutex file:{d}\n"
        );
        for m in modules {
            conf.push_str(&format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"));
        }
        conf.push_str("ServerLimit 1\nStartServers 1\nThreadLimit 40\nThreadsPerChild 40\nMaxRequestWorkers 40\n");
        if root {
            conf.push_str("User nobody\nGroup nogroup\n");
        }
        conf.push_str(&format!(
            "LogLevel warn\nListen 127.0.0.1:{port}\nServerName proxy.test\n{body}"
        ));
        let path = dir.path().join("httpd.conf");
        std::fs::write(&path, conf).unwrap();
        // The child runs as nobody: it must be able to enter the folder.
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(&path)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start apache2");
        let mut a = Apache {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = a.child.try_wait() {
                let why = a.read("stderr.log") + &a.read("error.log");
                if why.contains("Address already in use") {
                    return None;
                }
                panic!("apache2 exited with {st}: {why}");
            }
            if std::net::TcpStream::connect(a.addr).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("apache2 did not listen: {}", a.read("error.log"));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Some(a)
    }

    pub fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
    }
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            if let Some(after) = stat.rsplit_once(')').map(|x| x.1) {
                if after.split_whitespace().nth(1) == Some(&pid.to_string()) {
                    out.push(p);
                }
            }
        }
    }
    out
}

impl Drop for Apache {
    /// Stops Apache by its PID (SIGTERM makes the parent stop its child);
    /// whatever is left after 5 s is killed by PID.
    fn drop(&mut self) {
        let pid = self.child.id();
        let kids = children_of(pid);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for k in kids {
            if std::path::Path::new(&format!("/proc/{k}")).exists() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(k.to_string())
                    .status();
            }
        }
    }
}

/// The negative control: a plain TCP forwarder to the backend, which a
/// proxy-aware comparison must tell apart from Apache.
pub async fn start_forwarder(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut b) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut b).await;
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- comparison

/// What a transcript becomes before comparing: ports and the case tag are
/// each server's own, and so is a `Sec-WebSocket-Key` a proxy makes up
/// for the backend (a WebSocket over HTTP/2 has none, RFC 8441 §5): its
/// value becomes its shape.
pub fn normalise(lines: Vec<String>, subs: &BTreeMap<String, String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|mut l| {
            for (from, to) in subs {
                if l.contains(from.as_str()) {
                    l = l.replace(from.as_str(), to);
                }
            }
            shorten(generated_key(&l).unwrap_or(l))
        })
        .collect()
}

/// A line longer than 300 characters (a large field) as its start, its
/// length and a hash of the whole, and its end: still compared in full,
/// but readable in a diff.
fn shorten(line: String) -> String {
    let n = line.chars().count();
    if n <= 300 {
        return line;
    }
    // FNV-1a, 64 bits.
    let hash = line.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = line.chars().take(100).collect();
    let tail: String = line.chars().skip(n - 16).collect();
    format!("{head}...[{n} characters, fnv {hash:016x}]...{tail}")
}

/// `backend#N: Sec-WebSocket-Key: V` with a V other than the cases' own
/// key, as `... [generated: 16 bytes in base64]` (or what V is instead).
fn generated_key(line: &str) -> Option<String> {
    let (who, field) = line.split_once(": ")?;
    let (name, value) = field.split_once(':')?;
    let value = value.trim();
    if !who.starts_with("backend#")
        || !name.eq_ignore_ascii_case("sec-websocket-key")
        || value == WS_KEY
    {
        return None;
    }
    let base64 = value.len() % 4 == 0
        && value
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    let shape = if base64 {
        let padding = value.len() - value.trim_end_matches('=').len();
        format!("{} bytes in base64", value.len() / 4 * 3 - padding)
    } else {
        format!("{} characters, not base64", value.len())
    };
    Some(format!("{who}: {name}: [generated: {shape}]"))
}

/// Lines that differ: `- ` only in `a`, `+ ` only in `b`.
pub fn diff(a: &[String], b: &[String]) -> Vec<String> {
    // Longest common subsequence; transcripts are short.
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[i][j] = if a[i] == b[j] {
                dp[i + 1][j + 1] + 1
            } else {
                dp[i + 1][j].max(dp[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || dp[i][j + 1] >= dp[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// The access log lines a group's servers write, when it has `log FORMAT`:
/// each server's own file in a folder every server may write to.
pub struct AccessLogs {
    pub dir: tempfile::TempDir,
}

impl AccessLogs {
    pub fn new() -> AccessLogs {
        let dir = tempfile::tempdir().unwrap();
        // Apache's child may run as nobody.
        let _ = Command::new("chmod").arg("777").arg(dir.path()).status();
        AccessLogs { dir }
    }

    /// The lines that make `server` write its log in `format`, each line
    /// ending with the case's tag.
    pub fn config(&self, server: &str, format: &str) -> String {
        let file = self.dir.path().join(format!("{server}.log"));
        let format = format.replace('"', "\\\"");
        format!(
            "LogFormat \"{format} @%{{X-Tag}}i\" conformance\nCustomLog {} conformance\n",
            file.display()
        )
    }

    /// The lines `server` wrote for the requests tagged `tag`, without
    /// their tag: waiting up to `limit` for the first (a tunnel's comes
    /// when it ends), then a moment for any other still being written.
    pub async fn lines(&self, server: &str, tag: &str, limit: Duration) -> Vec<String> {
        let file = self.dir.path().join(format!("{server}.log"));
        let end = format!(" @{tag}");
        let read = || {
            std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.ends_with(&end))
                .map(|l| format!("log: {}", &l[..l.len() - end.len()]))
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + limit;
        loop {
            if !read().is_empty() {
                tokio::time::sleep(Duration::from_millis(150)).await;
                return read();
            }
            if Instant::now() > deadline {
                return vec!["log: (no line)".into()];
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
