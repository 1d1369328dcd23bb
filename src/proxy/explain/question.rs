//! The request an operator asks about, from the command line: a method, a
//! url (or a path) and header lines; where it arrives and from whom.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Asked;
use crate::config::Config;
use crate::http::{parse_target_url, RequestHead, Scheme, UrlError};

/// Where the client is unless `--explain-client` says: a documentation
/// address (RFC 5737), neither loopback nor the server's own, so that
/// `Require local` and `Require ip` answer as for a remote client.
const DEFAULT_CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50000);

/// The request asked about.
#[derive(Debug)]
pub struct Question {
    method: String,
    /// The request target (origin form: path and query).
    target: String,
    /// The url's scheme; `None` for a bare path.
    scheme: Option<Scheme>,
    /// The url's host (lower-case, IPv6 without brackets) and port.
    host: Option<(String, u16)>,
    /// `host[:port]` as a Host header carries it.
    authority: Option<String>,
    headers: Vec<(String, String)>,
    listen: Option<SocketAddr>,
    pub client: SocketAddr,
    client_given: bool,
}

impl Question {
    /// Reads `METHOD URL [Header: value…]` and the `--explain-listen` and
    /// `--explain-client` values; `Err` says what is wrong with them.
    pub fn parse(
        args: &[String],
        listen: Option<&str>,
        client: Option<&str>,
    ) -> Result<Question, String> {
        let [method, url, headers @ ..] = args else {
            return Err("--explain takes METHOD URL [Header: value ...]".into());
        };
        if method.is_empty() || !method.bytes().all(is_token) {
            return Err(format!(
                "--explain: '{method}' is not a method (GET, POST, ...)"
            ));
        }
        let mut q = Question {
            method: method.clone(),
            target: String::new(),
            scheme: None,
            host: None,
            authority: None,
            headers: Vec::new(),
            listen: None,
            client: DEFAULT_CLIENT,
            client_given: false,
        };
        q.read_url(url)?;
        for h in headers {
            let Some((name, value)) = h.split_once(':') else {
                return Err(format!(
                    "--explain: '{h}' is not a header line: write it as 'Name: value'"
                ));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(format!("--explain: '{name}' is not a header name"));
            }
            let value = value.trim();
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "--explain: the value of {name} holds a line break or NUL"
                ));
            }
            q.headers.push((name.to_string(), value.to_string()));
        }
        if let Some(l) = listen {
            q.listen = Some(l.parse().map_err(|_| {
                format!("--explain-listen: '{l}' is not an address (IP:PORT, e.g. 127.0.0.1:8080)")
            })?);
        }
        if let Some(c) = client {
            let ip: IpAddr = c
                .parse()
                .map_err(|_| format!("--explain-client: '{c}' is not an IP address"))?;
            q.client = SocketAddr::new(ip, DEFAULT_CLIENT.port());
            q.client_given = true;
        }
        Ok(q)
    }

    fn read_url(&mut self, url: &str) -> Result<(), String> {
        let url = url.split('#').next().unwrap_or(url);
        if url.starts_with('/') || url == "*" {
            self.target = url.to_string();
            return Ok(());
        }
        let parsed = parse_target_url(url).map_err(|e| match e {
            UrlError::NotAbsolute => format!(
                "--explain: '{url}' is neither a url (http://host/path, ws://…) nor a path (/path)"
            ),
            e => format!("--explain: '{url}': {}", e.describe()),
        })?;
        let target = if parsed.path.starts_with('/') {
            parsed.path.clone()
        } else {
            format!("/{}", parsed.path)
        };
        self.target = target;
        self.scheme = Some(parsed.scheme);
        self.authority = Some(parsed.authority().to_string());
        self.host = Some((parsed.host, parsed.port));
        Ok(())
    }

    /// The request as a client would send it: the url's path as its
    /// target, the url's authority as Host (else the first virtual
    /// host's name), and for a ws:// or wss:// url the handshake's
    /// `Upgrade: websocket` and `Connection: Upgrade`, unless given.
    pub fn request(&self, config: &Config) -> Asked {
        let given = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut headers = Vec::new();
        if !given("host") {
            match &self.authority {
                Some(a) => headers.push(("Host".to_string(), a.clone(), Some("from the url"))),
                None => {
                    let first = config.vhosts.first().unwrap_or(&config.main);
                    headers.push((
                        "Host".to_string(),
                        first.server_name.clone(),
                        Some("the first virtual host's name"),
                    ));
                }
            }
        }
        headers.extend(
            self.headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone(), None)),
        );
        if self.scheme.is_some_and(Scheme::is_websocket) && !given("upgrade") {
            let why = Some("a WebSocket handshake, for the ws:// url");
            headers.push(("Upgrade".to_string(), "websocket".to_string(), why));
            if !given("connection") {
                headers.push(("Connection".to_string(), "Upgrade".to_string(), why));
            }
        }
        Asked {
            method: self.method.clone(),
            target: self.target.clone(),
            headers,
        }
    }

    /// The url asks for TLS (https://, wss://).
    pub fn wants_tls(&self) -> bool {
        self.scheme.is_some_and(Scheme::is_tls)
    }

    /// The port the url names (its scheme's default without one), or for a
    /// bare path the first Listen line's.
    pub fn port(&self, config: &Config) -> u16 {
        match (&self.host, config.listeners.first()) {
            (Some((_, port)), _) => *port,
            (None, Some(l)) => l.addr.port(),
            (None, None) => 80,
        }
    }

    /// The local address the request reaches, and how that was found:
    /// `--explain-listen`, else the Listen line that takes the url's port
    /// (a Listen on port 0 takes any), its address or the url's own IP.
    pub fn arrival(&self, config: &Config) -> Option<(SocketAddr, String)> {
        if let Some(l) = self.listen {
            return Some((l, "--explain-listen".into()));
        }
        let port = self.port(config);
        let url_ip = self
            .host
            .as_ref()
            .and_then(|(h, _)| h.parse::<IpAddr>().ok());
        let takes = |l: &&crate::config::Listener| {
            let a = l.addr;
            (a.port() == port || a.port() == 0)
                && url_ip.is_none_or(|ip| a.ip().is_unspecified() || a.ip() == ip)
        };
        let listener = config.listeners.iter().find(takes)?;
        let a = listener.addr;
        let ip = match (a.ip().is_unspecified(), url_ip) {
            (false, _) => a.ip(),
            (true, Some(ip)) => ip,
            (true, None) if a.is_ipv6() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (true, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let how = if a.ip().is_unspecified() && url_ip.is_none() {
            format!("Listen {a}; the address is assumed, --explain-listen to set it")
        } else {
            format!("Listen {a}")
        };
        Some((SocketAddr::new(ip, port), how))
    }

    pub fn describe_client(&self) -> String {
        if self.client_given {
            format!("{} (--explain-client)", self.client.ip())
        } else {
            format!(
                "{} (a documentation address standing for a remote client; --explain-client to set it)",
                self.client.ip()
            )
        }
    }

    /// The name a TLS client sends by SNI: the url's host, or the Host
    /// header's name; none for an IP address (as clients do).
    pub fn sni(&self, head: &RequestHead) -> Option<String> {
        let name = match &self.host {
            Some((h, _)) => h.clone(),
            None => crate::http::host_name(head.headers.get_str("host")?),
        };
        (name.parse::<IpAddr>().is_err() && !name.is_empty()).then_some(name)
    }
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_url_gives_the_target_and_host_and_ws_urls_ask_for_an_upgrade() {
        let q = Question::parse(
            &args(&["GET", "ws://Chat.Example:8080/room?x=1#f"]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(q.target, "/room?x=1");
        assert_eq!(q.authority.as_deref(), Some("chat.example:8080"));
        let config = crate::config::from_str("Listen 127.0.0.1:8080\n", "t.conf").unwrap();
        let asked = q.request(&config);
        let names: Vec<&str> = asked.headers.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["Host", "Upgrade", "Connection"]);
        assert_eq!(
            q.arrival(&config).unwrap().0,
            "127.0.0.1:8080".parse().unwrap()
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let err = |a: &[&str]| Question::parse(&args(a), None, None).unwrap_err();
        assert!(err(&["GET"]).contains("METHOD URL"));
        assert!(err(&["G ET", "/"]).contains("not a method"));
        assert!(err(&["GET", "example.com/x"]).contains("neither a url"));
        assert!(err(&["GET", "/", "Host example"]).contains("not a header line"));
        assert!(err(&["GET", "http://a@b/"]).contains("'http://a@b/'"));
        let e = Question::parse(&args(&["GET", "/"]), Some("nope"), None).unwrap_err();
        assert!(e.contains("--explain-listen"));
    }
}
