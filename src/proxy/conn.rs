//! A socket with the bytes read from it but not yet consumed.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::head;

/// How much to read at a time while parsing heads and bodies.
const READ_CHUNK: usize = 8192;

pub struct Conn<S> {
    pub io: S,
    pub buf: BytesMut,
    /// The one timer of all its reads and writes (see [`in_time`]), made
    /// when one first has to wait.
    timer: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug)]
pub enum HeadError {
    /// The peer closed before sending a byte of this head.
    Closed,
    /// The peer closed in the middle of a head.
    Truncated,
    /// Nothing, or not all of it, arrived in time.
    Timeout {
        started: bool,
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
        }
    }

    /// The socket, giving the read buffer back if nothing is left in it.
    pub fn into_io(self) -> S {
        recycle(self.buf);
        self.io
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    pub async fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        self.fill_until(Instant::now() + timeout).await
    }

    /// [`Conn::fill`] with a deadline rather than a timeout.
    async fn fill_until(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let Conn { io, buf, timer } = self;
        in_time(timer, || deadline, io.read_buf(buf)).await
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
            // Only new bytes can complete the head; look back 3 for a split
            // line ending.
            let from = scanned.saturating_sub(3);
            if let Some(end) = head::head_end(&self.buf[from..]) {
                return Ok(self.buf.split_to(from + end));
            }
            scanned = self.buf.len();
            if self.buf.len() > max {
                return Err(HeadError::TooLarge);
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
                    return Err(HeadError::Timeout { started })
                }
                Err(e) => return Err(HeadError::Io(e)),
            }
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        in_time(
            &mut self.timer,
            || Instant::now() + timeout,
            self.io.write_all(bytes),
        )
        .await
    }

    pub async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        in_time(
            &mut self.timer,
            || Instant::now() + timeout,
            self.io.flush(),
        )
        .await
    }
}

/// Runs `op` on a connection's socket, failing with `TimedOut` at
/// `deadline`. The I/O goes first: bytes that are there win over a
/// deadline just passed, and an operation that need not wait (most do not)
/// computes no deadline and touches no timer. One that waits arms the
/// connection's timer: made once, then only moved, which for a later
/// deadline tokio does without touching its timer wheel. A fresh timer per
/// wait (`tokio::time::timeout`) is inserted and removed each time, and
/// wakes the runtime's driver through its eventfd whenever it is due before
/// anything else: at one wait for the next request per request, that was
/// a system call in six.
async fn in_time<T>(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: impl FnOnce() -> Instant,
    op: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut op = std::pin::pin!(op);
    let mut deadline = Some(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = op.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(deadline) = deadline.take() {
            let at = deadline();
            match timer {
                Some(t) => t.as_mut().reset(at),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            _ => Poll::Pending,
        }
    })
    .await
}
