//! mod_proxy directives about what a proxied exchange carries besides the
//! request and answer: `ProxyVia`, `ProxyPassReverse`'s cookie forms,
//! `ProxyErrorOverride` and `ProxySourceAddress`.

use super::directives::arg;
use super::error::ConfigError;
use super::lexer::Node;
use super::model::proxy_answers::{ErrorOverride, Via};
use super::model::{ReverseKind, ReverseRule};
use super::{At, Builder};

/// `ProxyVia Off|On|Full|Block`, a server's setting.
pub(super) fn via(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let v = match arg(node).to_ascii_lowercase().as_str() {
        "off" => Via::Off,
        "on" => Via::On,
        "full" => Via::Full,
        "block" => Via::Block,
        _ => {
            return Err(ConfigError::new(
                &node.origin,
                "ProxyVia must be one of: off | on | full | block",
            )
            .hint("Off (the default) passes a client's Via as it came"))
        }
    };
    at.server.via = Some(v);
    Ok(())
}

/// `ProxyPassReverseCookiePath BACKEND CLIENT` and
/// `ProxyPassReverseCookieDomain BACKEND CLIENT`: rules that go with the
/// server's or the `<Location>`'s `ProxyPassReverse` ones, in order.
pub(super) fn cookie(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let (fake, real) = match node.args.as_slice() {
        [fake, real] => (fake, real),
        [_, _, _] => {
            return Err(ConfigError::new(
                o,
                format!(
                    "{}: 'interpolate' needs ProxyPassInterpolateEnv, which wsgate does not have",
                    node.name
                ),
            )
            .hint("write the values out, or use one rule per virtual host"))
        }
        _ => {
            return Err(
                ConfigError::new(o, format!("{} takes two or three arguments", node.name))
                    .hint(format!("e.g. {} backend.internal example.com", node.name)),
            )
        }
    };
    let kind = if node.is("ProxyPassReverseCookiePath") {
        ReverseKind::CookiePath
    } else {
        ReverseKind::CookieDomain
    };
    let rule = ReverseRule {
        path: real.clone(),
        url: fake.clone(),
        kind,
    };
    match at.location.as_deref_mut() {
        Some(loc) => loc.reverse.push(rule),
        None => at.server.reverse.push(rule),
    }
    Ok(())
}

/// `ProxyErrorOverride On|Off [CODE ...]` (codes after `On` only, each a
/// 4xx or 5xx), at server level or in a `<Location>`.
pub(super) fn error_override(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let level: &mut ErrorOverride = match at.location.as_deref_mut() {
        Some(loc) => &mut loc.error_override,
        None => &mut at.server.error_override,
    };
    let mut args = node.args.iter();
    let on = match args.next().map(|a| a.to_ascii_lowercase()).as_deref() {
        Some("on") => true,
        Some("off") => false,
        _ => {
            return Err(ConfigError::new(
                o,
                "ProxyErrorOverride first parameter must be one of: off | on",
            )
            .hint("e.g. ProxyErrorOverride On 502 503"))
        }
    };
    level.on = Some(on);
    for a in args {
        if !a.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(ConfigError::new(
                o,
                "ProxyErrorOverride: status codes to intercept must be numeric",
            ));
        }
        if !on {
            return Err(ConfigError::new(
                o,
                "ProxyErrorOverride: status codes must follow a value of 'on'",
            ));
        }
        let digits: String = a.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u16>() {
            Ok(code) if (400..600).contains(&code) => level.codes.push(code),
            _ => return Err(ConfigError::new(
                o,
                "ProxyErrorOverride: status codes to intercept must be valid HTTP Status Codes >=400 && <600",
            )),
        }
    }
    Ok(())
}

/// `ProxySourceAddress ADDRESS`: a server's backend connections are made
/// from this local address (a host name: its first address).
pub(super) fn source_address(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let a = arg(node);
    let ip = a.parse::<std::net::IpAddr>().ok().or_else(|| {
        std::net::ToSocketAddrs::to_socket_addrs(&(a, 0))
            .ok()
            .and_then(|mut found| found.next())
            .map(|s| s.ip())
    });
    match ip {
        Some(ip) => {
            at.server.source_address = Some(ip);
            Ok(())
        }
        None => Err(
            ConfigError::new(&node.origin, "ProxySourceAddress invalid value")
                .hint("a local address of this machine, e.g. ProxySourceAddress 192.0.2.10"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use crate::config::model::proxy_answers::Via;

    #[test]
    fn via_is_a_servers_setting_inherited_by_vhosts() {
        let c = from_str(
            "Listen 127.0.0.1:0\nProxyVia full\n<VirtualHost *:80>\nServerName a\n</VirtualHost>\n\
             <VirtualHost *:80>\nServerName b\nProxyVia Block\n</VirtualHost>",
            "t.conf",
        )
        .unwrap();
        assert_eq!(c.main.settings.via, Via::Full);
        assert_eq!(c.vhosts[0].settings.via, Via::Full);
        assert_eq!(c.vhosts[1].settings.via, Via::Block);
        let off = from_str("Listen 127.0.0.1:0", "t.conf").unwrap();
        assert_eq!(off.main.settings.via, Via::Off);
    }

    #[test]
    fn a_wrong_via_names_the_line() {
        let err = |t: &str| {
            from_str(&format!("Listen 127.0.0.1:0\n{t}"), "t.conf")
                .unwrap_err()
                .to_string()
        };
        assert!(err("ProxyVia maybe")
            .starts_with("t.conf:2: ProxyVia must be one of: off | on | full | block"));
        assert!(
            err("<Location /x>\nProxyVia On\n</Location>").contains("not allowed in <Location>")
        );
    }

    #[test]
    fn error_override_levels_merge_as_apache() {
        use crate::config::model::proxy_answers::ErrorOverride;
        let c = from_str(
            "Listen 127.0.0.1:0\nProxyErrorOverride On 502\n\
             <VirtualHost *:80>\nServerName a\nProxyErrorOverride On 404\n\
             <Location /x>\nProxyErrorOverride Off\n</Location>\n</VirtualHost>",
            "t.conf",
        )
        .unwrap();
        let main = &c.main.settings.error_override;
        assert_eq!((main.on, main.codes.clone()), (Some(true), vec![502]));
        let vhost = &c.vhosts[0].settings.error_override;
        assert_eq!(vhost.codes, vec![502, 404]);
        let loc = &c.vhosts[0].locations[0].error_override;
        assert!(ErrorOverride::replaces([vhost].into_iter(), 404));
        assert!(!ErrorOverride::replaces([vhost].into_iter(), 500));
        assert!(!ErrorOverride::replaces([vhost, loc].into_iter(), 404));
        let all = ErrorOverride {
            on: Some(true),
            codes: vec![],
        };
        assert!(ErrorOverride::replaces([&all].into_iter(), 400));
        assert!(ErrorOverride::replaces([&all].into_iter(), 599));
        assert!(!ErrorOverride::replaces([&all].into_iter(), 399));
        assert!(!ErrorOverride::replaces([&all].into_iter(), 600));
    }

    #[test]
    fn wrong_error_overrides_say_what_apache_says() {
        let err = |t: &str| {
            from_str(&format!("Listen 127.0.0.1:0\n{t}"), "t.conf")
                .unwrap_err()
                .to_string()
        };
        assert!(err("ProxyErrorOverride Maybe")
            .starts_with("t.conf:2: ProxyErrorOverride first parameter must be one of: off | on"));
        assert!(err("ProxyErrorOverride On x404").contains("must be numeric"));
        assert!(err("ProxyErrorOverride Off 404").contains("must follow a value of 'on'"));
        assert!(err("ProxyErrorOverride On 302").contains(">=400 && <600"));
    }

    #[test]
    fn cookie_rules_need_two_values() {
        let err = |t: &str| {
            from_str(&format!("Listen 127.0.0.1:0\n{t}"), "t.conf")
                .unwrap_err()
                .to_string()
        };
        assert!(err("ProxyPassReverseCookiePath /a").contains("takes two or three arguments"));
        assert!(err("ProxyPassReverseCookieDomain a b interpolate")
            .contains("needs ProxyPassInterpolateEnv"));
        let c = from_str(
            "Listen 127.0.0.1:0\nProxyPassReverseCookieDomain backend www\n<Location /x>\nProxyPassReverseCookiePath /a /b\n</Location>",
            "t.conf",
        )
        .unwrap();
        assert_eq!(c.main.reverse[0].url, "backend");
        assert_eq!(c.main.reverse[0].path, "www");
        assert_eq!(c.main.locations[0].reverse[0].url, "/a");
    }

    #[test]
    fn source_address_is_a_servers_inherited_by_vhosts() {
        let c = from_str(
            "Listen 127.0.0.1:0\nProxySourceAddress 127.0.0.2\n\
             <VirtualHost *:80>\nServerName a\nProxySourceAddress ::1\n</VirtualHost>\n\
             <VirtualHost *:80>\nServerName b\n</VirtualHost>",
            "t.conf",
        )
        .unwrap();
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(c.main.settings.source_address, ip("127.0.0.2"));
        assert_eq!(c.vhosts[0].settings.source_address, ip("::1"));
        assert_eq!(c.vhosts[1].settings.source_address, ip("127.0.0.2"));
        let err = from_str(
            "Listen 127.0.0.1:0\nProxySourceAddress no.such.host.invalid",
            "t.conf",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("t.conf:2: ProxySourceAddress invalid value"),
            "{err}"
        );
    }
}
