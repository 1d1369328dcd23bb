//! A read buffer: bytes `data[start..end]` are received and not yet consumed.
//! It grows only when a single frame does not fit, so the steady state
//! allocates nothing.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

pub struct RBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl RBuf {
    pub fn new(cap: usize) -> Self {
        RBuf {
            data: vec![0; cap.max(64)],
            start: 0,
            end: 0,
        }
    }

    pub fn avail(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn avail_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once. `need` is how many unconsumed bytes the caller waits for
    /// (a whole frame): the buffer makes room for at least that many.
    /// Returns the number of bytes read (0 at end of stream).
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        need: usize,
    ) -> io::Result<usize> {
        let need = need.max(self.len() + 1);
        let free_tail = self.data.len() - self.end;
        if self.data.len() - self.start < need || (self.start > 0 && free_tail < 2048) {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.data.len() < need {
                self.data.resize(need.next_power_of_two(), 0);
            }
        }
        let n = r.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}
