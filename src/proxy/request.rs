//! One request, from its parsed head to an answer: the checks before
//! routing, the server and its post-read rules, the mapping, the fixups,
//! then attempts at backends — one, or balancer members one after another
//! while they refuse — and the one place where a failure becomes an
//! answer.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::downstream::Downstream;
use super::error::{Failure, ProxyError};
use super::errordoc;
use super::files;
use super::forward::{self, Backend, BodyState, ChosenMember, Outcome};
use super::gate;
use super::handler;
use super::header_rules::{self, ConnFacts};
use super::logging::{self, Trail, Visit, Watch};
use super::plan::{self, Local};
use super::remote_ip;
use super::rewrite_fixup::{self, Fixed, Rounds};
use super::server::{Current, Shared};
use super::signature;
use super::tls::{self, TlsFacts};
use crate::balancer::{self, Busy};
use crate::config::model::balancer::Balancer;
use crate::config::WorkerRef;
use crate::http::body::Framing;
use crate::http::write::{local_answer, LocalAnswer, Signed};
use crate::http::{canonical_reason, RequestHead};
use crate::ops::access::{ConnStatus, Entry, SslVars};
use crate::ops::stats::Upgrade;
use crate::route::{self, Decision, Mapped, PathError};
use crate::rules::Env;
use crate::upstream::Generation;

/// Handles one request whose head has been read: counts it (mod_status,
/// the metrics) and writes its access log lines (a tunnel's are written
/// when it ends).
pub async fn handle<D: Downstream>(
    client: &mut D,
    mut head: RequestHead,
    current: &Current,
    shared: &Shared,
    facts: ConnFacts,
    tls: Option<&TlsFacts>,
    visit: Option<&Visit>,
) -> Outcome {
    shared.stats.request();
    let generation = &current.generation;
    let config = &generation.config;
    // Times only for a page that shows them (or the log's own clock).
    let timed = shared.stats.is_timed();
    let started = timed.then(std::time::Instant::now);
    let upgrade = head.headers.get_str("upgrade").is_some();
    let mut watch = Watch::new(client, config);
    let mut trail = Trail::new(config);
    // One await of the routing's future, not a layer above it: a future
    // that awaits another holds it whole, and the request's is moved into
    // its connection's task for every request.
    let mut facts = facts;
    let mut outcome = match checks(&mut head, generation, facts, tls) {
        Err(local) => {
            let server = route::select_server(config, facts.local, head.headers.get_str("host"));
            let signed =
                signature::signed(config, server, head.headers.get_str("host"), facts.https);
            answer_local(&mut watch, local, config.timeout, &signed).await
        }
        Ok(close_after) => {
            facts = remote_ip::resolve(&mut head, config, facts);
            let rounds = Rounds::default();
            match route_and_forward(
                &mut watch,
                &mut head,
                (generation, facts, rounds),
                &mut trail,
                shared,
            )
            .await
            {
                Outcome::KeepAlive if close_after => Outcome::Close,
                other => other,
            }
        }
    };
    // Counts always (a page added by a reload reads them from the start);
    // times only while a page shows them.
    if upgrade {
        shared
            .stats
            .upgrade(trail.upgrade.unwrap_or(Upgrade::NotProxied));
    }
    if let Some(started) = started {
        let took = started.elapsed();
        shared.stats.add_duration(took);
        if upgrade && trail.upgrade == Some(Upgrade::Switched) {
            shared.stats.handshake.observe(took);
        }
    }
    let (Some(seen), Some(log), Some(visit)) = (watch.seen.as_deref(), trail.log.as_deref(), visit)
    else {
        return outcome;
    };
    let server = trail
        .server
        .unwrap_or_else(|| route::select_server(config, facts.local, None));
    let conn = match &outcome {
        _ if watch.aborted() => ConnStatus::Aborted,
        Outcome::KeepAlive => ConnStatus::KeepAlive,
        Outcome::Close | Outcome::Tunnel(_) => ConnStatus::Close,
    };
    let traffic = watch.traffic();
    let entry = Entry {
        head: Some(&head),
        body_bytes: seen.body,
        response_headers: &seen.fields,
        env: Some(&trail.env),
        conn,
        filename: log.filename.as_deref(),
        handler: log.filename.as_ref().map(|_| "proxy-server"),
        backend: log.backend.as_deref(),
        user: log.user.as_deref(),
        remote_host: log.remote_host.as_deref(),
        ssl: tls.map(|t| SslVars {
            protocol: "",
            cipher: "",
            sni: t.sni.as_deref(),
        }),
        ..visit.entry(facts, server, seen.status, traffic)
    };
    let log = logging::write(config, &current.logs, &entry);
    if let (Outcome::Tunnel(start), Some(log)) = (&mut outcome, log) {
        start.log = Some(log);
    }
    outcome
}

/// The checks before routing: a local answer, or whether the connection
/// closes after this request.
pub(super) fn checks(
    head: &mut RequestHead,
    generation: &Generation,
    facts: ConnFacts,
    tls: Option<&TlsFacts>,
) -> Result<bool, Local> {
    let wants_close = plan::client_wants_close(head, facts.keepalive);
    let close_after = plan::admit(head).map_err(|local| local.closing_if(wants_close))?;
    if let Some(tls) = tls {
        let host = head.headers.get_str("host");
        let sni = tls.sni.as_deref();
        if let Some(local) = tls::misdirected(&generation.config, facts.local, sni, host) {
            tracing::error!(
                peer = %facts.peer,
                "Hostname {} provided via SNI and hostname {} provided via HTTP have no compatible SSL setup",
                sni.unwrap_or("(none: the address's first host)"),
                host.unwrap_or("(none)")
            );
            return Err(local.closing_if(wants_close));
        }
    }
    Ok(close_after)
}

/// Answers a request locally, before its server is known.
pub async fn answer_local<D: Downstream>(
    client: &mut D,
    local: Local,
    timeout: Duration,
    signed: &Signed<'_>,
) -> Outcome {
    let extra: &[(&str, &str)] = match &local.extra {
        Some(e) => std::slice::from_ref(e),
        None => &[],
    };
    let answer = local_answer(
        local.status,
        local.reason,
        extra,
        local.close,
        signed,
        &mut |_| {},
    );
    write_answer(client, &answer, timeout).await
}

/// Sends an answer wsgate made; the connection stays open unless it says
/// it closes.
async fn write_answer<D: Downstream>(
    client: &mut D,
    answer: &LocalAnswer,
    timeout: Duration,
) -> Outcome {
    let ok = client.send_answer(answer, timeout).await.is_ok();
    if ok && !answer.close {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// Answers or proxies a request once its head is settled (Host known).
async fn route_and_forward<'g, D: Downstream>(
    client: &mut D,
    head: &mut RequestHead,
    (generation, facts, rounds): (&'g Arc<Generation>, ConnFacts, Rounds),
    trail: &mut Trail<'g>,
    shared: &Shared,
) -> Outcome {
    let config = &generation.config;
    let t = config.timeout;
    // `explain` takes a request through these steps, without a socket:
    // a step added here belongs there too.
    let wants_close = plan::client_wants_close(head, facts.keepalive);
    let server = route::select_server(config, facts.local, head.headers.get_str("host"));
    let signed = signature::signed(config, server, head.headers.get_str("host"), facts.https);
    let (framing, max_forwards) = match plan::before_routing(head, config.limits.body) {
        Ok(x) => x,
        Err(local) => return answer_local(client, local.closing_if(wants_close), t, &signed).await,
    };
    // A local answer leaves the request's body unread: the connection
    // closes after it, as after any answer the client asked to close.
    let close = framing != Framing::Empty || wants_close;
    let path = match route::normalize(&head.target) {
        Ok(p) => p,
        Err(PathError::BadRequest) => {
            return answer_local(client, Local::BAD_REQUEST, t, &signed).await
        }
        Err(PathError::NotFound) => {
            let not_found = local_answer(404, "Not Found", &[], close, &signed, &mut |_| {});
            return write_answer(client, &not_found, t).await;
        }
    };
    trail.server = Some(server);
    let mode = route::signature_for(server, &path);
    let host = head.headers.get_str("host");
    let signed = signature::signed_as(config, server, host, facts.https, mode);
    let env = &mut trail.env;
    super::unique_id::stamp(config.unique_id, env);
    let cx = header_rules::post_read(head, &path, facts, server, env);
    header_rules::header_parser(head, cx, &route::location_setenvif(server, &path), env);
    let mut found = gate::Found::default();
    let asked = (&*head, &path, facts, cx);
    let settled = settle_access(asked, (config, server), &trail.env, &mut found).await;
    if let Some(log) = trail.log.as_deref_mut() {
        log.user = found.sent_user.clone();
        log.remote_host = found.remote_host.clone().flatten();
    }
    let routed = Routed {
        generation,
        server,
        facts,
        cx,
        signed: &signed,
        max_forwards,
    };
    let mapped = match settled {
        Ok(mapped) => mapped,
        Err(refusal) => return refused(client, &routed, head, trail, refusal, close).await,
    };
    // mod_rewrite's fixup: the per-directory rules.
    let asked = (&*head, &path, mapped, rounds);
    let mapped = match fixups(client, asked, &routed, trail, (shared, close)).await {
        Ok(d) => d,
        Err(outcome) => return outcome,
    };
    let env = &mut trail.env;
    let trace_refused = head.method == "TRACE" && !server.settings.trace_enable;
    let mapped = match mapped {
        // `TraceEnable Off`: mod_proxy's handler (or the core's, for a
        // request nothing proxies) refuses TRACE, with an empty Allow.
        Decision::Proxy(_) | Decision::NotFound | Decision::File(_) if trace_refused => {
            tracing::info!(peer = %facts.peer, "AH01139: TRACE forbidden by server configuration");
            let bytes = header_rules::error_page_with(
                head,
                cx,
                env,
                (405, canonical_reason(405)),
                close,
                &[("Allow", "")],
                &signed,
            );
            return write_answer(client, &bytes, t).await;
        }
        Decision::Proxy(m) => m,
        Decision::NotFound => {
            return routed.fail(client, head, trail, (404, close)).await;
        }
        Decision::Forbidden => {
            tracing::warn!(peer = %facts.peer, "refused a mapped target with user information");
            return routed.fail(client, head, trail, (403, true)).await;
        }
        Decision::BadTarget => return routed.fail(client, head, trail, (400, true)).await,
        Decision::Redirect { status, location } => {
            let reason = canonical_reason(status);
            let extra = [("Location", location.as_str())];
            let redirect = local_answer(status, reason, &extra, close, &signed, &mut |_| {});
            return write_answer(client, &redirect, t).await;
        }
        Decision::Status(status) => return routed.fail(client, head, trail, (status, true)).await,
        Decision::Denied => {
            tracing::error!(peer = %facts.peer, "AH01630: client denied by server configuration: {}", head.target);
            return routed.fail(client, head, trail, (403, close)).await;
        }
        Decision::File(file) => {
            header_rules::fixups(head, cx, &file.location_rules, env);
            return serve_file(client, &routed, head, trail, &file, close).await;
        }
        Decision::Unauthorized { .. } | Decision::AccessError(_) | Decision::Pending(_) => {
            unreachable!("settle_access answers these")
        }
        Decision::Handler(h) => {
            let place = handler::Place {
                server_name: &server.server_name,
                signed: &signed,
                local: facts.local,
                framing,
            };
            return handler::serve(client, head, h, shared, generation, place, close).await;
        }
    };
    header_rules::fixups(head, cx, &mapped.settings.location_rules, env);
    let req = forward::Request {
        head,
        framing,
        max_forwards,
        settings: &mapped.settings,
        server,
        facts,
        rules: cx,
    };
    match proxy_mapped(client, &req, &mapped, trail, generation).await {
        Ok(outcome) => outcome,
        Err(f) => {
            let how = (f.status, f.reason.as_str());
            error_answer(client, &routed, head, trail, how, true, &f.fields()).await
        }
    }
}

/// Access control's 401 (with its challenge) or 500.
async fn refused<'g, D: Downstream>(
    client: &mut D,
    routed: &Routed<'_, 'g>,
    head: &RequestHead,
    trail: &mut Trail<'g>,
    (status, realm): (u16, &str),
    close: bool,
) -> Outcome {
    let challenge = format!("Basic realm=\"{realm}\"");
    let (close, extra) = match status {
        401 => (close, &[("WWW-Authenticate", challenge.as_str())][..]),
        // A 500: the credentials could not be checked; closes, as
        // Apache's does.
        _ => (true, &[][..]),
    };
    let how = (status, canonical_reason(status));
    error_answer(client, routed, head, trail, how, close, extra).await
}

/// mod_rewrite's fixup phase: the per-directory rules of the sections
/// that apply to a mapped request. The decision to go on with, or the
/// outcome of the rules' answer or of their internal redirect (the
/// request processed again for the new target, up to Apache's
/// `LimitInternalRecursion`).
async fn fixups<'g, D: Downstream>(
    client: &mut D,
    (head, path, mapped, mut rounds): (&RequestHead, &route::RequestPath, Decision<'g>, Rounds),
    r: &Routed<'_, 'g>,
    trail: &mut Trail<'g>,
    (shared, close): (&Shared, bool),
) -> Result<Decision<'g>, Outcome> {
    if !route::perdir::any(r.server) {
        return Ok(mapped);
    }
    let (config, facts) = (&r.generation.config, r.facts);
    // Access to a file comes first (the file server checks it when it
    // serves, but a rule may proxy or redirect instead).
    if let Decision::File(file) = &mapped {
        let env = &trail.env;
        let mut place = files::Place::new(r.cx, env, (close, config.timeout), r.signed, 0);
        place.log = trail.log.as_deref_mut();
        if let Err((status, challenge)) = files::access_before_fixups(head, file, place).await {
            let extra: Vec<(&str, &str)> = challenge
                .iter()
                .map(|c| ("WWW-Authenticate", c.as_str()))
                .collect();
            let close = close || status >= 500;
            let how = (status, canonical_reason(status));
            return Err(error_answer(client, r, head, trail, how, close, &extra).await);
        }
    }
    let asked = (head, path, facts);
    let fixed = rewrite_fixup::fixup((config, r.server), asked, mapped, &mut rounds);
    let fixed = Box::pin(fixed).await;
    match fixed {
        Fixed::Go(d) => Ok(d),
        Fixed::Forbidden => Err(r.fail(client, head, trail, (403, close)).await),
        Fixed::Again(target) => {
            if rounds.redirects >= rewrite_fixup::MAX_INTERNAL_REDIRECTS {
                tracing::error!(peer = %facts.peer, "AH00124: Request exceeded the limit of 10 internal redirects due to probable configuration error. Use 'LimitInternalRecursion' to increase the limit if necessary.");
                return Err(r.fail(client, head, trail, (500, true)).await);
            }
            rounds.redirects += 1;
            let mut new = head.clone();
            new.target = target.into();
            let again = (r.generation, facts, rounds);
            Err(Box::pin(route_and_forward(client, &mut new, again, trail, shared)).await)
        }
    }
}

/// A request mapped to the file system, answered by the file server, and
/// its `ErrorDocument` internal redirect if it leaves one.
async fn serve_file<'g, D: Downstream>(
    client: &mut D,
    r: &Routed<'_, 'g>,
    head: &RequestHead,
    trail: &mut Trail<'g>,
    file: &route::files::FileMapped<'_>,
    close: bool,
) -> Outcome {
    let config = &r.generation.config;
    let redirect = std::sync::OnceLock::new();
    let outcome = {
        let (env, log) = (&trail.env, trail.log.as_deref_mut());
        let mut place = files::Place::new(
            r.cx,
            env,
            (close, config.timeout),
            r.signed,
            config.deflate_level,
        );
        place.locations = &file.location_rules;
        place.log = log;
        place.docs = route::errordoc::any(r.server);
        place.redirect = Some(&redirect);
        files::serve(client, head, file, place).await
    };
    match redirect.into_inner() {
        Some(internal) => internal_redirect(client, r, head, trail, internal, close).await,
        None => outcome,
    }
}

/// What an error answer made after routing needs: `ErrorDocument`'s
/// internal redirect routes and proxies again.
struct Routed<'a, 'g> {
    generation: &'g Arc<Generation>,
    server: &'g crate::config::Server,
    facts: ConnFacts,
    cx: header_rules::Context<'a>,
    signed: &'a Signed<'a>,
    max_forwards: Option<u64>,
}

impl<'g> Routed<'_, 'g> {
    /// [`error_answer`] with the status's own reason and no fields.
    async fn fail<D: Downstream>(
        &self,
        client: &mut D,
        head: &RequestHead,
        trail: &mut Trail<'g>,
        (status, close): (u16, bool),
    ) -> Outcome {
        let reason = canonical_reason(status);
        error_answer(client, self, head, trail, (status, reason), close, &[]).await
    }
}

/// An error status wsgate answers after routing, with the server's
/// `Header always` rules, through `ErrorDocument`.
async fn error_answer<'g, D: Downstream>(
    client: &mut D,
    r: &Routed<'_, 'g>,
    head: &RequestHead,
    trail: &mut Trail<'g>,
    (status, reason): (u16, &str),
    close: bool,
    extra: &[(&str, &str)],
) -> Outcome {
    let how = (status, reason, close);
    match errordoc::page(head, r.cx, &trail.env, how, extra, r.signed, None) {
        Ok(page) => write_answer(client, &page, r.generation.config.timeout).await,
        Err(internal) => internal_redirect(client, r, head, trail, internal, close).await,
    }
}

/// `ErrorDocument CODE /url-path`: a GET of the path, routed again (its
/// access checked again, as Apache's internal redirect does), answered by
/// the file server with the original status or by a backend with its
/// own; anything else, or its failure, gives the original status's own
/// page (Apache's recursive error).
async fn internal_redirect<'g, D: Downstream>(
    client: &mut D,
    r: &Routed<'_, 'g>,
    head: &RequestHead,
    trail: &mut Trail<'g>,
    errordoc::Internal { status, url }: errordoc::Internal,
    close: bool,
) -> Outcome {
    let (config, t) = (&r.generation.config, r.generation.config.timeout);
    let new = errordoc::redirected_head(head, &url);
    let own = |env: &Env| {
        let reason = canonical_reason(status);
        header_rules::error_page(head, r.cx, env, status, reason, close, r.signed)
    };
    let Ok(path) = route::normalize(&new.target) else {
        return write_answer(client, &own(&trail.env), t).await;
    };
    let cx = header_rules::Context {
        path: &path,
        ..r.cx
    };
    // An answer that closes (Apache's status that drops the connection)
    // closes with the backend's answer too.
    let facts = ConnFacts {
        keepalive: r.facts.keepalive && !close,
        ..r.facts
    };
    let decision = {
        let req = route::Request::from_head(&new, &path, facts.peer, facts.local, facts.https);
        route::decide(config, r.server, &req)
    };
    match decision {
        Decision::File(file) => {
            let env = &trail.env;
            let mut place = files::Place::new(cx, env, (close, t), r.signed, config.deflate_level);
            place.locations = &file.location_rules;
            place.as_error = Some(status);
            files::serve(client, &new, &file, place).await
        }
        Decision::Proxy(mapped) => {
            let req = forward::Request {
                head: &new,
                framing: Framing::Empty,
                max_forwards: r.max_forwards,
                settings: &mapped.settings,
                server: r.server,
                facts,
                rules: cx,
            };
            match proxy_mapped(client, &req, &mapped, trail, r.generation).await {
                Ok(outcome) => outcome,
                Err(_) => write_answer(client, &own(&trail.env), t).await,
            }
        }
        _ => write_answer(client, &own(&trail.env), t).await,
    }
}

/// A proxied request's failure the client has not been told of yet: the
/// status and reason to answer (a backend's own with `ProxyErrorOverride`)
/// and a field to add (its 401's `WWW-Authenticate`).
struct Failed {
    status: u16,
    reason: String,
    extra: Option<(&'static str, String)>,
}

impl Failed {
    fn fields(&self) -> Vec<(&str, &str)> {
        self.extra.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

/// Proxies a mapped request, notes where it went for the log, and leaves
/// a failure the client has not been told of yet to the caller.
async fn proxy_mapped<'g, D: Downstream>(
    client: &mut D,
    req: &forward::Request<'_>,
    mapped: &Mapped<'_>,
    trail: &mut Trail<'g>,
    generation: &'g Arc<Generation>,
) -> Result<Outcome, Failed> {
    let (config, facts) = (&generation.config, req.facts);
    let env = &mut trail.env;
    let filename = trail.log.as_deref_mut().map(|l| &mut l.filename);
    let result = attempts(client, req, mapped, env, generation, filename).await;
    if let Some(log) = trail.log.as_deref_mut() {
        log.backend = Some(match env.get("BALANCER_WORKER_NAME") {
            Some(member) => member.to_string(),
            None => mapped.name(config).into_owned(),
        });
    }
    match result {
        Ok(outcome) => {
            trail.upgrade = Some(match outcome {
                Outcome::Tunnel(_) => Upgrade::Switched,
                _ => Upgrade::Refused,
            });
            Ok(outcome)
        }
        Err(failure) => {
            let e = &failure.error;
            trail.upgrade = Some(e.upgrade_cause());
            if e.is_backend() {
                tracing::error!(peer = %facts.peer, route = %mapped.name(config), "{e}");
            } else {
                tracing::debug!(peer = %facts.peer, "{e}");
            }
            // The client still gets a page: the caller's, through
            // ErrorDocument (also for an answer ProxyErrorOverride
            // replaced, as in Apache).
            match (failure.answered, e.answer()) {
                (false, Some(a)) => Err(Failed {
                    status: a.status,
                    reason: a.reason.to_string(),
                    extra: a.extra.map(|(name, value)| (name, value.to_string())),
                }),
                _ => Ok(Outcome::Close),
            }
        }
    }
}

/// Routes a request, then settles access control that waits for a host
/// name or a user: finds it out and decides again with it. `Err`: a 401
/// for the realm (no user, or one not let in) or a 500 (the credentials
/// could not be checked, or access control Apache cannot apply either).
async fn settle_access<'c>(
    (head, path, facts, cx): (
        &RequestHead,
        &route::RequestPath,
        ConnFacts,
        header_rules::Context<'_>,
    ),
    (config, server): (&'c crate::config::Config, &'c crate::config::Server),
    env: &Env,
    found: &mut gate::Found,
) -> Result<Decision<'c>, (u16, &'c str)> {
    if !config.text_maps.is_empty() {
        Box::pin(rewrite_fixup::refresh_maps(config)).await;
    }
    let request = || route::Request::from_head(head, path, facts.peer, facts.local, facts.https);
    let view = header_rules::expr_view(head, cx, env);
    let mut mapped = {
        let mut r = request();
        r.access = access_facts(env, &view, found);
        route::decide(config, server, &r)
    };
    while let Decision::Pending(pending) = mapped {
        if let Err(status) = gate::find_out(&pending.need, head, facts.peer, found).await {
            let realm = match &pending.need {
                route::Need::User { realm, .. } => realm,
                route::Need::Host => "",
            };
            return Err((status, realm));
        }
        let mut r = request();
        r.access = access_facts(env, &view, found);
        mapped = route::access::resume(*pending, &r.asked(), &mut ());
    }
    match mapped {
        Decision::Unauthorized { realm } => {
            let user = found.user.as_deref().unwrap_or("-");
            tracing::error!(peer = %facts.peer, "AH01631: user {user}: authorization failure for \"{}\"", head.target);
            Err((401, realm))
        }
        Decision::AccessError(why) => {
            tracing::error!(peer = %facts.peer, "{why}: {}", head.target);
            Err((500, ""))
        }
        d => Ok(d),
    }
}

/// What access control reads of the request beyond its head.
fn access_facts<'a>(
    env: &'a Env,
    view: &'a dyn crate::rules::expr::Context,
    found: &'a gate::Found,
) -> route::access::Facts<'a> {
    route::access::Facts {
        env: Some(env),
        expr: Some(view),
        remote_host: found.remote_host.as_ref().map(Option::as_deref),
        user: found.user.as_deref(),
    }
}

/// Proxies a mapped request: to its worker, or to balancer members in
/// turn. S109: a member that cannot be connected to is put in error and
/// the request, not sent yet, goes to the next one, up to `maxattempts`.
async fn attempts<D: Downstream>(
    client: &mut D,
    req: &forward::Request<'_>,
    mapped: &Mapped<'_>,
    env: &mut Env,
    generation: &Generation,
    mut filename: Option<&mut Option<String>>,
) -> Result<Outcome, Failure> {
    let config = &generation.config;
    let mut body = BodyState::new(req.framing);
    let timed = (req.framing != Framing::Empty).then(|| body_stage(config, req));
    if let Some(stage) = timed.flatten() {
        body.reader = super::body::BodyReader::new(req.framing).timed(stage);
    }
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let backend = choose_backend(generation, mapped, req.head, req.rules.path, &tried)
            .map_err(Failure::before)?;
        // Apache's `r->filename` for the log: `proxy:` and the url asked of
        // the backend (a balancer's member's).
        if let Some(f) = filename.as_deref_mut() {
            *f = Some(format!(
                "proxy:{}{}",
                backend.url.origin(),
                backend.path_and_query
            ));
        }
        let Some(m) = backend.member else {
            return forward::forward(client, req, &backend, &mut body, None, env, generation).await;
        };
        let balancer = config.balancer(m.balancer);
        let state = generation.balancer(m.balancer);
        let busy = Busy::new(state.members[m.index].clone());
        balancer_env(env, balancer, &backend, m);
        let outcome = forward::forward(
            client,
            req,
            &backend,
            &mut body,
            Some(busy),
            env,
            generation,
        )
        .await;
        let fail = || {
            let name = &backend.worker.name;
            balancer::fail(balancer, m.index, state, name, backend.worker.params.retry)
        };
        match &outcome {
            Err(Failure {
                error: ProxyError::Connect(_) | ProxyError::PoolExhausted,
                answered: false,
            }) => {
                fail();
                tried.push(m.index);
                if tried.len() < balancer.attempts() {
                    continue;
                }
            }
            // S111, S112, S126: these fail the member but are not retried.
            Err(Failure {
                error: ProxyError::TlsHandshake(_),
                ..
            }) => fail(),
            Err(Failure {
                error: ProxyError::BackendTimeout,
                ..
            }) if balancer.failontimeout => fail(),
            _ => {}
        }
        return outcome;
    }
}

/// mod_reqtimeout's body stage: the request's server's, when the
/// connection's server has the module on (`reqtimeout_init`).
fn body_stage(
    config: &crate::config::Config,
    req: &forward::Request<'_>,
) -> Option<crate::config::model::identity::ReadStage> {
    let base = route::select_server(config, req.facts.local, None);
    let stage = req.server.read_timeouts.body;
    (base.read_timeouts.any() && !stage.is_off()).then_some(stage)
}

/// S103: what the balancer tells header rules and logs.
fn balancer_env(env: &mut Env, balancer: &Balancer, backend: &Backend<'_>, m: ChosenMember) {
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

/// Picks the backend for an attempt, skipping balancer members `tried`.
/// Borrowed from the mapping or the balancer: nothing is copied per request
/// but a balanced path.
pub(super) fn choose_backend<'a>(
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
                path_and_query: Cow::Borrowed(&mapped.path_and_query),
                reuse: mapped.reuse,
                member: None,
                session_route: None,
            });
        }
    };
    let spec = generation.config.balancer(idx);
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
        path_and_query: Cow::Owned(path_and_query),
        member: Some(ChosenMember {
            balancer: idx,
            index: chosen.index,
            route_changed: chosen.route_changed,
        }),
        session_route: route,
    })
}
