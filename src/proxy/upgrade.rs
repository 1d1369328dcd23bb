//! Whether a request is forwarded as a protocol upgrade, with which Upgrade
//! value, and what a backend's 101 must say (S44–S52, S57–S60). Pure.

use crate::config::UpgradePolicy;
use crate::http::Scheme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'a> {
    /// Proxy as plain HTTP; the client's Upgrade header is dropped.
    Plain,
    /// Forward as an upgrade with `Upgrade: send`.
    Upgrade { send: &'a str },
    /// Legacy mode, value not accepted: answer 426 offering this protocol.
    Refuse { offer: &'a str },
}

/// Decides for a request whose client sent `client_value` as its (merged)
/// Upgrade header. `legacy` is `ProxyWebsocketFallbackToProxyHttp Off`, which
/// only concerns ws:// and wss:// targets. An HTTP/1.0 request never
/// upgrades (RFC 9110 §7.8: a server must ignore Upgrade in HTTP/1.0).
pub fn plan<'a>(
    policy: &'a UpgradePolicy,
    scheme: Scheme,
    client_value: Option<&'a str>,
    legacy: bool,
    http10: bool,
) -> Plan<'a> {
    let Some(value) = client_value.filter(|_| !http10) else {
        return Plan::Plain;
    };
    let legacy = legacy && scheme.is_websocket();
    let accepted = accepts(policy, value);
    if !legacy {
        return if accepted {
            Plan::Upgrade { send: value }
        } else {
            Plan::Plain
        };
    }
    // Legacy mod_proxy_wstunnel sends the configured protocol, not the
    // client's spelling (S60).
    let configured = match policy {
        UpgradePolicy::List { raw, .. } => raw.as_str(),
        UpgradePolicy::Any => "*",
        UpgradePolicy::WebSocket | UpgradePolicy::None | UpgradePolicy::Never => "WebSocket",
    };
    if accepted {
        Plan::Upgrade { send: configured }
    } else {
        Plan::Refuse {
            offer: match policy {
                UpgradePolicy::None => "NONE",
                _ => configured,
            },
        }
    }
}

/// S46/S47: whether the worker tunnels a client asking for `value`.
pub fn accepts(policy: &UpgradePolicy, value: &str) -> bool {
    match policy {
        UpgradePolicy::Never => false,
        UpgradePolicy::WebSocket => value.eq_ignore_ascii_case("websocket"),
        UpgradePolicy::Any => true,
        UpgradePolicy::None => value.eq_ignore_ascii_case("NONE"),
        UpgradePolicy::List { raw, tokens } => {
            value.eq_ignore_ascii_case(raw)
                || tokens.iter().any(|t| {
                    value.len() >= t.len()
                        && value.as_bytes()[..t.len()].eq_ignore_ascii_case(t.as_bytes())
                })
        }
    }
}

/// S51a: a 101 must name, as a whole and in any case, the protocol asked for.
/// `*` (legacy upgrade=ANY) accepts whatever the backend chose.
pub fn switch_matches(sent: &str, answered: Option<&str>) -> bool {
    match answered {
        Some(a) => sent == "*" || a.trim().eq_ignore_ascii_case(sent.trim()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy that lives as long as the test (plans borrow from it).
    fn list(raw: &str) -> &'static UpgradePolicy {
        Box::leak(Box::new(
            crate::config::WorkerParams {
                upgrade: Some(raw.into()),
                ..Default::default()
            }
            .upgrade_policy(Scheme::Http),
        ))
    }

    #[test]
    fn websocket_default_needs_the_exact_value() {
        let p = UpgradePolicy::WebSocket;
        for ok in ["websocket", "WebSocket", "WEBSOCKET"] {
            assert!(accepts(&p, ok), "{ok}");
        }
        for no in ["websocket, foo", "websocketx", "websocket, websocket", ""] {
            assert!(!accepts(&p, no), "{no}");
        }
    }

    #[test]
    fn explicit_lists_accept_prefixes() {
        let p = list("websocket");
        for ok in ["websocketx", "websocket, h2c", "Websocket/13", "WEBSOCKET"] {
            assert!(accepts(p, ok), "{ok}");
        }
        let p = list("foo,websocket");
        assert!(accepts(p, "foo"));
        assert!(accepts(p, "websocket"));
        assert!(!accepts(p, "fo"));
        assert!(accepts(list("FOO"), "foo"));
    }

    #[test]
    fn any_none_and_http_without_upgrade() {
        assert!(accepts(list("ANY"), "whatever"));
        assert!(accepts(list("NONE"), "NONE"));
        assert!(!accepts(list("NONE"), "websocket"));
        assert!(!accepts(&UpgradePolicy::Never, "websocket"));
    }

    #[test]
    fn fallback_on_forwards_the_clients_spelling() {
        let p = plan(
            &UpgradePolicy::WebSocket,
            Scheme::Ws,
            Some("WebSocket"),
            false,
            false,
        );
        assert_eq!(p, Plan::Upgrade { send: "WebSocket" });
        let p = plan(
            list("websocket"),
            Scheme::Http,
            Some("Websocket/13"),
            false,
            false,
        );
        assert_eq!(
            p,
            Plan::Upgrade {
                send: "Websocket/13"
            }
        );
        assert_eq!(
            plan(
                &UpgradePolicy::WebSocket,
                Scheme::Ws,
                Some("h2c"),
                false,
                false
            ),
            Plan::Plain
        );
        assert_eq!(
            plan(&UpgradePolicy::WebSocket, Scheme::Ws, None, false, false),
            Plan::Plain
        );
    }

    #[test]
    fn legacy_mode_sends_the_configured_protocol_or_refuses() {
        let p = plan(
            &UpgradePolicy::WebSocket,
            Scheme::Ws,
            Some("websocket"),
            true,
            false,
        );
        assert_eq!(p, Plan::Upgrade { send: "WebSocket" });
        let p = plan(list("ANY"), Scheme::Ws, Some("foo"), true, false);
        assert_eq!(p, Plan::Upgrade { send: "*" });
        let p = plan(
            &UpgradePolicy::WebSocket,
            Scheme::Ws,
            Some("foo"),
            true,
            false,
        );
        assert_eq!(p, Plan::Refuse { offer: "WebSocket" });
        let p = plan(list("NONE"), Scheme::Ws, Some("websocket"), true, false);
        assert_eq!(p, Plan::Refuse { offer: "NONE" });
        // Legacy mode concerns ws:// targets only.
        let p = plan(list("foo"), Scheme::Http, Some("bar"), true, false);
        assert_eq!(p, Plan::Plain);
    }

    #[test]
    fn http10_never_upgrades() {
        assert_eq!(
            plan(
                &UpgradePolicy::WebSocket,
                Scheme::Ws,
                Some("websocket"),
                false,
                true
            ),
            Plan::Plain
        );
    }

    #[test]
    fn switch_must_name_the_protocol() {
        assert!(switch_matches("WebSocket", Some("websocket")));
        assert!(!switch_matches("WebSocket", Some("foo")));
        assert!(!switch_matches("WebSocket", None));
        assert!(switch_matches("*", Some("foo")));
    }
}
