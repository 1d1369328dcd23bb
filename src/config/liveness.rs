//! wsgate's liveness directives (extensions: Apache has none, so they sit
//! inside `<IfModule wsgate_module>`): TCP keepalive probing and
//! `TCP_USER_TIMEOUT` on the client and the backend side of a server's
//! connections. Apache's own `keepalive=On` worker parameter (mod_proxy)
//! turns on `SO_KEEPALIVE` with the system's timings; these set the timings,
//! so that a dead peer of an idle tunnel is found in seconds rather than
//! after two hours.

use std::time::Duration;

use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model::{KeepAliveProbes, Liveness, TcpLiveness};
use super::{values, At, Builder};

/// Linux's limits: `TCP_KEEPIDLE` and `TCP_KEEPINTVL` are at most 32767
/// seconds, `TCP_KEEPCNT` at most 127 probes.
const MAX_KEEPALIVE_SECS: u64 = 32767;
const MAX_KEEPALIVE_PROBES: u32 = 127;

/// What one server says, before merging with the main server's: `None`
/// inherits, `Some(None)` is `Off`.
#[derive(Debug, Default, Clone)]
pub struct LivenessDraft {
    client_keepalive: Option<Option<KeepAliveProbes>>,
    backend_keepalive: Option<Option<KeepAliveProbes>>,
    client_user_timeout: Option<Option<Duration>>,
    backend_user_timeout: Option<Option<Duration>>,
}

impl LivenessDraft {
    /// Merged over the main server's: a vhost inherits what it does not set.
    pub fn resolve(&self, main: &LivenessDraft) -> Liveness {
        Liveness {
            client: TcpLiveness {
                keepalive: self.client_keepalive.or(main.client_keepalive).flatten(),
                user_timeout: self
                    .client_user_timeout
                    .or(main.client_user_timeout)
                    .flatten(),
            },
            backend: TcpLiveness {
                keepalive: self.backend_keepalive.or(main.backend_keepalive).flatten(),
                user_timeout: self
                    .backend_user_timeout
                    .or(main.backend_user_timeout)
                    .flatten(),
            },
        }
    }
}

/// Which sockets a directive sets: its optional first word.
#[derive(Clone, Copy)]
struct Sides {
    client: bool,
    backend: bool,
}

fn sides(args: &[String]) -> (Sides, &[String]) {
    match args.first().map(|a| a.to_ascii_lowercase()) {
        Some(a) if a == "client" => (
            Sides {
                client: true,
                backend: false,
            },
            &args[1..],
        ),
        Some(a) if a == "backend" => (
            Sides {
                client: false,
                backend: true,
            },
            &args[1..],
        ),
        _ => (
            Sides {
                client: true,
                backend: true,
            },
            args,
        ),
    }
}

/// `WsgateTCPKeepAlive [client|backend] IDLE INTERVAL COUNT` or
/// `WsgateTCPKeepAlive [client|backend] Off`.
pub(super) fn tcp_keepalive(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (sides, rest) = sides(&node.args);
    let probes = match rest {
        [off] if off.eq_ignore_ascii_case("off") => None,
        [idle, interval, count] => Some(KeepAliveProbes {
            idle: whole_seconds(o, "idle time", idle)?,
            interval: whole_seconds(o, "interval", interval)?,
            count: probe_count(o, count)?,
        }),
        _ => {
            return Err(ConfigError::new(
                o,
                format!(
                    "{} takes [client|backend] IDLE INTERVAL COUNT, or [client|backend] Off",
                    node.name
                ),
            )
            .hint("e.g. WsgateTCPKeepAlive 30 10 3: the first probe after 30 s of silence, then every 10 s, the connection closed after 3 unanswered"))
        }
    };
    let draft = &mut at.server.liveness;
    if sides.client {
        draft.client_keepalive = Some(probes);
    }
    if sides.backend {
        draft.backend_keepalive = Some(probes);
    }
    Ok(())
}

/// `WsgateTCPUserTimeout [client|backend] TIME` (`0` or `Off`: the
/// system's behaviour).
pub(super) fn tcp_user_timeout(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (sides, rest) = sides(&node.args);
    let [value] = rest else {
        return Err(ConfigError::new(
            o,
            format!("{} takes [client|backend] TIME", node.name),
        )
        .hint("e.g. WsgateTCPUserTimeout 30s: a connection whose sent data stays unacknowledged (or whose peer's window stays shut) for 30 s is closed"));
    };
    let timeout = if value.eq_ignore_ascii_case("off") {
        None
    } else {
        let t = values::timeout(o, &node.name, value, "s")?;
        // The kernel takes milliseconds in an unsigned int.
        if t.as_millis() > u128::from(i32::MAX as u32) {
            return Err(ConfigError::new(
                o,
                format!("{}: '{value}' is longer than Linux allows", node.name),
            ));
        }
        Some(t).filter(|t| !t.is_zero())
    };
    let draft = &mut at.server.liveness;
    if sides.client {
        draft.client_user_timeout = Some(timeout);
    }
    if sides.backend {
        draft.backend_user_timeout = Some(timeout);
    }
    Ok(())
}

/// A keepalive time: the kernel counts these in whole seconds, from 1.
fn whole_seconds(o: &Origin, what: &str, value: &str) -> Result<Duration, ConfigError> {
    let t = values::timeout(o, &format!("WsgateTCPKeepAlive {what}"), value, "s")?;
    if t.subsec_nanos() != 0 || t.as_secs() == 0 || t.as_secs() > MAX_KEEPALIVE_SECS {
        return Err(ConfigError::new(
            o,
            format!("WsgateTCPKeepAlive {what}: '{value}' is not a whole number of seconds from 1 to {MAX_KEEPALIVE_SECS}"),
        ));
    }
    Ok(t)
}

fn probe_count(o: &Origin, value: &str) -> Result<u32, ConfigError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_KEEPALIVE_PROBES).contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                o,
                format!("WsgateTCPKeepAlive count: '{value}' is not a number of probes from 1 to {MAX_KEEPALIVE_PROBES}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use crate::config::{from_str, Liveness};
    use std::time::Duration;

    fn liveness(text: &str) -> (Liveness, Vec<Liveness>) {
        let c = from_str(&format!("Listen 127.0.0.1:0\n{text}"), "t.conf").unwrap();
        (
            c.main.liveness,
            c.vhosts.iter().map(|v| v.liveness).collect(),
        )
    }

    fn error(text: &str) -> String {
        from_str(&format!("Listen 127.0.0.1:0\n{text}"), "t.conf")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn nothing_set_leaves_the_system_alone() {
        let (main, _) = liveness("");
        assert_eq!(main, Liveness::default());
    }

    #[test]
    fn keepalive_without_a_side_sets_both() {
        let (main, _) = liveness("WsgateTCPKeepAlive 30 10 3\nWsgateTCPUserTimeout 20s");
        for side in [main.client, main.backend] {
            let k = side.keepalive.unwrap();
            assert_eq!(
                (k.idle, k.interval, k.count),
                (Duration::from_secs(30), Duration::from_secs(10), 3)
            );
            assert_eq!(side.user_timeout, Some(Duration::from_secs(20)));
        }
    }

    #[test]
    fn a_side_sets_only_that_side() {
        let (main, _) =
            liveness("WsgateTCPKeepAlive backend 60 5 4\nWsgateTCPUserTimeout client 1500ms");
        assert!(main.client.keepalive.is_none());
        assert_eq!(main.backend.keepalive.unwrap().count, 4);
        assert_eq!(main.client.user_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(main.backend.user_timeout, None);
    }

    #[test]
    fn a_vhost_inherits_and_may_turn_off() {
        let (main, vhosts) = liveness(
            "WsgateTCPKeepAlive 30 10 3\nWsgateTCPUserTimeout 20\n\
             <VirtualHost *:80>\nServerName a\nWsgateTCPKeepAlive client off\nWsgateTCPUserTimeout backend 0\n</VirtualHost>\n\
             <VirtualHost *:80>\nServerName b\n</VirtualHost>",
        );
        assert!(vhosts[0].client.keepalive.is_none());
        assert_eq!(vhosts[0].backend.keepalive, main.backend.keepalive);
        assert_eq!(vhosts[0].client.user_timeout, Some(Duration::from_secs(20)));
        assert_eq!(vhosts[0].backend.user_timeout, None);
        assert_eq!(vhosts[1], main);
    }

    #[test]
    fn wrong_values_name_the_line_and_the_rule() {
        assert!(error("WsgateTCPKeepAlive 30 10").contains("t.conf:2: WsgateTCPKeepAlive takes"));
        assert!(error("WsgateTCPKeepAlive 0 10 3").contains("idle time: '0' is not a whole number"));
        assert!(error("WsgateTCPKeepAlive 30 1500ms 3").contains("interval: '1500ms'"));
        assert!(error("WsgateTCPKeepAlive 30 10 200").contains("count: '200'"));
        assert!(error("WsgateTCPKeepAlive sideways 30 10 3").contains("takes"));
        assert!(error("WsgateTCPUserTimeout soon").contains("'soon' is not a time"));
        assert!(error("WsgateTCPUserTimeout client").contains("takes [client|backend] TIME"));
        assert!(error("<Location /x>\nWsgateTCPUserTimeout 5\n</Location>")
            .contains("not allowed in <Location>"));
    }
}
