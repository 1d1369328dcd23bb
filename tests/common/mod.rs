//! Shared parts of the integration tests: the real wsgate binary started on a
//! configuration in a temporary folder, real backends and clients on
//! 127.0.0.1, and deadlines on every wait.
//!
//! Nothing here races for ports: wsgate listens on port 0 and reports the
//! port it got (`--print-listen`), backends bind port 0, and a "dead"
//! backend is a port the test holds bound without listening. Every task a
//! backend spawns is watched: a panic or failed assertion inside one fails
//! the test (at `Backend::finish`, or at the latest when the backend is
//! dropped).
#![allow(dead_code)]

pub mod pki;

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const WSGATE: &str = env!("CARGO_BIN_EXE_wsgate");

/// A port that was free a moment ago: only for programs that cannot take
/// port 0 and say which port they got (Apache, the recipes' servers); their
/// starters retry with another port when this one was taken meanwhile.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A port nothing listens on, held for the test's life: bound but not
/// listening, so connecting to it is refused at once and no other process
/// can start listening there meanwhile.
pub struct DeadPort {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind port 0");
        let addr = socket
            .local_addr()
            .expect("its address")
            .as_socket()
            .expect("an IP address");
        DeadPort {
            _socket: socket,
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl fmt::Display for DeadPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// The wsgate binary running on a configuration.
pub struct Wsgate {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
}

/// The `Listen` line of `Wsgate::start`'s configurations: a reload keeps
/// it, and with it the listener and its port.
pub const LISTEN: &str = "Listen 127.0.0.1:0";

impl Wsgate {
    /// Starts wsgate on `body`, preceded by a `Listen` on port 0 and
    /// `ServerName proxy.test`.
    pub fn start(body: &str) -> Wsgate {
        Wsgate::start_file(&format!("{LISTEN}\nServerName proxy.test\n{body}"))
    }

    /// Starts wsgate on exactly `text`, which must `Listen` somewhere; `addr`
    /// is the first address it reports.
    pub fn start_file(text: &str) -> Wsgate {
        Wsgate::start_with(text, &[], |_| {})
    }

    /// [`Wsgate::start_file`] with more arguments and a chance to change the
    /// command (environment) before it starts.
    pub fn start_with(text: &str, args: &[&str], configure: impl FnOnce(&mut Command)) -> Wsgate {
        Wsgate::start_binary(WSGATE, text, args, configure)
    }

    /// [`Wsgate::start_with`] for another build of wsgate (the mutation
    /// control's).
    pub fn start_binary(
        binary: &str,
        text: &str,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Wsgate {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("wsgate.conf");
        let log = dir.path().join("stderr.log");
        std::fs::write(&conf, text).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("--print-listen")
            .args(args)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start wsgate");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut w = Wsgate {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir,
            conf,
            log,
        };
        w.addr = w.wait_listening(&rx);
        w
    }

    /// The first address wsgate reports listening on.
    fn wait_listening(&mut self, lines: &mpsc::Receiver<String>) -> SocketAddr {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line
                .strip_prefix("listening on ")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected first line {line:?}")),
            Err(_) => match self.child.try_wait() {
                Ok(Some(status)) => panic!("wsgate exited with {status}: {}", self.stderr()),
                _ => panic!("wsgate did not listen within 10 s: {}", self.stderr()),
            },
        }
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

    /// Waits until the error log holds `text` `count` times, at most 10 s.
    pub async fn wait_log(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr();
            if log.matches(text).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log never held {count} × {text:?}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `conf`, sends SIGHUP and waits until the log says the new
    /// configuration runs.
    pub async fn reload(&self, conf: &str) {
        let before = self.stderr().matches("configuration reloaded").count();
        std::fs::write(&self.conf, conf).unwrap();
        self.signal("HUP");
        self.wait_log("configuration reloaded", before + 1).await;
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

/// Waits until `cond` holds, at most `limit`; `what` names it in the panic.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The text of the file at `path` once it has at least `n` lines (an
/// access log's writer is a thread of its own), at most 5 s.
pub async fn file_with_lines(path: &std::path::Path, n: usize) -> String {
    eventually(Duration::from_secs(5), "the file's lines", || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
            >= n
    })
    .await;
    std::fs::read_to_string(path).unwrap()
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
    pub fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
}

/// Tasks a test spawned whose failure must fail the test: each one's
/// panic (a failed assertion) is recorded with its message.
#[derive(Clone, Default)]
pub struct Watched {
    panics: Arc<Mutex<Vec<String>>>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Watched {
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let panics = self.panics.clone();
        let handle = tokio::spawn(async move {
            if let Err(p) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
                let message = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                panics.lock().unwrap().push(message);
            }
        });
        let mut handles = self.handles.lock().unwrap();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// Panics with the first failure of a watched task, if there was one.
    pub fn check(&self) {
        if let Some(first) = self.panics.lock().unwrap().first() {
            panic!("a task of the test failed: {first}");
        }
    }

    /// Waits up to `limit` for every watched task to end, then checks.
    pub async fn join(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let pending: Vec<JoinHandle<()>> = {
                let mut handles = self.handles.lock().unwrap();
                handles.retain(|h| !h.is_finished());
                handles.drain(..).collect()
            };
            if pending.is_empty() {
                break;
            }
            for h in pending {
                let waited = tokio::time::timeout_at(deadline, h).await;
                assert!(
                    waited.is_ok(),
                    "a task of the test did not end within {limit:?}"
                );
            }
        }
        self.check();
    }

    fn abort_all(&self) {
        for h in self.handles.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// A backend the test started: where it listens, the request heads it saw,
/// and its tasks, whose failures fail the test.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Seen,
    pub tasks: Watched,
    accept: JoinHandle<()>,
}

impl Backend {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops accepting and waits (up to 10 s) for the connections it is
    /// handling to end; a panic in any of them fails the test here.
    pub async fn finish(self) {
        self.accept.abort();
        self.tasks.join(Duration::from_secs(10)).await;
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.accept.abort();
        self.tasks.abort_all();
        if !std::thread::panicking() {
            self.tasks.check();
        }
    }
}

/// Serves every connection of `listener` with `f`, watched.
pub fn serve<F, Fut>(listener: TcpListener, f: F) -> Backend
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let tasks = Watched::default();
    let watched = tasks.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            watched.spawn(f(stream));
        }
    });
    Backend {
        addr,
        seen: Seen::default(),
        tasks,
        accept,
    }
}

/// A WebSocket echo backend (tokio-tungstenite) that records each handshake's
/// request head as `METHOD target` and `name: value` lines.
pub async fn ws_echo_backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let mut backend = serve(listener, move |stream| {
        let record = record.clone();
        async move {
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
            // tungstenite answers a close frame itself while the stream is
            // read to its end.
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });
    backend.seen = seen;
    backend
}

/// A backend whose every connection is handled by `f`, given the request
/// head it read (up to the blank line) and the stream.
pub async fn raw_backend<F, Fut>(f: F) -> Backend
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let f = Arc::new(f);
    let mut backend = serve(listener, move |mut stream| {
        let (record, f) = (record.clone(), f.clone());
        async move {
            let Some(head) = read_head(&mut stream).await else {
                return;
            };
            record.push(head.clone());
            f(head, stream).await;
        }
    });
    backend.seen = seen;
    backend
}

/// An HTTP/1.1 backend answering every request with 200 and a body naming
/// the request target; keeps connections alive; records every head.
pub async fn http_backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let mut backend = serve(listener, move |mut stream| {
        let record = record.clone();
        async move {
            while let Some(head) = read_head(&mut stream).await {
                record.push(head.clone());
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
            }
        }
    });
    backend.seen = seen;
    backend
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

/// [`raw_exchange`], the answer as bytes.
pub async fn raw_exchange_bytes(addr: SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    out
}

/// Reads until the peer closes or `limit` passes.
pub async fn read_until_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads to the peer's close (end of stream or reset), which must come
/// within `limit`; what arrived before it.
pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was not closed within {limit:?}; it sent {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads exactly `n` bytes, which must come within `limit`.
pub async fn read_exactly(s: &mut TcpStream, n: usize, limit: Duration) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(limit, s.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{n} bytes did not come within {limit:?}"))
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    String::from_utf8_lossy(&buf).into_owned()
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

/// `wsgate -t -f PATH` with `env` added to its environment: the exit code
/// and standard error.
pub fn check_path(path: &std::path::Path, env: &[(&str, String)]) -> (i32, String) {
    let out = Command::new(WSGATE)
        .arg("-t")
        .arg("-f")
        .arg(path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// A running `wsgate demo` (its page and echo backend behind its proxy).
pub struct Demo {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `wsgate demo` on a free port; its first line says where.
pub fn start_demo() -> Demo {
    let mut child = Command::new(WSGATE)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
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

/// Loads `url` in headless Chromium (with `extra` flags) until its DOM
/// holds `want` (a few tries: its first start on a fresh machine can be
/// slow); `Err` with the last DOM otherwise.
pub fn chromium_dom_until(url: &str, extra: &[&str], want: &str) -> Result<String, String> {
    let profile = tempfile::tempdir().unwrap();
    let mut last = String::new();
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
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .args(["--virtual-time-budget=10000", "--dump-dom"])
            .arg(url)
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains(want) {
            return Ok(last);
        }
    }
    Err(last)
}
