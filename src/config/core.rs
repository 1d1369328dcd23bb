//! The core's directives: listeners, server names and virtual hosts,
//! `<Location>`, timeouts, limits, logs.

use std::path::Path;
use std::time::Duration;

use super::balancer::ServerKey;
use super::directives::{arg, dispatch, Scope};
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model::{Listener, Location, LocationMatcher};
use super::{model, proxy, values, At, Builder, ServerDraft};

pub(super) fn listen(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (addr, proto) = match node.args.as_slice() {
        [a] => (a, None),
        [a, p] => (a, Some(p)),
        _ => return Err(ConfigError::new(o, "Listen takes [IP:]PORT [protocol]")),
    };
    // As in Apache, the protocol names what the listener serves for
    // modules that ask; whether a connection speaks TLS follows the
    // SSLEngine of the virtual host it reaches.
    if let Some(p) = proto {
        if !p.eq_ignore_ascii_case("http") && !p.eq_ignore_ascii_case("https") {
            return Err(
                ConfigError::new(o, format!("Listen protocol '{p}' is not supported")).hint(
                    "http or https; TLS follows SSLEngine in the virtual hosts on the address",
                ),
            );
        }
    }
    let addr = values::listen_addr(o, addr)?;
    if let Some((_, first)) = b.listeners.iter().find(|(l, _)| l.addr == addr) {
        return Err(ConfigError::new(
            o,
            format!("Cannot define multiple Listeners on the same IP:port ({addr})"),
        )
        .hint(format!("{addr} is already in Listen at {first}")));
    }
    let https = match proto {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => addr.port() == 443,
    };
    b.listeners.push((Listener { addr, https }, o.clone()));
    Ok(())
}

pub(super) fn server_name(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    let host = v.split_once("://").map(|(_, h)| h).unwrap_or(v);
    let (host, _) = values::split_host_port(host);
    at.server.server_name = Some(host.to_ascii_lowercase());
    Ok(())
}

pub(super) fn server_alias(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    if node.args.is_empty() {
        return Err(ConfigError::new(
            &node.origin,
            "ServerAlias needs at least one name",
        ));
    }
    at.server
        .aliases
        .extend(node.args.iter().map(|a| a.to_ascii_lowercase()));
    Ok(())
}

pub(super) fn virtual_host(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    if node.args.is_empty() {
        return Err(
            ConfigError::new(o, "<VirtualHost> needs at least one address")
                .hint("e.g. <VirtualHost *:80>"),
        );
    }
    let mut draft = ServerDraft::new(ServerKey::Vhost(b.vhosts.len()));
    draft.addrs = node
        .args
        .iter()
        .map(|a| values::vhost_addr(o, a))
        .collect::<Result<_, _>>()?;
    draft.origin = Some(o.clone());
    let mut inner = At {
        scope: Scope::VirtualHost,
        server: &mut draft,
        location: None,
        proxy: None,
        section: None,
    };
    for child in node.children.iter().flatten() {
        let read = dispatch(b, &mut inner, child);
        b.go_on(read)?;
    }
    b.vhosts.push(draft);
    Ok(())
}

/// `<Location>` and `<LocationMatch>`.
pub(super) fn location(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let lower = node.name.to_ascii_lowercase();
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
        frames: None,
        ping: None,
        reverse: Vec::new(),
        require: None,
        auth: None,
        handler: None,
        origin: o.clone(),
        written: model::Written::default(),
        signature: None,
        error_docs: Vec::new(),
        options: None,
        error_override: Default::default(),
        rewrite: None,
    };
    {
        let mut inner = At {
            scope: if regex {
                Scope::LocationMatch
            } else {
                Scope::Location
            },
            server: &mut *at.server,
            location: Some(&mut loc),
            proxy: None,
            section: None,
        };
        for child in node.children.iter().flatten() {
            let read = dispatch(b, &mut inner, child);
            b.go_on(read)?;
        }
    }
    at.server.locations.push(loc);
    Ok(())
}

pub(super) fn timeout(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let t = values::timeout(&node.origin, "Timeout", arg(node), "s")?;
    if at.scope == Scope::Server {
        b.timeout = Some(t);
    } else {
        at.server.timeout = Some(t);
    }
    Ok(())
}

pub(super) fn keepalive(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    b.keepalive = values::on_off(&node.origin, "KeepAlive", arg(node))?;
    Ok(())
}

/// `MaxKeepAliveRequests N` (0: unlimited; Apache's default is 100).
pub(super) fn max_keepalive_requests(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let n = values::number(&node.origin, &node.name, arg(node))?;
    b.max_keepalive_requests = u32::try_from(n).unwrap_or(u32::MAX);
    Ok(())
}

pub(super) fn deflate_level(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let n = values::number(&node.origin, &node.name, arg(node))?;
    if !(1..=9).contains(&n) {
        return Err(ConfigError::new(
            &node.origin,
            "DeflateCompressionLevel must be between 1 and 9",
        ));
    }
    b.deflate_level = u32::try_from(n).unwrap_or(6);
    Ok(())
}

/// `TraceEnable On|Off` (`extended`, which lets TRACE carry a body, is
/// refused: wsgate would not read that body as Apache does).
pub(super) fn trace_enable(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    if v.eq_ignore_ascii_case("extended") {
        return Err(ConfigError::new(
            &node.origin,
            "TraceEnable extended (TRACE with a body) is not supported by wsgate",
        )
        .hint("TraceEnable On proxies TRACE without a body; Off answers it with 405"));
    }
    at.server.trace_enable = Some(values::on_off(&node.origin, "TraceEnable", v)?);
    Ok(())
}

/// `HostnameLookups Off`: wsgate never looks up client names (`%h` is
/// the address, as with Off); `On` and `Double` are refused.
pub(super) fn hostname_lookups(
    _: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    if v.eq_ignore_ascii_case("off") {
        return Ok(());
    }
    Err(ConfigError::new(
        &node.origin,
        format!("HostnameLookups {v}: wsgate does not look up client host names"),
    )
    .hint("HostnameLookups Off (Apache's default): logs and Require ip see the client's address"))
}

pub(super) fn keepalive_timeout(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    b.keepalive_timeout = values::timeout(&node.origin, "KeepAliveTimeout", arg(node), "s")?;
    Ok(())
}

/// `LimitRequestLine`, `LimitRequestFieldSize`, `LimitRequestFields`,
/// `LimitRequestBody`.
pub(super) fn limit(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let n = values::number(o, &node.name, arg(node))?;
    match node.name.to_ascii_lowercase().as_str() {
        "limitrequestline" => b.limits.request_line = bounded(o, &node.name, n, 1, 65536)?,
        "limitrequestfieldsize" => b.limits.field_size = bounded(o, &node.name, n, 1, 65536)?,
        // 0 means no limit, as in Apache.
        "limitrequestfields" if n == 0 => b.limits.fields = usize::MAX,
        "limitrequestfields" => b.limits.fields = bounded(o, &node.name, n, 1, 32767)?,
        _ => b.limits.body = n,
    }
    Ok(())
}

pub(super) fn graceful_shutdown(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let secs = values::number(&node.origin, "GracefulShutdownTimeout", arg(node))?;
    b.graceful_shutdown = Some((secs > 0).then(|| Duration::from_secs(secs)));
    Ok(())
}

pub(super) fn max_request_workers(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let n = values::number(o, &node.name, arg(node))?;
    if n == 0 {
        return Err(ConfigError::new(
            o,
            format!("{} must be at least 1", node.name),
        ));
    }
    b.max_connections = Some(n as usize);
    Ok(())
}

pub(super) fn error_log(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let (o, v) = (&node.origin, arg(node));
    if v.starts_with('|') || v.to_ascii_lowercase().starts_with("syslog") {
        return Err(ConfigError::new(
            o,
            format!("ErrorLog '{v}': piped and syslog logs are not supported"),
        )
        .hint("give a file path, or leave ErrorLog out to log to standard error"));
    }
    let path = b.root.join(v);
    directory_exists(o, "ErrorLog", &path)?;
    b.error_log = Some(path);
    Ok(())
}

pub(super) fn log_level(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    if node.args.is_empty() {
        return Err(ConfigError::new(o, "LogLevel needs a level"));
    }
    let mut level = None;
    for arg in &node.args {
        let word = arg.rsplit(':').next().unwrap_or(arg);
        let l = level_named(word).ok_or_else(|| {
            ConfigError::new(o, format!("LogLevel: '{word}' is not a level"))
                .hint("one of emerg, alert, crit, error, warn, notice, info, debug, trace1..trace8")
        })?;
        // Per-module levels apply to the whole of wsgate: keep the most
        // verbose one asked for.
        level = Some(level.map_or(l, |cur: tracing::Level| cur.max(l)));
    }
    b.log_level = level.unwrap_or(tracing::Level::WARN);
    Ok(())
}

pub(super) fn pid_file(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let path = b.root.join(arg(node));
    directory_exists(&node.origin, "PidFile", &path)?;
    b.pid_file = Some(path);
    Ok(())
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
pub(super) fn directory_exists(o: &Origin, what: &str, file: &Path) -> Result<(), ConfigError> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        // Reloading as `User`: root's folder, which the privileged opener
        // opens the file in.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
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

fn level_named(word: &str) -> Option<tracing::Level> {
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
