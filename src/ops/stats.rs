//! Counters the server keeps as it runs: read by the logs, the status
//! page (`status`) and the metrics (`metrics`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Live and total counts, updated with relaxed atomics on the hot path.
#[derive(Debug)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub tunnels: AtomicUsize,
    pub tunnels_total: AtomicU64,
    /// Client to backend, counted when a tunnel ends.
    pub bytes_up: AtomicU64,
    /// Backend to client, counted when a tunnel ends.
    pub bytes_down: AtomicU64,
    /// Requests whose head was read (mod_status's "Total Accesses").
    pub requests: AtomicU64,
    /// Milliseconds spent on requests, a tunnel's whole life included
    /// (mod_status's "Total Duration").
    pub duration_ms: AtomicU64,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// When the process started and when it last (re)loaded its
    /// configuration, in seconds since the epoch.
    pub started: u64,
    pub restarted: AtomicU64,
    /// Client connections accepted.
    pub connections_total: AtomicU64,
    /// Upgrade requests, by how they ended ([`Upgrade`]).
    pub upgrades: [AtomicU64; Upgrade::ALL.len()],
    /// From a request's head to its 101, for upgrades that switched.
    pub handshake: Histogram,
    /// How long tunnels lived, counted when they end.
    pub tunnel_life: Histogram,
    /// Tunnels closed because a peer stopped answering (TCP keepalive,
    /// `TCP_USER_TIMEOUT` or `WsgateWebSocketPing`).
    pub dead_peers: AtomicU64,
    /// Whether times are measured: durations and the histograms cost
    /// clock reads on every request and tunnel, paid only while a status
    /// page or the metrics show them (as Apache's scoreboard times only
    /// with mod_status). Counts run always.
    pub timed: std::sync::atomic::AtomicBool,
}

/// How an upgrade request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The backend switched protocols: a tunnel.
    Switched,
    /// The backend answered something else (or wsgate refused the
    /// upgrade for the worker, 426), relayed to the client.
    Refused,
    /// No connection to the backend (refused, unreachable, `max=` full).
    ConnectError,
    /// The backend did not answer in time.
    Timeout,
    /// The backend's answer was broken, or it closed.
    BackendError,
    /// The client went away or failed first.
    ClientError,
    /// Answered by wsgate without a backend: no route, `Require`, a
    /// rewrite's status or redirect, a bad request.
    NotProxied,
}

impl Upgrade {
    pub const ALL: [Upgrade; 7] = [
        Upgrade::Switched,
        Upgrade::Refused,
        Upgrade::ConnectError,
        Upgrade::Timeout,
        Upgrade::BackendError,
        Upgrade::ClientError,
        Upgrade::NotProxied,
    ];

    /// Its label in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Upgrade::Switched => "switched",
            Upgrade::Refused => "refused",
            Upgrade::ConnectError => "connect_error",
            Upgrade::Timeout => "timeout",
            Upgrade::BackendError => "backend_error",
            Upgrade::ClientError => "client_error",
            Upgrade::NotProxied => "not_proxied",
        }
    }
}

/// A Prometheus histogram with fixed buckets (upper bounds in seconds):
/// one relaxed increment per bucket hit, the sum in microseconds.
#[derive(Debug)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub counts: Box<[AtomicU64]>,
    pub sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Handshake buckets: 1 ms to 10 s.
pub const HANDSHAKE_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Tunnel lifetime buckets: a second to a day.
pub const TUNNEL_LIFE_BOUNDS: &[f64] = &[1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Default for Stats {
    fn default() -> Self {
        let now = unix_now();
        Stats {
            connections: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            tunnels_total: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            duration_ms: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            started: now,
            restarted: AtomicU64::new(now),
            connections_total: AtomicU64::new(0),
            upgrades: Default::default(),
            handshake: Histogram::new(HANDSHAKE_BOUNDS),
            tunnel_life: Histogram::new(TUNNEL_LIFE_BOUNDS),
            dead_peers: AtomicU64::new(0),
            timed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Stats {
    pub fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn dead_peer(&self) {
        self.dead_peers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_tunnel_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    /// Whether times are measured (see [`Stats::timed`]).
    pub fn is_timed(&self) -> bool {
        self.timed.load(Ordering::Relaxed)
    }

    /// A request whose head was read.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Time a request (or the tunnel it became) took.
    pub fn add_duration(&self, d: Duration) {
        self.duration_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn upgrade(&self, how: Upgrade) {
        self.upgrades[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A new configuration took over (Apache's graceful restart: a new
    /// restart time and configuration generation).
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.restarted.store(unix_now(), Ordering::Relaxed);
    }
}
