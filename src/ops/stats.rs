//! Counters the server keeps as it runs: read by the logs today, and by
//! metrics and the status page next.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live and total counts, updated with relaxed atomics on the hot path.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub tunnels: AtomicUsize,
    pub tunnels_total: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
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
}
