//! What the proxy decides about a request and its response, as pure
//! functions of the heads and the configuration: whether a request is
//! answered before routing, how it is framed and connected toward the
//! backend, whether its connection may be reused, whether it upgrades; how
//! a response is framed toward the client, whether the client connection
//! closes, whether the backend connection goes back to the pool, and
//! whether a 101 opens a tunnel. Request smuggling and response splitting
//! live or die here, so every rule has its table test, and invariants are
//! checked with property tests; `forward` does the I/O these plans say.

use std::time::Duration;

use super::headers::{BodyHeader, ConnectionHeader};
use super::tunnel;
use super::upgrade::{self, Plan};
use crate::config::UpgradePolicy;
use crate::http::body::{self, Encoding, Framing};
use crate::http::{RequestHead, ResponseHead, Scheme, Version};

/// An answer wsgate makes before the request is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub status: u16,
    pub reason: &'static str,
    /// Close the client connection after it.
    pub close: bool,
    pub extra: Option<(&'static str, &'static str)>,
}

impl Local {
    const fn new(status: u16, reason: &'static str, close: bool) -> Local {
        Local {
            status,
            reason,
            close,
            extra: None,
        }
    }

    pub const BAD_REQUEST: Local = Local::new(400, "Bad Request", true);

    /// This answer, closing the connection also when `close`.
    pub fn closing_if(self, close: bool) -> Local {
        Local {
            close: self.close || close,
            ..self
        }
    }
    /// A request on a TLS connection for a server the handshake was not
    /// made for (see `tls::misdirected`).
    pub const MISDIRECTED: Local = Local::new(421, "Misdirected Request", true);
    /// No SNI name where `SSLStrictSNIVHostCheck on` asks for one.
    pub const NO_SNI: Local = Local::new(403, "Forbidden", false);
}

/// The client's connection closes after this request's answer, whatever
/// the answer: the client asked (`Connection: close`, or HTTP/1.0), or
/// `KeepAlive Off`.
pub fn client_wants_close(head: &RequestHead, keepalive: bool) -> bool {
    head.version < Version::HTTP_11 || head.headers.has_token("connection", "close") || !keepalive
}

/// Makes a parsed request head what the rest of the proxy reads (S4, RFC
/// 9112 §3.2.2): Host is required in HTTP/1.1; an absolute-form target's
/// authority replaces Host; a Host Apache's strict check refuses is a 400
/// before anything reads it (it would reach the backend, rules and logs).
/// `Ok(true)`: answer, then close — the request has both Content-Length and
/// Transfer-Encoding, which may be a smuggling attempt (RFC 9112 §6.1).
pub fn admit(head: &mut RequestHead) -> Result<bool, Local> {
    if head.version >= Version::HTTP_11 && !head.headers.contains("host") {
        return Err(Local::BAD_REQUEST);
    }
    if let Some(authority) = crate::http::absolute_form_authority(&head.target) {
        let authority = authority.to_ascii_lowercase().into_bytes();
        match head
            .headers
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            Some((_, v)) => *v = authority.into(),
            None => head.headers.push("Host", authority),
        }
    }
    if head
        .headers
        .get("host")
        .is_some_and(|h| !crate::http::valid_host(h))
    {
        return Err(Local::BAD_REQUEST);
    }
    Ok(head.headers.contains("content-length") && head.headers.contains("transfer-encoding"))
}

/// What a request's head says before it is routed: its body's framing and
/// the decremented `Max-Forwards` to send on; or the answer wsgate gives
/// itself (S5, S8, S134; `limit` is `LimitRequestBody`).
pub fn before_routing(head: &RequestHead, limit: u64) -> Result<(Framing, Option<u64>), Local> {
    let framing = body::request_framing(&head.headers, limit).map_err(|e| match e {
        body::FramingError::TooLarge => Local::new(413, "Content Too Large", true),
        // S5: a coding before chunked passes the core but mod_proxy_http
        // refuses it with 500.
        body::FramingError::Unsupported => Local::new(500, "Internal Server Error", true),
        body::FramingError::Malformed(_) => Local::BAD_REQUEST,
    })?;
    let has_body = framing != Framing::Empty;
    if head.target == "*" {
        return Err(if head.method == "OPTIONS" {
            Local::new(200, "OK", has_body)
        } else {
            Local::BAD_REQUEST
        });
    }
    if head.method == "CONNECT" {
        // Apache forwards `CONNECT /` to the backend (S134); a reverse proxy
        // has no business tunnelling to an address the client names.
        return Err(Local {
            extra: Some(("Allow", "GET, HEAD, POST, OPTIONS")),
            ..Local::new(405, "Method Not Allowed", true)
        });
    }
    let Some(v) = head.headers.get_str("max-forwards") else {
        return Ok((framing, None));
    };
    match v.trim().parse::<u64>() {
        Ok(0) if head.method == "OPTIONS" || head.method == "TRACE" => {
            Err(Local::new(200, "OK", has_body))
        }
        Ok(0) => Err(Local::new(400, "Proxy Error", true)),
        Ok(n) => Ok((framing, Some(n - 1))),
        Err(_) => Err(Local::BAD_REQUEST),
    }
}

/// The settings of a mapping that shape a request toward its backend.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub scheme: Scheme,
    /// The target's `host[:port]`.
    pub authority: &'a str,
    /// The target's host, for SNI.
    pub host: &'a str,
    pub policy: &'a UpgradePolicy,
    /// `ProxyWebsocketFallbackToProxyHttp`.
    pub fallback_to_http: bool,
    pub preserve_host: bool,
    /// The mapping allows reusing the backend connection.
    pub reuse: bool,
    /// The server's name (for a request without Host).
    pub server_name: &'a str,
}

/// How a request goes to its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan<'a> {
    pub upgrade: Plan<'a>,
    /// Legacy mod_proxy_wstunnel (fallback Off on a ws:// or wss:// target).
    pub legacy: bool,
    /// The client sent `Expect: 100-continue` (forwarded, S42).
    pub expect_continue: bool,
    /// The body is streamed after the backend's 100 rather than read
    /// ahead (S41): the client expects a 100 and has a body.
    pub stream_body: bool,
    /// The backend connection may go back to the pool afterwards (S22,
    /// S43, S144): not for an upgrade, a mapping that forbids it, or a
    /// request with both Content-Length and Transfer-Encoding.
    pub reusable: bool,
    /// The Host header to send (S38).
    pub host: &'a str,
    /// The TLS server name (S123), for a TLS backend only.
    pub sni: Option<String>,
}

impl<'a> RequestPlan<'a> {
    pub fn new(head: &'a RequestHead, framing: Framing, route: &Route<'a>) -> RequestPlan<'a> {
        let upgrade = upgrade::plan(
            route.policy,
            route.scheme,
            head.headers.get_str("upgrade").map(str::trim),
            !route.fallback_to_http,
            head.version < Version::HTTP_11,
        );
        let expect_continue = head
            .headers
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        let cl_and_te =
            head.headers.contains("content-length") && head.headers.contains("transfer-encoding");
        // S38: the client's Host as sent with ProxyPreserveHost (its
        // server name for an HTTP/1.0 request without one), else the
        // target's.
        let host = if route.preserve_host {
            head.headers.get_str("host").unwrap_or(route.server_name)
        } else {
            route.authority
        };
        // SNI: the target host, or the client's Host with
        // ProxyPreserveHost (S123); none for an IP literal (the connector
        // leaves those out).
        let sni = route
            .scheme
            .is_tls()
            .then(|| match head.headers.get_str("host") {
                Some(h) if route.preserve_host => crate::http::host_without_port(h)
                    .trim_matches(['[', ']'])
                    .to_ascii_lowercase(),
                _ => route.host.to_string(),
            });
        RequestPlan {
            reusable: !matches!(upgrade, Plan::Upgrade { .. }) && route.reuse && !cl_and_te,
            legacy: !route.fallback_to_http && route.scheme.is_websocket(),
            upgrade,
            expect_continue,
            stream_body: expect_continue && framing != Framing::Empty,
            host,
            sni,
        }
    }

    /// The Upgrade value sent, if the request goes as an upgrade.
    pub fn sent_upgrade(&self) -> Option<&str> {
        match &self.upgrade {
            Plan::Upgrade { send } => Some(send),
            _ => None,
        }
    }

    /// The `Connection` (and `Upgrade`) the backend is sent.
    pub fn connection(&self) -> ConnectionHeader<'_> {
        match self.sent_upgrade() {
            Some(v) if self.legacy => ConnectionHeader::UpgradeLegacy(v),
            Some(v) => ConnectionHeader::Upgrade(v),
            None if self.reusable => ConnectionHeader::KeepAlive,
            None => ConnectionHeader::Close,
        }
    }

    /// How the body is framed toward the backend (S41): a body read whole
    /// ahead of connecting (`prefetched` bytes, `complete`) goes with a
    /// Content-Length; a streamed one keeps the client's Content-Length, or
    /// is chunked.
    pub fn body(&self, framing: Framing, prefetched: usize, complete: bool) -> BodyHeader {
        match framing {
            Framing::Empty => BodyHeader::None,
            _ if complete && !self.stream_body => BodyHeader::Length(prefetched as u64),
            Framing::Length(n) => BodyHeader::Length(n),
            _ => BodyHeader::Chunked,
        }
    }

    /// Whether the whole request goes in the first write, so that the
    /// response can be read at once.
    pub fn fully_buffered(&self, framing: Framing, complete: bool) -> bool {
        !self.stream_body && (complete || framing == Framing::Empty)
    }
}

/// The encoding that carries a body with this header.
pub fn encoding(body: BodyHeader) -> Encoding {
    match body {
        BodyHeader::Chunked => Encoding::Chunked,
        BodyHeader::Length(_) => Encoding::Length,
        BodyHeader::None => Encoding::None,
    }
}

/// S55: whether an interim (1xx) response is relayed to the client: only
/// to HTTP/1.1 clients, and a 100 only to one that asked for it, whose
/// body was read ahead (a streamed body's 100 is the client's own).
pub fn relay_interim(head: &RequestHead, plan: &RequestPlan<'_>, status: u16) -> bool {
    let expects_100 = plan.expect_continue && head.version >= Version::HTTP_11;
    head.version >= Version::HTTP_11 && (status != 100 || (expects_100 && !plan.stream_body))
}

/// Why a backend's answer cannot be relayed (a 502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// A 101 to a request that asked for no upgrade.
    NotAsked,
    /// A 101 naming another protocol than the one asked for.
    OtherProtocol { answered: Option<String> },
    /// A Content-Length that is not a number (and no Transfer-Encoding).
    BadContentLength,
}

/// What a backend's answer leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePlan<'r> {
    /// A 101 naming the protocol asked for: relay it with this `Upgrade`
    /// value, then tunnel.
    Tunnel {
        upgrade: &'r str,
        mode: tunnel::Mode,
    },
    Relay(Relay),
}

/// How an ordinary response (also to an upgrade request, S52) goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// How the backend frames the body.
    pub backend: Framing,
    /// The framing header the client is sent, and how the body is written.
    pub client: BodyHeader,
    pub encoding: Encoding,
    /// Close the client connection after this response.
    pub close: bool,
    /// The backend offered an upgrade the worker allows: tell the client.
    pub upgrade_offer: Option<String>,
    /// The backend connection may be pooled once its body is read to the
    /// end and nothing more is buffered.
    pub backend_reusable: bool,
}

/// What the request and its connection contribute to a response's plan.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub head: &'a RequestHead,
    pub plan: &'a RequestPlan<'a>,
    /// The request's framing.
    pub framing: Framing,
    /// The request body was not read to its end (an early answer).
    pub body_left: bool,
    /// `KeepAlive`.
    pub keepalive: bool,
    pub policy: &'a UpgradePolicy,
    /// The tunnel's idle timeout: the larger of the client and backend
    /// timeouts (S64).
    pub idle: Duration,
}

/// Decides what a backend's final answer leads to (S51–S53, S79–S82).
pub fn response_plan<'r>(
    x: &Exchange<'r>,
    resp: &'r ResponseHead,
) -> Result<ResponsePlan<'r>, Unusable> {
    if resp.status == 101 {
        let sent = x.plan.sent_upgrade().ok_or(Unusable::NotAsked)?;
        let answered = resp.headers.get_str("upgrade").map(str::trim);
        if !upgrade::switch_matches(sent, answered) {
            return Err(Unusable::OtherProtocol {
                answered: answered.map(str::to_string),
            });
        }
        let mode = if x.plan.legacy {
            tunnel::Mode::CloseBoth
        } else {
            tunnel::Mode::HalfClose(Some(x.idle))
        };
        return Ok(ResponsePlan::Tunnel {
            upgrade: answered.unwrap_or(sent),
            mode,
        });
    }
    relay(x, resp).map(ResponsePlan::Relay)
}

fn relay(x: &Exchange<'_>, resp: &ResponseHead) -> Result<Relay, Unusable> {
    let head = x.head;
    let status = resp.status;
    let bodyless =
        head.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let backend =
        body::response_framing(&resp.headers, bodyless).ok_or(Unusable::BadContentLength)?;
    let wants_close = client_wants_close(head, x.keepalive);
    let (client, encoding, mut close) = match backend {
        Framing::Empty => {
            // A HEAD answer keeps the Content-Length the backend gave.
            let header = if head.method == "HEAD" {
                resp.headers
                    .get_str("content-length")
                    .and_then(|c| c.trim().parse().ok())
                    .map_or(BodyHeader::None, BodyHeader::Length)
            } else {
                BodyHeader::None
            };
            (header, Encoding::None, wants_close)
        }
        Framing::Length(n) => (BodyHeader::Length(n), Encoding::Length, wants_close),
        Framing::Chunked | Framing::Close if head.version >= Version::HTTP_11 => {
            (BodyHeader::Chunked, Encoding::Chunked, wants_close)
        }
        // An HTTP/1.0 client gets the body until the connection closes.
        Framing::Chunked | Framing::Close => (BodyHeader::None, Encoding::Raw, true),
    };
    // The client's unread body (an early answer) forbids reuse (S157).
    close |= x.body_left;
    // Apache closes after these statuses, relayed ones included
    // (ap_status_drops_connection), and after a bodiless 100-continue.
    close |= matches!(status, 400 | 408 | 411 | 413 | 414 | 417 | 500 | 501 | 503);
    close |= x.plan.expect_continue && x.framing == Framing::Empty;
    let upgrade_offer = resp
        .headers
        .get_str("upgrade")
        .filter(|v| upgrade::accepts(x.policy, v.trim()))
        .map(str::to_string);
    let backend_reusable = x.plan.reusable
        && resp.version >= Version::HTTP_11
        && !resp.headers.has_token("connection", "close")
        && backend != Framing::Close
        && !(resp.headers.contains("transfer-encoding") && resp.headers.contains("content-length"));
    Ok(Relay {
        backend,
        client,
        encoding,
        close,
        upgrade_offer,
        backend_reusable,
    })
}

#[cfg(test)]
mod tests;
