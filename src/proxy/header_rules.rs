//! When mod_headers, mod_env and mod_setenvif rules run on a request, in
//! Apache's phases, and what they read of it: `RequestHeader … early` and
//! the server's `SetEnvIf` as the head is read (post-read-request); the
//! Locations' `SetEnvIf`, then `SetEnv`, then `RequestHeader` after
//! mapping (fixups); `Header` on the response. The rules themselves are
//! `crate::rules`, pure; this is the glue that gives them the request.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::config::model::headers::Rules;
use crate::config::Server;
use crate::http::write::{local_answer, LocalAnswer, Signed};
use crate::http::{FieldValue, HeaderFields, RequestHead, Text, Version};
use crate::route::RequestPath;
use crate::rules::{self, Env};

/// The client connection's addresses, and whether it speaks TLS.
#[derive(Clone, Copy, Debug)]
pub struct ConnFacts {
    /// The client: the connection's peer, or the address a balancer's
    /// PROXY protocol header named.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub https: bool,
    /// The balancer that named `peer` (the connection's own peer), when a
    /// PROXY protocol header did.
    pub via: Option<SocketAddr>,
    /// The connection may stay open after this request: `KeepAlive On`
    /// and `MaxKeepAliveRequests` not reached (set per request; the one
    /// place the plans read either).
    pub keepalive: bool,
}

/// What the rules read of a request besides its head and environment.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub path: &'a RequestPath,
    pub facts: ConnFacts,
    pub server: &'a Server,
    /// When the request arrived (`%t`) and since when it runs (`%D`).
    pub received: SystemTime,
    pub started: Instant,
}

/// Post-read-request: `RequestHeader … early` on the head, then the
/// server's `SetEnvIf` rules (on the raw path: they run before Apache
/// decodes it), both before any mapping.
pub fn post_read<'a>(
    head: &mut RequestHead,
    path: &'a RequestPath,
    facts: ConnFacts,
    server: &'a Server,
    env: &mut Env,
) -> Context<'a> {
    let cx = Context {
        path,
        facts,
        server,
        received: SystemTime::now(),
        started: Instant::now(),
    };
    run_request_rules(head, cx, env, server.rules.request.iter(), true);
    set_env_if(
        &server.rules.setenvif,
        head,
        path.raw.as_bytes(),
        facts,
        env,
    );
    cx
}

/// Header parsing, before access control: the matching Locations'
/// `SetEnvIf` (on the decoded path), so that `Require env` and `Allow
/// from env=` see what they set, as mod_setenvif's header-parser hook
/// does in Apache.
pub fn header_parser(head: &RequestHead, cx: Context<'_>, locations: &[&Rules], env: &mut Env) {
    for loc in locations {
        set_env_if(&loc.setenvif, head, &cx.path.decoded, cx.facts, env);
    }
}

/// Fixups, after mapping and access control: `SetEnv`/`UnsetEnv`, then
/// `RequestHeader` rules, the server's before the Locations'.
pub fn fixups(head: &mut RequestHead, cx: Context<'_>, locations: &[&Rules], env: &mut Env) {
    let server = cx.server;
    for (name, value) in server
        .rules
        .setenv
        .iter()
        .chain(locations.iter().flat_map(|l| l.setenv.iter()))
    {
        match value {
            Some(v) => env.set(name, v.clone()),
            None => env.unset(name),
        }
    }
    let request_rules = server
        .rules
        .request
        .iter()
        .chain(locations.iter().flat_map(|l| l.request.iter()));
    run_request_rules(head, cx, env, request_rules, false);
}

/// Runs `RequestHeader` rules of one phase (the early ones, or the rest).
/// Their values and conditions read the request as it came, so they work
/// on a copy of its fields that replaces them at the end.
fn run_request_rules<'r>(
    head: &mut RequestHead,
    cx: Context<'_>,
    env: &Env,
    request_rules: impl Iterator<Item = &'r rules::HeaderRule>,
    early_phase: bool,
) {
    let mut request_rules = request_rules
        .filter(|r| !early_phase || matches!(r.condition, rules::Condition::Early))
        .peekable();
    if request_rules.peek().is_none() {
        return;
    }
    let view = View {
        head: &*head,
        cx,
        env,
        status: None,
    };
    let facts = view.facts();
    let mut fields = head.headers.fields.clone();
    for rule in request_rules {
        if rule.applies(&facts, early_phase) {
            rule.apply(&mut fields, &facts);
        }
    }
    head.headers.fields = fields;
}

/// The `Header` rules of the server and the matching Locations on a
/// proxied response. As in Apache, `onsuccess` rules work on the backend's
/// headers while `always` rules work on a table of their own that goes out
/// first (so `Header always unset` cannot remove a backend header).
pub fn response(
    head: &RequestHead,
    cx: Context<'_>,
    locations: &[&Rules],
    env: &Env,
    status: u16,
    fields: &mut HeaderFields,
) {
    let view = View {
        head,
        cx,
        env,
        status: Some(status),
    };
    let facts = view.facts();
    let mut always = Vec::new();
    let all = cx
        .server
        .rules
        .response
        .iter()
        .chain(locations.iter().flat_map(|l| l.response.iter()));
    for rule in all {
        if rule.applies(&facts, false) {
            let table = if rule.always {
                &mut always
            } else {
                &mut *fields
            };
            rule.apply(table, &facts);
        }
    }
    if !always.is_empty() {
        always.append(fields);
        *fields = always;
    }
}

/// An answer wsgate makes itself once the server is known, with the
/// server's `Header always` rules.
pub fn error_page(
    head: &RequestHead,
    cx: Context<'_>,
    env: &Env,
    status: u16,
    reason: &str,
    close: bool,
    signed: &Signed<'_>,
) -> LocalAnswer {
    error_page_with(head, cx, env, (status, reason), close, &[], signed)
}

/// [`error_page`] with `extra` fields of its own (a 405's `Allow`).
pub fn error_page_with(
    head: &RequestHead,
    cx: Context<'_>,
    env: &Env,
    (status, reason): (u16, &str),
    close: bool,
    extra: &[(&str, &str)],
    signed: &Signed<'_>,
) -> LocalAnswer {
    let view = View {
        head,
        cx,
        env,
        status: Some(status),
    };
    let facts = view.facts();
    let mut adjust = |fields: &mut HeaderFields| {
        for rule in cx.server.rules.response.iter().filter(|r| r.always) {
            if rule.applies(&facts, false) {
                rule.apply(fields, &facts);
            }
        }
    };
    local_answer(status, reason, extra, close, signed, &mut adjust)
}

/// `SetEnvIf` rules; `uri` is the raw path at server level and the decoded
/// one in a Location.
fn set_env_if(
    list: &[rules::SetEnvIf],
    head: &RequestHead,
    uri: &[u8],
    facts: ConnFacts,
    env: &mut Env,
) {
    if list.is_empty() {
        return;
    }
    let attrs = rules::RequestAttributes {
        remote_addr: facts.peer.ip().to_canonical().to_string(),
        server_addr: facts.local.ip().to_canonical().to_string(),
        method: &head.method,
        protocol: if head.version >= Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        },
        uri,
        headers: &head.headers.fields,
    };
    for rule in list {
        rule.apply(&attrs, env);
    }
}

/// What a rule's value and condition read: the request, its environment
/// and, for a response, its status.
struct View<'a> {
    head: &'a RequestHead,
    cx: Context<'a>,
    env: &'a Env,
    status: Option<u16>,
}

/// The request's variables for a condition outside header rules
/// (`Require expr`).
pub fn expr_view<'a>(
    head: &'a RequestHead,
    cx: Context<'a>,
    env: &'a Env,
) -> impl rules::expr::Context + 'a {
    View {
        head,
        cx,
        env,
        status: None,
    }
}

/// A condition's variables that note the request fields read through
/// them, as Apache's expression evaluator does for `Vary` (every field
/// but `Host`, in the order read).
pub struct Varying<C> {
    inner: C,
    read: std::cell::RefCell<Vec<String>>,
}

impl<C: rules::expr::Context> Varying<C> {
    pub fn new(inner: C) -> Varying<C> {
        Varying {
            inner,
            read: Default::default(),
        }
    }

    /// The fields read since the last call, as a `Vary` value.
    pub fn take(&self) -> Option<String> {
        let read = std::mem::take(&mut *self.read.borrow_mut());
        (!read.is_empty()).then(|| read.join(", "))
    }
}

impl<C: rules::expr::Context> rules::expr::Context for Varying<C> {
    fn var(&self, var: &rules::expr::ExprVar) -> String {
        if let rules::expr::ExprVar::Header(name) = var {
            if !name.eq_ignore_ascii_case("host") {
                self.read.borrow_mut().push(name.clone());
            }
        }
        self.inner.var(var)
    }
}

impl View<'_> {
    fn facts(&self) -> rules::Facts<'_> {
        let cx = &self.cx;
        rules::Facts {
            env: self.env,
            expr: self,
            received_us: cx
                .received
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0),
            elapsed_us: cx.started.elapsed().as_micros(),
            request_headers: request_fields(self.head),
        }
    }
}

fn request_fields(head: &RequestHead) -> &[(Text, FieldValue)] {
    &head.headers.fields
}

impl rules::expr::Context for View<'_> {
    fn var(&self, var: &rules::expr::ExprVar) -> String {
        use rules::expr::ExprVar::*;
        let (head, s) = (self.head, &self.cx);
        let header = |n: &str| head.headers.get_str(n).unwrap_or("").to_string();
        match var {
            Header(n) => header(n),
            Env(n) => self.env.get(n).unwrap_or("").to_string(),
            RequestScheme => if s.facts.https { "https" } else { "http" }.into(),
            HttpHost => header("host"),
            RequestUri => String::from_utf8_lossy(&s.path.decoded).into_owned(),
            RequestMethod => head.method.to_string(),
            QueryString => s.path.query.as_deref().unwrap_or_default().to_string(),
            RemoteAddr => s.facts.peer.ip().to_canonical().to_string(),
            Https => if s.facts.https { "on" } else { "off" }.into(),
            ServerName => match header("host") {
                h if h.is_empty() => s.server.server_name.clone(),
                h => crate::http::host_without_port(&h).to_ascii_lowercase(),
            },
            ServerPort => s.facts.local.port().to_string(),
            TheRequest => format!(
                "{} {} HTTP/{}.{}",
                head.method, head.target, head.version.major, head.version.minor
            ),
            RequestStatus => self.status.map(|s| s.to_string()).unwrap_or_default(),
        }
    }
}
