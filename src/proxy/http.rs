//! One client connection: read a request head, route it, proxy it (plain,
//! or as an upgrade that may become a tunnel), and loop while keep-alive
//! allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{BodyError, BodyReader};
use super::conn::{Conn, HeadError};
use super::error::ProxyError;
use super::headers::{self, BodyHeader, ClientResponse, ConnectionHeader, Forwarding};
use super::park::{self, Parkable};
use super::server::{ConnGuard, Shared};
use super::tunnel::{self, Tunnel};
use super::upgrade::{self, Plan};
use crate::balancer::{self, Busy};
use crate::config::model::balancer::{Balancer, BalancerIdx};
use crate::config::{Server, WorkerRef};
use crate::http::body::{self, Encoding, Framing};
use crate::http::h1::{self as head, RequestError};
use crate::http::write::{local_response, local_response_with};
use crate::http::{FieldValue, HeaderFields, RequestHead, TargetUrl, Text, Version};
use crate::route::{self, Decision, Mapped, PathError};
use crate::rules::{self, Env, HeaderRule};
use crate::upstream::{
    self, BackendConn, BackendStream, ConnectSpec, Generation, PoolKey, Slot, WorkerView,
};

/// Apache's default for how much of a request body is read before
/// connecting, to send a small chunked body with a Content-Length (S41).
const PREFETCH: usize = 16 * 1024;
/// More interim responses than this from a backend is an error (S55).
const MAX_INTERIM: usize = 10;
/// How long the rest of a head may take once its first byte arrived
/// (mod_reqtimeout's default `header=20`).
const HEAD_COMPLETION: Duration = Duration::from_secs(20);

/// Facts about the client connection.
#[derive(Clone, Copy)]
pub struct ConnFacts {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

enum Outcome {
    KeepAlive,
    Close,
    Tunnel(Box<TunnelStart>),
}

/// What the request handler hands over when a backend switched protocols.
struct TunnelStart {
    backend: Conn<BackendStream>,
    mode: tunnel::Mode,
    slot: Slot,
    timeout: Duration,
    /// A balancer member's busy count, held for the tunnel's life (S71).
    busy: Option<Busy>,
}

/// Serves one client connection: requests until it closes, or until a
/// protocol switch, when it hands the tunnel to its task
/// ([`park::Connection`]) rather than running it inside this (much larger)
/// future.
pub async fn serve<S>(
    io: S,
    facts: ConnFacts,
    shared: Arc<Shared>,
    guard: ConnGuard,
) -> Option<park::TunnelTask<S>>
where
    S: Parkable + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut client = Conn::with_timer(io);
    let mut first = true;
    let mut shutdown = shared.shutdown_signal();
    loop {
        let generation = shared.generation();
        let config = &generation.config;
        let wait = if first {
            config.timeout
        } else {
            config.keepalive_timeout
        };
        let max_head = config.limits.max_head();
        let head_bytes = tokio::select! {
            r = client.read_head(max_head, wait, HEAD_COMPLETION.min(config.timeout.max(Duration::from_secs(1)))) => r,
            _ = shutdown.changed(), if !first && client.buf.is_empty() => return None,
        };
        let head_bytes = match head_bytes {
            Ok(h) => h,
            Err(HeadError::Closed | HeadError::Truncated | HeadError::Io(_)) => return None,
            Err(HeadError::Timeout { started }) => {
                if started {
                    let _ = client
                        .write_all(
                            &local_response(408, "Request Timeout", &[], true),
                            config.timeout,
                        )
                        .await;
                }
                return None;
            }
            Err(HeadError::TooLarge) => {
                let _ = client
                    .write_all(
                        &local_response(400, "Bad Request", &[], true),
                        config.timeout,
                    )
                    .await;
                return None;
            }
        };
        let head_bytes = head_bytes.freeze();
        let head = match head::parse_request(&head_bytes, &config.limits) {
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
                let _ = client
                    .write_all(&local_response(status, reason, &[], true), config.timeout)
                    .await;
                return None;
            }
        };
        drop(head_bytes);
        first = false;
        match handle(&mut client, head, &generation, facts).await {
            Outcome::KeepAlive if config.keepalive => {
                if *shutdown.borrow() {
                    return None;
                }
            }
            Outcome::KeepAlive | Outcome::Close => return None,
            Outcome::Tunnel(start) => return run_tunnel(client, *start, shared, guard).await,
        }
    }
}

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
    } = start;
    // Bytes that arrived with the heads go first (S54).
    if !client.buf.is_empty() {
        let early = client.buf.split();
        if backend.write_all(&early, timeout).await.is_err()
            || backend.flush(timeout).await.is_err()
        {
            return None;
        }
    }
    if !backend.buf.is_empty() {
        let early = backend.buf.split();
        if client.write_all(&early, timeout).await.is_err() || client.flush(timeout).await.is_err()
        {
            return None;
        }
    }
    // Let the head-reading buffers go before the long wait: a partial move
    // out of `client` would keep its buffer alive until this task ends.
    let client = client.into_io();
    let backend = backend.into_io();
    let tunnel = Tunnel::new(client, backend, mode);
    let parker = shared.parker();
    Some(park::TunnelTask::start(
        tunnel,
        park::Life::new(shared, guard, slot, busy),
        parker,
    ))
}

/// Handles one request whose head has been read.
async fn handle<S>(
    client: &mut Conn<S>,
    mut head: RequestHead,
    generation: &Arc<Generation>,
    facts: ConnFacts,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &generation.config;
    // Host is required in HTTP/1.1 (S4).
    if head.version >= Version::HTTP_11 && !head.headers.contains("host") {
        return local_answer(client, 400, "Bad Request", true, config.timeout).await;
    }
    // RFC 9112 §3.2.2: an absolute-form target's authority replaces Host,
    // for choosing the vhost and everything after (as Apache does).
    if let Some(authority) = absolute_form_authority(&head.target) {
        let authority = authority.to_ascii_lowercase().into_bytes();
        match head
            .headers
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            Some((_, v)) => *v = authority.into(),
            None => head.headers.push("Host", authority),
        }
    }
    // A malformed Host is refused before anything reads it (Apache's
    // strict check): it would otherwise reach the backend as Host and
    // X-Forwarded-Host, and rules and logs.
    if head
        .headers
        .get("host")
        .is_some_and(|h| !crate::http::valid_host(h))
    {
        return local_answer(client, 400, "Bad Request", true, config.timeout).await;
    }
    // RFC 9112 §6.1: a request with both Content-Length and
    // Transfer-Encoding may be a smuggling attempt; answer it, then close.
    let close_after =
        head.headers.contains("content-length") && head.headers.contains("transfer-encoding");
    let outcome = handle_request(client, head, generation, facts).await;
    match outcome {
        Outcome::KeepAlive if close_after => Outcome::Close,
        other => other,
    }
}

/// `host[:port]` of an absolute-form request target.
fn absolute_form_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

/// Answers or proxies a request once its head is settled (Host known).
async fn handle_request<S>(
    client: &mut Conn<S>,
    mut head: RequestHead,
    generation: &Arc<Generation>,
    facts: ConnFacts,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &generation.config;
    let t = config.timeout;
    let local = |client, status, reason, close| local_answer(client, status, reason, close, t);
    let framing = match request_framing(&head, config.limits.body) {
        Ok(f) => f,
        Err(ProxyError::BodyTooLarge) => {
            return local(client, 413, "Content Too Large", true).await
        }
        // S5: a coding before chunked passes the core but mod_proxy_http
        // refuses it with 500.
        Err(ProxyError::UnsupportedTransferEncoding) => {
            return local(client, 500, "Internal Server Error", true).await
        }
        Err(_) => return local(client, 400, "Bad Request", true).await,
    };
    let has_body = framing != Framing::Empty;

    if head.target == "*" {
        if head.method == "OPTIONS" {
            return local(client, 200, "OK", has_body).await;
        }
        return local(client, 400, "Bad Request", true).await;
    }
    if head.method == "CONNECT" {
        // Apache forwards `CONNECT /` to the backend (S134); a reverse proxy
        // has no business tunnelling to an address the client names.
        let bytes = local_response(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD, POST, OPTIONS")],
            true,
        );
        let _ = client.write_all(&bytes, t).await;
        return Outcome::Close;
    }
    // Max-Forwards (S8).
    let mut max_forwards = None;
    if let Some(v) = head.headers.get_str("max-forwards") {
        match v.trim().parse::<u64>() {
            Ok(0) if head.method == "OPTIONS" || head.method == "TRACE" => {
                return local(client, 200, "OK", has_body).await;
            }
            Ok(0) => return local(client, 400, "Proxy Error", true).await,
            Ok(n) => max_forwards = Some(n - 1),
            Err(_) => return local(client, 400, "Bad Request", true).await,
        }
    }

    let path = match route::normalize(&head.target) {
        Ok(p) => p,
        Err(PathError::BadRequest) => return local(client, 400, "Bad Request", true).await,
        Err(PathError::NotFound) => return local(client, 404, "Not Found", has_body).await,
    };
    let host = head.headers.get_str("host");
    let server = route::select_server(config, facts.local, host);
    // Post-read-request (Apache's order): `RequestHeader … early`, then the
    // server's SetEnvIf rules, both before any mapping.
    let received = std::time::SystemTime::now();
    let started = std::time::Instant::now();
    let mut env = Env::default();
    {
        let facts_now = RuleFacts::new(&head, &env, &path, facts, server, None);
        let early: Vec<&HeaderRule> = server
            .rules
            .request
            .iter()
            .filter(|r| matches!(r.condition, rules::Condition::Early))
            .collect();
        if !early.is_empty() {
            let mut fields = head.headers.fields.clone();
            for rule in early {
                rule.apply(
                    &mut fields,
                    &facts_now.rule_facts(received, started, &head.headers.fields),
                );
            }
            head.headers.fields = fields;
        }
    }
    apply_setenvif(
        &server.rules.setenvif,
        &head,
        path.raw.as_bytes(),
        facts,
        &mut env,
    );
    // Answers made here after the server is known get its `Header always`
    // rules.
    macro_rules! answer {
        ($status:expr, $reason:expr, $close:expr) => {{
            let bytes = error_page(
                server,
                &head,
                &path,
                &env,
                facts,
                $status,
                $reason,
                $close,
                (received, started),
            );
            local_bytes(client, bytes, $close, t).await
        }};
    }
    let route_request = route::Request {
        method: &head.method,
        target: &head.target,
        version: if head.version >= Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        },
        headers: &head.headers.fields,
        path: &path,
        remote: facts.peer,
        local: facts.local,
        https: false,
    };
    let mapped = match route::decide(config, server, &route_request) {
        Decision::Proxy(m) => m,
        Decision::NotFound => return answer!(404, "Not Found", has_body),
        Decision::Forbidden => {
            tracing::warn!(peer = %facts.peer, "refused a mapped target with user information");
            return answer!(403, "Forbidden", true);
        }
        Decision::BadTarget => return answer!(400, "Bad Request", true),
        Decision::Redirect { status, location } => {
            let reason = crate::http::canonical_reason(status);
            let bytes = local_response(status, reason, &[("Location", &location)], has_body);
            return local_bytes(client, bytes, has_body, t).await;
        }
        Decision::Status(status) => {
            return answer!(status, crate::http::canonical_reason(status), true)
        }
    };

    // Fixups: the Locations' SetEnvIf, then SetEnv, then RequestHeader.
    for loc in &mapped.settings.location_rules {
        apply_setenvif(&loc.setenvif, &head, &path.decoded, facts, &mut env);
    }
    for (name, value) in server.rules.setenv.iter().chain(
        mapped
            .settings
            .location_rules
            .iter()
            .flat_map(|l| l.setenv.iter()),
    ) {
        match value {
            Some(v) => env.set(name, v.clone()),
            None => env.unset(name),
        }
    }
    let has_request_rules = !server.rules.request.is_empty()
        || mapped
            .settings
            .location_rules
            .iter()
            .any(|l| !l.request.is_empty());
    if has_request_rules {
        let f = RuleFacts::new(&head, &env, &path, facts, server, None);
        let rf = f.rule_facts(received, started, &head.headers.fields);
        let mut fields = head.headers.fields.clone();
        let request_rules = server.rules.request.iter().chain(
            mapped
                .settings
                .location_rules
                .iter()
                .flat_map(|l| l.request.iter()),
        );
        for rule in request_rules {
            if rule.applies(&rf, false) {
                rule.apply(&mut fields, &rf);
            }
        }
        head.headers.fields = fields;
    }
    let request = Request {
        head: &head,
        framing,
        mapped: &mapped,
        server,
        facts,
        max_forwards,
        path: &path,
        received,
        started,
    };
    let mut body = BodyState::new(framing);
    let mut tried: Vec<usize> = Vec::new();
    let result = loop {
        let backend = match choose_backend(generation, &mapped, &head, &path, &tried) {
            Ok(b) => b,
            Err(e) => break Err((e, false)),
        };
        let member = backend.member;
        let busy =
            member.map(|m| Busy::new(generation.balancer(m.balancer).members[m.index].clone()));
        if let Some(m) = member {
            // S103: what the balancer tells header rules and logs.
            let balancer = config.balancer(m.balancer);
            env.set("BALANCER_NAME", balancer.name.clone());
            env.set("BALANCER_WORKER_NAME", backend.worker.name.as_ref());
            env.set(
                "BALANCER_WORKER_ROUTE",
                balancer.members[m.index].route.clone().unwrap_or_default(),
            );
            if m.route_changed {
                env.set("BALANCER_ROUTE_CHANGED", "1");
            } else {
                env.unset("BALANCER_ROUTE_CHANGED");
            }
            if let (Some(route), Some((cookie, url))) = (&backend.session_route, &balancer.sticky) {
                let sticky = if cookie == url {
                    cookie.clone()
                } else {
                    format!("{cookie}|{url}")
                };
                env.set("BALANCER_SESSION_STICKY", sticky);
                env.set("BALANCER_SESSION_ROUTE", route.clone());
            }
        }
        let outcome = proxy(
            client, &request, &backend, &mut body, busy, &env, generation,
        )
        .await;
        let Some(m) = member else {
            break outcome;
        };
        let balancer = config.balancer(m.balancer);
        let fail = || {
            balancer::fail(
                balancer,
                m.index,
                generation.balancer(m.balancer),
                &backend.worker.name,
                backend.worker.params.retry,
            )
        };
        match &outcome {
            // S109: a member that cannot be connected to is put in error and
            // the request, not sent yet, goes to the next one.
            Err((ProxyError::Connect(_) | ProxyError::PoolExhausted, false)) => {
                fail();
                tried.push(m.index);
                if tried.len() < balancer.attempts() {
                    continue;
                }
            }
            // S111, S112, S126: these fail the member but are not retried.
            Err((ProxyError::TlsHandshake(_), _)) => fail(),
            Err((ProxyError::BackendTimeout, _)) if balancer.failontimeout => fail(),
            _ => {}
        }
        break outcome;
    };
    match result {
        Ok(outcome) => outcome,
        Err((e, answered)) => {
            if e.is_backend() {
                tracing::error!(peer = %facts.peer, route = %mapped.name(config), "{e}");
            } else {
                tracing::debug!(peer = %facts.peer, "{e}");
            }
            if !answered {
                if let Some(a) = e.answer() {
                    let _ = answer!(a.status, a.reason, true);
                }
            }
            Outcome::Close
        }
    }
}

struct Request<'a> {
    head: &'a RequestHead,
    framing: Framing,
    mapped: &'a Mapped<'a>,
    server: &'a Server,
    facts: ConnFacts,
    max_forwards: Option<u64>,
    path: &'a route::RequestPath,
    received: std::time::SystemTime,
    started: std::time::Instant,
}

/// The backend one attempt goes to: the mapping's, or a balancer member.
/// Borrowed from the mapping or the balancer: nothing is copied per request
/// but a balanced path.
struct Backend<'a> {
    worker: WorkerView<'a>,
    url: &'a TargetUrl,
    path_and_query: std::borrow::Cow<'a, str>,
    reuse: bool,
    member: Option<ChosenMember>,
    /// The sticky route the request carried.
    session_route: Option<String>,
}

/// A balancer member chosen for an attempt.
#[derive(Clone, Copy)]
struct ChosenMember {
    balancer: BalancerIdx,
    index: usize,
    route_changed: bool,
}

/// Picks the backend for an attempt, skipping balancer members `tried`.
fn choose_backend<'a>(
    generation: &'a Generation,
    mapped: &'a Mapped<'a>,
    head: &RequestHead,
    path: &route::RequestPath,
    tried: &[usize],
) -> Result<Backend<'a>, ProxyError> {
    let idx = match &mapped.backend {
        route::Backend::Balanced(b) => *b,
        route::Backend::Single { worker, url } => {
            return Ok(Backend {
                worker: generation.worker(*worker, url),
                url,
                path_and_query: std::borrow::Cow::Borrowed(&mapped.path_and_query),
                reuse: mapped.reuse,
                member: None,
                session_route: None,
            });
        }
    };
    let spec: &Balancer = generation.config.balancer(idx);
    let route = balancer::sticky_route(
        spec,
        &path.raw,
        path.query.as_deref(),
        head.headers.get_str("cookie"),
    );
    let chosen = balancer::choose(spec, generation.balancer(idx), route.as_deref(), tried)
        .ok_or_else(|| ProxyError::NoMember(spec.name.clone()))?;
    let m = &spec.members[chosen.index];
    let worker = generation.worker(WorkerRef::Configured(m.worker), &m.url);
    // S35: the member's path is put before the mapped path as it is.
    let path_and_query = format!("{}{}", m.url.path, mapped.path_and_query);
    Ok(Backend {
        reuse: !worker.params.disable_reuse && mapped.reuse,
        worker,
        url: &m.url,
        path_and_query: std::borrow::Cow::Owned(path_and_query),
        member: Some(ChosenMember {
            balancer: idx,
            index: chosen.index,
            route_changed: chosen.route_changed,
        }),
        session_route: route,
    })
}

/// A request body's reader and what was read ahead of connecting, kept
/// across attempts so that a failed-over request still has its body.
struct BodyState {
    reader: BodyReader,
    prefetched: Vec<u8>,
    prefetch_done: bool,
}

impl BodyState {
    fn new(framing: Framing) -> BodyState {
        BodyState {
            reader: BodyReader::new(framing),
            prefetched: Vec::new(),
            prefetch_done: false,
        }
    }
}

/// S5: how the client framed its body.
fn request_framing(head: &RequestHead, limit: u64) -> Result<Framing, ProxyError> {
    if let Some(te) = head.headers.get("transfer-encoding") {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
        if !last.eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding does not end in chunked",
            ));
        }
        if !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::UnsupportedTransferEncoding);
        }
        return Ok(Framing::Chunked);
    }
    if let Some(cl) = head.headers.get("content-length") {
        let cl = cl.trim_ascii();
        if cl.is_empty() || !cl.iter().all(u8::is_ascii_digit) || cl.len() > 19 {
            return Err(ProxyError::BadRequest("bad Content-Length"));
        }
        let n: u64 = std::str::from_utf8(cl)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ProxyError::BadRequest("bad Content-Length"))?;
        if limit > 0 && n > limit {
            return Err(ProxyError::BodyTooLarge);
        }
        return Ok(if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        });
    }
    Ok(Framing::Empty)
}

type Failed = (ProxyError, bool);

/// Proxies one mapped request. On error, says whether the client has already
/// had (part of) an answer.
async fn proxy<S>(
    client: &mut Conn<S>,
    req: &Request<'_>,
    backend_target: &Backend<'_>,
    body: &mut BodyState,
    busy: Option<Busy>,
    env: &Env,
    generation: &Generation,
) -> Result<Outcome, Failed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &generation.config;
    let mapped = req.mapped;
    let target = backend_target;
    let head = req.head;
    let worker = &target.worker;
    let params = worker.params;
    let settings = &mapped.settings;
    let backend_timeout = params
        .timeout
        .or(settings.base.proxy_timeout)
        .unwrap_or(req.server.timeout);
    let connect_timeout = params.connection_timeout.unwrap_or(backend_timeout);
    let client_timeout = req.server.timeout;
    let before = |e: ProxyError| (e, false);

    if target.url.scheme.is_tls() && !config.ssl_proxy(settings.base.ssl_proxy).engine {
        return Err(before(ProxyError::TlsNotEnabled));
    }

    // The upgrade decision (S45–S60).
    let policy = params.upgrade_policy(target.url.scheme);
    let client_upgrade = head.headers.get_str("upgrade").map(str::trim);
    let plan = upgrade::plan(
        &policy,
        target.url.scheme,
        client_upgrade,
        !settings.fallback_to_http,
        head.version < Version::HTTP_11,
    );
    if let Plan::Refuse { offer } = &plan {
        let bytes = local_response(
            426,
            "Upgrade Required",
            &[("Upgrade", offer), ("Connection", "Upgrade")],
            req.framing != Framing::Empty,
        );
        client
            .write_all(&bytes, client_timeout)
            .await
            .map_err(|e| before(ProxyError::ClientIo(e.to_string())))?;
        return Ok(if req.framing == Framing::Empty {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        });
    }
    let upgrading = matches!(plan, Plan::Upgrade { .. });
    let legacy = !settings.fallback_to_http && target.url.scheme.is_websocket();

    // Read a small body whole, to send it with a Content-Length (S41).
    let expect_continue = head
        .headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let stream_body = expect_continue && req.framing != Framing::Empty;
    if !stream_body && !body.prefetch_done {
        body.prefetch_done = true;
        while body.prefetched.len() < PREFETCH {
            match body.reader.next(client, client_timeout).await {
                Ok(Some(piece)) => body.prefetched.extend_from_slice(&piece),
                Ok(None) => break,
                Err(e) => return Err(before(client_body_error(e))),
            }
            if config.limits.body > 0 && body.reader.read > config.limits.body {
                return Err(before(ProxyError::BodyTooLarge));
            }
        }
    }
    let reader = &mut body.reader;
    let prefetched = &body.prefetched;
    let body_header = if req.framing == Framing::Empty {
        BodyHeader::None
    } else if reader.is_done() && !stream_body {
        BodyHeader::Length(prefetched.len() as u64)
    } else if let Framing::Length(n) = req.framing {
        BodyHeader::Length(n)
    } else {
        BodyHeader::Chunked
    };
    let body_out = match body_header {
        BodyHeader::Chunked => Encoding::Chunked,
        BodyHeader::Length(_) => Encoding::Length,
        BodyHeader::None => Encoding::None,
    };

    // Connection: reuse only what can be reused (S22, S43, S144).
    let cl_and_te =
        head.headers.contains("content-length") && head.headers.contains("transfer-encoding");
    let reusable = !upgrading && target.reuse && !cl_and_te;
    let sent_upgrade = match &plan {
        Plan::Upgrade { send } => Some(send.as_str()),
        _ => None,
    };
    let connection = match sent_upgrade {
        Some(v) if legacy => ConnectionHeader::UpgradeLegacy(v),
        Some(v) => ConnectionHeader::Upgrade(v),
        None if reusable => ConnectionHeader::KeepAlive,
        None => ConnectionHeader::Close,
    };
    // S38: the client's Host as sent with ProxyPreserveHost (its server name
    // for an HTTP/1.0 request without one), else the target's.
    let host_header = if settings.preserve_host {
        head.headers
            .get_str("host")
            .unwrap_or(&req.server.server_name)
    } else {
        target.url.authority()
    };
    // Max-Forwards is decremented in place (S8, S36); only then is the head
    // copied.
    let decremented;
    let forwarded = match req.max_forwards {
        Some(n) => {
            let mut copy = head.clone();
            if let Some((_, v)) = copy
                .headers
                .fields
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case("max-forwards"))
            {
                *v = n.to_string().into();
            }
            decremented = copy;
            &decremented
        }
        None => head,
    };
    let request_head = headers::backend_request(
        forwarded,
        &target.path_and_query,
        &Forwarding {
            client_ip: req.facts.peer.ip(),
            add_headers: settings
                .add_headers
                .then_some(req.server.server_name.as_str()),
            host: host_header,
            body: body_header,
            connection,
            // S42: forwarded whether or not a body follows.
            keep_expect: expect_continue,
        },
    );

    // SNI: the target host, or the client's Host with ProxyPreserveHost
    // (S123); none for an IP literal. Only a TLS backend has one.
    let sni_name = target.url.scheme.is_tls().then(|| {
        if settings.preserve_host {
            head.headers
                .get_str("host")
                .map(|h| {
                    crate::http::host_without_port(h)
                        .trim_matches(['[', ']'])
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| target.url.host.clone())
        } else {
            target.url.host.clone()
        }
    });
    let key = PoolKey {
        host: target.url.host.clone(),
        port: target.url.port,
        sni: sni_name.clone(),
    };

    // Send the head (and a prefetched body), retrying once on a fresh
    // connection if a pooled one turns out to be dead before any answer.
    let fully_buffered = !stream_body && (reader.is_done() || req.framing == Framing::Empty);
    let mut attempt = 0;
    let (backend, first_response) = loop {
        attempt += 1;
        let pooled = if reusable && attempt == 1 {
            worker.state.pool.take(&key, params.ttl)
        } else {
            None
        };
        let conn = match pooled {
            Some(c) => c,
            None => {
                let slot = worker
                    .state
                    .limit
                    .acquire(params.acquire.unwrap_or(connect_timeout))
                    .await
                    .ok_or_else(|| before(ProxyError::PoolExhausted))?;
                let tls = if let Some(sni_name) = &sni_name {
                    let client_config = generation
                        .tls(settings.base.ssl_proxy)
                        .cloned()
                        .ok_or_else(|| before(ProxyError::TlsNotEnabled))?;
                    let name = ServerName::try_from(sni_name.clone()).map_err(|_| {
                        before(ProxyError::TlsHandshake(format!(
                            "'{sni_name}' is not a valid TLS server name"
                        )))
                    })?;
                    Some((client_config, name))
                } else {
                    None
                };
                let stream = upstream::connect::connect(&ConnectSpec {
                    host: &target.url.host,
                    addresses: &worker.state.addresses,
                    port: target.url.port,
                    tls,
                    connect_timeout,
                    keepalive: params.keepalive,
                })
                .await
                .map_err(|e| before(e.into()))?;
                BackendConn {
                    stream,
                    slot,
                    reused: false,
                }
            }
        };
        let reused = conn.reused;
        let slot = conn.slot;
        let mut backend = Conn::new(conn.stream);
        let end = if fully_buffered {
            body::end(body_out)
        } else {
            &[]
        };
        let sent = if prefetched.is_empty() && end.is_empty() {
            backend.write_all(&request_head, backend_timeout).await
        } else {
            let mut out = request_head.clone();
            body::frame(body_out, prefetched, &mut out);
            out.extend_from_slice(end);
            backend.write_all(&out, backend_timeout).await
        };
        let response = match sent {
            Ok(()) if fully_buffered => {
                Some(read_response_head(&mut backend, backend_timeout).await)
            }
            Ok(()) => None,
            Err(e) => Some(Err(ProxyError::BackendIo(e.to_string()))),
        };
        match response {
            Some(Err(ProxyError::BackendClosed | ProxyError::BackendIo(_)))
                if reused && fully_buffered =>
            {
                tracing::debug!(worker = %worker.name, "pooled connection was dead; retrying on a new one");
                continue;
            }
            Some(Err(e)) => return Err(before(e)),
            _ => break ((backend, slot), response),
        }
    };
    let (mut backend_conn, slot) = backend;

    // Stream the rest of the body (after a 100 when the client expects one).
    let mut response = first_response.map(|r| r.map_err(before)).transpose()?;
    if !fully_buffered {
        if stream_body {
            let first = read_response_head(&mut backend_conn, backend_timeout)
                .await
                .map_err(before)?;
            if first.status == 100 {
                client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n", client_timeout)
                    .await
                    .map_err(|e| before(ProxyError::ClientIo(e.to_string())))?;
            } else {
                // A final answer before the body: relay it, then close the
                // client connection, whose body is left unread (S157).
                response = Some(first);
            }
        }
        if response.is_none() {
            loop {
                match reader.next(client, client_timeout).await {
                    Ok(Some(piece)) => {
                        if config.limits.body > 0 && reader.read > config.limits.body {
                            return Err(before(ProxyError::BodyTooLarge));
                        }
                        let mut out = Vec::with_capacity(piece.len() + 16);
                        body::frame(body_out, &piece, &mut out);
                        backend_conn
                            .write_all(&out, backend_timeout)
                            .await
                            .map_err(|e| before(ProxyError::BackendIo(e.to_string())))?;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(before(client_body_error(e))),
                }
            }
            backend_conn
                .write_all(body::end(body_out), backend_timeout)
                .await
                .map_err(|e| before(ProxyError::BackendIo(e.to_string())))?;
        }
    }

    // Interim responses (S55), then the final one.
    let client_expects_100 = expect_continue && head.version >= Version::HTTP_11;
    let mut interim = 0;
    let resp = loop {
        let resp = match response.take() {
            Some(r) => r,
            None => read_response_head(&mut backend_conn, backend_timeout)
                .await
                .map_err(|e| (e, interim > 0))?,
        };
        if resp.status >= 200 || resp.status == 101 {
            break resp;
        }
        interim += 1;
        if interim > MAX_INTERIM {
            return Err((ProxyError::TooManyInterim, true));
        }
        let relay = head.version >= Version::HTTP_11
            && (resp.status != 100 || (client_expects_100 && !stream_body));
        if relay {
            let bytes = headers::client_response(
                &resp,
                &ClientResponse {
                    body: BodyHeader::None,
                    close: false,
                    upgrade: None,
                    public_host: "",
                    reverse: &[],
                },
            );
            client
                .write_all(&bytes, client_timeout)
                .await
                .map_err(|e| (ProxyError::ClientIo(e.to_string()), true))?;
        }
    };
    let answered = interim > 0;
    // mod_headers' Header rules; Apache leaves a 101 alone.
    let mut resp = resp;
    if resp.status != 101 {
        apply_response_rules(req, env, resp.status, &mut resp.headers.fields);
    }
    let public_host = head
        .headers
        .get_str("host")
        .unwrap_or(&req.server.server_name);

    if resp.status == 101 {
        let Some(sent) = sent_upgrade else {
            return Err((
                ProxyError::BadUpgrade("101 to a request that asked for no upgrade".into()),
                answered,
            ));
        };
        let answered_value = resp.headers.get_str("upgrade").map(str::trim);
        if !upgrade::switch_matches(sent, answered_value) {
            return Err((
                ProxyError::BadUpgrade(format!(
                    "Unexpected Upgrade: {} (expecting {sent})",
                    answered_value.unwrap_or("(none)")
                )),
                answered,
            ));
        }
        if resp.headers.get("sec-websocket-accept").is_none()
            && sent.eq_ignore_ascii_case("websocket")
        {
            tracing::info!(worker = %worker.name, "backend switched to WebSocket without Sec-WebSocket-Accept");
        }
        let upgrade_value = answered_value.unwrap_or(sent).to_string();
        let bytes = headers::client_response(
            &resp,
            &ClientResponse {
                body: BodyHeader::None,
                close: false,
                upgrade: Some(&upgrade_value),
                public_host,
                reverse: &settings.reverse,
            },
        );
        client
            .write_all(&bytes, client_timeout)
            .await
            .map_err(|e| (ProxyError::ClientIo(e.to_string()), true))?;
        let mode = if legacy {
            tunnel::Mode::CloseBoth
        } else {
            // S64: idle for the larger of the client and backend timeouts.
            tunnel::Mode::HalfClose(Some(client_timeout.max(backend_timeout)))
        };
        return Ok(Outcome::Tunnel(Box::new(TunnelStart {
            backend: backend_conn,
            mode,
            slot,
            timeout: client_timeout.max(backend_timeout),
            busy,
        })));
    }

    // An ordinary response, also to an upgrade request (S52).
    let status = resp.status;
    if let Some(m) = target.member {
        // S112: the response still goes to the client; the member is failed.
        let balancer = config.balancer(m.balancer);
        if balancer.failonstatus.contains(&status) {
            balancer::fail(
                balancer,
                m.index,
                generation.balancer(m.balancer),
                &worker.name,
                params.retry,
            );
        }
    }
    let bodyless =
        head.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let backend_te = resp.headers.get("transfer-encoding");
    let backend_cl = resp.headers.get("content-length");
    let backend_framing = if bodyless {
        Framing::Empty
    } else if let Some(te) = backend_te {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
        if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(cl) = backend_cl {
        let n = std::str::from_utf8(cl.trim_ascii())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or((ProxyError::BadResponse("bad Content-Length"), answered))?;
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let client_wants_close = head.version < Version::HTTP_11
        || head.headers.has_token("connection", "close")
        || !config.keepalive;
    let (client_body, client_encoding, mut close_client) = match backend_framing {
        Framing::Empty => {
            let header = if bodyless && head.method == "HEAD" {
                backend_cl
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(|c| c.trim().parse().ok())
                    .map_or(BodyHeader::None, BodyHeader::Length)
            } else {
                BodyHeader::None
            };
            (header, Encoding::None, client_wants_close)
        }
        Framing::Length(n) => (BodyHeader::Length(n), Encoding::Length, client_wants_close),
        Framing::Chunked | Framing::Close if head.version >= Version::HTTP_11 => {
            (BodyHeader::Chunked, Encoding::Chunked, client_wants_close)
        }
        Framing::Chunked | Framing::Close => (BodyHeader::None, Encoding::Raw, true),
    };
    // The client's unread body (an early answer) forbids reuse (S157).
    let body_left = !reader.is_done() && req.framing != Framing::Empty;
    close_client |= body_left;
    // Apache closes after these statuses, relayed ones included
    // (ap_status_drops_connection), and after a bodiless 100-continue.
    close_client |= matches!(status, 400 | 408 | 411 | 413 | 414 | 417 | 500 | 501 | 503);
    close_client |= expect_continue && req.framing == Framing::Empty;
    let upgrade_offer = resp
        .headers
        .get_str("upgrade")
        .filter(|v| upgrade::accepts(&policy, v.trim()))
        .map(str::to_string);
    let mut bytes = headers::client_response(
        &resp,
        &ClientResponse {
            body: client_body,
            close: close_client,
            upgrade: upgrade_offer.as_deref(),
            public_host,
            reverse: &settings.reverse,
        },
    );
    let mut body_reader = BodyReader::new(backend_framing);
    // A small body that came with the head goes out in the same write (one
    // send instead of two per response).
    if let (Framing::Length(n), Encoding::Length) = (backend_framing, client_encoding) {
        if n <= 16 * 1024 && backend_conn.buf.len() as u64 >= n {
            if let Ok(Some(piece)) = body_reader.next(&mut backend_conn, backend_timeout).await {
                bytes.extend_from_slice(&piece);
            }
        }
    }
    client
        .write_all(&bytes, client_timeout)
        .await
        .map_err(|e| (ProxyError::ClientIo(e.to_string()), true))?;

    loop {
        match body_reader.next(&mut backend_conn, backend_timeout).await {
            Ok(Some(piece)) => write_piece(client, client_encoding, &piece, client_timeout).await?,
            Ok(None) => break,
            // Mid-body failure: the client connection is cut, with no chunk
            // terminator, so it cannot take a partial body for a whole one (S82).
            Err(e) => return Err((backend_body_error(e), true)),
        }
    }
    let end = body::end(client_encoding);
    if !end.is_empty() {
        client
            .write_all(end, client_timeout)
            .await
            .map_err(|e| (ProxyError::ClientIo(e.to_string()), true))?;
    }
    if let Some(m) = target.member {
        // bytraffic: bytes to and from the member (tunnels do not count).
        let bytes = request_head.len() as u64 + reader.read + body_reader.read;
        generation.balancer(m.balancer).members[m.index]
            .traffic
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    let backend_reusable = reusable
        && resp.version >= Version::HTTP_11
        && !resp.headers.has_token("connection", "close")
        && backend_framing != Framing::Close
        && !(backend_te.is_some() && backend_cl.is_some())
        && backend_conn.buf.is_empty();
    if backend_reusable {
        worker.state.pool.put(
            key,
            BackendConn {
                stream: backend_conn.into_io(),
                slot,
                reused: true,
            },
        );
    }
    Ok(if close_client {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    })
}

async fn write_piece<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Conn<S>,
    encoding: Encoding,
    piece: &Bytes,
    timeout: Duration,
) -> Result<(), Failed> {
    let result = if encoding == Encoding::Chunked {
        let mut out = Vec::with_capacity(piece.len() + 16);
        body::frame(encoding, piece, &mut out);
        client.write_all(&out, timeout).await
    } else {
        client.write_all(piece, timeout).await
    };
    result.map_err(|e| (ProxyError::ClientIo(e.to_string()), true))
}

async fn read_response_head(
    backend: &mut Conn<BackendStream>,
    timeout: Duration,
) -> Result<crate::http::ResponseHead, ProxyError> {
    // The head must be within limits: 8 KiB lines, at most 100 + status.
    let max = head::RESPONSE_FIELD_SIZE * 101;
    match backend.read_head(max, timeout, timeout).await {
        Ok(bytes) => head::parse_response(&bytes.freeze()).map_err(|e| match e {
            head::ResponseError::Malformed(why) => ProxyError::BadResponse(why),
            head::ResponseError::BareCr => ProxyError::BackendBareCr,
            head::ResponseError::NotHttp1 => ProxyError::NotHttp1,
        }),
        Err(HeadError::Closed | HeadError::Truncated) => Err(ProxyError::BackendClosed),
        Err(HeadError::Timeout { .. }) => Err(ProxyError::BackendTimeout),
        Err(HeadError::TooLarge) => Err(ProxyError::BadResponse("response head too large")),
        Err(HeadError::Io(e)) => Err(ProxyError::BackendIo(e.to_string())),
    }
}

fn client_body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::Malformed(why) => ProxyError::BadRequest(why),
        BodyError::Timeout => ProxyError::ClientTimeout,
        BodyError::Truncated => ProxyError::ClientIo("client closed mid-body".into()),
        BodyError::Io(e) => ProxyError::ClientIo(e.to_string()),
    }
}

fn backend_body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::Malformed(why) => ProxyError::BadResponse(why),
        BodyError::Timeout => ProxyError::BackendTimeout,
        BodyError::Truncated => ProxyError::BackendClosed,
        BodyError::Io(e) => ProxyError::BackendIo(e.to_string()),
    }
}

/// Answers a request locally (an error page or an empty 200).
async fn local_answer<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Conn<S>,
    status: u16,
    reason: &'static str,
    close: bool,
    timeout: Duration,
) -> Outcome {
    local_bytes(
        client,
        local_response(status, reason, &[], close),
        close,
        timeout,
    )
    .await
}

/// Writes an answer wsgate made; the connection stays open unless `close`.
async fn local_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Conn<S>,
    bytes: Vec<u8>,
    close: bool,
    timeout: Duration,
) -> Outcome {
    let ok = client.write_all(&bytes, timeout).await.is_ok();
    if ok && !close {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// SetEnvIf rules; `uri` is the raw path at server level (they run before
/// Apache decodes it) and the decoded one in a Location.
fn apply_setenvif(
    list: &[rules::SetEnvIf],
    head: &RequestHead,
    uri: &[u8],
    facts: ConnFacts,
    env: &mut Env,
) {
    if list.is_empty() {
        return;
    }
    let attrs = rules::RequestAttributes {
        remote_addr: facts.peer.ip().to_canonical().to_string(),
        server_addr: facts.local.ip().to_canonical().to_string(),
        method: &head.method,
        protocol: if head.version >= Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        },
        uri,
        headers: &head.headers.fields,
    };
    for rule in list {
        rule.apply(&attrs, env);
    }
}

/// What header rules and their expressions read about a request.
struct RuleFacts<'a> {
    head: &'a RequestHead,
    env: &'a Env,
    path: &'a route::RequestPath,
    facts: ConnFacts,
    server: &'a Server,
    status: Option<u16>,
}

impl<'a> RuleFacts<'a> {
    fn new(
        head: &'a RequestHead,
        env: &'a Env,
        path: &'a route::RequestPath,
        facts: ConnFacts,
        server: &'a Server,
        status: Option<u16>,
    ) -> Self {
        RuleFacts {
            head,
            env,
            path,
            facts,
            server,
            status,
        }
    }

    fn rule_facts<'b>(
        &'b self,
        received: std::time::SystemTime,
        started: std::time::Instant,
        request_headers: &'b [(Text, FieldValue)],
    ) -> rules::Facts<'b> {
        rules::Facts {
            env: self.env,
            expr: self,
            received_us: received
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0),
            elapsed_us: started.elapsed().as_micros(),
            request_headers,
        }
    }
}

impl rules::expr::Context for RuleFacts<'_> {
    fn var(&self, var: &rules::expr::ExprVar) -> String {
        use rules::expr::ExprVar::*;
        let header = |n: &str| self.head.headers.get_str(n).unwrap_or("").to_string();
        match var {
            Header(n) => header(n),
            Env(n) => self.env.get(n).unwrap_or("").to_string(),
            RequestScheme => "http".into(),
            HttpHost => header("host"),
            RequestUri => String::from_utf8_lossy(&self.path.decoded).into_owned(),
            RequestMethod => self.head.method.to_string(),
            QueryString => self.path.query.clone().unwrap_or_default(),
            RemoteAddr => self.facts.peer.ip().to_canonical().to_string(),
            Https => "off".into(),
            ServerName => match header("host") {
                h if h.is_empty() => self.server.server_name.clone(),
                h => crate::http::host_without_port(&h).to_ascii_lowercase(),
            },
            ServerPort => self.facts.local.port().to_string(),
            TheRequest => format!(
                "{} {} HTTP/{}.{}",
                self.head.method,
                self.head.target,
                self.head.version.major,
                self.head.version.minor
            ),
            RequestStatus => self.status.map(|s| s.to_string()).unwrap_or_default(),
        }
    }
}

/// Applies a server's and its Locations' `Header` rules to a proxied
/// response. As in Apache, `onsuccess` rules work on the backend's headers
/// while `always` rules work on a table of their own that goes out first
/// (so `Header always unset` cannot remove a backend header).
fn apply_response_rules(req: &Request<'_>, env: &Env, status: u16, fields: &mut HeaderFields) {
    let server_rules = req.server.rules.response.iter();
    let location_rules = req
        .mapped
        .settings
        .location_rules
        .iter()
        .flat_map(|l| l.response.iter());
    let f = RuleFacts::new(req.head, env, req.path, req.facts, req.server, Some(status));
    let rf = f.rule_facts(req.received, req.started, &req.head.headers.fields);
    let mut always = Vec::new();
    for rule in server_rules.chain(location_rules) {
        if rule.applies(&rf, false) {
            rule.apply(
                if rule.always {
                    &mut always
                } else {
                    &mut *fields
                },
                &rf,
            );
        }
    }
    if !always.is_empty() {
        always.append(fields);
        *fields = always;
    }
}

/// A response made by wsgate, with the server's `Header always` rules.
#[allow(clippy::too_many_arguments)]
fn error_page(
    server: &Server,
    head: &RequestHead,
    path: &route::RequestPath,
    env: &Env,
    facts: ConnFacts,
    status: u16,
    reason: &str,
    close: bool,
    (received, started): (std::time::SystemTime, std::time::Instant),
) -> Vec<u8> {
    let f = RuleFacts::new(head, env, path, facts, server, Some(status));
    let rf = f.rule_facts(received, started, &head.headers.fields);
    let mut adjust = |fields: &mut HeaderFields| {
        for rule in server.rules.response.iter().filter(|r| r.always) {
            if rule.applies(&rf, false) {
                rule.apply(fields, &rf);
            }
        }
    };
    local_response_with(status, reason, &[], close, &mut adjust)
}
