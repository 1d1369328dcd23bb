//! The PROXY protocol toward clients (mod_remoteip's
//! `RemoteIPProxyProtocol On`), through the real binary: the address a
//! header names is the client's in `X-Forwarded-For` and in `%{REMOTE_ADDR}`,
//! over plain HTTP, a WebSocket tunnel and TLS; a malformed header or one
//! that never completes closes the connection without an answer, with a
//! log line; and the same cases sent to Apache 2.4.71 with mod_remoteip give
//! the same answers, except the differences listed in `DELIBERATE`.

mod common;
#[path = "conformance/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{tls_vhost, Ca};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n";

fn v2(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

fn ipv4_block() -> Vec<u8> {
    let mut b = vec![203, 0, 113, 7, 127, 0, 0, 1];
    b.extend_from_slice(&5555u16.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b
}

fn ipv6_block() -> Vec<u8> {
    let mut b = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    b.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    b.extend_from_slice(&5555u16.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b
}

fn padded_v1(total: usize) -> Vec<u8> {
    let mut l = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80".to_vec();
    l.resize(total - 2, b' ');
    l.extend_from_slice(b"\r\n");
    l
}

/// Every case: a name and the bytes sent before `REQUEST`.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut tlv = ipv4_block();
    tlv.extend_from_slice(b"\x04\x00\x02ab");
    let mut largest = ipv4_block();
    largest.resize(216, 0);
    let mut too_long = ipv4_block();
    too_long.resize(217, 0);
    let mut version_1_nibble = v2(1, 0x11, &ipv4_block());
    version_1_nibble[12] = 0x11;
    vec![
        (
            "v1-tcp4",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-tcp6",
            b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-tcp6-mapped",
            b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5555 80\r\n".to_vec(),
        ),
        ("v1-unknown", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "v1-unknown-addresses",
            b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        ),
        (
            "v1-no-proxy-port",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n".to_vec(),
        ),
        (
            "v1-no-client-port",
            b"PROXY TCP4 203.0.113.7 127.0.0.1\r\n".to_vec(),
        ),
        (
            "v1-port-over-65535",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\n".to_vec(),
        ),
        (
            "v1-three-part-address",
            b"PROXY TCP4 1.2.3 127.0.0.1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-bad-address",
            b"PROXY TCP4 1.2.3.400 127.0.0.1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-family",
            b"PROXY UDP4 1.2.3.4 127.0.0.1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-spaces",
            b"PROXY  TCP4  203.0.113.7 127.0.0.1 5555 80\r\n".to_vec(),
        ),
        (
            "v1-bare-lf",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\n".to_vec(),
        ),
        ("v1-108-bytes", padded_v1(108)),
        ("v1-109-bytes", padded_v1(109)),
        ("v1-200-bytes", padded_v1(200)),
        ("no-header", Vec::new()),
        (
            "tls-hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        ("v2-tcp4", v2(1, 0x11, &ipv4_block())),
        ("v2-tcp6", v2(1, 0x21, &ipv6_block())),
        ("v2-local", v2(0, 0, b"")),
        ("v2-local-with-addresses", v2(0, 0x11, &ipv4_block())),
        ("v2-udp4", v2(1, 0x12, &ipv4_block())),
        ("v2-unix", v2(1, 0x31, &[0; 216])),
        ("v2-tlv", v2(1, 0x11, &tlv)),
        ("v2-largest", v2(1, 0x11, &largest)),
        ("v2-too-long", v2(1, 0x11, &too_long)),
        ("v2-short-address", v2(1, 0x11, &[0; 4])),
        ("v2-command-2", v2(2, 0x11, &ipv4_block())),
        ("v2-version-1", version_1_nibble),
    ]
}

/// What wsgate does on purpose otherwise than Apache 2.4.71: the case, why,
/// and what each answered (as `outcome` describes it).
const DELIBERATE: &[(&str, &str, &str, &str)] = &[
    ("v1-unknown", "Apache reads the line after a 15-byte `PROXY UNKNOWN` header into it and closes (its AH03513 'have data left over'); wsgate serves the request with the connection's address, as the protocol says", "closed", "200 X-Forwarded-For: 127.0.0.1"),
    ("v1-bare-lf", "Apache takes the request line after a header ending in a bare LF as part of the header, then answers 400 to the rest; wsgate refuses the header", "400", "closed"),
    ("v1-port-over-65535", "Apache's sscanf wraps the port (99999 becomes 34463); wsgate refuses it", "200 X-Forwarded-For: 203.0.113.7", "closed"),
    ("v1-tcp6-mapped", "wsgate writes an IPv4-mapped IPv6 client as IPv4, as it writes every client address", "200 X-Forwarded-For: ::ffff:1.2.3.4", "200 X-Forwarded-For: 1.2.3.4"),
    ("v1-tcp6-mapped", "wsgate writes an IPv4-mapped IPv6 client as IPv4, as it writes every client address", "200 X-Forwarded-For: ::ffff:1.2.3.4", "200 X-Forwarded-For: 1.2.3.4"),
    ("v1-three-part-address", "Apache's resolver reads 1.2.3 as 1.2.0.3 and forwards `1.2.3`; wsgate takes only a full dotted address", "200 X-Forwarded-For: 1.2.3", "closed"),
];

/// A recording HTTP backend and what it saw.
async fn backend() -> Backend {
    http_backend("b").await
}

/// Sends `header` then `REQUEST` to `addr`: the status line and the
/// `X-Forwarded-For` the backend saw, or `closed` when the connection
/// closed without an answer.
async fn outcome(addr: SocketAddr, header: &[u8], backend: &Backend) -> String {
    let before = backend.seen.all().len();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(&[header, REQUEST].concat()).await;
    let answer = read_until_close(&mut s, Duration::from_secs(10)).await;
    if answer.is_empty() {
        return "closed".into();
    }
    let status = status_of(&answer);
    let seen = backend.seen.all();
    match seen.get(before) {
        Some(head) => format!(
            "{status} X-Forwarded-For: {}",
            header_value(head, "x-forwarded-for").unwrap_or_default()
        ),
        None => status.to_string(),
    }
}

fn proxy(backend: &Backend, more: &str) -> Wsgate {
    Wsgate::start(&format!(
        "LogLevel info\nRemoteIPProxyProtocol On\n{more}\nProxyPass / http://{backend}/\n"
    ))
}

#[tokio::test]
async fn the_header_names_the_client_in_x_forwarded_for() {
    let backend = backend().await;
    let w = proxy(&backend, "");
    let expect = [
        ("v1-tcp4", "200 X-Forwarded-For: 203.0.113.7"),
        ("v1-tcp6", "200 X-Forwarded-For: 2001:db8::7"),
        ("v1-unknown", "200 X-Forwarded-For: 127.0.0.1"),
        ("v2-tcp4", "200 X-Forwarded-For: 203.0.113.7"),
        ("v2-tcp6", "200 X-Forwarded-For: 2001:db8::7"),
        ("v2-local", "200 X-Forwarded-For: 127.0.0.1"),
        ("v2-tlv", "200 X-Forwarded-For: 203.0.113.7"),
    ];
    let cases = cases();
    for (name, want) in expect {
        let header = &cases.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(outcome(w.addr, header, &backend).await, want, "{name}");
    }
}

#[tokio::test]
async fn malformed_headers_close_the_connection_with_a_log_line() {
    let backend = backend().await;
    let w = proxy(&backend, "");
    let expect = [
        ("v1-bad-address", "invalid client address '1.2.3.400'"),
        ("v1-family", "unknown family 'UDP4'"),
        ("v1-no-client-port", "no client port"),
        ("v1-109-bytes", "PROXY v1 line longer than 108 bytes"),
        ("v2-too-long", "217 bytes after the fixed part"),
        ("v2-udp4", "unsupported address family and protocol 12"),
        (
            "v2-short-address",
            "4 address bytes, too few for TCP over IPv4",
        ),
        ("v2-command-2", "unsupported command 22"),
        ("no-header", "not a PROXY protocol header"),
    ];
    let cases = cases();
    for (name, log) in expect {
        let header = &cases.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(outcome(w.addr, header, &backend).await, "closed", "{name}");
        w.wait_log(log, 1).await;
    }
    assert!(backend.seen.all().is_empty(), "nothing reached the backend");
}

#[tokio::test]
async fn a_header_that_never_completes_is_closed_after_timeout() {
    let backend = backend().await;
    let w = proxy(&backend, "Timeout 1");
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 ").await.unwrap();
    // Closed by wsgate (Timeout 1), not by this deadline.
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert_eq!(answer, "");
    w.wait_log("before a complete header", 1).await;
}

#[tokio::test]
async fn a_header_split_over_segments_is_read_whole_and_nothing_more() {
    let backend = backend().await;
    let w = proxy(&backend, "");
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let header = v2(1, 0x11, &ipv4_block());
    for part in [&header[..5], &header[5..14], &header[14..20]] {
        s.write_all(part).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    // The rest of the header and the request in one segment.
    s.write_all(&[&header[20..], REQUEST].concat())
        .await
        .unwrap();
    let answer = read_response(&mut s).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(
        header_value(&backend.seen.last(), "x-forwarded-for").as_deref(),
        Some("203.0.113.7")
    );
}

#[tokio::test]
async fn remote_addr_in_rules_is_the_headers_client() {
    let backend = backend().await;
    let w = proxy(
        &backend,
        "RequestHeader set X-Remote \"expr=%{REMOTE_ADDR}\"\n\
         RewriteEngine On\nRewriteCond %{REMOTE_ADDR} =203.0.113.7\nRewriteRule ^/x$ - [F]",
    );
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    assert_eq!(
        outcome(w.addr, v1, &backend).await,
        "403",
        "the rule saw 203.0.113.7"
    );
    let other = b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n";
    assert_eq!(
        outcome(w.addr, other, &backend).await,
        "200 X-Forwarded-For: 198.51.100.9"
    );
    assert_eq!(
        header_value(&backend.seen.last(), "x-remote").as_deref(),
        Some("198.51.100.9")
    );
}

#[tokio::test]
async fn a_websocket_tunnel_after_a_header_echoes() {
    let echo = ws_echo_backend().await;
    let w = Wsgate::start(&format!(
        "RemoteIPProxyProtocol On\nProxyPass /ws ws://{echo}/\n"
    ));
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(&v2(1, 0x21, &ipv6_block())).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(w.url("/ws"), s),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text("hi".into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(reply.into_text().unwrap().as_str(), "hi");
    assert_eq!(
        header_value(&echo.seen.last(), "x-forwarded-for").as_deref(),
        Some("2001:db8::7")
    );
}

#[tokio::test]
async fn the_header_comes_before_the_tls_handshake() {
    let ca = Ca::new();
    let issued = ca.issue("proxy.test");
    let backend = backend().await;
    let w = Wsgate::start_file(&format!(
        "Listen 127.0.0.1:0 https\nServerName proxy.test\nRemoteIPProxyProtocol On\n{}",
        tls_vhost(
            "proxy.test",
            &issued,
            &format!("ProxyPass / http://{backend}/\n")
        )
    ));
    let mut tcp = TcpStream::connect(w.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("proxy.test").unwrap();
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(
        header_value(&backend.seen.last(), "x-forwarded-for").as_deref(),
        Some("203.0.113.7")
    );
}

#[tokio::test]
async fn an_excepted_client_network_sends_no_header() {
    let backend = backend().await;
    let w = proxy(&backend, "RemoteIPProxyProtocolExceptions 127.0.0.2");
    // From 127.0.0.2: plain HTTP, its own address.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(w.addr).await.unwrap();
    s.write_all(REQUEST).await.unwrap();
    let answer = read_response(&mut s).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(
        header_value(&backend.seen.last(), "x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
    // From 127.0.0.1 a header is still required.
    assert_eq!(outcome(w.addr, b"", &backend).await, "closed");
}

#[tokio::test]
async fn only_the_addresses_of_the_virtual_host_that_says_on() {
    let backend = backend().await;
    // Two listeners; the protocol on the second one's virtual host only.
    let w = Wsgate::start_file(&format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\nProxyPass / http://{backend}/\n\
         Listen 127.0.0.3:0\n<VirtualHost 127.0.0.3:*>\nRemoteIPProxyProtocol On\n</VirtualHost>\n"
    ));
    let plain = outcome(w.addr, b"", &backend).await;
    assert_eq!(plain, "200 X-Forwarded-For: 127.0.0.1");
    let second = listening(w.pid())
        .into_iter()
        .find(|a| a.ip().to_string() == "127.0.0.3")
        .expect("wsgate listens on 127.0.0.3");
    assert_eq!(outcome(second, b"", &backend).await, "closed");
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    assert_eq!(
        outcome(second, v1, &backend).await,
        "200 X-Forwarded-For: 203.0.113.7"
    );
}

/// The addresses process `pid` listens on (IPv4): its sockets'
/// inodes, found in `/proc/net/tcp` in the listening state.
fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(String::from)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f[3] != "0A" || !inodes.iter().any(|i| i == f[9]) {
                return None;
            }
            let (ip, port) = f[1].split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::from((ip.to_le_bytes(), port)))
        })
        .collect()
}

/// Every case against Apache 2.4.71 with mod_remoteip and the same
/// configuration, and against wsgate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_answers_as_apache() {
    if !std::path::Path::new(support::APACHE).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("apache2 (Debian package apache2) is required under CI=true");
        }
        eprintln!("SKIP: apache2 not installed; the PROXY protocol is not compared with Apache");
        return;
    }
    let backend = backend().await;
    let body = format!("RemoteIPProxyProtocol On\nProxyPass / http://{backend}/\n");
    let apache = support::Apache::start(&body, &["remoteip"]);
    let w = Wsgate::start(&body);
    let mut differences = Vec::new();
    for (name, header) in cases() {
        let theirs = outcome(apache.addr, &header, &backend).await;
        let ours = outcome(w.addr, &header, &backend).await;
        let deliberate = DELIBERATE.iter().find(|(n, ..)| *n == name);
        let (apache_should, wsgate_should) = match deliberate {
            Some((_, _, a, w)) => (a.to_string(), w.to_string()),
            None => (theirs.clone(), theirs.clone()),
        };
        if (&theirs, &ours) != (&apache_should, &wsgate_should) {
            let why = deliberate.map_or("", |d| d.1);
            differences.push(format!(
                "{name}: Apache {theirs:?}, wsgate {ours:?}; expected Apache {apache_should:?}, wsgate {wsgate_should:?} {why}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{}\nApache's log:\n{}",
        differences.join("\n"),
        apache.read("error.log")
    );
}

#[tokio::test]
async fn require_ip_judges_the_client_the_header_names() {
    let backend = backend().await;
    let w = proxy(
        &backend,
        "<Location /x>\nRequire ip 203.0.113.0/24\n</Location>",
    );
    let inside = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    assert_eq!(
        outcome(w.addr, inside, &backend).await,
        "200 X-Forwarded-For: 203.0.113.7"
    );
    // The balancer itself (127.0.0.1) would not be let in either.
    let outside = b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n";
    assert_eq!(outcome(w.addr, outside, &backend).await, "403");
}

/// The access log's `%a` is the client the header names; `%{c}a` the
/// connection's own peer (the balancer), as mod_remoteip has them.
#[tokio::test]
async fn the_access_log_names_the_client_and_the_balancer() {
    let backend = backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = proxy(
        &backend,
        &format!("CustomLog {} \"%a %{{c}}a %h\"", log.display()),
    );
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    assert_eq!(
        outcome(w.addr, header, &backend).await,
        "200 X-Forwarded-For: 203.0.113.7"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text, "203.0.113.7 127.0.0.1 203.0.113.7\n");
}
