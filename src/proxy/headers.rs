//! The heads wsgate writes: toward the backend (S36–S43, S50) and back to
//! the client (S51, S52, S79, S80). Pure functions from heads to bytes.

use std::io::Write as _;
use std::net::IpAddr;

use crate::config::{ReverseKind, ReverseRule};
use crate::http::write::{push, push_date, push_decimal};
use crate::http::{FieldValue, HeaderFields, Headers, RequestHead, ResponseHead, Text};

/// Removed from requests in addition to whatever `Connection` names (S37).
const REQUEST_HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "host",
];

/// Removed from responses in addition to whatever `Connection` names (S79).
const RESPONSE_HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
];

/// The header names listed in `Connection` (tokens split on `,` and `;`),
/// held without allocating for the usual handful.
struct Listed<'a> {
    inline: [&'a [u8]; 4],
    len: usize,
    more: Vec<&'a [u8]>,
}

impl<'a> Listed<'a> {
    fn of(headers: &'a Headers) -> Listed<'a> {
        let mut listed = Listed {
            inline: [&[]; 4],
            len: 0,
            more: Vec::new(),
        };
        let tokens = headers
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b',' || b == b';'))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        for token in tokens {
            match listed.inline.get_mut(listed.len) {
                Some(slot) => {
                    *slot = token;
                    listed.len += 1;
                }
                None => listed.more.push(token),
            }
        }
        listed
    }

    fn contains(&self, name: &str) -> bool {
        self.inline[..self.len]
            .iter()
            .chain(&self.more)
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Whether `name` is one of `fixed` (lowercase), compared without
/// allocating: this runs per field, so names of another length cost one
/// comparison each.
fn named_in(name: &str, fixed: &[&str]) -> bool {
    fixed
        .iter()
        .any(|h| h.len() == name.len() && h.eq_ignore_ascii_case(name))
}

/// Whether a field called `name` is dropped: hop-by-hop by name, or named
/// in `Connection`.
fn hop_by_hop(name: &str, fixed: &[&str], listed: &Listed<'_>) -> bool {
    named_in(name, fixed) || (listed.len > 0 && listed.contains(name))
}

/// A deliberate fault, compiled in only with the `mutant` feature: the
/// conformance suite must notice a wsgate that forgets X-Forwarded-Host
/// (its mutation control). Never in a build that is shipped.
const MUTANT: bool = cfg!(feature = "mutant");

/// Facts about the request's connection that the forwarded head carries.
pub struct Forwarding<'a> {
    pub client_ip: IpAddr,
    /// `Some(server name)` when `ProxyAddHeaders On`.
    pub add_headers: Option<&'a str>,
    /// The Host header to send.
    pub host: &'a str,
    pub body: BodyHeader,
    pub connection: ConnectionHeader<'a>,
    /// Whether to keep a client's `Expect: 100-continue`.
    pub keep_expect: bool,
    /// `ProxyVia`: what becomes of the request's `Via`.
    pub via: ViaHeader<'a>,
}

/// The request's `Via` toward the backend (`ProxyVia`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaHeader<'a> {
    /// As the client sent it (`Off`).
    Pass,
    /// Removed (`Block`).
    Block,
    /// This proxy joins the list (`On`, `Full`): merged into the client's
    /// field, or a new one before the X-Forwarded-* fields.
    Add(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHeader {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader<'a> {
    KeepAlive,
    Close,
    Upgrade(&'a str),
    /// Legacy mod_proxy_wstunnel writes `Upgrade` before `Connection`.
    UpgradeLegacy(&'a str),
}

/// The request head sent to the backend, in Apache's order (S36).
pub fn backend_request(head: &RequestHead, path_and_query: &str, f: &Forwarding<'_>) -> Vec<u8> {
    let listed = Listed::of(&head.headers);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(f.host.as_bytes());
    out.extend_from_slice(b"\r\n");

    let client_ip = IpText::new(f.client_ip.to_canonical());
    let client_ip = client_ip.as_bytes();
    let original_host = head.headers.get("host");
    let mut added_for = false;
    let mut added_host = false;
    let mut added_server = false;
    let mut added_via = false;
    for (name, value) in &head.headers.fields {
        if hop_by_hop(name, REQUEST_HOP_BY_HOP, &listed) {
            continue;
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("expect") && !(f.keep_expect && value.eq_ignore_ascii_case(b"100-continue")) {
            continue;
        }
        let merged: Option<&[u8]> = match (f.add_headers, f.via) {
            (_, ViaHeader::Block) if is("via") => continue,
            (_, ViaHeader::Add(via)) if is("via") => {
                added_via = true;
                Some(via)
            }
            (Some(_), _) if is("x-forwarded-for") => {
                added_for = true;
                Some(client_ip)
            }
            (Some(_), _) if is("x-forwarded-host") => {
                added_host = true;
                original_host
            }
            (Some(server), _) if is("x-forwarded-server") => {
                added_server = true;
                Some(server.as_bytes())
            }
            _ => None,
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        if let Some(extra) = merged {
            out.extend_from_slice(b", ");
            out.extend_from_slice(extra);
        }
        out.extend_from_slice(b"\r\n");
    }
    // mod_proxy merges Via before the X-Forwarded-* fields.
    if let (ViaHeader::Add(via), false) = (f.via, added_via) {
        push(&mut out, "Via", via);
    }
    if let Some(server) = f.add_headers {
        if !added_for {
            push(&mut out, "X-Forwarded-For", client_ip);
        }
        if let (false, Some(h), false) = (added_host, original_host, MUTANT) {
            push(&mut out, "X-Forwarded-Host", h);
        }
        if !added_server {
            push(&mut out, "X-Forwarded-Server", server.as_bytes());
        }
    }
    match f.body {
        BodyHeader::None => {}
        BodyHeader::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(&mut out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyHeader::Chunked => push(&mut out, "Transfer-Encoding", b"chunked"),
    }
    match f.connection {
        ConnectionHeader::KeepAlive => push(&mut out, "Connection", b"Keep-Alive"),
        ConnectionHeader::Close => push(&mut out, "Connection", b"close"),
        ConnectionHeader::Upgrade(value) => {
            push(&mut out, "Connection", b"Upgrade");
            push(&mut out, "Upgrade", value.as_bytes());
        }
        ConnectionHeader::UpgradeLegacy(value) => {
            push(&mut out, "Upgrade", value.as_bytes());
            push(&mut out, "Connection", b"Upgrade");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An address as `X-Forwarded-For` carries it, written on the stack;
/// IPv4 (nearly every client) without going through `Display`.
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        let mut text = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.buf[text.len] = b'.';
                        text.len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let skip = if octet >= 100 {
                        0
                    } else if octet >= 10 {
                        1
                    } else {
                        2
                    };
                    for d in &digits[skip..] {
                        text.buf[text.len] = b'0' + d;
                        text.len += 1;
                    }
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.buf[..];
                // 45 bytes hold the longest IPv6 text (an IPv4-mapped one).
                let _ = write!(rest, "{v6}");
                text.len = 45 - rest.len();
            }
        }
        text
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What ends a response head sent to the client.
pub struct ClientResponse<'a> {
    pub body: BodyHeader,
    pub close: bool,
    /// `Some(value)`: add `Connection: Upgrade` and `Upgrade: value`.
    pub upgrade: Option<&'a str>,
    /// For ProxyPassReverse: the client's Host (or the server name).
    pub public_host: &'a str,
    pub reverse: &'a [&'a ReverseRule],
    /// `Server` for a final response the backend sent without one (as
    /// Apache adds its banner; a backend's own is kept).
    pub banner: &'a str,
}

/// The response head for the client: the backend's fields minus hop-by-hop
/// ones, with ProxyPassReverse applied and a Date if the backend sent none.
/// Interim responses, the 101 among them, get no Date (S51c).
pub fn client_response(resp: &ResponseHead, c: &ClientResponse<'_>) -> Vec<u8> {
    let listed = Listed::of(&resp.headers);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, resp.status.into());
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers.fields {
        if let Some(value) = relayed(name, value, c, &listed) {
            push(&mut out, name, &value);
        }
    }
    if resp.status >= 200 && !resp.headers.contains("date") {
        push_date(&mut out);
    }
    if resp.status >= 200 && !c.banner.is_empty() && !resp.headers.contains("server") {
        push(&mut out, "Server", c.banner.as_bytes());
    }
    match c.body {
        BodyHeader::None => {}
        BodyHeader::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(&mut out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyHeader::Chunked => push(&mut out, "Transfer-Encoding", b"chunked"),
    }
    if let Some(value) = c.upgrade {
        push(&mut out, "Connection", b"Upgrade");
        push(&mut out, "Upgrade", value.as_bytes());
    } else if c.close {
        push(&mut out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What a backend's response field becomes toward the client: `None` for
/// a hop-by-hop one, else its value, with ProxyPassReverse applied.
fn relayed<'v>(
    name: &str,
    value: &'v [u8],
    c: &ClientResponse<'_>,
    listed: &Listed<'_>,
) -> Option<std::borrow::Cow<'v, [u8]>> {
    if hop_by_hop(name, RESPONSE_HOP_BY_HOP, listed) {
        return None;
    }
    let locating = || {
        named_in(
            name,
            &["location", "content-location", "uri", "destination"],
        )
    };
    if !c.reverse.is_empty() && locating() {
        if let Some(mapped) = reverse_map(value, c.public_host, c.reverse) {
            return Some(mapped.into());
        }
    }

    Some(value.into())
}

/// The fields of a response for a client that frames messages itself
/// (HTTP/2): those [`client_response`] writes, without the ones HTTP/2
/// forbids (`Connection`, `Upgrade`, `Transfer-Encoding`…), names in lower
/// case. `date`: the `Date` value to add when the backend sent none.
pub fn client_fields(resp: &ResponseHead, c: &ClientResponse<'_>, date: &[u8]) -> HeaderFields {
    let listed = Listed::of(&resp.headers);
    let mut fields = HeaderFields::with_capacity(resp.headers.fields.len() + 2);
    for (name, value) in &resp.headers.fields {
        if let Some(value) = relayed(name, value, c, &listed) {
            let name: Text = name.to_ascii_lowercase().into();
            fields.push((name, FieldValue::copy_from_slice(&value)));
        }
    }
    if resp.status >= 200 && !resp.headers.contains("date") {
        fields.push(("date".into(), FieldValue::copy_from_slice(date)));
    }
    if resp.status >= 200 && !c.banner.is_empty() && !resp.headers.contains("server") {
        fields.push((
            "server".into(),
            FieldValue::copy_from_slice(c.banner.as_bytes()),
        ));
    }
    if let BodyHeader::Length(n) = c.body {
        fields.push(("content-length".into(), n.to_string().into()));
    }
    fields
}

/// ProxyPassReverse (S135): a value starting with a rule's url becomes
/// `http://<public host><path><rest>`.
pub fn reverse_map(value: &[u8], public_host: &str, rules: &[&ReverseRule]) -> Option<Vec<u8>> {
    for rule in rules.iter().filter(|r| r.kind == ReverseKind::Url) {
        if let Some(rest) = value.strip_prefix(rule.url.as_bytes()) {
            let mut out = format!("http://{public_host}").into_bytes();
            out.extend_from_slice(rule.path.as_bytes());
            out.extend_from_slice(rest);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::parse_request;
    use crate::http::{FieldValue, Limits};

    fn head(text: &str) -> RequestHead {
        parse_request(
            &FieldValue::copy_from_slice(text.as_bytes()),
            &Limits::default(),
        )
        .unwrap()
    }

    fn forwarding(connection: ConnectionHeader<'_>) -> Forwarding<'_> {
        Forwarding {
            client_ip: "127.0.0.1".parse().unwrap(),
            add_headers: Some("proxy.test"),
            host: "backend:9080",
            body: BodyHeader::None,
            connection,
            keep_expect: false,
            via: ViaHeader::Pass,
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "::ffff:192.168.100.200",
            "1234:5678:9abc:def0:1234:5678:9abc:def0",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn order_is_host_then_client_headers_then_forwarded_then_connection() {
        let h = head("GET /a HTTP/1.1\r\nHost: vh.test:8080\r\nB: 1\r\nConnection: keep-alive, B\r\nA: 2\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n");
        let out = text(backend_request(
            &h,
            "/x/a",
            &forwarding(ConnectionHeader::KeepAlive),
        ));
        assert_eq!(
            out,
            "GET /x/a HTTP/1.1\r\nHost: backend:9080\r\nA: 2\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: vh.test:8080\r\nX-Forwarded-Server: proxy.test\r\nConnection: Keep-Alive\r\n\r\n"
        );
    }

    #[test]
    fn client_forwarded_values_are_merged_in_place() {
        let h = head("GET / HTTP/1.1\r\nHost: vh\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Host: evil\r\nZ: 1\r\n\r\n");
        let out = text(backend_request(
            &h,
            "/",
            &forwarding(ConnectionHeader::KeepAlive),
        ));
        assert!(out.contains("X-Forwarded-For: 10.9.9.9, 127.0.0.1\r\nX-Forwarded-Host: evil, vh\r\nZ: 1\r\nX-Forwarded-Server: proxy.test\r\n"), "{out}");
    }

    #[test]
    fn connection_cannot_remove_the_forwarded_headers() {
        // CVE-2022-31813: listing X-Forwarded-For in Connection drops the
        // client's value, never the proxy's.
        let h = head("GET / HTTP/1.1\r\nHost: vh\r\nConnection: close, X-Forwarded-For, Host\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
        let out = text(backend_request(
            &h,
            "/",
            &forwarding(ConnectionHeader::KeepAlive),
        ));
        assert!(out.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{out}");
        assert!(!out.contains("6.6.6.6"), "{out}");
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: backend:9080\r\n"));
    }

    #[test]
    fn every_name_connection_lists_is_dropped_however_many_and_in_any_case() {
        // More names than are held inline, over two Connection fields.
        let h = head("GET / HTTP/1.1\r\nHost: vh\r\nConnection: a, B; c\r\nA: 1\r\nb: 2\r\nC: 3\r\nConnection: D,e , f\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\n\r\n");
        let mut f = forwarding(ConnectionHeader::Close);
        f.add_headers = None;
        let out = text(backend_request(&h, "/", &f));
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: backend:9080\r\nG: 7\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn fixed_hop_by_hop_names_match_in_any_case_and_nothing_else() {
        for name in REQUEST_HOP_BY_HOP.iter().chain(RESPONSE_HOP_BY_HOP) {
            assert!(
                named_in(&name.to_ascii_uppercase(), REQUEST_HOP_BY_HOP)
                    || *name == "proxy-authenticate"
            );
            assert!(named_in(name, RESPONSE_HOP_BY_HOP) || *name == "host");
        }
        for name in [
            "",
            "t",
            "tex",
            "hosts",
            "upgrade-insecure-requests",
            "content-type",
            "keep-alives",
        ] {
            assert!(!named_in(name, REQUEST_HOP_BY_HOP), "{name}");
            assert!(!named_in(name, RESPONSE_HOP_BY_HOP), "{name}");
        }
    }

    #[test]
    fn upgrade_goes_last_with_the_value_given() {
        let h = head("GET /ws HTTP/1.1\r\nHost: vh\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n");
        let mut f = forwarding(ConnectionHeader::Upgrade("WebSocket"));
        f.add_headers = None;
        let out = text(backend_request(&h, "/ws", &f));
        assert!(
            out.ends_with(
                "Sec-WebSocket-Key: k\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn switching_response_drops_hop_by_hop_and_adds_no_date() {
        let resp = crate::http::h1::parse_response(&FieldValue::from_static(
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\nSec-WebSocket-Accept: abc\r\nSet-Cookie: a=b\r\n\r\n",
        ))
        .unwrap();
        let out = text(client_response(
            &resp,
            &ClientResponse {
                body: BodyHeader::None,
                close: false,
                upgrade: Some("websocket"),
                public_host: "h",
                reverse: &[],
                banner: "",
            },
        ));
        assert_eq!(out, "HTTP/1.1 101 Switching\r\nSec-WebSocket-Accept: abc\r\nSet-Cookie: a=b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    }

    #[test]
    fn a_response_without_date_gets_the_current_one() {
        let resp = crate::http::h1::parse_response(&FieldValue::from_static(
            b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n",
        ))
        .unwrap();
        let c = ClientResponse {
            body: BodyHeader::Length(0),
            close: false,
            upgrade: None,
            public_host: "h",
            reverse: &[],
            banner: "",
        };
        let date = |out: String| -> std::time::SystemTime {
            let line = out
                .lines()
                .find_map(|l| l.strip_prefix("Date: "))
                .unwrap_or_else(|| panic!("no Date in {out}"))
                .to_string();
            httpdate::parse_http_date(&line).unwrap()
        };
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        let first = date(text(client_response(&resp, &c)));
        let second = date(text(client_response(&resp, &c)));
        let after = std::time::SystemTime::now();
        for d in [first, second] {
            assert!(d >= before && d <= after, "{d:?} is not now");
        }
    }

    #[test]
    fn reverse_rewrites_location() {
        let rule = ReverseRule {
            path: "/app/".into(),
            url: "http://backend:9080/".into(),
            kind: ReverseKind::Url,
        };
        let got = reverse_map(b"http://backend:9080/next?x=1", "front:8080", &[&rule]).unwrap();
        assert_eq!(got, b"http://front:8080/app/next?x=1");
        assert!(reverse_map(b"http://other/", "front", &[&rule]).is_none());
    }
}
