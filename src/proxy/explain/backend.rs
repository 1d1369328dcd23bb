//! A mapped request's backend: the balancer and its member choice, the
//! worker's parameters, and the upgrade decision.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::sources::Sources;
use super::{timeouts, Report};
use crate::balancer;
use crate::config::model::balancer::{Balancer, BalancerIdx};
use crate::config::{Origin, UpgradePolicy, WorkerRef};
use crate::http::h1;
use crate::proxy::forward::{self, Backend, Timeouts};
use crate::proxy::plan::{self, Exchange, ResponsePlan};
use crate::proxy::request::choose_backend;
use crate::proxy::tunnel::Mode;
use crate::proxy::upgrade::Plan;
use crate::route::{self, Mapped};
use crate::upstream::Generation;

/// Reports where a mapped request goes and how.
pub(super) fn report(
    out: &mut Report,
    sources: &mut Sources,
    generation: &Generation,
    req: &forward::Request<'_>,
    mapped: &Mapped<'_>,
    locations: &[usize],
) {
    let config = &generation.config;
    let balanced = match mapped.backend {
        route::Backend::Balanced(idx) => {
            balancer_lines(out, generation, idx);
            Some(idx)
        }
        route::Backend::Single { .. } => None,
    };
    let chosen = choose_backend(generation, mapped, req.head, req.rules.path, &[]);
    if let Some(idx) = balanced {
        choice_line(out, generation, idx, req, chosen.as_ref().ok());
        fresh(generation, idx);
    }
    let backend = match chosen {
        Ok(b) => b,
        Err(e) => {
            let status = e.answer().map_or(503, |a| a.status);
            out.line("backend", format!("none: {e} ({status})"));
            return;
        }
    };
    let member = backend.member.map(|m| format!(" (member {})", m.index + 1));
    out.line(
        "backend",
        format!(
            "{}{}{}",
            backend.url.origin(),
            backend.path_and_query,
            member.unwrap_or_default()
        ),
    );
    worker_line(out, sources, mapped, &backend, generation);
    if !forward::tls_allowed(config, backend.url, req.settings) {
        out.line(
            "upgrade",
            "none: the backend speaks TLS and SSLProxyEngine is off here: the request fails (500)",
        );
        return;
    }
    let t = Timeouts::new(backend.worker.params, req.settings, req.server);
    let mode = upgrade_lines(out, req, &backend, t);
    let origin = backend_origin(generation, mapped, &backend);
    timeouts::request(
        out,
        sources,
        config,
        req,
        &backend,
        (t, mode, origin),
        locations,
    );
}

/// The worker's line: where it is defined, or Apache's default worker.
fn backend_origin<'g>(
    generation: &'g Generation,
    mapped: &Mapped<'_>,
    backend: &Backend<'_>,
) -> Option<&'g Origin> {
    let config = &generation.config;
    if let Some(m) = backend.member {
        let member = &config.balancer(m.balancer).members[m.index];
        return Some(&config.worker(member.worker).origin);
    }
    match mapped.backend {
        route::Backend::Single {
            worker: WorkerRef::Configured(w),
            ..
        } => Some(&config.worker(w).origin),
        _ => None,
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "On"
    } else {
        "Off"
    }
}

fn worker_line(
    out: &mut Report,
    sources: &mut Sources,
    mapped: &Mapped<'_>,
    backend: &Backend<'_>,
    generation: &Generation,
) {
    let p = backend.worker.params;
    let upgrade = match p.upgrade_policy(backend.url.scheme) {
        UpgradePolicy::Never => "none (http:// without upgrade=)".to_string(),
        UpgradePolicy::WebSocket => "websocket (ws:// without upgrade=)".into(),
        UpgradePolicy::List { raw, .. } => format!("upgrade={raw}"),
        UpgradePolicy::Any => "any protocol (upgrade=ANY)".into(),
        UpgradePolicy::None => {
            "upgrade=NONE: only a client asking for NONE (as Apache 2.4.71)".into()
        }
    };
    let max = p.max.map_or("-".to_string(), |m| m.to_string());
    let params = format!(
        "keepalive={} disablereuse={} max={max} reuse={} upgrade: {upgrade}",
        on_off(p.keepalive),
        on_off(p.disable_reuse),
        if backend.reuse { "yes" } else { "no" },
    );
    match backend_origin(generation, mapped, backend) {
        Some(o) => {
            let text = sources.line(o);
            out.line(
                "worker",
                format!("{} ({o}: {text}): {params}", backend.worker.name),
            );
        }
        None => out.line(
            "worker",
            format!(
                "{}: Apache's default worker (no ProxyPass names this url): {params}",
                backend.worker.name
            ),
        ),
    }
}

fn balancer_lines(out: &mut Report, generation: &Generation, idx: BalancerIdx) {
    let config = &generation.config;
    let spec = config.balancer(idx);
    let method = match spec.lbmethod {
        crate::config::model::balancer::LbMethod::ByRequests => "byrequests",
        crate::config::model::balancer::LbMethod::ByBusyness => "bybusyness",
        crate::config::model::balancer::LbMethod::ByTraffic => "bytraffic",
    };
    let sticky = match &spec.sticky {
        Some((c, u)) if c == u => c.clone(),
        Some((c, u)) => format!("{c}|{u}"),
        None => "-".into(),
    };
    out.line(
        "balancer",
        format!(
            "{} ({}): lbmethod={method} stickysession={sticky} nofailover={} attempts={}",
            spec.name,
            spec.origin,
            on_off(spec.nofailover),
            spec.attempts()
        ),
    );
    let state = generation.balancer(idx);
    let now = Instant::now();
    for (i, m) in spec.members.iter().enumerate() {
        let s = &state.members[i];
        let mut notes = Vec::new();
        if s.disabled.load(Ordering::Relaxed) {
            notes.push("disabled (+D)");
        }
        if s.stopped.load(Ordering::Relaxed) {
            notes.push("stopped (+S)");
        }
        if s.in_error(now) {
            notes.push("in error (+E)");
        }
        if s.drain.load(Ordering::Relaxed) {
            notes.push("draining (+N): only its sticky sessions");
        }
        if m.hot_standby {
            notes.push("hot standby (+H)");
        }
        if m.hot_spare {
            notes.push("hot spare (+R)");
        }
        let state = if s.usable(now) {
            "usable"
        } else {
            "not usable"
        };
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(", {}", notes.join(", "))
        };
        out.line(
            "member",
            format!(
                "{} {} ({}): route={} loadfactor={} lbset={}: {state}{notes}",
                i + 1,
                m.url.origin(),
                config.worker(m.worker).origin,
                m.route.as_deref().unwrap_or("-"),
                m.weight as f64 / 100.0,
                m.lbset
            ),
        );
    }
}

/// How the member was chosen: by sticky route, or by load.
fn choice_line(
    out: &mut Report,
    generation: &Generation,
    idx: BalancerIdx,
    req: &forward::Request<'_>,
    chosen: Option<&Backend<'_>>,
) {
    let spec = generation.config.balancer(idx);
    let path = req.rules.path;
    let cookie = req.head.headers.get_str("cookie");
    let route = balancer::sticky_route(spec, &path.raw, path.query.as_deref(), cookie);
    let from = match (&spec.sticky, &route) {
        (Some((c, u)), Some(_)) => {
            let by_url = balancer::sticky_route(spec, &path.raw, path.query.as_deref(), None);
            if by_url.is_some() {
                format!("the url parameter {u}")
            } else {
                format!("the cookie {c}")
            }
        }
        _ => String::new(),
    };
    let member = chosen.and_then(|b| b.member);
    let text = match (route, member) {
        (Some(r), Some(m)) if !m.route_changed => {
            format!("sticky: route \"{r}\" from {from} names member {}", m.index + 1)
        }
        (Some(r), Some(m)) => format!(
            "sticky route \"{r}\" from {from} names no usable member: balanced instead, to member {} (BALANCER_ROUTE_CHANGED)",
            m.index + 1
        ),
        (Some(r), None) => format!(
            "sticky route \"{r}\" from {from}: no member can take it (nofailover={})",
            on_off(spec.nofailover)
        ),
        (None, m) => by_load(generation, spec, idx, m.map(|m| m.index)),
    };
    out.line("choice", text);
}

fn by_load(
    generation: &Generation,
    spec: &Balancer,
    idx: BalancerIdx,
    first: Option<usize>,
) -> String {
    let state = generation.balancer(idx);
    let now = Instant::now();
    let usable: Vec<String> = (0..spec.members.len())
        .filter(|i| state.members[*i].usable(now))
        .map(|i| (i + 1).to_string())
        .collect();
    let sticky = if spec.sticky.is_some() {
        " (the request carries no sticky route)"
    } else {
        ""
    };
    match first {
        Some(f) => format!(
            "by load{sticky}: the choice depends on the traffic; usable members {}; a freshly started wsgate picks member {} first",
            usable.join(", "),
            f + 1
        ),
        None => format!("by load{sticky}: no member is usable (503)"),
    }
}

/// Puts explain's own balancer state back as a fresh start has it, so
/// that each choice it makes is the first one.
fn fresh(generation: &Generation, idx: BalancerIdx) {
    for s in &generation.balancer(idx).members {
        s.lbstatus.store(0, Ordering::Relaxed);
        s.chosen.store(0, Ordering::Relaxed);
    }
}

/// The upgrade decision, and what a 101 leads to (`None`: no tunnel).
fn upgrade_lines(
    out: &mut Report,
    req: &forward::Request<'_>,
    backend: &Backend<'_>,
    t: Timeouts,
) -> Option<Mode> {
    let policy = backend.worker.params.upgrade_policy(backend.url.scheme);
    let rp = forward::request_plan(req, backend, &policy);
    let asked = req.head.headers.get_str("upgrade");
    let http10 = req.head.version < crate::http::Version::HTTP_11;
    let send = match (&rp.upgrade, asked) {
        (Plan::Plain, None) => {
            let conn = if rp.reusable { "keep-alive" } else { "close" };
            out.line(
                "upgrade",
                format!("none asked: proxied as plain HTTP (Connection: {conn} to the backend)"),
            );
            return None;
        }
        (Plan::Plain, Some(_)) if http10 => {
            out.line("upgrade", "ignored: an HTTP/1.0 request never upgrades");
            return None;
        }
        (Plan::Plain, Some(v)) => {
            out.line(
                "upgrade",
                format!("not tunnelled: the worker does not take \"{v}\"; the Upgrade header is dropped and the request goes as plain HTTP"),
            );
            return None;
        }
        (Plan::Refuse { offer }, _) => {
            out.line(
                "upgrade",
                format!("refused: 426 Upgrade Required with Upgrade: {offer} (ProxyWebsocketFallbackToProxyHttp Off: legacy mod_proxy_wstunnel)"),
            );
            return None;
        }
        (Plan::Upgrade { send }, _) => *send,
    };
    // A backend's 101 naming what was sent, through the same plan.
    let named = if send == "*" { "websocket" } else { send };
    let text = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {named}\r\nConnection: Upgrade\r\n\r\n"
    );
    let resp = h1::parse_response(&Bytes::from(text)).ok()?;
    let exchange = Exchange {
        head: req.head,
        plan: &rp,
        framing: req.framing,
        body_left: false,
        keepalive: true,
        policy: &policy,
        idle: t.tunnel_idle(),
    };
    let mode = match plan::response_plan(&exchange, &resp) {
        Ok(ResponsePlan::Tunnel { mode, .. }) => mode,
        _ => return None,
    };
    let how = match mode {
        Mode::HalfClose(Some(idle)) => format!(
            "half-closes passed on, closed after {} idle",
            super::timeouts::duration(idle)
        ),
        Mode::HalfClose(None) => "half-closes passed on, no idle timeout".into(),
        Mode::CloseBoth => {
            "the first side to close closes both, no idle timeout (legacy mod_proxy_wstunnel)"
                .into()
        }
    };
    let frames = if req.settings.frames && named.eq_ignore_ascii_case("websocket") {
        "; WebSocket frame headers followed (WsgateWebSocketFrames)"
    } else {
        ""
    };
    out.line(
        "upgrade",
        format!("tunnelled: sent with Upgrade: {send}; a 101 naming it opens a tunnel ({how}){frames}; any other answer is relayed as a response"),
    );
    Some(mode)
}
