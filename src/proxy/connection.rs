//! A client connection's life: read a request head, hand it to `request`,
//! and loop while keep-alive allows; after a protocol switch, hand the
//! connection's task a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::{Conn, HeadError, HeadTimes, KeepAliveNote};
use super::forward::{Outcome, TunnelStart};
pub use super::header_rules::ConnFacts;
use super::logging::{self, Visit};
use super::park::{self, Parkable};
use super::request;
use super::server::{ConnGuard, Current, Shared};
use super::signature;
use super::tls::TlsFacts;
use super::tunnel::{Tunnel, Who};
use crate::config::model::identity::ReadStage;
use crate::config::Config;
use crate::http::h1::{self, RequestError};
use crate::http::write::{local_answer, local_response_because};
use tokio::net::TcpStream;

/// mod_reqtimeout's header stage for a connection to `local`: its
/// address's server's (`c->base_server`), none when that server turns
/// every stage off.
fn header_stage(config: &Config, local: SocketAddr) -> Option<ReadStage> {
    let t = &crate::route::select_server(config, local, None).read_timeouts;
    (t.any() && !t.header.is_off()).then_some(t.header)
}

/// Serves one client connection: requests until it closes, or until a
/// protocol switch, when it hands the tunnel to its task
/// ([`park::Connection`]) rather than running it inside this (much larger)
/// future.
pub async fn serve<S>(
    io: S,
    facts: ConnFacts,
    tls: Option<TlsFacts>,
    shared: Arc<Shared>,
    guard: ConnGuard,
) -> Option<park::TunnelTask<S>>
where
    S: Parkable + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut client = Conn::with_timer(io);
    let mut first = true;
    let mut shutdown = shared.shutdown_signal();
    let mut served: u32 = 0;
    loop {
        let current = shared.current();
        let generation = &current.generation;
        let config = &generation.config;
        let before = client.traffic();
        let times = HeadTimes {
            idle: (!first).then_some(config.keepalive_timeout),
            stage: header_stage(config, facts.local),
            per_read: config.timeout,
        };
        let max_head = config.limits.max_head();
        let head_bytes = tokio::select! {
            r = client.read_request_head(max_head, &times) => r,
            _ = shutdown.changed(), if !first && client.buf.is_empty() => return None,
        };
        let head_bytes = match head_bytes {
            Ok(h) => h,
            Err(HeadError::Closed | HeadError::Truncated | HeadError::Io(_)) => return None,
            // KeepAliveTimeout: no request began.
            Err(HeadError::Timeout { waiting: true, .. }) => return None,
            // As Apache: a head whose request line came gets 408; without
            // one the connection closes unanswered, logged as a 408 with
            // no request line when it was the connection's first.
            Err(HeadError::Timeout { .. }) => {
                tracing::info!(peer = %facts.peer, "AH01382: Request header read timeout");
                let raw = client.buf.split().freeze();
                if has_request_line(&raw) {
                    refuse(
                        &mut client,
                        408,
                        "Request Timeout",
                        &raw,
                        &current,
                        facts,
                        before,
                    )
                    .await;
                } else if first {
                    let visit = Visit::now(0, "HTTP/1.1", before);
                    let traffic = client.traffic();
                    logging::write_unread(
                        config,
                        &current.logs,
                        facts,
                        &visit,
                        408,
                        b"",
                        0,
                        traffic,
                    );
                }
                return None;
            }
            Err(HeadError::TooLarge) => {
                let raw = client.buf.split().freeze();
                refuse(
                    &mut client,
                    400,
                    "Bad Request",
                    &raw,
                    &current,
                    facts,
                    before,
                )
                .await;
                return None;
            }
        };
        let head_bytes = head_bytes.freeze();
        let head = match h1::parse_request(&head_bytes, &config.limits) {
            Ok(h) => h,
            Err(e) => {
                let (status, reason) = match e {
                    RequestError::Malformed(why) => {
                        tracing::debug!(peer = %facts.peer, "400: {why}");
                        (400, "Bad Request")
                    }
                    RequestError::UriTooLong => (414, "Request-URI Too Long"),
                    RequestError::Version => (505, "HTTP Version Not Supported"),
                };
                refuse(
                    &mut client,
                    status,
                    reason,
                    &head_bytes,
                    &current,
                    facts,
                    before,
                )
                .await;
                return None;
            }
        };
        drop(head_bytes);
        first = false;
        // The clock is read only for a log.
        let visit =
            (!config.access_logs.is_empty()).then(|| Visit::now(served, protocol(&head), before));
        served = served.saturating_add(1);
        // Apache keeps a connection open after its first request and the
        // MaxKeepAliveRequests after it; the last answer says close.
        let max = config.max_keepalive_requests;
        let facts = ConnFacts {
            keepalive: config.keepalive && (max == 0 || served <= max),
            ..facts
        };
        client.keep_alive = keep_alive_note(&head, facts.keepalive, config, served);
        match request::handle(
            &mut client,
            head,
            &current,
            &shared,
            facts,
            tls.as_ref(),
            visit.as_ref(),
        )
        .await
        {
            Outcome::KeepAlive if facts.keepalive => {
                if *shutdown.borrow() {
                    return None;
                }
            }
            Outcome::KeepAlive | Outcome::Close => return None,
            Outcome::Tunnel(start) => return run_tunnel(client, *start, shared, guard).await,
        }
    }
}

/// Answers a request whose head could not be read, and logs it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Conn<S>,
    status: u16,
    reason: &str,
    raw: &[u8],
    current: &Current,
    facts: ConnFacts,
    before: (u64, u64),
) {
    let visit = Visit::now(0, "HTTP/1.1", before);
    let config = &current.generation.config;
    let server = crate::route::select_server(config, facts.local, None);
    let signed = signature::signed(config, server, None, facts.https);
    let answer = local_answer(status, reason, &[], true, &signed, &mut |_| {});
    let _ = client.write_all(&answer.to_h1(), config.timeout).await;
    let body = answer.body.len() as u64;
    let traffic = client.traffic();
    logging::write_unread(
        config,
        &current.logs,
        facts,
        &visit,
        status,
        raw,
        body,
        traffic,
    );
}

/// Whether a whole request line came (after the empty lines Apache skips
/// before one).
fn has_request_line(raw: &[u8]) -> bool {
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    raw[start..].contains(&b'\n')
}

/// `%H`: the request's protocol as written.
fn protocol(head: &crate::http::RequestHead) -> &'static str {
    if head.version >= crate::http::Version::HTTP_11 {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    }
}

/// A client that spoke plain HTTP to a TLS address: as mod_ssl, the
/// request is not served; the answer is Apache's 400, and the connection
/// closes (after reading what the client still sends, for a while, so that
/// the answer is not lost to a reset).
pub async fn refuse_plain_http(stream: TcpStream, config: &Config) {
    let server = match stream.local_addr() {
        Ok(local) => crate::route::select_server(config, local, None),
        Err(_) => &config.main,
    };
    let signed = signature::signed(config, server, None, true);
    let mut client = Conn::new(stream);
    let t = config.timeout;
    let answer = local_response_because(
        400,
        "Bad Request",
        "Your browser sent a request that this server could not understand.<br />\nReason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n Instead use the HTTPS scheme to access this URL, please.",
        true,
        &signed,
    );
    if client.write_all(&answer, t).await.is_err() {
        return;
    }
    close_gracefully(client.into_io()).await;
}

/// Closes a connection whose peer may still be sending: a FIN first, then
/// what arrives is read and dropped for a while, so that the close is not
/// a reset that could destroy what was sent before it.
pub async fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown().await.is_ok() {
        let mut sink = [0u8; 4096];
        let linger = async { while matches!(stream.read(&mut sink).await, Ok(1..)) {} };
        let _ = tokio::time::timeout(PLAIN_HTTP_LINGER, linger).await;
    }
}

/// How long a refused plain-HTTP client may go on sending before its
/// connection closes.
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(2);

/// Sends the bytes that arrived with the heads (S54), then gives the
/// tunnel back to the connection's task.
async fn run_tunnel<S>(
    mut client: Conn<S>,
    start: TunnelStart,
    shared: Arc<Shared>,
    guard: ConnGuard,
) -> Option<park::TunnelTask<S>>
where
    S: Parkable + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    // Bytes that arrived with the heads go first (S54).
    let early_up = client.buf.split();
    if !early_up.is_empty()
        && (backend.write_all(&early_up, timeout).await.is_err()
            || backend.flush(timeout).await.is_err())
    {
        logging::ended_early(log, Who::Backend);
        return None;
    }
    let early_down = backend.buf.split();
    if !early_down.is_empty()
        && (client.write_all(&early_down, timeout).await.is_err()
            || client.flush(timeout).await.is_err())
    {
        logging::ended_early(log, Who::Client);
        return None;
    }
    // Let the head-reading buffers go before the long wait: a partial move
    // out of `client` would keep its buffer alive until this task ends.
    let client = client.into_io();
    let backend = backend.into_io();
    let mut tunnel = Tunnel::new(client, backend, mode).tracking(frames, ping);
    // The frame tracker starts where the streams are: after those bytes.
    tunnel.followed(&early_up, &early_down);
    drop((early_up, early_down));
    let parker = shared.parker();
    Some(park::TunnelTask::start(
        tunnel,
        park::Life::new(shared, guard, slot, busy, info, log),
        parker,
    ))
}

/// Apache answers a `Connection: keep-alive` it keeps the connection for
/// with how long and for how many more requests (`served` counts this
/// one).
fn keep_alive_note(
    head: &crate::http::RequestHead,
    keepalive: bool,
    config: &crate::config::Config,
    served: u32,
) -> KeepAliveNote {
    if !keepalive || !head.headers.has_token("connection", "keep-alive") {
        return KeepAliveNote::default();
    }
    let max = config.max_keepalive_requests;
    KeepAliveNote {
        timeout_secs: u16::try_from(config.keepalive_timeout.as_secs()).unwrap_or(u16::MAX),
        left: if max == 0 {
            u32::MAX
        } else {
            max.saturating_sub(served - 1)
        },
    }
}
