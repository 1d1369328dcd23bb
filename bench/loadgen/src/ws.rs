//! Just enough RFC 6455 for an echo benchmark.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The client's `Sec-WebSocket-Key` (fixed: the proxies do not care, and the
/// backend still computes the accept value from it).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Masking key of every client frame (any value is valid; non-zero so the
/// backend's unmasking does real work).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

pub fn handshake_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Position just past the first `\r\n\r\n`, if any.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// XOR `data` with the 4-byte mask, as if `data` began at a multiple of 4
/// within the payload.
#[inline]
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let mut m8 = [0u8; 8];
    m8[..4].copy_from_slice(&mask);
    m8[4..].copy_from_slice(&mask);
    let m = u64::from_ne_bytes(m8);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends a frame header (FIN set) for `len` payload bytes.
pub fn push_header(out: &mut Vec<u8>, byte0: u8, len: usize, mask: Option<[u8; 4]>) {
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.push(byte0);
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// A complete masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    push_header(&mut f, 0x80 | opcode, payload.len(), Some(MASK));
    let at = f.len();
    f.extend_from_slice(payload);
    apply_mask(&mut f[at..], MASK);
    f
}

#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub byte0: u8,
    pub mask: Option<[u8; 4]>,
    /// Header length, mask key included.
    pub hlen: usize,
    pub plen: usize,
}

impl Header {
    pub fn opcode(&self) -> u8 {
        self.byte0 & 0x0f
    }
    pub fn total(&self) -> usize {
        self.hlen + self.plen
    }
}

/// Parses a frame header at the start of `b`; `None` until it is complete.
#[inline]
pub fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (plen, mut hlen) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    let mask = if masked {
        if b.len() < hlen + 4 {
            return None;
        }
        let m = [b[hlen], b[hlen + 1], b[hlen + 2], b[hlen + 3]];
        hlen += 4;
        Some(m)
    } else {
        None
    };
    Some(Header {
        byte0: b[0],
        mask,
        hlen,
        plen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept() {
        assert_eq!(accept_for(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn frame_round_trip() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = client_frame(OP_BINARY, &p);
            let h = parse_header(&f).unwrap();
            assert_eq!(h.plen, len);
            assert_eq!(h.total(), f.len());
            let mut body = f[h.hlen..].to_vec();
            apply_mask(&mut body, h.mask.unwrap());
            assert_eq!(body, p);
        }
    }
}
