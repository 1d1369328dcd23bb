//! A worker's idle backend connections and its `max=` limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::backend::{BackendConn, BackendStream};

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

pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    slots: Option<Arc<Semaphore>>,
    max_idle: usize,
}

struct Idle {
    key: PoolKey,
    stream: BackendStream,
    slot: Option<OwnedSemaphorePermit>,
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
    /// `max`: at most this many connections to the worker at once (`max=`).
    pub fn new(max: Option<usize>) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            slots: max.filter(|m| *m > 0).map(|m| Arc::new(Semaphore::new(m))),
            max_idle: max.filter(|m| *m > 0).unwrap_or(DEFAULT_IDLE),
        }
    }

    /// An idle connection for `key` that is still open and younger than
    /// `ttl`, if there is one.
    pub fn take(&self, key: &PoolKey, ttl: Option<Duration>) -> Option<BackendConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = idle.iter().rposition(|i| &i.key == key) {
            let entry = idle.swap_remove(pos);
            let fresh = ttl.is_none_or(|t| entry.since.elapsed() < t);
            if fresh && !entry.stream.is_stale() {
                return Some(BackendConn {
                    stream: entry.stream,
                    _slot: entry.slot,
                    reused: true,
                });
            }
        }
        None
    }

    /// A slot for a new connection, waiting at most `wait` when `max=` is
    /// reached; `None` when none came free in time.
    pub async fn slot(&self, wait: Duration) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(()),
        }
    }

    /// Returns a connection whose last response was complete and well framed.
    pub fn put(&self, key: PoolKey, conn: BackendConn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            // Drop the oldest rather than the newest: it is the likeliest to
            // have been closed by the backend's own keep-alive timeout.
            idle.remove(0);
        }
        idle.push(Idle {
            key,
            stream: conn.stream,
            slot: conn._slot,
            since: Instant::now(),
        });
    }
}
