//! mod_remoteip's client address from a request header (`RemoteIPHeader`,
//! `RemoteIPTrustedProxy`, `RemoteIPInternalProxy`, their `…List` file
//! forms and `RemoteIPProxiesHeader`), as one server's settings after the
//! merge of a virtual host over the main server.

use std::net::IpAddr;

use super::authz::Subnet;

/// A server's mod_remoteip header settings; absent when no
/// `RemoteIPHeader` applies to the server (nothing else then matters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIp {
    /// `RemoteIPHeader`: the field whose list names the client.
    pub header: String,
    /// `RemoteIPProxiesHeader`: where the trusted (not internal) proxies
    /// a request came through are written for the backend.
    pub proxies_header: Option<String>,
    /// The proxies allowed to present an address, in the order written.
    /// Empty: every peer is a trusted proxy, and none is internal (Apache's
    /// default).
    pub proxies: Vec<ProxyMatch>,
}

/// One `RemoteIPTrustedProxy` or `RemoteIPInternalProxy` network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyMatch {
    pub net: Subnet,
    /// Internal (`RemoteIPInternalProxy`): may present private addresses.
    pub internal: bool,
}

/// What a request's `RemoteIPHeader` list says, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked<'v> {
    /// The client: the leftmost address taken.
    pub client: IpAddr,
    /// What is left of the field for the backend: the entries not taken
    /// (`None`: every one was, and the field goes).
    pub rest: Option<&'v str>,
    /// The trusted, not internal, proxies passed, `, `-separated (for
    /// `RemoteIPProxiesHeader`).
    pub proxies: Option<String>,
}

impl RemoteIp {
    /// mod_remoteip's walk: from the connection's peer leftward through
    /// the field's list, taking each entry a trusted proxy presented,
    /// until a presenter is not trusted, an entry is not an address, or a
    /// proxy that is not internal presents a private one (an internal
    /// proxy presenting a trusted one makes the rest external). `None`
    /// when nothing was taken: the request keeps its peer and its field.
    /// Entries are addresses only: Apache would also look a host name up.
    pub fn walk<'v>(&self, peer: IpAddr, value: &'v str) -> Option<Walked<'v>> {
        let mut presenter = peer.to_canonical();
        let mut internal = !self.proxies.is_empty();
        let mut rest = Some(value);
        let mut client = None;
        let mut proxies: Option<String> = None;
        while let Some(remaining) = rest {
            if !self.proxies.is_empty() {
                match self.proxies.iter().find(|m| m.net.contains(presenter)) {
                    Some(m) => internal = internal && m.internal,
                    None => break,
                }
            }
            let (left, entry) = match remaining.rfind(',') {
                Some(i) => (Some(&remaining[..i]), &remaining[i + 1..]),
                None => (None, remaining),
            };
            let entry = entry.trim_matches(' ');
            // An entry refused stays, without the spaces that followed it
            // (an empty one stays whole: Apache trims nothing there).
            let refused = || match left {
                Some(_) if entry.is_empty() => Some(remaining),
                Some(_) => Some(remaining.trim_end_matches(' ')),
                None => Some(entry),
            };
            // An IPv4-mapped address is the IPv4 one (APR_IPV4_ADDR_OK).
            let Ok(ip) = entry.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
                rest = refused();
                break;
            };
            if !internal && private(ip) {
                rest = refused();
                break;
            }
            if !internal {
                let by = client.unwrap_or(presenter);
                match &mut proxies {
                    Some(list) => {
                        list.push_str(", ");
                        list.push_str(&by.to_string());
                    }
                    None => proxies = Some(by.to_string()),
                }
            }
            client = Some(ip);
            presenter = ip;
            rest = left;
        }
        Some(Walked {
            client: client?,
            rest,
            proxies,
        })
    }
}

/// Addresses a proxy that is not internal may not present: RFC 3330's
/// local and private IPv4 networks, and any IPv6 address outside global
/// unicast (2000::/3), as mod_remoteip says.
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 10
                || a == 127
                || (a == 169 && b == 254)
                || (a == 172 && b & 0xf0 == 16)
                || (a == 192 && b == 168)
        }
        IpAddr::V6(v6) => v6.segments()[0] & 0xe000 != 0x2000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::require::subnet;

    fn settings(proxies: &[(&str, bool)]) -> RemoteIp {
        RemoteIp {
            header: "X-Forwarded-For".into(),
            proxies_header: None,
            proxies: proxies
                .iter()
                .map(|(net, internal)| ProxyMatch {
                    net: subnet(net).unwrap(),
                    internal: *internal,
                })
                .collect(),
        }
    }

    /// (client, what is left of the field, the proxies passed).
    fn walk(s: &RemoteIp, value: &str) -> Option<(String, Option<String>, Option<String>)> {
        let w = s.walk("127.0.0.1".parse().unwrap(), value)?;
        Some((w.client.to_string(), w.rest.map(str::to_string), w.proxies))
    }

    fn some(
        client: &str,
        rest: Option<&str>,
        proxies: Option<&str>,
    ) -> Option<(String, Option<String>, Option<String>)> {
        Some((
            client.to_string(),
            rest.map(str::to_string),
            proxies.map(str::to_string),
        ))
    }

    #[test]
    fn without_proxies_every_peer_is_trusted_and_none_internal() {
        let s = settings(&[]);
        assert_eq!(
            walk(&s, "203.0.113.9"),
            some("203.0.113.9", None, Some("127.0.0.1"))
        );
        assert_eq!(
            walk(&s, "198.51.100.1, 203.0.113.9"),
            some("198.51.100.1", None, Some("127.0.0.1, 203.0.113.9"))
        );
        assert_eq!(
            walk(&s, "10.1.2.3"),
            None,
            "a private address from a trusted proxy"
        );
        assert_eq!(
            walk(&s, "10.0.0.1, 203.0.113.9"),
            some("203.0.113.9", Some("10.0.0.1"), Some("127.0.0.1"))
        );
    }

    #[test]
    fn private_networks_are_apaches() {
        let s = settings(&[]);
        for private in [
            "10.0.0.1",
            "127.0.0.2",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fe80::1",
            "::1",
            "fc00::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(walk(&s, private), None, "{private}");
        }
        for public in ["172.32.0.1", "8.8.8.8", "2001:db8::1", "3fff::1"] {
            assert!(walk(&s, public).is_some(), "{public}");
        }
    }

    #[test]
    fn a_mapped_ipv4_address_is_the_ipv4_one() {
        let s = settings(&[]);
        assert_eq!(
            walk(&s, "::ffff:8.8.8.8"),
            some("8.8.8.8", None, Some("127.0.0.1"))
        );
    }

    #[test]
    fn an_entry_refused_stays_without_the_spaces_after_it() {
        let s = settings(&[]);
        assert_eq!(
            walk(&s, "unknown , 203.0.113.9"),
            some("203.0.113.9", Some("unknown"), Some("127.0.0.1"))
        );
        assert_eq!(
            walk(&s, "a, unknown  , 203.0.113.9"),
            some("203.0.113.9", Some("a, unknown"), Some("127.0.0.1"))
        );
        assert_eq!(
            walk(&s, "198.51.100.1, , 203.0.113.9"),
            some("203.0.113.9", Some("198.51.100.1, "), Some("127.0.0.1"))
        );
        assert_eq!(walk(&s, "203.0.113.9:80"), None, "an address with a port");
        assert_eq!(walk(&s, "[2001:db8::1]"), None, "an address in brackets");
    }

    #[test]
    fn an_untrusted_presenter_stops_the_walk_and_keeps_the_rest_as_it_was() {
        let s = settings(&[("127.0.0.1", true), ("198.51.100.0/24", false)]);
        assert_eq!(
            walk(&s, "203.0.113.9 , 192.0.2.1"),
            some("192.0.2.1", Some("203.0.113.9 "), None)
        );
        let untrusted = settings(&[("127.0.0.2", false)]);
        assert_eq!(walk(&untrusted, "203.0.113.9"), None);
    }

    #[test]
    fn internal_proxies_present_private_addresses_until_a_trusted_one_speaks() {
        let s = settings(&[("127.0.0.1", true), ("198.51.100.0/24", false)]);
        assert_eq!(walk(&s, "10.9.9.9"), some("10.9.9.9", None, None));
        assert_eq!(
            walk(&s, "203.0.113.9, 198.51.100.7"),
            some("203.0.113.9", None, Some("198.51.100.7"))
        );
        assert_eq!(
            walk(&s, "10.0.0.5, 198.51.100.7"),
            some("198.51.100.7", Some("10.0.0.5"), None)
        );
        // An internal proxy behind a trusted one is external.
        assert_eq!(
            walk(&s, "10.0.0.6, 127.0.0.1, 198.51.100.7"),
            some("198.51.100.7", Some("10.0.0.6, 127.0.0.1"), None)
        );
    }
}
