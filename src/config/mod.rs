//! From Apache configuration text to a validated [`Config`].
//!
//! `lexer` knows the file syntax, `include` the read-time directives
//! (`Include`, `Define`, `<IfModule>`…); this file walks the result in its
//! contexts (server, `<VirtualHost>`, `<Location>`) and hands each directive
//! to the module that owns it (`proxy` for mod_proxy, `ssl` for mod_ssl).

pub mod balancer;
pub mod error;
pub mod expr;
pub mod headers;
pub mod include;
pub mod lexer;
pub mod model;
pub mod proxy;
pub mod rewrite;
pub mod ssl;
pub mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use balancer::ServerKey;
pub use error::{ConfigError, Origin};
use lexer::Node;
pub use model::*;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path, defines: &[String]) -> Result<Config, ConfigError> {
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut expander = include::Expander::new(defines, root.clone());
    let nodes = expander.read_file(path)?;
    build(nodes, &root, path)
}

/// Validates configuration text as if read from a file named `name`.
pub fn from_str(text: &str, name: &str) -> Result<Config, ConfigError> {
    let root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut expander = include::Expander::new(&[], root.clone());
    let nodes = expander.expand_text(text, Path::new(name), 0)?;
    build(nodes, &root, Path::new(name))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Server,
    VirtualHost,
    Location,
    LocationMatch,
}

impl Scope {
    fn describe(self) -> &'static str {
        match self {
            Scope::Server => "the server config",
            Scope::VirtualHost => "<VirtualHost>",
            Scope::Location => "<Location>",
            Scope::LocationMatch => "<LocationMatch>",
        }
    }
}

/// Every worker of a configuration, each with its identity.
#[derive(Debug, Default)]
pub struct Workers {
    list: Vec<Worker>,
    /// How many workers have a name so far, per balancer (for
    /// [`WorkerId::nth`]).
    seen: HashMap<(Option<String>, String), usize>,
}

impl Workers {
    /// A new worker, the member of `balancer` if given.
    pub fn add(&mut self, balancer: Option<&str>, name: String, params: WorkerParams) -> WorkerIdx {
        let seen = self
            .seen
            .entry((balancer.map(str::to_string), name.clone()))
            .or_default();
        let id = WorkerId {
            balancer: balancer.map(str::to_string),
            name: name.clone(),
            nth: *seen,
        };
        *seen += 1;
        self.list.push(Worker { id, name, params });
        WorkerIdx(self.list.len() - 1)
    }

    pub fn get(&self, idx: WorkerIdx) -> &Worker {
        &self.list[idx.0]
    }
}

/// A server's directives before they are merged with the main server's.
struct ServerDraft {
    key: ServerKey,
    server_name: Option<String>,
    aliases: Vec<String>,
    addrs: Vec<VhostAddr>,
    routes: Vec<Route>,
    locations: Vec<Location>,
    preserve_host: Option<bool>,
    add_headers: Option<bool>,
    fallback_to_http: Option<bool>,
    proxy_timeout: Option<Duration>,
    timeout: Option<Duration>,
    ssl: ssl::SslDraft,
    rewrite: rewrite::RewriteDraft,
    rules: model::headers::Rules,
    reverse: Vec<ReverseRule>,
    origin: Option<Origin>,
}

impl ServerDraft {
    fn new(key: ServerKey) -> ServerDraft {
        ServerDraft {
            key,
            server_name: None,
            aliases: Vec::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            locations: Vec::new(),
            preserve_host: None,
            add_headers: None,
            fallback_to_http: None,
            proxy_timeout: None,
            timeout: None,
            ssl: ssl::SslDraft::default(),
            rewrite: rewrite::RewriteDraft::default(),
            rules: model::headers::Rules::default(),
            reverse: Vec::new(),
            origin: None,
        }
    }
}

struct Builder {
    listeners: Vec<(Listener, Origin)>,
    main: ServerDraft,
    vhosts: Vec<ServerDraft>,
    limits: Limits,
    timeout: Option<Duration>,
    keepalive: bool,
    keepalive_timeout: Duration,
    graceful_shutdown: Option<Option<Duration>>,
    max_connections: Option<usize>,
    error_log: Option<PathBuf>,
    log_level: tracing::Level,
    pid_file: Option<PathBuf>,
    warnings: Vec<String>,
    root: PathBuf,
    /// Worker urls defined so far, for the S30 warning.
    worker_names: Vec<(String, Origin)>,
    balancers: balancer::Balancers,
    workers: Workers,
}

/// Every directive wsgate reads, for "did you mean" hints.
pub const DIRECTIVES: &[&str] = &[
    "Listen",
    "ServerName",
    "ServerAlias",
    "ServerRoot",
    "VirtualHost",
    "Location",
    "LocationMatch",
    "Include",
    "IncludeOptional",
    "IfModule",
    "IfDefine",
    "Define",
    "UnDefine",
    "LoadModule",
    "Timeout",
    "KeepAlive",
    "KeepAliveTimeout",
    "LimitRequestLine",
    "LimitRequestFieldSize",
    "LimitRequestFields",
    "LimitRequestBody",
    "GracefulShutdownTimeout",
    "MaxRequestWorkers",
    "ErrorLog",
    "LogLevel",
    "PidFile",
    "ProxyPass",
    "ProxyPassMatch",
    "ProxyPassReverse",
    "ProxyPreserveHost",
    "ProxyAddHeaders",
    "ProxyTimeout",
    "ProxyRequests",
    "ProxyWebsocketFallbackToProxyHttp",
    "SSLProxyEngine",
    "SSLProxyVerify",
    "SSLProxyCACertificateFile",
    "SSLProxyCheckPeerName",
    "SSLProxyCheckPeerExpire",
    "RewriteEngine",
    "RewriteOptions",
    "RewriteCond",
    "RewriteRule",
    "Proxy",
    "BalancerMember",
    "ProxySet",
    "ProxyHCExpr",
    "Header",
    "RequestHeader",
    "SetEnv",
    "UnsetEnv",
    "SetEnvIf",
    "SetEnvIfNoCase",
];

/// Apache directives of modules wsgate does not have yet, with the module,
/// so that an operator learns why rather than "unknown directive".
const NOT_YET: &[(&str, &str)] = &[
    ("ProxyMatch", "mod_proxy (<ProxyMatch> sections)"),
    ("ProxyHCTemplate", "mod_proxy_hcheck (templates)"),
    ("LogFormat", "mod_log_config"),
    ("CustomLog", "mod_log_config"),
    ("Require", "mod_authz_core"),
    ("SetHandler", "mod_status / balancer-manager"),
    ("RequestReadTimeout", "mod_reqtimeout"),
    ("SSLEngine", "mod_ssl (listener TLS)"),
    ("SSLCertificateFile", "mod_ssl (listener TLS)"),
    ("SSLCertificateKeyFile", "mod_ssl (listener TLS)"),
    ("SSLCertificateChainFile", "mod_ssl (listener TLS)"),
    ("SSLProtocol", "mod_ssl (listener TLS)"),
    ("Protocols", "mod_http2"),
];

/// Builds the model from expanded directives; `main_file` is named in
/// errors about what the whole configuration lacks.
pub fn build(nodes: Vec<Node>, root: &Path, main_file: &Path) -> Result<Config, ConfigError> {
    let mut b = Builder {
        listeners: Vec::new(),
        main: ServerDraft::new(ServerKey::Main),
        vhosts: Vec::new(),
        limits: Limits::default(),
        timeout: None,
        keepalive: true,
        keepalive_timeout: Duration::from_secs(5),
        graceful_shutdown: None,
        max_connections: None,
        error_log: None,
        log_level: tracing::Level::WARN,
        pid_file: None,
        warnings: Vec::new(),
        root: root.to_path_buf(),
        worker_names: Vec::new(),
        balancers: balancer::Balancers::default(),
        workers: Workers::default(),
    };
    let mut main = std::mem::replace(&mut b.main, ServerDraft::new(ServerKey::Main));
    for node in &nodes {
        b.directive(node, Scope::Server, &mut main, None)?;
    }
    b.main = main;
    b.finish(main_file)
}

impl Builder {
    fn directive(
        &mut self,
        node: &Node,
        ctx: Scope,
        server: &mut ServerDraft,
        location: Option<&mut Location>,
    ) -> Result<(), ConfigError> {
        let o = &node.origin;
        let lower = node.name.to_ascii_lowercase();
        let only = |allowed: &[Scope]| -> Result<(), ConfigError> {
            if allowed.contains(&ctx) {
                Ok(())
            } else if allowed == [Scope::Server] && ctx == Scope::VirtualHost {
                // Apache allows some of these per vhost; wsgate reads them
                // once for the whole process.
                Err(ConfigError::new(
                    o,
                    format!("{} not allowed in {}", node.name, ctx.describe()),
                )
                .hint(format!(
                    "wsgate applies {} to the whole server: move it out of <VirtualHost>",
                    node.name
                )))
            } else {
                Err(ConfigError::new(
                    o,
                    format!("{} not allowed in {}", node.name, ctx.describe()),
                )
                .hint(format!(
                    "{} belongs in {}",
                    node.name,
                    allowed
                        .iter()
                        .map(|c| c.describe())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )))
            }
        };
        let one = || -> Result<&str, ConfigError> {
            match node.args.as_slice() {
                [a] => Ok(a.as_str()),
                _ => Err(ConfigError::new(
                    o,
                    format!(
                        "{} takes one argument, {} given",
                        node.name,
                        node.args.len()
                    ),
                )),
            }
        };
        if node.children.is_some()
            && !matches!(
                lower.as_str(),
                "virtualhost" | "location" | "locationmatch" | "proxy"
            )
        {
            if DIRECTIVES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&node.name))
            {
                return Err(ConfigError::new(
                    o,
                    format!("{} is a directive, not a section", node.name),
                )
                .hint(format!(
                    "write it on one line without < >: {} ARGS",
                    node.name
                )));
            }
            return Err(unknown_or_not_yet(node, true));
        }
        match lower.as_str() {
            "listen" => {
                only(&[Scope::Server])?;
                let (addr, proto) = match node.args.as_slice() {
                    [a] => (a, None),
                    [a, p] => (a, Some(p)),
                    _ => return Err(ConfigError::new(o, "Listen takes [IP:]PORT [protocol]")),
                };
                if let Some(p) = proto {
                    if !p.eq_ignore_ascii_case("http") {
                        return Err(ConfigError::new(
                            o,
                            format!("Listen protocol '{p}' is not supported"),
                        )
                        .hint(
                            "wsgate serves http on Listen; TLS listeners are not in this version",
                        ));
                    }
                }
                let addr = values::listen_addr(o, addr)?;
                if let Some((_, first)) = self.listeners.iter().find(|(l, _)| l.addr == addr) {
                    return Err(ConfigError::new(
                        o,
                        format!("Cannot define multiple Listeners on the same IP:port ({addr})"),
                    )
                    .hint(format!("{addr} is already in Listen at {first}")));
                }
                self.listeners.push((Listener { addr }, o.clone()));
            }
            "servername" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let v = one()?;
                let host = v.split_once("://").map(|(_, h)| h).unwrap_or(v);
                let (host, _) = values::split_host_port(host);
                server.server_name = Some(host.to_ascii_lowercase());
            }
            "serveralias" => {
                only(&[Scope::VirtualHost])?;
                if node.args.is_empty() {
                    return Err(ConfigError::new(o, "ServerAlias needs at least one name"));
                }
                server
                    .aliases
                    .extend(node.args.iter().map(|a| a.to_ascii_lowercase()));
            }
            "virtualhost" => {
                only(&[Scope::Server])?;
                let children = node.children.as_ref().ok_or_else(|| section_needed(node))?;
                if node.args.is_empty() {
                    return Err(
                        ConfigError::new(o, "<VirtualHost> needs at least one address")
                            .hint("e.g. <VirtualHost *:80>"),
                    );
                }
                let mut draft = ServerDraft::new(ServerKey::Vhost(self.vhosts.len()));
                draft.addrs = node
                    .args
                    .iter()
                    .map(|a| values::vhost_addr(o, a))
                    .collect::<Result<_, _>>()?;
                draft.origin = Some(o.clone());
                for child in children {
                    self.directive(child, Scope::VirtualHost, &mut draft, None)?;
                }
                self.vhosts.push(draft);
            }
            "location" | "locationmatch" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let children = node.children.as_ref().ok_or_else(|| section_needed(node))?;
                let (regex, pattern) = match (lower.as_str(), node.args.as_slice()) {
                    ("location", [t, p]) if t == "~" => (true, p),
                    ("location", [p]) => (false, p),
                    ("locationmatch", [p]) => (true, p),
                    _ => {
                        return Err(ConfigError::new(
                            o,
                            format!("<{}> takes one path or regex", node.name),
                        ))
                    }
                };
                let matcher = if regex {
                    LocationMatcher::Regex(proxy::compile_regex(o, pattern)?)
                } else {
                    LocationMatcher::Prefix(pattern.as_bytes().to_vec())
                };
                let mut loc = Location {
                    matcher,
                    rules: model::headers::Rules::default(),
                    proxy_pass: None,
                    preserve_host: None,
                    add_headers: None,
                    fallback_to_http: None,
                    reverse: Vec::new(),
                    origin: o.clone(),
                };
                let inner = if regex {
                    Scope::LocationMatch
                } else {
                    Scope::Location
                };
                for child in children {
                    self.directive(child, inner, server, Some(&mut loc))?;
                }
                server.locations.push(loc);
            }
            "timeout" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let t = values::timeout(o, "Timeout", one()?, "s")?;
                if ctx == Scope::Server {
                    self.timeout = Some(t);
                } else {
                    server.timeout = Some(t);
                }
            }
            "keepalive" => {
                only(&[Scope::Server])?;
                self.keepalive = values::on_off(o, "KeepAlive", one()?)?;
            }
            "keepalivetimeout" => {
                only(&[Scope::Server])?;
                self.keepalive_timeout = values::timeout(o, "KeepAliveTimeout", one()?, "s")?;
            }
            "limitrequestline"
            | "limitrequestfieldsize"
            | "limitrequestfields"
            | "limitrequestbody" => {
                only(&[Scope::Server])?;
                let n = values::number(o, &node.name, one()?)?;
                match lower.as_str() {
                    "limitrequestline" => {
                        self.limits.request_line = bounded(o, &node.name, n, 1, 65536)?
                    }
                    "limitrequestfieldsize" => {
                        self.limits.field_size = bounded(o, &node.name, n, 1, 65536)?
                    }
                    // 0 means no limit, as in Apache.
                    "limitrequestfields" if n == 0 => self.limits.fields = usize::MAX,
                    "limitrequestfields" => {
                        self.limits.fields = bounded(o, &node.name, n, 1, 32767)?
                    }
                    _ => self.limits.body = n,
                }
            }
            "gracefulshutdowntimeout" => {
                only(&[Scope::Server])?;
                let secs = values::number(o, "GracefulShutdownTimeout", one()?)?;
                self.graceful_shutdown = Some((secs > 0).then(|| Duration::from_secs(secs)));
            }
            "maxrequestworkers" | "maxclients" => {
                only(&[Scope::Server])?;
                let n = values::number(o, &node.name, one()?)?;
                if n == 0 {
                    return Err(ConfigError::new(
                        o,
                        format!("{} must be at least 1", node.name),
                    ));
                }
                self.max_connections = Some(n as usize);
            }
            "errorlog" => {
                only(&[Scope::Server])?;
                let v = one()?;
                if v.starts_with('|') || v.to_ascii_lowercase().starts_with("syslog") {
                    return Err(ConfigError::new(
                        o,
                        format!("ErrorLog '{v}': piped and syslog logs are not supported"),
                    )
                    .hint("give a file path, or leave ErrorLog out to log to standard error"));
                }
                let path = self.root.join(v);
                directory_exists(o, "ErrorLog", &path)?;
                self.error_log = Some(path);
            }
            "loglevel" => {
                only(&[Scope::Server])?;
                if node.args.is_empty() {
                    return Err(ConfigError::new(o, "LogLevel needs a level"));
                }
                let mut level = None;
                for arg in &node.args {
                    let word = arg.rsplit(':').next().unwrap_or(arg);
                    let l = log_level(word).ok_or_else(|| {
                        ConfigError::new(o, format!("LogLevel: '{word}' is not a level"))
                            .hint("one of emerg, alert, crit, error, warn, notice, info, debug, trace1..trace8")
                    })?;
                    // Per-module levels apply to the whole of wsgate: keep the
                    // most verbose one asked for.
                    level = Some(level.map_or(l, |cur: tracing::Level| cur.max(l)));
                }
                self.log_level = level.unwrap_or(tracing::Level::WARN);
            }
            "pidfile" => {
                only(&[Scope::Server])?;
                let path = self.root.join(one()?);
                directory_exists(o, "PidFile", &path)?;
                self.pid_file = Some(path);
            }
            "proxypass" | "proxypassmatch" => {
                let is_match = lower == "proxypassmatch";
                match ctx {
                    Scope::Server | Scope::VirtualHost => {
                        let line = proxy::parse_pass(node, false, &mut self.warnings)?;
                        let pattern = line
                            .pattern
                            .clone()
                            .expect("a server-context ProxyPass has a path");
                        let matcher = if line.regex {
                            RouteMatcher::Regex(proxy::compile_regex(o, &pattern)?)
                        } else {
                            RouteMatcher::Prefix(pattern.into_bytes())
                        };
                        let target = self.target(line, node, server.key)?;
                        server.routes.push(Route {
                            matcher,
                            target,
                            origin: o.clone(),
                        });
                    }
                    Scope::Location | Scope::LocationMatch => {
                        if is_match && ctx == Scope::Location {
                            return Err(ConfigError::new(o, "ProxyPassMatch inside <Location> has no regex to match with")
                                .hint("use <LocationMatch regex> with ProxyPassMatch, or ProxyPass inside <Location>"));
                        }
                        let loc = location.expect("a Location context always has its Location");
                        if let Some(prev) = &loc.proxy_pass {
                            return Err(ConfigError::new(
                                o,
                                format!(
                                    "a <Location> holds one {}; another is at line {}",
                                    node.name, prev.origin.line
                                ),
                            ));
                        }
                        let line = proxy::parse_pass(node, true, &mut self.warnings)?;
                        loc.proxy_pass = Some(LocationPass {
                            target: self.target(line, node, server.key)?,
                            origin: o.clone(),
                        });
                    }
                }
            }
            "proxypassreverse" => {
                only(&[Scope::Server, Scope::VirtualHost, Scope::Location])?;
                match location {
                    Some(loc) => {
                        let LocationMatcher::Prefix(path) = &loc.matcher else {
                            unreachable!("ProxyPassReverse is refused in <LocationMatch> above")
                        };
                        let path = String::from_utf8_lossy(path).into_owned();
                        loc.reverse.push(proxy::parse_reverse(node, Some(&path))?);
                    }
                    None => server.reverse.push(proxy::parse_reverse(node, None)?),
                }
            }
            "proxypreservehost" | "proxyaddheaders" | "proxywebsocketfallbacktoproxyhttp" => {
                only(&[
                    Scope::Server,
                    Scope::VirtualHost,
                    Scope::Location,
                    Scope::LocationMatch,
                ])?;
                let v = values::on_off(o, &node.name, one()?)?;
                match (location, lower.as_str()) {
                    (Some(l), "proxypreservehost") => l.preserve_host = Some(v),
                    (Some(l), "proxyaddheaders") => l.add_headers = Some(v),
                    (Some(l), _) => l.fallback_to_http = Some(v),
                    (None, "proxypreservehost") => server.preserve_host = Some(v),
                    (None, "proxyaddheaders") => server.add_headers = Some(v),
                    (None, _) => server.fallback_to_http = Some(v),
                }
            }
            "proxytimeout" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let v = one()?;
                let secs = v.parse::<u64>().map_err(|_| {
                    ConfigError::new(
                        o,
                        format!("ProxyTimeout '{v}' must be a whole number of seconds"),
                    )
                })?;
                if secs < 1 {
                    return Err(ConfigError::new(
                        o,
                        "Proxy Timeout must be at least 1 second.",
                    ));
                }
                server.proxy_timeout = Some(Duration::from_secs(secs));
            }
            "proxyrequests" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                if values::on_off(o, "ProxyRequests", one()?)? {
                    return Err(ConfigError::new(
                        o,
                        "ProxyRequests On makes a forward proxy, which wsgate is not",
                    )
                    .hint(
                        "wsgate is a reverse proxy: remove the line or write ProxyRequests Off",
                    ));
                }
            }
            "proxy" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let children = node.children.as_ref().ok_or_else(|| section_needed(node))?;
                let [url] = node.args.as_slice() else {
                    return Err(ConfigError::new(o, "<Proxy> takes one url"));
                };
                if balancer::split_balancer_url(url).is_none() {
                    return Err(ConfigError::new(
                        o,
                        format!("<Proxy {url}>: wsgate supports <Proxy> for balancer:// urls only"),
                    )
                    .hint("set worker parameters on the ProxyPass line instead"));
                }
                self.balancers
                    .get(url, o)?
                    .draft
                    .defined_in
                    .get_or_insert(server.key);
                for child in children {
                    let co = &child.origin;
                    let draft = self.balancers.get(url, co)?.draft;
                    match child.name.to_ascii_lowercase().as_str() {
                        "balancermember" => {
                            let (member, params) = child.args.split_first().ok_or_else(|| {
                                ConfigError::new(
                                    co,
                                    "BalancerMember must define remote proxy server",
                                )
                            })?;
                            draft.member(member, params, co)?;
                        }
                        "proxyset" => {
                            for p in &child.args {
                                let (k, v) = p.split_once('=').ok_or_else(|| {
                                    ConfigError::new(
                                        co,
                                        format!("ProxySet: '{p}' must be in the form key=value"),
                                    )
                                })?;
                                draft.set(k, v, co)?;
                            }
                        }
                        // Per-directory rules of the <Proxy> section: they
                        // apply to requests proxied to this balancer.
                        name @ ("header" | "requestheader" | "setenv" | "unsetenv" | "setenvif"
                        | "setenvifnocase") => {
                            draft.rules.directive(child, name, true)?;
                        }
                        _ => {
                            return Err(ConfigError::new(
                                co,
                                format!("{} inside <Proxy> is not supported by wsgate", child.name),
                            )
                            .hint("<Proxy balancer://…> holds BalancerMember and ProxySet lines"))
                        }
                    }
                }
            }
            "balancermember" | "proxyset" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                let Some((first, rest)) = node.args.split_first() else {
                    return Err(ConfigError::new(
                        o,
                        format!("{} needs a balancer:// url outside <Proxy>", node.name),
                    ));
                };
                if balancer::split_balancer_url(first).is_none() {
                    return Err(ConfigError::new(o, format!("{} must name its balancer://… first when not inside <Proxy>", node.name))
                        .hint("write it inside <Proxy balancer://NAME>, or as BalancerMember balancer://NAME URL"));
                }
                let draft = self.balancers.get(first, o)?.draft;
                draft.defined_in.get_or_insert(server.key);
                if lower == "balancermember" {
                    let (member, params) = rest.split_first().ok_or_else(|| {
                        ConfigError::new(o, "BalancerMember must define remote proxy server")
                    })?;
                    draft.member(member, params, o)?;
                } else {
                    for p in rest {
                        let (k, v) = p.split_once('=').ok_or_else(|| {
                            ConfigError::new(
                                o,
                                format!("ProxySet: '{p}' must be in the form key=value"),
                            )
                        })?;
                        draft.set(k, v, o)?;
                    }
                }
            }
            "header" | "requestheader" | "setenv" | "unsetenv" | "setenvif" | "setenvifnocase" => {
                only(&[
                    Scope::Server,
                    Scope::VirtualHost,
                    Scope::Location,
                    Scope::LocationMatch,
                ])?;
                match location {
                    Some(loc) => loc.rules.directive(node, &lower, true)?,
                    None => server.rules.directive(node, &lower, false)?,
                }
                return Ok(());
            }
            "proxyhcexpr" => {
                only(&[Scope::Server])?;
                self.balancers.expr(&node.args, o)?;
            }
            "rewriteengine" | "rewriteoptions" | "rewritecond" | "rewriterule" | "rewritemap"
            | "rewritebase" => {
                if matches!(ctx, Scope::Location | Scope::LocationMatch) {
                    return Err(ConfigError::new(
                        o,
                        format!("{} inside <Location> is per-directory rewriting, which wsgate does not support", node.name),
                    )
                    .hint("put the rules in the server config or the <VirtualHost>, matching the whole path (e.g. ^/app/(.*))"));
                }
                only(&[Scope::Server, Scope::VirtualHost])?;
                server.rewrite.directive(node, &lower)?;
            }
            "sslproxyengine"
            | "sslproxyverify"
            | "sslproxycacertificatefile"
            | "sslproxycheckpeername"
            | "sslproxycheckpeercn"
            | "sslproxycheckpeerexpire" => {
                only(&[Scope::Server, Scope::VirtualHost])?;
                server.ssl.set(node, &lower, one()?, &self.root)?;
            }
            _ => return Err(unknown_or_not_yet(node, node.children.is_some())),
        }
        Ok(())
    }

    /// The target of a ProxyPass line: its worker (added to the
    /// configuration's), or the balancer it names (created if this is its
    /// first mention) with the balancer parameters the line sets.
    fn target(
        &mut self,
        line: proxy::PassLine,
        node: &Node,
        server: ServerKey,
    ) -> Result<Target, ConfigError> {
        let Some(pass) = line.to else {
            return Ok(Target::Exclude);
        };
        let to = match pass.dest {
            proxy::Dest::Worker {
                name,
                params,
                parsed,
            } => {
                self.note_worker(&name, node);
                PassTo::Worker {
                    worker: self.workers.add(None, name, params),
                    parsed,
                }
            }
            proxy::Dest::Balancer { params } => {
                self.note_worker(&pass.url.to_ascii_lowercase(), node);
                let found = self.balancers.get(&pass.url, &node.origin)?;
                found.draft.used_by.push(server);
                for (k, v) in &params {
                    found.draft.set(k, v, &node.origin)?;
                }
                PassTo::Balancer(found.idx)
            }
        };
        Ok(Target::Proxy(ProxyTarget {
            url: pass.url,
            substitutes: pass.substitutes,
            nocanon: pass.nocanon,
            noquery: pass.noquery,
            to,
        }))
    }

    /// S30: Apache makes a ProxyPass whose url starts with an earlier
    /// worker's share that worker and silently drops its parameters; wsgate
    /// keeps them, and says where the two would differ.
    fn note_worker(&mut self, name: &str, node: &Node) {
        let has_params = node
            .args
            .iter()
            .any(|a| a.contains('=') && !a.contains("://"));
        if has_params {
            if let Some((earlier, origin)) = self
                .worker_names
                .iter()
                .find(|(earlier, _)| name.starts_with(earlier.as_str()) && earlier.contains("://"))
            {
                self.warnings.push(format!(
                    "{}: the url starts with {earlier}, already a worker at {origin}: Apache would share that worker and ignore this line's parameters; wsgate applies them",
                    node.origin
                ));
            }
        }
        self.worker_names
            .push((name.to_string(), node.origin.clone()));
    }

    fn finish(mut self, main_file: &Path) -> Result<Config, ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError {
                origin: Origin {
                    file: Arc::new(main_file.to_path_buf()),
                    line: 1,
                },
                message:
                    "no Listen directive anywhere in the configuration: wsgate would not listen"
                        .into(),
                hint: Some("add e.g. 'Listen 127.0.0.1:8080'".into()),
            });
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        // Every server's SSLProxy* settings first: balancers' health checks
        // take those of a server that proxies to them.
        let mut ssl_proxies = vec![self.main.ssl.resolve(None)?];
        let mut vhost_ssl = Vec::with_capacity(self.vhosts.len());
        for draft in &self.vhosts {
            vhost_ssl.push(if draft.ssl.is_empty() {
                SslIdx(0)
            } else {
                ssl_proxies.push(draft.ssl.resolve(Some(&self.main.ssl))?);
                SslIdx(ssl_proxies.len() - 1)
            });
        }
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            for name in rewrite_balancers(&draft.rewrite.rules) {
                if let Some(d) = self.balancers.drafts.iter_mut().find(|d| d.name == name) {
                    d.used_by.push(draft.key);
                }
            }
        }
        let ssl_of = |key: ServerKey| {
            let idx = match key {
                ServerKey::Main => SslIdx(0),
                ServerKey::Vhost(i) => vhost_ssl[i],
            };
            (idx, ssl_proxies[idx.0].engine)
        };
        let balancers = self.balancers.finish(&mut self.workers, ssl_of)?;
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            check_rewrite_balancers(&draft.rewrite.rules, &balancers)?;
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .unwrap_or_else(|_| "localhost".into());

        let main_settings = ProxySettings {
            preserve_host: self.main.preserve_host.unwrap_or(false),
            add_headers: self.main.add_headers.unwrap_or(true),
            fallback_to_http: self.main.fallback_to_http.unwrap_or(true),
            proxy_timeout: self.main.proxy_timeout,
            ssl_proxy: SslIdx(0),
        };
        let main_name = self.main.server_name.clone().unwrap_or(hostname);
        let main_routes = std::mem::take(&mut self.main.routes);
        let main_locations = std::mem::take(&mut self.main.locations);
        let main_reverse = std::mem::take(&mut self.main.reverse);
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            if let Some(o) = draft.rewrite.dangling() {
                self.warnings.push(format!(
                    "{o}: RewriteCond without a RewriteRule after it is ignored (as in Apache)"
                ));
            }
        }
        let main_engine = self.main.rewrite.engine.unwrap_or(false);
        let main_rules_headers = std::mem::take(&mut self.main.rules);
        let main_rules = std::mem::take(&mut self.main.rewrite.rules);

        let mut vhosts = Vec::with_capacity(self.vhosts.len());
        for (mut draft, ssl_proxy) in std::mem::take(&mut self.vhosts).into_iter().zip(vhost_ssl) {
            let vhost_timeout = draft.timeout.unwrap_or(timeout);
            let settings = ProxySettings {
                preserve_host: draft.preserve_host.unwrap_or(main_settings.preserve_host),
                add_headers: draft.add_headers.unwrap_or(main_settings.add_headers),
                fallback_to_http: draft
                    .fallback_to_http
                    .unwrap_or(main_settings.fallback_to_http),
                proxy_timeout: draft.proxy_timeout.or(main_settings.proxy_timeout),
                ssl_proxy,
            };
            let server_name = draft
                .server_name
                .clone()
                .unwrap_or_else(|| main_name.clone());
            let mut names = vec![server_name.clone()];
            names.extend(draft.aliases.iter().cloned());
            let mut routes = main_routes.clone();
            routes.extend(draft.routes);
            let mut locations = main_locations.clone();
            locations.extend(draft.locations);
            let mut reverse = main_reverse.clone();
            reverse.extend(draft.reverse);
            // S83: the engine setting is inherited, the rules only with
            // RewriteOptions Inherit (after the vhost's) or InheritBefore.
            let own = std::mem::take(&mut draft.rewrite.rules);
            let rewrite = if draft.rewrite.engine.unwrap_or(main_engine) {
                match draft.rewrite.inherit {
                    rewrite::Inherit::No => own,
                    rewrite::Inherit::After => {
                        own.into_iter().chain(main_rules.iter().cloned()).collect()
                    }
                    rewrite::Inherit::Before => main_rules.iter().cloned().chain(own).collect(),
                }
            } else {
                Vec::new()
            };
            let workers = collect_workers(&routes, &locations);
            let rules = main_rules_headers.merged(&draft.rules);
            vhosts.push(Server {
                rules,
                server_name,
                timeout: vhost_timeout,
                rewrite,
                workers,
                names,
                addrs: draft.addrs,
                routes,
                locations,
                settings,
                reverse,
                origin: draft.origin,
            });
        }
        let main = Server {
            rules: main_rules_headers,
            server_name: main_name.clone(),
            timeout,
            rewrite: if main_engine { main_rules } else { Vec::new() },
            workers: collect_workers(&main_routes, &main_locations),
            names: vec![main_name],
            addrs: Vec::new(),
            routes: main_routes,
            locations: main_locations,
            settings: main_settings,
            reverse: main_reverse,
            origin: None,
        };
        Ok(Config {
            listeners: self.listeners.into_iter().map(|(l, _)| l).collect(),
            main,
            vhosts,
            limits: self.limits,
            timeout,
            keepalive: self.keepalive,
            keepalive_timeout: self.keepalive_timeout,
            graceful_shutdown: self
                .graceful_shutdown
                .unwrap_or(Some(DEFAULT_GRACEFUL_SHUTDOWN)),
            max_connections: self.max_connections,
            error_log: self.error_log,
            log_level: self.log_level,
            pid_file: self.pid_file,
            warnings: self.warnings,
            workers: self.workers.list,
            balancers,
            ssl_proxies,
        })
    }
}

/// The balancers `[P]` rules name literally (`balancer://name/…`).
fn rewrite_balancers(rules: &[model::rewrite::Rule]) -> impl Iterator<Item = String> + '_ {
    rules.iter().filter(|r| r.flags.proxy).filter_map(|rule| {
        let Some(model::rewrite::Piece::Literal(first)) =
            rule.substitution.as_ref().and_then(|t| t.pieces.first())
        else {
            return None;
        };
        let text = String::from_utf8_lossy(first);
        balancer::split_balancer_url(&text).map(|(name, _)| name)
    })
}

/// A `[P]` rule naming `balancer://name` needs that balancer defined; this
/// is known once the whole file is read (it may come after the rule).
fn check_rewrite_balancers(
    rules: &[model::rewrite::Rule],
    balancers: &[model::balancer::Balancer],
) -> Result<(), ConfigError> {
    for rule in rules.iter().filter(|r| r.flags.proxy) {
        let Some(name) = rewrite_balancers(std::slice::from_ref(rule)).next() else {
            continue;
        };
        if !balancers.iter().any(|b| b.name == name) {
            return Err(ConfigError::new(
                &rule.origin,
                format!("RewriteRule [P] to {name}, which no <Proxy {name}> defines"),
            )
            .hint(format!(
                "define it with <Proxy \"{name}\"> and BalancerMember lines"
            )));
        }
    }
    Ok(())
}

/// Every worker a server's ProxyPass lines define, for `[P]` rules to use
/// the parameters of the one whose url prefixes their target (S93).
fn collect_workers(routes: &[Route], locations: &[Location]) -> Vec<WorkerIdx> {
    let targets = routes.iter().map(|r| &r.target).chain(
        locations
            .iter()
            .filter_map(|l| l.proxy_pass.as_ref().map(|p| &p.target)),
    );
    targets
        .filter_map(|t| match t {
            Target::Proxy(ProxyTarget {
                to: PassTo::Worker { worker, .. },
                ..
            }) => Some(*worker),
            _ => None,
        })
        .collect()
}

fn bounded(o: &Origin, name: &str, n: u64, min: u64, max: u64) -> Result<usize, ConfigError> {
    if n < min || n > max {
        return Err(ConfigError::new(
            o,
            format!("{name} must be between {min} and {max}, not {n}"),
        ));
    }
    Ok(n as usize)
}

/// The folder a file is to be written in must be there, as Apache checks
/// (AH02291) before it starts, rather than the file failing at run time.
fn directory_exists(o: &Origin, what: &str, file: &Path) -> Result<(), ConfigError> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::new(
            o,
            format!(
                "{what} {}: '{}' is not a directory",
                file.display(),
                dir.display()
            ),
        )),
        Err(e) => Err(ConfigError::new(
            o,
            format!(
                "{what} {}: cannot access directory '{}': {e}",
                file.display(),
                dir.display()
            ),
        )
        .hint("create the directory, or correct the path")),
    }
}

fn log_level(word: &str) -> Option<tracing::Level> {
    use tracing::Level;
    Some(match word.to_ascii_lowercase().as_str() {
        "emerg" | "alert" | "crit" | "error" => Level::ERROR,
        "warn" => Level::WARN,
        "notice" | "info" => Level::INFO,
        "debug" => Level::DEBUG,
        t if t.starts_with("trace") && t.len() == 6 && (b'1'..=b'8').contains(&t.as_bytes()[5]) => {
            Level::TRACE
        }
        _ => return None,
    })
}

fn section_needed(node: &Node) -> ConfigError {
    ConfigError::new(
        &node.origin,
        format!(
            "{} is a section: write <{} …> … </{}>",
            node.name, node.name, node.name
        ),
    )
}

fn unknown_or_not_yet(node: &Node, section: bool) -> ConfigError {
    let shown = if section {
        format!("<{}>", node.name)
    } else {
        node.name.clone()
    };
    if let Some((_, module)) = NOT_YET
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&node.name))
    {
        let err = ConfigError::new(
            &node.origin,
            format!("{shown} needs {module}, which this version of wsgate does not implement yet"),
        );
        // A module wsgate has in part: <IfModule> for it is true and would
        // not keep the line out.
        let module_name = module.split_whitespace().next().unwrap_or(module);
        return if include::module_is_built_in(module_name) {
            let tls = if module.contains("listener TLS") {
                "; until listener TLS lands, terminate TLS in front of wsgate"
            } else {
                ""
            };
            err.hint(format!(
                "remove it; in a file shared with Apache, put such lines in <IfDefine APACHE> … </IfDefine> and start Apache with -D APACHE (<IfModule> is true here: wsgate has part of that module){tls}"
            ))
        } else {
            err.hint("remove it, or wrap it in <IfModule> for that module so wsgate skips it")
        };
    }
    let mut err = ConfigError::new(
        &node.origin,
        format!("Invalid command '{shown}', perhaps misspelled or defined by a module wsgate does not have"),
    );
    let lower = node.name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "directory" | "directorymatch" | "files" | "filesmatch" | "documentroot"
    ) {
        err = err.hint("wsgate serves no files; use <Location> for URL paths");
    } else if lower.starts_with("proxywebsocket") {
        err = err.hint("that directive exists only in Apache's development trunk; a tunnel's idle time follows timeout= or ProxyTimeout and Timeout");
    } else if let Some(n) = error::nearest(&node.name, DIRECTIVES.iter().copied()) {
        err = err.hint(format!("did you mean '{n}'?"));
    }
    err
}
