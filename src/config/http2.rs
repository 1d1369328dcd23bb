//! `Protocols` (the core's, since Apache 2.4.17) and mod_http2's
//! directives: which protocols a server offers clients, and its HTTP/2
//! settings.

use super::directives::arg;
use super::error::ConfigError;
use super::lexer::Node;
use super::model::Http2;
use super::{values, At, Builder};

/// What one server says before merging with the main server's.
#[derive(Debug, Default, Clone)]
pub struct Http2Draft {
    h2: Option<bool>,
    h2c: Option<bool>,
    websockets: Option<bool>,
    max_streams: Option<u32>,
    window: Option<u32>,
    stream_timeout: Option<std::time::Duration>,
}

impl Http2Draft {
    /// Merged over the main server's (a vhost inherits what it does not
    /// set), with mod_http2's defaults.
    pub fn resolve(&self, main: &Http2Draft) -> Http2 {
        Http2 {
            enabled: self.h2.or(main.h2).unwrap_or(false),
            cleartext: self.h2c.or(main.h2c).unwrap_or(false),
            websockets: self.websockets.or(main.websockets).unwrap_or(false),
            max_streams: self.max_streams.or(main.max_streams).unwrap_or(100),
            window: self.window.or(main.window).unwrap_or(65535),
            stream_timeout: self.stream_timeout.or(main.stream_timeout),
        }
    }
}

/// `Protocols h2 h2c http/1.1`: HTTP/2 by ALPN on TLS when `h2` is
/// listed; on a connection without TLS, with prior knowledge, when `h2c`
/// is.
pub(super) fn protocols(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (mut h2, mut h2c) = (false, false);
    for p in &node.args {
        match p.to_ascii_lowercase().as_str() {
            "h2" => h2 = true,
            "h2c" => h2c = true,
            "http/1.1" => {}
            _ => {
                return Err(
                    ConfigError::new(o, format!("Protocols: unknown protocol '{p}'"))
                        .hint("wsgate offers h2, h2c and http/1.1"),
                )
            }
        }
    }
    if node.args.is_empty() {
        return Err(ConfigError::new(o, "Protocols needs at least one protocol")
            .hint("e.g. Protocols h2 http/1.1"));
    }
    at.server.http2.h2 = Some(h2);
    at.server.http2.h2c = Some(h2c);
    Ok(())
}

/// `H2WebSockets`, `H2MaxSessionStreams`, `H2WindowSize`, `H2StreamTimeout`.
pub(super) fn h2_setting(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let value = arg(node);
    let draft = &mut at.server.http2;
    let number = |max: u32| -> Result<u32, ConfigError> {
        value
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1 && *n <= max)
            .ok_or_else(|| {
                ConfigError::new(
                    o,
                    format!("{}: '{value}' is not a number from 1 to {max}", node.name),
                )
            })
    };
    match node.name.to_ascii_lowercase().as_str() {
        "h2websockets" => draft.websockets = Some(values::on_off(o, &node.name, value)?),
        "h2maxsessionstreams" => draft.max_streams = Some(number(u32::MAX)?),
        "h2streamtimeout" => {
            draft.stream_timeout = Some(values::timeout(o, &node.name, value, "s")?)
        }
        _ => draft.window = Some(number(i32::MAX as u32)?),
    }
    Ok(())
}
