//! Shared parts of the integration tests: the real wsgate binary started on a
//! configuration in a temporary folder, real backends and clients on
//! 127.0.0.1, and deadlines on every wait.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

pub const WSGATE: &str = env!("CARGO_BIN_EXE_wsgate");

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The wsgate binary running on a configuration.
pub struct Wsgate {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
}

impl Wsgate {
    /// Starts wsgate on `body`, preceded by a `Listen` on a free port.
    pub fn start(body: &str) -> Wsgate {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("wsgate.conf");
        let log = dir.path().join("stderr.log");
        std::fs::write(
            &conf,
            format!("Listen {addr}\nServerName proxy.test\n{body}"),
        )
        .unwrap();
        let child = Command::new(WSGATE)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start wsgate");
        let mut w = Wsgate {
            child,
            addr,
            dir,
            conf,
            log,
        };
        w.wait_listening();
        w
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wsgate exited with {status}: {}", self.stderr());
            }
            if StdStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "wsgate did not listen on {} within 10 s: {}",
            self.addr,
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Resident memory of the wsgate process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Wsgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Request heads a backend received, for assertions.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<String>>>);

impl Seen {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn last(&self) -> String {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
}

/// A WebSocket echo backend (tokio-tungstenite) that records each handshake's
/// request head as `METHOD target` and `name: value` lines.
pub async fn ws_echo_backend() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    let mut head = format!("{} {}\n", req.method(), req.uri());
                    for (n, v) in req.headers() {
                        head.push_str(&format!("{}: {}\n", n, v.to_str().unwrap_or("?")));
                    }
                    record.push(head);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                // tungstenite answers a close frame itself while the stream
                // is read to its end.
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A backend whose every connection is handled by `f`, given the request
/// head it read (up to the blank line) and the stream.
pub async fn raw_backend<F, Fut>(f: F) -> (SocketAddr, Seen)
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let f = Arc::new(f);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            let f = f.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                record.push(head.clone());
                f(head, stream).await;
            });
        }
    });
    (addr, seen)
}

/// An HTTP/1.1 backend answering every request with 200 and a body naming
/// the request target; keeps connections alive; records every head.
pub async fn http_backend(name: &'static str) -> (SocketAddr, Seen) {
    raw_backend(move |first, mut stream| async move {
        let mut head = first;
        loop {
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let length = header_value(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if length > 0 && stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let text = format!("{name} {target} body={}", body.len());
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n{text}",
                text.len()
            );
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            match read_head(&mut stream).await {
                Some(h) => head = h,
                None => return,
            }
        }
    })
    .await
}

pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads a head up to and including the blank line, byte by byte so that
/// nothing after it is consumed.
pub async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 65536 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Sends raw bytes and reads the whole answer until the server closes or
/// `limit` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_until_close(&mut s, limit).await
}

/// Reads until the peer closes or `limit` passes.
pub async fn read_until_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads what arrives within `limit` (for a connection that stays open).
pub async fn read_for(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text`.
pub fn status_of(text: &str) -> u16 {
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Opens a WebSocket through wsgate, sends `msg`, and returns the echo.
pub async fn ws_roundtrip(url: &str, msg: &str) -> String {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds");
    ws.send(Message::Text(msg.into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    let _ = ws.close(None).await;
    reply.into_text().unwrap().to_string()
}

/// A request head for a WebSocket handshake with `upgrade` as the value.
pub fn ws_request(path: &str, upgrade: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Whether a package's program is here; under CI it must be.
pub fn require_program(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{program} (Debian package {package}) is required under CI=true but missing");
        }
        eprintln!("SKIP: {program} not found; install the Debian package {package} (bash .ci/run does) to run this test");
    }
    found
}

/// `wsgate -t` on a file `c.conf` holding exactly `text`; `configure` adds
/// arguments (`-D`) or environment to the command first.
pub fn check_file(text: &str, configure: impl FnOnce(&mut Command)) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(WSGATE);
    cmd.arg("-t");
    configure(&mut cmd);
    cmd.arg("-f").arg(&conf).output().unwrap()
}

/// What `wsgate -t` says of `body` (after the `Listen` and `ServerName` that
/// `Wsgate::start` adds): `Err` with the message, without its `FILE:LINE: `.
pub fn config_check(body: &str) -> Result<(), String> {
    let out = check_file(
        &format!("Listen 127.0.0.1:1\nServerName proxy.test\n{body}"),
        |_| {},
    );
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("");
    Err(first.split_once(": ").map_or(first, |(_, m)| m).to_string())
}

/// One response: its head, and a body of the Content-Length it gives (a
/// 101 ends at its head); at most 5 s.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).into_owned();
            let length = header_value(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if head.contains(" 101 ") || out.len() >= end + 4 + length {
                break;
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
