//! mod_authz_core and mod_authz_host (`Require`, `<RequireAll>`,
//! `<RequireAny>`, `<RequireNone>`) and the local handlers `SetHandler`
//! names, as plain data. `route::access` evaluates a [`Require`].

use std::net::IpAddr;

/// One authorization test or section, as mod_authz_core keeps it: a
/// section's result is combined from its children's, and `negate` turns a
/// grant into a denial and a denial into "neutral" (a `not` can refuse,
/// never grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Require {
    pub negate: bool,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `Require all granted` (true) or `Require all denied` (false).
    All(bool),
    /// `Require ip …`: granted when the client is in one of the subnets.
    Ip(Vec<Subnet>),
    /// `Require local`: the client is on a loopback address or on the
    /// server's own address.
    Local,
    /// `<RequireAll>` (`all`, denied by one denial) or `<RequireAny>` and
    /// the lines of a `<Location>` (granted by one grant); `<RequireNone>`
    /// is a negated `<RequireAny>`.
    Section { all: bool, children: Vec<Require> },
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
