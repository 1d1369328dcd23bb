//! mod_proxy_balancer and mod_proxy_hcheck directives: `<Proxy
//! balancer://…>`, `BalancerMember`, `ProxySet`, the balancer parameters of a
//! `ProxyPass` to a balancer, and `ProxyHCExpr`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::directives::{dispatch, section_needed, Scope};
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model::balancer::{
    Balancer, BalancerIdx, HcMethod, HealthCheck, InitialStatus, LbMethod, Member, MemberId,
    StatusExpr,
};
use super::model::{SslIdx, WorkerParams};
use super::proxy::set_worker_param;
use super::values::{self, parse_target_url};
use super::{At, Builder, Workers};

/// `<Proxy balancer://name>`: its lines belong to that balancer.
pub(super) fn proxy_section(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let children = node.children.as_ref().ok_or_else(|| section_needed(node))?;
    let [url] = node.args.as_slice() else {
        return Err(ConfigError::new(o, "<Proxy> takes one url"));
    };
    if split_balancer_url(url).is_none() {
        return Err(ConfigError::new(
            o,
            format!("<Proxy {url}>: wsgate supports <Proxy> for balancer:// urls only"),
        )
        .hint("set worker parameters on the ProxyPass line instead"));
    }
    b.balancers
        .get(url, o)?
        .draft
        .defined_in
        .get_or_insert(at.server.key);
    let mut inner = At {
        scope: Scope::Proxy,
        server: &mut *at.server,
        location: None,
        proxy: Some(url),
        section: None,
    };
    for child in children {
        let read = dispatch(b, &mut inner, child);
        b.go_on(read)?;
    }
    Ok(())
}

/// The balancer a `BalancerMember` or `ProxySet` line is for, and the rest
/// of its arguments: inside `<Proxy>` the section's, else the first
/// argument's.
fn named_balancer<'n>(
    b: &'n mut Builder,
    at: &mut At<'_>,
    node: &'n Node,
) -> Result<(&'n mut BalancerDraft, &'n [String]), ConfigError> {
    let o = &node.origin;
    if let Some(url) = at.proxy {
        return Ok((b.balancers.get(url, o)?.draft, &node.args));
    }
    let Some((first, rest)) = node.args.split_first() else {
        return Err(ConfigError::new(
            o,
            format!("{} needs a balancer:// url outside <Proxy>", node.name),
        ));
    };
    if split_balancer_url(first).is_none() {
        return Err(ConfigError::new(
            o,
            format!(
                "{} must name its balancer://… first when not inside <Proxy>",
                node.name
            ),
        )
        .hint(
            "write it inside <Proxy balancer://NAME>, or as BalancerMember balancer://NAME URL",
        ));
    }
    let draft = b.balancers.get(first, o)?.draft;
    draft.defined_in.get_or_insert(at.server.key);
    Ok((draft, rest))
}

pub(super) fn balancer_member(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (draft, args) = named_balancer(b, at, node)?;
    let (member, params) = args
        .split_first()
        .ok_or_else(|| ConfigError::new(o, "BalancerMember must define remote proxy server"))?;
    draft.member(member, params, o)
}

pub(super) fn proxy_set(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (draft, args) = named_balancer(b, at, node)?;
    for p in args {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            ConfigError::new(o, format!("ProxySet: '{p}' must be in the form key=value"))
        })?;
        draft.set(k, v, o)?;
    }
    Ok(())
}

pub(super) fn proxy_hc_expr(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    b.balancers.expr(&node.args, &node.origin)
}

/// Which server a directive was read in: the main server, or the n-th
/// `<VirtualHost>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKey {
    Main,
    Vhost(usize),
}

#[derive(Debug)]
pub struct BalancerDraft {
    pub name: String,
    /// The server whose `<Proxy>` section (or `BalancerMember` lines)
    /// defines it, and the servers that proxy to it: they decide whose
    /// `SSLProxy*` settings its health checks use.
    pub defined_in: Option<ServerKey>,
    pub used_by: Vec<ServerKey>,
    lbmethod: LbMethod,
    sticky: Option<(String, String)>,
    sticky_sep: Option<char>,
    scolon_path_delim: bool,
    nofailover: bool,
    failonstatus: Vec<u16>,
    failontimeout: bool,
    maxattempts: Option<usize>,
    forcerecovery: bool,
    members: Vec<MemberDraft>,
    origin: Origin,
    /// `Header`, `RequestHeader`, `SetEnv*` inside `<Proxy balancer://…>`.
    pub rules: super::model::headers::Rules,
    /// `Require` inside its `<Proxy>` section.
    pub require: Option<super::model::authz::Require>,
    /// mod_access_compat's and the authentication modules' directives.
    pub auth: Option<Box<super::model::authz::Auth>>,
}

#[derive(Debug)]
struct MemberDraft {
    url: String,
    params: WorkerParams,
    extra: MemberParams,
    origin: Origin,
}

#[derive(Debug, Default)]
struct MemberParams {
    loadfactor: Option<f64>,
    route: Option<String>,
    redirect: Option<String>,
    lbset: u32,
    disabled: bool,
    stopped: bool,
    drain: bool,
    error: bool,
    hot_standby: bool,
    hot_spare: bool,
    ignore_errors: bool,
    hc_method: Option<(HcMethod, bool)>,
    hc_interval: Option<Duration>,
    hc_passes: Option<u32>,
    hc_fails: Option<u32>,
    hc_uri: Option<String>,
    hc_expr: Option<String>,
}

/// All balancers of a configuration, by lower-case name.
#[derive(Debug, Default)]
pub struct Balancers {
    pub drafts: Vec<BalancerDraft>,
    pub exprs: HashMap<String, Arc<StatusExpr>>,
}

/// A balancer's draft and where the balancer will be in the configuration.
pub struct Found<'a> {
    pub draft: &'a mut BalancerDraft,
    pub idx: BalancerIdx,
}

/// `balancer://name[/path]` split into its name and path.
pub fn split_balancer_url(url: &str) -> Option<(String, &str)> {
    let rest = url
        .get(..11)
        .filter(|s| s.eq_ignore_ascii_case("balancer://"))
        .map(|_| &url[11..])?;
    let end = rest.find('/').unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return None;
    }
    Some((
        format!("balancer://{}", name.to_ascii_lowercase()),
        &rest[end..],
    ))
}

impl Balancers {
    /// The balancer named by `url`, created on first mention (a ProxyPass
    /// may name a balancer defined further down, as in Apache).
    pub fn get(&mut self, url: &str, origin: &Origin) -> Result<Found<'_>, ConfigError> {
        let (name, _) = split_balancer_url(url).ok_or_else(|| {
            ConfigError::new(origin, format!("'{url}' is not a balancer url"))
                .hint("write balancer://NAME")
        })?;
        let i = match self.drafts.iter().position(|d| d.name == name) {
            Some(i) => i,
            None => {
                self.drafts.push(BalancerDraft {
                    name,
                    defined_in: None,
                    used_by: Vec::new(),
                    lbmethod: LbMethod::ByRequests,
                    sticky: None,
                    sticky_sep: Some('.'),
                    scolon_path_delim: false,
                    nofailover: false,
                    failonstatus: Vec::new(),
                    failontimeout: false,
                    maxattempts: None,
                    forcerecovery: true,
                    members: Vec::new(),
                    origin: origin.clone(),
                    rules: super::model::headers::Rules::default(),
                    require: None,
                    auth: None,
                });
                self.drafts.len() - 1
            }
        };
        Ok(Found {
            draft: &mut self.drafts[i],
            idx: BalancerIdx(i),
        })
    }

    /// `ProxyHCExpr name {expression}`.
    pub fn expr(&mut self, args: &[String], origin: &Origin) -> Result<(), ConfigError> {
        let (name, rest) = args
            .split_first()
            .ok_or_else(|| ConfigError::new(origin, "ProxyHCExpr needs a name and {expression}"))?;
        let text = rest.join(" ");
        let body = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| {
                ConfigError::new(
                    origin,
                    "ProxyHCExpr: the expression must be written in braces, {…}",
                )
            })?;
        let expr = super::expr::parse_status_expr(body).map_err(|e| {
            ConfigError::new(origin, format!("ProxyHCExpr {name}: {e}"))
                .hint("wsgate's health-check expressions test %{REQUEST_STATUS} with ==, !=, <, >, -lt…, =~ /re/, in {…}, &&, ||, !")
        })?;
        self.exprs.insert(name.clone(), Arc::new(expr));
        Ok(())
    }

    /// Builds every balancer, adding its members' workers to `workers`;
    /// `ssl` tells the `SSLProxy*` settings of a server and whether they
    /// enable `SSLProxyEngine`.
    pub fn finish(
        &mut self,
        workers: &mut Workers,
        ssl: impl Fn(ServerKey) -> (SslIdx, bool),
    ) -> Result<Vec<Balancer>, ConfigError> {
        let mut out = Vec::new();
        for d in &mut self.drafts {
            if d.members.is_empty() {
                return Err(ConfigError::new(
                    &d.origin,
                    format!("{} has no BalancerMember", d.name),
                )
                .hint(format!(
                    "add <Proxy \"{}\"> with BalancerMember lines",
                    d.name
                )));
            }
            let check_ssl = health_check_ssl(d, &ssl);
            let mut members = Vec::with_capacity(d.members.len());
            for m in d.members.drain(..) {
                let url = parse_target_url(&m.url).map_err(|e| {
                    ConfigError::new(
                        &m.origin,
                        format!("BalancerMember '{}': {}", m.url, e.describe()),
                    )
                })?;
                let health = match m.extra.hc_method {
                    None => None,
                    Some((method, http11)) => {
                        let mut c = HealthCheck::new(method, http11);
                        c.interval = m.extra.hc_interval.unwrap_or(c.interval);
                        c.passes = m.extra.hc_passes.unwrap_or(c.passes);
                        c.fails = m.extra.hc_fails.unwrap_or(c.fails);
                        c.uri = m.extra.hc_uri.clone().unwrap_or_default();
                        c.ssl = check_ssl;
                        if let Some(name) = &m.extra.hc_expr {
                            c.expr = Some(self.exprs.get(name).cloned().ok_or_else(|| {
                                ConfigError::new(&m.origin, format!("hcexpr={name}: no ProxyHCExpr of that name"))
                                    .hint("define it with ProxyHCExpr NAME {%{REQUEST_STATUS} =~ /^[23]/} before use")
                            })?);
                        }
                        Some(c)
                    }
                };
                let flags = &m.extra;
                let name = super::proxy::normalise_worker_name(&m.url);
                let worker = workers.add(Some(&d.name), name, m.params, &m.origin);
                members.push(Member {
                    id: MemberId {
                        balancer: d.name.clone(),
                        url: m.url.clone(),
                    },
                    worker,
                    url,
                    weight: (flags.loadfactor.unwrap_or(1.0) * 100.0).round() as i64,
                    route: flags.route.clone(),
                    redirect: flags.redirect.clone(),
                    lbset: flags.lbset,
                    hot_standby: flags.hot_standby,
                    hot_spare: flags.hot_spare,
                    ignore_errors: flags.ignore_errors,
                    initial: InitialStatus {
                        disabled: flags.disabled,
                        stopped: flags.stopped,
                        drain: flags.drain,
                        error: flags.error,
                    },
                    health,
                });
            }
            out.push(Balancer {
                name: d.name.clone(),
                lbmethod: d.lbmethod,
                sticky: d.sticky.clone(),
                sticky_sep: d.sticky_sep,
                scolon_path_delim: d.scolon_path_delim,
                nofailover: d.nofailover,
                failonstatus: d.failonstatus.clone(),
                failontimeout: d.failontimeout,
                maxattempts: d.maxattempts,
                forcerecovery: d.forcerecovery,
                members,
                rules: d.rules.clone(),
                require: d.require.clone(),
                auth: d.auth.clone(),
                origin: d.origin.clone(),
            });
        }
        Ok(out)
    }
}

/// The `SSLProxy*` settings a balancer's health checks use. Apache checks
/// with those of the server that defines the balancer, so a balancer of the
/// main server used by a virtual host that alone enables `SSLProxyEngine`
/// fails every check of its `https://` members although requests to them
/// work; wsgate then takes the settings of the first such virtual host.
fn health_check_ssl(d: &BalancerDraft, ssl: &impl Fn(ServerKey) -> (SslIdx, bool)) -> SslIdx {
    let defined = ssl(d.defined_in.unwrap_or(ServerKey::Main));
    if defined.1 {
        return defined.0;
    }
    d.used_by
        .iter()
        .map(|k| ssl(*k))
        .find(|(_, engine)| *engine)
        .map_or(defined.0, |(idx, _)| idx)
}

impl BalancerDraft {
    /// `BalancerMember url [key=value…]`.
    pub fn member(
        &mut self,
        url: &str,
        params: &[String],
        origin: &Origin,
    ) -> Result<(), ConfigError> {
        parse_target_url(url).map_err(|e| {
            ConfigError::new(origin, format!("BalancerMember '{url}': {}", e.describe()))
                .hint("BalancerMember takes http://, https://, ws:// or wss:// urls")
        })?;
        let mut worker = WorkerParams::default();
        let mut extra = MemberParams::default();
        for p in params {
            let (key, value) = p.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    origin,
                    format!("BalancerMember: parameter '{p}' must be in the form 'key=value'"),
                )
            })?;
            set_member_param(origin, &mut worker, &mut extra, key, value)?;
        }
        if let Some(route) = &extra.route {
            if self
                .members
                .iter()
                .any(|m| m.extra.route.as_ref() == Some(route))
            {
                return Err(ConfigError::new(
                    origin,
                    format!(
                        "BalancerMember route={route}: another member of {} has that route",
                        self.name
                    ),
                ));
            }
        }
        if self.members.iter().any(|m| m.url.eq_ignore_ascii_case(url)) {
            return Err(ConfigError::new(
                origin,
                format!("BalancerMember {url} is already a member of {}", self.name),
            ));
        }
        self.members.push(MemberDraft {
            url: url.to_string(),
            params: worker,
            extra,
            origin: origin.clone(),
        });
        Ok(())
    }

    /// A balancer parameter (`ProxySet`, or on a `ProxyPass` to it).
    pub fn set(&mut self, key: &str, value: &str, origin: &Origin) -> Result<(), ConfigError> {
        let err = |m: String| ConfigError::new(origin, m);
        match key.to_ascii_lowercase().as_str() {
            "lbmethod" => {
                self.lbmethod = match value.to_ascii_lowercase().as_str() {
                    "byrequests" => LbMethod::ByRequests,
                    "bybusyness" => LbMethod::ByBusyness,
                    "bytraffic" => LbMethod::ByTraffic,
                    _ => return Err(err(format!("lbmethod={value}: unknown lbmethod")).hint("one of byrequests, bybusyness, bytraffic")),
                }
            }
            "stickysession" => {
                let (cookie, url) = value.split_once('|').unwrap_or((value, value));
                if cookie.is_empty() || url.is_empty() {
                    return Err(err(format!("stickysession={value}: give a cookie name, or COOKIE|URLPARAM")));
                }
                self.sticky = Some((cookie.to_string(), url.to_string()));
            }
            "stickysessionsep" => {
                self.sticky_sep = if value.eq_ignore_ascii_case("off") {
                    None
                } else {
                    let mut chars = value.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => Some(c),
                        _ => return Err(err("stickysessionsep must be a single character or Off".into())),
                    }
                }
            }
            "scolonpathdelim" => self.scolon_path_delim = values::on_off(origin, "scolonpathdelim", value)?,
            "nofailover" => self.nofailover = values::on_off(origin, "nofailover", value)?,
            "failontimeout" => self.failontimeout = values::on_off(origin, "failontimeout", value)?,
            "forcerecovery" => self.forcerecovery = values::on_off(origin, "forcerecovery", value)?,
            "failonstatus" => {
                self.failonstatus = value
                    .split(',')
                    .map(|s| s.trim().parse::<u16>().ok().filter(|c| (100..600).contains(c)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err(format!("failonstatus={value}: a comma-separated list of status codes")))?;
            }
            "maxattempts" => self.maxattempts = Some(values::number(origin, "maxattempts", value)? as usize),
            "timeout" | "growth" | "nonce" => {
                if key.eq_ignore_ascii_case("timeout") || key.eq_ignore_ascii_case("growth") {
                    values::number(origin, key, value)?;
                }
            }
            other => {
                return Err(err(format!("'{other}' is not a balancer parameter")).hint(
                    "balancer parameters: lbmethod, stickysession, stickysessionsep, scolonpathdelim, nofailover, failonstatus, failontimeout, maxattempts, forcerecovery, timeout, growth, nonce; member parameters go on BalancerMember",
                ))
            }
        }
        Ok(())
    }
}

/// A member parameter: the balancing and health-check ones here, the rest
/// as for any worker.
fn set_member_param(
    origin: &Origin,
    worker: &mut WorkerParams,
    m: &mut MemberParams,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let err = |msg: String| ConfigError::new(origin, msg);
    match key.to_ascii_lowercase().as_str() {
        "loadfactor" => {
            set_worker_param(origin, "BalancerMember", worker, key, value)?;
            m.loadfactor = value.parse().ok();
        }
        "route" => {
            set_worker_param(origin, "BalancerMember", worker, key, value)?;
            m.route = Some(value.to_string());
        }
        "redirect" => {
            set_worker_param(origin, "BalancerMember", worker, key, value)?;
            m.redirect = Some(value.to_string());
        }
        "lbset" => {
            set_worker_param(origin, "BalancerMember", worker, key, value)?;
            m.lbset = value.parse().unwrap_or(0);
        }
        "status" => {
            set_worker_param(origin, "BalancerMember", worker, key, value)?;
            let mut on = true;
            for c in value.chars() {
                match c.to_ascii_uppercase() {
                    '+' => on = true,
                    '-' => on = false,
                    'D' => m.disabled = on,
                    'S' => m.stopped = on,
                    'I' => m.ignore_errors = on,
                    'H' => m.hot_standby = on,
                    'R' => m.hot_spare = on,
                    'E' => m.error = on,
                    'N' => m.drain = on,
                    _ => {}
                }
            }
        }
        "hcmethod" => {
            m.hc_method = match value.to_ascii_uppercase().as_str() {
                "NONE" => None,
                "TCP" => Some((HcMethod::Tcp, false)),
                "OPTIONS" => Some((HcMethod::Options, false)),
                "HEAD" => Some((HcMethod::Head, false)),
                "GET" => Some((HcMethod::Get, false)),
                "OPTIONS11" => Some((HcMethod::Options, true)),
                "HEAD11" => Some((HcMethod::Head, true)),
                "GET11" => Some((HcMethod::Get, true)),
                _ => {
                    return Err(err(format!("hcmethod={value}: Unknown method"))
                        .hint("NONE, TCP, OPTIONS, HEAD, GET, OPTIONS11, HEAD11 or GET11"))
                }
            }
        }
        "hcinterval" => {
            let t = values::timeout(origin, "hcinterval", value, "s")?;
            if t < Duration::from_millis(100) {
                return Err(err("hcinterval must be at least 100ms".into()));
            }
            m.hc_interval = Some(t);
        }
        "hcpasses" | "hcfails" => {
            let n = values::number(origin, key, value)?;
            if n == 0 {
                return Err(err(format!("{key} must be at least 1")));
            }
            if key.eq_ignore_ascii_case("hcpasses") {
                m.hc_passes = Some(n as u32);
            } else {
                m.hc_fails = Some(n as u32);
            }
        }
        "hcuri" => m.hc_uri = Some(value.to_string()),
        "hcexpr" => m.hc_expr = Some(value.to_string()),
        "hctemplate" => {
            return Err(
                err("hctemplate (ProxyHCTemplate) is not supported by wsgate".into())
                    .hint("give the hc* parameters on the member"),
            )
        }
        _ => set_worker_param(origin, "BalancerMember", worker, key, value)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_balancer_url;

    #[test]
    fn balancer_urls_split_into_name_and_path() {
        assert_eq!(
            split_balancer_url("balancer://Chat/x/"),
            Some(("balancer://chat".to_string(), "/x/"))
        );
        assert_eq!(
            split_balancer_url("BALANCER://c"),
            Some(("balancer://c".to_string(), ""))
        );
        assert_eq!(split_balancer_url("balancer:///x"), None);
        assert_eq!(split_balancer_url("http://x"), None);
    }
}
