//! wsgate's metrics in the Prometheus text exposition format (0.0.4),
//! written by hand from the counters (`SetHandler wsgate-metrics`): the
//! hot path pays a few relaxed atomic increments per tunnel and request,
//! and only a scrape walks the workers and formats text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::{Histogram, Stats, Upgrade};
use crate::config::{Config, WorkerIdx};
use crate::upstream::Generation;

/// The exposition text.
pub fn render(stats: &Stats, generation: &Generation) -> String {
    let config = &generation.config;
    let mut o = String::with_capacity(4096);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gauge_usize = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
    single(
        &mut o,
        "wsgate_connections_open",
        "gauge",
        "Client connections open (HTTP/2 streams that became tunnels count as connections).",
        gauge_usize(&stats.connections),
    );
    single(
        &mut o,
        "wsgate_connections_total",
        "counter",
        "Client connections accepted.",
        get(&stats.connections_total),
    );
    single(
        &mut o,
        "wsgate_requests_total",
        "counter",
        "Requests whose head was read.",
        get(&stats.requests),
    );
    single(
        &mut o,
        "wsgate_tunnels_open",
        "gauge",
        "Tunnels open.",
        gauge_usize(&stats.tunnels),
    );
    single(
        &mut o,
        "wsgate_tunnels_total",
        "counter",
        "Tunnels opened.",
        get(&stats.tunnels_total),
    );
    header(
        &mut o,
        "wsgate_tunnel_bytes_total",
        "counter",
        "Bytes moved by tunnels that ended, by direction (in: client to backend).",
    );
    let _ = writeln!(
        o,
        "wsgate_tunnel_bytes_total{{direction=\"in\"}} {}",
        get(&stats.bytes_up)
    );
    let _ = writeln!(
        o,
        "wsgate_tunnel_bytes_total{{direction=\"out\"}} {}",
        get(&stats.bytes_down)
    );
    routes(&mut o, config, generation);
    header(&mut o, "wsgate_upgrades_total", "counter", "Upgrade requests by outcome: switched (101), refused (the backend answered otherwise), connect_error, timeout, backend_error, client_error, not_proxied (answered by wsgate).");
    for u in Upgrade::ALL {
        let _ = writeln!(
            o,
            "wsgate_upgrades_total{{outcome=\"{}\"}} {}",
            u.label(),
            get(&stats.upgrades[u as usize])
        );
    }
    histogram(
        &mut o,
        "wsgate_upgrade_duration_seconds",
        "From an upgrade request's head to the 101 sent to the client.",
        &stats.handshake,
    );
    histogram(
        &mut o,
        "wsgate_tunnel_duration_seconds",
        "How long tunnels lived, counted when they end.",
        &stats.tunnel_life,
    );
    single(
        &mut o,
        "wsgate_tunnels_dead_peer_total",
        "counter",
        "Tunnels closed because a peer stopped answering (TCP keepalive or WsgateTCPUserTimeout).",
        get(&stats.dead_peers),
    );
    single(
        &mut o,
        "wsgate_reloads_total",
        "counter",
        "Configuration reloads.",
        get(&stats.reloads),
    );
    single(
        &mut o,
        "wsgate_config_generation",
        "gauge",
        "The configuration generation (1 at start, one more per reload).",
        get(&stats.reloads) + 1,
    );
    single(
        &mut o,
        "wsgate_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the epoch.",
        stats.started,
    );
    o
}

/// Tunnels by route (the ProxyPass target: a worker's url or a balancer)
/// and member (the worker).
fn routes(o: &mut String, config: &Config, generation: &Generation) {
    let mut rows = Vec::with_capacity(config.workers.len() + 1);
    for (i, w) in config.workers.iter().enumerate() {
        // Two ProxyPass lines with one url are two workers: told apart.
        let member = match w.id.nth {
            0 => w.name.clone(),
            n => format!("{}#{n}", w.name),
        };
        let route = w.id.balancer.clone().unwrap_or_else(|| member.clone());
        let t = &generation.worker_state(WorkerIdx(i)).limit.tunnels;
        rows.push((route, member, t));
    }
    let generic = &generation.generic_state().limit.tunnels;
    rows.push(("(generic)".into(), "(generic)".into(), generic));
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    header(
        o,
        "wsgate_route_tunnels_open",
        "gauge",
        "Tunnels open, by route and member.",
    );
    for (r, m, t) in &rows {
        let _ = writeln!(
            o,
            "wsgate_route_tunnels_open{{route=\"{}\",member=\"{}\"}} {}",
            label(r),
            label(m),
            get(&t.open)
        );
    }
    header(
        o,
        "wsgate_route_tunnels_total",
        "counter",
        "Tunnels opened, by route and member.",
    );
    for (r, m, t) in &rows {
        let _ = writeln!(
            o,
            "wsgate_route_tunnels_total{{route=\"{}\",member=\"{}\"}} {}",
            label(r),
            label(m),
            get(&t.total)
        );
    }
    header(
        o,
        "wsgate_route_tunnel_bytes_total",
        "counter",
        "Bytes moved by tunnels that ended, by route, member and direction.",
    );
    for (r, m, t) in &rows {
        for (dir, v) in [("in", &t.bytes_up), ("out", &t.bytes_down)] {
            let _ = writeln!(o, "wsgate_route_tunnel_bytes_total{{route=\"{}\",member=\"{}\",direction=\"{dir}\"}} {}", label(r), label(m), get(v));
        }
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(o: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(o, name, kind, help);
    let _ = writeln!(o, "{name} {value}");
}

fn histogram(o: &mut String, name: &str, help: &str, h: &Histogram) {
    header(o, name, "histogram", help);
    let mut cumulative = 0;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative += c.load(Ordering::Relaxed);
        let le = h
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(o, "{name}_sum {sum}\n{name}_count {cumulative}");
}

/// A label value as the text format escapes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
