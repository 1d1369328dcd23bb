//! Parsers for the value types Apache's directives take: On/Off, numbers,
//! timeouts with units, addresses, target urls.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::error::{ConfigError, Origin};
use super::model::VhostAddr;
pub use crate::http::{parse_target_url, split_host_port, UrlError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
