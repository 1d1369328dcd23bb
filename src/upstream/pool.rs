//! A worker's idle backend connections, kept for the next request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connect::{BackendConn, BackendStream};
use super::limit::Slot;

/// Idle connections kept per worker at most, when `max=` does not say.
const DEFAULT_IDLE: usize = 64;

/// Which idle connection can serve which request: the same address and, for
/// TLS, the same SNI name (S127).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolKey {
    pub host: String,
    pub port: u16,
    pub sni: Option<String>,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: AtomicUsize,
}

struct Idle {
    key: PoolKey,
    stream: BackendStream,
    slot: Slot,
    timer: Option<super::ReadTimer>,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl Pool {
    /// `max`: the worker's `max=`, which also bounds its idle connections.
    pub fn new(max: Option<usize>) -> Pool {
        let pool = Pool::default();
        pool.set_max(max);
        pool
    }

    /// Follows a reloaded `max=`.
    pub fn set_max(&self, max: Option<usize>) {
        self.max_idle.store(
            max.filter(|m| *m > 0).unwrap_or(DEFAULT_IDLE),
            Ordering::Relaxed,
        );
    }

    /// An idle connection for `key` that is still open and younger than
    /// `ttl`, if there is one.
    pub fn take(&self, key: &PoolKey, ttl: Option<Duration>) -> Option<BackendConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = idle.iter().rposition(|i| &i.key == key) {
            let mut entry = idle.swap_remove(pos);
            let fresh = ttl.is_none_or(|t| entry.since.elapsed() < t);
            if fresh && !entry.stream.is_stale() {
                return Some(BackendConn {
                    stream: entry.stream,
                    slot: entry.slot,
                    reused: true,
                    timer: entry.timer,
                });
            }
        }
        None
    }

    /// Returns a connection whose last response was complete and well framed.
    pub fn put(&self, key: PoolKey, conn: BackendConn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle.load(Ordering::Relaxed) {
            // Drop the oldest rather than the newest: it is the likeliest to
            // have been closed by the backend's own keep-alive timeout.
            idle.remove(0);
        }
        idle.push(Idle {
            key,
            stream: conn.stream,
            slot: conn.slot,
            timer: conn.timer,
            since: Instant::now(),
        });
    }
}
