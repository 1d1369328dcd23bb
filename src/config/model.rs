//! The typed, validated configuration that the server runs on. Nothing here
//! parses text: the module files in `config/` build it from directives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;

use super::error::Origin;
pub use crate::http::{Limits, Scheme};
use crate::proxy::pool::Pool;
use crate::proxy::resolve::Addresses;

/// Apache's compiled-in `Timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// wsgate's default for `GracefulShutdownTimeout` when the directive is absent
/// (Apache waits for ever; a supervisor would kill us first).
pub const DEFAULT_GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Config {
    pub listeners: Vec<Listener>,
    /// The main server; also what a connection gets when no vhost matches.
    pub main: Arc<Server>,
    pub vhosts: Vec<Arc<Server>>,
    pub limits: Limits,
    /// `Timeout`: client socket timeout, and the fallback for backend timeouts.
    pub timeout: Duration,
    pub keepalive: bool,
    pub keepalive_timeout: Duration,
    /// `None` means wait for ever (`GracefulShutdownTimeout 0`).
    pub graceful_shutdown: Option<Duration>,
    /// `MaxRequestWorkers`: at most this many client connections at once.
    pub max_connections: Option<usize>,
    pub error_log: Option<PathBuf>,
    pub log_level: tracing::Level,
    pub pid_file: Option<PathBuf>,
    /// Things that work but that an operator should know, printed by `-t` and
    /// logged at startup.
    pub warnings: Vec<String>,
    pub balancers: Vec<Arc<crate::balancer::Balancer>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
}

/// One server: the main one or a `<VirtualHost>`, with everything a request
/// to it needs already merged from the main server.
#[derive(Debug)]
pub struct Server {
    /// `ServerName`, lower-case, without scheme or port.
    pub server_name: String,
    /// `Timeout` for this server (a vhost's own, or the main server's).
    pub timeout: Duration,
    /// The rewrite rules that run for this server, in order; empty when
    /// `RewriteEngine` is off.
    pub rewrite: Vec<crate::rewrite::Rule>,
    /// The workers of this server's ProxyPass lines (main server's first).
    pub workers: Vec<Arc<Worker>>,
    /// Header and environment rules (main server's first).
    pub rules: super::headers::Rules,
    /// Every balancer of the configuration, for `[P]` rules naming one.
    pub balancers: Vec<Arc<crate::balancer::Balancer>>,
    /// `ServerName` and every `ServerAlias`, lower-case (aliases may hold `*`/`?`).
    pub names: Vec<String>,
    /// The `<VirtualHost>` addresses; empty for the main server.
    pub addrs: Vec<VhostAddr>,
    /// The main server's entries first, then this vhost's (Apache's order).
    pub routes: Vec<Route>,
    /// The main server's `<Location>` sections first, then this vhost's.
    pub locations: Vec<Location>,
    pub settings: ProxySettings,
    pub reverse: Vec<ReverseRule>,
    pub origin: Option<Origin>,
}

/// Settings a `<Location>` may override.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub preserve_host: bool,
    pub add_headers: bool,
    /// `ProxyWebsocketFallbackToProxyHttp`.
    pub fallback_to_http: bool,
    /// `ProxyTimeout`.
    pub proxy_timeout: Option<Duration>,
    pub ssl_proxy: Arc<SslProxy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostAddr {
    /// `None` for `*` and `_default_`.
    pub ip: Option<std::net::IpAddr>,
    /// `None` for a wildcard port.
    pub port: Option<u16>,
}

#[derive(Debug)]
pub struct Location {
    pub matcher: LocationMatcher,
    pub rules: super::headers::Rules,
    pub proxy_pass: Option<LocationPass>,
    pub preserve_host: Option<bool>,
    pub add_headers: Option<bool>,
    pub fallback_to_http: Option<bool>,
    pub reverse: Vec<ReverseRule>,
    pub origin: Origin,
}

#[derive(Debug)]
pub enum LocationMatcher {
    /// `<Location /path>`: a prefix with ProxyPass's segment rules.
    Prefix(Vec<u8>),
    /// `<LocationMatch re>` or `<Location ~ re>`.
    Regex(Regex),
}

/// The single-argument ProxyPass / ProxyPassMatch inside a Location.
#[derive(Debug)]
pub struct LocationPass {
    pub target: Target,
    pub origin: Origin,
}

/// One `ProxyPass` or `ProxyPassMatch` line.
#[derive(Debug)]
pub struct Route {
    pub matcher: RouteMatcher,
    pub target: Target,
    pub origin: Origin,
}

#[derive(Debug)]
pub enum RouteMatcher {
    Prefix(Vec<u8>),
    Regex(Regex),
}

#[derive(Debug)]
pub enum Target {
    /// `!`: stop looking, serve locally.
    Exclude,
    Proxy(ProxyTarget),
}

#[derive(Debug)]
pub struct ProxyTarget {
    /// The url as written (for a regex route, with its `$N` references).
    pub url: String,
    /// Whether `url` holds `$N` references to substitute.
    pub substitutes: bool,
    pub worker: Arc<Worker>,
    pub nocanon: bool,
    pub noquery: bool,
    /// Set for a `balancer://` url: the balancer, once the configuration
    /// is complete.
    pub balancer: Option<super::balancer::BalancerCell>,
    /// `url` parsed once, when it has no `$N` (the hot path reuses it).
    pub parsed: Option<super::values::TargetUrl>,
}

/// A backend as a ProxyPass names it: its address, its parameters and its
/// pool of idle connections.
#[derive(Debug)]
pub struct Worker {
    /// The url (for a regex route, up to its first `$`), for logs.
    pub name: String,
    pub params: WorkerParams,
    pub pool: Pool,
    /// The backend's address, once resolved (`addressttl=`).
    pub addresses: Addresses,
}

impl Worker {
    pub fn new(name: String, params: WorkerParams) -> Worker {
        Worker {
            name,
            pool: Pool::new(params.max),
            addresses: Addresses::new(params.effective_address_ttl()),
            params,
        }
    }
}

/// How long a worker keeps the addresses it resolved (`addressttl=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressTtl {
    /// `-1`, Apache's default: until the next start or reload.
    Forever,
    /// `0`: a lookup per connection.
    EveryTime,
    For(Duration),
}

/// Which client `Upgrade` values a worker tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradePolicy {
    /// `http://` without `upgrade=`: never.
    Never,
    /// `ws://` without `upgrade=`: exactly `WebSocket`, any case.
    WebSocket,
    /// `upgrade=a,b`: the whole list, or a value that one token prefixes.
    List { raw: String, tokens: Vec<String> },
    /// `upgrade=ANY`, stored by Apache as `*`.
    Any,
    /// `upgrade=NONE`: in 2.4.71 only a client asking for `NONE` itself.
    None,
}

#[derive(Debug, Clone)]
pub struct WorkerParams {
    /// `upgrade=` exactly as written, if given.
    pub upgrade: Option<String>,
    pub timeout: Option<Duration>,
    pub connection_timeout: Option<Duration>,
    pub keepalive: bool,
    pub disable_reuse: bool,
    pub retry: Duration,
    pub max: Option<usize>,
    pub ttl: Option<Duration>,
    pub acquire: Option<Duration>,
    /// `addressttl=`, if given.
    pub address_ttl: Option<AddressTtl>,
}

impl Default for WorkerParams {
    fn default() -> Self {
        WorkerParams {
            upgrade: None,
            timeout: None,
            connection_timeout: None,
            keepalive: false,
            disable_reuse: false,
            retry: Duration::from_secs(60),
            max: None,
            ttl: None,
            acquire: None,
            address_ttl: None,
        }
    }
}

impl WorkerParams {
    /// Apache's rule: a worker whose connections are not reused does not
    /// reuse its address either, unless `addressttl=` says so.
    pub fn effective_address_ttl(&self) -> AddressTtl {
        match self.address_ttl {
            Some(ttl) => ttl,
            None if self.disable_reuse => AddressTtl::EveryTime,
            None => AddressTtl::Forever,
        }
    }

    pub fn upgrade_policy(&self, scheme: Scheme) -> UpgradePolicy {
        match &self.upgrade {
            None if scheme.is_websocket() => UpgradePolicy::WebSocket,
            None => UpgradePolicy::Never,
            Some(v) if v.eq_ignore_ascii_case("ANY") || v == "*" => UpgradePolicy::Any,
            Some(v) if v.eq_ignore_ascii_case("NONE") => UpgradePolicy::None,
            Some(v) if v.is_empty() => UpgradePolicy::Never,
            Some(v) => UpgradePolicy::List {
                raw: v.clone(),
                tokens: v
                    .split([',', ' ', '\t'])
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
        }
    }
}

/// `ProxyPassReverse path url`.
#[derive(Debug, Clone)]
pub struct ReverseRule {
    pub path: String,
    pub url: String,
}

/// Backend TLS settings (`SSLProxy*`).
#[derive(Debug, Clone)]
pub struct SslProxy {
    pub engine: bool,
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    pub check_peer_name: bool,
    pub check_peer_expire: bool,
    /// Built from the fields above once the configuration is complete.
    pub client: Option<Arc<rustls::ClientConfig>>,
}

impl Default for SslProxy {
    fn default() -> Self {
        SslProxy {
            engine: false,
            verify: false,
            ca_file: None,
            check_peer_name: true,
            check_peer_expire: true,
            client: None,
        }
    }
}
