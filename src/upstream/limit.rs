//! A worker's `max=`: at most that many connections to the backend at once,
//! tunnels and idle pooled connections included.
//!
//! A semaphore whose size a reload may change: the slots taken before a
//! reload still count after it, so live tunnels keep the limit honest
//! across configurations (a fresh semaphore per configuration would let
//! `max=` connections through per reload).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Limit {
    counts: Mutex<Counts>,
    freed: Notify,
    /// The worker's tunnels, for the metrics: every tunnel holds a slot
    /// for its life, so its slot counts it at no cost per tunnel.
    pub tunnels: TunnelCounts,
    /// A polite close of the worker's tunnels (a drained member, a
    /// backend a reload removed): every tunnel reaches it through its slot.
    pub order: super::order::Order,
}

/// A worker's tunnels: open, opened, and bytes moved by those that ended.
#[derive(Debug, Default)]
pub struct TunnelCounts {
    pub open: AtomicU64,
    pub total: AtomicU64,
    /// Client to backend.
    pub bytes_up: AtomicU64,
    /// Backend to client.
    pub bytes_down: AtomicU64,
}

impl Slot {
    /// This slot's connection became a tunnel.
    pub fn tunnel_opened(&self) {
        let t = &self.limit.tunnels;
        t.open.fetch_add(1, Ordering::Relaxed);
        t.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Its tunnel ended (before the slot is given back).
    pub fn tunnel_closed(&self) {
        self.limit.tunnels.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The worker's limit, and with it its tunnels' polite-close order.
    pub fn limit(&self) -> &Arc<Limit> {
        &self.limit
    }

    pub fn tunnel_bytes(&self, up: u64, down: u64) {
        let t = &self.limit.tunnels;
        t.bytes_up.fetch_add(up, Ordering::Relaxed);
        t.bytes_down.fetch_add(down, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// `None`: no limit.
    max: Option<usize>,
    taken: usize,
}

/// One connection's place in a [`Limit`], given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<Limit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limit.lock();
        counts.taken -= 1;
        let room = counts.max.is_none_or(|m| counts.taken < m);
        drop(counts);
        if room {
            self.limit.freed.notify_one();
        }
    }
}

impl Limit {
    pub fn new(max: Option<usize>) -> Arc<Limit> {
        Arc::new(Limit {
            counts: Mutex::new(Counts {
                max: max.filter(|m| *m > 0),
                taken: 0,
            }),
            freed: Notify::new(),
            tunnels: TunnelCounts::default(),
            order: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the limit; slots already taken stay taken. A larger limit
    /// lets waiting connections in at once.
    pub fn set_max(&self, max: Option<usize>) {
        self.lock().max = max.filter(|m| *m > 0);
        self.freed.notify_waiters();
    }

    /// How many slots are taken.
    pub fn taken(&self) -> usize {
        self.lock().taken
    }

    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut counts = self.lock();
        if counts.max.is_some_and(|m| counts.taken >= m) {
            return None;
        }
        counts.taken += 1;
        Some(Slot {
            limit: self.clone(),
        })
    }

    /// A slot, waiting at most `wait` for one to come free; `None` when
    /// none did. Without a limit, a slot at once (it still counts).
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so that a slot freed in between
            // is not missed.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_limit_waits_then_gives_up() {
        let l = Limit::new(Some(2));
        let a = l.acquire(Duration::ZERO).await.expect("first");
        let _b = l.acquire(Duration::ZERO).await.expect("second");
        assert!(l.acquire(Duration::from_secs(1)).await.is_none());
        drop(a);
        assert!(l.acquire(Duration::ZERO).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_wakes_a_waiter() {
        let l = Limit::new(Some(1));
        let a = l.acquire(Duration::ZERO).await.expect("first");
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(Duration::from_secs(60)).await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.expect("no panic"));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_taken_before_a_smaller_limit_still_count() {
        let l = Limit::new(Some(3));
        let held: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| l.acquire(Duration::ZERO)))
                .await
                .into_iter()
                .map(|s| s.expect("a slot"))
                .collect();
        l.set_max(Some(2));
        assert!(l.acquire(Duration::from_secs(1)).await.is_none());
        drop(held);
        assert_eq!(l.taken(), 0);
        let _x = l.acquire(Duration::ZERO).await.expect("room again");
        let _y = l.acquire(Duration::ZERO).await.expect("room again");
        assert!(
            l.acquire(Duration::ZERO).await.is_none(),
            "the new max holds"
        );
        l.set_max(None);
        assert!(l.acquire(Duration::ZERO).await.is_some());
    }
}
