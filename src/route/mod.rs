//! Routing: a pure function from a request head, the connection's local
//! address and the configuration to a decision. No I/O happens here.
//!
//! Order (S11): the server's rewrite rules first (a `[P]` rule proxies, a
//! rewrite to a local path ends mapping), then the ProxyPass of the last
//! matching `<Location>`, then the server's ProxyPass/ProxyPassMatch lines in
//! order (the main server's before a vhost's), the first match winning; `!`
//! stops the search.

pub mod access;
pub mod errordoc;
pub mod files;
pub mod negotiate;
mod path;
pub mod perdir;

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::config::model::balancer::BalancerIdx;
use crate::config::model::headers::Rules;
use crate::config::model::rewrite::Var;
use crate::config::{
    Config, LocationMatcher, Origin, PassTo, ProxySettings, ProxyTarget, ReverseRule, RouteMatcher,
    Server, Target, WorkerRef,
};
use crate::http::{
    host_name, host_without_port, parse_target_url, FieldValue, RequestHead, TargetUrl, Text,
    UrlError, Version,
};
use crate::rewrite::{self, Outcome};
use access::Access;
pub use access::{Authz, Need, Pending};
pub use path::{encode_path, normalize, PathError, RequestPath};
pub use rewrite::Step as RewriteStep;

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'c> {
    Proxy(Mapped<'c>),
    /// No route, or an exclusion: 404.
    NotFound,
    /// The mapped target is not acceptable (user info from a substitution): 403.
    Forbidden,
    /// The mapped target has no usable host: 400.
    BadTarget,
    /// A rewrite rule's redirect.
    Redirect {
        status: u16,
        location: String,
    },
    /// A rewrite rule's status (`[F]`, `[G]`, `R=4xx`, a safety check).
    Status(u16),
    /// `Require` or `Allow`/`Deny` refused the client: 403.
    Denied,
    /// A user is needed and the one given (if any) is not let in: 401,
    /// asking for credentials for this realm.
    Unauthorized {
        realm: &'c str,
    },
    /// 500: access control Apache accepts but cannot apply (an `AuthType`
    /// without `Require`, a `Require` needing a user without `AuthType`,
    /// no `AuthName`); the log line says which.
    AccessError(&'static str),
    /// Access control needs something the proxy finds out (the client's
    /// host name, the user): then [`access::resume`].
    Pending(Box<Pending<'c>>),
    /// Nothing proxies the request and its `<Location>` names a page
    /// wsgate answers itself (`SetHandler`).
    Handler(crate::config::model::authz::Handler),
    /// A file (or directory) under the `DocumentRoot` or an `Alias`: the
    /// file server looks, checks the `<Directory>` sections' access and
    /// answers.
    File(files::FileMapped<'c>),
}

/// A request mapped to a backend.
#[derive(Debug)]
pub struct Mapped<'c> {
    pub backend: Backend<'c>,
    /// The line that mapped it: a ProxyPass or ProxyPassMatch (of the
    /// server or a `<Location>`), or a `[P]` RewriteRule.
    pub origin: &'c Origin,
    /// Whether the backend connection may be pooled afterwards (not for
    /// ProxyPassMatch urls with `$N`, S22, nor for the generic worker).
    pub reuse: bool,
    /// Path and query for the backend request line; for a balancer, what
    /// follows the chosen member's own path.
    pub path_and_query: String,
    pub settings: Settings<'c>,
}

/// Where a mapped request goes.
#[derive(Debug)]
pub enum Backend<'c> {
    Single {
        worker: WorkerRef,
        /// Borrowed from the configuration when the url has no `$N`.
        url: Cow<'c, TargetUrl>,
    },
    /// A `balancer://`: the member is chosen when the request is sent.
    Balanced(BalancerIdx),
}

impl Mapped<'_> {
    /// The worker or balancer, for logs.
    pub fn name<'a>(&'a self, config: &'a Config) -> Cow<'a, str> {
        match &self.backend {
            Backend::Single {
                worker: WorkerRef::Configured(w),
                ..
            } => Cow::Borrowed(&config.worker(*w).name),
            Backend::Single {
                worker: WorkerRef::Generic,
                url,
            } => Cow::Owned(url.origin()),
            Backend::Balanced(b) => Cow::Borrowed(&config.balancer(*b).name),
        }
    }
}

/// What routing looked at on its way to a decision, for `wsgate -t
/// --explain`. The proxy routes with `()`, whose empty methods compile to
/// nothing; an explanation thus comes from the very code that routes.
/// Indexes are into the server's lists (`rewrite`, `locations`, `routes`).
pub trait Trace {
    /// What became of a rewrite rule.
    fn rewrite_rule(&mut self, _index: usize, _step: RewriteStep<'_>) {}
    /// A rewrite rule's condition: the expanded test string and whether it
    /// held.
    fn rewrite_cond(&mut self, _rule: usize, _cond: usize, _tested: &[u8], _held: bool) {}
    /// The path a `[PT]` rule hands to ProxyPass.
    fn passed_through(&mut self, _path: &RequestPath) {}
    /// The rules rewrote the url to a local path (a 404: no files here).
    fn rewritten_locally(&mut self) {}
    /// A `<Location>` whose path matches, in order.
    fn location(&mut self, _index: usize) {}
    /// A ProxyPass line whose path matches (`location`: the one inside
    /// `<Location>` number `index`), and what it did.
    fn route(&mut self, _index: usize, _location: bool, _step: RouteStep) {}
    /// The `Require` that decided access, and its verdict.
    fn require(&mut self, _require: &crate::config::model::authz::Require, _verdict: Authz) {}
}

impl Trace for () {}

/// What a matching ProxyPass line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStep {
    /// It maps the request.
    Mapped,
    /// `!`: nothing is proxied.
    Excluded,
    /// A ws:// line passed over for a request without Upgrade (S58,
    /// `ProxyWebsocketFallbackToProxyHttp Off`).
    SkippedLegacy,
}

/// Hands the rewrite engine's reports to a routing trace.
struct RewriteTrace<'t, T: ?Sized>(&'t mut T);

impl<T: Trace + ?Sized> rewrite::Trace for RewriteTrace<'_, T> {
    fn rule(&mut self, index: usize, step: RewriteStep<'_>) {
        self.0.rewrite_rule(index, step);
    }

    fn cond(&mut self, rule: usize, cond: usize, tested: &[u8], held: bool) {
        self.0.rewrite_cond(rule, cond, tested, held);
    }
}

/// The server's settings with every matching `<Location>`'s overrides applied.
#[derive(Debug, Clone)]
pub struct Settings<'c> {
    pub preserve_host: bool,
    pub add_headers: bool,
    pub fallback_to_http: bool,
    /// `WsgateWebSocketFrames`.
    pub frames: bool,
    /// `WsgateWebSocketPing`.
    pub ping: Option<crate::config::model::WsPing>,
    pub base: &'c ProxySettings,
    pub reverse: Vec<&'c ReverseRule>,
    /// Header and environment rules of the matching `<Location>`s, in
    /// order (the server's own are in `Server::rules`).
    pub location_rules: Vec<&'c Rules>,
    /// `ProxyErrorOverride` of the matching `<Location>`s that say it, in
    /// order (the server's own is in `base`).
    pub error_override: Vec<&'c crate::config::model::proxy_answers::ErrorOverride>,
}

/// Picks the server for a connection accepted on `local` with this `Host`
/// (S131): vhosts for the exact IP first, then wildcard ones; by name among
/// them; else the first of them; else the main server.
pub fn select_server<'c>(config: &'c Config, local: SocketAddr, host: Option<&str>) -> &'c Server {
    if config.vhosts.is_empty() {
        return &config.main;
    }
    let port = local.port();
    let ip = local.ip();
    let exact = |v: &&Server| {
        v.addrs
            .iter()
            .any(|a| a.ip == Some(ip) && a.port.is_none_or(|p| p == port))
    };
    let wildcard = |v: &&Server| {
        v.addrs
            .iter()
            .any(|a| a.ip.is_none() && a.port.is_none_or(|p| p == port))
    };
    // Vhosts for the exact address first, else the wildcard ones.
    let specific = config.vhosts.iter().any(|v| exact(&v));
    let candidate = |v: &&Server| if specific { exact(v) } else { wildcard(v) };
    let Some(first) = config.vhosts.iter().find(candidate) else {
        return &config.main;
    };
    if let Some(host) = host {
        let name = host_name(host);
        if let Some(v) = config
            .vhosts
            .iter()
            .filter(candidate)
            .find(|v| matching_name(v, &name).is_some())
        {
            return v;
        }
    }
    first
}

/// The first of a server's names (ServerName, then each ServerAlias) that
/// `name` (a Host's lower-case name, without port) matches.
pub fn matching_name<'c>(server: &'c Server, name: &str) -> Option<&'c str> {
    server
        .names
        .iter()
        .find(|n| wildcard_match(n.as_bytes(), name.as_bytes()))
        .map(String::as_str)
}

/// `*` and `?` wildcards as ServerAlias allows them.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard_match(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard_match(rest, &name[1..]),
    }
}

/// A request as routing sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as received.
    pub target: &'a str,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: &'a str,
    pub headers: &'a [(Text, FieldValue)],
    pub path: &'a RequestPath,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub https: bool,
    /// What access control reads beyond the head, as far as the proxy
    /// has gathered it.
    pub access: access::Facts<'a>,
}

impl<'a> Request<'a> {
    /// A parsed head, its normalised path, and where the connection runs.
    pub fn from_head(
        head: &'a RequestHead,
        path: &'a RequestPath,
        remote: SocketAddr,
        local: SocketAddr,
        https: bool,
    ) -> Request<'a> {
        Request {
            method: &head.method,
            target: &head.target,
            version: if head.version >= Version::HTTP_11 {
                "HTTP/1.1"
            } else {
                "HTTP/1.0"
            },
            headers: &head.headers.fields,
            path,
            remote,
            local,
            https,
            access: access::Facts::default(),
        }
    }

    /// The request as access control's tests see it.
    pub fn asked(&self) -> access::Asked<'_> {
        access::Asked {
            method: self.method,
            client: self.remote.ip(),
            local: self.local.ip(),
            facts: self.access,
            user: self.access.user,
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }
}

/// Maps a request on `server` (of `config`): rewrite rules, then ProxyPass,
/// then access control and local handlers (`access`).
pub fn decide<'c>(config: &'c Config, server: &'c Server, req: &Request<'_>) -> Decision<'c> {
    decide_traced(config, server, req, &mut ())
}

/// [`decide`], telling `trace` what it looked at.
pub fn decide_traced<'c, T: Trace + ?Sized>(
    config: &'c Config,
    server: &'c Server,
    req: &Request<'_>,
    trace: &mut T,
) -> Decision<'c> {
    let (mut decision, access) = mapping(config, server, req, trace);
    // A redirect of mod_alias's to a url-path goes to this server.
    if let Decision::Redirect { location, .. } = &mut decision {
        if location.starts_with('/') {
            let vars = RewriteVars { req, server };
            *location = format!(
                "{}://{}{location}",
                rewrite::Vars::scheme(&vars),
                rewrite::Vars::self_authority(&vars)
            );
        }
    }
    access::checked(config, decision, access, &req.asked(), trace)
}

fn mapping<'c, T: Trace + ?Sized>(
    config: &'c Config,
    server: &'c Server,
    req: &Request<'_>,
    trace: &mut T,
) -> (Decision<'c>, Access<'c>) {
    // RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored, also when
    // legacy mode picks routes by it.
    let has_upgrade = req.header("upgrade").is_some() && req.version != "HTTP/1.0";
    if server.rewrite.is_empty() {
        return map(config, server, req.path, has_upgrade, trace);
    }
    let vars = RewriteVars { req, server };
    let outcome = rewrite::apply(
        &server.rewrite,
        &req.path.decoded,
        &vars,
        &mut RewriteTrace(&mut *trace),
    );
    match outcome {
        Outcome::Unchanged => map(config, server, req.path, has_upgrade, trace),
        Outcome::PassThrough { path, query } => {
            let mut raw = String::new();
            encode_path(&path, &mut raw);
            let rewritten = RequestPath {
                decoded: path.into(),
                raw: raw.into(),
                query: query.map(Text::from),
            };
            trace.passed_through(&rewritten);
            map(config, server, &rewritten, has_upgrade, trace)
        }
        Outcome::Proxy {
            url,
            query,
            noescape,
            rule,
        } => {
            // Settings and access are those of the path as requested.
            let (settings, _, access) = settings_for(server, req.path, trace);
            let rule = &server.rewrite[rule];
            let target = RewriteTarget {
                url: &url,
                query,
                noescape,
                origin: &rule.origin,
            };
            (proxy_from_rewrite(config, server, settings, target), access)
        }
        Outcome::Redirect { status, location } => {
            (Decision::Redirect { status, location }, Access::default())
        }
        Outcome::Status(s) => (Decision::Status(s), Access::default()),
        // S166: a rewrite to a local path never serves a file.
        Outcome::Local => {
            trace.rewritten_locally();
            (Decision::NotFound, settings_for(server, req.path, trace).2)
        }
    }
}

/// A `[P]` rule's result.
struct RewriteTarget<'u, 'c> {
    url: &'u [u8],
    query: Option<String>,
    noescape: bool,
    origin: &'c Origin,
}

/// What rewrite conditions read: the request and the server it reached.
struct RewriteVars<'a> {
    req: &'a Request<'a>,
    server: &'a Server,
}

impl RewriteVars<'_> {
    fn default_port(&self) -> u16 {
        if self.req.https {
            443
        } else {
            80
        }
    }

    /// The Host header split into name and port (UseCanonicalName Off).
    fn host_parts(&self) -> (String, Option<u16>) {
        match self
            .req
            .header("host")
            .and_then(|h| std::str::from_utf8(h).ok())
        {
            Some(h) => {
                let name = host_without_port(h);
                let port = h[name.len()..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok());
                (host_name(name), port)
            }
            None => (self.server.server_name.clone(), None),
        }
    }
}

impl rewrite::Vars for RewriteVars<'_> {
    fn var(&self, var: &Var) -> String {
        let req = self.req;
        match var {
            Var::Header(name) => req
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            Var::RequestUri => String::from_utf8_lossy(&req.path.decoded).into_owned(),
            Var::RequestMethod => req.method.to_string(),
            Var::RequestScheme => self.scheme().to_string(),
            Var::QueryString => req.path.query.as_deref().unwrap_or_default().to_string(),
            Var::TheRequest => format!("{} {} {}", req.method, req.target, req.version),
            Var::RemoteAddr => req.remote.ip().to_canonical().to_string(),
            Var::RemotePort => req.remote.port().to_string(),
            Var::ServerName => self.host_parts().0,
            // UseCanonicalName Off: the Host header's port, else the
            // scheme's default (not the port listened on).
            Var::ServerPort => self
                .host_parts()
                .1
                .unwrap_or(self.default_port())
                .to_string(),
            Var::ServerAddr => req.local.ip().to_canonical().to_string(),
            Var::ServerProtocol => req.version.to_string(),
            Var::Https => if req.https { "on" } else { "off" }.to_string(),
            // Before mapping, Apache's filename is the url-path.
            Var::RequestFilename => String::from_utf8_lossy(&req.path.decoded).into_owned(),
            Var::DocumentRoot => String::from_utf8_lossy(
                self.server
                    .files
                    .document_root
                    .as_deref()
                    .unwrap_or(perdir::DEFAULT_DOCUMENT_ROOT),
            )
            .into_owned(),
        }
    }

    fn query(&self) -> Option<&str> {
        self.req.path.query.as_deref()
    }

    fn self_authority(&self) -> String {
        let (name, port) = self.host_parts();
        match port {
            Some(p) if p != self.default_port() => format!("{name}:{p}"),
            _ => name,
        }
    }

    fn is_self(&self, authority: &str) -> bool {
        let host = host_without_port(authority);
        let port = authority[host.len()..]
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(self.default_port());
        let host = host.to_ascii_lowercase();
        port == self.req.local.port()
            && (self.server.names.contains(&host) || self.host_parts().0 == host)
    }

    fn scheme(&self) -> &'static str {
        if self.req.https {
            "https"
        } else {
            "http"
        }
    }
}

/// A `[P]` rule's target, proxied as a ProxyPass to that url would be
/// (S93, S96, S97): the path canonicalised (unless `[NE]`), the parameters of
/// the worker whose url prefixes it, or none.
fn proxy_from_rewrite<'c>(
    config: &'c Config,
    server: &'c Server,
    settings: Settings<'c>,
    target: RewriteTarget<'_, 'c>,
) -> Decision<'c> {
    let RewriteTarget {
        url,
        query,
        noescape,
        origin: rule,
    } = target;
    if url
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"balancer://"))
    {
        return balancer_from_rewrite(config, settings, url, query, rule);
    }
    // Split on bytes: the decoded path need not be UTF-8.
    let Some(scheme_end) = url.windows(3).position(|w| w == b"://") else {
        return Decision::BadTarget;
    };
    let after = scheme_end + 3;
    let path_start = url[after..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(url.len(), |i| after + i);
    let Ok(origin) = std::str::from_utf8(&url[..path_start]) else {
        return Decision::BadTarget;
    };
    let target = match parse_target_url(origin) {
        Ok(t) => t,
        // S142: user information from the request never picks a host.
        Err(UrlError::UserInfo) => return Decision::Forbidden,
        Err(_) => return Decision::BadTarget,
    };
    let path = &url[path_start..];
    let mut out = String::with_capacity(path.len() + 16);
    if noescape {
        // [NE]: sent as written, so it must not hold what would break the
        // request line (AH10415).
        if path.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Decision::Forbidden;
        }
        out.push_str(&String::from_utf8_lossy(path));
    } else {
        encode_path(path, &mut out);
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = &query {
        out.push('?');
        out.push_str(q);
    }
    let full = format!(
        "{}://{}{}",
        target.scheme.as_str(),
        origin[after..].to_ascii_lowercase(),
        String::from_utf8_lossy(path)
    );
    let found = server
        .workers
        .iter()
        .filter(|w| full.starts_with(&config.worker(**w).name))
        .max_by_key(|w| config.worker(**w).name.len());
    let (worker, reuse) = match found {
        Some(w) => (
            WorkerRef::Configured(*w),
            !config.worker(*w).params.disable_reuse,
        ),
        None => (WorkerRef::Generic, false),
    };
    Decision::Proxy(Mapped {
        backend: Backend::Single {
            worker,
            url: Cow::Owned(target),
        },
        origin: rule,
        reuse,
        path_and_query: out,
        settings,
    })
}

/// A `[P]` rule naming `balancer://name/path`: the balancer chooses the
/// member later, as for a ProxyPass to it.
fn balancer_from_rewrite<'c>(
    config: &'c Config,
    mut settings: Settings<'c>,
    url: &[u8],
    query: Option<String>,
    rule: &'c Origin,
) -> Decision<'c> {
    let text = String::from_utf8_lossy(url);
    let Some((name, path)) = crate::config::balancer::split_balancer_url(&text) else {
        return Decision::BadTarget;
    };
    // The configuration check guarantees the balancer of a literal name;
    // a name built from the request may still miss.
    let Some(idx) = config.balancer_named(&name) else {
        return Decision::NotFound;
    };
    let balancer = config.balancer(idx);
    let mut out = String::with_capacity(path.len() + 16);
    encode_path(path.as_bytes(), &mut out);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let Some(q) = &query {
        out.push('?');
        out.push_str(q);
    }
    if !balancer.rules.is_empty() {
        settings.location_rules.push(&balancer.rules);
    }
    Decision::Proxy(Mapped {
        backend: Backend::Balanced(idx),
        origin: rule,
        reuse: true,
        path_and_query: out,
        settings,
    })
}

/// The ProxyPass of a matching `<Location>`: its target, how much of the
/// path a prefix matched, a regex's captures, and the section.
type LocationHit<'c, 'p> = (
    &'c Target,
    Option<usize>,
    Option<regex::bytes::Captures<'p>>,
    LocationAt<'c>,
);

/// A `<Location>` and its index in the server's list.
type LocationAt<'c> = (usize, &'c crate::config::Location);

/// The server's settings with every matching `<Location>` applied, the
/// ProxyPass of the last matching one that has one, and what the last
/// ones with `Require` and `SetHandler` say.
fn settings_for<'c, 'p, T: Trace + ?Sized>(
    server: &'c Server,
    path: &'p RequestPath,
    trace: &mut T,
) -> (Settings<'c>, Option<LocationHit<'c, 'p>>, Access<'c>) {
    let mut access = Access::default();
    let mut settings = Settings {
        preserve_host: server.settings.preserve_host,
        add_headers: server.settings.add_headers,
        fallback_to_http: server.settings.fallback_to_http,
        frames: server.settings.frames,
        ping: server.settings.ping,
        base: &server.settings,
        reverse: server.reverse.iter().collect(),
        location_rules: Vec::new(),
        error_override: Vec::new(),
    };
    let mut location_pass = None;
    for (index, loc) in server.locations.iter().enumerate() {
        let captures = match &loc.matcher {
            LocationMatcher::Prefix(p) => prefix_match(p, &path.decoded).map(|_| None),
            LocationMatcher::Regex(r) => captures_if_match(r, &path.decoded).map(Some),
        };
        let Some(captures) = captures else { continue };
        trace.location(index);
        if let Some(r) = &loc.require {
            access.require = Some(r);
        }
        if let Some(h) = loc.handler {
            access.handler = Some(h);
        }
        if let Some(a) = &loc.auth {
            access.auth.add(a);
        }
        if let Some(v) = loc.preserve_host {
            settings.preserve_host = v;
        }
        if let Some(v) = loc.add_headers {
            settings.add_headers = v;
        }
        if let Some(v) = loc.fallback_to_http {
            settings.fallback_to_http = v;
        }
        if let Some(v) = loc.ping {
            settings.ping = v;
        }
        if let Some(v) = loc.frames {
            settings.frames = v;
        }
        settings.reverse.extend(loc.reverse.iter());
        if loc.error_override != Default::default() {
            settings.error_override.push(&loc.error_override);
        }
        if !loc.rules.is_empty() {
            settings.location_rules.push(&loc.rules);
        }
        if let Some(pass) = &loc.proxy_pass {
            let prefix_len = match &loc.matcher {
                LocationMatcher::Prefix(p) => prefix_match(p, &path.decoded),
                LocationMatcher::Regex(_) => None,
            };
            location_pass = Some((&pass.target, prefix_len, captures, (index, loc)));
        }
    }
    (settings, location_pass, access)
}

/// The header and environment rules of the `<Location>` sections that
/// match `path`, in order, when one of them has `SetEnvIf` lines (whose
/// variables access control reads: they run before it).
pub fn location_setenvif<'c>(server: &'c Server, path: &RequestPath) -> Vec<&'c Rules> {
    if server.locations.iter().all(|l| l.rules.setenvif.is_empty()) {
        return Vec::new();
    }
    settings_for(server, path, &mut ()).0.location_rules
}

/// `ServerSignature` for a request to `path`: the last matching
/// `<Location>` that sets it, else the server's (Apache's per-directory
/// merge, by the request's path).
pub fn signature_for(
    server: &Server,
    path: &RequestPath,
) -> crate::config::model::identity::ServerSignature {
    server
        .locations
        .iter()
        .filter(|loc| match &loc.matcher {
            LocationMatcher::Prefix(p) => prefix_match(p, &path.decoded).is_some(),
            LocationMatcher::Regex(r) => r.is_match(&path.decoded),
        })
        .filter_map(|loc| loc.signature)
        .last()
        .unwrap_or(server.signature.mode)
}

/// ProxyPass mapping (after rewriting). `has_upgrade` says whether the client
/// sent an Upgrade header, which legacy mode (fallback Off) needs to pick a
/// ws route.
fn map<'c, T: Trace + ?Sized>(
    config: &'c Config,
    server: &'c Server,
    path: &RequestPath,
    has_upgrade: bool,
    trace: &mut T,
) -> (Decision<'c>, Access<'c>) {
    let (settings, location_pass, access) = settings_for(server, path, trace);
    let files = &server.files;
    let location_rules = if files.any() {
        settings.location_rules.clone()
    } else {
        Vec::new()
    };
    let decision = map_with(
        (config, server),
        path,
        has_upgrade,
        (settings, location_pass),
        trace,
    );
    if !matches!(decision, Decision::NotFound) || !files.any() {
        return (decision, access);
    }
    // mod_alias, then the DocumentRoot, for what nothing proxies.
    let decision = match files::translate(files, path) {
        None => Decision::NotFound,
        Some(files::Translated::Redirect { status, location }) => {
            Decision::Redirect { status, location }
        }
        Some(files::Translated::Status(s)) => Decision::Status(s),
        Some(files::Translated::File(filename)) => Decision::File(files::FileMapped {
            files,
            filename,
            uri: path.decoded.to_vec(),
            query: path.query.as_ref().map(|q| q.to_string()),
            location_access: Default::default(),
            location_rules,
        }),
    };
    (decision, access)
}

fn map_with<'c, T: Trace + ?Sized>(
    (config, server): (&'c Config, &'c Server),
    path: &RequestPath,
    has_upgrade: bool,
    (settings, location_pass): (Settings<'c>, Option<LocationHit<'c, '_>>),
    trace: &mut T,
) -> Decision<'c> {
    if let Some((target, prefix_len, captures, (index, loc))) = location_pass {
        match target {
            Target::Exclude => {
                trace.route(index, true, RouteStep::Excluded);
                return Decision::NotFound;
            }
            Target::Proxy(t) if skipped_in_legacy_mode(t, &settings, has_upgrade) => {
                trace.route(index, true, RouteStep::SkippedLegacy);
            }
            Target::Proxy(t) => {
                trace.route(index, true, RouteStep::Mapped);
                let raw_prefix = match &loc.matcher {
                    LocationMatcher::Prefix(p) => Some(p.as_slice()),
                    LocationMatcher::Regex(_) => None,
                };
                // A ProxyPass inside <Location> has its url and origin.
                let origin = loc.proxy_pass.as_ref().map_or(&loc.origin, |p| &p.origin);
                let mapping = Mapping {
                    config,
                    t,
                    origin,
                    path,
                    settings,
                };
                return match prefix_len {
                    Some(len) => map_prefix(mapping, raw_prefix.unwrap_or(b"/"), len),
                    None => map_regex(mapping, captures.as_ref()),
                };
            }
        }
    }

    for (index, route) in server.routes.iter().enumerate() {
        let hit = match &route.matcher {
            RouteMatcher::Prefix(p) => prefix_match(p, &path.decoded).map(|len| (Some(len), None)),
            RouteMatcher::Regex(r) => captures_if_match(r, &path.decoded).map(|c| (None, Some(c))),
        };
        let Some((prefix_len, captures)) = hit else {
            continue;
        };
        let t = match &route.target {
            Target::Exclude => {
                trace.route(index, false, RouteStep::Excluded);
                return Decision::NotFound;
            }
            Target::Proxy(t) => t,
        };
        if skipped_in_legacy_mode(t, &settings, has_upgrade) {
            trace.route(index, false, RouteStep::SkippedLegacy);
            continue;
        }
        trace.route(index, false, RouteStep::Mapped);
        let mapping = Mapping {
            config,
            t,
            origin: &route.origin,
            path,
            settings,
        };
        return match (&route.matcher, prefix_len) {
            (RouteMatcher::Prefix(p), Some(len)) => map_prefix(mapping, p, len),
            _ => map_regex(mapping, captures.as_ref()),
        };
    }
    Decision::NotFound
}

/// A matching ProxyPass line and what it maps.
struct Mapping<'c, 'r> {
    config: &'c Config,
    t: &'c ProxyTarget,
    origin: &'c Origin,
    path: &'r RequestPath,
    settings: Settings<'c>,
}

/// Legacy mod_proxy_wstunnel (S58): a ws:// entry is not a match for a request
/// without any Upgrade header.
fn skipped_in_legacy_mode(t: &ProxyTarget, settings: &Settings<'_>, has_upgrade: bool) -> bool {
    !settings.fallback_to_http
        && !has_upgrade
        && t.url.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("ws"))
}

/// Matches a ProxyPass/Location path against the decoded request path
/// (S15, S16): runs of `/` in the configured path match runs in the request,
/// and a prefix without a trailing `/` must end at a segment boundary.
/// Returns how many bytes of the request path were matched.
pub fn prefix_match(prefix: &[u8], path: &[u8]) -> Option<usize> {
    let (mut i, mut j) = (0, 0);
    while i < prefix.len() {
        if prefix[i] == b'/' {
            if path.get(j) != Some(&b'/') {
                return None;
            }
            while prefix.get(i) == Some(&b'/') {
                i += 1;
            }
            while path.get(j) == Some(&b'/') {
                j += 1;
            }
        } else {
            if path.get(j) != Some(&prefix[i]) {
                return None;
            }
            i += 1;
            j += 1;
        }
    }
    if prefix.last() == Some(&b'/') {
        // The slash run consumed above may have eaten request slashes that
        // belong to the remainder; give back all but one.
        let mut k = j;
        while k > 0 && path[k - 1] == b'/' {
            k -= 1;
        }
        return Some(k + 1);
    }
    match path.get(j) {
        None | Some(b'/') => Some(j),
        Some(_) => None,
    }
}

/// A ProxyPass url, parsed (once, at configuration time, when it has no
/// `$N`); for `balancer://name/path` only its path counts here.
enum RouteUrl<'c> {
    Backend(Cow<'c, TargetUrl>),
    Balancer { path: String },
}

impl RouteUrl<'_> {
    fn path(&self) -> &str {
        match self {
            RouteUrl::Backend(u) => &u.path,
            RouteUrl::Balancer { path } => path,
        }
    }
}

fn route_url<'c>(t: &'c ProxyTarget, url: &str) -> Result<RouteUrl<'c>, UrlError> {
    if let PassTo::Worker {
        parsed: Some(parsed),
        ..
    } = &t.to
    {
        return Ok(RouteUrl::Backend(Cow::Borrowed(parsed)));
    }
    if matches!(t.to, PassTo::Balancer(_)) {
        let (_, path) = crate::config::balancer::split_balancer_url(url).ok_or(UrlError::NoHost)?;
        return Ok(RouteUrl::Balancer {
            path: path.to_string(),
        });
    }
    parse_target_url(url).map(|u| RouteUrl::Backend(Cow::Owned(u)))
}

fn map_prefix<'c>(m: Mapping<'c, '_>, prefix: &[u8], matched: usize) -> Decision<'c> {
    let (t, path) = (m.t, m.path);
    let url = match route_url(t, &t.url) {
        Ok(u) => u,
        Err(_) => return Decision::BadTarget,
    };
    let mut out = String::with_capacity(url.path().len() + path.raw.len() + 16);
    let raw_remainder = if t.nocanon {
        prefix_match(prefix, path.raw.as_bytes()).map(|len| &path.raw[len..])
    } else {
        None
    };
    match raw_remainder {
        // nocanon (S24): the path as the client sent it, not re-encoded.
        Some(rest) => {
            out.push_str(url.path());
            out.push_str(rest);
        }
        // Encoding is byte by byte: the url's path, then the rest.
        None => {
            encode_path(url.path().as_bytes(), &mut out);
            encode_path(&path.decoded[matched..], &mut out);
        }
    }
    finish(m, url, out)
}

fn map_regex<'c>(
    m: Mapping<'c, '_>,
    captures: Option<&regex::bytes::Captures<'_>>,
) -> Decision<'c> {
    let (t, path) = (m.t, m.path);
    let substituted = substitute(t.url.as_bytes(), captures);
    let whole_path = substituted == t.url.as_bytes();
    // The scheme is literal (checked at configuration time); the authority may
    // come from a capture and is checked like any url.
    let text = String::from_utf8_lossy(&substituted).into_owned();
    let url = match route_url(t, &text) {
        Ok(u) => u,
        Err(UrlError::UserInfo) => return Decision::Forbidden,
        Err(_) => return Decision::BadTarget,
    };
    let path_start = text.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = text[path_start..]
        .find(['/', '?', '#'])
        .map_or(substituted.len(), |i| path_start + i);
    let mut full = substituted[path_start..].to_vec();
    if whole_path {
        // S19: a url without $N gets the whole request path appended.
        full.extend_from_slice(&path.decoded);
    }
    let mut out = String::with_capacity(full.len() + 16);
    encode_path(&full, &mut out);
    finish(m, url, out)
}

fn finish<'c>(m: Mapping<'c, '_>, url: RouteUrl<'c>, mut out: String) -> Decision<'c> {
    let Mapping {
        config,
        t,
        origin,
        path,
        mut settings,
    } = m;
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if let (Some(q), false) = (&path.query, t.noquery) {
        out.push('?');
        out.push_str(q);
    }
    let (backend, reuse) = match (url, &t.to) {
        (RouteUrl::Balancer { .. }, PassTo::Balancer(idx)) => {
            let b = config.balancer(*idx);
            // The <Proxy> section's rules come after the Locations'.
            if !b.rules.is_empty() {
                settings.location_rules.push(&b.rules);
            }
            (Backend::Balanced(*idx), !t.substitutes)
        }
        (RouteUrl::Backend(url), PassTo::Worker { worker, .. }) => (
            Backend::Single {
                worker: WorkerRef::Configured(*worker),
                url,
            },
            !t.substitutes && !config.worker(*worker).params.disable_reuse,
        ),
        _ => return Decision::BadTarget,
    };
    Decision::Proxy(Mapped {
        backend,
        origin,
        reuse,
        path_and_query: out,
        settings,
    })
}

/// Captures, searched for only once the faster non-capturing search has
/// found a match (most patterns do not match most requests).
fn captures_if_match<'p>(
    r: &regex::bytes::Regex,
    text: &'p [u8],
) -> Option<regex::bytes::Captures<'p>> {
    if r.is_match(text) {
        r.captures(text)
    } else {
        None
    }
}

/// `$0`–`$9` replaced by captures (a group that did not take part gives
/// nothing); `\x` gives a literal `x` (S18).
pub(super) fn substitute(
    template: &[u8],
    captures: Option<&regex::bytes::Captures<'_>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 32);
    let mut i = 0;
    while i < template.len() {
        match template[i] {
            b'\\' if i + 1 < template.len() => {
                out.push(template[i + 1]);
                i += 2;
            }
            b'$' if template.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let n = usize::from(template[i + 1] - b'0');
                if let Some(m) = captures.and_then(|c| c.get(n)) {
                    out.extend_from_slice(m.as_bytes());
                }
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
