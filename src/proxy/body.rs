//! Reading a message body from a connection: the decoder of `http::body`
//! fed from the connection's buffer and socket. Bodies are streamed a
//! buffer at a time, never held whole.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;
use super::reqtimeout::ReadClock;
use crate::config::model::identity::ReadStage;
use crate::http::body::{DecodeError, Decoder, Framing};

#[derive(Debug)]
pub enum BodyError {
    Io(io::Error),
    /// A read past its deadline (`Timeout`, or mod_reqtimeout's stage).
    Timeout,
    /// An HTTP/2 stream's body stalled past `H2StreamTimeout`.
    Stalled,
    /// Ended before the framing said it would.
    Truncated,
    Malformed(&'static str),
}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            BodyError::Timeout
        } else {
            BodyError::Io(e)
        }
    }
}

impl From<DecodeError> for BodyError {
    fn from(e: DecodeError) -> Self {
        let DecodeError::Malformed(why) = e;
        BodyError::Malformed(why)
    }
}

/// Reads one body from a [`Conn`]'s buffer and socket.
#[derive(Debug)]
pub struct BodyReader {
    decoder: Decoder,
    /// Decoded bytes so far.
    pub read: u64,
    /// mod_reqtimeout's body stage, until the first read starts its clock.
    stage: Option<ReadStage>,
    clock: Option<ReadClock>,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        BodyReader {
            decoder: Decoder::new(framing),
            read: 0,
            stage: None,
            clock: None,
        }
    }

    /// The body must come within `stage` (`RequestReadTimeout body=`),
    /// counted from its first read.
    pub fn timed(mut self, stage: ReadStage) -> Self {
        self.stage = (!stage.is_off()).then_some(stage);
        self
    }

    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// A piece that arrived already decoded (an HTTP/2 DATA frame).
    pub fn took(&mut self, n: usize) {
        self.read += n as u64;
    }

    /// The body ended where the sender said so (HTTP/2's END_STREAM).
    pub fn ended(&mut self) {
        self.decoder.finish();
    }

    /// The next piece already in `buf`, without reading: `Some(None)` once
    /// the body has ended, `None` when more must be read first.
    pub fn next_buffered(
        &mut self,
        buf: &mut bytes::BytesMut,
    ) -> Result<Option<Option<Bytes>>, BodyError> {
        if let Some(piece) = self.decoder.decode(buf)? {
            self.read += piece.len() as u64;
            return Ok(Some(Some(piece)));
        }
        Ok(self.decoder.is_done().then_some(None))
    }

    /// The next piece of decoded body, or `None` once the body has ended.
    pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
        if let Some(stage) = self.stage.take() {
            // The stage starts at the body's first read, which takes the
            // bytes that came with the head first (and counts them, as
            // mod_reqtimeout does).
            self.clock = ReadClock::start(&stage, tokio::time::Instant::now()).map(|mut c| {
                c.extend(conn.buf.len());
                c
            });
        }
        loop {
            if let Some(piece) = self.decoder.decode(&mut conn.buf)? {
                self.read += piece.len() as u64;
                return Ok(Some(piece));
            }
            if self.decoder.is_done() {
                return Ok(None);
            }
            let n = match &self.clock {
                Some(c) => {
                    let now = tokio::time::Instant::now();
                    conn.fill_until(c.read_deadline(now, timeout)).await?
                }
                None => conn.fill(timeout).await?,
            };
            if let Some(c) = &mut self.clock {
                c.extend(n);
            }
            if n == 0 {
                return if self.decoder.at_close() {
                    Ok(None)
                } else {
                    Err(BodyError::Truncated)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(framing: Framing, wire: &[u8]) -> Result<Vec<u8>, BodyError> {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        tokio::io::AsyncWriteExt::write_all(&mut a, wire)
            .await
            .unwrap();
        drop(a);
        let mut conn = Conn::new(b);
        let mut reader = BodyReader::new(framing);
        let mut out = Vec::new();
        while let Some(p) = reader.next(&mut conn, Duration::from_secs(1)).await? {
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn bodies_cut_short_by_the_sender_are_truncated() {
        assert!(matches!(
            decode(Framing::Chunked, b"5\r\nab").await,
            Err(BodyError::Truncated)
        ));
        assert!(matches!(
            decode(Framing::Length(5), b"ab").await,
            Err(BodyError::Truncated)
        ));
        assert!(matches!(
            decode(Framing::Chunked, b"zz\r\n").await,
            Err(BodyError::Malformed(_))
        ));
        assert_eq!(decode(Framing::Close, b"abcdef").await.unwrap(), b"abcdef");
        assert_eq!(decode(Framing::Length(3), b"abcdef").await.unwrap(), b"abc");
    }
}
