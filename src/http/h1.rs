//! HTTP/1.x message heads, parsed strictly and kept in the order received.
//!
//! Written by hand rather than taken from a general HTTP library because a
//! proxy that must behave like Apache needs what such libraries normalise
//! away: header order, the spelling of names and values, the backend's reason
//! phrase, and Apache's exact answers to malformed input (S1, S4, S6, S75–S77).

use bytes::Bytes;

use super::fields::{FieldValue, Headers, Text};
use super::message::{canonical_reason, Limits, RequestHead, ResponseHead, Version};

/// Why a request head is refused, with the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 400.
    Malformed(&'static str),
    /// 414: the request line is longer than LimitRequestLine.
    UriTooLong,
    /// 505.
    Version,
}

/// Position just after the blank line that ends a head in `buf`, if there is
/// one. Both CRLF and bare LF line ends count, so that a bare-LF request can
/// be answered with a 400 rather than waited on.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = memchr(b'\n', &buf[i..]) {
        let nl = i + pos;
        let next = nl + 1;
        match buf.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') if buf.get(next + 1) == Some(&b'\n') => return Some(next + 2),
            Some(_) => i = next,
            None => return None,
        }
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

fn is_tchar(b: u8) -> bool {
    BYTE_CLASS[usize::from(b)] & TCHAR != 0
}

/// [`BYTE_CLASS`] bit: a token character (RFC 9110 §5.6.2).
const TCHAR: u8 = 1;
/// [`BYTE_CLASS`] bit: a byte a header value may hold as it is: HTAB, SP,
/// visible ASCII and anything above it (obs-text). Not CR, LF, NUL, DEL or
/// any other control character.
const VCHAR: u8 = 2;

const BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        let value = c == b'\t' || (c >= b' ' && c != 0x7f);
        t[b] = if token { TCHAR } else { 0 } | if value { VCHAR } else { 0 };
        b += 1;
    }
    t
};

/// Splits a head into lines. Requests must use CRLF; a bare CR anywhere is
/// reported as `Err(true)`, a bare LF as `Err(false)`.
fn lines(head: &[u8], allow_bare_lf: bool) -> Result<Vec<&[u8]>, bool> {
    let mut out = Vec::with_capacity(16);
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'\r' => {
                if head.get(i + 1) != Some(&b'\n') {
                    return Err(true);
                }
                out.push(&head[start..i]);
                i += 2;
                start = i;
            }
            b'\n' => {
                if !allow_bare_lf {
                    return Err(false);
                }
                out.push(&head[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < head.len() {
        out.push(&head[start..]);
    }
    // Drop the empty line that ends the head.
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    Ok(out)
}

/// Parses a request head (everything up to and including the blank line).
/// Its fields share `head`'s bytes.
pub fn parse_request(head: &Bytes, limits: &Limits) -> Result<RequestHead, RequestError> {
    match plain_request(head, limits) {
        Some(parsed) => Ok(parsed),
        None => parse_request_exactly(head, limits),
    }
}

/// [`parse_request`] for a head with nothing unusual in it — CRLF line
/// ends, no folding, no repeated Host, every byte one a field may hold —
/// in one pass and without collecting its lines. `None` for anything else,
/// which [`parse_request_exactly`] then answers as it always did: both
/// give the same head wherever this one gives one.
fn plain_request(head: &Bytes, limits: &Limits) -> Option<RequestHead> {
    let first_end = memchr(b'\n', head)?;
    let first = head[..first_end].strip_suffix(b"\r")?;
    if first.len() > limits.request_line {
        return None;
    }
    let sp1 = memchr(b' ', first)?;
    let (method, rest) = (&first[..sp1], &first[sp1 + 1..]);
    let sp2 = memchr(b' ', rest)?;
    let (target, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    if method.is_empty()
        || !method.iter().all(|&b| is_tchar(b))
        || target.is_empty()
        || target.iter().any(|&b| b <= b' ' || b == 0x7f)
    {
        return None;
    }
    let version = parse_version(version)?;
    if version.major != 1 {
        return None;
    }
    let target = Text::from_utf8(head.slice_ref(target))?;
    let headers = plain_fields(head, first_end + 1, limits.field_size, limits.fields, true)?;
    Some(RequestHead {
        // A token: ASCII.
        method: Text(head.slice_ref(method)),
        target,
        version,
        headers,
    })
}

/// Header lines from `start` to the blank line that ends `head`, in one
/// pass: `None` at the first thing [`parse_fields`] would refuse, fold or
/// find unusual (a bare CR or LF, a continuation line, a repeated Host, a
/// line or count over its limit, anything after the blank line).
fn plain_fields(
    head: &Bytes,
    start: usize,
    max_line: usize,
    max_fields: usize,
    merge: bool,
) -> Option<Headers> {
    let mut headers = Headers {
        fields: Vec::with_capacity(16),
    };
    let mut at = start;
    let mut count = 0;
    loop {
        let rest = head.get(at..)?;
        if rest == b"\r\n" {
            return Some(headers);
        }
        let end = memchr(b'\n', rest)?;
        let line = rest[..end].strip_suffix(b"\r")?;
        count += 1;
        if line.len() > max_line || count > max_fields {
            return None;
        }
        let name_len = line
            .iter()
            .position(|&b| BYTE_CLASS[usize::from(b)] & TCHAR == 0)?;
        if name_len == 0 || line[name_len] != b':' {
            return None;
        }
        let value = &line[name_len + 1..];
        if !value
            .iter()
            .all(|&b| BYTE_CLASS[usize::from(b)] & VCHAR != 0)
        {
            return None;
        }
        let name = &line[..name_len];
        let value = value.trim_ascii();
        let existing = merge
            .then(|| {
                headers
                    .fields
                    .iter_mut()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            })
            .flatten();
        match existing {
            Some(_) if name.eq_ignore_ascii_case(b"host") => return None,
            Some((_, v)) => *v = joined(v, b", ", value),
            // A token: ASCII.
            None => headers
                .fields
                .push((Text(head.slice_ref(name)), head.slice_ref(value))),
        }
        at += end + 1;
    }
}

/// [`parse_request`] line by line, telling each kind of malformed head
/// apart.
fn parse_request_exactly(head: &Bytes, limits: &Limits) -> Result<RequestHead, RequestError> {
    use RequestError::Malformed;
    let lines = lines(head, false).map_err(|_| Malformed("bad line ending"))?;
    let (first, rest) = lines.split_first().ok_or(Malformed("empty request"))?;
    if first.len() > limits.request_line {
        return Err(RequestError::UriTooLong);
    }
    let mut parts = first.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("request line is not METHOD SP target SP version"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Malformed("bad method"));
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Malformed("bad request target"));
    }
    let version = parse_version(version).ok_or(Malformed("bad protocol version"))?;
    if version.major != 1 {
        return Err(RequestError::Version);
    }
    let headers =
        parse_fields(head, rest, limits.field_size, limits.fields, true).map_err(|e| match e {
            FieldError::Malformed(m) => Malformed(m),
            FieldError::BareCr => Malformed("bare CR in a header"),
        })?;
    Ok(RequestHead {
        // A method is a token: ASCII.
        method: Text::from_utf8_lossy(head.slice_ref(method)),
        target: Text::from_utf8_lossy(head.slice_ref(target)),
        version,
        headers,
    })
}

fn parse_version(v: &[u8]) -> Option<Version> {
    let rest = v.strip_prefix(b"HTTP/")?;
    match rest {
        [maj, b'.', min] if maj.is_ascii_digit() && min.is_ascii_digit() => Some(Version {
            major: maj - b'0',
            minor: min - b'0',
        }),
        _ => None,
    }
}

enum FieldError {
    Malformed(&'static str),
    BareCr,
}

/// Header lines of `head`: `name: value`, obsolete folding joined with a
/// space; request headers with the same name merged with `, ` (S6).
fn parse_fields(
    head: &Bytes,
    lines: &[&[u8]],
    max_line: usize,
    max_fields: usize,
    merge: bool,
) -> Result<Headers, FieldError> {
    let mut headers = Headers {
        fields: Vec::with_capacity(lines.len()),
    };
    let mut count = 0;
    for line in lines {
        if line.len() > max_line {
            return Err(FieldError::Malformed("header line too long"));
        }
        if line.contains(&0) {
            return Err(FieldError::Malformed("NUL in a header"));
        }
        if line.contains(&b'\r') {
            return Err(FieldError::BareCr);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            let (_, value) = headers
                .fields
                .last_mut()
                .ok_or(FieldError::Malformed("continuation line before any header"))?;
            let more = line.trim_ascii();
            if !more.is_empty() {
                *value = joined(value, b" ", more);
            }
            continue;
        }
        count += 1;
        if count > max_fields {
            return Err(FieldError::Malformed("too many header fields"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(FieldError::Malformed("header line without a colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(FieldError::Malformed("bad header name"));
        }
        let value = line[colon + 1..].trim_ascii();
        if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(FieldError::Malformed("control character in a header value"));
        }
        let name = Text::from_utf8(head.slice_ref(name))
            .ok_or(FieldError::Malformed("bad header name"))?;
        if merge {
            if let Some((_, existing)) = headers
                .fields
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                if name.eq_ignore_ascii_case("host") {
                    return Err(FieldError::Malformed("more than one Host header"));
                }
                *existing = joined(existing, b", ", value);
                continue;
            }
        }
        headers.fields.push((name, head.slice_ref(value)));
    }
    Ok(headers)
}

/// `a`, `between`, `b` as one new value.
fn joined(a: &[u8], between: &[u8], b: &[u8]) -> FieldValue {
    let mut out = Vec::with_capacity(a.len() + between.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(between);
    out.extend_from_slice(b);
    out.into()
}

/// Why a backend response head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// 502: not an HTTP/1 status line, or a malformed header.
    Malformed(&'static str),
    /// 500: a bare CR inside a header value (S162).
    BareCr,
    /// 502 Proxy Error: a status line of another HTTP major version.
    NotHttp1,
}

/// The longest backend header line accepted (Apache's `responsefieldsize`).
pub const RESPONSE_FIELD_SIZE: usize = 8192;

/// Parses a response head; its fields share `head`'s bytes.
pub fn parse_response(head: &Bytes) -> Result<ResponseHead, ResponseError> {
    use ResponseError::Malformed;
    let first_end = memchr(b'\n', head).unwrap_or(head.len());
    let status_line = head[..first_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..first_end]);
    if status_line.len() > RESPONSE_FIELD_SIZE {
        return Err(Malformed("status line too long"));
    }
    let version = status_line
        .get(..8)
        .and_then(parse_version)
        .ok_or(Malformed("not an HTTP status line"))?;
    if version.major != 1 {
        return Err(ResponseError::NotHttp1);
    }
    let code = match status_line.get(8..12) {
        Some([b' ', a, b, c]) if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(Malformed("bad status code")),
    };
    if !(100..=599).contains(&code) {
        return Err(Malformed("status code out of range"));
    }
    let reason_bytes = match status_line.get(12..) {
        None | Some([]) => &[][..],
        Some([b' ', rest @ ..]) => rest,
        Some(_) => return Err(Malformed("bad status code")),
    };
    let reason = if reason_bytes
        .iter()
        .any(|&b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        Text(Bytes::from_static(canonical_reason(code).as_bytes()))
    } else {
        Text::from_utf8_lossy(head.slice_ref(reason_bytes))
    };
    let plain = plain_fields(head, first_end + 1, RESPONSE_FIELD_SIZE, usize::MAX, false);
    if let Some(headers) = plain {
        return Ok(ResponseHead {
            version,
            status: code,
            reason,
            headers,
        });
    }
    let rest = head.get(first_end + 1..).unwrap_or(&[]);
    let lines = lines(rest, true).map_err(|bare_cr| {
        if bare_cr {
            ResponseError::BareCr
        } else {
            Malformed("bad line ending")
        }
    })?;
    let headers = parse_fields(head, &lines, RESPONSE_FIELD_SIZE, usize::MAX, false).map_err(
        |e| match e {
            FieldError::Malformed(m) => Malformed(m),
            FieldError::BareCr => ResponseError::BareCr,
        },
    )?;
    Ok(ResponseHead {
        version,
        status: code,
        reason,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Heads made mostly of what real ones hold, with the bytes the one-pass
    /// path must send back to the exact parser mixed in.
    fn some_head() -> impl Strategy<Value = Vec<u8>> {
        let ordinary = (
            prop::sample::select(&["Host", "host", "X-A", "x-a", "Upgrade", "Set-Cookie", "A"][..]),
            prop::sample::select(&[": ", ":", ":  ", " :", ":\t"][..]),
            prop::sample::select(
                &["", "a", "v1 ", " x", "a\tb", "\u{e9}", "a, b", "websocket"][..],
            ),
        )
            .prop_map(|(name, colon, value)| format!("{name}{colon}{value}"));
        let odd = prop::collection::vec(
            prop::sample::select(
                &[
                    "Host", "host", "X-A", "Upgrade", ":", ": ", " ", "\t", "a", "v1", "\r", "\n",
                    "\r\n", "\0", "\x01", "\x0c", "\x7f", "\u{e9}", "(", ",",
                ][..],
            ),
            0..8,
        )
        .prop_map(|parts| parts.concat());
        let line = prop_oneof![8 => ordinary, 1 => odd];
        // Mostly what a client sends, so that the one-pass path is taken
        // often enough to be tested, with each odd choice still in reach.
        let usual_or = |usual: &'static str, odd: &'static [&'static str]| prop_oneof![4 => Just(usual), 1 => prop::sample::select(odd)];
        (
            usual_or("GET", &["POST", "G(T", ""]),
            usual_or("/", &["/a?b", "/\u{e9}", "http://h/x", "/a b", ""]),
            usual_or(
                "HTTP/1.1",
                &["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "http/1.1"],
            ),
            prop::collection::vec(line, 0..7),
            usual_or("\r\n", &["\n", "", "\r\n\r\n", "\r\nX: y\r\n"]),
        )
            .prop_map(|(method, target, version, lines, end)| {
                let mut head = format!("{method} {target} {version}\r\n");
                for l in lines {
                    head.push_str(&l);
                    head.push_str("\r\n");
                }
                head.push_str(end);
                head.into_bytes()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Wherever the one-pass path parses a request, the exact parser
        /// gives the same head.
        #[test]
        fn the_one_pass_request_parser_agrees_with_the_exact_one(head in some_head()) {
            let head = Bytes::from(head);
            let limits = Limits { fields: 4, field_size: 16, request_line: 20, ..Limits::default() };
            if let Some(plain) = plain_request(&head, &limits) {
                prop_assert_eq!(Ok(plain), parse_request_exactly(&head, &limits));
            }
        }

        /// The same for the header lines of a response.
        #[test]
        fn the_one_pass_response_fields_agree_with_the_exact_ones(head in some_head()) {
            let head = Bytes::from(head);
            let start = memchr(b'\n', &head).map_or(head.len(), |i| i + 1);
            if let Some(plain) = plain_fields(&head, start, 16, usize::MAX, false) {
                let lines = lines(&head[start..], true).expect("the one pass saw CRLF only");
                let exact = parse_fields(&head, &lines, 16, usize::MAX, false).ok();
                prop_assert_eq!(Some(plain), exact);
            }
        }
    }

    #[test]
    fn ordinary_heads_take_the_one_pass_path() {
        let request = Bytes::from_static(
            b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nupgrade: x\r\n\r\n",
        );
        let plain = plain_request(&request, &Limits::default()).expect("an ordinary request");
        assert_eq!(plain.headers.get("upgrade"), Some(&b"websocket, x"[..]));
        assert_eq!(
            Ok(plain),
            parse_request_exactly(&request, &Limits::default())
        );
        let response = Bytes::from_static(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n",
        );
        let fields = plain_fields(&response, 34, RESPONSE_FIELD_SIZE, usize::MAX, false)
            .expect("an ordinary response");
        assert_eq!(fields.count("set-cookie"), 2);
        // What it leaves to the exact parser.
        for unusual in [
            &b"GET / HTTP/1.1\r\nX: 1\r\n b\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \x0c\r\n\r\n",
        ] {
            assert_eq!(
                plain_request(&Bytes::from_static(unusual), &Limits::default()),
                None
            );
        }
    }

    fn req(text: &str) -> Result<RequestHead, RequestError> {
        parse_request(&Bytes::copy_from_slice(text.as_bytes()), &Limits::default())
    }

    fn resp(text: &[u8]) -> Result<ResponseHead, ResponseError> {
        parse_response(&Bytes::copy_from_slice(text))
    }

    #[test]
    fn a_plain_request_parses_in_order() {
        let r = req("GET /a?b HTTP/1.1\r\nHost: x\r\nB: 1\r\nA: 2\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a?b");
        assert_eq!(r.version, Version::HTTP_11);
        let names: Vec<_> = r.headers.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["Host", "B", "A"]);
    }

    #[test]
    fn repeated_headers_merge_and_two_hosts_are_refused() {
        let r = req("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: a\r\nupgrade: b\r\n\r\n").unwrap();
        assert_eq!(r.headers.get("upgrade"), Some(&b"a, b"[..]));
        assert!(req("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n").is_err());
    }

    #[test]
    fn malformed_request_lines_are_refused() {
        for bad in [
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
            "GET / HTTP/1.1 x\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\n\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHo(st: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        ] {
            assert!(
                matches!(req(bad), Err(RequestError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            req("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            RequestError::Version
        );
    }

    #[test]
    fn limits_give_414_and_400() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(req(&long).unwrap_err(), RequestError::UriTooLong);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(req(&format!("GET / HTTP/1.1\r\n{many}\r\n")).is_err());
    }

    #[test]
    fn obsolete_folding_is_unfolded() {
        let r = req("GET / HTTP/1.1\r\nX-A: 1\r\n b\r\n\r\n").unwrap();
        assert_eq!(r.headers.get("x-a"), Some(&b"1 b"[..]));
    }

    #[test]
    fn head_end_finds_crlf_and_lf_ends() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nBODY"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nBODY"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn responses_keep_reason_and_repeated_headers() {
        let r = resp(b"HTTP/1.1 426 X\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (426, "X"));
        assert_eq!(r.headers.count("set-cookie"), 2);
        let r = resp(b"HTTP/1.1 200 OK\nA: b\n\n").unwrap();
        assert_eq!(r.headers.get("a"), Some(&b"b"[..]));
    }

    #[test]
    fn bad_backend_heads() {
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: 1\r\n\r\n").unwrap_err(),
            ResponseError::BareCr
        );
        assert!(matches!(
            resp(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
        assert_eq!(
            resp(b"HTTP/2.0 200 OK\r\n\r\n").unwrap_err(),
            ResponseError::NotHttp1
        );
        assert!(matches!(
            resp(b"HTTP/1.1\t200 OK\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            resp(b"HTTP/1.1 200 OK\r\nA: \0\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
        let long = format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "x".repeat(9000));
        assert!(resp(long.as_bytes()).is_err());
    }

    #[test]
    fn control_characters_in_reason_give_the_canonical_phrase() {
        let r = resp(b"HTTP/1.1 200 O\x01K\r\n\r\n").unwrap();
        assert_eq!(r.reason, "OK");
    }
}
