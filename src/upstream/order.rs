//! A polite close ordered for a set of tunnels: all of a server's (a
//! graceful stop), or those of one worker (a balancer member set to
//! Drain, Disabled or Stopped; a backend a reload removed). Tunnels whose
//! WebSocket frames are followed (`WsgateWebSocketFrames On`, see
//! `proxy::frames`) hear of an order through [`ORDERED`], ask the orders
//! that may concern them, and close with 1001 at a moment of their own
//! within the order's spread.
//!
//! An order concerns the tunnels that started before it was given: a
//! tunnel a drained member still takes (a sticky session, as Apache's
//! Drain mode allows) is not sent away at once. A stop concerns every
//! tunnel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Woken at every order, for every tunnel that waits for one: each asks
/// its own orders whether it is concerned.
pub static ORDERED: Notify = Notify::const_new();

/// How long a closing tunnel waits for frame boundaries and its peers'
/// answers to the Close before it closes anyway.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Nanoseconds since the process's first look at this clock, plus one (so
/// that 0 can mean "never"): tunnels' start times and orders' times.
pub fn clock() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
        + 1
}

/// A polite close for the tunnels one order covers.
#[derive(Debug, Default)]
pub struct Order {
    /// Tunnels started before this [`clock`] reading are concerned; 0: no
    /// order.
    before: AtomicU64,
    /// Milliseconds over which concerned tunnels spread their closes.
    spread_ms: AtomicU64,
    /// When (by [`clock`]) every concerned tunnel must have closed, for a
    /// stop; 0: [`CLOSE_WAIT`] after each tunnel's moment.
    end: AtomicU64,
}

impl Order {
    pub const fn new() -> Order {
        Order {
            before: AtomicU64::new(0),
            spread_ms: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }

    /// Orders the tunnels started until now to close over `spread`.
    pub fn give(&self, spread: Duration) {
        self.set(clock(), spread, 0);
    }

    /// Orders every tunnel, those still to come too, to close over the
    /// first half of `grace`, and closed anyway a little before its end.
    pub fn give_all(&self, grace: Duration) {
        let margin = (grace / 10).min(Duration::from_millis(500));
        let end = clock().saturating_add((grace - margin).as_nanos() as u64);
        self.set(u64::MAX, grace / 2, end);
    }

    fn set(&self, before: u64, spread: Duration, end: u64) {
        self.spread_ms
            .store(spread.as_millis() as u64, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.before.store(before, Ordering::Release);
        ORDERED.notify_waiters();
    }

    /// Takes the order back: tunnels still waiting for their moment go on.
    pub fn withdraw(&self) {
        self.before.store(0, Ordering::Release);
    }

    /// Whether an order stands.
    pub fn is_given(&self) -> bool {
        self.before.load(Ordering::Acquire) != 0
    }

    /// Whether the order covers a tunnel started at `started` (a [`clock`]
    /// reading).
    pub fn concerns(&self, started: u64) -> bool {
        started < self.before.load(Ordering::Acquire)
    }

    /// When a tunnel that hears the order now should close: a random
    /// moment within the spread, so that clients do not all come back in
    /// the same second.
    pub fn moment(&self) -> Instant {
        let spread = self.spread_ms.load(Ordering::Relaxed);
        let at = if spread == 0 {
            0
        } else {
            u64::from(random_u32()) % spread
        };
        Instant::now() + Duration::from_millis(at)
    }

    /// When a closing tunnel stops waiting for its peers' answers.
    pub fn give_up_at(&self) -> Instant {
        let now = Instant::now();
        let wait = now + CLOSE_WAIT;
        match self.end.load(Ordering::Relaxed) {
            0 => wait,
            end => wait.min(now + Duration::from_nanos(end.saturating_sub(clock()))),
        }
    }
}

/// A number no one can predict (for the spread, and a Close's mask).
pub fn random_u32() -> u32 {
    use ring::rand::SecureRandom;
    let mut m = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut m).is_err() {
        // No randomness: the clock's low bits spread as well.
        return clock() as u32;
    }
    u32::from_ne_bytes(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_concerns_the_tunnels_started_before_it() {
        let order = Order::new();
        let before = clock();
        assert!(!order.concerns(before), "no order yet");
        order.give(Duration::from_secs(1));
        let after = clock();
        assert!(order.concerns(before));
        assert!(!order.concerns(after), "a tunnel started after the order");
        order.withdraw();
        assert!(!order.concerns(before), "withdrawn");
        order.give_all(Duration::from_secs(1));
        assert!(
            order.concerns(clock()),
            "a stop concerns tunnels to come too"
        );
    }

    #[test]
    fn moments_fall_within_the_spread() {
        let order = Order::new();
        order.give(Duration::from_millis(200));
        let now = Instant::now();
        for _ in 0..100 {
            let m = order.moment();
            assert!(m >= now && m <= Instant::now() + Duration::from_millis(200));
        }
    }
}
