//! A socket with the bytes read from it but not yet consumed.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::reqtimeout::ReadClock;
use crate::config::model::identity::ReadStage;
use crate::http::h1 as head;
use crate::upstream::ReadTimer;

/// How long a client's request head may take: mod_reqtimeout's header
/// stage, each read within `Timeout`.
#[derive(Debug, Clone, Copy)]
pub struct HeadTimes {
    /// Between requests: how long the first byte may take
    /// (`KeepAliveTimeout`) before the stage starts; `None` for a
    /// connection's first request, whose stage starts at once.
    pub idle: Option<Duration>,
    /// `RequestReadTimeout header=`; `None`: no limit but each read's.
    pub stage: Option<ReadStage>,
    /// `Timeout`: the longest one read may wait.
    pub per_read: Duration,
}

/// How much to read at a time while parsing heads and bodies.
const READ_CHUNK: usize = 8192;

pub struct Conn<S> {
    pub io: S,
    pub buf: BytesMut,
    /// The deadline of every read of a connection that reads many heads
    /// (see [`Conn::with_timer`]); `None`: a timer per read.
    timer: Option<ReadTimer>,
    /// Bytes read from and written to `io` so far (mod_logio's counts).
    read_total: u64,
    written_total: u64,
    /// A write failed (the peer went away, or did not read in time).
    pub write_failed: bool,
    /// A client's: what the answer to its current request says of the
    /// connection staying open, when the request asked for it (Apache's
    /// `Keep-Alive: timeout=T, max=LEFT` and `Connection: Keep-Alive`
    /// for a `Connection: keep-alive` request it keeps the connection
    /// for). Fits beside `write_failed`: no connection grows.
    pub keep_alive: KeepAliveNote,
}

/// `Keep-Alive: timeout=…, max=…` for a client that sent `Connection:
/// keep-alive`: `left` 0 says nothing; `u32::MAX`, no `max` (no
/// `MaxKeepAliveRequests`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepAliveNote {
    pub timeout_secs: u16,
    pub left: u32,
}

impl KeepAliveNote {
    /// The fields, for an answer that keeps the connection open.
    pub fn fields(self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let mut out = format!("Keep-Alive: timeout={}", self.timeout_secs);
        if self.left != u32::MAX {
            out.push_str(&format!(", max={}", self.left));
        }
        out.push_str("\r\nConnection: Keep-Alive\r\n");
        Some(out.into_bytes())
    }
}

#[derive(Debug)]
pub enum HeadError {
    /// The peer closed before sending a byte of this head.
    Closed,
    /// The peer closed in the middle of a head.
    Truncated,
    /// Nothing, or not all of it, arrived in time.
    Timeout {
        /// Still waiting between requests (`KeepAliveTimeout`), before
        /// the head's time began.
        waiting: bool,
    },
    /// More than `max` bytes without the end of a head.
    TooLarge,
    Io(io::Error),
}

thread_local! {
    /// Emptied read buffers, for the next connection or request: a backend
    /// connection taken from the pool for one request would otherwise cost
    /// an 8 KiB allocation and free per request.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}
/// Spare buffers kept per thread.
const SPARE_KEEP: usize = 32;

/// Keeps an emptied read buffer for reuse.
pub fn recycle(mut buf: BytesMut) {
    if !buf.is_empty() || buf.capacity() < READ_CHUNK / 2 {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_KEEP {
            spare.push(buf);
        }
    });
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            buf: SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default(),
            timer: None,
            read_total: 0,
            written_total: 0,
            write_failed: false,
            keep_alive: KeepAliveNote::default(),
        }
    }

    /// A connection that keeps one timer for all its reads: a client's,
    /// which waits for request after request. Each new deadline only moves
    /// the registered one later, which tokio does without touching its
    /// timer wheel; a fresh timer per read is inserted and removed each
    /// time, and wakes the runtime's driver whenever it is due before
    /// anything else.
    pub fn with_timer(io: S) -> Self {
        Conn::with_timer_from(io, None)
    }

    /// [`Conn::with_timer`] reusing the timer of an earlier `Conn` on the
    /// same socket (see [`Conn::into_parts`]).
    pub fn with_timer_from(io: S, timer: Option<ReadTimer>) -> Self {
        Conn {
            timer: Some(timer.unwrap_or_else(|| Box::pin(tokio::time::sleep(Duration::ZERO)))),
            ..Conn::new(io)
        }
    }

    /// The socket, giving the read buffer back if nothing is left in it.
    pub fn into_io(self) -> S {
        recycle(self.buf);
        self.io
    }

    /// The socket and its timer, for a connection that waits in a pool. The
    /// timer forgets the task that used it, whose memory it would otherwise
    /// keep until its deadline.
    pub fn into_parts(self) -> (S, Option<ReadTimer>) {
        recycle(self.buf);
        let timer = self.timer.map(|mut timer| {
            let mut forget = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = timer.as_mut().poll(&mut forget);
            timer
        });
        (self.io, timer)
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    pub async fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        self.fill_until(Instant::now() + timeout).await
    }

    /// The bytes this connection has taken out of its buffer (read and
    /// used) and written, so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.read_total.saturating_sub(self.buf.len() as u64),
            self.written_total,
        )
    }

    /// [`Conn::fill`] with a deadline rather than a timeout.
    /// One future, not a counting layer around another: this is awaited
    /// for every read of every connection.
    pub(super) async fn fill_until(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let r = match self.timer.as_mut() {
            None => {
                match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                    Ok(r) => r,
                    Err(_) => Err(io::ErrorKind::TimedOut.into()),
                }
            }
            // Bounded by the connection's own timer (see `with_timer`).
            Some(timer) => {
                let mut read = std::pin::pin!(self.io.read_buf(&mut self.buf));
                let mut armed = false;
                std::future::poll_fn(|cx| {
                    // The read first: bytes that are there win over a
                    // deadline that has just passed, as with `timeout_at`,
                    // and a read that needs no wait needs no timer.
                    if let Poll::Ready(r) = read.as_mut().poll(cx) {
                        return Poll::Ready(r);
                    }
                    if !armed {
                        timer.as_mut().reset(deadline);
                        armed = true;
                    }
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await
            }
        };
        if let Ok(n) = r {
            self.read_total += n as u64;
        }
        r
    }

    /// Reads until a whole head is buffered and splits it off. The first byte
    /// may take `first_byte` to come; the rest must follow within `rest`.
    pub async fn read_head(
        &mut self,
        max: usize,
        first_byte: Duration,
        rest: Duration,
    ) -> Result<BytesMut, HeadError> {
        let deadline = Instant::now() + first_byte;
        let mut rest_deadline = None;
        let mut scanned: usize = 0;
        loop {
            if let Some(done) = self.complete_head(&mut scanned, max) {
                return done;
            }
            let started = !self.buf.is_empty();
            if started && rest_deadline.is_none() {
                rest_deadline = Some(Instant::now() + rest);
            }
            match self.fill_until(rest_deadline.unwrap_or(deadline)).await {
                Ok(0) if started => return Err(HeadError::Truncated),
                Ok(0) => return Err(HeadError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(HeadError::Timeout { waiting: false })
                }
                Err(e) => return Err(HeadError::Io(e)),
            }
        }
    }

    /// The head, split off, once the bytes so far complete it; `TooLarge`
    /// past `max`. Only bytes after `scanned` can complete it (3 back, for
    /// a line ending split between reads).
    fn complete_head(
        &mut self,
        scanned: &mut usize,
        max: usize,
    ) -> Option<Result<BytesMut, HeadError>> {
        let from = scanned.saturating_sub(3);
        if let Some(end) = head::head_end(&self.buf[from..]) {
            return Some(Ok(self.buf.split_to(from + end)));
        }
        *scanned = self.buf.len();
        (self.buf.len() > max).then_some(Err(HeadError::TooLarge))
    }

    /// Reads a client's request head (see [`HeadTimes`]) and splits it
    /// off.
    pub async fn read_request_head(
        &mut self,
        max: usize,
        times: &HeadTimes,
    ) -> Result<BytesMut, HeadError> {
        // Between requests the stage starts with the first byte (bytes
        // already here, pipelined, are that byte); on a new connection at
        // once, as mod_reqtimeout starts it at the first read.
        let mut staged = times.idle.is_none() || !self.buf.is_empty();
        let mut clock = staged
            .then(|| {
                times
                    .stage
                    .and_then(|s| ReadClock::start(&s, Instant::now()))
            })
            .flatten();
        if let Some(c) = &mut clock {
            c.extend(self.buf.len());
        }
        let mut scanned: usize = 0;
        loop {
            if let Some(done) = self.complete_head(&mut scanned, max) {
                return done;
            }
            let now = Instant::now();
            let deadline = match (staged, &clock, times.idle) {
                (false, _, Some(idle)) => now + idle,
                (_, Some(c), _) => c.read_deadline(now, times.per_read),
                _ => now + times.per_read,
            };
            let started = !self.buf.is_empty();
            match self.fill_until(deadline).await {
                Ok(0) if started => return Err(HeadError::Truncated),
                Ok(0) => return Err(HeadError::Closed),
                Ok(n) => {
                    if !staged {
                        staged = true;
                        clock = times
                            .stage
                            .and_then(|s| ReadClock::start(&s, Instant::now()));
                    }
                    if let Some(c) = &mut clock {
                        c.extend(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(HeadError::Timeout { waiting: !staged })
                }
                Err(e) => return Err(HeadError::Io(e)),
            }
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        // A socket with room takes the bytes at once, and then there is no
        // deadline to compute or timer to make.
        let first = std::future::poll_fn(|cx| match Pin::new(&mut self.io).poll_write(cx, bytes) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        let r = match first {
            Some(Ok(0)) if !bytes.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) if n == bytes.len() => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(n)) => self.write_rest(&bytes[n..], timeout).await,
            None => self.write_rest(bytes, timeout).await,
        };
        // Counted for mod_logio's %O, and a failure for %X.
        match r {
            Ok(()) => self.written_total += bytes.len() as u64,
            Err(_) => self.write_failed = true,
        }
        r
    }

    async fn write_rest(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        match tokio::time::timeout(timeout, self.io.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    pub async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        match tokio::time::timeout(timeout, self.io.flush()).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}
