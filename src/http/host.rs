//! The `Host` header: Apache's strict check of its value, and the server
//! name it asks for.

/// The server name a Host value asks for, as Apache keeps it for choosing
/// the virtual host: lower-case, without the port or a trailing dot.
pub fn host_name(host: &str) -> String {
    let name = host_without_port(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// Whether Apache 2.4 accepts `value` as a Host header (`fix_hostname` in
/// server/vhost.c with the default `HttpProtocolOptions Strict`): an empty
/// value; a bracketed IPv6 literal; or a name of letters, digits, `-`, `_`
/// and single dots whose last label starts with a letter, or a dotted quad
/// without leading zeros; each with an optional port from 1 to 65535.
/// Anything else, such as spaces, `/`, `@`, `%`, a scope id or a bare
/// number, is a 400: such a value must never reach a backend or a rule.
pub fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    // A port: whatever follows the last ':' (a ':' anywhere else in a name
    // is refused below, so a non-number there is a bad value either way).
    let (host, port) = match memchr::memrchr(b':', value) {
        Some(at) if value[0] != b'[' || value[at - 1] == b']' => {
            (&value[..at], Some(&value[at + 1..]))
        }
        _ => (value, None),
    };
    if let Some(port) = port {
        let number = port.len() <= 5
            && !port.is_empty()
            && port.iter().all(u8::is_ascii_digit)
            && (1..=65535).contains(&port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')));
        if !number || host.is_empty() {
            return false;
        }
    }
    if let Some(inner) = host.strip_prefix(b"[") {
        return inner
            .strip_suffix(b"]")
            .and_then(|v6| std::str::from_utf8(v6).ok())
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = host.strip_suffix(b".").unwrap_or(host);
    if name.is_empty() {
        return false;
    }
    // One pass: allowed bytes, no "..", and what the two last checks need.
    let mut dotted_decimal = true;
    let mut leading_zero = false;
    let mut dots = 0;
    let mut last_label = 0;
    let mut previous = 0;
    for (i, &b) in name.iter().enumerate() {
        match b {
            b'.' if previous == b'.' => return false,
            b'.' => {
                dots += 1;
                last_label = i + 1;
            }
            b'0'..=b'9' => {
                let starts_label = i == 0 || previous == b'.';
                if starts_label && b == b'0' && name.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    leading_zero = true;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => dotted_decimal = false,
            _ => return false,
        }
        previous = b;
    }
    if dotted_decimal {
        // RFC 3986 7.4: four numbers, none empty or with a leading zero.
        return dots == 3 && !leading_zero && name[0] != b'.';
    }
    // RFC 1123 2.1: the top-level label starts with a letter.
    dots == 0 || name[last_label].is_ascii_alphabetic()
}

pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_apache_accepts() {
        for ok in [
            "",
            "front.test",
            "Front.TEST:8080",
            "a",
            "a_b-c.test",
            "a.test.",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:1.2.3.4]",
            "999.1.1.1",
            "a.b1",
            "localhost:65535",
            ".a",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} refused");
        }
    }

    #[test]
    fn host_values_apache_refuses_with_400() {
        for bad in [
            "a b",
            "a/b",
            "a\\b",
            "a@b",
            "[::1",
            "[::1]x",
            "[fe80::1%eth0]",
            "a:b",
            "a:99999",
            "a:0",
            "a:",
            ":80",
            "a;b",
            "%41",
            "1234",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.02.3.4",
            "a.1b",
            "a..b",
            ".",
            "a,b",
            "evil.example/x?y@z:1:2",
            "\u{e9}.test",
            "a\tb",
            ".1.2.3",
            "1.2.3.4:",
            "a:123456",
            "[::1]:0",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_trailing_dot_names_the_same_virtual_host() {
        assert_eq!(host_name("VH2.Test.:8080"), "vh2.test");
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }
}
