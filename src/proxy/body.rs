//! Message bodies: reading one framed by Content-Length, chunked encoding or
//! the end of the connection, and writing it framed for the other side.
//! Bodies are streamed a buffer at a time, never held whole.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;

/// The longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

#[derive(Debug)]
pub enum BodyError {
    Io(io::Error),
    Timeout,
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

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Reads one body from a [`Conn`]'s buffer and socket.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    done: bool,
    pub read: u64,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        BodyReader {
            framing,
            remaining,
            chunk: Chunk::Size,
            done,
            read: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next piece of decoded body, or `None` once the body has ended.
    pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(piece) = self.take_buffered(conn)? {
                self.read += piece.len() as u64;
                return Ok(Some(piece));
            }
            if self.done {
                return Ok(None);
            }
            let n = conn.fill(timeout).await?;
            if n == 0 {
                if self.framing == Framing::Close {
                    self.done = true;
                    return Ok(None);
                }
                return Err(BodyError::Truncated);
            }
        }
    }

    /// Decodes what is already buffered; `None` when more bytes are needed.
    fn take_buffered<S>(&mut self, conn: &mut Conn<S>) -> Result<Option<Bytes>, BodyError> {
        let buf = &mut conn.buf;
        match self.framing {
            Framing::Empty => Ok(None),
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(buf.split().freeze()))
            }
            Framing::Length(_) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.done = true;
                }
                Ok(Some(buf.split_to(n).freeze()))
            }
            Framing::Chunked => loop {
                match self.chunk {
                    Chunk::Size => {
                        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(BodyError::Malformed("chunk size line too long"));
                            }
                            return Ok(None);
                        };
                        let line = buf.split_to(nl + 1);
                        let line = line.strip_suffix(b"\n").unwrap_or(&line);
                        let line = line
                            .strip_suffix(b"\r")
                            .ok_or(BodyError::Malformed("chunk size line without CRLF"))?;
                        let size = parse_chunk_size(line)?;
                        if size == 0 {
                            self.chunk = Chunk::Trailers;
                        } else {
                            self.chunk = Chunk::Data(size);
                        }
                    }
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Ok(None);
                        }
                        let n = (buf.len() as u64).min(left) as usize;
                        let piece = buf.split_to(n).freeze();
                        self.chunk = if left == n as u64 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left - n as u64)
                        };
                        return Ok(Some(piece));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(None);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(BodyError::Malformed("chunk data not followed by CRLF"));
                        }
                        let _ = buf.split_to(2);
                        self.chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        // Trailer fields are read and dropped (not forwarded).
                        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(BodyError::Malformed("trailer line too long"));
                            }
                            return Ok(None);
                        };
                        let line = buf.split_to(nl + 1);
                        if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                            self.done = true;
                            return Ok(None);
                        }
                    }
                }
            },
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 || digits_end > 15 {
        return Err(BodyError::Malformed("bad chunk size"));
    }
    let rest = &line[digits_end..];
    let rest = rest.trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(BodyError::Malformed("bad chunk extension"));
    }
    let text = std::str::from_utf8(&line[..digits_end])
        .map_err(|_| BodyError::Malformed("bad chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| BodyError::Malformed("bad chunk size"))
}

/// How a body is framed toward the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    None,
    Length,
    Chunked,
    /// Raw bytes, ended by closing the connection.
    Raw,
}

/// The bytes that carry `data` in `encoding`.
pub fn frame(encoding: Encoding, data: &[u8], out: &mut Vec<u8>) {
    match encoding {
        Encoding::None => {}
        Encoding::Length | Encoding::Raw => out.extend_from_slice(data),
        Encoding::Chunked => {
            if data.is_empty() {
                return;
            }
            out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
}

pub fn end(encoding: Encoding) -> &'static [u8] {
    match encoding {
        Encoding::Chunked => b"0\r\n\r\n",
        _ => b"",
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
    async fn chunked_bodies_decode_with_extensions_and_trailers() {
        let out = decode(
            Framing::Chunked,
            b"3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(out, b"abc0123456789");
    }

    #[tokio::test]
    async fn malformed_and_truncated_chunks_are_errors() {
        assert!(matches!(
            decode(Framing::Chunked, b"zz\r\n").await,
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(Framing::Chunked, b"3\r\nabcX\r\n").await,
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(Framing::Chunked, b"5\r\nab").await,
            Err(BodyError::Truncated)
        ));
        assert!(matches!(
            decode(Framing::Length(5), b"ab").await,
            Err(BodyError::Truncated)
        ));
    }

    #[tokio::test]
    async fn length_and_close_framing() {
        assert_eq!(decode(Framing::Length(3), b"abcdef").await.unwrap(), b"abc");
        assert_eq!(decode(Framing::Close, b"abcdef").await.unwrap(), b"abcdef");
    }

    #[test]
    fn chunked_framing_writes_hex_sizes() {
        let mut out = Vec::new();
        frame(Encoding::Chunked, &[b'x'; 26], &mut out);
        assert!(out.starts_with(b"1A\r\n"));
        assert!(out.ends_with(b"x\r\n"));
    }
}
