//! mod_deflate's output filter, as pure pieces: whether a client takes
//! gzip (Apache's token scan of `Accept-Encoding`), the ETag of a
//! compressed answer, and a gzip stream fed a piece at a time.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use super::Headers;

/// Whether `Accept-Encoding` names `gzip` with a weight above 0 (as
/// Apache 2.4.71's mod_deflate reads it).
pub fn accepts_gzip(headers: &Headers) -> bool {
    headers.fields.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("accept-encoding")
            && v.split(|&b| b == b',').any(|item| {
                let mut parts = item.split(|&b| b == b';');
                let token = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    let p = String::from_utf8_lossy(p);
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                token.trim_ascii().eq_ignore_ascii_case(b"gzip") && !refused
            })
    })
}

/// `DeflateAlterETag AddSuffix` (the default): `"x"` becomes `"x-gzip"`.
pub fn gzip_etag(etag: &[u8]) -> Vec<u8> {
    let mut out = etag.to_vec();
    if out.last() == Some(&b'"') {
        out.pop();
        out.extend_from_slice(b"-gzip\"");
    } else {
        out.extend_from_slice(b"-gzip");
    }
    out
}

/// A gzip stream (header as zlib writes it for Unix, modification time
/// 0), fed and drained a piece at a time.
pub struct Gzip {
    encoder: GzEncoder<Vec<u8>>,
}

impl Gzip {
    /// `level`: 1 (fast) to 9 (small); zlib's default is 6.
    pub fn new(level: u32) -> Gzip {
        Gzip {
            encoder: GzBuilder::new()
                .operating_system(3)
                .write(Vec::with_capacity(8 * 1024), Compression::new(level.min(9))),
        }
    }

    /// Compresses `data`; what is ready to send (maybe nothing yet).
    /// `flush`: everything so far is made sendable (a sync flush, as
    /// mod_deflate does on a flush from the proxy when the backend pauses,
    /// so a streamed answer is not held back).
    pub fn push(&mut self, data: &[u8], flush: bool) -> Option<Bytes> {
        // Writing into a Vec cannot fail.
        let _ = self.encoder.write_all(data);
        if flush {
            let _ = self.encoder.flush();
        }
        self.take()
    }

    fn take(&mut self) -> Option<Bytes> {
        let out = self.encoder.get_mut();
        if out.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(out)))
    }

    /// `data` compressed as one whole stream.
    pub fn whole(level: u32, data: &[u8]) -> Vec<u8> {
        let mut g = Gzip::new(level);
        let _ = g.encoder.write_all(data);
        g.encoder.finish().unwrap_or_default()
    }

    /// The rest of the stream, trailer included.
    pub fn finish(self) -> Bytes {
        Bytes::from(self.encoder.finish().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::FieldValue;
    use std::io::Read;

    fn accept(v: &str) -> bool {
        let mut h = Headers::default();
        h.fields.push((
            "Accept-Encoding".into(),
            FieldValue::copy_from_slice(v.as_bytes()),
        ));
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_is_found_among_tokens_whatever_its_weight() {
        assert!(accept("gzip"));
        assert!(accept("br, GZIP;q=0.5"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("gzip; q=0.0"));
        assert!(accept("gzip;q=0.001"));
        assert!(!accept("br, deflate"));
        assert!(!accept("x-gzip"));
        assert!(!accepts_gzip(&Headers::default()));
    }

    #[test]
    fn etags_get_the_suffix_inside_their_quotes() {
        assert_eq!(gzip_etag(b"\"6-abc\""), b"\"6-abc-gzip\"");
        assert_eq!(gzip_etag(b"W/\"6\""), b"W/\"6-gzip\"");
        assert_eq!(gzip_etag(b"raw"), b"raw-gzip");
    }

    #[test]
    fn pieces_make_one_stream() {
        let mut g = Gzip::new(6);
        let mut out = Vec::new();
        for piece in ["hello ", "gzip ", "world"] {
            if let Some(b) = g.push(piece.as_bytes(), piece == "gzip ") {
                out.extend_from_slice(&b);
            }
        }
        out.extend_from_slice(&g.finish());
        assert_eq!(&out[..2], b"\x1f\x8b");
        assert_eq!(out[9], 3, "Unix, as zlib writes it");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello gzip world");
        let mut whole = String::new();
        flate2::read::GzDecoder::new(&Gzip::whole(6, b"hello gzip world")[..])
            .read_to_string(&mut whole)
            .unwrap();
        assert_eq!(whole, "hello gzip world");
    }
}
