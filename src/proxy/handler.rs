//! The pages wsgate answers itself (`SetHandler`): reads the live state —
//! counters, the open tunnels, the system's load and CPU times — and hands
//! a snapshot to `ops`, which writes the page.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::body::BodyReader;
use super::downstream::Downstream;
use super::forward::Outcome;
use super::server::Shared;
use crate::config::model::authz::Handler;
use crate::config::model::identity::ProxyStatus;
use crate::http::body::Framing;
use crate::http::write::LocalAnswer;
use crate::http::{host_without_port, FieldValue, RequestHead};
use crate::ops::{balancer_manager, metrics, status};
use crate::upstream::Generation;

/// Where the request is answered from.
pub struct Place<'a> {
    pub server_name: &'a str,
    /// The `Server` field and the status page's signature line.
    pub signed: &'a crate::http::write::Signed<'a>,
    pub local: std::net::SocketAddr,
    /// The request's body (the balancer manager's form may come in one).
    pub framing: Framing,
}

/// Answers `head` with `handler`'s page.
pub async fn serve<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    handler: Handler,
    shared: &Shared,
    generation: &Generation,
    place: Place<'_>,
    close: bool,
) -> Outcome {
    let query = head.target.split_once('?').map_or("", |(_, q)| q);
    let mut extra: Vec<(&str, String)> = Vec::new();
    let (body, content_type) = match handler {
        Handler::ServerStatus => {
            let snap = snapshot(head, shared, generation, &place);
            // mod_status looks for its options anywhere in the query.
            if let Some(at) = query.find("refresh") {
                let n = query[at + 7..].strip_prefix('=').map_or(0, leading_number);
                extra.push(("Refresh", if n < 1 { 10 } else { n }.to_string()));
            }
            if query.contains("auto") {
                (status::auto(&snap), "text/plain; charset=ISO-8859-1")
            } else {
                (status::html(&snap), "text/html; charset=ISO-8859-1")
            }
        }
        Handler::BalancerManager => {
            let form = read_form(client, place.framing, generation.config.timeout).await;
            let page = manage(head, query, &form, generation, &place);
            // A member set to Drain, Disabled or Stopped sends its tunnels
            // away politely; one back in use takes the order back.
            super::polite::follow_members(shared, &shared.generation());
            (page, "text/html; charset=ISO-8859-1")
        }
        Handler::Metrics => (
            metrics::render(&shared.stats, generation),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        Handler::None => unreachable!("routing gives no page for SetHandler none"),
    };
    let banner = FieldValue::copy_from_slice(place.signed.banner.as_bytes());
    let mut fields = vec![("Server".into(), banner)];
    for (n, v) in &extra {
        fields.push(((*n).into(), FieldValue::copy_from_slice(v.as_bytes())));
    }
    fields.push((
        "Content-Length".into(),
        FieldValue::copy_from_slice(body.len().to_string().as_bytes()),
    ));
    fields.push((
        "Content-Type".into(),
        FieldValue::from_static(content_type.as_bytes()),
    ));
    let answer = LocalAnswer {
        status: 200,
        reason: "OK".into(),
        fields,
        body: if head.method == "HEAD" {
            Vec::new()
        } else {
            body.into_bytes()
        },
        close,
    };
    let timeout = generation.config.timeout;
    match client.send_answer(&answer, timeout).await {
        Ok(()) if !close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// The first 1024 bytes of a form body, as Apache's balancer manager
/// reads (nothing on a failure: the page is shown unchanged).
async fn read_form<D: Downstream>(client: &mut D, framing: Framing, timeout: Duration) -> String {
    let mut reader = BodyReader::new(framing);
    let mut form = Vec::new();
    while form.len() < 1024 {
        match client.body_piece(&mut reader, timeout).await {
            Ok(Some(piece)) => form.extend_from_slice(&piece),
            _ => break,
        }
    }
    form.truncate(1024);
    String::from_utf8_lossy(&form).into_owned()
}

/// The name the client used for us: the Host header's, else ServerName.
fn host_name<'a>(head: &'a RequestHead, place: &Place<'a>) -> &'a str {
    head.headers
        .get_str("host")
        .map(host_without_port)
        .filter(|h| !h.is_empty())
        .unwrap_or(place.server_name)
}

/// mod_proxy_balancer's `safe_referer`: the Referer names this host.
fn safe_referer(referer: Option<&str>, host: &str) -> bool {
    let Some(rest) = referer
        .and_then(|r| r.split_once("://"))
        .map(|(_, rest)| rest)
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let name = host_without_port(authority);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    !name.is_empty()
        && name.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
}

/// The balancer manager: applies a form whose Referer and nonce are good
/// (as Apache: parameters from another site are dropped, and changes need
/// the balancer's nonce), then writes the page.
fn manage(
    head: &RequestHead,
    query: &str,
    form: &str,
    generation: &Generation,
    place: &Place<'_>,
) -> String {
    let config = &generation.config;
    let host = host_name(head, place);
    let mut params = balancer_manager::params(query, form);
    if !params.is_empty() && !safe_referer(head.headers.get_str("referer"), host) {
        tracing::error!("AH10187: ignoring params in balancer-manager cross-site access");
        params.clear();
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bsel = get("b")
        .and_then(|b| config.balancer_named(&format!("balancer://{}", b.to_ascii_lowercase())));
    let wsel = bsel.zip(get("w")).and_then(|(b, w)| {
        config
            .balancer(b)
            .members
            .iter()
            .position(|m| config.worker(m.worker).name == w)
    });
    if let Some(b) = bsel {
        let state = generation.balancer(b);
        let nonce_ok = !state.nonce.is_empty() && get("nonce") == Some(state.nonce.as_str());
        if let (true, Some(i)) = (nonce_ok, wsel) {
            let edit = balancer_manager::Edit::from_params(&params);
            let s = &state.members[i];
            if let Some(w) = edit.weight {
                s.weight.store(w, Ordering::Relaxed);
            }
            if let Some(v) = edit.disabled {
                s.disabled.store(v, Ordering::Relaxed);
            }
            if let Some(v) = edit.drain {
                s.drain.store(v, Ordering::Relaxed);
            }
            if let Some(v) = edit.stopped {
                s.stopped.store(v, Ordering::Relaxed);
            }
            tracing::info!(
                balancer = %config.balancer(b).name,
                member = %config.worker(config.balancer(b).members[i].worker).name,
                ?edit,
                "balancer manager: member changed"
            );
        }
    }
    let page = balancer_manager::Page {
        host: host.to_string(),
        version: format!("wsgate/{}", env!("CARGO_PKG_VERSION")),
        path: head.target.split('?').next().unwrap_or("/").to_string(),
        balancers: (0..config.balancers.len())
            .map(|i| balancer_view(generation, crate::config::model::balancer::BalancerIdx(i)))
            .collect(),
        selected: bsel.map(|b| (b.0, wsel)),
        signature: place.signed.footer_html(""),
    };
    balancer_manager::html(&page)
}

fn balancer_view(
    generation: &Generation,
    idx: crate::config::model::balancer::BalancerIdx,
) -> balancer_manager::BalancerView {
    use crate::config::model::balancer::LbMethod;
    use crate::config::{PassTo, RouteMatcher, Target};
    let config = &generation.config;
    let b = config.balancer(idx);
    let state = generation.balancer(idx);
    let now = std::time::Instant::now();
    let path = std::iter::once(&config.main)
        .chain(&config.vhosts)
        .flat_map(|s| &s.routes)
        .find_map(|r| match (&r.matcher, &r.target) {
            (RouteMatcher::Prefix(p), Target::Proxy(t)) if matches!(t.to, PassTo::Balancer(i) if i == idx) => {
                Some(String::from_utf8_lossy(p).into_owned())
            }
            _ => None,
        })
        .unwrap_or_default();
    let members = b
        .members
        .iter()
        .zip(&state.members)
        .map(|(m, s)| {
            let on = |a: &std::sync::atomic::AtomicBool| a.load(Ordering::Relaxed);
            let mut status = String::from("Init ");
            for (set, word) in [
                (m.ignore_errors, "Ign "),
                (on(&s.drain), "Drn "),
                (on(&s.disabled), "Dis "),
                (on(&s.stopped), "Stop "),
                (s.in_error(now), "Err "),
                (m.hot_standby, "Stby "),
                (m.hot_spare, "Spar "),
                (on(&s.hc_failed), "HcFl "),
            ] {
                if set {
                    status.push_str(word);
                }
            }
            if s.usable(now) {
                status.push_str("Ok ");
            }
            balancer_manager::MemberView {
                url: config.worker(m.worker).name.clone(),
                route: m.route.clone().unwrap_or_default(),
                redirect: m.redirect.clone().unwrap_or_default(),
                weight: crate::balancer::weight(m, s),
                lbset: m.lbset,
                status,
                elected: s.chosen.load(Ordering::Relaxed),
                busy: s.busy.load(Ordering::Relaxed),
                load: s.lbstatus.load(Ordering::Relaxed),
                traffic: s.traffic.load(Ordering::Relaxed),
                read: s.read.load(Ordering::Relaxed),
                tunnels: generation
                    .worker_state(m.worker)
                    .limit
                    .tunnels
                    .open
                    .load(Ordering::Relaxed),
            }
        })
        .collect();
    balancer_manager::BalancerView {
        name: b.name.trim_start_matches("balancer://").to_string(),
        nonce: state.nonce.clone(),
        sticky: b.sticky.as_ref().map(|(c, u)| {
            if c == u {
                c.clone()
            } else {
                format!("{c}|{u}")
            }
        }),
        nofailover: b.nofailover,
        failover_attempts: b.attempts() - 1,
        method: match b.lbmethod {
            LbMethod::ByRequests => "byrequests",
            LbMethod::ByBusyness => "bybusyness",
            LbMethod::ByTraffic => "bytraffic",
        },
        path,
        members,
    }
}

fn leading_number(s: &str) -> i64 {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().unwrap_or(0)
}

fn snapshot(
    head: &RequestHead,
    shared: &Shared,
    generation: &Generation,
    place: &Place<'_>,
) -> status::Snapshot {
    let stats = &shared.stats;
    let config = &generation.config;
    let host = head
        .headers
        .get_str("host")
        .map(host_without_port)
        .filter(|h| !h.is_empty())
        .unwrap_or(place.server_name);
    let secs = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let tunnels = if config.status_page {
        shared.tunnels.snapshot()
    } else {
        Vec::new()
    };
    status::Snapshot {
        host: host.to_string(),
        local_ip: place.local.ip().to_canonical().to_string(),
        version: format!("wsgate/{}", env!("CARGO_PKG_VERSION")),
        built: std::env::current_exe()
            .and_then(std::fs::metadata)
            .and_then(|m| m.modified())
            .ok(),
        now: SystemTime::now(),
        restarted: secs(stats.restarted.load(Ordering::Relaxed)),
        reloads: stats.reloads.load(Ordering::Relaxed),
        load: load_average(),
        cpu: cpu_times(),
        extended: config.extended_status,
        requests: stats.requests.load(Ordering::Relaxed),
        kbytes: stats.bytes_down.load(Ordering::Relaxed) / 1024,
        duration_ms: stats.duration_ms.load(Ordering::Relaxed),
        connections: stats.connections.load(Ordering::Relaxed),
        tunnels_open: stats.tunnels.load(Ordering::Relaxed),
        max_connections: config.max_connections,
        tunnels,
        signature: place.signed.footer_html("<hr />\n"),
        balancers: if config.proxy_status == ProxyStatus::Off {
            Vec::new()
        } else {
            (0..config.balancers.len())
                .map(|i| balancer_view(generation, crate::config::model::balancer::BalancerIdx(i)))
                .collect()
        },
    }
}

/// `/proc/loadavg`'s three averages (zeros where it cannot be read).
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [0; 3].map(|_| it.next().unwrap_or(0.0))
}

/// The process's user, system, children's user and system CPU seconds
/// (`/proc/self/stat`, as `times()` gives Apache).
fn cpu_times() -> [f64; 4] {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is
    // the first, utime the 12th.
    let after = text.rsplit_once(')').map_or("", |x| x.1);
    // SAFETY: sysconf only reads a constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut fields = after.split_whitespace().skip(11);
    [0; 4].map(|_| {
        fields
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / tick
    })
}
