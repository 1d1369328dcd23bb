//! Parsers for the value types Apache's directives take: On/Off, numbers,
//! timeouts with units, addresses, target urls.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::error::{ConfigError, Origin};
use super::model::{Scheme, VhostAddr};

pub fn on_off(origin: &Origin, directive: &str, value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(ConfigError::new(
            origin,
            format!("{directive} must be On or Off, not '{value}'"),
        ))
    }
}

/// A whole, non-negative number.
pub fn number(origin: &Origin, what: &str, value: &str) -> Result<u64, ConfigError> {
    value.parse::<u64>().map_err(|_| {
        ConfigError::new(
            origin,
            format!("{what} must be a whole number, not '{value}'"),
        )
    })
}

/// A time as `ap_timeout_parameter_parse` reads it: a number with an optional
/// unit `ms`, `s`, `mi` or `h`; without a unit, `default_unit`.
pub fn timeout(
    origin: &Origin,
    what: &str,
    value: &str,
    default_unit: &str,
) -> Result<Duration, ConfigError> {
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(digits_end);
    let bad = || {
        ConfigError::new(origin, format!("{what}: '{value}' is not a time"))
            .hint("write a whole number, optionally followed by ms, s, mi or h (e.g. 500ms, 30s)")
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = if unit.is_empty() { default_unit } else { unit };
    match unit.to_ascii_lowercase().as_str() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "mi" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(bad()),
    }
}

/// `Listen [IP:]port [protocol]`.
pub fn listen_addr(origin: &Origin, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    value.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(origin, format!("Listen: '{value}' is not [IP:]PORT"))
            .hint("e.g. Listen 8080, Listen 127.0.0.1:8080 or Listen [::1]:8080")
    })
}

/// One address of `<VirtualHost addr[:port] …>`.
pub fn vhost_addr(origin: &Origin, value: &str) -> Result<VhostAddr, ConfigError> {
    let (host, port) = split_host_port(value);
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            ConfigError::new(origin, format!("<VirtualHost>: bad port in '{value}'"))
        })?),
    };
    let ip = match host {
        "*" | "_default_" => None,
        h => Some(
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| {
                    ConfigError::new(
                        origin,
                        format!("<VirtualHost>: '{host}' is not an IP address or *"),
                    )
                    .hint("wsgate does not resolve names here; write <VirtualHost *:PORT> and select by ServerName")
                })?,
        ),
    };
    Ok(VhostAddr { ip, port })
}

/// Splits `host:port` where host may be a bracketed IPv6 literal.
pub fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        if let Some(end) = value.find(']') {
            let rest = &value[end + 1..];
            return (&value[..=end], rest.strip_prefix(':'));
        }
        return (value, None);
    }
    match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (value, None),
    }
}

/// A backend url, split and canonicalised (scheme and host lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub scheme: Scheme,
    /// Host as written, lower-case; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Everything after the authority, possibly empty.
    pub path: String,
    /// `host` or `host:port` as a Host header carries it, made once here
    /// rather than per request.
    authority: String,
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

impl TargetUrl {
    /// `host` or `host:port` as the Host header carries it (default port left out).
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum UrlError {
    NotAbsolute,
    Scheme(String),
    NoHost,
    UserInfo,
    Port,
}

impl UrlError {
    pub fn describe(&self) -> String {
        match self {
            UrlError::NotAbsolute => "url must be absolute (scheme://host[:port]/path)".into(),
            UrlError::Scheme(s) => {
                format!("scheme '{s}' is not one wsgate proxies to (http, https, ws, wss)")
            }
            UrlError::NoHost => "url has no host".into(),
            UrlError::UserInfo => {
                "url holds user information ('user@'), which wsgate refuses".into()
            }
            UrlError::Port => "url has a bad port (a number from 1 to 65535)".into(),
        }
    }
}

pub fn parse_target_url(url: &str) -> Result<TargetUrl, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAbsolute)?;
    let scheme = Scheme::parse(scheme).ok_or_else(|| UrlError::Scheme(scheme.to_string()))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_host_port(authority);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:~%".contains(&b))
    {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => p.parse::<u16>().map_err(|_| UrlError::Port)?,
    };
    if port == 0 {
        return Err(UrlError::Port);
    }
    let host = host.to_ascii_lowercase();
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let authority = if port == scheme.default_port() {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(TargetUrl {
        scheme,
        host,
        port,
        path: path.to_string(),
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        let u = parse_target_url("WS://Example.COM:9080/a/b?x").unwrap();
        assert_eq!(u.scheme, Scheme::Ws);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 9080);
        assert_eq!(u.path, "/a/b?x");
        assert_eq!(u.authority(), "example.com:9080");
        let u = parse_target_url("https://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 443, ""));
        assert_eq!(u.authority(), "[::1]");
        assert_eq!(parse_target_url("/x"), Err(UrlError::NotAbsolute));
        assert_eq!(parse_target_url("http:///x"), Err(UrlError::NoHost));
        assert_eq!(parse_target_url("http://:80/x"), Err(UrlError::NoHost));
        assert_eq!(parse_target_url("http://a:1@b:2/"), Err(UrlError::UserInfo));
        assert!(matches!(
            parse_target_url("ftp://h/"),
            Err(UrlError::Scheme(_))
        ));
    }

    #[test]
    fn timeouts_with_units() {
        let o = Origin {
            file: std::sync::Arc::new("t".into()),
            line: 1,
        };
        assert_eq!(
            timeout(&o, "x", "500ms", "s").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(timeout(&o, "x", "3", "s").unwrap(), Duration::from_secs(3));
        assert_eq!(
            timeout(&o, "x", "2mi", "s").unwrap(),
            Duration::from_secs(120)
        );
        assert!(timeout(&o, "x", "abc", "s").is_err());
        assert!(timeout(&o, "x", "5parsecs", "s").is_err());
    }
}
