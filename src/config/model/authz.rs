//! mod_authz_core and mod_authz_host (`Require`, `<RequireAll>`,
//! `<RequireAny>`, `<RequireNone>`) and the local handlers `SetHandler`
//! names, as plain data. `route::access` evaluates a [`Require`].

use std::net::IpAddr;

/// One authorization test or section, as mod_authz_core keeps it: a
/// section's result is combined from its children's, and `negate` turns a
/// grant into a denial and a denial into "neutral" (a `not` can refuse,
/// never grant).
#[derive(Debug, Clone)]
pub struct Require {
    pub negate: bool,
    pub test: Test,
}

#[derive(Debug, Clone)]
pub enum Test {
    /// `Require all granted` (true) or `Require all denied` (false).
    All(bool),
    /// `Require ip …`: granted when the client is in one of the subnets.
    Ip(Vec<Subnet>),
    /// `Require local`: the client is on a loopback address or on the
    /// server's own address.
    Local,
    /// `Require user NAME…` (mod_authz_user): the authenticated user is
    /// one of them (compared exactly).
    User(Vec<String>),
    /// `Require valid-user`: any authenticated user.
    ValidUser,
    /// `Require host NAME…`: the client's host name, found by a reverse
    /// lookup its forward lookup confirms, is NAME or ends in `.NAME`.
    Host(Vec<String>),
    /// `Require env VAR…`: one of the variables is set (by `SetEnvIf`,
    /// `BrowserMatch` or a rewrite rule's `E=`: they run before access).
    Env(Vec<String>),
    /// `Require method NAME…`: the request's method is one of them (HEAD
    /// is GET, as Apache numbers methods).
    Method(Vec<String>),
    /// `Require expr EXPRESSION`: the ap_expr condition holds.
    Expr(Box<super::headers::expr::Cond>),
    /// `<RequireAll>` (`all`, denied by one denial) or `<RequireAny>` and
    /// the lines of a `<Location>` (granted by one grant); `<RequireNone>`
    /// is a negated `<RequireAny>`.
    Section { all: bool, children: Vec<Require> },
}

impl Require {
    /// Whether a test anywhere in it needs the client's host name.
    pub fn needs_host(&self) -> bool {
        match &self.test {
            Test::Host(_) => true,
            Test::Section { children, .. } => children.iter().any(Require::needs_host),
            _ => false,
        }
    }
}

/// mod_access_compat (`Order`, `Allow`, `Deny`, `Satisfy`) and the
/// authentication modules (`AuthType`, `AuthName`, `AuthUserFile`) as one
/// section writes them. Sections merge as the modules do: a later
/// section's `compat` replaces an earlier one's whole (mod_access_compat
/// has no merger, so a section with only `Satisfy` resets `Allow` and
/// `Deny`), each of the others replaces its own field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub compat: Option<Compat>,
    /// `AuthType Basic` (`Some(true)`) or `AuthType None` (`Some(false)`).
    pub basic: Option<bool>,
    /// `AuthName`, with its double quotes escaped as `ap_auth_name` does.
    pub realm: Option<String>,
    /// `AuthUserFile`, relative paths resolved from `ServerRoot`.
    pub user_file: Option<std::path::PathBuf>,
}

/// The authentication settings of the sections that apply to a request,
/// merged as their modules merge them: each field from the last section
/// that writes it (`compat` whole, as mod_access_compat has no merger).
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy<'c> {
    pub compat: Option<&'c Compat>,
    /// `AuthType Basic` (true) or `None`.
    pub basic: Option<bool>,
    pub realm: Option<&'c str>,
    pub user_file: Option<&'c std::path::Path>,
}

impl<'c> Policy<'c> {
    /// A later section's settings over these.
    pub fn add(&mut self, a: &'c Auth) {
        if let Some(c) = &a.compat {
            self.compat = Some(c);
        }
        if a.basic.is_some() {
            self.basic = a.basic;
        }
        if let Some(r) = &a.realm {
            self.realm = Some(r);
        }
        if let Some(f) = &a.user_file {
            self.user_file = Some(f);
        }
    }

    /// These settings over `earlier`'s: each field from `self` where it is
    /// set.
    pub fn or(self, earlier: Policy<'c>) -> Policy<'c> {
        Policy {
            compat: self.compat.or(earlier.compat),
            basic: self.basic.or(earlier.basic),
            realm: self.realm.or(earlier.realm),
            user_file: self.user_file.or(earlier.user_file),
        }
    }

    /// Whether anything here can refuse a request or ask for a user.
    pub fn guards(&self) -> bool {
        self.compat.is_some() || self.basic == Some(true)
    }
}

/// One section's `Order`, `Allow from`, `Deny from` and `Satisfy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compat {
    pub order: Order,
    pub allow: Vec<From>,
    pub deny: Vec<From>,
    /// `Satisfy Any` (true) or `All`; `None`: not written, which acts as
    /// `All`.
    pub satisfy_any: Option<bool>,
}

impl Default for Compat {
    fn default() -> Compat {
        Compat {
            order: Order::DenyAllow,
            allow: Vec::new(),
            deny: Vec::new(),
            satisfy_any: None,
        }
    }
}

impl Compat {
    pub fn needs_host(&self) -> bool {
        self.allow
            .iter()
            .chain(&self.deny)
            .any(|f| matches!(f, From::Host(_)))
    }
}

/// `Order`: which list is read last and so wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `Deny,Allow` (the default): allowed unless denied and not allowed.
    DenyAllow,
    /// `Allow,Deny`: refused unless allowed and not denied.
    AllowDeny,
    /// `Mutual-failure`: allowed only when allowed and not denied.
    MutualFailure,
}

/// One argument of `Allow from` or `Deny from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    All,
    Ip(Subnet),
    /// `env=VAR`: the variable is set.
    Env(String),
    /// `env=!VAR`: the variable is not set.
    NotEnv(String),
    /// A host or domain name, matched against the client's host name
    /// (double-reverse looked up) as a whole name or a domain suffix.
    Host(String),
}

/// An address and mask as `apr_ipsubnet_create` makes them: IPv4 in the
/// low 32 bits of `addr` and `mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub v6: bool,
    pub addr: u128,
    pub mask: u128,
}

impl Subnet {
    /// Whether `ip` is in the subnet; an IPv4-mapped IPv6 client is
    /// compared as the IPv4 address it carries (as APR does).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (ip.to_canonical(), self.v6) {
            (IpAddr::V4(v4), false) => u128::from(u32::from(v4)) & self.mask == self.addr,
            (IpAddr::V6(v6), true) => u128::from(v6) & self.mask == self.addr,
            _ => false,
        }
    }
}

/// What `SetHandler` names in a `<Location>`: a page wsgate answers itself
/// for a request that no ProxyPass or `[P]` rule proxies (Apache's proxy
/// handler runs first, so a matching `ProxyPass` wins over `SetHandler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// mod_status's page (`?auto`: its machine-readable form).
    ServerStatus,
    /// mod_proxy_balancer's manager page and form.
    BalancerManager,
    /// wsgate's Prometheus text exposition (an extension).
    Metrics,
    /// `SetHandler none`: cancels a handler an enclosing section set.
    None,
}

impl Handler {
    pub fn name(self) -> &'static str {
        match self {
            Handler::ServerStatus => "server-status",
            Handler::BalancerManager => "balancer-manager",
            Handler::Metrics => "wsgate-metrics",
            Handler::None => "none",
        }
    }
}
