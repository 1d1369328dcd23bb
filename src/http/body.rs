//! Message bodies on the HTTP/1 wire: how a head frames its body, a decoder
//! that takes a body out of the bytes read so far (Content-Length, chunked
//! or until close), and the framing written toward the other side. No I/O:
//! the proxy feeds the decoder from its sockets.

use bytes::{Bytes, BytesMut};

use super::fields::Headers;

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

/// Why a request's framing is refused (S5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// 400.
    Malformed(&'static str),
    /// 413: a Content-Length over `LimitRequestBody`.
    TooLarge,
    /// 500: a coding before `chunked`, which passes Apache's core but not
    /// mod_proxy_http.
    Unsupported,
}

/// S5: how a client framed its request body; `limit` is `LimitRequestBody`
/// (0: none).
pub fn request_framing(headers: &Headers, limit: u64) -> Result<Framing, FramingError> {
    if let Some(te) = headers.get("transfer-encoding") {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
        if !last.eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::Malformed(
                "Transfer-Encoding does not end in chunked",
            ));
        }
        if !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::Unsupported);
        }
        return Ok(Framing::Chunked);
    }
    if let Some(cl) = headers.get("content-length") {
        // At most 19 digits from a client, as Apache reads it.
        let n = Some(cl.trim_ascii())
            .filter(|cl| cl.len() <= 19)
            .and_then(content_length)
            .ok_or(FramingError::Malformed("bad Content-Length"))?;
        if limit > 0 && n > limit {
            return Err(FramingError::TooLarge);
        }
        return Ok(if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        });
    }
    Ok(Framing::Empty)
}

/// How a backend framed its response body: none for a response that has
/// none by its status or the request's method, else the last coding of
/// `Transfer-Encoding` (chunked, or until close), else `Content-Length`,
/// else until close. `None` for a malformed Content-Length (502).
pub fn response_framing(headers: &Headers, bodyless: bool) -> Option<Framing> {
    if bodyless {
        return Some(Framing::Empty);
    }
    if let Some(te) = headers.get("transfer-encoding") {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or(te).trim_ascii();
        return Some(if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    match headers.get("content-length") {
        Some(cl) => content_length(cl).map(Framing::Length),
        None => Some(Framing::Close),
    }
}

/// A Content-Length value: digits only (blanks around them allowed), and
/// no more than a u64 holds.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Takes one body out of a read buffer, piece by piece, as its bytes arrive.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    done: bool,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        Decoder {
            framing,
            remaining,
            chunk: Chunk::Size,
            done,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The body ended by other means than its framing (an HTTP/2 stream's
    /// end, which the stream's own framing checked).
    pub fn finish(&mut self) {
        self.done = true;
    }

    /// The sender closed: the end of a body framed by close, else a
    /// truncated one (`false`).
    pub fn at_close(&mut self) -> bool {
        if self.framing == Framing::Close {
            self.done = true;
        }
        self.done
    }

    /// Decodes what is in `buf`: a piece of body, or `None` when more bytes
    /// are needed or the body has ended ([`Decoder::is_done`] tells which).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if self.done {
            return Ok(None);
        }
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
            Framing::Chunked => self.decode_chunked(buf),
        }
    }

    fn decode_chunked(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(nl) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(DecodeError::Malformed("chunk size line too long"));
                        }
                        return Ok(None);
                    };
                    let line = buf.split_to(nl + 1);
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line
                        .strip_suffix(b"\r")
                        .ok_or(DecodeError::Malformed("chunk size line without CRLF"))?;
                    let size = parse_chunk_size(line)?;
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
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
                        return Err(DecodeError::Malformed("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    // Trailer fields are read and dropped (not forwarded).
                    let Some(nl) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(DecodeError::Malformed("trailer line too long"));
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
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 || digits_end > 15 {
        return Err(DecodeError::Malformed("bad chunk size"));
    }
    let rest = line[digits_end..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(DecodeError::Malformed("bad chunk extension"));
    }
    let text = std::str::from_utf8(&line[..digits_end])
        .map_err(|_| DecodeError::Malformed("bad chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| DecodeError::Malformed("bad chunk size"))
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

/// What ends a body in `encoding` (the last chunk).
pub fn end(encoding: Encoding) -> &'static [u8] {
    match encoding {
        Encoding::Chunked => b"0\r\n\r\n",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: Framing, wire: &[u8]) -> Result<(Vec<u8>, bool), DecodeError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(p) = d.decode(&mut buf)? {
            out.extend_from_slice(&p);
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (out, done) = decode(
            Framing::Chunked,
            b"3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n",
        )
        .unwrap();
        assert_eq!(out, b"abc0123456789");
        assert!(done);
    }

    #[test]
    fn malformed_chunks_are_errors_and_short_ones_wait_for_more() {
        assert!(decode(Framing::Chunked, b"zz\r\n").is_err());
        assert!(decode(Framing::Chunked, b"3\r\nabcX\r\n").is_err());
        assert_eq!(
            decode(Framing::Chunked, b"5\r\nab").unwrap(),
            (b"ab".to_vec(), false)
        );
        assert_eq!(
            decode(Framing::Length(5), b"ab").unwrap(),
            (b"ab".to_vec(), false)
        );
    }

    #[test]
    fn a_body_decoded_a_byte_at_a_time_is_the_same_body() {
        let wire = b"3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[*b]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                out.extend_from_slice(&p);
            }
        }
        assert_eq!(out, b"abc0123456789");
        assert!(d.is_done());
    }

    #[test]
    fn length_and_close_framing() {
        assert_eq!(
            decode(Framing::Length(3), b"abcdef").unwrap(),
            (b"abc".to_vec(), true)
        );
        let mut d = Decoder::new(Framing::Close);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"abcdef"[..]));
        assert!(!d.is_done());
        assert!(d.at_close());
        assert!(!Decoder::new(Framing::Length(1)).at_close());
    }

    #[test]
    fn chunked_framing_writes_hex_sizes() {
        let mut out = Vec::new();
        frame(Encoding::Chunked, &[b'x'; 26], &mut out);
        assert!(out.starts_with(b"1A\r\n"));
        assert!(out.ends_with(b"x\r\n"));
    }

    type Fields = &'static [(&'static str, &'static str)];

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in fields {
            h.push(n, v.as_bytes().to_vec());
        }
        h
    }

    /// S5, rule by rule.
    #[test]
    fn request_framing_follows_apache() {
        let cases: &[(Fields, Result<Framing, FramingError>)] = &[
            (&[], Ok(Framing::Empty)),
            (&[("Content-Length", "0")], Ok(Framing::Empty)),
            (&[("Content-Length", " 12 ")], Ok(Framing::Length(12))),
            (
                &[("Content-Length", "1x")],
                Err(FramingError::Malformed("bad Content-Length")),
            ),
            (
                &[("Content-Length", "-1")],
                Err(FramingError::Malformed("bad Content-Length")),
            ),
            (
                &[("Content-Length", "12345678901234567890")],
                Err(FramingError::Malformed("bad Content-Length")),
            ),
            (&[("Content-Length", "2000")], Err(FramingError::TooLarge)),
            (&[("Transfer-Encoding", "chunked")], Ok(Framing::Chunked)),
            (&[("Transfer-Encoding", "Chunked")], Ok(Framing::Chunked)),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                Err(FramingError::Unsupported),
            ),
            (
                &[("Transfer-Encoding", "chunked, gzip")],
                Err(FramingError::Malformed(
                    "Transfer-Encoding does not end in chunked",
                )),
            ),
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
            (
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                Ok(Framing::Chunked),
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(request_framing(&headers(fields), 1000), *want, "{fields:?}");
        }
        assert_eq!(
            request_framing(&headers(&[("Content-Length", "2000")]), 0),
            Ok(Framing::Length(2000))
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let cases: &[(Fields, bool, Option<Framing>)] = &[
            (&[("Content-Length", "5")], true, Some(Framing::Empty)),
            (&[], false, Some(Framing::Close)),
            (&[("Content-Length", "5")], false, Some(Framing::Length(5))),
            (&[("Content-Length", "x")], false, None),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                false,
                Some(Framing::Chunked),
            ),
            (
                &[("Transfer-Encoding", "gzip")],
                false,
                Some(Framing::Close),
            ),
            (
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "x")],
                false,
                Some(Framing::Chunked),
            ),
        ];
        for (fields, bodyless, want) in cases {
            assert_eq!(
                response_framing(&headers(fields), *bodyless),
                *want,
                "{fields:?}"
            );
        }
    }
}
