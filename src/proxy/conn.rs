//! A socket with the bytes read from it but not yet consumed.

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::head;

/// How much to read at a time while parsing heads and bodies.
const READ_CHUNK: usize = 8192;

pub struct Conn<S> {
    pub io: S,
    pub buf: BytesMut,
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
        }
    }

    /// The socket, giving the read buffer back if nothing is left in it.
    pub fn into_io(self) -> S {
        recycle(self.buf);
        self.io
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    pub async fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        self.fill_until(tokio::time::Instant::now() + timeout).await
    }

    /// [`Conn::fill`] with a deadline rather than a timeout.
    async fn fill_until(&mut self, deadline: tokio::time::Instant) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Reads until a whole head is buffered and splits it off. The first byte
    /// may take `first_byte` to come; the rest must follow within `rest`.
    pub async fn read_head(
        &mut self,
        max: usize,
        first_byte: Duration,
        rest: Duration,
    ) -> Result<BytesMut, HeadError> {
        let deadline = tokio::time::Instant::now() + first_byte;
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
                rest_deadline = Some(tokio::time::Instant::now() + rest);
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
