//! mod_proxy_balancer and mod_proxy_hcheck as data: balancers, their
//! members and the members' health checks. `config::balancer` builds them;
//! `crate::balancer` chooses among members with the state the runtime keeps
//! for them; `crate::upstream` runs the checks.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::{IntOp, SslIdx, WorkerIdx};
use crate::http::TargetUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbMethod {
    ByRequests,
    ByBusyness,
    ByTraffic,
}

/// Where a balancer is in [`super::Config::balancers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BalancerIdx(pub usize);

/// A `balancer://name` with its members and parameters.
#[derive(Debug)]
pub struct Balancer {
    /// `balancer://name`, lower-case: the balancer's identity.
    pub name: String,
    pub lbmethod: LbMethod,
    /// Cookie name, then the URL parameter name (`stickysession=C|U`).
    pub sticky: Option<(String, String)>,
    /// `stickysessionsep`; `None` for `Off` (the whole value is the route).
    pub sticky_sep: Option<char>,
    pub scolon_path_delim: bool,
    pub nofailover: bool,
    pub failonstatus: Vec<u16>,
    pub failontimeout: bool,
    /// Extra attempts after the first; `None`: members − 1.
    pub maxattempts: Option<usize>,
    pub forcerecovery: bool,
    pub members: Vec<Member>,
    /// Header and environment rules of its `<Proxy>` section.
    pub rules: super::headers::Rules,
    /// `Require` in its `<Proxy>` section: applies to requests proxied to
    /// it unless a matching `<Location>` has its own.
    pub require: Option<super::authz::Require>,
    /// mod_access_compat's and the authentication modules' directives in
    /// its `<Proxy>` section: a matching `<Location>`'s come after them.
    pub auth: Option<Box<super::authz::Auth>>,
    /// Where it is first named (its `<Proxy>` or a ProxyPass line).
    pub origin: crate::config::Origin,
}

impl Balancer {
    /// How many tries a request gets: the first and `maxattempts` more.
    pub fn attempts(&self) -> usize {
        1 + self
            .maxattempts
            .unwrap_or(self.members.len().saturating_sub(1))
    }
}

/// A member's identity, which its state keeps across reloads: the
/// balancer's name and the member's url as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberId {
    pub balancer: String,
    pub url: String,
}

/// One `BalancerMember`.
#[derive(Debug)]
pub struct Member {
    pub id: MemberId,
    pub url: TargetUrl,
    pub worker: WorkerIdx,
    /// loadfactor × 100.
    pub weight: i64,
    pub route: Option<String>,
    pub redirect: Option<String>,
    pub lbset: u32,
    pub hot_standby: bool,
    pub hot_spare: bool,
    pub ignore_errors: bool,
    /// The states `status=` sets at start and on every reload.
    pub initial: InitialStatus,
    pub health: Option<HealthCheck>,
}

/// `status=+D`, `+S`, `+N` and `+E` as written: applied to the member's
/// state whenever a configuration naming them is installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitialStatus {
    pub disabled: bool,
    pub stopped: bool,
    pub drain: bool,
    pub error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HcMethod {
    Tcp,
    Options,
    Head,
    Get,
}

/// A member's health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub method: HcMethod,
    pub http11: bool,
    pub interval: Duration,
    pub passes: u32,
    pub fails: u32,
    pub uri: String,
    pub expr: Option<Arc<StatusExpr>>,
    /// The `SSLProxy*` settings an `https://` or `wss://` member is checked
    /// with: those of the server that defines the balancer when it enables
    /// `SSLProxyEngine`, else those of the first virtual host that proxies
    /// to the balancer and enables it.
    pub ssl: SslIdx,
}

impl HealthCheck {
    pub fn new(method: HcMethod, http11: bool) -> HealthCheck {
        HealthCheck {
            method,
            http11,
            interval: Duration::from_secs(30),
            passes: 1,
            fails: 1,
            uri: String::new(),
            expr: None,
            ssl: SslIdx(0),
        }
    }
}

/// The subset of ap_expr `ProxyHCExpr` takes here: conditions on
/// `%{REQUEST_STATUS}` joined with `&&`, `||`, `!` and parentheses.
#[derive(Debug)]
pub enum StatusExpr {
    Compare(IntOp, i64),
    Matches(Regex, bool),
    In(Vec<i64>),
    Not(Box<StatusExpr>),
    And(Box<StatusExpr>, Box<StatusExpr>),
    Or(Box<StatusExpr>, Box<StatusExpr>),
}
