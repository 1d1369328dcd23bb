//! Writing HTTP/1 heads: fields, numbers, the `Date` field, and the
//! complete answers wsgate makes itself (error pages).

use std::cell::RefCell;
use std::io::Write as _;

use super::fields::{FieldValue, HeaderFields};

/// A `Date` field for now. The text changes once a second, so each thread
/// formats it once a second rather than once a response.
pub fn push_date(out: &mut Vec<u8>) {
    with_date(|date| push(out, "Date", date.as_bytes()));
}

/// Runs `f` on the `Date` value for now (see [`push_date`]).
pub fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static NOW: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(&cached.1)
    })
}

/// `n` in decimal. Heads are written per request, and `write!` costs
/// several times more than this for a status or a length.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `name: value` and a line end.
pub fn push(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What an answer wsgate makes says about wsgate: the `Server` field
/// (`ServerTokens`) and, on an error page, the signature line
/// (`ServerSignature`).
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub banner: &'a str,
    pub footer: Option<Footer<'a>>,
}

impl Signed<'_> {
    /// wsgate's name alone, and no signature line.
    pub const PLAIN: Signed<'static> = Signed {
        banner: "wsgate",
        footer: None,
    };

    /// The signature line, with `prefix` before it (Apache's
    /// `ap_psignature`); empty without one.
    pub fn footer_html(&self, prefix: &str) -> String {
        let Some(f) = &self.footer else {
            return String::new();
        };
        let host = escape_html(&f.host);
        let port = f.port;
        let banner = self.banner;
        match f.mailto {
            Some(admin) => {
                let scheme = if is_url(admin) { "" } else { "mailto:" };
                let admin = escape_html(admin);
                format!("{prefix}<address>{banner} Server at <a href=\"{scheme}{admin}\">{host}</a> Port {port}</address>\n")
            }
            None => format!("{prefix}<address>{banner} Server at {host} Port {port}</address>\n"),
        }
    }
}

/// The signature line's facts: the name and port the client used for us
/// and, for `ServerSignature EMail`, the `ServerAdmin` the name links to.
#[derive(Debug, Clone)]
pub struct Footer<'a> {
    /// Lower-case.
    pub host: String,
    pub port: u16,
    pub mailto: Option<&'a str>,
}

/// `ap_is_url`: a scheme (letters, digits, `+`, `-`, `.`) then `:`.
fn is_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// `ap_escape_html`: `<`, `>`, `&` and `"` as entities.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete response wsgate makes itself: the status, `Date`, `Server`,
/// `extra` fields, and for anything but a 200 a short HTML page. The page
/// names only the status, never anything from the request (CVE-2019-10092)
/// but the host name in its signature line, escaped as Apache escapes it.
#[cfg(test)]
pub fn local_response(status: u16, reason: &str, extra: &[(&str, &str)], close: bool) -> Vec<u8> {
    local_answer(status, reason, extra, close, &Signed::PLAIN, &mut |_| {}).to_h1()
}

/// An answer whose page says `why` (plain text) instead of the status's
/// usual sentence.
pub fn local_response_because(
    status: u16,
    reason: &str,
    why: &str,
    close: bool,
    signed: &Signed<'_>,
) -> Vec<u8> {
    page(status, reason, why, &[], close, signed, &mut |_| {}).to_h1()
}

/// An answer wsgate makes itself, before it is written in a wire format:
/// HTTP/1 bytes ([`LocalAnswer::to_h1`]), or an HTTP/2 response.
#[derive(Debug, Clone)]
pub struct LocalAnswer {
    pub status: u16,
    pub reason: String,
    /// `Server`, the extra fields and those the rules set, then
    /// `Content-Length` and `Content-Type` (no `Date`: written last).
    pub fields: HeaderFields,
    pub body: Vec<u8>,
    /// The connection closes after it (HTTP/1: `Connection: close`).
    pub close: bool,
}

impl LocalAnswer {
    pub fn to_h1(&self) -> Vec<u8> {
        self.to_h1_with(b"")
    }

    /// [`LocalAnswer::to_h1`] with `more` (whole field lines) after the
    /// fields, for an answer that does not close.
    pub fn to_h1_with(&self, more: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, self.reason);
        push_date(&mut out);
        for (n, v) in &self.fields {
            push(&mut out, n, v);
        }
        if self.close {
            push(&mut out, "Connection", b"close");
        } else {
            out.extend_from_slice(more);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// An answer wsgate makes itself, not yet written: `adjust` is applied to
/// its header fields (the `Header always` rules).
pub fn local_answer(
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    close: bool,
    signed: &Signed<'_>,
    adjust: &mut dyn FnMut(&mut HeaderFields),
) -> LocalAnswer {
    page(
        status,
        reason,
        explain(status),
        extra,
        close,
        signed,
        adjust,
    )
}

fn page(
    status: u16,
    reason: &str,
    why: &str,
    extra: &[(&str, &str)],
    close: bool,
    signed: &Signed<'_>,
    adjust: &mut dyn FnMut(&mut HeaderFields),
) -> LocalAnswer {
    let body = if status == 200 {
        String::new()
    } else {
        let footer = signed.footer_html("<hr>\n");
        format!(
            "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n<p>{why}</p>\n{footer}</body></html>\n"
        )
    };
    let mut fields: HeaderFields = vec![(
        "Server".into(),
        FieldValue::copy_from_slice(signed.banner.as_bytes()),
    )];
    fields.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).into(), FieldValue::copy_from_slice(v.as_bytes()))),
    );
    adjust(&mut fields);
    let mut length = Vec::new();
    push_decimal(&mut length, body.len() as u64);
    fields.push(("Content-Length".into(), length.into()));
    if !body.is_empty() {
        fields.push((
            "Content-Type".into(),
            FieldValue::from_static(b"text/html; charset=iso-8859-1"),
        ));
    }
    LocalAnswer {
        status,
        reason: reason.to_string(),
        fields,
        body: body.into_bytes(),
        close,
    }
}

fn explain(status: u16) -> &'static str {
    match status {
        400 => "Your browser sent a request that this server could not understand.",
        421 => "The client needs a new connection for this request: the requested host name does not match the Server Name Indication (SNI) in use for this connection.",
        403 => "You don't have permission to access this resource.",
        404 => "The requested URL was not found on this server.",
        405 => "The method is not allowed here.",
        406 => "An appropriate representation of the requested resource could not be found on this server.",
        408 => "Server timeout waiting for the HTTP request from the client.",
        410 => "The requested resource is no longer available on this server.",
        413 => "The request body is larger than this server accepts.",
        414 => "The request line is longer than this server accepts.",
        426 => "This resource must be reached with a protocol upgrade.",
        431 => "The request's header fields are larger, or more, than this server accepts.",
        500 => "The proxy could not complete the request.",
        502 => "The proxy received an invalid response from the backend server.",
        503 => "The backend server is not available.",
        505 => "This server speaks HTTP/1.x.",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 101, 65535, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn an_error_page_closes_when_asked_and_counts_its_body() {
        let page =
            String::from_utf8(local_response(404, "Not Found", &[("X", "1")], true)).unwrap();
        let (head, body) = page.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 404 Not Found\r\nDate: "),
            "{head}"
        );
        assert!(head.contains("\r\nServer: wsgate\r\nX: 1\r\n"), "{head}");
        assert!(head.ends_with("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let ok = String::from_utf8(local_response(200, "OK", &[], false)).unwrap();
        assert!(ok.ends_with("Content-Length: 0\r\n\r\n"), "{ok}");
    }

    #[test]
    fn the_signature_line_escapes_the_host_and_links_the_admin_as_apache() {
        let mut signed = Signed {
            banner: "wsgate/1.2.3 (Unix)",
            footer: Some(Footer {
                host: "a<b>.test".into(),
                port: 80,
                mailto: None,
            }),
        };
        assert_eq!(
            signed.footer_html("<hr>\n"),
            "<hr>\n<address>wsgate/1.2.3 (Unix) Server at a&lt;b&gt;.test Port 80</address>\n"
        );
        if let Some(f) = &mut signed.footer {
            f.mailto = Some("root@x.test");
        }
        assert!(signed
            .footer_html("")
            .contains("<a href=\"mailto:root@x.test\">a&lt;b&gt;.test</a> Port 80"));
        if let Some(f) = &mut signed.footer {
            f.mailto = Some("https://help.test/");
        }
        assert!(signed
            .footer_html("")
            .contains("<a href=\"https://help.test/\">"));
        let page = local_answer(404, "Not Found", &[], false, &signed, &mut |_| {});
        let text = String::from_utf8(page.body).unwrap();
        assert!(text.ends_with("</address>\n</body></html>\n"), "{text}");
        assert!(page
            .fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("server") && &v[..] == b"wsgate/1.2.3 (Unix)"));
    }
}
