//! mod_remoteip's post-read step: the client a request's `RemoteIPHeader`
//! names becomes the request's client — the address its access log line
//! (`%a`; `%{c}a` stays the connection's peer), `Require ip`, `SetEnvIf
//! Remote_Addr`, X-Forwarded-For toward the backend and the status page
//! use — and the field keeps only the entries not taken. It runs first
//! after the head is read and its server known, as Apache's hook does.

use std::net::SocketAddr;

use super::header_rules::ConnFacts;
use crate::config::Config;
use crate::http::RequestHead;
use crate::route;

/// The request's connection facts once its `RemoteIPHeader` is read: the
/// client named (port 0, as Apache: it is not known), the connection's
/// peer kept as `via`. Unchanged when the server has no `RemoteIPHeader`,
/// the request lacks the field or nothing in it is taken, and when a PROXY
/// protocol header named the client (it takes precedence, as in Apache).
pub(super) fn resolve(head: &mut RequestHead, config: &Config, facts: ConnFacts) -> ConnFacts {
    let configured = |s: &crate::config::model::Server| s.remote_ip.is_some();
    if !configured(&config.main) && !config.vhosts.iter().any(configured) {
        return facts;
    }
    if facts.via.is_some() || config.proxy_protocol.applies(facts.local, facts.peer) {
        return facts;
    }
    let server = route::select_server(config, facts.local, head.headers.get_str("host"));
    let Some(settings) = &server.remote_ip else {
        return facts;
    };
    let Some(value) = head.headers.get_str(&settings.header) else {
        return facts;
    };
    let Some(walked) = settings.walk(facts.peer.ip(), value) else {
        return facts;
    };
    tracing::trace!(
        peer = %facts.peer,
        "Using {} as client's IP by {}",
        walked.client,
        walked.proxies.as_deref().unwrap_or("internal proxies")
    );
    let client = walked.client;
    let proxies = walked.proxies;
    let rest = walked.rest.map(|r| r.as_bytes().to_vec());
    let headers = &mut head.headers;
    match rest {
        Some(rest) => set(headers, &settings.header, rest),
        None => headers.remove(&settings.header),
    }
    if let (Some(name), Some(proxies)) = (&settings.proxies_header, proxies) {
        set(headers, name, proxies.into_bytes());
    }
    ConnFacts {
        peer: SocketAddr::new(client, 0),
        via: Some(facts.peer),
        ..facts
    }
}

/// `apr_table_setn`: the first field of the name gets the value in its
/// place, the others go; a new field goes last.
fn set(headers: &mut crate::http::Headers, name: &str, value: Vec<u8>) {
    let mut seen = false;
    headers.fields.retain_mut(|(n, v)| {
        if !n.eq_ignore_ascii_case(name) {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        *v = value.clone().into();
        true
    });
    if !seen {
        headers.push(name, value);
    }
}
