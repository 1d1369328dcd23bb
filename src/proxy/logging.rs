//! The access log's view of a request: what the client was sent (a
//! [`Downstream`] that watches), what routing decided ([`Trail`]), and the
//! line made from them when the answer is done — or, for a tunnel, made
//! when it opens and finished when it ends ([`TunnelLog`]).

use std::future::Future;
use std::io;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::body::{BodyError, BodyReader};
use super::downstream::Downstream;
use super::header_rules::ConnFacts;
use super::headers::ClientResponse;
use super::tunnel::{End, Summary, Who};
use crate::config::model::log::LogCondition;
use crate::config::model::Server;
use crate::config::Config;
use crate::http::body::Encoding;
use crate::http::write::LocalAnswer;
use crate::http::ResponseHead;
use crate::ops::access::shelf::Shelved;
use crate::ops::access::{self, ConnStatus, Entry, Opened, Sinks};
use crate::rules::{self, Env};

/// When and how a request came: set by the connection that read it.
#[derive(Debug, Clone, Copy)]
pub struct Visit {
    pub received: SystemTime,
    pub started: Instant,
    /// Requests before this one on its connection (`%k`).
    pub keepalives: u32,
    pub protocol: &'static str,
    /// The connection's traffic before this request.
    pub traffic: (u64, u64),
}

impl Visit {
    /// A line's facts for a request that came at this visit and got
    /// `status`, with `traffic` the connection's counts now; the rest is
    /// "none" for the caller to fill.
    pub fn entry<'a>(
        &'a self,
        facts: ConnFacts,
        server: &'a Server,
        status: u16,
        traffic: (u64, u64),
    ) -> Entry<'a> {
        Entry {
            head: None,
            line: None,
            line_fields: &[],
            protocol: self.protocol,
            received: self.received,
            started: self.started,
            peer: facts.peer,
            via: facts.via,
            local: facts.local,
            https: facts.https,
            server,
            status,
            body_bytes: 0,
            bytes_in: traffic.0.saturating_sub(self.traffic.0),
            bytes_out: traffic.1.saturating_sub(self.traffic.1),
            response_headers: &[],
            env: None,
            keepalives: self.keepalives,
            conn: ConnStatus::Close,
            filename: None,
            handler: None,
            backend: None,
            user: None,
            remote_host: None,
            ssl: None,
            tunnel: status == 101,
        }
    }

    pub fn now(keepalives: u32, protocol: &'static str, traffic: (u64, u64)) -> Visit {
        Visit {
            received: SystemTime::now(),
            started: Instant::now(),
            keepalives,
            protocol,
            traffic,
        }
    }
}

/// What routing and forwarding decided, for the log.
#[derive(Default)]
pub struct Trail<'g> {
    pub server: Option<&'g Server>,
    pub env: Env,
    /// How an upgrade went, for the metrics.
    pub upgrade: Option<crate::ops::stats::Upgrade>,
    /// Only when the configuration has access logs.
    pub log: Option<Box<LogTrail>>,
}

#[derive(Default)]
pub struct LogTrail {
    /// The worker or member the request went to.
    pub backend: Option<String>,
    /// `proxy:URL` for a proxied request.
    pub filename: Option<String>,
    /// The user Basic credentials named (`%u`).
    pub user: Option<String>,
    /// The client's name, if access control looked it up (`%h`).
    pub remote_host: Option<String>,
}

impl Trail<'_> {
    pub fn new(config: &Config) -> Self {
        Trail {
            server: None,
            env: Env::default(),
            upgrade: None,
            log: (!config.access_logs.is_empty()).then(Box::default),
        }
    }
}

/// A client side that notes what the access log needs of the answer;
/// with no log configured, it only passes things on. (Small: request
/// futures hold it, and are moved whole.)
pub struct Watch<'a, D> {
    inner: &'a mut D,
    pub seen: Option<Box<Seen>>,
}

/// What a [`Watch`] noted.
#[derive(Default)]
pub struct Seen {
    /// The response fields some format reads (`%{NAME}o`).
    wanted: Vec<String>,
    pub status: u16,
    pub body: u64,
    pub fields: Vec<(String, String)>,
}

impl<'a, D: Downstream> Watch<'a, D> {
    pub fn new(inner: &'a mut D, config: &Config) -> Self {
        if config.access_logs.is_empty() {
            return Watch { inner, seen: None };
        }
        let mut wanted: Vec<String> = Vec::new();
        for log in &config.access_logs {
            for name in log.format.response_headers() {
                if !wanted.iter().any(|w| w.eq_ignore_ascii_case(name)) {
                    wanted.push(name.to_string());
                }
            }
        }
        Watch {
            inner,
            seen: Some(Box::new(Seen {
                wanted,
                ..Seen::default()
            })),
        }
    }
}

impl Seen {
    fn note<'f>(&mut self, status: u16, fields: impl Iterator<Item = (&'f str, &'f [u8])>) {
        self.status = status;
        if self.wanted.is_empty() {
            return;
        }
        self.fields.clear();
        for (name, value) in fields {
            if self.wanted.iter().any(|w| w.eq_ignore_ascii_case(name)) {
                let value = String::from_utf8_lossy(value);
                match self
                    .fields
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    // mod_log_config joins a field's values with ", ".
                    Some((_, v)) => {
                        v.push_str(", ");
                        v.push_str(&value);
                    }
                    None => self.fields.push((name.to_string(), value.into_owned())),
                }
            }
        }
    }
}

// Each method notes what it must before it hands the client side's own
// future back: the request's futures are no larger for the watching.
impl<D: Downstream> Downstream for Watch<'_, D> {
    fn body_piece(
        &mut self,
        reader: &mut BodyReader,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Bytes>, BodyError>> + Send {
        self.inner.body_piece(reader, timeout)
    }

    fn send_answer(
        &mut self,
        answer: &LocalAnswer,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send {
        if let Some(seen) = self.seen.as_deref_mut() {
            let fields = answer.fields.iter().map(|(n, v)| (n.as_str(), &v[..]));
            seen.note(answer.status, fields);
            seen.body = answer.body.len() as u64;
        }
        self.inner.send_answer(answer, timeout)
    }

    fn send_interim(
        &mut self,
        resp: &ResponseHead,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.send_interim(resp, timeout)
    }

    fn send_head(
        &mut self,
        resp: &ResponseHead,
        c: &ClientResponse<'_>,
        first: Option<Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send {
        if let Some(seen) = self.seen.as_deref_mut() {
            // mod_log_config sees no fields of a 101: they are the
            // connection's, not the request's.
            let fields = resp
                .headers
                .fields
                .iter()
                .filter(|_| resp.status != 101)
                .map(|(n, v)| (n.as_str(), &v[..]));
            seen.note(resp.status, fields);
            seen.body = first.as_ref().map_or(0, |f| f.len() as u64);
        }
        self.inner.send_head(resp, c, first, timeout)
    }

    fn send_piece(
        &mut self,
        piece: &Bytes,
        encoding: Encoding,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send {
        if let Some(seen) = self.seen.as_deref_mut() {
            seen.body += piece.len() as u64;
        }
        self.inner.send_piece(piece, encoding, timeout)
    }

    fn finish(
        &mut self,
        encoding: Encoding,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.finish(encoding, timeout)
    }

    fn aborted(&self) -> bool {
        self.inner.aborted()
    }

    fn traffic(&self) -> (u64, u64) {
        self.inner.traffic()
    }
}

/// A tunnel's lines, made when it opened, kept on the shelf (see
/// `access::shelf`), written when it ends.
pub struct TunnelLog(Shelved);

impl TunnelLog {
    pub fn finish(self, summary: &Summary) {
        let (close, closed_by) = how_it_ended(summary);
        let end = access::TunnelEnd {
            up: summary.bytes_up,
            down: summary.bytes_down,
            close,
            closed_by,
            ws_close: summary.ws_close,
        };
        self.0.finish(&end);
    }
}

/// A tunnel that failed before it ran (the bytes that came with the heads
/// could not be passed on to `who`): its line says so.
pub fn ended_early(log: Option<TunnelLog>, who: Who) {
    if let Some(log) = log {
        log.finish(&Summary {
            end: End::Failed(who),
            bytes_up: 0,
            bytes_down: 0,
            first_fin: None,
            ws_close: None,
        });
    }
}

fn how_it_ended(s: &Summary) -> (&'static str, &'static str) {
    let who = |w: Who| match w {
        Who::Client => "client",
        Who::Backend => "backend",
        Who::Proxy => "proxy",
    };
    match s.end {
        End::Done => match s.first_fin {
            Some(Who::Backend) => ("backend-fin", "backend"),
            Some(w) => ("client-fin", who(w)),
            None => ("client-fin", "client"),
        },
        End::IdleTimeout => ("idle-timeout", "proxy"),
        End::Failed(w) => ("reset", who(w)),
        End::PeerTimedOut(w) => ("dead-peer", who(w)),
        End::Shutdown => ("shutdown", "proxy"),
        End::Drain => ("drain", "proxy"),
    }
}

/// A request answered before its head could be read (400, 408, 414,
/// 505): logged as Apache logs it, with the first line that came.
#[allow(clippy::too_many_arguments)]
pub fn write_unread(
    config: &Config,
    sinks: &Sinks,
    facts: ConnFacts,
    visit: &Visit,
    status: u16,
    raw: &[u8],
    body: u64,
    traffic: (u64, u64),
) {
    if config.access_logs.is_empty() {
        return;
    }
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)));
    let line = lines.next().unwrap_or_default();
    // The fields before the first that is not `name: value` of visible
    // characters, as Apache has read them when it refuses one; none after
    // a request line Apache refuses (not METHOD TARGET HTTP/x).
    let words: Vec<&str> = line.split(' ').collect();
    let line_ok = words.len() == 3 && words[2].starts_with("HTTP/");
    let fields: Vec<(String, String)> = lines
        .take_while(|_| line_ok)
        .map_while(|l| {
            let (name, value) = l.split_once(':')?;
            let visible = |s: &str| s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
            (!name.is_empty() && visible(name) && visible(value))
                .then(|| (name.to_string(), value.trim().to_string()))
        })
        .collect();
    let server = crate::route::select_server(config, facts.local, None);
    let env = Env::default();
    let entry = Entry {
        line: (!line.is_empty()).then_some(&*line),
        line_fields: &fields,
        body_bytes: body,
        env: Some(&env),
        ..visit.entry(facts, server, status, traffic)
    };
    write(config, sinks, &entry);
}

/// Writes the request's lines, or for a tunnel (`101`), returns them to
/// be finished when it ends.
pub fn write(config: &Config, sinks: &Sinks, entry: &Entry<'_>) -> Option<TunnelLog> {
    let server = entry.server;
    if server.access_logs.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for &idx in &server.access_logs {
        let (Some(log), Some(sink)) = (config.access_logs.get(idx), sinks.get(idx)) else {
            continue;
        };
        if !holds(&log.when, entry) {
            continue;
        }
        let pending = access::format::render(&log.format, entry);
        if entry.tunnel {
            lines.push((sink.clone(), pending));
        } else {
            sink.send(pending.text);
        }
    }
    if !entry.tunnel || lines.is_empty() {
        return None;
    }
    let opened = Opened {
        started: entry.started,
        received: entry.received,
        head_in: entry.bytes_in,
        head_out: entry.bytes_out,
        status: entry.status,
    };
    Shelved::keep(&opened, lines).map(TunnelLog)
}

fn holds(when: &LogCondition, d: &Entry<'_>) -> bool {
    match when {
        LogCondition::Always => true,
        LogCondition::Env { name, present } => {
            d.env.and_then(|e| e.get(name)).is_some() == *present
        }
        LogCondition::Expr(cond) => cond.eval(&LogExpr(d)),
    }
}

/// What an `expr=` condition reads at logging time.
struct LogExpr<'a, 'b>(&'a Entry<'b>);

impl rules::expr::Context for LogExpr<'_, '_> {
    fn var(&self, var: &rules::expr::ExprVar) -> String {
        use rules::expr::ExprVar::*;
        let d = self.0;
        let header = |n: &str| {
            d.head
                .and_then(|h| h.headers.get_str(n))
                .unwrap_or("")
                .to_string()
        };
        let target = d.head.map_or("", |h| h.target.as_str());
        match var {
            Header(n) => header(n),
            Env(n) => d.env.and_then(|e| e.get(n)).unwrap_or("").to_string(),
            RequestScheme => if d.https { "https" } else { "http" }.into(),
            HttpHost => header("host"),
            RequestUri => target.split('?').next().unwrap_or("").to_string(),
            RequestMethod => d.head.map_or("", |h| h.method.as_str()).to_string(),
            QueryString => target.split_once('?').map_or("", |q| q.1).to_string(),
            RemoteAddr => d.peer.ip().to_canonical().to_string(),
            Https => if d.https { "on" } else { "off" }.into(),
            ServerName => match header("host") {
                h if h.is_empty() => d.server.server_name.clone(),
                h => crate::http::host_without_port(&h).to_ascii_lowercase(),
            },
            ServerPort => d.local.port().to_string(),
            TheRequest => d.head.map_or(String::new(), |h| {
                format!("{} {} {}", h.method, h.target, d.protocol)
            }),
            RequestStatus => d.status.to_string(),
        }
    }
}
