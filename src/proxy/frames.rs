//! The opt-in WebSocket frame tracker (`WsgateWebSocketFrames On`): it
//! reads frame headers as bytes go through a tunnel — length, opcode,
//! mask — and never unmasks or copies a payload (a Close frame's two-byte
//! code excepted), so wsgate knows where a frame ends. With that, a
//! tunnel ordered to close (a graceful stop; its balancer member set to
//! Drain, Disabled or Stopped; its backend removed by a reload: see
//! `upstream::order`) closes politely: at a frame boundary it sends Close
//! 1001 "going away" to the client and to the backend, waits a moment for
//! their answers, then closes — at a moment spread over half of
//! `GracefulShutdownTimeout`, so that thousands of clients do not come
//! back in the same second. Browsers see 1001, not 1006.

use std::pin::Pin;
use std::sync::Arc;

use super::ping::Pinger;
use super::tunnel::Resting;
use crate::config::model::WsPing;
use crate::upstream::order::{Order, ORDERED};
use crate::upstream::Limit;

/// Close 1001, "going away".
pub const GOING_AWAY: u16 = 1001;

/// Where one direction's byte stream is, frame by frame.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    /// Payload bytes of the current frame still to come.
    need: u64,
    /// The current frame's header, as far as it has come.
    head: [u8; 14],
    have: u8,
    /// Payload bytes read so far of a Close frame (its code is captured).
    close_at: Option<u8>,
    code: [u8; 2],
    mask: [u8; 4],
    /// The first Close frame's code (0 for a Close without one).
    pub close: Option<u16>,
    /// Close frames seen.
    pub closes: u32,
    /// Bytes followed so far (read from the sender).
    pub seen: u64,
}

impl Frames {
    /// Between two frames.
    pub fn at_boundary(&self) -> bool {
        self.need == 0 && self.have == 0
    }

    /// How many bytes to read so as to stop at the end of the current
    /// frame: its payload's rest, or one header byte at a time.
    pub fn room(&self) -> usize {
        if self.need > 0 {
            self.need.min(usize::MAX as u64) as usize
        } else {
            1
        }
    }

    /// Follows `bytes` of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.need > 0 {
                let k = (self.need.min(bytes.len() as u64)) as usize;
                self.capture(&bytes[..k]);
                self.need -= k as u64;
                bytes = &bytes[k..];
                continue;
            }
            self.head[self.have as usize] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(total) = self.head_len() {
                if self.have as usize == total {
                    self.start_payload(total);
                }
            }
        }
    }

    /// The header's whole length, once its first two bytes are known.
    fn head_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask)
    }

    fn start_payload(&mut self, total: usize) {
        let len7 = self.head[1] & 0x7f;
        let (len, at) = match len7 {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask = if self.head[1] & 0x80 != 0 {
            [
                self.head[at],
                self.head[at + 1],
                self.head[at + 2],
                self.head[at + 3],
            ]
        } else {
            [0; 4]
        };
        debug_assert_eq!(total, at + if self.head[1] & 0x80 != 0 { 4 } else { 0 });
        let opcode = self.head[0] & 0x0f;
        self.have = 0;
        self.need = len;
        self.close_at = None;
        if opcode == 0x8 {
            self.closes += 1;
        }
        if opcode == 0x8 && self.close.is_none() {
            if len >= 2 {
                self.close_at = Some(0);
            } else {
                self.close = Some(0);
            }
        }
    }

    /// The first two payload bytes of a Close frame: its code.
    fn capture(&mut self, bytes: &[u8]) {
        let Some(mut at) = self.close_at else { return };
        for &b in bytes.iter().take(2usize.saturating_sub(at as usize)) {
            self.code[at as usize] = b ^ self.mask[at as usize % 4];
            at += 1;
        }
        if at >= 2 {
            self.close = Some(u16::from_be_bytes(self.code));
            self.close_at = None;
        } else {
            self.close_at = Some(at);
        }
    }
}

/// A Close frame with `code`, as a server sends it (unmasked).
pub fn close_from_server(code: u16) -> Vec<u8> {
    let c = code.to_be_bytes();
    vec![0x88, 0x02, c[0], c[1]]
}

/// A Close frame with `code`, as a client sends it (masked with `mask`).
pub fn close_from_client(code: u16, mask: [u8; 4]) -> Vec<u8> {
    let c = code.to_be_bytes();
    vec![
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        c[0] ^ mask[0],
        c[1] ^ mask[1],
    ]
}

/// A mask no one can predict (RFC 6455 §5.3).
pub fn new_mask() -> [u8; 4] {
    crate::upstream::order::random_u32().to_be_bytes()
}

/// Where a tracked tunnel is in a polite close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Heard an order that concerns it; waits for its moment in the spread.
    Waiting,
    /// Cutting each direction at a frame boundary with a Close.
    Draining,
}

/// The orders a tunnel listens to: its server's stop and its worker's
/// (see `upstream::order`), and when it started.
pub struct Scope {
    pub stop: Arc<Order>,
    pub worker: Arc<Limit>,
    pub started: u64,
}

impl Scope {
    /// The order that concerns this tunnel now, if any.
    pub fn heard(&self) -> Option<&Order> {
        if self.stop.concerns(self.started) {
            Some(&self.stop)
        } else if self.worker.order.concerns(self.started) {
            Some(&self.worker.order)
        } else {
            None
        }
    }
}

/// A tracked tunnel's frames and polite close.
pub struct Tracker {
    /// Client to backend, and back.
    pub frames: [Frames; 2],
    pub phase: Phase,
    /// Set when the tunnel's task starts (it knows the tunnel's server,
    /// worker and age); without it the tunnel only follows frames.
    pub scope: Option<Scope>,
    signal: Option<Pin<Box<tokio::sync::futures::Notified<'static>>>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A direction no longer forwarded: its Close went out (or needs none).
    pub cut: [bool; 2],
    /// The Close each direction's receiver is sent, and how much of it.
    pub out: [Option<(Vec<u8>, usize)>; 2],
    /// `WsgateWebSocketPing`.
    pub ping: Option<Pinger>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            frames: [Frames::default(), Frames::default()],
            phase: Phase::Running,
            scope: None,
            signal: None,
            timer: None,
            cut: [false; 2],
            out: [None, None],
            ping: None,
        }
    }
}

impl Tracker {
    /// A tracker for a tunnel in the state `now`, with its Pings if any.
    pub fn boxed(ping: Option<WsPing>, now: &Resting) -> Box<Tracker> {
        Box::new(Tracker {
            ping: ping.map(|cfg| Pinger::new(cfg, now.last_activity)),
            ..Tracker::default()
        })
    }

    /// Whether the tunnel closes now: an order concerns it and its moment
    /// in the order's spread came (and the order still stands then).
    pub fn poll_phase(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future;
        let Some(scope) = self.scope.as_ref() else {
            return false;
        };
        if self.phase == Phase::Running {
            // Registered before looking, so that an order given in
            // between is not missed.
            let moment = loop {
                let signal = self
                    .signal
                    .get_or_insert_with(|| Box::pin(ORDERED.notified()));
                signal.as_mut().enable();
                if let Some(order) = scope.heard() {
                    break order.moment();
                }
                if signal.as_mut().poll(cx).is_pending() {
                    return false;
                }
                // Another tunnel's order: listen again.
                self.signal = None;
            };
            self.signal = None;
            self.phase = Phase::Waiting;
            self.timer = Some(Box::pin(tokio::time::sleep_until(moment)));
        }
        if self.phase == Phase::Waiting {
            let Some(timer) = self.timer.as_mut() else {
                return false;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let Some(order) = scope.heard() else {
                // Taken back (the member is in use again): on as before.
                self.phase = Phase::Running;
                self.timer = None;
                return self.poll_phase(cx);
            };
            self.phase = Phase::Draining;
            self.timer = Some(Box::pin(tokio::time::sleep_until(order.give_up_at())));
        }
        true
    }

    /// The close's time is up: close whatever the peers do.
    pub fn poll_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future;
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    /// The first Close either side sent, for the log.
    pub fn close_code(&self) -> Option<u16> {
        self.frames[0].close.or(self.frames[1].close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n < 65536 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn boundaries_are_found_whatever_the_pieces() {
        let mut stream = Vec::new();
        stream.extend(frame(1, b"hello", Some([1, 2, 3, 4])));
        stream.extend(frame(2, &vec![7u8; 300], None));
        stream.extend(frame(2, &vec![9u8; 70_000], Some([9, 8, 7, 6])));
        stream.extend(frame(8, &[0x03, 0xe8, b'o', b'k'], Some([5, 6, 7, 8])));
        let ends = [11usize, 11 + 304, 11 + 304 + 70_014, stream.len()];
        for piece in [1usize, 2, 3, 7, 100, 4096, stream.len()] {
            let mut f = Frames::default();
            let mut at = 0;
            while at < stream.len() {
                let end = (at + piece).min(stream.len());
                f.feed(&stream[at..end]);
                at = end;
                assert_eq!(
                    f.at_boundary(),
                    ends.contains(&at),
                    "piece {piece}, at {at}"
                );
            }
            assert_eq!(f.close, Some(1000), "piece {piece}");
        }
    }

    #[test]
    fn the_close_frames_wsgate_sends_read_back() {
        let mut f = Frames::default();
        f.feed(&close_from_client(GOING_AWAY, [0xde, 0xad, 0xbe, 0xef]));
        assert!(f.at_boundary());
        assert_eq!(f.close, Some(1001));
        let mut f = Frames::default();
        f.feed(&close_from_server(GOING_AWAY));
        assert_eq!(f.close, Some(1001));
        let mut f = Frames::default();
        f.feed(&frame(8, &[], None));
        assert_eq!(f.close, Some(0));
    }
}
