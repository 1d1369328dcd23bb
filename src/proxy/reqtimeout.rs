//! mod_reqtimeout's clock for one stage of reading from a client (the TLS
//! handshake, a request head, a body): the stage's time counts from its
//! first read; each byte received moves the limit later by 1/MinRate of a
//! second, never past the stage's maximum.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::model::identity::ReadStage;

#[derive(Debug, Clone, Copy)]
pub struct ReadClock {
    deadline: Instant,
    /// The stage's maximum, past which bytes no longer extend it.
    cap: Option<Instant>,
    /// How much later each byte moves the deadline (0: it does not).
    per_byte: Duration,
}

impl ReadClock {
    /// The clock of `stage` started `now`; `None` for a stage without a
    /// limit of its own.
    pub fn start(stage: &ReadStage, now: Instant) -> Option<ReadClock> {
        if stage.is_off() {
            return None;
        }
        Some(ReadClock {
            deadline: now + stage.timeout,
            cap: stage.max.map(|m| now + m),
            // mod_reqtimeout's rate factor: whole microseconds per byte.
            per_byte: stage.min_rate.map_or(Duration::ZERO, |r| {
                Duration::from_micros(1_000_000 / u64::from(r.get()))
            }),
        })
    }

    /// `n` bytes arrived.
    pub fn extend(&mut self, n: usize) {
        if n == 0 || self.per_byte.is_zero() {
            return;
        }
        let later = self
            .deadline
            .checked_add(
                self.per_byte
                    .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
            )
            .unwrap_or(self.deadline);
        self.deadline = match self.cap {
            Some(cap) => later.min(cap),
            None => later,
        };
    }

    #[cfg(test)]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deadline of one read: the stage's, or `per_read` from `now`
    /// (`Timeout`) if that comes first, as Apache sets the socket's
    /// timeout to the shorter of the two.
    pub fn read_deadline(&self, now: Instant, per_read: Duration) -> Instant {
        self.deadline.min(now + per_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn stage(timeout: u64, max: Option<u64>, rate: Option<u32>) -> ReadStage {
        ReadStage {
            timeout: Duration::from_secs(timeout),
            max: max.map(Duration::from_secs),
            min_rate: rate.and_then(NonZeroU32::new),
        }
    }

    #[test]
    fn bytes_push_the_deadline_by_one_over_min_rate_each() {
        let now = Instant::now();
        let mut c = ReadClock::start(&stage(20, Some(40), Some(500)), now).unwrap();
        assert_eq!(c.deadline(), now + Duration::from_secs(20));
        c.extend(500);
        assert_eq!(c.deadline(), now + Duration::from_secs(21));
        c.extend(1);
        assert_eq!(c.deadline(), now + Duration::from_millis(21_002));
    }

    #[test]
    fn the_deadline_stops_at_the_stages_maximum() {
        let now = Instant::now();
        let mut c = ReadClock::start(&stage(1, Some(2), Some(500)), now).unwrap();
        c.extend(100_000);
        assert_eq!(c.deadline(), now + Duration::from_secs(2));
    }

    #[test]
    fn without_a_maximum_bytes_extend_without_end_and_without_a_rate_not_at_all() {
        let now = Instant::now();
        let mut c = ReadClock::start(&stage(20, None, Some(500)), now).unwrap();
        c.extend(500 * 100);
        assert_eq!(c.deadline(), now + Duration::from_secs(120));
        let mut c = ReadClock::start(&stage(5, None, None), now).unwrap();
        c.extend(1_000_000);
        assert_eq!(c.deadline(), now + Duration::from_secs(5));
    }

    #[test]
    fn a_stage_of_zero_has_no_clock_and_a_read_waits_at_most_timeout() {
        let now = Instant::now();
        assert!(ReadClock::start(&stage(0, None, None), now).is_none());
        let c = ReadClock::start(&stage(20, None, None), now).unwrap();
        let read = c.read_deadline(now, Duration::from_secs(3));
        assert_eq!(read, now + Duration::from_secs(3));
    }
}
