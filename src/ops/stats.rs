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
}

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

    pub fn add_tunnel_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
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

    /// A new configuration took over (Apache's graceful restart: a new
    /// restart time and configuration generation).
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.restarted.store(unix_now(), Ordering::Relaxed);
    }
}
