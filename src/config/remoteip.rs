//! mod_remoteip's PROXY protocol directives: `RemoteIPProxyProtocol On|Off`
//! and `RemoteIPProxyProtocolExceptions`. As in Apache, they are settings
//! of the whole server: `On` in a virtual host turns the protocol on for
//! that host's addresses (in the main server: every address), whichever
//! virtual host a request then selects by name.

use std::net::IpAddr;

use super::directives::{arg, Scope};
use super::error::ConfigError;
use super::lexer::Node;
use super::model::LocalAddr;
use super::{values, At, Builder};

/// `RemoteIPProxyProtocol On|Off`: Apache's two lists, kept exactly: each
/// address of the server leaves the other list (an address written the
/// same way, with a notice when an earlier host had said otherwise) and
/// joins this one unless an address there covers it already. A connection
/// is then served with the protocol when an address of the `On` list
/// covers its local address and none of the `Off` list does — so `Off` in
/// the main server turns it off everywhere.
pub(super) fn proxy_protocol(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let on = values::on_off(&node.origin, &node.name, arg(node))?;
    let addrs: Vec<LocalAddr> = if at.scope == Scope::Server {
        vec![LocalAddr { ip: None, port: 0 }]
    } else {
        at.server
            .addrs
            .iter()
            .map(|a| LocalAddr {
                ip: a.ip,
                port: a.port.unwrap_or(0),
            })
            .collect()
    };
    let settings = &mut b.proxy_protocol;
    let (add, remove) = if on {
        (&mut settings.enabled, &mut settings.disabled)
    } else {
        (&mut settings.disabled, &mut settings.enabled)
    };
    for addr in addrs {
        if let Some(i) = remove.iter().position(|a| *a == addr) {
            remove.remove(i);
            b.warnings.push(format!(
                "{}: RemoteIPProxyProtocol {} for {} overrides an earlier setting for that address",
                node.origin,
                if on { "On" } else { "Off" },
                describe(&addr)
            ));
        }
        if !add.iter().any(|a| a.covers(&addr)) {
            add.push(addr);
        }
    }
    Ok(())
}

fn describe(addr: &LocalAddr) -> String {
    let ip = addr.ip.map_or("*".to_string(), |ip| match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    });
    let port = if addr.port == 0 {
        "*".to_string()
    } else {
        addr.port.to_string()
    };
    format!("{ip}:{port}")
}

/// `RemoteIPProxyProtocolExceptions NETWORK ...`: clients from these
/// networks connect without a header (monitoring, say, beside the
/// balancer).
pub(super) fn exceptions(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    if node.args.is_empty() {
        return Err(
            ConfigError::new(o, format!("{} requires an argument", node.name))
                .hint("e.g. RemoteIPProxyProtocolExceptions 10.0.0.0/8 192.0.2.7"),
        );
    }
    for a in &node.args {
        // Apache reads these with apr_ipsubnet_create, as Require ip.
        let net = super::require::subnet(a).map_err(|why| {
            ConfigError::new(o, format!("{}: {why}", node.name))
                .hint("an address, ADDRESS/BITS or ADDRESS/NETMASK, or the leading octets of an IPv4 network (e.g. 10.0.0.0/8, 2001:db8::/32, 10.1)")
        })?;
        b.proxy_protocol.exceptions.push(net);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use std::net::SocketAddr;

    fn config(text: &str) -> crate::config::Config {
        from_str(&format!("Listen 127.0.0.1:0\n{text}"), "t.conf").unwrap()
    }

    fn on(c: &crate::config::Config, local: &str, client: &str) -> bool {
        let local: SocketAddr = local.parse().unwrap();
        c.proxy_protocol.applies(local, client.parse().unwrap())
    }

    const CLIENT: &str = "192.0.2.1:40000";

    #[test]
    fn off_unless_said() {
        let c = config("");
        assert!(!on(&c, "127.0.0.1:80", CLIENT));
    }

    #[test]
    fn the_main_server_turns_it_on_for_every_address() {
        let c = config("RemoteIPProxyProtocol On");
        assert!(on(&c, "127.0.0.1:80", CLIENT));
        assert!(on(&c, "[::1]:8443", CLIENT));
    }

    #[test]
    fn a_virtual_host_turns_it_on_for_its_addresses_only() {
        let c = config(
            "<VirtualHost *:8080>\nRemoteIPProxyProtocol On\n</VirtualHost>\n\
             <VirtualHost 127.0.0.2:9090>\nRemoteIPProxyProtocol On\n</VirtualHost>",
        );
        assert!(on(&c, "127.0.0.1:8080", CLIENT));
        assert!(on(&c, "10.0.0.1:8080", CLIENT));
        assert!(on(&c, "127.0.0.2:9090", CLIENT));
        assert!(!on(&c, "127.0.0.1:9090", CLIENT));
        assert!(!on(&c, "127.0.0.1:80", CLIENT));
    }

    #[test]
    fn off_in_a_virtual_host_wins_over_the_main_servers_on() {
        let c = config(
            "RemoteIPProxyProtocol On\n<VirtualHost *:8081>\nRemoteIPProxyProtocol Off\n</VirtualHost>",
        );
        assert!(on(&c, "127.0.0.1:8080", CLIENT));
        assert!(!on(&c, "127.0.0.1:8081", CLIENT));
    }

    #[test]
    fn off_in_the_main_server_wins_everywhere_as_in_apache() {
        let c = config(
            "<VirtualHost *:8080>\nRemoteIPProxyProtocol On\n</VirtualHost>\nRemoteIPProxyProtocol Off",
        );
        assert!(!on(&c, "127.0.0.1:8080", CLIENT));
    }

    #[test]
    fn a_later_host_on_the_same_address_overrides_with_a_warning() {
        let c = config(
            "<VirtualHost *:8080>\nServerName a\nRemoteIPProxyProtocol On\n</VirtualHost>\n\
             <VirtualHost *:8080>\nServerName b\nRemoteIPProxyProtocol Off\n</VirtualHost>",
        );
        assert!(!on(&c, "127.0.0.1:8080", CLIENT));
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("t.conf:8: RemoteIPProxyProtocol Off for *:8080 overrides")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn exceptions_are_client_networks() {
        let c = config(
            "RemoteIPProxyProtocol On\nRemoteIPProxyProtocolExceptions 10.0.0.0/8 192.0.2.7 2001:db8::/32 172.16",
        );
        assert!(!on(&c, "127.0.0.1:80", "10.1.2.3:1"));
        assert!(!on(&c, "127.0.0.1:80", "192.0.2.7:1"));
        assert!(on(&c, "127.0.0.1:80", "192.0.2.8:1"));
        assert!(!on(&c, "127.0.0.1:80", "[2001:db8::1]:1"));
        assert!(
            !on(&c, "127.0.0.1:80", "[::ffff:10.0.0.1]:1"),
            "a mapped IPv4 client"
        );
        assert!(on(&c, "127.0.0.1:80", "[2001:db9::1]:1"));
        assert!(
            !on(&c, "127.0.0.1:80", "172.16.9.9:1"),
            "Apache's partial network"
        );
    }

    #[test]
    fn wrong_values_name_the_line() {
        let err = |t: &str| {
            from_str(&format!("Listen 127.0.0.1:0\n{t}"), "t.conf")
                .unwrap_err()
                .to_string()
        };
        assert!(err("RemoteIPProxyProtocol Maybe").starts_with("t.conf:2:"));
        assert!(err("RemoteIPProxyProtocolExceptions 10.0.0.0/33")
            .contains("ip address '10.0.0.0/33' appears to be invalid"));
        assert!(err("RemoteIPProxyProtocolExceptions").contains("requires an argument"));
        assert!(err("<Location /x>\nRemoteIPProxyProtocol On\n</Location>")
            .contains("not allowed in <Location>"));
    }
}
