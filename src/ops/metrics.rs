//! wsgate's metrics in the Prometheus text exposition format (0.0.4),
//! written by hand from the counters: `SetHandler wsgate-metrics`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::stats::Stats;
use super::tunnels::Tunnels;
use crate::config::Config;

/// The exposition text.
pub fn render(stats: &Stats, _tunnels: &Tunnels, _config: &Config) -> String {
    let mut o = String::with_capacity(2048);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metric(
        &mut o,
        "wsgate_connections_open",
        "gauge",
        "Client connections open, tunnels included.",
        stats.connections.load(Ordering::Relaxed) as u64,
    );
    metric(
        &mut o,
        "wsgate_requests_total",
        "counter",
        "Requests whose head was read.",
        load(&stats.requests),
    );
    metric(
        &mut o,
        "wsgate_tunnels_open",
        "gauge",
        "Tunnels open.",
        stats.tunnels.load(Ordering::Relaxed) as u64,
    );
    metric(
        &mut o,
        "wsgate_tunnels_total",
        "counter",
        "Tunnels opened.",
        load(&stats.tunnels_total),
    );
    metric(
        &mut o,
        "wsgate_reloads_total",
        "counter",
        "Configuration reloads.",
        load(&stats.reloads),
    );
    o
}

fn metric(o: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        o,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
