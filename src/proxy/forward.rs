//! One attempt at proxying a request to one backend: the I/O that the
//! plans of `plan` decide. Read a small body ahead, connect or take a
//! pooled connection, send the head (retrying once on a pooled connection
//! found dead), stream the rest of the body, read interim and final
//! answers, then either relay the response or hand over a tunnel.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::body::{BodyError, BodyReader};
use super::conn::{Conn, HeadError};
use super::deflate::{self, Deflate};
use super::downstream::Downstream;
use super::error::{Failure, ProxyError};
use super::header_rules::{self, ConnFacts};
use super::headers::{self, BodyHeader, ClientResponse, Forwarding};
use super::plan::{self, Exchange, Relay, RequestPlan, ResponsePlan, Unusable};
use super::proxy_answers;
use super::tunnel;
use super::upgrade::Plan;
use crate::balancer::{self, Busy};
use crate::config::model::balancer::BalancerIdx;
use crate::config::{Config, Server, SslIdx, TcpLiveness, WorkerParams};
use crate::http::body::{self, Encoding, Framing};
use crate::http::gzip::Gzip;
use crate::http::h1::{self, ResponseError, RESPONSE_FIELD_SIZE};
use crate::http::write::local_answer;
use crate::http::{RequestHead, ResponseHead, TargetUrl, Version};
use crate::route::Settings;
use crate::rules::Env;
use crate::upstream::{
    self, BackendConn, BackendStream, ConnectSpec, Generation, PoolKey, Slot, WorkerView,
};

/// Apache's default for how much of a request body is read before
/// connecting, to send a small chunked body with a Content-Length (S41).
const PREFETCH: usize = 16 * 1024;
/// More interim responses than this from a backend is an error (S55).
const MAX_INTERIM: usize = 10;
/// A response body this small that arrived with its head goes out with it.
const INLINE_BODY: u64 = 16 * 1024;

/// What became of a request.
pub enum Outcome {
    KeepAlive,
    Close,
    Tunnel(Box<TunnelStart>),
}

/// What the request handler hands over when a backend switched protocols.
pub struct TunnelStart {
    pub backend: Conn<BackendStream>,
    pub mode: tunnel::Mode,
    pub slot: Slot,
    pub timeout: Duration,
    /// A balancer member's busy count, held for the tunnel's life (S71).
    pub busy: Option<Busy>,
    /// Its access log lines, written when it ends.
    pub log: Option<super::logging::TunnelLog>,
    /// A WebSocket whose frames are followed (`WsgateWebSocketFrames`,
    /// `WsgateWebSocketPing`).
    pub frames: bool,
    /// `WsgateWebSocketPing`.
    pub ping: Option<crate::config::model::WsPing>,
    /// What the status page's tunnel table shows, when one is configured.
    pub tunnel: Option<crate::ops::tunnels::TunnelInfo>,
}

/// The backend one attempt goes to: the mapping's, or a balancer member.
pub struct Backend<'a> {
    pub worker: WorkerView<'a>,
    pub url: &'a TargetUrl,
    pub path_and_query: std::borrow::Cow<'a, str>,
    pub reuse: bool,
    pub member: Option<ChosenMember>,
    /// The sticky route the request carried.
    pub session_route: Option<String>,
}

/// A balancer member chosen for an attempt.
#[derive(Clone, Copy)]
pub struct ChosenMember {
    pub balancer: BalancerIdx,
    pub index: usize,
    pub route_changed: bool,
}

/// A request ready to go to a backend.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    pub framing: Framing,
    pub max_forwards: Option<u64>,
    pub settings: &'a Settings<'a>,
    pub server: &'a Server,
    pub facts: ConnFacts,
    pub rules: header_rules::Context<'a>,
}

/// A request body's reader and what was read ahead of connecting, kept
/// across attempts so that a failed-over request still has its body.
pub struct BodyState {
    pub reader: BodyReader,
    prefetched: Vec<u8>,
    prefetch_done: bool,
}

impl BodyState {
    pub fn new(framing: Framing) -> BodyState {
        BodyState {
            reader: BodyReader::new(framing),
            prefetched: Vec::new(),
            prefetch_done: false,
        }
    }
}

/// The timeouts of an attempt.
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    pub client: Duration,
    pub backend: Duration,
    pub connect: Duration,
}

impl Timeouts {
    /// `timeout=` ⇒ `ProxyTimeout` ⇒ `Timeout` for the backend;
    /// `connectiontimeout=` ⇒ the backend's for connecting.
    pub fn new(params: &WorkerParams, settings: &Settings<'_>, server: &Server) -> Timeouts {
        let backend = params
            .timeout
            .or(settings.base.proxy_timeout)
            .unwrap_or(server.timeout);
        Timeouts {
            client: server.timeout,
            backend,
            connect: params.connection_timeout.unwrap_or(backend),
        }
    }

    /// A tunnel's idle timeout: the larger of the client's and the
    /// backend's (S64).
    pub fn tunnel_idle(&self) -> Duration {
        self.client.max(self.backend)
    }
}

/// A TLS backend needs `SSLProxyEngine on` where the request was mapped.
pub(super) fn tls_allowed(config: &Config, url: &TargetUrl, settings: &Settings<'_>) -> bool {
    !url.scheme.is_tls() || config.ssl_proxy(settings.base.ssl_proxy).engine
}

/// Proxies one request to `target`; `env` is what its header rules read.
pub async fn forward<D: Downstream>(
    client: &mut D,
    req: &Request<'_>,
    target: &Backend<'_>,
    body: &mut BodyState,
    busy: Option<Busy>,
    env: &Env,
    generation: &Generation,
) -> Result<Outcome, Failure> {
    let config = &generation.config;
    let (head, settings) = (req.head, req.settings);
    let params = target.worker.params;
    let t = Timeouts::new(params, settings, req.server);
    if !tls_allowed(config, target.url, settings) {
        return Err(Failure::before(ProxyError::TlsNotEnabled));
    }
    let policy = params.upgrade_policy(target.url.scheme);
    let plan = request_plan(req, target, &policy);
    if let Plan::Refuse { offer } = &plan.upgrade {
        let host = head.headers.get_str("host");
        let signed = super::signature::signed(config, req.server, host, req.facts.https);
        return refuse_upgrade(client, offer, req.framing, t.client, &signed).await;
    }
    if !plan.stream_body {
        prefetch(client, body, config.limits.body, t.client).await?;
    }
    let complete = body.reader.is_done();
    let body_header = plan.body(req.framing, body.prefetched.len(), complete);
    let via = proxy_answers::via_entry(head, req.server, req.facts);
    let request_head = backend_head(req, target, &plan, (body_header, via.as_deref()));
    // Only a reusable request takes from or gives back to the pool.
    let key = plan.reusable.then(|| PoolKey {
        host: target.url.host.clone(),
        port: target.url.port,
        sni: plan.sni.clone(),
    });
    let fully_buffered = plan.fully_buffered(req.framing, complete);
    let opened = Open {
        request_head: &request_head,
        body: &body.prefetched,
        encoding: plan::encoding(body_header),
        fully_buffered,
        key: key.as_ref(),
        ssl: settings.base.ssl_proxy,
        liveness: req.server.liveness.backend,
        source: req.server.settings.source_address,
    };
    let (mut backend, slot, first) = open(target, &plan, &opened, generation, t).await?;
    let mut response = first.map(|r| r.map_err(Failure::before)).transpose()?;
    if !fully_buffered {
        let limit = config.limits.body;
        response = send_rest(client, &mut backend, &plan, body, opened.encoding, t, limit).await?;
    }
    let (mut resp, answered) =
        final_response(client, &mut backend, head, &plan, response, t).await?;
    let exchange = Exchange {
        head,
        plan: &plan,
        framing: req.framing,
        body_left: !body.reader.is_done() && req.framing != Framing::Empty,
        keepalive: req.facts.keepalive,
        policy: &policy,
        idle: t.tunnel_idle(),
    };
    proxy_answers::on_answer(&mut resp, settings, via.as_deref())
        .map_err(|error| Failure { error, answered })?;
    response_rules(req, settings, env, &mut resp);
    let public_host = head
        .headers
        .get_str("host")
        .unwrap_or(&req.server.server_name);
    let mut relay = match plan::response_plan(&exchange, &resp) {
        Ok(ResponsePlan::Relay(relay)) => relay,
        Ok(ResponsePlan::Tunnel { upgrade, mode }) => {
            let switched = Switched {
                resp: &resp,
                upgrade,
                public_host,
                settings,
                worker: &target.worker.name,
                sent: plan.sent_upgrade(),
            };
            switch(client, &switched, t).await?;
            return Ok(Outcome::Tunnel(Box::new(TunnelStart {
                backend,
                mode,
                slot,
                timeout: exchange.idle,
                busy,
                log: None,
                frames: (settings.frames || settings.ping.is_some())
                    && upgrade.eq_ignore_ascii_case("websocket"),
                ping: settings
                    .ping
                    .filter(|_| upgrade.eq_ignore_ascii_case("websocket")),
                tunnel: config.status_page.then(|| tunnel_info(req, target, config)),
            })));
        }
        Err(unusable) => {
            return Err(Failure {
                error: unusable_error(unusable, &plan),
                answered,
            })
        }
    };
    fail_on_status(generation, target, resp.status);
    let gzip = compression(
        req,
        settings,
        env,
        &mut resp,
        &mut relay,
        config.deflate_level,
    );
    let relayed = Relayed {
        banner: &config.banner,
        resp: &resp,
        relay: &relay,
        public_host,
        settings,
    };
    let backend_read = relay_response(client, &mut backend, &relayed, gzip, t).await?;
    if let Some(m) = target.member {
        // bytraffic: bytes to and from the member (tunnels do not count).
        let bytes = request_head.len() as u64 + body.reader.read + backend_read;
        let state = &generation.balancer(m.balancer).members[m.index];
        state.traffic.fetch_add(bytes, Ordering::Relaxed);
        state.read.fetch_add(backend_read, Ordering::Relaxed);
    }
    if let (Some(key), true) = (key, relay.backend_reusable && backend.buf.is_empty()) {
        let (stream, timer) = backend.into_parts();
        target.worker.state.pool.put(
            key,
            BackendConn {
                stream,
                slot,
                reused: true,
                timer,
            },
        );
    }
    Ok(if relay.close {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    })
}

/// The tunnel as the status page lists it: the route is the balancer for
/// a member, else the worker.
fn tunnel_info(
    req: &Request<'_>,
    target: &Backend<'_>,
    config: &crate::config::Config,
) -> crate::ops::tunnels::TunnelInfo {
    let backend = target.worker.name.to_string();
    crate::ops::tunnels::TunnelInfo {
        client: req.facts.peer,
        vhost: req.server.server_name.clone(),
        route: target.member.map_or_else(
            || backend.clone(),
            |m| config.balancer(m.balancer).name.clone(),
        ),
        backend,
    }
}

/// How this request goes to this backend.
pub(super) fn request_plan<'a>(
    req: &Request<'a>,
    target: &'a Backend<'_>,
    policy: &'a crate::config::UpgradePolicy,
) -> RequestPlan<'a> {
    let settings = req.settings;
    RequestPlan::new(
        req.head,
        req.framing,
        &plan::Route {
            scheme: target.url.scheme,
            authority: target.url.authority(),
            host: &target.url.host,
            policy,
            fallback_to_http: settings.fallback_to_http,
            preserve_host: settings.preserve_host,
            reuse: target.reuse,
            server_name: &req.server.server_name,
        },
    )
}

/// S112: a member's answer with a `failonstatus` status still goes to the
/// client, and the member is put in error.
fn fail_on_status(generation: &Generation, target: &Backend<'_>, status: u16) {
    let Some(m) = target.member else { return };
    let balancer = generation.config.balancer(m.balancer);
    if balancer.failonstatus.contains(&status) {
        let state = generation.balancer(m.balancer);
        let retry = target.worker.params.retry;
        balancer::fail(balancer, m.index, state, &target.worker.name, retry);
    }
}

/// A 101 on its way to the client.
struct Switched<'a> {
    resp: &'a ResponseHead,
    /// The `Upgrade` value the client is told.
    upgrade: &'a str,
    public_host: &'a str,
    settings: &'a Settings<'a>,
    worker: &'a str,
    /// What the backend was asked for.
    sent: Option<&'a str>,
}

/// Relays a backend's 101 (S51); the tunnel follows.
async fn switch<D: Downstream>(
    client: &mut D,
    s: &Switched<'_>,
    t: Timeouts,
) -> Result<(), Failure> {
    if s.resp.headers.get("sec-websocket-accept").is_none()
        && s.sent.is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        tracing::info!(worker = %s.worker, "backend switched to WebSocket without Sec-WebSocket-Accept");
    }
    let switched = ClientResponse {
        body: BodyHeader::None,
        close: false,
        upgrade: Some(s.upgrade),
        public_host: s.public_host,
        reverse: &s.settings.reverse,
        banner: "",
    };
    client
        .send_head(s.resp, &switched, None, t.client)
        .await
        .map_err(|e| Failure::client(e, true))
}

/// The error a backend answer that cannot be relayed is.
fn unusable_error(unusable: Unusable, plan: &RequestPlan<'_>) -> ProxyError {
    match unusable {
        Unusable::NotAsked => {
            ProxyError::BadUpgrade("101 to a request that asked for no upgrade".into())
        }
        Unusable::OtherProtocol { answered } => ProxyError::BadUpgrade(format!(
            "Unexpected Upgrade: {} (expecting {})",
            answered.as_deref().unwrap_or("(none)"),
            plan.sent_upgrade().unwrap_or("")
        )),
        Unusable::BadContentLength => ProxyError::BadResponse("bad Content-Length"),
    }
}

/// Legacy mode and an Upgrade the worker does not take: 426 (S59).
async fn refuse_upgrade<D: Downstream>(
    client: &mut D,
    offer: &str,
    framing: Framing,
    timeout: Duration,
    signed: &crate::http::write::Signed<'_>,
) -> Result<Outcome, Failure> {
    let has_body = framing != Framing::Empty;
    let answer = local_answer(
        426,
        "Upgrade Required",
        &[("Upgrade", offer), ("Connection", "Upgrade")],
        has_body,
        signed,
        &mut |_| {},
    );
    client
        .send_answer(&answer, timeout)
        .await
        .map_err(|e| Failure::client(e, false))?;
    Ok(if has_body {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    })
}

/// Reads a small body whole, to send it with a Content-Length (S41); once
/// per request, whatever the attempts.
async fn prefetch<D: Downstream>(
    client: &mut D,
    body: &mut BodyState,
    limit: u64,
    timeout: Duration,
) -> Result<(), Failure> {
    if body.prefetch_done {
        return Ok(());
    }
    body.prefetch_done = true;
    while body.prefetched.len() < PREFETCH {
        match client.body_piece(&mut body.reader, timeout).await {
            Ok(Some(piece)) => body.prefetched.extend_from_slice(&piece),
            Ok(None) => break,
            Err(e) => return Err(Failure::before(client_body_error(e))),
        }
        if limit > 0 && body.reader.read > limit {
            return Err(Failure::before(ProxyError::BodyTooLarge));
        }
    }
    Ok(())
}

/// The request head for the backend (S36): Max-Forwards decremented in
/// place (S8), then the head written with Host, the X-Forwarded-*
/// headers, body framing and Connection the plan says.
fn backend_head(
    req: &Request<'_>,
    target: &Backend<'_>,
    plan: &RequestPlan<'_>,
    (body, via): (BodyHeader, Option<&str>),
) -> Vec<u8> {
    let decremented;
    let forwarded = match req.max_forwards {
        Some(n) => {
            let mut copy = req.head.clone();
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
        None => req.head,
    };
    headers::backend_request(
        forwarded,
        &target.path_and_query,
        &Forwarding {
            client_ip: req.facts.peer.ip(),
            add_headers: req
                .settings
                .add_headers
                .then_some(req.server.server_name.as_str()),
            host: plan.host,
            body,
            connection: plan.connection(),
            // S42: forwarded whether or not a body follows.
            keep_expect: plan.expect_continue,
            via: proxy_answers::via_toward_backend(req.server, via),
        },
    )
}

/// What the first write to a backend carries.
struct Open<'a> {
    request_head: &'a [u8],
    /// The body read ahead.
    body: &'a [u8],
    encoding: Encoding,
    /// The whole request goes now, so the answer is read at once.
    fully_buffered: bool,
    /// Where a reusable request's connection is pooled.
    key: Option<&'a PoolKey>,
    /// The server's `SSLProxy*`, for a TLS backend.
    ssl: SslIdx,
    /// The server's backend-side keepalive and user timeout.
    liveness: TcpLiveness,
    /// `ProxySourceAddress`.
    source: Option<std::net::IpAddr>,
}

type Opened = (
    Conn<BackendStream>,
    Slot,
    Option<Result<ResponseHead, ProxyError>>,
);

/// Sends the head (and the body read ahead) on a pooled connection or a
/// new one, and for a fully buffered request reads the answer's head. A
/// pooled connection found dead before any answer is replaced by a new one
/// and the request sent again (once).
async fn open(
    target: &Backend<'_>,
    plan: &RequestPlan<'_>,
    o: &Open<'_>,
    generation: &Generation,
    t: Timeouts,
) -> Result<Opened, Failure> {
    let worker = &target.worker;
    let mut pooled = o
        .key
        .and_then(|key| worker.state.pool.take(key, worker.params.ttl));
    loop {
        let conn = match pooled.take() {
            Some(c) => c,
            None => connect(target, plan, generation, o, t).await?,
        };
        let reused = conn.reused;
        // A connection that may serve more requests keeps one timer for
        // all its reads.
        let mut backend = match (o.key, conn.timer) {
            (Some(_), timer) => Conn::with_timer_from(conn.stream, timer),
            (None, _) => Conn::new(conn.stream),
        };
        let end = if o.fully_buffered {
            body::end(o.encoding)
        } else {
            &[]
        };
        let sent = if o.body.is_empty() && end.is_empty() {
            backend.write_all(o.request_head, t.backend).await
        } else {
            let mut out = o.request_head.to_vec();
            body::frame(o.encoding, o.body, &mut out);
            out.extend_from_slice(end);
            backend.write_all(&out, t.backend).await
        };
        let response = match sent {
            Ok(()) if o.fully_buffered => Some(read_response_head(&mut backend, t.backend).await),
            Ok(()) => None,
            Err(e) => Some(Err(ProxyError::BackendIo(e.to_string()))),
        };
        match response {
            Some(Err(ProxyError::BackendClosed | ProxyError::BackendIo(_)))
                if reused && o.fully_buffered =>
            {
                tracing::debug!(worker = %worker.name, "pooled connection was dead; retrying on a new one");
            }
            Some(Err(e)) => return Err(Failure::before(e)),
            _ => return Ok((backend, conn.slot, response)),
        }
    }
}

/// A new connection to the backend, within `max=` (waiting up to
/// `acquire=`, else the connect timeout).
async fn connect(
    target: &Backend<'_>,
    plan: &RequestPlan<'_>,
    generation: &Generation,
    o: &Open<'_>,
    t: Timeouts,
) -> Result<BackendConn, Failure> {
    let worker = &target.worker;
    let slot = worker
        .state
        .limit
        .acquire(worker.params.acquire.unwrap_or(t.connect))
        .await
        .ok_or(Failure::before(ProxyError::PoolExhausted))?;
    let tls = match &plan.sni {
        Some(sni) => {
            let client = generation
                .tls(o.ssl)
                .cloned()
                .ok_or(Failure::before(ProxyError::TlsNotEnabled))?;
            let name = ServerName::try_from(sni.clone()).map_err(|_| {
                Failure::before(ProxyError::TlsHandshake(format!(
                    "'{sni}' is not a valid TLS server name"
                )))
            })?;
            Some((client, name))
        }
        None => None,
    };
    let stream = upstream::connect::connect(&ConnectSpec {
        host: &target.url.host,
        addresses: &worker.state.addresses,
        port: target.url.port,
        tls,
        connect_timeout: t.connect,
        keepalive: worker.params.keepalive,
        liveness: o.liveness,
        network: &generation.network,
        source: o.source,
    })
    .await
    .map_err(Failure::before)?;
    Ok(BackendConn {
        stream,
        slot,
        reused: false,
        timer: None,
    })
}

/// Streams the rest of the request body: after the backend's 100 when the
/// client expects one (a final answer instead is relayed, and the unread
/// body then closes the client connection, S157). Returns that answer, if
/// one came.
async fn send_rest<D: Downstream>(
    client: &mut D,
    backend: &mut Conn<BackendStream>,
    plan: &RequestPlan<'_>,
    body: &mut BodyState,
    encoding: Encoding,
    t: Timeouts,
    limit: u64,
) -> Result<Option<ResponseHead>, Failure> {
    if plan.stream_body {
        let first = read_response_head(backend, t.backend)
            .await
            .map_err(Failure::before)?;
        if first.status != 100 {
            return Ok(Some(first));
        }
        let go_on = ResponseHead {
            version: Version::HTTP_11,
            status: 100,
            reason: "Continue".into(),
            headers: Default::default(),
        };
        client
            .send_interim(&go_on, t.client)
            .await
            .map_err(|e| Failure::client(e, false))?;
    }
    let reader = &mut body.reader;
    loop {
        match client.body_piece(reader, t.client).await {
            Ok(Some(piece)) => {
                if limit > 0 && reader.read > limit {
                    return Err(Failure::before(ProxyError::BodyTooLarge));
                }
                let mut out = Vec::with_capacity(piece.len() + 16);
                body::frame(encoding, &piece, &mut out);
                backend
                    .write_all(&out, t.backend)
                    .await
                    .map_err(|e| Failure::before(ProxyError::BackendIo(e.to_string())))?;
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::before(client_body_error(e))),
        }
    }
    backend
        .write_all(body::end(encoding), t.backend)
        .await
        .map_err(|e| Failure::before(ProxyError::BackendIo(e.to_string())))?;
    Ok(None)
}

/// Interim responses (S55), relayed as the plan says, then the final one.
/// Returns it and whether the client has had an interim answer already.
async fn final_response<D: Downstream>(
    client: &mut D,
    backend: &mut Conn<BackendStream>,
    head: &RequestHead,
    plan: &RequestPlan<'_>,
    mut first: Option<ResponseHead>,
    t: Timeouts,
) -> Result<(ResponseHead, bool), Failure> {
    let mut interim = 0;
    loop {
        let resp = match first.take() {
            Some(r) => r,
            None => read_response_head(backend, t.backend)
                .await
                .map_err(|e| Failure {
                    error: e,
                    answered: interim > 0,
                })?,
        };
        if resp.status >= 200 || resp.status == 101 {
            return Ok((resp, interim > 0));
        }
        interim += 1;
        if interim > MAX_INTERIM {
            return Err(Failure::after(ProxyError::TooManyInterim));
        }
        if plan::relay_interim(head, plan, resp.status) {
            client
                .send_interim(&resp, t.client)
                .await
                .map_err(|e| Failure::client(e, true))?;
        }
    }
}

/// mod_headers' `Header` rules on a backend's answer; Apache leaves a 101
/// alone.
fn response_rules(req: &Request<'_>, settings: &Settings<'_>, env: &Env, resp: &mut ResponseHead) {
    if resp.status != 101 {
        header_rules::response(
            req.head,
            req.rules,
            &settings.location_rules,
            env,
            resp.status,
            &mut resp.headers.fields,
        );
    }
}

/// mod_deflate on a relayed answer with a body: its head changed, the
/// framing toward the client made length-less, and the stream to write
/// the body through.
fn compression(
    req: &Request<'_>,
    settings: &Settings<'_>,
    env: &Env,
    resp: &mut ResponseHead,
    relay: &mut Relay,
    level: u32,
) -> Option<Gzip> {
    if matches!(relay.backend, Framing::Empty | Framing::Length(0)) {
        return None;
    }
    let rules = std::iter::once(&req.server.rules).chain(settings.location_rules.iter().copied());
    let length = match relay.backend {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let what = deflate::decide(
        req.head,
        env,
        rules,
        (resp.status, length),
        &resp.headers.fields,
    );
    deflate::adjust(&mut resp.headers.fields, what);
    if what != Deflate::Gzip {
        return None;
    }
    if deflate::client_is_http11(req.head) {
        relay.client = BodyHeader::Chunked;
        relay.encoding = Encoding::Chunked;
    } else {
        relay.client = BodyHeader::None;
        relay.encoding = Encoding::Raw;
        relay.close = true;
    }
    Some(Gzip::new(level))
}

/// A response on its way to the client.
struct Relayed<'a> {
    resp: &'a ResponseHead,
    relay: &'a Relay,
    public_host: &'a str,
    settings: &'a Settings<'a>,
    /// `Server` for a response without one.
    banner: &'a str,
}

/// Writes the response head and its body, re-framed for the client.
/// Returns the body bytes read from the backend.
async fn relay_response<D: Downstream>(
    client: &mut D,
    backend: &mut Conn<BackendStream>,
    r: &Relayed<'_>,
    mut gzip: Option<Gzip>,
    t: Timeouts,
) -> Result<u64, Failure> {
    let relay = r.relay;
    let mut reader = BodyReader::new(relay.backend);
    let (mut body_header, mut encoding) = (relay.client, relay.encoding);
    // A small body that came with the head goes out with it (one send
    // instead of two per response); compressed, a body that is all here
    // already goes out whole with its length, as Apache's does.
    let mut first = None;
    if let Some(g) = gzip.take() {
        match compress_ahead(&mut reader, backend, g)? {
            Ok(whole) => {
                body_header = BodyHeader::Length(whole.len() as u64);
                encoding = Encoding::Length;
                first = Some(whole);
            }
            Err((g, ahead)) => {
                first = ahead;
                gzip = Some(g);
            }
        }
    } else if let (Framing::Length(n), Encoding::Length) = (relay.backend, relay.encoding) {
        if n <= INLINE_BODY && backend.buf.len() as u64 >= n {
            if let Ok(Some(piece)) = reader.next(backend, t.backend).await {
                first = Some(piece);
            }
        }
    }
    let toward_client = ClientResponse {
        body: body_header,
        close: relay.close,
        upgrade: relay.upgrade_offer.as_deref(),
        public_host: r.public_host,
        reverse: &r.settings.reverse,
        banner: r.banner,
    };
    // Only an unframed body goes with the head; a chunk after it.
    let (with_head, after_head) = match encoding {
        Encoding::Length => (first, None),
        _ => (None, first),
    };
    client
        .send_head(r.resp, &toward_client, with_head, t.client)
        .await
        .map_err(|e| Failure::client(e, true))?;
    if let Some(piece) = after_head {
        client
            .send_piece(&piece, encoding, t.client)
            .await
            .map_err(|e| Failure::client(e, true))?;
    }
    loop {
        match reader.next(backend, t.backend).await {
            Ok(Some(piece)) => {
                // Compressed, flushed whenever the backend pauses (as
                // mod_proxy_http flushes mod_deflate).
                let piece = match gzip.as_mut() {
                    None => Some(piece),
                    Some(g) => g.push(&piece, backend.buf.is_empty()),
                };
                if let Some(piece) = piece {
                    client
                        .send_piece(&piece, encoding, t.client)
                        .await
                        .map_err(|e| Failure::client(e, true))?;
                }
            }
            Ok(None) => break,
            // Mid-body failure: the client connection is cut, with no chunk
            // terminator, so it cannot take a partial body for a whole one (S82).
            Err(e) => return Err(Failure::after(backend_body_error(e))),
        }
    }
    if let Some(g) = gzip {
        client
            .send_piece(&g.finish(), encoding, t.client)
            .await
            .map_err(|e| Failure::client(e, true))?;
    }
    client
        .finish(encoding, t.client)
        .await
        .map_err(|e| Failure::client(e, true))?;
    Ok(reader.read)
}

/// Most compressed input taken before the head is sent.
const GZIP_AHEAD: usize = 256 * 1024;

/// Compresses what of the body is in the buffer already: the whole
/// stream when the body ended there (`Ok`), else the stream so far
/// (flushed) and the compressor to go on with.
#[allow(clippy::type_complexity)]
fn compress_ahead(
    reader: &mut BodyReader,
    backend: &mut Conn<BackendStream>,
    mut g: Gzip,
) -> Result<Result<bytes::Bytes, (Gzip, Option<bytes::Bytes>)>, Failure> {
    let mut out = Vec::new();
    let mut taken = 0;
    while taken < GZIP_AHEAD {
        match reader.next_buffered(&mut backend.buf) {
            Ok(Some(Some(piece))) => {
                taken += piece.len();
                if let Some(c) = g.push(&piece, false) {
                    out.extend_from_slice(&c);
                }
            }
            Ok(Some(None)) => {
                out.extend_from_slice(&g.finish());
                return Ok(Ok(bytes::Bytes::from(out)));
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::before(backend_body_error(e))),
        }
    }
    if let Some(c) = g.push(&[], true) {
        out.extend_from_slice(&c);
    }
    Ok(Err((g, (!out.is_empty()).then(|| bytes::Bytes::from(out)))))
}

async fn read_response_head(
    backend: &mut Conn<BackendStream>,
    timeout: Duration,
) -> Result<ResponseHead, ProxyError> {
    // The head must be within limits: 8 KiB lines, at most 100 + status.
    let max = RESPONSE_FIELD_SIZE * 101;
    match backend.read_head(max, timeout, timeout).await {
        Ok(bytes) => h1::parse_response(&bytes.freeze()).map_err(|e| match e {
            ResponseError::Malformed(why) => ProxyError::BadResponse(why),
            ResponseError::BareCr => ProxyError::BackendBareCr,
            ResponseError::NotHttp1 => ProxyError::NotHttp1,
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
        BodyError::Timeout => ProxyError::ClientTooSlow,
        BodyError::Stalled => ProxyError::ClientTimeout,
        BodyError::Truncated => ProxyError::ClientIo("client closed mid-body".into()),
        BodyError::Io(e) => ProxyError::ClientIo(e.to_string()),
    }
}

fn backend_body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::Malformed(why) => ProxyError::BadResponse(why),
        BodyError::Timeout | BodyError::Stalled => ProxyError::BackendTimeout,
        BodyError::Truncated => ProxyError::BackendClosed,
        BodyError::Io(e) => ProxyError::BackendIo(e.to_string()),
    }
}
