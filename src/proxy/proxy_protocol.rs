//! The PROXY protocol (versions 1 and 2) in front of a client connection,
//! as mod_remoteip's `RemoteIPProxyProtocol On` reads it: a load balancer
//! that passes TCP through (HAProxy's `send-proxy`, a cloud network load
//! balancer) states the client's address before the client's first byte,
//! and that address becomes the client's everywhere (`X-Forwarded-For`,
//! `%{REMOTE_ADDR}`, logs).
//!
//! A connection whose header is malformed, too long or of an unsupported
//! kind is closed without an answer and logged, as Apache does; the header
//! is read without taking a byte more than it holds (the bytes after it
//! belong to TLS or HTTP), within `Timeout`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::header_rules::ConnFacts;

/// Version 2's signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2's fixed part: signature, version and command, family and
/// protocol, length of what follows.
const V2_FIXED: usize = 16;
/// The most a version 2 header may hold after its fixed part, as Apache
/// takes it: the largest address block (two UNIX paths) and no more, so
/// TLVs fit only beside the shorter IP blocks.
const V2_MAX_BODY: usize = 216;
/// The longest version 1 line Apache 2.4.71 accepts, CRLF included (the
/// protocol's own limit is 107; Apache's buffer holds one byte more, and
/// it refuses from 109 bytes on).
const V1_MAX_LINE: usize = 108;
/// Enough to hold any header this accepts.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BODY;

/// What the bytes received so far make of a header.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A complete header of `len` bytes; `client` is the address it names,
    /// `None` to keep the connection's own (version 1 `UNKNOWN`, version 2
    /// `LOCAL`: the balancer's own connections, such as health checks).
    Done {
        len: usize,
        client: Option<SocketAddr>,
    },
    NeedMore,
    Invalid(Invalid),
}

/// Why a connection's header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 line longer than {V1_MAX_LINE} bytes")]
    V1TooLong,
    #[error("PROXY v1 line '{0}' ends without CR LF")]
    V1BareLf(String),
    #[error("PROXY v1: no {0} in '{1}'")]
    V1Missing(&'static str, String),
    #[error("PROXY v1: unknown family '{0}' in '{1}'")]
    V1Family(String, String),
    #[error("PROXY v1: invalid client address '{0}' in '{1}'")]
    V1Address(String, String),
    #[error("PROXY v1: invalid client port '{0}' in '{1}'")]
    V1Port(String, String),
    #[error("PROXY v2: {0} bytes after the fixed part, more than {V2_MAX_BODY}")]
    V2TooLong(usize),
    #[error("PROXY v2: unsupported command {0:02x}")]
    V2Command(u8),
    #[error("PROXY v2: unsupported address family and protocol {0:02x}")]
    V2Protocol(u8),
    #[error("PROXY v2: {len} address bytes, too few for {family}")]
    V2ShortAddress { len: usize, family: &'static str },
}

/// Reads a header from the first bytes of a connection.
pub fn parse(buf: &[u8]) -> Parse {
    if is_v2(buf) {
        return parse_v2(buf);
    }
    let v1 = b"PROXY ";
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return if buf.len() < v1.len() {
            Parse::NeedMore
        } else {
            parse_v1(buf)
        };
    }
    // A prefix of version 2's signature may still become one.
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf.len() <= V2_SIGNATURE.len() && buf[..n] == V2_SIGNATURE[..n] {
        return Parse::NeedMore;
    }
    Parse::Invalid(Invalid::NotProxy)
}

/// The signature, then version 2 in the high half of the 13th byte.
fn is_v2(buf: &[u8]) -> bool {
    buf.len() > V2_SIGNATURE.len()
        && buf.starts_with(V2_SIGNATURE)
        && buf[V2_SIGNATURE.len()] >> 4 == 2
}

/// `PROXY TCP4|TCP6|UNKNOWN client-address proxy-address client-port
/// proxy-port\r\n`, words separated by one or more spaces (as Apache
/// splits them); the proxy's port may be missing, as Apache allows.
fn parse_v1(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(V1_MAX_LINE)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if buf.len() >= V1_MAX_LINE {
            Parse::Invalid(Invalid::V1TooLong)
        } else {
            Parse::NeedMore
        };
    };
    let line = String::from_utf8_lossy(&buf[..lf]).into_owned();
    let Some(line) = line.strip_suffix('\r') else {
        return Parse::Invalid(Invalid::V1BareLf(line));
    };
    let shown = line.to_string();
    let mut words = line.split(' ').filter(|w| !w.is_empty()).skip(1);
    let mut next = |what: &'static str| {
        words
            .next()
            .ok_or_else(|| Invalid::V1Missing(what, shown.clone()))
    };
    let client = (|| {
        let family = next("family")?;
        let v6 = match family {
            "UNKNOWN" => return Ok(None),
            "TCP4" => false,
            "TCP6" => true,
            other => return Err(Invalid::V1Family(other.into(), shown.clone())),
        };
        let address = next("client address")?;
        let ip: Option<IpAddr> = if v6 {
            address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        };
        let ip = ip.ok_or_else(|| Invalid::V1Address(address.into(), shown.clone()))?;
        next("proxy address")?;
        let port = next("client port")?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Invalid::V1Port(port.into(), shown.clone()))?;
        Ok(Some(SocketAddr::new(ip, port)))
    })();
    match client {
        Ok(client) => Parse::Done {
            len: lf + 1,
            client,
        },
        Err(e) => Parse::Invalid(e),
    }
}

/// The binary form: signature, version and command, family and protocol,
/// the length of the rest, then the addresses (and TLVs, which wsgate
/// skips).
fn parse_v2(buf: &[u8]) -> Parse {
    if buf.len() < V2_FIXED {
        return Parse::NeedMore;
    }
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if body > V2_MAX_BODY {
        return Parse::Invalid(Invalid::V2TooLong(body));
    }
    let len = V2_FIXED + body;
    if buf.len() < len {
        return Parse::NeedMore;
    }
    let (command, family) = (buf[12], buf[13]);
    let addresses = &buf[V2_FIXED..len];
    let client = match (command & 0x0f, family) {
        // LOCAL: the balancer's own connection; the addresses are ignored.
        (0x0, _) => None,
        (0x1, 0x11) => {
            if addresses.len() < 12 {
                return short(addresses, "TCP over IPv4");
            }
            let ip: [u8; 4] = addresses[..4].try_into().expect("4 bytes");
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::from((Ipv4Addr::from(ip), port)))
        }
        (0x1, 0x21) => {
            if addresses.len() < 36 {
                return short(addresses, "TCP over IPv6");
            }
            let ip: [u8; 16] = addresses[..16].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::from((Ipv6Addr::from(ip), port)))
        }
        (0x1, other) => return Parse::Invalid(Invalid::V2Protocol(other)),
        _ => return Parse::Invalid(Invalid::V2Command(command)),
    };
    Parse::Done { len, client }
}

fn short(addresses: &[u8], family: &'static str) -> Parse {
    Parse::Invalid(Invalid::V2ShortAddress {
        len: addresses.len(),
        family,
    })
}

/// Why a connection's header could not be read.
#[derive(Debug)]
pub enum Refused {
    Invalid(Invalid),
    /// The connection closed, failed or said nothing more for `Timeout`
    /// before its header was complete.
    Incomplete,
}

/// Reads a connection's header, taking exactly its bytes from the socket,
/// within `timeout`; the client's address it names, if any.
///
/// Each look peeks at what has arrived; bytes that do not complete the
/// header are all header bytes, so they are taken, and the next look waits
/// for more (or the end of the connection) instead of finding them again.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, Refused> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER];
    let mut have = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf[have..])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Err(Refused::Incomplete),
        };
        let (taken, done) = match parse(&buf[..have + n]) {
            Parse::Done { len, client } => (len - have, Some(client)),
            Parse::NeedMore => (n, None),
            Parse::Invalid(why) => return Err(Refused::Invalid(why)),
        };
        stream
            .read_exact(&mut buf[have..have + taken])
            .await
            .map_err(|_| Refused::Incomplete)?;
        have += taken;
        if let Some(client) = done {
            return Ok(client);
        }
    }
}

/// Reads the header of a connection that must start with one, and gives
/// the connection's facts with the client it names; `None` when the
/// connection is to be closed (refused and logged, as mod_remoteip does).
pub async fn accept(
    stream: &mut TcpStream,
    facts: ConnFacts,
    timeout: Duration,
) -> Option<ConnFacts> {
    let balancer = facts.peer;
    match read_header(stream, timeout).await {
        Ok(client) => Some(ConnFacts {
            peer: client.unwrap_or(balancer),
            via: client.map(|_| balancer),
            ..facts
        }),
        // Apache closes these without a word.
        Err(Refused::Invalid(Invalid::NotProxy)) => {
            tracing::info!(peer = %balancer, "RemoteIPProxyProtocol: not a PROXY protocol header: connection closed");
            None
        }
        Err(Refused::Invalid(why)) => {
            tracing::error!(peer = %balancer, "RemoteIPProxyProtocol: {why}: connection closed");
            None
        }
        Err(Refused::Incomplete) => {
            tracing::info!(peer = %balancer, "RemoteIPProxyProtocol: connection closed, or silent for Timeout, before a complete header");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
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
        let mut b = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        b.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b.extend_from_slice(&5555u16.to_be_bytes());
        b.extend_from_slice(&80u16.to_be_bytes());
        b
    }

    fn done(header: &[u8]) -> Option<SocketAddr> {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        match parse(&bytes) {
            Parse::Done { len, client } => {
                assert_eq!(len, header.len(), "the header and not a byte more");
                client
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(header)),
        }
    }

    fn invalid(header: &[u8]) -> Invalid {
        match parse(header) {
            Parse::Invalid(why) => why,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(header)),
        }
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn version_1_names_the_client() {
        assert_eq!(
            done(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"),
            addr("203.0.113.7:5555")
        );
        assert_eq!(
            done(b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n"),
            addr("[2001:db8::7]:5555")
        );
        // Apache 2.4.71 takes these too.
        assert_eq!(
            done(b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5555 80\r\n"),
            addr("[::ffff:1.2.3.4]:5555")
        );
        assert_eq!(
            done(b"PROXY  TCP4  203.0.113.7 127.0.0.1 5555 80\r\n"),
            addr("203.0.113.7:5555"),
            "several spaces"
        );
        assert_eq!(
            done(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n"),
            addr("203.0.113.7:5555"),
            "no proxy port"
        );
    }

    #[test]
    fn unknown_and_local_keep_the_connections_address() {
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), None);
        assert_eq!(done(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"), None);
        assert_eq!(done(&v2(0, 0, b"")), None);
        assert_eq!(
            done(&v2(0, 0x11, &ipv4_block())),
            None,
            "LOCAL ignores addresses"
        );
    }

    #[test]
    fn version_2_names_the_client_and_skips_tlvs() {
        assert_eq!(done(&v2(1, 0x11, &ipv4_block())), addr("203.0.113.7:5555"));
        assert_eq!(
            done(&v2(1, 0x21, &ipv6_block())),
            addr("[2001:db8::7]:5555")
        );
        let mut tlv = ipv4_block();
        tlv.extend_from_slice(b"\x04\x00\x02ab");
        assert_eq!(done(&v2(1, 0x11, &tlv)), addr("203.0.113.7:5555"));
        let mut largest = ipv4_block();
        largest.resize(V2_MAX_BODY, 0);
        assert_eq!(done(&v2(1, 0x11, &largest)), addr("203.0.113.7:5555"));
    }

    #[test]
    fn malformed_version_1_is_refused_with_the_reason() {
        let cases: &[(&[u8], Invalid)] = &[
            (
                b"PROXY UDP4 1.2.3.4 127.0.0.1 5555 80\r\n",
                Invalid::V1Family("UDP4".into(), "PROXY UDP4 1.2.3.4 127.0.0.1 5555 80".into()),
            ),
            (
                b"PROXY TCP4 1.2.3.400 127.0.0.1 5555 80\r\n",
                Invalid::V1Address(
                    "1.2.3.400".into(),
                    "PROXY TCP4 1.2.3.400 127.0.0.1 5555 80".into(),
                ),
            ),
            (
                b"PROXY TCP4 2001:db8::7 ::1 5555 80\r\n",
                Invalid::V1Address(
                    "2001:db8::7".into(),
                    "PROXY TCP4 2001:db8::7 ::1 5555 80".into(),
                ),
            ),
            (
                b"PROXY TCP6 1.2.3.4 ::1 5555 80\r\n",
                Invalid::V1Address("1.2.3.4".into(), "PROXY TCP6 1.2.3.4 ::1 5555 80".into()),
            ),
            (
                b"PROXY TCP4 203.0.113.7 127.0.0.1\r\n",
                Invalid::V1Missing("client port", "PROXY TCP4 203.0.113.7 127.0.0.1".into()),
            ),
            (
                b"PROXY TCP4 203.0.113.7\r\n",
                Invalid::V1Missing("proxy address", "PROXY TCP4 203.0.113.7".into()),
            ),
            (b"PROXY \r\n", Invalid::V1Missing("family", "PROXY ".into())),
            (
                b"PROXY TCP4 203.0.113.7 127.0.0.1 +80 80\r\n",
                Invalid::V1Port(
                    "+80".into(),
                    "PROXY TCP4 203.0.113.7 127.0.0.1 +80 80".into(),
                ),
            ),
            (
                b"PROXY TCP4 203.0.113.7 127.0.0.1 65536 80\r\n",
                Invalid::V1Port(
                    "65536".into(),
                    "PROXY TCP4 203.0.113.7 127.0.0.1 65536 80".into(),
                ),
            ),
            (
                b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\n",
                Invalid::V1BareLf("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80".into()),
            ),
        ];
        for (header, why) in cases {
            assert_eq!(
                &invalid(header),
                why,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn version_1_lines_are_bounded_as_in_apache() {
        let line = |total: usize| {
            let mut l = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80".to_vec();
            l.resize(total - 2, b' ');
            l.extend_from_slice(b"\r\n");
            l
        };
        assert_eq!(done(&line(107)), addr("203.0.113.7:5555"));
        assert_eq!(done(&line(108)), addr("203.0.113.7:5555"));
        assert_eq!(invalid(&line(109)), Invalid::V1TooLong);
        assert_eq!(
            invalid(&[b"PROXY ".as_slice(), &[b'x'; 200]].concat()),
            Invalid::V1TooLong
        );
    }

    #[test]
    fn malformed_version_2_is_refused_with_the_reason() {
        assert_eq!(
            invalid(&v2(1, 0x12, &ipv4_block())),
            Invalid::V2Protocol(0x12)
        );
        assert_eq!(invalid(&v2(1, 0x31, &[0; 216])), Invalid::V2Protocol(0x31));
        assert_eq!(invalid(&v2(1, 0x00, b"")), Invalid::V2Protocol(0));
        assert_eq!(
            invalid(&v2(2, 0x11, &ipv4_block())),
            Invalid::V2Command(0x22)
        );
        assert_eq!(
            invalid(&v2(1, 0x11, &[0; 4])),
            Invalid::V2ShortAddress {
                len: 4,
                family: "TCP over IPv4"
            }
        );
        assert_eq!(
            invalid(&v2(1, 0x21, &ipv4_block())),
            Invalid::V2ShortAddress {
                len: 12,
                family: "TCP over IPv6"
            }
        );
        let mut too_long = ipv4_block();
        too_long.resize(V2_MAX_BODY + 1, 0);
        assert_eq!(invalid(&v2(1, 0x11, &too_long)), Invalid::V2TooLong(217));
        // Only the fixed part is needed to refuse an over-long header.
        assert_eq!(
            invalid(&v2(1, 0x11, &too_long)[..V2_FIXED]),
            Invalid::V2TooLong(217)
        );
        // Version 1 in the version nibble: not version 2, and not "PROXY ".
        let mut v1_nibble = v2(1, 0x11, &ipv4_block());
        v1_nibble[12] = 0x11;
        assert_eq!(invalid(&v1_nibble), Invalid::NotProxy);
    }

    #[test]
    fn anything_else_is_refused_at_its_first_wrong_byte() {
        assert_eq!(invalid(b"GET / HTTP/1.1\r\n"), Invalid::NotProxy);
        assert_eq!(invalid(b"G"), Invalid::NotProxy);
        assert_eq!(invalid(b"\x16\x03\x01"), Invalid::NotProxy, "a TLS hello");
        assert_eq!(invalid(b"PROXy"), Invalid::NotProxy);
        assert_eq!(invalid(b"\r\n\r\n\0\r\nQUIX"), Invalid::NotProxy);
    }

    #[test]
    fn every_truncation_of_a_valid_header_needs_more() {
        let headers = [
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(1, 0x11, &ipv4_block()),
            v2(1, 0x21, &ipv6_block()),
            v2(0, 0, b""),
        ];
        for h in &headers {
            for cut in 0..h.len() {
                assert_eq!(parse(&h[..cut]), Parse::NeedMore, "{h:?} cut at {cut}");
            }
        }
    }

    proptest! {
        /// Garbage, valid headers cut anywhere or with bytes changed: never
        /// a panic, never a header longer than what arrived or than the
        /// limits, and bytes that hold a complete header keep parsing the
        /// same way whatever follows.
        #[test]
        fn any_bytes_parse_without_panic_within_bounds(
            seed in prop_oneof![
                Just(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".to_vec()),
                Just(b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n".to_vec()),
                Just(v2(1, 0x11, &ipv4_block())),
                Just(v2(1, 0x21, &ipv6_block())),
                proptest::collection::vec(any::<u8>(), 0..300),
            ],
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = seed;
            for (at, b) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
            }
            let cut = if bytes.is_empty() { 0 } else { cut % (bytes.len() + 1) };
            let head = &bytes[..cut];
            let first = parse(head);
            if let Parse::Done { len, .. } = first {
                prop_assert!(len <= head.len() && len <= MAX_HEADER);
                let mut longer = head.to_vec();
                longer.extend_from_slice(&tail);
                prop_assert_eq!(parse(&longer), first);
            }
            if head.len() >= MAX_HEADER {
                prop_assert!(parse(head) != Parse::NeedMore, "a full buffer decides");
            }
        }
    }
}
