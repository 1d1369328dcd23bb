//! An access log line from a format and what is known of one request, as
//! mod_log_config writes it: the same fields, the same "-" for what is
//! missing, the same escaping of what a client controls.
//!
//! A tunnel is written when it ends. Its line is made when it opens, with
//! holes where the fields known only at its end go (durations, bytes,
//! how it ended); the tunnel keeps that text, not the request.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::config::model::log::{Code, Field, Format, Item};
use crate::config::model::Server;
use crate::http::RequestHead;
use crate::rules::Env;

/// Whether the connection could carry another request after this one
/// (`%X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnStatus {
    /// `X`: closed before the answer was complete.
    Aborted,
    /// `+`
    KeepAlive,
    /// `-`
    Close,
}

/// What a line is made from: one request, answered.
pub struct Entry<'a> {
    /// `None` when the head could not be read (a 400 or 408 before it).
    pub head: Option<&'a RequestHead>,
    /// Without a head: its first line as it came, if any, and the fields
    /// read before the one that was refused.
    pub line: Option<&'a str>,
    pub line_fields: &'a [(String, String)],
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a str,
    /// When the request arrived, for `%t`.
    pub received: SystemTime,
    pub started: Instant,
    pub peer: SocketAddr,
    /// The connection's own peer when a PROXY header named `peer` (a
    /// balancer in front): `%{c}a`.
    pub via: Option<SocketAddr>,
    pub local: SocketAddr,
    pub https: bool,
    pub server: &'a Server,
    /// The final status; 0 when none was sent.
    pub status: u16,
    pub body_bytes: u64,
    /// Bytes read from and written to the client for this request, heads
    /// included (mod_logio).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The response fields the formats read (`%{NAME}o`).
    pub response_headers: &'a [(String, String)],
    pub env: Option<&'a Env>,
    /// Requests before this one on its connection.
    pub keepalives: u32,
    pub conn: ConnStatus,
    /// Apache's `r->filename`: `proxy:URL` for a proxied request.
    pub filename: Option<&'a str>,
    /// `proxy-server` for a proxied request.
    pub handler: Option<&'a str>,
    /// The backend (worker or member) the request went to.
    pub backend: Option<&'a str>,
    /// The user of the request's credentials (`%u`), let in or not.
    pub user: Option<&'a str>,
    /// The client's name, when access control looked it up (`%h`).
    pub remote_host: Option<&'a str>,
    /// mod_ssl's variables: protocol, cipher, SNI.
    pub ssl: Option<SslVars<'a>>,
    /// A tunnel: the fields known at its end are left as holes.
    pub tunnel: bool,
}

#[derive(Clone, Copy)]
pub struct SslVars<'a> {
    pub protocol: &'a str,
    pub cipher: &'a str,
    pub sni: Option<&'a str>,
}

/// How a tunnel ended, for the holes of its line.
#[derive(Debug, Clone, Copy)]
pub struct TunnelEnd {
    /// Client to backend, and back.
    pub up: u64,
    pub down: u64,
    /// `client-fin`, `backend-fin`, `idle-timeout`, `reset`, `dead-peer`, `shutdown`…
    pub close: &'static str,
    /// `client`, `backend` or `proxy`.
    pub closed_by: &'static str,
    /// The first WebSocket Close's code, when frames are followed.
    pub ws_close: Option<u16>,
}

/// A tunnel's line, made when it opened: its text and where the fields
/// known at its end go (by byte offset, in order).
#[derive(Debug)]
pub struct Pending {
    pub text: String,
    pub holes: Vec<(usize, Hole)>,
}

/// A field a tunnel's line knows only at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hole {
    Known(EndField),
    /// `%{end:FORMAT}t`.
    EndTime(Option<String>),
}

/// The end fields that need nothing but their kind (all but `%{end:…}t`):
/// small enough to keep a line's holes inline (`shelf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndField {
    DurationUs,
    DurationMs,
    DurationS,
    BytesIn,
    BytesOut,
    BytesBoth,
    ConnStatus,
    Close,
    ClosedBy,
    Up,
    Down,
    WsClose,
}

impl Hole {
    /// The hole for `f`, one that [`known_at_end`] accepts.
    fn of(f: &Field) -> Hole {
        let known = match (f.code, f.arg.as_deref()) {
            (Code::DurationUs, _) => EndField::DurationUs,
            (Code::DurationT, Some("ms")) => EndField::DurationMs,
            (Code::DurationT, Some("us")) => EndField::DurationUs,
            (Code::DurationT, _) => EndField::DurationS,
            (Code::BytesIn, _) => EndField::BytesIn,
            (Code::BytesOut, _) => EndField::BytesOut,
            (Code::BytesBoth, _) => EndField::BytesBoth,
            (Code::ConnStatus, _) => EndField::ConnStatus,
            (Code::Time, arg) => return Hole::EndTime(arg.map(str::to_string)),
            (_, Some("wsgate-close")) => EndField::Close,
            (_, Some("wsgate-closed-by")) => EndField::ClosedBy,
            (_, Some("wsgate-up")) => EndField::Up,
            (_, Some("wsgate-down")) => EndField::Down,
            (_, _) => EndField::WsClose,
        };
        Hole::Known(known)
    }
}

/// What a tunnel's holes are filled from, besides its end.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub started: Instant,
    pub received: SystemTime,
    /// The request's and the 101's bytes (heads), before the tunnel's.
    pub head_in: u64,
    pub head_out: u64,
    pub status: u16,
}

/// Writes the line for `e` (without its line end).
pub fn render(format: &Format, e: &Entry<'_>) -> Pending {
    let mut out = String::with_capacity(160);
    let mut holes = Vec::new();
    for item in &format.items {
        match item {
            Item::Text(t) => out.push_str(t),
            Item::Field(f) => {
                if !status_allows(f, e.status) {
                    out.push('-');
                } else if e.tunnel && known_at_end(f) {
                    holes.push((out.len(), Hole::of(f)));
                } else {
                    field(&mut out, f, e);
                }
            }
        }
    }
    Pending { text: out, holes }
}

impl Pending {
    /// The finished line of a tunnel (without its line end).
    pub fn finish(self, opened: &Opened, end: &TunnelEnd) -> String {
        let mut out = String::with_capacity(self.text.len() + 16 * self.holes.len());
        let mut from = 0;
        for (at, hole) in &self.holes {
            out.push_str(&self.text[from..*at]);
            match hole {
                Hole::Known(f) => end_field(&mut out, *f, opened, end),
                Hole::EndTime(arg) => {
                    let now = Instant::now();
                    let at = opened.received + now.saturating_duration_since(opened.started);
                    time(&mut out, arg.as_deref(), opened.received, at);
                }
            }
            from = *at;
        }
        out.push_str(&self.text[from..]);
        out
    }
}

/// Fills `holes` (by byte offset into `text`, in order) into a line.
pub fn fill(text: &str, holes: &[(u16, EndField)], opened: &Opened, end: &TunnelEnd) -> String {
    let mut out = String::with_capacity(text.len() + 16 * holes.len() + 1);
    let mut from = 0;
    for &(at, f) in holes {
        let at = usize::from(at);
        out.push_str(&text[from..at]);
        end_field(&mut out, f, opened, end);
        from = at;
    }
    out.push_str(&text[from..]);
    out
}

fn status_allows(f: &Field, status: u16) -> bool {
    match &f.statuses {
        None => true,
        Some(s) => s.list.contains(&status) != s.negate,
    }
}

/// The fields a tunnel knows only when it ends.
fn known_at_end(f: &Field) -> bool {
    match f.code {
        Code::DurationUs
        | Code::DurationT
        | Code::BytesIn
        | Code::BytesOut
        | Code::BytesBoth
        | Code::ConnStatus => true,
        Code::Time => f.arg.as_deref().is_some_and(|a| a.starts_with("end:")),
        Code::Note => f.arg.as_deref().is_some_and(|a| {
            matches!(
                a,
                "wsgate-close"
                    | "wsgate-closed-by"
                    | "wsgate-up"
                    | "wsgate-down"
                    | "wsgate-ws-close"
            )
        }),
        _ => false,
    }
}

fn end_field(out: &mut String, f: EndField, o: &Opened, end: &TunnelEnd) {
    let us = || {
        Instant::now()
            .saturating_duration_since(o.started)
            .as_micros() as u64
    };
    let _ = match f {
        EndField::DurationUs => write!(out, "{}", us()),
        EndField::DurationMs => write!(out, "{}", us() / 1000),
        EndField::DurationS => write!(out, "{}", us() / 1_000_000),
        EndField::BytesIn => write!(out, "{}", o.head_in + end.up),
        EndField::BytesOut => write!(out, "{}", o.head_out + end.down),
        EndField::BytesBoth => write!(out, "{}", o.head_in + end.up + o.head_out + end.down),
        EndField::ConnStatus => write!(out, "-"),
        EndField::Close => write!(out, "{}", end.close),
        EndField::ClosedBy => write!(out, "{}", end.closed_by),
        EndField::Up => write!(out, "{}", end.up),
        EndField::Down => write!(out, "{}", end.down),
        EndField::WsClose => match end.ws_close {
            Some(code) => write!(out, "{code}"),
            None => write!(out, "-"),
        },
    };
}

fn field(out: &mut String, f: &Field, e: &Entry<'_>) {
    let arg = f.arg.as_deref();
    let head = e.head;
    match f.code {
        Code::RemoteAddr if arg == Some("c") => push_ip(out, e.via.unwrap_or(e.peer)),
        // Apache's %h is the client's name once a lookup found it (for
        // `Require host` or `Allow from NAME`, even with HostnameLookups Off).
        Code::RemoteHost if e.remote_host.is_some() => push_escaped(out, e.remote_host),
        Code::RemoteAddr | Code::RemoteHost => push_ip(out, e.peer),
        Code::LocalAddr => push_ip(out, e.local),
        Code::BodyBytesClf if e.body_bytes == 0 => out.push('-'),
        Code::BodyBytesClf | Code::BodyBytes => push_num(out, e.body_bytes),
        Code::Cookie => push_escaped(out, head.and_then(|h| cookie(h, arg.unwrap_or("")))),
        Code::DurationUs => push_num(out, micros(e)),
        Code::DurationT => {
            let _ = duration_t(out, arg, micros(e));
        }
        Code::Env => push_raw(out, e.env.and_then(|env| env.get(arg.unwrap_or("")))),
        Code::Filename => push_escaped(out, e.filename),
        Code::Protocol => match (head, word(e, 2)) {
            (None, Some(p)) => push_escaped(out, Some(p)),
            _ => push_escaped(out, Some(e.protocol)),
        },
        Code::RequestHeader => {
            let name = arg.unwrap_or("");
            let v = match head {
                Some(h) => h.headers.get_str(name),
                None => e
                    .line_fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str()),
            };
            push_escaped(out, v)
        }
        Code::Keepalives => push_num(out, u64::from(e.keepalives)),
        Code::User => match e.user {
            // mod_log_config's `log_remote_user`.
            Some("") => out.push_str("\"\""),
            user => push_escaped(out, user),
        },
        Code::RemoteLogname | Code::LogId | Code::Trailer => out.push('-'),
        Code::Method => push_escaped(out, head.map(|h| h.method.as_str()).or(word(e, 0))),
        Code::Note => note(out, arg.unwrap_or(""), e),
        Code::ResponseHeader => {
            let name = arg.unwrap_or("");
            let v = e
                .response_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            push_escaped(out, v)
        }
        Code::Port => match arg {
            Some("local") => push_num(out, u64::from(e.local.port())),
            Some("remote") => push_num(out, u64::from(e.peer.port())),
            _ => push_num(out, u64::from(canonical_port(e))),
        },
        Code::Pid => pid(out, arg),
        Code::Query => {
            if let Some(q) = target(e).and_then(|t| t.split_once('?')) {
                out.push('?');
                push_escaped(out, Some(q.1));
            }
        }
        Code::RequestLine => match head {
            Some(h) => {
                let line = format!("{} {} {}", h.method.as_str(), h.target.as_str(), e.protocol);
                push_escaped(out, Some(&line));
            }
            None => push_escaped(out, e.line),
        },
        Code::Handler => push_raw(out, e.handler),
        Code::Status if e.status == 0 => out.push('-'),
        Code::Status => push_num(out, u64::from(e.status)),
        Code::Time => {
            let end = e.received + micros_dur(e);
            time(out, arg, e.received, end);
        }
        Code::UrlPath => push_escaped(out, target(e).map(|t| t.split('?').next().unwrap_or(""))),
        Code::ServerName => push_escaped(out, Some(&e.server.server_name)),
        Code::HostName => {
            let host = head.and_then(|h| h.headers.get_str("host")).map(host_name);
            match host {
                Some(h) if !h.is_empty() => push_escaped(out, Some(&h)),
                _ => push_escaped(out, Some(&e.server.server_name)),
            }
        }
        Code::ConnStatus => out.push(match e.conn {
            ConnStatus::Aborted => 'X',
            ConnStatus::KeepAlive => '+',
            ConnStatus::Close => '-',
        }),
        Code::BytesIn => push_num(out, e.bytes_in),
        Code::BytesOut => push_num(out, e.bytes_out),
        Code::BytesBoth => push_num(out, e.bytes_in + e.bytes_out),
        Code::Ssl => ssl(out, arg.unwrap_or(""), e),
    }
}

/// The `n`th word of a request line that was not read as a head.
fn word<'a>(e: &Entry<'a>, n: usize) -> Option<&'a str> {
    e.line
        .and_then(|l| l.split(' ').filter(|w| !w.is_empty()).nth(n))
}

fn target<'a>(e: &Entry<'a>) -> Option<&'a str> {
    match e.head {
        Some(h) => Some(h.target.as_str()),
        None => word(e, 1),
    }
}

fn micros_dur(e: &Entry<'_>) -> std::time::Duration {
    Instant::now().saturating_duration_since(e.started)
}

fn micros(e: &Entry<'_>) -> u64 {
    micros_dur(e).as_micros() as u64
}

fn duration_t(out: &mut String, unit: Option<&str>, us: u64) -> std::fmt::Result {
    match unit {
        Some("ms") => write!(out, "{}", us / 1000),
        Some("us") => write!(out, "{us}"),
        _ => write!(out, "{}", us / 1_000_000),
    }
}

/// `%{NAME}n`: wsgate's notes (Apache has none of these names, and writes
/// "-" for them, so one format serves both).
fn note(out: &mut String, name: &str, e: &Entry<'_>) {
    match name {
        "wsgate-backend" => push_raw(out, e.backend),
        _ => out.push('-'),
    }
}

fn ssl(out: &mut String, name: &str, e: &Entry<'_>) {
    let v = match (name, e.ssl) {
        ("HTTPS", _) => Some(if e.https { "on" } else { "off" }),
        ("SSL_PROTOCOL", Some(s)) => Some(s.protocol),
        ("SSL_CIPHER", Some(s)) => Some(s.cipher),
        ("SSL_TLS_SNI", Some(s)) => s.sni,
        _ => None,
    };
    push_raw(out, v)
}

/// `%p`: the server's port — its virtual host's, or the scheme's (as
/// Apache, whose ServerName without a port leaves it to the scheme; the
/// Host header's port does not count).
fn canonical_port(e: &Entry<'_>) -> u16 {
    let default = if e.https { 443 } else { 80 };
    e.server
        .addrs
        .iter()
        .find_map(|a| a.port)
        .unwrap_or(default)
}

/// The host of a Host header: without its port, lower-case.
fn host_name(host: &str) -> String {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn cookie<'h>(head: &'h RequestHead, name: &str) -> Option<&'h str> {
    head.headers
        .fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

fn pid(out: &mut String, arg: Option<&str>) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u64;
    let _ = match arg {
        Some("tid") => write!(out, "{tid}"),
        Some("hextid") => write!(out, "{tid:x}"),
        _ => write!(out, "{}", std::process::id()),
    };
}

fn push_ip(out: &mut String, addr: SocketAddr) {
    let _ = write!(out, "{}", addr.ip().to_canonical());
}

fn push_num(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

fn push_raw(out: &mut String, v: Option<&str>) {
    out.push_str(v.unwrap_or("-"));
}

/// Apache's `ap_escape_logitem`: `"` and `\` behind a backslash, control
/// characters as `\n`-style escapes or `\xhh`, and so every byte outside
/// printable ASCII; "-" for a missing value.
fn push_escaped(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push('-');
        return;
    };
    for b in v.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x08 => out.push_str("\\b"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x0b => out.push_str("\\v"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `%t` and `%{FORMAT}t`: the request's start (or with `end:`, its end) in
/// local time; `FORMAT` is strftime's, or `sec`, `msec`, `usec`,
/// `msec_frac`, `usec_frac`.
fn time(out: &mut String, arg: Option<&str>, begin: SystemTime, end: SystemTime) {
    let (spec, at) = match arg {
        Some(a) => match a.strip_prefix("end:") {
            Some(rest) => (Some(rest), end),
            None => (Some(a.strip_prefix("begin:").unwrap_or(a)), begin),
        },
        None => (None, begin),
    };
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let _ = match spec {
        Some("sec") => write!(out, "{secs}"),
        Some("msec") => write!(out, "{}", since.as_millis()),
        Some("usec") => write!(out, "{}", since.as_micros()),
        Some("msec_frac") => write!(out, "{:03}", since.subsec_millis()),
        Some("usec_frac") => write!(out, "{:06}", since.subsec_micros()),
        Some(f) if !f.is_empty() => {
            out.push_str(&strftime(f, secs as libc::time_t));
            Ok(())
        }
        _ => {
            let tm = local_time(secs as libc::time_t);
            let off = tm.tm_gmtoff / 60;
            let sign = if off < 0 { '-' } else { '+' };
            write!(
                out,
                "[{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
                tm.tm_mday,
                MONTHS[tm.tm_mon.clamp(0, 11) as usize],
                tm.tm_year + 1900,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec,
                off.abs() / 60,
                off.abs() % 60
            )
        }
    };
}

fn local_time(t: libc::time_t) -> libc::tm {
    // SAFETY: localtime_r writes the zeroed `tm` it is given and reads `t`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

fn strftime(format: &str, t: libc::time_t) -> String {
    let Ok(c_format) = std::ffi::CString::new(format) else {
        return "-".into();
    };
    let tm = local_time(t);
    let mut buf = vec![0u8; 256];
    // SAFETY: the buffer's length is passed; the format is NUL-terminated;
    // `tm` is initialised by localtime_r.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_format.as_ptr(), &tm) };
    buf.truncate(n);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_apaches() {
        let mut out = String::new();
        push_escaped(&mut out, Some("a\"b\\c\td\u{1}é"));
        assert_eq!(out, "a\\\"b\\\\c\\td\\x01\\xc3\\xa9");
        let mut out = String::new();
        push_escaped(&mut out, None);
        assert_eq!(out, "-");
    }

    #[test]
    fn the_common_time_has_apaches_shape() {
        let mut out = String::new();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        time(&mut out, None, t, t);
        let re =
            regex::Regex::new(r"^\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]$").unwrap();
        assert!(re.is_match(&out), "{out}");
        let mut out = String::new();
        time(
            &mut out,
            Some("end:sec"),
            t,
            t + std::time::Duration::from_secs(5),
        );
        assert_eq!(out, "1800000005");
        let mut out = String::new();
        time(&mut out, Some("%Y"), t, t);
        assert!(out == "2027" || out == "2026", "{out}");
    }

    #[test]
    fn host_name_and_port_come_from_the_host_header() {
        assert_eq!(host_name("Example.COM:8080"), "example.com");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
