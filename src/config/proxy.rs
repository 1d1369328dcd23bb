//! mod_proxy's directives: `ProxyPass`, `ProxyPassMatch`, their worker
//! parameters, and `ProxyPassReverse`.

use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};

use super::directives::{arg, Scope};
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model;
use super::model::{
    AddressTtl, LocationPass, PassTo, ProxyTarget, Route, RouteMatcher, Server, Target, TargetUrl,
    UpgradePolicy, WorkerParams,
};
use super::values::{self, parse_target_url};
use super::{At, Builder};

/// `ProxyPass` and `ProxyPassMatch`, in a server or in a `<Location>`.
pub(super) fn proxy_pass(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let is_match = node.is("ProxyPassMatch");
    let Some(loc) = at.location.as_deref_mut() else {
        let line = parse_pass(node, false, &mut b.warnings)?;
        let pattern = line
            .pattern
            .clone()
            .expect("a server-context ProxyPass has a path");
        let matcher = if line.regex {
            RouteMatcher::Regex(compile_regex(o, &pattern)?)
        } else {
            RouteMatcher::Prefix(pattern.into_bytes())
        };
        let target = b.target(line, node, at.server.key)?;
        at.server.routes.push(Route {
            matcher,
            target,
            origin: o.clone(),
        });
        return Ok(());
    };
    if is_match && at.scope == Scope::Location {
        return Err(ConfigError::new(
            o,
            "ProxyPassMatch inside <Location> has no regex to match with",
        )
        .hint("use <LocationMatch regex> with ProxyPassMatch, or ProxyPass inside <Location>"));
    }
    if let Some(prev) = &loc.proxy_pass {
        return Err(ConfigError::new(
            o,
            format!(
                "a <Location> holds one {}; another is at line {}",
                node.name, prev.origin.line
            ),
        ));
    }
    let line = parse_pass(node, true, &mut b.warnings)?;
    let target = b.target(line, node, at.server.key)?;
    loc.proxy_pass = Some(LocationPass {
        target,
        origin: o.clone(),
    });
    Ok(())
}

pub(super) fn proxy_pass_reverse(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    match at.location.as_deref_mut() {
        Some(loc) => {
            let super::model::LocationMatcher::Prefix(path) = &loc.matcher else {
                unreachable!("ProxyPassReverse is refused in <LocationMatch> by the table")
            };
            let path = String::from_utf8_lossy(path).into_owned();
            loc.reverse.push(parse_reverse(node, Some(&path))?);
        }
        None => at.server.reverse.push(parse_reverse(node, None)?),
    }
    Ok(())
}

/// `WsgateWebSocketPing EVERY [WAIT]` or `WsgateWebSocketPing Off`.
pub(super) fn ws_ping(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    // Kept in tenths of a second (rounded up), at most a u16 of them.
    let time = |what: &str, v: &str| -> Result<std::num::NonZeroU16, ConfigError> {
        let t = values::timeout(o, &format!("{} {what}", node.name), v, "s")?;
        u16::try_from(t.as_millis().div_ceil(100))
            .ok()
            .and_then(std::num::NonZeroU16::new)
            .ok_or_else(|| {
                ConfigError::new(
                    o,
                    format!(
                        "{} {what}: '{v}' must be more than 0 and at most 6553 s",
                        node.name
                    ),
                )
            })
    };
    let ping = match node.args.as_slice() {
        [off] if off.eq_ignore_ascii_case("off") => None,
        [every] => Some(model::WsPing {
            every_ds: time("interval", every)?,
            wait_ds: time("interval", every)?.min(DEFAULT_PING_WAIT),
        }),
        [every, wait] => Some(model::WsPing {
            every_ds: time("interval", every)?,
            wait_ds: time("wait", wait)?,
        }),
        _ => {
            return Err(ConfigError::new(o, format!("{} takes EVERY [WAIT], or Off", node.name))
                .hint("e.g. WsgateWebSocketPing 30 10: a side silent for 30 s is sent a Ping, and the tunnel closes if nothing comes from it within 10 s more"))
        }
    };
    match at.location.as_deref_mut() {
        Some(l) => l.ping = Some(ping),
        None => at.server.ping = Some(ping),
    }
    Ok(())
}

/// How long a Ping waits for its answer when `WsgateWebSocketPing` names
/// only the interval (or less, for a shorter interval).
const DEFAULT_PING_WAIT: std::num::NonZeroU16 = match std::num::NonZeroU16::new(100) {
    Some(n) => n,
    None => unreachable!(),
};

/// `ProxyPreserveHost`, `ProxyAddHeaders`, `ProxyWebsocketFallbackToProxyHttp`,
/// `WsgateWebSocketFrames`.
pub(super) fn proxy_flag(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let v = values::on_off(&node.origin, &node.name, arg(node))?;
    let lower = node.name.to_ascii_lowercase();
    match (at.location.as_deref_mut(), lower.as_str()) {
        (Some(l), "proxypreservehost") => l.preserve_host = Some(v),
        (Some(l), "proxyaddheaders") => l.add_headers = Some(v),
        (Some(l), "wsgatewebsocketframes") => l.frames = Some(v),
        (Some(l), _) => l.fallback_to_http = Some(v),
        (None, "proxypreservehost") => at.server.preserve_host = Some(v),
        (None, "proxyaddheaders") => at.server.add_headers = Some(v),
        (None, "wsgatewebsocketframes") => at.server.frames = Some(v),
        (None, _) => at.server.fallback_to_http = Some(v),
    }
    Ok(())
}

pub(super) fn proxy_timeout(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let (o, v) = (&node.origin, arg(node));
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
    at.server.proxy_timeout = Some(Duration::from_secs(secs));
    Ok(())
}

pub(super) fn proxy_requests(
    _: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    if values::on_off(&node.origin, "ProxyRequests", arg(node))? {
        return Err(ConfigError::new(
            &node.origin,
            "ProxyRequests On makes a forward proxy, which wsgate is not",
        )
        .hint("wsgate is a reverse proxy: remove the line or write ProxyRequests Off"));
    }
    Ok(())
}

/// ProxyPass or ProxyPassMatch, split into its parts.
pub struct PassLine {
    /// The path or regex; `None` inside a `<Location>`.
    pub pattern: Option<String>,
    pub regex: bool,
    /// `None` for `!`.
    pub to: Option<PassUrl>,
}

/// The url of a ProxyPass line and what it names.
pub struct PassUrl {
    /// As written (for a regex route, with its `$N` references).
    pub url: String,
    /// Whether `url` holds `$N` references to substitute.
    pub substitutes: bool,
    pub nocanon: bool,
    pub noquery: bool,
    pub dest: Dest,
}

// Built once per ProxyPass line and taken apart at once: its size is no cost.
#[allow(clippy::large_enum_variant)]
pub enum Dest {
    /// A worker of its own: its name (the url up to any `$N`), its
    /// parameters, and the url parsed when it has no `$N`.
    Worker {
        name: String,
        params: WorkerParams,
        parsed: Option<TargetUrl>,
    },
    /// A `balancer://` url, with the balancer parameters the line gives.
    Balancer { params: Vec<(String, String)> },
}

/// Parses `ProxyPass [~] [path] !|url [key=value…] [nocanon] [noquery]` and
/// `ProxyPassMatch [regex] !|url …`. `in_location` says whether the path is
/// given by the enclosing section.
pub fn parse_pass(
    node: &Node,
    in_location: bool,
    warnings: &mut Vec<String>,
) -> Result<PassLine, ConfigError> {
    let name = if node.is("ProxyPassMatch") {
        "ProxyPassMatch"
    } else {
        "ProxyPass"
    };
    let mut regex = name == "ProxyPassMatch";
    let mut args: Vec<&str> = node.args.iter().map(String::as_str).collect();
    if args.first() == Some(&"~") {
        regex = true;
        args.remove(0);
    }
    let (pattern, url, rest) = pass_arguments(node, name, &args, in_location, regex)?;
    let origin = &node.origin;

    if let Some(p) = &pattern {
        if regex {
            compile_regex(origin, p)?;
        } else if !p.starts_with('/') {
            return Err(ConfigError::new(
                origin,
                format!("{name} path '{p}' must start with '/'"),
            ));
        }
    }

    if url == "!" {
        if let Some(extra) = rest.first() {
            return Err(ConfigError::new(
                origin,
                format!("{name} ... ! takes no parameters, found '{extra}'"),
            ));
        }
        return Ok(PassLine {
            pattern,
            regex,
            to: None,
        });
    }
    let to = if url
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case("balancer://"))
    {
        balancer_pass(origin, name, url, rest, regex)?
    } else {
        worker_pass(origin, name, url, rest, regex, pattern.as_deref(), warnings)?
    };
    Ok(PassLine {
        pattern,
        regex,
        to: Some(to),
    })
}

/// A ProxyPass line's path (`None` in a `<Location>`), url and the words
/// after the url. The url is the first argument that is not a path: a path
/// starts with '/' (or is a regex); anything else in first place is the url.
fn pass_arguments<'a>(
    node: &Node,
    name: &str,
    args: &'a [&'a str],
    in_location: bool,
    regex: bool,
) -> Result<(Option<String>, &'a str, &'a [&'a str]), ConfigError> {
    Ok(if in_location {
        match args.split_first() {
            Some((url, rest)) if !url.starts_with('/') || regex => (None, *url, rest),
            Some((path, _)) => {
                return Err(ConfigError::new(
                    &node.origin,
                    format!("{name} can not have a path when defined in a location"),
                )
                .hint(format!("remove '{path}': the <Location> gives the path")))
            }
            None => return Err(needs_url(node, name)),
        }
    } else {
        match args {
            [path, url, rest @ ..] if url.contains("://") || *url == "!" || !url.contains('=') => {
                (Some(path.to_string()), *url, rest)
            }
            [path] | [path, ..] if path.starts_with('/') || regex => {
                return Err(
                    ConfigError::new(&node.origin, format!("{name} {path}: no url given")).hint(
                        format!(
                            "write {name} PATH URL [key=value ...], or {name} PATH ! to exclude it"
                        ),
                    ),
                )
            }
            [_] | [] | [_, _, ..] => {
                return Err(ConfigError::new(
                    &node.origin,
                    format!("{name} needs a path when not defined in a location"),
                )
                .hint(format!("write {name} PATH URL [key=value ...]")))
            }
        }
    })
}

/// The url of a ProxyPass to `balancer://name/…`, with the balancer
/// parameters the line gives.
fn balancer_pass(
    origin: &Origin,
    name: &str,
    url: &str,
    rest: &[&str],
    regex: bool,
) -> Result<PassUrl, ConfigError> {
    if super::balancer::split_balancer_url(url).is_none() {
        return Err(ConfigError::new(
            origin,
            format!("{name} '{url}': a balancer url needs a name"),
        )
        .hint("write balancer://NAME/"));
    }
    if regex
        && has_dollar_reference(
            url.split_once("://")
                .map_or("", |(_, r)| r)
                .split('/')
                .next()
                .unwrap_or(""),
        )
    {
        return Err(ConfigError::new(
            origin,
            format!("{name} '{url}': the balancer name cannot come from a $N reference"),
        ));
    }
    let mut params = Vec::new();
    let (nocanon, noquery) = pass_words(origin, name, rest, |key, value| {
        params.push((key.to_string(), value.to_string()));
        Ok(())
    })?;
    Ok(PassUrl {
        url: url.to_string(),
        substitutes: regex && has_dollar_reference(url),
        nocanon,
        noquery,
        dest: Dest::Balancer { params },
    })
}

/// The url of a ProxyPass to a backend, with its worker's parameters.
fn worker_pass(
    origin: &Origin,
    name: &str,
    url: &str,
    rest: &[&str],
    regex: bool,
    pattern: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<PassUrl, ConfigError> {
    if url.to_ascii_lowercase().starts_with("unix:") {
        return Err(ConfigError::new(
            origin,
            format!("{name} '{url}': unix domain sockets (unix:) are not supported"),
        )
        .hint("proxy to a TCP address such as http://127.0.0.1:PORT/"));
    }
    let substitutes = regex && has_dollar_reference(url);
    if substitutes && url.split_once("://").is_none_or(|(s, _)| s.contains('$')) {
        return Err(ConfigError::new(
            origin,
            format!("{name} '{url}': the scheme cannot come from a $N reference"),
        )
        .hint("write one ProxyPassMatch per scheme"));
    }
    // Check the url as it will look after substitution; the scheme must be
    // literal so that it is known before any request arrives.
    // `$N` may stand for a path (`/x$1`) or run on from a port
    // (`:5000$1`, S101): try it empty, then as a word.
    let probe = if substitutes {
        let empty = substitute_placeholders(url, "");
        if parse_target_url(&empty).is_ok() {
            empty
        } else {
            substitute_placeholders(url, "x")
        }
    } else {
        url.to_string()
    };
    let parsed = parse_target_url(&probe).map_err(|e| {
        let shown = mask_password(url);
        let message = match &e {
            values::UrlError::NotAbsolute => {
                format!("{name} Unable to parse URL: '{shown}': URL must be absolute")
            }
            other => format!("{name} '{shown}': {}", other.describe()),
        };
        let mut err = ConfigError::new(origin, message);
        if e == values::UrlError::UserInfo {
            err = err.hint("credentials in a backend url would be sent to whoever answers there; wsgate refuses them");
        }
        err
    })?;

    let mut params = WorkerParams::default();
    let (nocanon, noquery) = pass_words(origin, name, rest, |key, value| {
        set_worker_param(origin, name, &mut params, key, value)
    })?;
    // A host or port that comes from the request has no one address to
    // keep: looked up per connection, unless addressttl= says otherwise
    // (Apache's address_not_reusable).
    let authority_substituted = url
        .split_once("://")
        .is_some_and(|(_, rest)| rest[..rest.find('/').unwrap_or(rest.len())].contains('$'));
    if substitutes && authority_substituted && params.address_ttl.is_none() {
        params.address_ttl = Some(AddressTtl::EveryTime);
    }

    let policy = params.upgrade_policy(parsed.scheme);
    let location = pattern.unwrap_or("(location)");
    match policy {
        UpgradePolicy::Any => warnings.push(format!(
            "{origin}: {name} {location} upgrade=ANY tunnels any protocol a client asks for; not recommended in production"
        )),
        UpgradePolicy::None => warnings.push(format!(
            "{origin}: {name} {location} upgrade=NONE is not recommended in production; as in Apache 2.4.71 it tunnels only requests that ask for 'Upgrade: NONE'"
        )),
        _ => {}
    }
    if let (Some(p), false) = (pattern, regex) {
        if p.ends_with('/') != parsed.path.ends_with('/') && !parsed.path.is_empty() {
            warnings.push(format!(
                "{origin}: {name} {p} {url}: one ends with '/' and the other does not, so paths join as '{}' + rest; usually both should end with '/' or neither",
                parsed.path
            ));
        }
    }
    let worker_name = normalise_worker_name(match url.find('$') {
        Some(i) if substitutes => &url[..i],
        _ => url,
    });
    Ok(PassUrl {
        url: url.to_string(),
        substitutes,
        nocanon,
        noquery,
        dest: Dest::Worker {
            name: worker_name,
            params,
            parsed: (!substitutes).then_some(parsed),
        },
    })
}

/// A worker's name with scheme and host lower-case, as Apache compares
/// them when it looks a worker up by url prefix.
/// The words after a ProxyPass url: `nocanon`, `noquery`, and `key=value`
/// parameters handed to `param`. Returns (nocanon, noquery).
fn pass_words(
    origin: &Origin,
    name: &str,
    words: &[&str],
    mut param: impl FnMut(&str, &str) -> Result<(), ConfigError>,
) -> Result<(bool, bool), ConfigError> {
    let (mut nocanon, mut noquery) = (false, false);
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "nocanon" => nocanon = true,
            "noquery" => noquery = true,
            "interpolate" => {
                return Err(ConfigError::new(
                    origin,
                    format!("{name}: 'interpolate' is not supported by wsgate"),
                )
                .hint("ProxyPassInterpolateEnv is not implemented; write the values out"))
            }
            _ => {
                let Some((key, value)) = word.split_once('=') else {
                    return Err(ConfigError::new(
                        origin,
                        format!("Invalid {name} parameter '{word}'. Parameter must be in the form 'key=value'."),
                    ));
                };
                param(key, value)?;
            }
        }
    }
    Ok((nocanon, noquery))
}

pub fn normalise_worker_name(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                rest[..end].to_ascii_lowercase(),
                &rest[end..]
            )
        }
        None => url.to_string(),
    }
}

fn needs_url(node: &Node, name: &str) -> ConfigError {
    ConfigError::new(&node.origin, format!("{name} needs a url (or '!')"))
}

pub fn compile_regex(origin: &Origin, pattern: &str) -> Result<Regex, ConfigError> {
    // Apache compiles with "dot matches newline" since 2.4.42 (CVE-2019-10098).
    RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let mut err = ConfigError::new(
                origin,
                format!("Regular expression could not be compiled: '{pattern}'"),
            );
            if detail.contains("look-around") || detail.contains("backreference") {
                err = err.hint("wsgate uses Rust's regex dialect, which has no look-around or backreferences inside a pattern");
            } else if let Some(last) = detail.lines().rev().find(|l| l.starts_with("error:")) {
                err = err.hint(last.trim_start_matches("error:").trim().to_string());
            }
            err
        })
}

fn has_dollar_reference(url: &str) -> bool {
    let bytes = url.as_bytes();
    bytes
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

/// `$N` replaced by `with`, to check a template.
fn substitute_placeholders(url: &str, with: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut chars = url.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            chars.next();
            out.push_str(with);
        } else {
            out.push(c);
        }
    }
    out
}

/// The balancer's parameters: valid on a balancer:// ProxyPass only.
const BALANCER_KEYS: &[&str] = &[
    "lbmethod",
    "maxattempts",
    "nofailover",
    "stickysession",
    "stickysessionsep",
    "scolonpathdelim",
    "failonstatus",
    "failontimeout",
    "nonce",
    "growth",
    "forcerecovery",
];

const WORKER_KEYS: &[&str] = &[
    "upgrade",
    "timeout",
    "connectiontimeout",
    "keepalive",
    "disablereuse",
    "enablereuse",
    "retry",
    "max",
    "min",
    "smax",
    "ttl",
    "acquire",
    "loadfactor",
    "route",
    "redirect",
    "lbset",
    "status",
    "ping",
    "flushpackets",
    "flushwait",
    "iobuffersize",
    "receivebuffersize",
    "responsefieldsize",
    "secret",
    "addressttl",
    "hcmethod",
    "hcinterval",
    "hcpasses",
    "hcfails",
    "hcuri",
    "hcexpr",
    "hctemplate",
];

/// One `key=value` worker parameter, validated as Apache validates it.
pub fn set_worker_param(
    origin: &Origin,
    directive: &str,
    params: &mut WorkerParams,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let key_lower = key.to_ascii_lowercase();
    let err = |msg: String| ConfigError::new(origin, msg);
    let whole = |what: &str| -> Result<u64, ConfigError> { values::number(origin, what, value) };
    match key_lower.as_str() {
        "upgrade" => {
            if value.len() > 15 {
                return Err(err(format!("{directive} upgrade={value}: the protocol name must be shorter than 16 characters")));
            }
            params.upgrade = Some(value.to_string());
        }
        "timeout" => {
            let secs = value.parse::<u64>().map_err(|_| {
                let e = err(format!("{directive} timeout='{value}': timeout takes whole seconds"));
                if value.starts_with(|c: char| c.is_ascii_digit()) {
                    e.hint(format!("Apache reads 'timeout={value}' as {} seconds; write whole seconds, or use connectiontimeout= (which takes ms) for connects", value.trim_end_matches(|c: char| !c.is_ascii_digit())))
                } else {
                    e
                }
            })?;
            if secs < 1 {
                return Err(err(format!("{directive} Timeout must be at least one second")));
            }
            params.timeout = Some(Duration::from_secs(secs));
        }
        "connectiontimeout" => {
            let t = values::timeout(origin, "connectiontimeout", value, "s")?;
            if t < Duration::from_millis(1) {
                return Err(err(format!("{directive} Connectiontimeout must be at least one millisecond")));
            }
            params.connection_timeout = Some(t);
        }
        "ping" | "acquire" => {
            let unit = if key_lower == "ping" { "s" } else { "ms" };
            let t = values::timeout(origin, &key_lower, value, unit)?;
            if key_lower == "acquire" {
                params.acquire = Some(t);
            }
        }
        "keepalive" | "disablereuse" | "enablereuse" => {
            let on = values::on_off(origin, &format!("{directive} {key}="), value)?;
            match key_lower.as_str() {
                "keepalive" => params.keepalive = on,
                "disablereuse" => params.disable_reuse = on,
                _ => params.disable_reuse = !on,
            }
        }
        "retry" => {
            let secs = value.parse::<i64>().map_err(|_| err(format!("{directive} retry='{value}' is not a number of seconds")))?;
            if secs < 0 {
                return Err(err(format!("{directive} retry={value}: must be 0 or more seconds")));
            }
            params.retry = Duration::from_secs(secs.unsigned_abs());
        }
        "max" => params.max = Some(whole("max")? as usize),
        "addressttl" => {
            let bad = || {
                err(format!("{directive} addressttl={value}: AddressTTL must be -1 or a number of seconds not exceeding 2147483647"))
                    .hint("-1 keeps the resolved address until the next start or reload, 0 resolves for every connection, N re-resolves after N seconds")
            };
            params.address_ttl = Some(if value == "-1" {
                AddressTtl::Forever
            } else {
                let t = values::timeout(origin, "addressttl", value, "s").map_err(|_| bad())?;
                if t.subsec_nanos() != 0 || t > Duration::from_secs(i32::MAX as u64) {
                    return Err(bad());
                }
                if t.is_zero() {
                    AddressTtl::EveryTime
                } else {
                    AddressTtl::For(t)
                }
            });
        }
        "ttl" => {
            let secs = whole("ttl")?;
            if secs < 1 {
                return Err(err("TTL must be at least one second".into()));
            }
            params.ttl = Some(Duration::from_secs(secs));
        }
        "mapping" => {
            return Err(err(format!("{directive} mapping='{value}' is not supported by wsgate"))
                .hint("leave mapping= out: wsgate matches the decoded, normalised path as Apache does by default"))
        }
        "hcmethod" | "hcinterval" | "hcpasses" | "hcfails" | "hcuri" | "hcexpr" | "hctemplate" => {
            return Err(err(format!("{directive} {key}=: health checks (mod_proxy_hcheck) are for balancer members"))
                .hint("put hc* parameters on a BalancerMember inside <Proxy balancer://…>"))
        }
        k if VALIDATED_ONLY.contains(&k) => return validate_only(origin, directive, k, value),
        k if BALANCER_KEYS.contains(&k) => {
            return Err(err(format!("{directive} {key}= is a balancer parameter; it applies only to a balancer:// url")))
        }
        _ => {
            let mut e = err(format!("{directive} unknown Worker parameter '{key}'"));
            if let Some(n) = super::error::nearest(key, WORKER_KEYS.iter().copied()) {
                e = e.hint(format!("did you mean '{n}='?"));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Parameters wsgate validates as Apache does but that change nothing on
/// a worker (`loadfactor`, `route`, `redirect`, `lbset` and `status` take
/// effect on a `BalancerMember`, which reads them again).
const VALIDATED_ONLY: &[&str] = &[
    "min",
    "smax",
    "flushwait",
    "iobuffersize",
    "secret",
    "receivebuffersize",
    "responsefieldsize",
    "loadfactor",
    "route",
    "redirect",
    "lbset",
    "status",
    "flushpackets",
];

/// Checks one of [`VALIDATED_ONLY`].
fn validate_only(
    origin: &Origin,
    directive: &str,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let err = |msg: &str| ConfigError::new(origin, msg);
    let whole = |what: &str| -> Result<u64, ConfigError> { values::number(origin, what, value) };
    let problem = match key {
        "min" | "smax" | "flushwait" | "iobuffersize" => whole(key).err(),
        "receivebuffersize" => {
            let n = whole(key)?;
            (n != 0 && n < 512)
                .then(|| err("ReceiveBufferSize must be >= 512 bytes, or 0 for system default."))
        }
        "responsefieldsize" => {
            (whole(key)? == 0).then(|| err("ResponseFieldSize must be greater than 0 bytes"))
        }
        "loadfactor" => {
            let f: Option<f64> = value.parse().ok();
            (!f.is_some_and(|f| (1.0..=100.0).contains(&f))).then(|| {
                err(&format!(
                    "{directive} loadfactor={value}: LoadFactor must be a number between 1..100"
                ))
            })
        }
        "route" => (value.len() >= 64).then(|| err("Route length must be < 64 characters")),
        "redirect" => (value.len() >= 64).then(|| err("Redirect length must be < 64 characters")),
        "lbset" => (whole(key)? > 99).then(|| err("lbset must be between 0 and 99")),
        // Only validated here; BalancerMember gives the flags their effect.
        "status" => value
            .chars()
            .find(|c| !"+-DSIHRENC".contains(c.to_ascii_uppercase()))
            .map(|c| {
                err(&format!(
                    "{directive} Unknown status parameter option '{c}'"
                ))
                .hint("status letters are D, S, I, H, R, E, N and C, each after + or -")
            }),
        "flushpackets" => (!["on", "off", "auto"].contains(&value.to_ascii_lowercase().as_str()))
            .then(|| err("flushpackets must be on|off|auto")),
        _ => None,
    };
    problem.map_or(Ok(()), Err)
}

/// `ProxyPassReverse path url` (or `url` alone inside a Location).
pub fn parse_reverse(
    node: &Node,
    location_path: Option<&str>,
) -> Result<super::model::ReverseRule, ConfigError> {
    let args: Vec<&str> = node.args.iter().map(String::as_str).collect();
    let (path, url) = match (location_path, args.as_slice()) {
        (Some(loc), [url]) => (loc.to_string(), *url),
        (Some(_), _) => {
            return Err(ConfigError::new(
                &node.origin,
                "ProxyPassReverse takes only a url when defined in a location",
            ))
        }
        (None, [path, url]) => (path.to_string(), *url),
        (None, _) => {
            return Err(
                ConfigError::new(&node.origin, "ProxyPassReverse needs a path and a url")
                    .hint("write ProxyPassReverse /path/ http://backend/path/"),
            )
        }
    };
    if url.eq_ignore_ascii_case("interpolate") || args.len() > 2 {
        return Err(ConfigError::new(
            &node.origin,
            "ProxyPassReverse: 'interpolate' is not supported by wsgate",
        ));
    }
    Ok(super::model::ReverseRule {
        path,
        url: url.to_string(),
        kind: super::model::ReverseKind::Url,
    })
}

/// A url with the password of any `user:password@` replaced, for messages.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// What `-t` says of routes that trip operators: a ProxyPass no request can
/// reach because an earlier one takes all of its paths (Apache uses the
/// first that matches), and a Socket.IO path on a balancer of several
/// members without `stickysession` (its long-polling requests must reach
/// the member that holds the session).
pub(super) fn route_warnings(
    servers: &[&Server],
    workers: &[super::model::Worker],
    balancers: &[super::model::balancer::Balancer],
    warnings: &mut Vec<String>,
) {
    let mut said = std::collections::HashSet::new();
    for server in servers {
        for (j, later) in server.routes.iter().enumerate() {
            let RouteMatcher::Prefix(q) = &later.matcher else {
                continue;
            };
            let shadow = server.routes[..j]
                .iter()
                .find_map(|earlier| match &earlier.matcher {
                    RouteMatcher::Prefix(p) if takes_all_of(p, q) => Some((p, &earlier.origin)),
                    _ => None,
                });
            if let Some((p, at)) = shadow {
                if said.insert((later.origin.to_string(), "shadowed")) {
                    warnings.push(format!(
                        "{}: ProxyPass {} is never used: the ProxyPass {} at {at} comes first and takes every path it would (Apache uses the first that matches); put the longer path first",
                        later.origin,
                        String::from_utf8_lossy(q),
                        String::from_utf8_lossy(p),
                    ));
                }
            }
            if let Target::Proxy(ProxyTarget {
                url,
                to: PassTo::Worker { worker, .. },
                ..
            }) = &later.target
            {
                let websocket = url.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("ws"));
                let params = workers.get(worker.0).map(|w| &w.params);
                let backend = params
                    .and_then(|p| p.timeout)
                    .or(server.settings.proxy_timeout)
                    .unwrap_or(server.timeout);
                // A tunnel idle for the larger of the two is closed.
                let idle = backend.max(server.timeout);
                if websocket && idle < HEARTBEAT && said.insert((later.origin.to_string(), "idle"))
                {
                    warnings.push(format!(
                        "{}: WebSocket tunnels of ProxyPass {} are closed after {} s without a byte (the larger of Timeout and timeout=/ProxyTimeout): Socket.IO pings every 25 s and many clients every 30 s, so idle connections would be cut between heartbeats; raise it (e.g. ProxyTimeout 120) or have clients ping more often",
                        later.origin,
                        String::from_utf8_lossy(q),
                        idle.as_secs_f64()
                    ));
                }
            }
            let Target::Proxy(ProxyTarget {
                to: PassTo::Balancer(b),
                ..
            }) = &later.target
            else {
                continue;
            };
            let Some(balancer) = balancers.get(b.0) else {
                continue;
            };
            let socket_io = String::from_utf8_lossy(q).contains("/socket.io");
            if socket_io
                && balancer.members.len() > 1
                && balancer.sticky.is_none()
                && said.insert((later.origin.to_string(), "socket.io"))
            {
                warnings.push(format!(
                    "{}: ProxyPass {} sends Socket.IO to {}, whose {} members are not sticky: its long-polling requests must reach the member that holds the session; add stickysession (e.g. ProxySet stickysession=ROUTEID, with a ROUTEID cookie set by Header add Set-Cookie) or have clients use the websocket transport only",
                    later.origin,
                    String::from_utf8_lossy(q),
                    balancer.name,
                    balancer.members.len()
                ));
            }
        }
    }
}

/// Heartbeats common among WebSocket clients are every 25 s (Socket.IO)
/// or 30 s: an idle timeout under this cuts connections between them.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Whether every path the prefix `later` matches is matched by `earlier`
/// too (prefixes match at a path segment boundary).
fn takes_all_of(earlier: &[u8], later: &[u8]) -> bool {
    later.starts_with(earlier)
        && (earlier.ends_with(b"/") || later.len() == earlier.len() || later[earlier.len()] == b'/')
}
