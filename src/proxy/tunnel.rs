//! The byte tunnel after a 101: copies both ways unchanged, passes a
//! half-close on, closes both sides when both are done, and closes an idle
//! tunnel (S63–S70).
//!
//! Tunnels are long-lived and numerous, so an idle one owns no buffer: a
//! direction takes a buffer from a per-thread pool only for a read attempt,
//! gives it back at once when nothing was read, and keeps it only while the
//! bytes read have not all been written. A slow reader therefore costs at
//! most one buffer per direction, and wsgate stops reading the other side
//! until it drains (backpressure).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// One read's worth; also the most a direction holds for a slow reader.
pub const BUFFER_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse.
const POOL_KEEP: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_KEEP {
            pool.push(buf);
        }
    });
}

/// How a tunnel ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// mod_proxy_http: a half-close is passed on; idle for `Some(t)` closes.
    HalfClose(Option<Duration>),
    /// Legacy mod_proxy_wstunnel (S62): the first end closes both sides and
    /// there is no idle timeout.
    CloseBoth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished.
    Done,
    IdleTimeout,
    /// One side failed (reset, broken pipe).
    Error,
}

#[derive(Debug, Default)]
struct Half {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    needs_flush: bool,
    eof: bool,
    shut: bool,
    bytes: u64,
}

enum Step {
    Progress,
    Blocked,
}

impl Half {
    /// Moves bytes from `from` to `to` until one of them would block.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
    ) -> Poll<io::Result<bool>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut moved = false;
        loop {
            match self.step(cx, from, to)? {
                Step::Progress => moved = true,
                Step::Blocked => return Poll::Ready(Ok(moved)),
            }
        }
    }

    fn step<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> io::Result<Step>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if let Some(buf) = &self.buf {
            if self.start < self.end {
                return match Pin::new(&mut *to).poll_write(cx, &buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.bytes += n as u64;
                        self.needs_flush = true;
                        if self.start == self.end {
                            give_back(self.buf.take().expect("checked above"));
                        }
                        Ok(Step::Progress)
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Ok(Step::Blocked),
                };
            }
        }
        if self.needs_flush {
            match Pin::new(&mut *to).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(Step::Blocked),
            }
        }
        if self.eof {
            if !self.shut {
                match Pin::new(&mut *to).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {}
                    // The peer may already be gone; the direction is over anyway.
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => return Ok(Step::Blocked),
                }
                self.shut = true;
            }
            return Ok(Step::Blocked);
        }
        let mut buf = self.buf.take().unwrap_or_else(take_buffer);
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut *from).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    self.eof = true;
                    give_back(buf);
                } else {
                    self.start = 0;
                    self.end = n;
                    self.buf = Some(buf);
                }
                Ok(Step::Progress)
            }
            Poll::Ready(Err(e)) => {
                give_back(buf);
                Err(e)
            }
            Poll::Pending => {
                give_back(buf);
                Ok(Step::Blocked)
            }
        }
    }

    fn finished(&self) -> bool {
        self.eof && self.shut && self.buf.is_none()
    }
}

pin_project_lite::pin_project! {
    /// The tunnel between a client (`A`) and a backend (`B`).
    pub struct Tunnel<A, B> {
        client: A,
        backend: B,
        up: Half,
        down: Half,
        mode: Mode,
        last_activity: Instant,
        #[pin]
        idle: Option<Sleep>,
    }
}

/// What a finished tunnel reports.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub end: End,
    /// Client to backend.
    pub bytes_up: u64,
    /// Backend to client.
    pub bytes_down: u64,
}

impl<A, B> Tunnel<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    pub fn new(client: A, backend: B, mode: Mode) -> Self {
        let now = Instant::now();
        let idle = match mode {
            Mode::HalfClose(Some(t)) => Some(tokio::time::sleep_until(now + t)),
            _ => None,
        };
        Tunnel {
            client,
            backend,
            up: Half::default(),
            down: Half::default(),
            mode,
            last_activity: now,
            idle,
        }
    }
}

impl<A, B> Future for Tunnel<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Summary;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Summary> {
        let mut this = self.project();
        let summary = |end, up: &Half, down: &Half| Summary {
            end,
            bytes_up: up.bytes,
            bytes_down: down.bytes,
        };
        let up = this.up.poll_copy(cx, this.client, this.backend);
        let down = this.down.poll_copy(cx, this.backend, this.client);
        let (up, down) = match (up, down) {
            (Poll::Ready(Ok(u)), Poll::Ready(Ok(d))) => (u, d),
            _ => return Poll::Ready(summary(End::Error, this.up, this.down)),
        };
        match this.mode {
            Mode::CloseBoth if this.up.eof || this.down.eof => {
                return Poll::Ready(summary(End::Done, this.up, this.down));
            }
            _ if this.up.finished() && this.down.finished() => {
                return Poll::Ready(summary(End::Done, this.up, this.down));
            }
            _ => {}
        }
        if let (Mode::HalfClose(Some(timeout)), Some(mut idle)) =
            (*this.mode, this.idle.as_mut().as_pin_mut())
        {
            if up || down {
                *this.last_activity = Instant::now();
            }
            // The timer is moved only when it fires, not on every byte.
            loop {
                ready!(idle.as_mut().poll(cx));
                let deadline = *this.last_activity + timeout;
                if deadline <= Instant::now() {
                    return Poll::Ready(summary(End::IdleTimeout, this.up, this.down));
                }
                idle.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_and_half_close_passes_on() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(64);
        let task = tokio::spawn(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(None),
        ));
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            backend.read_to_end(&mut rest).await.unwrap(),
            0,
            "backend sees EOF"
        );
        backend.write_all(b"after").await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"after", "the other direction still works");
        backend.shutdown().await.unwrap();
        let summary = task.await.unwrap();
        assert_eq!(summary.end, End::Done);
        assert_eq!((summary.bytes_up, summary.bytes_down), (5, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_times_out_and_traffic_keeps_it_open() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(64);
        let task = tokio::spawn(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(Some(Duration::from_secs(2))),
        ));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            backend.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let summary = task.await.unwrap();
        assert_eq!(summary.end, End::IdleTimeout);
    }

    #[tokio::test]
    async fn legacy_mode_closes_both_at_the_first_end() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, _backend) = tokio::io::duplex(64);
        let task = tokio::spawn(Tunnel::new(client_side, backend_side, Mode::CloseBoth));
        client.shutdown().await.unwrap();
        assert_eq!(task.await.unwrap().end, End::Done);
    }
}
