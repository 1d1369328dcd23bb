//! mod_authz_core and mod_authz_host (`Require`, `<RequireAll>`,
//! `<RequireAny>`, `<RequireNone>`), core's `SetHandler` for the local
//! handlers wsgate has, and `ExtendedStatus`.
//!
//! The checks and messages follow mod_authz_core's: a negated line or a
//! `<RequireNone>` can only refuse, so inside a "one of" section (the lines
//! of a `<Location>` are one) it would never matter and is an error; a
//! `<RequireAll>` of negations only can never grant and is an error too.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::directives::{arg, Scope};
use super::error::ConfigError;
use super::lexer::Node;
use super::model::authz::{Handler, Require, Subnet, Test};
use super::{values, At, Builder};

const PROVIDERS_HINT: &str =
    "wsgate has `Require all granted|denied`, `ip ADDRESS ...`, `local`, `host NAME ...`, `env VAR ...`, `method NAME ...`, `expr EXPRESSION`, `valid-user` and `user NAME ...` (group, file-owner, ldap and dbm need modules wsgate does not have)";

/// `Require [not] PROVIDER ARGS…`.
pub(super) fn require(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let line = parse_line(node)?;
    attach(requirements(b, at, node)?, line, node)
}

/// `<RequireAll>`, `<RequireAny>`, `<RequireNone>`.
pub(super) fn require_section(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let section = parse_section(node)?;
    attach(requirements(b, at, node)?, section, node)
}

/// The requirements of the section being read (created empty, a "one of"
/// list, at its first line).
fn requirements<'a>(
    b: &'a mut Builder,
    at: &'a mut At<'_>,
    node: &Node,
) -> Result<&'a mut Require, ConfigError> {
    let slot = match (
        at.scope,
        at.location.as_deref_mut(),
        at.proxy,
        at.section.as_deref_mut(),
    ) {
        (Scope::Proxy, _, Some(url), _) => &mut b.balancers.get(url, &node.origin)?.draft.require,
        (_, Some(loc), _, _) => &mut loc.require,
        (_, _, _, Some(section)) => &mut section.settings.require,
        _ => {
            return Err(
                ConfigError::new(&node.origin, format!("{} not allowed here", node.name))
                    .hint("Require belongs in <Location>, <LocationMatch>, <Directory>, <Files> or <Proxy balancer://…>"),
            )
        }
    };
    Ok(slot.get_or_insert_with(|| Require {
        negate: false,
        test: Test::Section {
            all: false,
            children: Vec::new(),
        },
    }))
}

/// Adds `child` to the section `parent`, refusing what can never matter
/// there (mod_authz_core's checks, in its words).
fn attach(parent: &mut Require, child: Require, node: &Node) -> Result<(), ConfigError> {
    let Test::Section { all, children } = &mut parent.test else {
        unreachable!("requirements are added to sections only")
    };
    if child.negate && !*all {
        let what = match &child.test {
            Test::Section { .. } => "<RequireNone> directive".to_string(),
            _ => "negative Require directive".to_string(),
        };
        let parent_name = if parent.negate {
            "<RequireNone>"
        } else {
            "<RequireAny>"
        };
        return Err(ConfigError::new(
            &node.origin,
            format!("{what} has no effect in {parent_name} directive"),
        )
        .hint("a negation can only refuse: put it in a <RequireAll> with a line that grants, e.g. Require all granted"));
    }
    match child.test {
        // Associative: a section of the same kind inside adds its lines.
        Test::Section {
            all: inner_all,
            children: inner,
        } if !child.negate && inner_all == *all => children.extend(inner),
        _ => children.push(child),
    }
    Ok(())
}

fn parse_section(node: &Node) -> Result<Require, ConfigError> {
    let o = &node.origin;
    let lower = node.name.to_ascii_lowercase();
    let (all, negate) = match lower.as_str() {
        "requireall" => (true, false),
        "requireany" => (false, false),
        _ => (false, true),
    };
    let shown = format!("<{}>", node.name);
    if !node.args.is_empty() {
        return Err(ConfigError::new(
            o,
            format!("{shown} directive doesn't take additional arguments"),
        ));
    }
    let mut section = Require {
        negate,
        test: Test::Section {
            all,
            children: Vec::new(),
        },
    };
    for child in node.children.iter().flatten() {
        let parsed = if child.is("Require") && child.children.is_none() {
            parse_line(child)?
        } else if is_section(child) && child.children.is_some() {
            parse_section(child)?
        } else {
            return Err(ConfigError::new(
                &child.origin,
                format!("{} not allowed in {shown}", child.name),
            )
            .hint("an authorization section holds Require lines and <RequireAll>, <RequireAny>, <RequireNone> sections"));
        };
        attach(&mut section, parsed, child)?;
    }
    let Test::Section { children, .. } = &section.test else {
        unreachable!("built as a section above")
    };
    if children.is_empty() {
        return Err(ConfigError::new(
            o,
            format!("{shown} directive contains no authorization directives"),
        ));
    }
    if all && children.iter().all(|c| c.negate) {
        return Err(ConfigError::new(
            o,
            format!("{shown} directive contains only negative authorization directives"),
        )
        .hint("add a line that grants, e.g. Require all granted or Require ip 10.0.0.0/8"));
    }
    Ok(section)
}

fn is_section(node: &Node) -> bool {
    ["RequireAll", "RequireAny", "RequireNone"]
        .iter()
        .any(|n| node.is(n))
}

/// One `Require` line.
fn parse_line(node: &Node) -> Result<Require, ConfigError> {
    let o = &node.origin;
    let mut args = node.args.iter().map(String::as_str);
    let mut provider = args.next().unwrap_or("");
    let negate = provider.eq_ignore_ascii_case("not");
    if negate {
        provider = args.next().unwrap_or("");
    }
    let rest: Vec<&str> = args.collect();
    let test = match provider.to_ascii_lowercase().as_str() {
        "all" => match rest.as_slice() {
            [v] if v.eq_ignore_ascii_case("granted") => Test::All(true),
            [v] if v.eq_ignore_ascii_case("denied") => Test::All(false),
            _ => {
                return Err(ConfigError::new(
                    o,
                    "Argument for 'Require all' must be 'granted' or 'denied'",
                ))
            }
        },
        // Apache ignores what follows `local`.
        "local" => Test::Local,
        "ip" => {
            if rest.is_empty() {
                return Err(ConfigError::new(o, "'require ip' requires an argument")
                    .hint("e.g. Require ip 10.0.0.0/8 192.168.1 ::1"));
            }
            let subnets = rest
                .iter()
                .map(|w| {
                    subnet(w).map_err(|why| {
                        ConfigError::new(o, why).hint(
                            "write A.B.C.D, a leading part of one (10.1 is 10.1.0.0/16), A.B.C.D/BITS, A.B.C.D/NETMASK, or an IPv6 address with an optional /BITS",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Test::Ip(subnets)
        }
        "valid-user" => Test::ValidUser,
        "user" => Test::User(literal_words(o, &rest)?),
        "host" => Test::Host(host_names(o, &rest)?),
        "env" => Test::Env(rest.iter().map(|w| w.to_string()).collect()),
        "method" => Test::Method(methods(o, &rest)?),
        "expr" => Test::Expr(Box::new(expr(o, &rest)?)),
        "" => {
            return Err(
                ConfigError::new(o, "Require needs an authorization provider").hint(PROVIDERS_HINT),
            )
        }
        other => {
            return Err(
                ConfigError::new(o, format!("Unknown Authz provider: {other}"))
                    .hint(PROVIDERS_HINT),
            )
        }
    };
    Ok(Require { negate, test })
}

/// The names of `Require user`: string expressions in Apache, taken as
/// the plain names nearly every configuration writes.
fn literal_words(o: &super::Origin, rest: &[&str]) -> Result<Vec<String>, ConfigError> {
    if let Some(w) = rest.iter().find(|w| w.contains("%{")) {
        return Err(ConfigError::new(
            o,
            format!("Require: '{w}': wsgate reads user and host names as plain text, without %{{…}} variables"),
        ));
    }
    Ok(rest.iter().map(|w| w.to_string()).collect())
}

/// `Require host`'s names: a `#` starts a comment, as mod_authz_host
/// reads them (a line of only a comment grants nobody).
fn host_names(o: &super::Origin, rest: &[&str]) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    for w in literal_words(o, rest)? {
        match w.split_once('#') {
            Some((before, _)) => {
                if !before.is_empty() {
                    names.push(before.to_string());
                }
                break;
            }
            None => names.push(w),
        }
    }
    Ok(names)
}

/// The methods Apache numbers (`ap_method_number_of`); HEAD is GET.
const METHODS: &[&str] = &[
    "GET",
    "PUT",
    "POST",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "VERSION-CONTROL",
    "CHECKOUT",
    "UNCHECKOUT",
    "CHECKIN",
    "UPDATE",
    "LABEL",
    "REPORT",
    "MKWORKSPACE",
    "MKACTIVITY",
    "BASELINE-CONTROL",
    "MERGE",
];

fn methods(o: &super::Origin, rest: &[&str]) -> Result<Vec<String>, ConfigError> {
    rest.iter()
        .map(|w| match *w {
            "HEAD" => Ok("GET".to_string()),
            m if METHODS.contains(&m) => Ok(m.to_string()),
            m => Err(ConfigError::new(o, format!("Invalid Method '{m}'"))
                .hint("methods are upper case: GET, POST, PUT, DELETE, OPTIONS, …")),
        })
        .collect()
}

/// `Require expr`: the rest of the line (Apache drops the double quotes
/// around a quoted one).
fn expr(
    o: &super::Origin,
    rest: &[&str],
) -> Result<super::model::headers::expr::Cond, ConfigError> {
    let text = rest.join(" ");
    super::expr::parse_cond(&text).map_err(|e| {
        let err = ConfigError::new(o, format!("Cannot parse expression in require line: {e}"));
        if rest.len() > 1 {
            err.hint("put the whole expression in double quotes: Require expr \"%{REMOTE_ADDR} -ipmatch '10.0.0.0/8'\"")
        } else {
            err
        }
    })
}

/// An address as `apr_ipsubnet_create` reads it: a full IPv4 or IPv6
/// address with an optional `/bits` (or, for IPv4, `/netmask`), or without
/// a mask the leading octets of an IPv4 network (`10.1` or `10.1.`).
/// Errors are Apache's messages for `Require ip`.
pub fn subnet(w: &str) -> Result<Subnet, String> {
    let (addr, mask) = match w.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (w, None),
    };
    subnet_parts(addr, mask).map_err(|e| match e {
        SubnetError::NotAnAddress => format!("ip address '{w}' appears to be invalid"),
        e => format!(
            "ip address '{w}' appears to be invalid: {}",
            e.apr_message()
        ),
    })
}

/// Why `apr_ipsubnet_create` refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetError {
    /// It does not look like an address at all (APR's `EINVAL`: mod_access_compat
    /// then takes it for a host name).
    NotAnAddress,
    BadAddress,
    BadMask,
}

impl SubnetError {
    /// APR's text for the error.
    pub fn apr_message(self) -> &'static str {
        match self {
            SubnetError::NotAnAddress => "Invalid argument",
            SubnetError::BadAddress => "The specified IP address is invalid.",
            SubnetError::BadMask => "The specified network mask is invalid.",
        }
    }
}

/// `apr_ipsubnet_create(addr, mask)`.
pub fn subnet_parts(addr: &str, mask: Option<&str>) -> Result<Subnet, SubnetError> {
    let looks_like_ip = !addr.is_empty()
        && (addr.contains(':') || addr.bytes().all(|c| c == b'.' || c.is_ascii_digit()));
    if !looks_like_ip {
        return Err(SubnetError::NotAnAddress);
    }
    let (v6, addr, mut netmask) = if let Ok(a) = addr.parse::<Ipv6Addr>() {
        // APR keeps IPv4-mapped addresses out of IPv6 subnets.
        if a.to_ipv4_mapped().is_some() {
            return Err(SubnetError::BadAddress);
        }
        (true, u128::from(a), u128::MAX)
    } else if let Ok(a) = addr.parse::<Ipv4Addr>() {
        (false, u128::from(u32::from(a)), u128::from(u32::MAX))
    } else if mask.is_none() {
        let (a, m) = ipv4_network(addr).ok_or(SubnetError::BadAddress)?;
        (false, u128::from(a), u128::from(m))
    } else {
        return Err(SubnetError::BadAddress);
    };
    if let Some(mask) = mask {
        let max = if v6 { 128 } else { 32 };
        netmask = match mask.parse::<u32>() {
            Ok(bits) if bits > 0 && bits <= max => {
                let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
                all & !(all >> bits)
            }
            _ => match mask.parse::<Ipv4Addr>() {
                Ok(m) if !v6 => u128::from(u32::from(m)),
                _ => return Err(SubnetError::BadMask),
            },
        };
    }
    Ok(Subnet {
        v6,
        addr: addr & netmask,
        mask: netmask,
    })
}

/// `10`, `10.1`, `10.1.2`, each optionally ending in a dot: the network
/// and its mask.
fn ipv4_network(s: &str) -> Option<(u32, u32)> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let (mut addr, mut mask) = (0u32, 0u32);
    for (i, part) in s.split('.').enumerate() {
        if i > 3 || part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let octet: u32 = part.parse().ok().filter(|o| *o <= 255)?;
        let shift = 24 - 8 * i as u32;
        addr |= octet << shift;
        mask |= 0xff << shift;
    }
    Some((addr, mask))
}

/// `SetHandler server-status|balancer-manager|wsgate-metrics|none`.
pub(super) fn set_handler(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let value = arg(node);
    let handler = match value.to_ascii_lowercase().as_str() {
        "server-status" => Handler::ServerStatus,
        "wsgate-metrics" => Handler::Metrics,
        "none" => Handler::None,
        "balancer-manager" => Handler::BalancerManager,
        "metrics" => {
            return Err(ConfigError::new(&node.origin, "SetHandler metrics: no such handler")
                .hint("wsgate's Prometheus handler is called wsgate-metrics (inside <IfModule wsgate_module>)"))
        }
        _ => {
            return Err(ConfigError::new(
                &node.origin,
                format!("SetHandler {value}: wsgate has no handler of that name"),
            )
            .hint("wsgate's handlers are server-status, balancer-manager, wsgate-metrics (inside <IfModule wsgate_module>) and none; it proxies with ProxyPass, not SetHandler proxy:…"))
        }
    };
    if let Some(loc) = at.location.as_deref_mut() {
        loc.handler = Some(handler);
    }
    Ok(())
}

/// `ExtendedStatus On|Off`.
pub(super) fn extended_status(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    b.extended_status = values::on_off(&node.origin, "ExtendedStatus", arg(node))?;
    Ok(())
}

/// `ProxyStatus Off|On|Full`: read for the whole process (Apache's is
/// per server; wsgate's status page shows every balancer).
pub(super) fn proxy_status(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    use super::model::identity::ProxyStatus;
    let v = arg(node);
    b.proxy_status = if v.eq_ignore_ascii_case("off") {
        ProxyStatus::Off
    } else if v.eq_ignore_ascii_case("on") {
        ProxyStatus::On
    } else if v.eq_ignore_ascii_case("full") {
        ProxyStatus::Full
    } else {
        return Err(ConfigError::new(
            &node.origin,
            format!("ProxyStatus '{v}': ProxyStatus must be one of: off | on | full"),
        ));
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::subnet;

    #[test]
    fn apache_address_forms_are_read_as_apr_reads_them() {
        let net = |w: &str| {
            let s = subnet(w).unwrap();
            (s.addr as u32, s.mask as u32)
        };
        assert_eq!(net("10.1"), (0x0a01_0000, 0xffff_0000));
        assert_eq!(net("10.1."), (0x0a01_0000, 0xffff_0000));
        assert_eq!(net("10"), (0x0a00_0000, 0xff00_0000));
        assert_eq!(net("10.0.0.1/8"), (0x0a00_0000, 0xff00_0000));
        assert_eq!(net("10.0.0.0/255.0.255.0"), (0x0a00_0000, 0xff00_ff00));
        assert_eq!(net("1.2.3.4"), (0x0102_0304, 0xffff_ffff));
        let v6 = subnet("fe80::/10").unwrap();
        assert!(v6.v6 && v6.mask >> 118 == 0x3ff && v6.mask << 10 == 0);
    }

    #[test]
    fn bad_addresses_get_apaches_messages() {
        let e = |w: &str| subnet(w).unwrap_err();
        assert_eq!(e("foo"), "ip address 'foo' appears to be invalid");
        for w in [
            "300.1.1.1",
            "10.1/8",
            "1.2.3.4.5",
            "10..1",
            ".10",
            "::ffff:1.2.3.4",
        ] {
            assert!(
                e(w).ends_with("The specified IP address is invalid."),
                "{w}"
            );
        }
        for w in [
            "10.0.0.0/0",
            "10.0.0.0/33",
            "10.0.0.0/8x",
            "fe80::/129",
            "fe80::/255.0.0.0",
        ] {
            assert!(
                e(w).ends_with("The specified network mask is invalid."),
                "{w}"
            );
        }
    }
}
