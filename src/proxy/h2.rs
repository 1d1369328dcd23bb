//! HTTP/2 toward clients (the `h2` crate), offered by ALPN on TLS when a
//! server's `Protocols` lists `h2`.
//!
//! Each stream becomes the same [`RequestHead`] an HTTP/1 request does
//! and goes through the same `request::handle` — checks, rules, routing,
//! balancing, the backend over HTTP/1.1 — with an [`H2Downstream`] taking
//! the answer as frames. A WebSocket opened with RFC 8441's extended
//! `CONNECT` (`:protocol websocket`, with `H2WebSockets on`) is asked of the
//! backend as an HTTP/1.1 upgrade; its `101` becomes the stream's `200`, and
//! the stream is one side of the same byte tunnel as an HTTP/1 upgrade,
//! many on one connection, each with its own flow control.
//!
//! Abuse is bounded by the h2 crate (header blocks, CONTINUATION frames,
//! streams at once, resets before acceptance), by mod_http2's field limits
//! checked here, by the rapid-reset count below, and by `Timeout` on a
//! client that takes no bytes (see [`SendTimeout`]);
//! `tests/http2_attacks.rs` sends each attack.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::{BodyError, BodyReader};
use super::downstream::Downstream;
use super::forward::{Outcome, TunnelStart};
use super::header_rules::ConnFacts;
use super::headers::{self, ClientResponse};
use super::logging::Visit;
use super::park::{self, Parkable};
use super::plan::Local;
use super::request;
use super::server::{ConnGuard, Shared};
use super::tls::TlsFacts;
use super::tunnel::{AsTcp, Tunnel};
use crate::http::body::Encoding;
use crate::http::write::{with_date, LocalAnswer};
use crate::http::{
    FieldValue, HeaderFields, Headers, Limits, RequestHead, ResponseHead, Text, Version,
};
use crate::route;

/// Streams a client may cancel before their answers, beyond as many as it
/// let finish, before its connection is closed (rapid reset,
/// CVE-2023-44487: each stream costs a backend request).
const MAX_CANCELLED: usize = 100;

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2): never sent on a stream.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Serves one HTTP/2 connection until the client closes it, or until a
/// graceful stop or `KeepAliveTimeout` without a stream has sent GOAWAY
/// and the streams still open have ended.
pub async fn serve<S>(io: S, facts: ConnFacts, tls: TlsFacts, shared: Arc<Shared>, guard: ConnGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let generation = shared.generation();
    let config = &generation.config;
    let settings = route::select_server(config, facts.local, tls.sni.as_deref()).http2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_streams)
        .initial_window_size(settings.window)
        .max_header_list_size(u32::try_from(config.limits.max_head()).unwrap_or(u32::MAX))
        .max_send_buffer_size(64 * 1024);
    if settings.websockets {
        builder.enable_connect_protocol();
    }
    let (timeout, idle_after) = (config.timeout, config.keepalive_timeout);
    drop(generation);
    let stalled = Arc::new(AtomicBool::new(false));
    let io = SendTimeout::new(io, timeout, stalled.clone());
    let mut conn = match tokio::time::timeout(timeout, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(peer = %facts.peer, "HTTP/2 handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let mut shutdown = shared.shutdown_signal();
    // Each stream's task holds a clone: the connection is idle when only
    // this one is left.
    let open = Arc::new(Tally::default());
    let mut going_away = false;
    loop {
        let idle = Arc::strong_count(&open) == 1;
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    if open.flooding() {
                        tracing::warn!(
                            peer = %facts.peer,
                            "HTTP/2 client cancelled {} streams before their answers: connection closed (rapid reset)",
                            open.cancelled.load(Ordering::Relaxed)
                        );
                        conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                        going_away = true;
                        continue;
                    }
                    let stream = Stream {
                        shared: shared.clone(),
                        facts,
                        tls: tls.clone(),
                        tally: open.clone(),
                        stream_timeout: settings.stream_timeout,
                    };
                    tokio::spawn(stream.serve(request, respond));
                }
                Some(Err(_)) if stalled.load(Ordering::Relaxed) => {
                    tracing::info!(
                        peer = %facts.peer,
                        "HTTP/2 client took nothing for {timeout:?}: connection closed"
                    );
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(peer = %facts.peer, "HTTP/2 connection ended: {e}");
                    break;
                }
                None => break,
            },
            _ = shutdown.changed(), if !going_away => {
                going_away = true;
                conn.graceful_shutdown();
            }
            _ = tokio::time::sleep(idle_after), if idle && !going_away => {
                going_away = true;
                conn.graceful_shutdown();
            }
        }
    }
    drop(guard);
}

/// How a connection's streams ended: answered, or cancelled by the client
/// before their answers.
#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    cancelled: AtomicUsize,
}

impl Tally {
    fn flooding(&self) -> bool {
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        cancelled > MAX_CANCELLED && cancelled > self.answered.load(Ordering::Relaxed)
    }
}

/// mod_http2's answer to a `:path` longer than `LimitRequestLine`; the
/// connection's other streams go on.
const URI_TOO_LONG: Local = Local {
    status: 414,
    reason: "Request-URI Too Long",
    close: false,
    extra: None,
};

/// mod_http2's answer to fields beyond `LimitRequestFieldSize` or
/// `LimitRequestFields`; the connection's other streams go on.
const FIELDS_TOO_LARGE: Local = Local {
    status: 431,
    reason: "Request Header Fields Too Large",
    close: false,
    extra: None,
};

/// mod_http2's checks of a request's fields (`h2_stream_add_header`): at
/// most `LimitRequestFields` field lines, and each field within
/// `LimitRequestFieldSize` as `name: value` — a name sent several times
/// counted as the one field its values are joined into (`, `), as mod_http2
/// joins them before it checks. HTTP/1 checks the same limits as it
/// parses a head; the h2 crate bounds only the whole list (`max_head`),
/// which would let a single field a hundred times the limit through.
fn within_field_limits(headers: &http::HeaderMap, limits: &Limits) -> Result<(), String> {
    if headers.len() > limits.fields {
        return Err(format!(
            "Number of request headers exceeds LimitRequestFields ({} > {})",
            headers.len(),
            limits.fields
        ));
    }
    for name in headers.keys() {
        let (lines, bytes) = headers
            .get_all(name)
            .iter()
            .fold((0, 0), |(lines, bytes), v| (lines + 1, bytes + v.len()));
        let size = name.as_str().len() + 2 + bytes + 2 * (lines - 1);
        if size > limits.field_size {
            return Err(format!(
                "Request header exceeds LimitRequestFieldSize: {name} ({size} > {})",
                limits.field_size
            ));
        }
    }
    Ok(())
}

/// The client's end of a connection, with Apache's `Timeout` on sending:
/// once a write or flush has to wait, the socket must become writable
/// within `Timeout`, or the write fails and the connection with it. The h2
/// crate reads no frame while the answer it owes (a SETTINGS or PING ACK,
/// a response) cannot be written, which bounds what a flood of SETTINGS or
/// PING frames costs; but a client that never reads would then hold its
/// connection, stalled, for ever — as would any client that stops reading
/// with answers pending.
///
/// The deadline is checked before the write is tried again: a client that
/// reads nothing still lets its kernel take a few bytes now and then, which
/// a retry would count as progress. Like Apache's wait for the socket to
/// be writable, only being woken by the socket (or by the connection's own
/// work) in time counts.
struct SendTimeout<S> {
    io: S,
    timeout: Duration,
    /// Runs from the first write that had to wait, until one does not.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when a write failed for waiting `Timeout` (the h2 crate keeps
    /// only the kind and text of an I/O error).
    expired: Arc<AtomicBool>,
}

impl<S: Unpin> SendTimeout<S> {
    fn new(io: S, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        SendTimeout {
            io,
            timeout,
            stalled: None,
            expired,
        }
    }

    /// Tries `write` unless the wait it is part of has lasted `Timeout`.
    fn within_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(stalled) = self.stalled.as_mut() {
            if stalled.as_mut().poll(cx).is_ready() {
                self.expired.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client's socket took nothing for Timeout",
                )));
            }
        }
        let progress = write(Pin::new(&mut self.io), cx);
        if progress.is_ready() {
            self.stalled = None;
        } else if self.stalled.is_none() {
            let mut stalled = Box::pin(tokio::time::sleep(self.timeout));
            // Registers the wake-up at the deadline.
            let _ = stalled.as_mut().poll(cx);
            self.stalled = Some(stalled);
        }
        progress
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.within_deadline(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.within_deadline(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.within_deadline(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.within_deadline(cx, |io, cx| io.poll_shutdown(cx))
    }
}

/// One stream of a connection.
struct Stream {
    shared: Arc<Shared>,
    facts: ConnFacts,
    tls: TlsFacts,
    tally: Arc<Tally>,
    /// `H2StreamTimeout`, when set.
    stream_timeout: Option<Duration>,
}

impl Stream {
    async fn serve(self, request: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
        let current = self.shared.current();
        let generation = current.generation.clone();
        let visit =
            (!generation.config.access_logs.is_empty()).then(|| Visit::now(0, "HTTP/2.0", (0, 0)));
        let (parts, body) = request.into_parts();
        let websocket = parts.method == http::Method::CONNECT
            && parts
                .extensions
                .get::<h2::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        let key = websocket.then(websocket_key);
        let mut down = H2Downstream {
            respond: Some(respond),
            send: None,
            recv: body,
            websocket_accept: key.as_deref().map(websocket_accept),
            cancelled: false,
            stream_timeout: self.stream_timeout,
        };
        let config = &generation.config;
        // mod_http2 holds `:path` to LimitRequestLine (414), then the
        // fields to their limits (431).
        let path = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        let refused = if path > config.limits.request_line {
            let limit = config.limits.request_line;
            Some((
                URI_TOO_LONG,
                format!(":path of {path} bytes exceeds LimitRequestLine ({limit})"),
            ))
        } else {
            within_field_limits(&parts.headers, &config.limits)
                .err()
                .map(|why| (FIELDS_TOO_LARGE, why))
        };
        if let Some((answer, why)) = refused {
            tracing::info!(peer = %self.facts.peer, "{why}: {}", answer.status);
            let host = parts.uri.authority().map(|a| a.as_str());
            let server = crate::route::select_server(config, self.facts.local, host);
            let signed = super::signature::signed(config, server, host, true);
            request::answer_local(&mut down, answer, config.timeout, &signed).await;
            self.tally.answered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let head = request_head(&parts, key.as_deref(), !down.recv.is_end_stream());
        if websocket {
            tracing::debug!(peer = %self.facts.peer, path = %head.target, "WebSocket over an HTTP/2 stream");
        }
        let outcome = request::handle(
            &mut down,
            head,
            &current,
            &self.shared,
            ConnFacts {
                keepalive: current.generation.config.keepalive,
                ..self.facts
            },
            Some(&self.tls),
            visit.as_ref(),
        )
        .await;
        drop(generation);
        drop(current);
        let count = if down.cancelled {
            &self.tally.cancelled
        } else {
            &self.tally.answered
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Tunnel(start) = outcome {
            self.tunnel(down, *start).await;
        }
    }

    /// The stream becomes one side of a byte tunnel with the backend that
    /// switched protocols.
    async fn tunnel(self, down: H2Downstream, start: TunnelStart) {
        let TunnelStart {
            mut backend,
            mode,
            slot,
            timeout,
            busy,
            log,
            frames,
            ping,
            tunnel: info,
        } = start;
        let Some(send) = down.send else {
            super::logging::ended_early(log, super::tunnel::Who::Client);
            return;
        };
        let mut client = H2Io {
            send,
            recv: down.recv,
            pending: Bytes::new(),
            ended: false,
        };
        // Bytes the backend sent after its 101 go first.
        let mut early_down = Bytes::new();
        if !backend.buf.is_empty() {
            early_down = backend.buf.split().freeze();
            if send_all(&mut client.send, early_down.clone(), timeout)
                .await
                .is_err()
            {
                super::logging::ended_early(log, super::tunnel::Who::Client);
                return;
            }
        }
        let backend = backend.into_io();
        let guard = super::server::stream_guard(&self.shared);
        let life = park::Life::new(self.shared.clone(), guard, slot, busy, info, log);
        let parker = self.shared.parker();
        let mut tunnel = Tunnel::new(client, backend, mode).tracking(frames, ping);
        tunnel.followed(&[], &early_down);
        park::TunnelTask::start(tunnel, life, parker).await;
    }
}

/// The head routing and rules read, from an HTTP/2 request, as mod_http2
/// hands it on: its method and path, `Host` from `:authority`, field names
/// written as HTTP/1.1 writes them, fields of one name merged, and for an
/// RFC 8441 WebSocket (`websocket_key`: ours, for the backend) the
/// HTTP/1.1 upgrade the backend is asked for. A stream still open after
/// its HEADERS, without a Content-Length, has a body of unknown length:
/// chunked, as mod_http2 marks it.
fn request_head(
    parts: &http::request::Parts,
    websocket_key: Option<&str>,
    has_body: bool,
) -> RequestHead {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = if websocket_key.is_some() {
        "GET"
    } else {
        parts.method.as_str()
    };
    let mut fields = HeaderFields::with_capacity(parts.headers.len() + 4);
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            fields.push((
                "Host".into(),
                FieldValue::copy_from_slice(authority.as_str().as_bytes()),
            ));
        }
    }
    for (name, value) in &parts.headers {
        // mod_http2 keeps a request's fields in a table that merges a
        // name's later values into its first field (apr_table_mergen):
        // `, ` between them, `; ` between cookies (RFC 9113 §8.2.3).
        let first = fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name.as_str()));
        if let Some(at) = first {
            let separator: &[u8] = if name == http::header::COOKIE {
                b"; "
            } else {
                b", "
            };
            let mut merged = fields[at].1.to_vec();
            merged.extend_from_slice(separator);
            merged.extend_from_slice(value.as_bytes());
            fields[at].1 = merged.into();
            continue;
        }
        fields.push((
            http1_name(name.as_str()),
            FieldValue::copy_from_slice(value.as_bytes()),
        ));
    }
    if let Some(key) = websocket_key {
        fields.push(("Upgrade".into(), FieldValue::from_static(b"websocket")));
        fields.push(("Connection".into(), FieldValue::from_static(b"Upgrade")));
        fields.push((
            "Sec-WebSocket-Key".into(),
            FieldValue::copy_from_slice(key.as_bytes()),
        ));
    }
    // An extended CONNECT's stream stays open too; its body ends at once
    // (`body_piece`), so the backend is sent `Content-Length: 0`, as
    // mod_http2 and mod_proxy_http send it.
    if has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        fields.push((
            "Transfer-Encoding".into(),
            FieldValue::from_static(b"chunked"),
        ));
    }
    RequestHead {
        method: Text::from(method),
        target: Text::from(target),
        version: Version::HTTP_11,
        headers: Headers { fields },
    }
}

/// An HTTP/2 field name (lower case, RFC 9113 §8.2.1) as mod_http2 writes
/// it for HTTP/1.1 (`h2_util_camel_case_header`): the first letter and each
/// one after a `-` in upper case, the rest as received (`user-agent` →
/// `User-Agent`, `sec-websocket-version` → `Sec-Websocket-Version`). Names
/// are case-insensitive, but backends behind Apache see these spellings,
/// and some compare names as written.
fn http1_name(name: &str) -> Text {
    let mut out = String::with_capacity(name.len());
    let mut start = true;
    for c in name.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = c == '-';
    }
    Text::from(out.as_str())
}

/// A fresh `Sec-WebSocket-Key` for the backend: 16 random bytes, base64.
fn websocket_key() -> String {
    let mut nonce = [0u8; 16];
    let random = rustls::crypto::ring::default_provider().secure_random;
    if random.fill(&mut nonce).is_err() {
        // The key only has to differ between handshakes.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nonce = now.to_le_bytes();
    }
    base64(&nonce)
}

/// The `Sec-WebSocket-Accept` a backend answers `key` with (RFC 6455
/// §4.2.2): base64 of the SHA-1 of the key and the protocol's GUID.
fn websocket_accept(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64(digest.as_ref())
}

/// What a WebSocket's stream is answered when the backend answers its
/// upgrade; mod_http2 decides the same way (`h2_ws.c`). RFC 8441 defines
/// no answer for a backend that does not switch, but a 2xx cannot be
/// relayed: it tells the client its WebSocket is open (§5).
#[derive(Debug, PartialEq)]
enum WebSocketAnswer {
    /// 200: the stream carries the WebSocket from here on.
    Open,
    /// 502, no body: a 101 without the `Sec-WebSocket-Accept` our key
    /// asks for, or a 2xx (a plain HTTP resource).
    BadGateway,
    /// 3xx, 4xx, 5xx: relayed as they are.
    Relay,
}

fn websocket_answer(status: u16, accept: Option<&[u8]>, expected: &str) -> WebSocketAnswer {
    match status {
        101 if accept == Some(expected.as_bytes()) => WebSocketAnswer::Open,
        101 | 200..=299 => WebSocketAnswer::BadGateway,
        _ => WebSocketAnswer::Relay,
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The client side of a stream: its body as DATA frames, its answer as a
/// response and DATA frames.
struct H2Downstream {
    respond: Option<SendResponse<Bytes>>,
    /// The response's body, once its head is sent.
    send: Option<SendStream<Bytes>>,
    recv: RecvStream,
    /// For an RFC 8441 WebSocket, the `Sec-WebSocket-Accept` the backend's
    /// 101 must carry.
    websocket_accept: Option<String>,
    /// The client reset the stream before its answer was sent.
    cancelled: bool,
    /// `H2StreamTimeout`: how long a read of the request's body or a wait
    /// for the client's window may take, instead of `Timeout`.
    stream_timeout: Option<Duration>,
}

impl H2Downstream {
    /// Sends a response head; the body follows on the stream returned.
    fn respond(&mut self, status: u16, fields: &HeaderFields, end: bool) -> io::Result<()> {
        let respond = self
            .respond
            .as_mut()
            .ok_or_else(|| io::Error::other("a response was sent already"))?;
        let response = response(status, fields)?;
        let send = match respond.send_response(response, end) {
            Ok(send) => send,
            Err(e) => {
                self.cancelled |= e.is_reset() && e.is_remote();
                return Err(io::Error::other(e));
            }
        };
        self.respond = None;
        self.send = Some(send);
        Ok(())
    }

    fn stream(&mut self) -> io::Result<&mut SendStream<Bytes>> {
        self.send
            .as_mut()
            .ok_or_else(|| io::Error::other("no response head was sent"))
    }
}

/// An `http::Response` with `fields`, without those HTTP/2 forbids.
fn response(status: u16, fields: &HeaderFields) -> io::Result<http::Response<()>> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in fields {
        if CONNECTION_SPECIFIC
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
        {
            continue;
        }
        let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes());
        let value = http::HeaderValue::from_bytes(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            builder = builder.header(name, value);
        }
    }
    builder.body(()).map_err(io::Error::other)
}

impl H2Downstream {
    /// How long one wait on the stream may take: `H2StreamTimeout`, else
    /// what the request path gives (`Timeout`).
    fn wait(&self, timeout: Duration) -> Duration {
        self.stream_timeout.unwrap_or(timeout)
    }
}

impl Downstream for H2Downstream {
    async fn body_piece(
        &mut self,
        reader: &mut BodyReader,
        timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
        // A request framed as bodiless has no body to read, whatever the
        // stream does next.
        if reader.is_done() {
            return Ok(None);
        }
        // An extended CONNECT's request ends with its head, as mod_http2
        // ends it (an end of body without the end of the stream,
        // `h2_ws.c`): the DATA that follows is the WebSocket.
        if self.websocket_accept.is_some() {
            reader.ended();
            return Ok(None);
        }
        let timeout = self.wait(timeout);
        match tokio::time::timeout(timeout, self.recv.data()).await {
            Err(_) => Err(BodyError::Stalled),
            Ok(None) => {
                reader.ended();
                Ok(None)
            }
            Ok(Some(Ok(piece))) => {
                let _ = self.recv.flow_control().release_capacity(piece.len());
                reader.took(piece.len());
                Ok(Some(piece))
            }
            Ok(Some(Err(e))) => {
                self.cancelled |= e.is_reset() && e.is_remote();
                Err(BodyError::Io(io::Error::other(e)))
            }
        }
    }

    async fn send_answer(&mut self, answer: &LocalAnswer, timeout: Duration) -> io::Result<()> {
        let timeout = self.wait(timeout);
        let mut fields = answer.fields.clone();
        with_date(|date| {
            fields.push(("date".into(), FieldValue::copy_from_slice(date.as_bytes())))
        });
        self.respond(answer.status, &fields, answer.body.is_empty())?;
        if !answer.body.is_empty() {
            let stream = self.stream()?;
            send_all(stream, Bytes::copy_from_slice(&answer.body), timeout).await?;
            stream
                .send_data(Bytes::new(), true)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    async fn send_interim(&mut self, resp: &ResponseHead, _timeout: Duration) -> io::Result<()> {
        let Some(respond) = self.respond.as_mut() else {
            return Ok(());
        };
        let head = response(resp.status, &resp.headers.fields)?;
        respond.send_informational(head).map_err(io::Error::other)
    }

    async fn send_head(
        &mut self,
        resp: &ResponseHead,
        c: &ClientResponse<'_>,
        first: Option<Bytes>,
        timeout: Duration,
    ) -> io::Result<()> {
        if let Some(expected) = &self.websocket_accept {
            let accept = resp.headers.get("sec-websocket-accept");
            match websocket_answer(resp.status, accept, expected) {
                WebSocketAnswer::Open => {
                    // Its 200 carries the backend's fields as any response
                    // does (the chosen Sec-WebSocket-Protocol and
                    // -Extensions, cookies...), as mod_http2's does,
                    // without Sec-WebSocket-Accept: it answers our key,
                    // which the client never saw.
                    let mut fields =
                        with_date(|date| headers::client_fields(resp, c, date.as_bytes()));
                    fields.retain(|(name, _)| !name.eq_ignore_ascii_case("sec-websocket-accept"));
                    return self.respond(200, &fields, false);
                }
                WebSocketAnswer::BadGateway => {
                    tracing::info!(
                        status = resp.status,
                        "the backend did not switch to WebSocket (or without our Sec-WebSocket-Accept): 502 on the HTTP/2 stream"
                    );
                    let mut fields = HeaderFields::new();
                    with_date(|date| {
                        fields.push(("date".into(), FieldValue::copy_from_slice(date.as_bytes())))
                    });
                    fields.push(("content-length".into(), FieldValue::from_static(b"0")));
                    self.respond(502, &fields, true)?;
                    // The stream is answered: nothing more of this
                    // exchange goes to the client, and the backend
                    // connection is dropped.
                    return Err(io::Error::other("the backend did not switch to WebSocket"));
                }
                WebSocketAnswer::Relay => {}
            }
        }
        let fields = with_date(|date| headers::client_fields(resp, c, date.as_bytes()));
        self.respond(resp.status, &fields, false)?;
        if let Some(first) = first {
            let timeout = self.wait(timeout);
            send_all(self.stream()?, first, timeout).await?;
        }
        Ok(())
    }

    async fn send_piece(
        &mut self,
        piece: &Bytes,
        _encoding: Encoding,
        timeout: Duration,
    ) -> io::Result<()> {
        let timeout = self.wait(timeout);
        send_all(self.stream()?, piece.clone(), timeout).await
    }

    async fn finish(&mut self, _encoding: Encoding, _timeout: Duration) -> io::Result<()> {
        self.stream()?
            .send_data(Bytes::new(), true)
            .map_err(io::Error::other)
    }
}

/// Sends `data` as the peer's flow-control window allows, within `timeout`
/// for each wait.
async fn send_all(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    timeout: Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let capacity = tokio::time::timeout(timeout, poll_fn(|cx| stream.poll_capacity(cx)))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
        let n = match capacity {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        if n == 0 {
            continue;
        }
        let piece = data.split_to(n.min(data.len()));
        stream.send_data(piece, false).map_err(io::Error::other)?;
    }
    Ok(())
}

/// A stream as a byte stream, for the tunnel: reads its DATA frames
/// (giving their window back as they are read), writes DATA frames as the
/// peer's window allows, and ends the stream on shutdown (a half-close).
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received bytes not read yet.
    pending: Bytes,
    ended: bool,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = buf.remaining().min(self.pending.len());
        let piece = self.pending.split_to(n);
        buf.put_slice(&piece);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    let piece = Bytes::copy_from_slice(&buf[..n]);
                    self.send
                        .send_data(piece, false)
                        .map_err(io::Error::other)?;
                    return Poll::Ready(Ok(n));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.send
                .send_data(Bytes::new(), true)
                .map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsTcp for H2Io {
    fn as_tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

impl Parkable for H2Io {
    fn into_parked(self) -> park::Park<Self> {
        park::Park::Failed(io::Error::other(
            "an HTTP/2 stream cannot leave its connection",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_floods_when_cancelled_streams_pass_the_limit_and_the_answered() {
        let tally = Tally::default();
        tally.cancelled.store(MAX_CANCELLED, Ordering::Relaxed);
        assert!(!tally.flooding(), "at the limit");
        tally.cancelled.store(MAX_CANCELLED + 1, Ordering::Relaxed);
        assert!(tally.flooding());
        tally.answered.store(5_000, Ordering::Relaxed);
        assert!(
            !tally.flooding(),
            "a busy client that cancels some of many streams"
        );
    }

    #[test]
    fn fields_are_checked_as_mod_http2_checks_them() {
        let limits = Limits {
            field_size: 20,
            fields: 3,
            ..Limits::default()
        };
        let headers = |fields: &[(&str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in fields {
                map.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        let check = |fields: &[(&str, &str)]| within_field_limits(&headers(fields), &limits);
        // "x-a: " and 15 bytes: 20.
        assert!(check(&[("x-a", "123456789012345")]).is_ok());
        let over = check(&[("x-a", "1234567890123456")]).unwrap_err();
        assert!(
            over.contains("LimitRequestFieldSize: x-a (21 > 20)"),
            "{over}"
        );
        // Joined as "1234567, 123456": 5 + 7 + 2 + 6 = 20.
        assert!(check(&[("x-a", "1234567"), ("x-a", "123456")]).is_ok());
        assert!(check(&[("x-a", "1234567"), ("x-a", "1234567")]).is_err());
        // Every line counts, repeated names too.
        assert!(check(&[("x-a", "1"), ("x-a", "2"), ("x-b", "3")]).is_ok());
        let many = check(&[("x-a", "1"), ("x-a", "2"), ("x-b", "3"), ("x-c", "4")]).unwrap_err();
        assert!(many.contains("LimitRequestFields (4 > 3)"), "{many}");
        let unlimited = Limits {
            fields: usize::MAX,
            ..limits
        };
        let lots = headers(&[("x-a", "1"); 200]);
        assert!(
            within_field_limits(&lots, &unlimited).is_err(),
            "joined, too long"
        );
        let lots: Vec<(String, &str)> = (0..200).map(|i| (format!("x-{i}"), "1")).collect();
        let lots: Vec<(&str, &str)> = lots.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert!(within_field_limits(&headers(&lots), &unlimited).is_ok());
    }

    #[test]
    fn base64_as_rfc_4648_writes_it() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(websocket_key().len(), 24);
    }

    #[test]
    fn websocket_accept_as_rfc_6455_computes_it() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_websocket_stream_opens_only_on_a_101_with_our_accept() {
        use WebSocketAnswer::*;
        let ok = Some(&b"right"[..]);
        let cases: &[(u16, Option<&[u8]>, WebSocketAnswer)] = &[
            (101, ok, Open),
            (101, Some(b"wrong"), BadGateway),
            (101, None, BadGateway),
            (200, ok, BadGateway),
            (204, None, BadGateway),
            (302, None, Relay),
            (403, None, Relay),
            (426, None, Relay),
            (502, None, Relay),
        ];
        for (status, accept, answer) in cases {
            assert_eq!(
                &websocket_answer(*status, *accept, "right"),
                answer,
                "status {status}, accept {accept:?}"
            );
        }
    }

    #[test]
    fn a_stream_becomes_the_head_mod_http2_hands_on() {
        let request = http::Request::builder()
            .method("POST")
            .uri("https://a.test:8443/x/y?z=1")
            .header("cookie", "a=1")
            .header("x-one", "1")
            .header("cookie", "b=2")
            .header("accept", "text/html")
            .header("accept", "*/*")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let head = request_head(&parts, None, true);
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/x/y?z=1");
        assert_eq!(head.version, Version::HTTP_11);
        let fields: Vec<(String, String)> = head
            .headers
            .fields
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Host", "a.test:8443"),
                ("Cookie", "a=1; b=2"),
                ("X-One", "1"),
                ("Accept", "text/html, */*"),
                ("Sec-Websocket-Version", "13"),
                ("Transfer-Encoding", "chunked"),
            ]
        );
        let request = http::Request::builder()
            .method("CONNECT")
            .uri("https://a.test/chat")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let head = request_head(&parts, Some("dGhlIHNhbXBsZSBub25jZQ=="), true);
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/chat");
        assert_eq!(head.headers.get_str("upgrade"), Some("websocket"));
        assert_eq!(head.headers.get_str("connection"), Some("Upgrade"));
        assert_eq!(
            head.headers.get_str("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert_eq!(head.headers.get_str("transfer-encoding"), Some("chunked"));
    }
}
