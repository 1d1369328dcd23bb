//! The typed, validated configuration that the server runs on: plain,
//! immutable data. Nothing here parses text (the module files in `config/`
//! build it from directives), and nothing here lives: pools, resolved
//! addresses, balancer counters and `max=` slots belong to the runtime
//! (`crate::upstream::Runtime`), which finds them by the identities given
//! here — a worker's [`WorkerId`], a member's
//! [`MemberId`](balancer::MemberId) — and keeps them across reloads.

pub mod authz;
pub mod balancer;
pub mod files;
pub mod headers;
pub mod identity;
pub mod log;
pub mod proxy_answers;
pub mod remote_ip;
pub mod rewrite;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex::bytes::Regex;
use rustls::pki_types::CertificateDer;

use super::error::Origin;
pub use crate::http::{Limits, Scheme, TargetUrl};

/// Apache's compiled-in `Timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// wsgate's default for `GracefulShutdownTimeout` when the directive is absent
/// (Apache waits for ever; a supervisor would kill us first).
pub const DEFAULT_GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// `User` and `Group` (mod_unixd), resolved: never root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    /// As `Group` wrote it; `None` when the user's own group is taken.
    pub group: Option<String>,
    pub gid: u32,
}

#[derive(Debug)]
pub struct Config {
    pub listeners: Vec<Listener>,
    /// The `txt:` and `rnd:` RewriteMaps, whose files the proxy watches.
    pub text_maps: Vec<std::sync::Arc<rewrite::RewriteMap>>,
    /// `SSLVHostSNIPolicy`.
    pub sni_policy: SniPolicy,
    /// The main server; also what a connection gets when no vhost matches.
    pub main: Server,
    pub vhosts: Vec<Server>,
    pub limits: Limits,
    /// `Timeout`: client socket timeout, and the fallback for backend timeouts.
    pub timeout: Duration,
    pub keepalive: bool,
    pub keepalive_timeout: Duration,
    /// `MaxKeepAliveRequests`: requests on one connection, after the first,
    /// that may keep it open (0: no limit).
    pub max_keepalive_requests: u32,
    /// `DeflateCompressionLevel` (zlib's default, 6, when unset).
    pub deflate_level: u32,
    /// `None` means wait for ever (`GracefulShutdownTimeout 0`).
    pub graceful_shutdown: Option<Duration>,
    /// `MaxRequestWorkers`: at most this many client connections at once.
    pub max_connections: Option<usize>,
    pub error_log: Option<PathBuf>,
    pub log_level: tracing::Level,
    pub pid_file: Option<PathBuf>,
    /// `User` and `Group`: whom to serve as when started as root.
    pub run_as: Option<RunAs>,
    /// Things that work but that an operator should know, printed by `-t` and
    /// logged at startup.
    pub warnings: Vec<String>,
    /// `LoadModule unique_id_module`: mod_unique_id's `UNIQUE_ID` for
    /// every request.
    pub unique_id: bool,
    /// Every worker of every ProxyPass line and balancer member, once:
    /// routes and members name them by [`WorkerIdx`].
    pub workers: Vec<Worker>,
    pub balancers: Vec<balancer::Balancer>,
    /// The distinct `SSLProxy*` settings of the servers, named by [`SslIdx`]
    /// (the main server's first).
    pub ssl_proxies: Vec<SslProxy>,
    /// Every access log of every server (`CustomLog`, `TransferLog`,
    /// `GlobalLog`): servers name theirs by index.
    pub access_logs: Vec<log::AccessLog>,
    /// `ExtendedStatus` (On unless set Off, as with mod_status loaded).
    pub extended_status: bool,
    /// Some `<Location>` serves `server-status`: open tunnels are entered
    /// in the table it shows (nothing is kept per tunnel otherwise).
    pub status_page: bool,
    /// Some `<Location>` shows the server status or the metrics.
    pub shows_counts: bool,
    /// mod_remoteip's `RemoteIPProxyProtocol`.
    pub proxy_protocol: ProxyProtocol,
    /// The `Server` field of wsgate's own answers (`ServerTokens`).
    pub banner: String,
    /// mod_proxy's `ProxyStatus`: what the server-status page shows of
    /// the balancers.
    pub proxy_status: identity::ProxyStatus,
}

/// Where clients come through a load balancer that sends the PROXY
/// protocol (`RemoteIPProxyProtocol`, `RemoteIPProxyProtocolExceptions`).
/// Apache keeps these for the whole server, whichever virtual host they
/// are written in: two lists of local addresses, built in the order of the
/// directives, and the client networks exempted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Where `On` was said (for the main server: every address).
    pub enabled: Vec<LocalAddr>,
    /// Where `Off` was said; wins over `enabled`.
    pub disabled: Vec<LocalAddr>,
    /// Clients connecting from these send no header.
    pub exceptions: Vec<authz::Subnet>,
}

impl ProxyProtocol {
    /// Whether a connection from `client` to `local` starts with a header.
    pub fn applies(&self, local: SocketAddr, client: SocketAddr) -> bool {
        let local = LocalAddr {
            ip: Some(local.ip().to_canonical()),
            port: local.port(),
        };
        self.enabled.iter().any(|a| a.covers(&local))
            && !self.disabled.iter().any(|a| a.covers(&local))
            && !self.exceptions.iter().any(|n| n.contains(client.ip()))
    }
}

/// A local address as a server's address names it: `None` is any address
/// (`*`, `_default_`, the main server), port 0 any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    pub ip: Option<std::net::IpAddr>,
    pub port: u16,
}

impl LocalAddr {
    /// Apache's comparison of two such addresses, a wildcard or port 0 on
    /// either side matching anything in its place.
    pub fn covers(&self, other: &LocalAddr) -> bool {
        let same =
            self.ip == other.ip && (self.port == other.port || self.port == 0 || other.port == 0);
        let wildcard =
            |a: &LocalAddr, b: &LocalAddr| a.ip.is_none() && (a.port == 0 || a.port == b.port);
        same || wildcard(self, other) || wildcard(other, self)
    }
}

impl Config {
    pub fn worker(&self, idx: WorkerIdx) -> &Worker {
        &self.workers[idx.0]
    }

    pub fn balancer(&self, idx: balancer::BalancerIdx) -> &balancer::Balancer {
        &self.balancers[idx.0]
    }

    /// The balancer called `name` (`balancer://name`, lower-case).
    pub fn balancer_named(&self, name: &str) -> Option<balancer::BalancerIdx> {
        self.balancers
            .iter()
            .position(|b| b.name == name)
            .map(balancer::BalancerIdx)
    }

    pub fn ssl_proxy(&self, idx: SslIdx) -> &SslProxy {
        &self.ssl_proxies[idx.0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// `Listen … https`, or port 443 without a protocol: a server reached
    /// here with certificates and no `SSLEngine` line speaks TLS.
    pub https: bool,
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
    pub rewrite: Vec<rewrite::Rule>,
    /// The workers of this server's ProxyPass lines (main server's first).
    pub workers: Vec<WorkerIdx>,
    /// Header and environment rules (main server's first).
    pub rules: headers::Rules,
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
    /// `SSLEngine on`: clients reaching this server speak TLS.
    pub tls: Option<std::sync::Arc<ServerTls>>,
    /// `Protocols` and mod_http2's settings.
    pub http2: Http2,
    /// The access logs its requests are written to, in
    /// [`Config::access_logs`].
    pub access_logs: Vec<usize>,
    /// TCP keepalive and `TCP_USER_TIMEOUT` of its connections.
    pub liveness: Liveness,
    /// Static files: `DocumentRoot`, aliases, `<Directory>`…
    pub files: files::Files,
    pub origin: Option<Origin>,
    /// Where its own directives of [`Written::NOTED`] are (a vhost's
    /// only: what it inherits is in the main server's).
    pub written: Written,
    /// `ServerSignature` and `ServerAdmin`.
    pub signature: identity::Signature,
    /// `RequestReadTimeout`.
    pub read_timeouts: identity::ReadTimeouts,
    /// mod_remoteip's `RemoteIPHeader` and its proxies.
    pub remote_ip: Option<remote_ip::RemoteIp>,
}

/// Where the directives that set timeouts and the upgrade behaviour were
/// written, so that `wsgate -t --explain` can say where a value comes
/// from. Kept at configuration time only; requests never read it.
#[derive(Debug, Clone, Default)]
pub struct Written(Vec<(&'static str, Origin)>);

impl Written {
    /// The directives noted, as the directive table spells them.
    pub const NOTED: &'static [&'static str] = &[
        "Timeout",
        "KeepAlive",
        "KeepAliveTimeout",
        "GracefulShutdownTimeout",
        "ProxyTimeout",
        "ProxyWebsocketFallbackToProxyHttp",
        "ProxyPreserveHost",
        "WsgateWebSocketFrames",
        "WsgateWebSocketPing",
        "WsgateTCPKeepAlive",
        "WsgateTCPUserTimeout",
        "H2StreamTimeout",
        "RequestReadTimeout",
        "RewriteEngine",
        "Require",
        "SetHandler",
    ];

    /// Notes a line of `name` (one of [`Written::NOTED`]).
    pub fn note(&mut self, name: &'static str, origin: &Origin) {
        self.0.push((name, origin.clone()));
    }

    /// The last line of `name`, the one whose value holds.
    pub fn last(&self, name: &str) -> Option<&Origin> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, o)| o)
    }

    /// Every line of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Origin> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, o)| o)
    }
}

/// How a server's connections find out that a peer is gone
/// (`WsgateTCPKeepAlive`, `WsgateTCPUserTimeout`): on the client side for
/// connections its address receives, on the backend side for connections
/// its requests open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    pub client: TcpLiveness,
    pub backend: TcpLiveness,
}

/// One side's socket options; `None` leaves the system's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpLiveness {
    /// `SO_KEEPALIVE` with these timings.
    pub keepalive: Option<KeepAliveProbes>,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged (or
    /// the peer's window shut) before the connection is closed.
    pub user_timeout: Option<Duration>,
}

/// TCP keepalive timings (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveProbes {
    /// Silence before the first probe (whole seconds).
    pub idle: Duration,
    /// Between unanswered probes (whole seconds).
    pub interval: Duration,
    /// Unanswered probes before the connection is closed.
    pub count: u32,
}

/// HTTP/2 toward clients: offered by ALPN on TLS when `Protocols` lists
/// `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// `Protocols h2`: offered by ALPN on TLS.
    pub enabled: bool,
    /// `Protocols h2c`: HTTP/2 without TLS, when a connection opens with
    /// HTTP/2's preface (prior knowledge, mod_http2's `H2Direct`).
    pub cleartext: bool,
    /// `H2WebSockets on`: WebSockets over HTTP/2 streams (RFC 8441).
    pub websockets: bool,
    /// `H2MaxSessionStreams`.
    pub max_streams: u32,
    /// `H2WindowSize`: each stream's receive window.
    pub window: u32,
    /// `H2StreamTimeout`: a stream's reads and writes, instead of `Timeout`.
    pub stream_timeout: Option<std::time::Duration>,
}

/// `SSLVHostSNIPolicy`: when a request's `Host` may select another TLS
/// virtual host than the one its handshake's SNI name selected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SniPolicy {
    /// Never: 421 Misdirected Request.
    Strict,
    /// When the two share their TLS setup (the default).
    #[default]
    Secure,
    /// When the two ask the same of client certificates (wsgate asks none
    /// of any: always).
    AuthOnly,
    /// Always.
    Insecure,
}

/// A server's TLS toward clients: its certificates with their keys (read
/// and checked against each other when the configuration was) and the
/// protocol versions it speaks.
#[derive(Debug)]
pub struct ServerTls {
    /// One per `SSLCertificateFile` (e.g. an RSA and an ECDSA one): the
    /// handshake takes the first whose key the client can verify.
    pub keys: Vec<std::sync::Arc<rustls::sign::CertifiedKey>>,
    /// The certificate and key files of `keys`, and the chain file: two
    /// servers with the same files and versions accept each other's
    /// handshakes (mod_ssl's "compatible SSL setup").
    pub files: Vec<(PathBuf, PathBuf)>,
    pub chain_file: Option<PathBuf>,
    pub versions: TlsVersions,
    /// `SSLCipherSuite` (both lists), in preference order.
    pub ciphers: Vec<CipherSuite>,
    /// `SSLHonorCipherOrder on`: the server's order wins.
    pub honor_cipher_order: bool,
    /// `SSLSessionTickets` (on by default, as in Apache).
    pub session_tickets: bool,
    /// `SSLOpenSSLConfCmd Curves|Groups`, in preference order (empty: the
    /// defaults).
    pub groups: Vec<KxGroup>,
    /// `SSLStrictSNIVHostCheck on`.
    pub strict_sni: bool,
}

/// A cipher suite wsgate (rustls) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    EcdheEcdsaAes128Gcm,
    EcdheEcdsaAes256Gcm,
    EcdheEcdsaChacha20,
    EcdheRsaAes128Gcm,
    EcdheRsaAes256Gcm,
    EcdheRsaChacha20,
    Tls13Aes128Gcm,
    Tls13Aes256Gcm,
    Tls13Chacha20,
}

/// A key exchange group wsgate (rustls) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KxGroup {
    X25519,
    Secp256r1,
    Secp384r1,
}

/// The TLS versions `SSLProtocol` leaves (of those rustls speaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions {
            tls12: true,
            tls13: true,
        }
    }
}

/// `WsgateWebSocketPing EVERY [WAIT]`: a side of a WebSocket tunnel from
/// which nothing came for `every` is sent a Ping; if still nothing comes
/// from it within `wait`, it is dead and the tunnel closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsPing {
    /// In tenths of a second: a parked tunnel keeps these, in what was
    /// padding of its state.
    pub every_ds: std::num::NonZeroU16,
    pub wait_ds: std::num::NonZeroU16,
}

impl WsPing {
    pub fn every(&self) -> Duration {
        Duration::from_millis(100 * u64::from(self.every_ds.get()))
    }

    pub fn wait(&self) -> Duration {
        Duration::from_millis(100 * u64::from(self.wait_ds.get()))
    }
}

/// Settings a `<Location>` may override.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub preserve_host: bool,
    pub add_headers: bool,
    /// `ProxyWebsocketFallbackToProxyHttp`.
    pub fallback_to_http: bool,
    /// `WsgateWebSocketFrames`: WebSocket tunnels' frames are followed.
    pub frames: bool,
    /// `WsgateWebSocketPing` (its tunnels' frames are followed too).
    pub ping: Option<WsPing>,
    /// `TraceEnable` (a server's, not a `<Location>`'s): `Off` answers
    /// TRACE with 405 instead of proxying it.
    pub trace_enable: bool,
    /// `ProxyTimeout`.
    pub proxy_timeout: Option<Duration>,
    /// `SSLProxy*`, in [`Config::ssl_proxies`].
    pub ssl_proxy: SslIdx,
    /// `ProxyVia`.
    pub via: proxy_answers::Via,
    /// `ProxyErrorOverride` at server level (the main server's below).
    pub error_override: proxy_answers::ErrorOverride,
    /// `ProxySourceAddress`: backend connections are made from it.
    pub source_address: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostAddr {
    /// `None` for `*` and `_default_`.
    pub ip: Option<std::net::IpAddr>,
    /// `None` for a wildcard port.
    pub port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub matcher: LocationMatcher,
    pub rules: headers::Rules,
    pub proxy_pass: Option<LocationPass>,
    pub preserve_host: Option<bool>,
    pub add_headers: Option<bool>,
    pub fallback_to_http: Option<bool>,
    pub frames: Option<bool>,
    /// `Some(None)`: `WsgateWebSocketPing Off`.
    pub ping: Option<Option<WsPing>>,
    pub reverse: Vec<ReverseRule>,
    /// `Require` lines and sections: replace those of earlier matching
    /// sections (Apache's `AuthMerging Off`).
    pub require: Option<authz::Require>,
    /// mod_access_compat's and the authentication modules' directives.
    pub auth: Option<Box<authz::Auth>>,
    /// `SetHandler`.
    pub handler: Option<authz::Handler>,
    pub origin: Origin,
    /// Where its directives of [`Written::NOTED`] are.
    pub written: Written,
    /// `ServerSignature`.
    pub signature: Option<identity::ServerSignature>,
    /// `ErrorDocument` lines, in order.
    pub error_docs: Vec<(u16, files::ErrorDoc)>,
    /// `Options`: over the file sections' for a file's listing (symbolic
    /// links are decided by the walk, before it, as in Apache).
    pub options: Option<files::OptionsChange>,
    /// `ProxyErrorOverride`.
    pub error_override: proxy_answers::ErrorOverride,
    /// mod_rewrite's per-directory rules in this section.
    pub rewrite: Option<Box<rewrite::PerDir>>,
}

#[derive(Debug, Clone)]
pub enum LocationMatcher {
    /// `<Location /path>`: a prefix with ProxyPass's segment rules.
    Prefix(Vec<u8>),
    /// `<LocationMatch re>` or `<Location ~ re>`.
    Regex(Regex),
}

/// The single-argument ProxyPass / ProxyPassMatch inside a Location.
#[derive(Debug, Clone)]
pub struct LocationPass {
    pub target: Target,
    pub origin: Origin,
}

/// One `ProxyPass` or `ProxyPassMatch` line.
#[derive(Debug, Clone)]
pub struct Route {
    pub matcher: RouteMatcher,
    pub target: Target,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum RouteMatcher {
    Prefix(Vec<u8>),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum Target {
    /// `!`: stop looking, serve locally.
    Exclude,
    Proxy(ProxyTarget),
}

#[derive(Debug, Clone)]
pub struct ProxyTarget {
    /// The url as written (for a regex route, with its `$N` references).
    pub url: String,
    /// Whether `url` holds `$N` references to substitute.
    pub substitutes: bool,
    pub nocanon: bool,
    pub noquery: bool,
    pub to: PassTo,
}

/// What a ProxyPass url names.
#[derive(Debug, Clone)]
pub enum PassTo {
    Worker {
        worker: WorkerIdx,
        /// The url parsed once, when it has no `$N` (the hot path reuses it).
        parsed: Option<TargetUrl>,
    },
    Balancer(balancer::BalancerIdx),
}

/// Where a worker is in [`Config::workers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerIdx(pub usize);

/// A worker's identity, which its pool, resolved addresses and `max=`
/// slots keep across reloads: its url (for a regex route, up to the first
/// `$`), the balancer it is a member of, and which of the workers with that
/// name it is (wsgate keeps each ProxyPass line's parameters, so two lines
/// with one url are two workers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerId {
    pub balancer: Option<String>,
    pub name: String,
    pub nth: usize,
}

/// A backend as a ProxyPass line or a balancer member names it.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: WorkerId,
    /// The url (for a regex route, up to its first `$`), for logs.
    pub name: String,
    pub params: WorkerParams,
    /// The ProxyPass or BalancerMember line that defines it.
    pub origin: Origin,
}

/// Which worker a mapped request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRef {
    Configured(WorkerIdx),
    /// Apache's default worker: a `[P]` rule to a url no ProxyPass names.
    /// It reuses no connection ([`WorkerParams::generic`]).
    Generic,
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
    /// The parameters of Apache's default worker (a `[P]` rule to a url no
    /// ProxyPass names): no connection reuse, hence an address lookup per
    /// connection.
    pub fn generic() -> WorkerParams {
        WorkerParams {
            disable_reuse: true,
            ..WorkerParams::default()
        }
    }

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
    /// What the rule rewrites; for the cookie rules `url` is the
    /// backend's value (the "fake" one) and `path` the client's.
    pub kind: ReverseKind,
}

/// `ProxyPassReverse` or one of its cookie forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReverseKind {
    /// `ProxyPassReverse`: url-valued fields (Location…).
    #[default]
    Url,
    /// `ProxyPassReverseCookiePath`: a `Set-Cookie`'s `path=`.
    CookiePath,
    /// `ProxyPassReverseCookieDomain`: a `Set-Cookie`'s `domain=`.
    CookieDomain,
}

/// Where a server's `SSLProxy*` settings are in [`Config::ssl_proxies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SslIdx(pub usize);

/// Backend TLS settings (`SSLProxy*`), with the trusted certificates
/// already read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SslProxy {
    pub engine: bool,
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    /// The certificates of `SSLProxyCACertificateFile`, read when the
    /// configuration was (empty without `SSLProxyVerify require`).
    pub ca_certificates: Vec<CertificateDer<'static>>,
    pub check_peer_name: bool,
    pub check_peer_expire: bool,
}

impl Default for SslProxy {
    fn default() -> Self {
        SslProxy {
            engine: false,
            verify: false,
            ca_file: None,
            ca_certificates: Vec::new(),
            check_peer_name: true,
            check_peer_expire: true,
        }
    }
}

/// An integer comparison, as `-eq`, `-ne`, `-lt`, `-le`, `-gt`, `-ge` in
/// RewriteCond and ap_expr (where `==`, `<`… also name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl IntOp {
    /// `-eq` … `-ge`.
    pub fn from_test(op: &str) -> Option<IntOp> {
        Some(match op {
            "-eq" => IntOp::Eq,
            "-ne" => IntOp::Ne,
            "-lt" => IntOp::Lt,
            "-le" => IntOp::Le,
            "-gt" => IntOp::Gt,
            "-ge" => IntOp::Ge,
            _ => return None,
        })
    }

    /// Whether `a OP b`.
    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            IntOp::Eq => a == b,
            IntOp::Ne => a != b,
            IntOp::Lt => a < b,
            IntOp::Le => a <= b,
            IntOp::Gt => a > b,
            IntOp::Ge => a >= b,
        }
    }
}
