//! mod_remoteip: the client address from a request header
//! (`RemoteIPHeader` and the proxies trusted to present it), and the PROXY
//! protocol directives, `RemoteIPProxyProtocol On|Off` and
//! `RemoteIPProxyProtocolExceptions`. The header settings are a server's
//! (a virtual host's own replace the main server's); the PROXY protocol
//! ones, as in Apache, are settings of the whole server: `On` in a virtual host turns the protocol on for
//! that host's addresses (in the main server: every address), whichever
//! virtual host a request then selects by name.

use std::net::IpAddr;

use super::directives::{arg, Scope};
use super::error::ConfigError;
use super::lexer::Node;
use super::model::authz::Subnet;
use super::model::remote_ip::{ProxyMatch, RemoteIp};
use super::model::LocalAddr;
use super::require::SubnetError;
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

/// A server's header settings as written, before the merge over the main
/// server's: a virtual host's header names replace the main server's, its
/// proxies go before the main server's.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderDraft {
    header: Option<String>,
    proxies_header: Option<String>,
    proxies: Option<Vec<ProxyMatch>>,
}

impl HeaderDraft {
    /// The server's settings: its own over `main`'s; `None` without a
    /// `RemoteIPHeader`.
    pub(crate) fn resolve(&self, main: &HeaderDraft) -> Option<RemoteIp> {
        let header = self.header.as_ref().or(main.header.as_ref())?;
        Some(RemoteIp {
            header: header.clone(),
            proxies_header: self
                .proxies_header
                .as_ref()
                .or(main.proxies_header.as_ref())
                .cloned(),
            // Debian's 2.4.71 merges the lists (AH10633), the virtual
            // host's first: the first network that holds a proxy says
            // whether it is internal.
            proxies: self
                .proxies
                .iter()
                .chain(&main.proxies)
                .flatten()
                .copied()
                .collect(),
        })
    }
}

/// `RemoteIPHeader NAME` and `RemoteIPProxiesHeader NAME`.
pub(super) fn header(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let name = arg(node).to_string();
    let draft = &mut at.server.remote_ip;
    if node.is("RemoteIPHeader") {
        draft.header = Some(name);
    } else {
        draft.proxies_header = Some(name);
    }
    Ok(())
}

/// `RemoteIPTrustedProxy ADDRESS ...` and `RemoteIPInternalProxy ADDRESS
/// ...`: addresses, networks or host names (each of its addresses).
pub(super) fn proxies(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    if node.args.is_empty() {
        return Err(
            ConfigError::new(o, format!("{} requires at least one argument", node.name))
                .hint(format!("e.g. {} 10.0.0.0/8 192.0.2.7", node.name)),
        );
    }
    let internal = node.name.to_ascii_lowercase().contains("internal");
    let list = at.server.remote_ip.proxies.get_or_insert_with(Vec::new);
    for a in &node.args {
        let nets = proxy_nets(a, &node.name).map_err(|why| {
            ConfigError::new(o, why).hint("an address, ADDRESS/BITS or ADDRESS/NETMASK, or a host name (e.g. 10.0.0.0/8, 2001:db8::/32, proxy.example)")
        })?;
        list.extend(nets.into_iter().map(|net| ProxyMatch { net, internal }));
    }
    Ok(())
}

/// `RemoteIPTrustedProxyList FILE` and `RemoteIPInternalProxyList FILE`:
/// the same addresses, read from a file relative to the server root,
/// words on lines, `#` starting a comment.
pub(super) fn proxy_list(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let path = b.root.join(arg(node));
    let text = super::source::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            o,
            format!("{}: Could not open file {}: {e}", node.name, path.display()),
        )
    })?;
    let internal = node.name.to_ascii_lowercase().contains("internal");
    let file = std::sync::Arc::new(path);
    let list = at.server.remote_ip.proxies.get_or_insert_with(Vec::new);
    for (i, line) in text.lines().enumerate() {
        let here = super::error::Origin {
            file: file.clone(),
            line: i + 1,
        };
        let words = super::lexer::split_args(line, &here)?;
        for w in words.iter().take_while(|w| !w.starts_with('#')) {
            let nets = proxy_nets(w, &node.name)
                .map_err(|why| ConfigError::new(&here, format!("{why} (read for {o})")))?;
            list.extend(nets.into_iter().map(|net| ProxyMatch { net, internal }));
        }
    }
    Ok(())
}

/// One proxy argument, as mod_remoteip reads it: an address or network
/// as `Require ip` takes one, else a host name, each of whose addresses
/// counts (resolved once, at startup and reload).
fn proxy_nets(arg: &str, directive: &str) -> Result<Vec<Subnet>, String> {
    let (ip, mask) = match arg.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (arg, None),
    };
    match super::require::subnet_parts(ip, mask) {
        Ok(net) => return Ok(vec![net]),
        Err(SubnetError::NotAnAddress) => {}
        Err(e) => {
            return Err(format!(
                "RemoteIP: Error parsing IP {arg} ({}) for {directive}",
                e.apr_message()
            ))
        }
    }
    if let Some(mask) = mask {
        return Err(format!(
            "RemoteIP: Error parsing IP {arg} the subnet /{mask} is invalid for {directive}"
        ));
    }
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(ip, 0))
        .map_err(|e| format!("RemoteIP: Error parsing IP {arg} ({e}) for {directive}"))?;
    let mut nets = Vec::new();
    for a in addrs {
        let text = a.ip().to_canonical().to_string();
        let net = super::require::subnet_parts(&text, None).map_err(|e| {
            format!(
                "RemoteIP: Error parsing IP {arg} ({}) for {directive}",
                e.apr_message()
            )
        })?;
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(nets)
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

    #[test]
    fn the_header_settings_are_a_servers_over_the_main_ones() {
        let c = config(
            "RemoteIPHeader X-Real-IP\nRemoteIPInternalProxy 127.0.0.1 10.0.0.0/8\n\
             <VirtualHost *:80>\nServerName a\nRemoteIPHeader X-Client\nRemoteIPTrustedProxy 192.0.2.1\nRemoteIPProxiesHeader X-By\n</VirtualHost>\n\
             <VirtualHost *:80>\nServerName b\n</VirtualHost>",
        );
        let main = c.main.remote_ip.as_ref().unwrap();
        assert_eq!(main.header, "X-Real-IP");
        assert_eq!(main.proxies.len(), 2);
        assert!(main.proxies.iter().all(|p| p.internal));
        let a = c.vhosts[0].remote_ip.as_ref().unwrap();
        assert_eq!(a.header, "X-Client");
        assert_eq!(a.proxies_header.as_deref(), Some("X-By"));
        // The vhost's own first, then the main server's (Debian's 2.4.71).
        assert_eq!(a.proxies.len(), 3);
        assert!(!a.proxies[0].internal && a.proxies[1].internal);
        let b = c.vhosts[1].remote_ip.as_ref().unwrap();
        assert_eq!(b, main);
    }

    #[test]
    fn no_header_no_settings() {
        let c = config("RemoteIPTrustedProxy 192.0.2.1");
        assert!(c.main.remote_ip.is_none());
    }

    #[test]
    fn host_names_are_their_addresses() {
        let c = config("RemoteIPHeader X-Forwarded-For\nRemoteIPTrustedProxy localhost");
        let s = c.main.remote_ip.unwrap();
        assert!(s
            .proxies
            .iter()
            .any(|p| p.net.contains("127.0.0.1".parse().unwrap())));
    }

    #[test]
    fn proxy_lists_are_read_from_files() {
        let dir = std::env::temp_dir().join(format!("wsgate-remoteip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("proxies.txt");
        std::fs::write(
            &list,
            "# balancers\n192.0.2.1 192.0.2.2 # the pair\n\n2001:db8::/32\n",
        )
        .unwrap();
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "192.0.2.1\n10.0.0.0/40\n").unwrap();
        let c = config(&format!(
            "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxyList {}",
            list.display()
        ));
        let s = c.main.remote_ip.unwrap();
        assert_eq!(s.proxies.len(), 3);
        assert!(s.proxies.iter().all(|p| p.internal));
        let err = from_str(
            &format!(
                "Listen 127.0.0.1:0\nRemoteIPTrustedProxyList {}",
                bad.display()
            ),
            "t.conf",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!(
                "{}:2: RemoteIP: Error parsing IP 10.0.0.0/40",
                bad.display()
            )),
            "{err}"
        );
        assert!(err.contains("(read for t.conf:2)"), "{err}");
        let missing = from_str(
            "Listen 127.0.0.1:0\nRemoteIPTrustedProxyList /nonexistent/x",
            "t.conf",
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing.starts_with(
                "t.conf:2: RemoteIPTrustedProxyList: Could not open file /nonexistent/x"
            ),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_proxies_name_the_line() {
        let err = |t: &str| {
            from_str(&format!("Listen 127.0.0.1:0\n{t}"), "t.conf")
                .unwrap_err()
                .to_string()
        };
        assert!(err("RemoteIPTrustedProxy 10.0.0.0/33").starts_with(
            "t.conf:2: RemoteIP: Error parsing IP 10.0.0.0/33 (The specified network mask is invalid.) for RemoteIPTrustedProxy"
        ));
        assert!(err("RemoteIPInternalProxy proxy.example/8").starts_with(
            "t.conf:2: RemoteIP: Error parsing IP proxy.example/8 the subnet /8 is invalid for RemoteIPInternalProxy"
        ));
        assert!(err("RemoteIPInternalProxy").contains("requires at least one argument"));
        assert!(err("RemoteIPHeader").starts_with("t.conf:2:"));
        assert!(
            err("<Location /x>\nRemoteIPHeader X-Forwarded-For\n</Location>")
                .contains("not allowed in <Location>")
        );
    }
}
