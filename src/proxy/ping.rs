//! WebSocket liveness (`WsgateWebSocketPing EVERY WAIT`): a side of a
//! tracked tunnel from which nothing came for EVERY is sent a Ping — at a
//! frame boundary of the stream toward it, so that no frame is cut — and
//! if still nothing comes from it within WAIT, it is taken for dead and
//! the tunnel closes (`dead-peer` in the log, counted in the metrics).
//!
//! Anything from the side answers, not only its Pong: a peer that talks
//! needs no Ping. The Pong itself goes on to the other side, as RFC 6455
//! §5.5.3 allows an unsolicited Pong (receivers ignore it); wsgate never
//! takes bytes out of a stream. A dead peer (a phone gone from the
//! network, a NAT that forgot the connection) sends no RST, so without
//! this its tunnel would wait for the idle timeout, or for ever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use crate::config::model::WsPing;

/// A side of the tunnel: 0 the client, 1 the backend.
pub const CLIENT: usize = 0;
pub const BACKEND: usize = 1;

/// The Pings one tracked tunnel sends, and the answers it waits for.
pub struct Pinger {
    pub cfg: WsPing,
    /// When each side is next looked at.
    next: [Instant; 2],
    /// How many bytes had come from each side when last looked at.
    heard: [u64; 2],
    /// A Ping went to the side and nothing came from it since.
    waiting: [bool; 2],
    /// A Ping to the side, due or partly written: (bytes, written).
    out: [Option<([u8; 6], u8, u8)>; 2],
    timer: Pin<Box<Sleep>>,
}

impl Pinger {
    /// For a tunnel whose sides were last heard at `last`, with a new
    /// frame tracker (nothing read by it yet).
    pub fn new(cfg: WsPing, last: Instant) -> Pinger {
        let first = (last + cfg.every()).max(Instant::now());
        Pinger {
            cfg,
            next: [first; 2],
            heard: [0; 2],
            waiting: [false; 2],
            out: [None, None],
            timer: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    /// Nothing is owed: no Ping due or half written, none unanswered (a
    /// tunnel may rest only then).
    pub fn is_quiet(&self) -> bool {
        self.out.iter().all(Option::is_none) && !self.waiting.iter().any(|w| *w)
    }

    /// Looks at each side whose time came, with `heard` the bytes read from
    /// each so far (by the tracker, which starts at 0 with the tunnel's
    /// task) and `stuck` whether bytes wait for a side that does not read:
    /// a side heard from since is alive; a silent one is due a Ping, or —
    /// if it had one, or its Ping could not go for WAIT because bytes
    /// toward it are stuck — dead (returned).
    pub fn poll_check(
        &mut self,
        cx: &mut Context<'_>,
        heard: [u64; 2],
        stuck: [bool; 2],
    ) -> Option<usize> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            let now = Instant::now();
            for side in [CLIENT, BACKEND] {
                if self.next[side] > now {
                    continue;
                }
                if heard[side] != self.heard[side] {
                    self.heard[side] = heard[side];
                    self.waiting[side] = false;
                    self.next[side] = now + self.cfg.every();
                    // A Ping not yet begun is not needed any more.
                    if !self.holds(side) {
                        self.out[side] = None;
                    }
                } else if self.waiting[side] || (self.owes(side) && stuck[side]) {
                    return Some(side);
                } else {
                    // Due now; if the stream toward the side stays in the
                    // middle of a frame, looked at again after WAIT.
                    if self.out[side].is_none() {
                        self.out[side] = Some(ping_to(side));
                    }
                    self.next[side] = now + self.cfg.wait();
                }
            }
            let next = self.next[CLIENT].min(self.next[BACKEND]);
            self.timer.as_mut().reset(next);
        }
    }

    /// Whether a Ping to `side` is half written: the stream toward it must
    /// not go on until it is out.
    pub fn holds(&self, side: usize) -> bool {
        self.out[side].is_some_and(|(_, _, at)| at > 0)
    }

    /// Writes the Ping due to `side` through `to`, which the caller may
    /// only give when the stream toward the side is between two frames
    /// with nothing held. Ready when nothing is owed to it any more.
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        side: usize,
        to: &mut W,
    ) -> Poll<std::io::Result<()>> {
        while let Some((bytes, len, at)) = self.out[side].as_mut() {
            match Pin::new(&mut *to).poll_write(cx, &bytes[*at as usize..*len as usize]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    *at += n as u8;
                    if *at == *len {
                        self.out[side] = None;
                        self.waiting[side] = true;
                        // WAIT counts from the Ping's departure.
                        self.next[side] = Instant::now() + self.cfg.wait();
                        let next = self.next[CLIENT].min(self.next[BACKEND]);
                        self.timer.as_mut().reset(next);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut *to).poll_flush(cx)
    }

    /// Whether a Ping to either side is half written.
    pub fn holds_any(&self) -> bool {
        self.holds(CLIENT) || self.holds(BACKEND)
    }

    /// Whether a Ping is due to either side.
    pub fn owes_any(&self) -> bool {
        self.out.iter().any(Option::is_some)
    }

    /// Whether a Ping is due to `side`.
    pub fn owes(&self, side: usize) -> bool {
        self.out[side].is_some()
    }
}

/// A Ping with no payload: to the client as a server sends it, to the
/// backend masked as a client does.
fn ping_to(side: usize) -> ([u8; 6], u8, u8) {
    if side == CLIENT {
        ([0x89, 0x00, 0, 0, 0, 0], 2, 0)
    } else {
        let m = super::frames::new_mask();
        ([0x89, 0x80, m[0], m[1], m[2], m[3]], 6, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::frames::Frames;
    use std::future::poll_fn;
    use std::num::NonZeroU16;
    use std::time::Duration;
    use tokio::time::advance;

    /// Every 1 s, wait 0.5 s.
    fn pinger() -> Pinger {
        let cfg = WsPing {
            every_ds: NonZeroU16::new(10).unwrap(),
            wait_ds: NonZeroU16::new(5).unwrap(),
        };
        Pinger::new(cfg, Instant::now())
    }

    async fn check(p: &mut Pinger, heard: [u64; 2], stuck: [bool; 2]) -> Option<usize> {
        poll_fn(|cx| Poll::Ready(p.poll_check(cx, heard, stuck))).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_side_gets_one_ping_and_is_dead_without_an_answer() {
        let mut p = pinger();
        assert_eq!(check(&mut p, [0, 0], [false; 2]).await, None);
        assert!(!p.owes_any(), "nothing due before EVERY");
        advance(Duration::from_millis(1000)).await;
        assert_eq!(check(&mut p, [0, 0], [false; 2]).await, None);
        assert!(p.owes(CLIENT) && p.owes(BACKEND));
        let mut out = Vec::new();
        poll_fn(|cx| p.poll_send(cx, CLIENT, &mut out))
            .await
            .unwrap();
        assert_eq!(out, [0x89, 0x00]);
        assert!(!p.is_quiet(), "waiting for the answer");
        // The backend speaks (its Ping was never placed: it needs none);
        // the client does not.
        advance(Duration::from_millis(500)).await;
        assert_eq!(check(&mut p, [0, 2], [false; 2]).await, Some(CLIENT));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_keeps_a_side_alive() {
        let mut p = pinger();
        advance(Duration::from_millis(1000)).await;
        check(&mut p, [0, 0], [false; 2]).await;
        let mut out = Vec::new();
        poll_fn(|cx| p.poll_send(cx, BACKEND, &mut out))
            .await
            .unwrap();
        assert_eq!(out[..2], [0x89, 0x80], "masked toward the backend");
        advance(Duration::from_millis(500)).await;
        // The backend's Pong was read (bytes from it), the client spoke.
        assert_eq!(check(&mut p, [6, 2], [false; 2]).await, None);
        assert!(!p.owes_any() && p.is_quiet());
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_whose_ping_cannot_go_for_stuck_bytes_is_dead_but_not_one_mid_frame() {
        let mut p = pinger();
        advance(Duration::from_millis(1000)).await;
        check(&mut p, [0, 0], [false; 2]).await;
        assert!(p.owes(CLIENT));
        // The Ping to the client cannot go: a frame toward it is in flight
        // and flowing (not stuck): it waits, the client is not blamed.
        advance(Duration::from_millis(500)).await;
        assert_eq!(check(&mut p, [0, 1], [false; 2]).await, None);
        // Bytes toward it stop being taken: then it is the dead one.
        advance(Duration::from_millis(500)).await;
        assert_eq!(check(&mut p, [0, 2], [true, false]).await, Some(CLIENT));
    }

    #[test]
    fn the_pings_wsgate_sends_are_whole_ping_frames() {
        for side in [CLIENT, BACKEND] {
            let (bytes, len, _) = ping_to(side);
            let mut f = Frames::default();
            f.feed(&bytes[..len as usize]);
            assert!(f.at_boundary(), "side {side}");
            assert_eq!(bytes[0], 0x89, "FIN + Ping");
            assert_eq!(
                bytes[1] & 0x80 != 0,
                side == BACKEND,
                "masked toward the backend only"
            );
        }
    }
}
