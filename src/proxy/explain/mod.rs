//! `wsgate -t --explain METHOD URL [Header: value…]`: what wsgate would do
//! with a request, told without sending any traffic — the virtual host,
//! each rewrite rule, the ProxyPass line, `Require`, the backend and
//! balancer member, the upgrade decision and every timeout, each with the
//! line of the configuration it comes from.
//!
//! Nothing here decides anything of its own. The request is made into
//! bytes and read by the HTTP/1 parser, then taken through the steps of
//! `request::route_and_forward` in its order, calling the same functions:
//! `request::checks`, `plan::before_routing`, `route::normalize`,
//! `route::select_server`, the post-read rules, `route::decide_traced`
//! (the proxy's `decide` with a trace that sees what the routing looked
//! at), the fixups, `request::choose_backend`, `forward::request_plan`
//! and `plan::response_plan` on a 101. An explanation cannot drift from
//! what the proxy does without these calls drifting too.

mod backend;
mod question;
mod sources;
mod timeouts;

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use super::header_rules::{self, ConnFacts};
use super::plan::{self, Local};
use super::request::checks;
use super::tls::{self, TlsFacts};
use crate::config::model::authz::Require;
use crate::config::{Config, Origin, Server};
use crate::http::canonical_reason;
use crate::http::h1::{self, RequestError};
use crate::route::{self, Authz, Decision, PathError, RequestPath, RewriteStep, RouteStep};
use crate::rules::Env;
use crate::upstream::{Generation, Runtime};
pub use question::Question;
use sources::Sources;

/// Explains `question` against `config`: the text to print.
pub fn explain(config: Config, question: &Question) -> String {
    let generation = Runtime::default().bind(config);
    let mut out = Report::default();
    let mut sources = Sources::default();
    let asked = question.request(&generation.config);
    let local = run(&generation, question, &asked, &mut out, &mut sources);
    // What the same request would do the other way round: with the
    // Upgrade it lacks, or without the one it has.
    let (label, other) = asked.other_way();
    let mut brief = Report::default();
    run(&generation, question, &other, &mut brief, &mut sources);
    out.line(label, brief.summary());
    // The connection's timeouts first, then the request's.
    let mut connection = Report::default();
    timeouts::global(&mut connection, &mut sources, &generation.config, local);
    out.text + &connection.timeouts + &out.timeouts
}

/// Lines of `key: text`; the timeouts' apart, to come last.
#[derive(Default)]
struct Report {
    text: String,
    timeouts: String,
    /// The `decision`, `backend` and `upgrade` lines, for a summary.
    main: Vec<String>,
}

impl Report {
    fn line(&mut self, key: &str, text: impl AsRef<str>) {
        let text = text.as_ref();
        let to = if key.starts_with("timeout ") {
            &mut self.timeouts
        } else {
            &mut self.text
        };
        let _ = writeln!(to, "{key}: {text}");
        if matches!(key, "decision" | "backend" | "upgrade") {
            self.main.push(format!("{key} {text}"));
        }
    }

    fn summary(&self) -> String {
        self.main.join("; ")
    }
}

/// The request as it would arrive: its header lines, each with why it is
/// there when the command line did not give it.
pub struct Asked {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String, Option<&'static str>)>,
}

impl Asked {
    fn bytes(&self) -> Bytes {
        let mut text = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value, _) in &self.headers {
            let _ = write!(text, "{name}: {value}\r\n");
        }
        text.push_str("\r\n");
        Bytes::from(text)
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _, _)| n.eq_ignore_ascii_case(name))
    }

    /// The same request without its Upgrade (and the `upgrade` token of
    /// its Connection), or with `Upgrade: websocket` when it has none.
    fn other_way(&self) -> (&'static str, Asked) {
        let mut other = Asked {
            method: self.method.clone(),
            target: self.target.clone(),
            headers: Vec::new(),
        };
        if self.has("upgrade") {
            for (n, v, why) in &self.headers {
                if n.eq_ignore_ascii_case("upgrade") {
                    continue;
                }
                if n.eq_ignore_ascii_case("connection") {
                    let rest: Vec<&str> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.eq_ignore_ascii_case("upgrade") && !t.is_empty())
                        .collect();
                    if !rest.is_empty() {
                        other.headers.push((n.clone(), rest.join(", "), *why));
                    }
                    continue;
                }
                other.headers.push((n.clone(), v.clone(), *why));
            }
            return ("without upgrade", other);
        }
        other.headers = self
            .headers
            .iter()
            .filter(|(n, _, _)| !n.eq_ignore_ascii_case("connection"))
            .cloned()
            .collect();
        other
            .headers
            .push(("Upgrade".into(), "websocket".into(), None));
        other
            .headers
            .push(("Connection".into(), "Upgrade".into(), None));
        ("with Upgrade: websocket", other)
    }
}

/// One request through the proxy's steps, reported into `out`; the local
/// address it reaches, if any.
fn run(
    generation: &Generation,
    question: &Question,
    asked: &Asked,
    out: &mut Report,
    sources: &mut Sources,
) -> Option<SocketAddr> {
    let config = &generation.config;
    out.line(
        "request",
        format!("{} {} HTTP/1.1", asked.method, asked.target),
    );
    for (name, value, from) in &asked.headers {
        match from {
            Some(why) => out.line("header", format!("{name}: {value} ({why})")),
            None => out.line("header", format!("{name}: {value}")),
        }
    }
    let Some((local, how)) = question.arrival(config) else {
        out.line(
            "listener",
            format!("none: no Listen line takes port {}", question.port(config)),
        );
        out.line("decision", "not received: wsgate does not listen there");
        return None;
    };
    run_at(generation, question, asked, (local, how), (out, sources));
    Some(local)
}

/// The steps of `request::route_and_forward` for a request reaching
/// `local`.
fn run_at(
    generation: &Generation,
    question: &Question,
    asked: &Asked,
    (local, how): (SocketAddr, String),
    (out, sources): (&mut Report, &mut Sources),
) {
    let config = &generation.config;
    let https = tls::tls_server(config, local).is_some();
    out.line(
        "listener",
        format!("{local} ({how}){}", if https { ", TLS" } else { "" }),
    );
    if question.wants_tls() != https {
        out.line(
            "note",
            if https {
                "the url's scheme is plain but this address speaks TLS: a plain request gets 400"
            } else {
                "the url's scheme is TLS but this address speaks plain HTTP: the handshake fails"
            },
        );
    }
    let facts = ConnFacts {
        peer: question.client,
        local,
        https,
        via: None,
        keepalive: config.keepalive,
    };
    out.line("client", question.describe_client());
    let mut head = match h1::parse_request(&asked.bytes(), &config.limits) {
        Ok(h) => h,
        Err(e) => {
            let (status, why) = match e {
                RequestError::Malformed(why) => (400, why),
                RequestError::UriTooLong => {
                    (414, "the request line is longer than LimitRequestLine")
                }
                RequestError::Version => (505, "the HTTP version"),
            };
            out.line(
                "decision",
                format!(
                    "{status} {}: the head is refused ({why})",
                    canonical_reason(status)
                ),
            );
            return;
        }
    };
    let tls = https.then(|| TlsFacts {
        sni: question.sni(&head),
    });
    if let Err(local) = checks(&mut head, generation, facts, tls.as_ref()) {
        answered_early(out, local);
        return;
    }
    let facts = crate::proxy::remote_ip::resolve(&mut head, config, facts);
    if let Some(peer) = facts.via {
        let client = facts.peer.ip();
        out.line(
            "client",
            format!(
                "{client} (RemoteIPHeader; the connection's peer: {})",
                peer.ip()
            ),
        );
    }
    let (framing, max_forwards) = match plan::before_routing(&head, config.limits.body) {
        Ok(x) => x,
        Err(local) => return answered_early(out, local),
    };
    let path = match route::normalize(&head.target) {
        Ok(p) => p,
        Err(PathError::BadRequest) => return answered_early(out, Local::BAD_REQUEST),
        Err(PathError::NotFound) => {
            out.line("decision", "404 Not Found: the path leaves the root (../)");
            return;
        }
    };
    let server = route::select_server(config, local, head.headers.get_str("host"));
    vhost_line(out, config, server, local, head.headers.get_str("host"));
    let mut env = Env::default();
    let cx = header_rules::post_read(&mut head, &path, facts, server, &mut env);
    header_rules::header_parser(
        &head,
        cx,
        &route::location_setenvif(server, &path),
        &mut env,
    );
    let mut seen = Seen::default();
    let decision = {
        let request = route::Request::from_head(&head, &path, facts.peer, local, https);
        route::decide_traced(config, server, &request, &mut seen)
    };
    let steps = Steps {
        client: facts.peer.ip(),
        config,
        server,
        path: &path,
        seen: &seen,
    };
    steps.report(out, sources, &decision);
    let Decision::Proxy(mapped) = decision else {
        return;
    };
    header_rules::fixups(&mut head, cx, &mapped.settings.location_rules, &mut env);
    let req = super::forward::Request {
        head: &head,
        framing,
        max_forwards,
        settings: &mapped.settings,
        server,
        facts,
        rules: cx,
    };
    backend::report(out, sources, generation, &req, &mapped, &seen.locations);
}

fn answered_early(out: &mut Report, local: Local) {
    out.line(
        "decision",
        format!("{} {}: answered before routing", local.status, local.reason),
    );
}

/// Which virtual host answers, and why.
fn vhost_line(
    out: &mut Report,
    config: &Config,
    server: &Server,
    local: SocketAddr,
    host: Option<&str>,
) {
    let name = host.map(crate::http::host_name);
    let what = match &server.origin {
        Some(o) => format!("{} (<VirtualHost> at {o})", server.server_name),
        None => format!("{} (the main server)", server.server_name),
    };
    let why = if server.origin.is_none() {
        if config.vhosts.is_empty() {
            "no <VirtualHost> is configured".to_string()
        } else {
            format!("no <VirtualHost> is for {local}")
        }
    } else {
        match name.as_deref().and_then(|n| route::matching_name(server, n).map(|m| (n, m))) {
            Some((n, m)) if m == server.server_name => {
                format!("Host \"{n}\" matches its ServerName")
            }
            Some((n, m)) => format!("Host \"{n}\" matches its ServerAlias {m}"),
            None => match &name {
                Some(n) => format!(
                    "the first <VirtualHost> for {local}: no ServerName or ServerAlias there matches Host \"{n}\""
                ),
                None => format!("the first <VirtualHost> for {local}: the request has no Host"),
            },
        }
    };
    out.line("vhost", format!("{what}: {why}"));
}

/// What routing reported through its trace.
#[derive(Default)]
struct Seen {
    rules: Vec<(usize, Step)>,
    conds: Vec<(usize, usize, String, bool)>,
    passed_through: Option<String>,
    /// The rules rewrote to a local path.
    local: bool,
    locations: Vec<usize>,
    routes: Vec<(usize, bool, RouteStep)>,
    /// The `Require` that decided (by address, to find its section) and
    /// its verdict.
    require: Option<(usize, Authz)>,
}

/// A rewrite step, owned.
enum Step {
    Skipped,
    NoMatch,
    ConditionsFailed,
    Applied {
        url: Option<String>,
        query: Option<String>,
    },
}

impl route::Trace for Seen {
    fn rewrite_rule(&mut self, index: usize, step: RewriteStep<'_>) {
        let step = match step {
            RewriteStep::Skipped => Step::Skipped,
            RewriteStep::NoMatch => Step::NoMatch,
            RewriteStep::ConditionsFailed => Step::ConditionsFailed,
            RewriteStep::Applied { url, query } => Step::Applied {
                url: url.map(|u| String::from_utf8_lossy(u).into_owned()),
                query: query.map(str::to_string),
            },
        };
        self.rules.push((index, step));
    }

    fn rewrite_cond(&mut self, rule: usize, cond: usize, tested: &[u8], held: bool) {
        let tested = String::from_utf8_lossy(tested).into_owned();
        self.conds.push((rule, cond, tested, held));
    }

    fn passed_through(&mut self, path: &RequestPath) {
        self.passed_through = Some(path.raw.to_string());
    }

    fn rewritten_locally(&mut self) {
        self.local = true;
    }

    fn location(&mut self, index: usize) {
        self.locations.push(index);
    }

    fn route(&mut self, index: usize, location: bool, step: RouteStep) {
        self.routes.push((index, location, step));
    }

    fn require(&mut self, require: &Require, verdict: Authz) {
        self.require = Some((require as *const Require as usize, verdict));
    }
}

/// The routing of one request, for its report.
struct Steps<'a> {
    client: std::net::IpAddr,
    config: &'a Config,
    server: &'a Server,
    path: &'a RequestPath,
    seen: &'a Seen,
}

impl Steps<'_> {
    fn report(&self, out: &mut Report, sources: &mut Sources, decision: &Decision<'_>) {
        self.rewrite(out, sources);
        if let Some(p) = &self.seen.passed_through {
            out.line(
                "rewritten",
                format!("{p} (a [PT] rule hands it to ProxyPass)"),
            );
        }
        for &i in &self.seen.locations {
            let loc = &self.server.locations[i];
            let mut parts = Vec::new();
            if loc.require.is_some() {
                parts.push("Require".to_string());
            }
            if let Some(h) = loc.handler {
                parts.push(format!("SetHandler {}", h.name()));
            }
            if loc.proxy_pass.is_some() {
                parts.push("ProxyPass".to_string());
            }
            let has = if parts.is_empty() {
                String::new()
            } else {
                format!(" (has {})", parts.join(", "))
            };
            let text = sources.line(&loc.origin);
            out.line("location", format!("{}: {text}: matches{has}", loc.origin));
        }
        for &(i, in_location, step) in &self.seen.routes {
            let origin = self.route_origin(i, in_location);
            let text = sources.line(origin);
            let what = match step {
                RouteStep::Mapped => "maps the request",
                RouteStep::Excluded => "excludes the path: not proxied",
                RouteStep::SkippedLegacy => "passed over: a ws:// line takes only requests with Upgrade when ProxyWebsocketFallbackToProxyHttp is Off",
            };
            out.line("route", format!("{origin}: {text}: {what}"));
        }
        if let Some((addr, verdict)) = self.seen.require {
            let origin = self.require_origin(addr);
            let verdict = match verdict {
                Authz::Granted => "granted",
                Authz::Denied => "denied",
                Authz::DeniedNoUser => "denied without a user",
                Authz::Neutral => "not granted (a negation alone grants nothing)",
            };
            let place = match origin {
                Some(o) => format!("{o}: {}", sources.line(o)),
                None => "?".into(),
            };
            out.line(
                "require",
                format!("{place}: {verdict} for client {}", self.client),
            );
        }
        out.line("decision", self.decision(decision));
    }

    fn route_origin(&self, index: usize, in_location: bool) -> &Origin {
        if in_location {
            let loc = &self.server.locations[index];
            loc.proxy_pass.as_ref().map_or(&loc.origin, |p| &p.origin)
        } else {
            &self.server.routes[index].origin
        }
    }

    /// Where the `Require` at `addr` is: a `<Location>` (its last
    /// `Require` line, else the section) or a balancer's `<Proxy>`.
    fn require_origin(&self, addr: usize) -> Option<&Origin> {
        let is = |r: &Option<Require>| {
            r.as_ref()
                .is_some_and(|r| r as *const Require as usize == addr)
        };
        if let Some(loc) = self.server.locations.iter().find(|l| is(&l.require)) {
            return Some(loc.written.last("Require").unwrap_or(&loc.origin));
        }
        self.config
            .balancers
            .iter()
            .find(|b| is(&b.require))
            .map(|b| &b.origin)
    }

    fn rewrite(&self, out: &mut Report, sources: &mut Sources) {
        let rules = &self.server.rewrite;
        if rules.is_empty() {
            return;
        }
        for (i, rule) in rules.iter().enumerate() {
            let text = sources.line(&rule.origin);
            let what = match self.seen.rules.iter().find(|(r, _)| *r == i) {
                None => "not reached: an earlier rule ended the rewriting".to_string(),
                Some((_, Step::Skipped)) => "skipped ([S=N], or a [C] chain that failed)".into(),
                Some((_, Step::NoMatch)) => "the pattern does not match".into(),
                Some((_, Step::ConditionsFailed)) => {
                    "the pattern matches, a condition does not hold".into()
                }
                Some((_, Step::Applied { url: None, .. })) => "applies".into(),
                Some((
                    _,
                    Step::Applied {
                        url: Some(u),
                        query,
                    },
                )) => match query {
                    Some(q) => format!("applies: {u}?{q}"),
                    None => format!("applies: {u}"),
                },
            };
            out.line("rule", format!("{}: {text}: {what}", rule.origin));
            for (_, c, tested, held) in self.seen.conds.iter().filter(|(r, ..)| *r == i) {
                let cond = &rule.conditions[*c];
                let text = sources.line(&cond.origin);
                let held = if *held { "holds" } else { "does not hold" };
                out.line(
                    "cond",
                    format!("{}: {text}: tested \"{tested}\": {held}", cond.origin),
                );
            }
        }
    }

    fn decision(&self, decision: &Decision<'_>) -> String {
        match decision {
            Decision::Proxy(m) => format!("proxy ({})", m.origin),
            Decision::NotFound => {
                let why = match self.seen.routes.last() {
                    Some((_, _, RouteStep::Excluded)) => "ProxyPass ! excludes it",
                    _ if self.seen.local => {
                        "rewritten to a local path, which wsgate does not map to a file"
                    }
                    _ => "nothing proxies it",
                };
                format!("404 Not Found: {why} ({})", self.path.raw)
            }
            Decision::Forbidden => "403 Forbidden: the mapped url carries user information".into(),
            Decision::BadTarget => "400 Bad Request: the mapped url has no usable host".into(),
            Decision::Redirect { status, location } => {
                format!(
                    "redirect {status} {}: {location}",
                    canonical_reason(*status)
                )
            }
            Decision::Status(s) => format!("{s} {} (a rewrite rule)", canonical_reason(*s)),
            Decision::Denied if self.seen.require.is_some() => {
                "403 Forbidden: Require denies the client".into()
            }
            Decision::Denied => "403 Forbidden: Allow/Deny (mod_access_compat) refuse the client".into(),
            Decision::Unauthorized { realm } => {
                format!("401 Unauthorized: the user may not enter realm \"{realm}\"")
            }
            Decision::AccessError(why) => format!("500 Internal Server Error: {why}"),
            Decision::Pending(p) => match &p.need {
                route::Need::Host => {
                    "access depends on the client's host name (explain looks up no names)".into()
                }
                route::Need::User { realm, .. } => format!(
                    "401 Unauthorized unless the request carries a user and password of realm \"{realm}\" that the AuthUserFile accepts and Require lets in (explain checks no passwords)"
                ),
            },
            Decision::Handler(h) => {
                let at = self
                    .seen
                    .locations
                    .iter()
                    .rev()
                    .map(|&i| &self.server.locations[i])
                    .find(|l| l.handler == Some(*h))
                    .map(|l| format!(" ({})", l.origin))
                    .unwrap_or_default();
                format!("handler {}{at}", h.name())
            }
            Decision::File(f) => format!(
                "file {} (DocumentRoot or Alias; access, with the <Directory> and <Files> sections under the <Location>s, is checked when it is served)",
                String::from_utf8_lossy(&f.filename)
            ),
        }
    }
}
