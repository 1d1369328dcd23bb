//! The pages wsgate answers itself (`SetHandler`): reads the live state —
//! counters, the open tunnels, the system's load and CPU times — and hands
//! a snapshot to `ops`, which writes the page.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::downstream::Downstream;
use super::forward::Outcome;
use super::server::Shared;
use crate::config::model::authz::Handler;
use crate::http::write::LocalAnswer;
use crate::http::{host_without_port, FieldValue, RequestHead};
use crate::ops::{metrics, status};
use crate::upstream::Generation;

/// Where the request is answered from.
pub struct Place<'a> {
    pub server_name: &'a str,
    pub local: std::net::SocketAddr,
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
        Handler::Metrics => (
            metrics::render(&shared.stats, generation),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        Handler::None => unreachable!("routing gives no page for SetHandler none"),
    };
    let mut fields = vec![("Server".into(), FieldValue::from_static(b"wsgate"))];
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
