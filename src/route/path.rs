//! The request path as Apache's core prepares it before any mapping (S7), and
//! the re-encoding mod_proxy applies to the path it sends on (S26).

/// Why a request target cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Malformed target: 400.
    BadRequest,
    /// `%2F` or `%00` in the path: 404, as Apache's `AllowEncodedSlashes Off`.
    NotFound,
}

use bytes::Bytes;

use crate::http::Text;

/// A request target split and normalised. The parts share the bytes of the
/// target they came from (a path needing no decoding costs no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded, dot-segments removed, slashes merged: what routes match.
    pub decoded: Bytes,
    /// The path as the client sent it (for `nocanon`).
    pub raw: Text,
    /// The query string as received, without the `?`.
    pub query: Option<Text>,
}

/// Normalises an origin-form (`/…`) or absolute-form (`http://h/…`) target.
pub fn normalize(whole: &Text) -> Result<RequestPath, PathError> {
    let target = strip_absolute_form(whole)?;
    if !target.starts_with('/') || target.contains('#') {
        return Err(PathError::BadRequest);
    }
    let (raw, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(whole.slice_of(q))),
        None => (target, None),
    };
    let raw = whole.slice_of(raw);
    Ok(RequestPath {
        decoded: if is_plain(raw.as_bytes()) {
            raw.bytes()
        } else {
            Bytes::from(decode_in_steps(raw.as_bytes())?)
        },
        raw,
        query,
    })
}

/// Most paths have no escape, no dot segment and no doubled slash, and come
/// out of the three steps of S7 as they went in: they are recognised in one
/// scan instead of going through the three copies.
fn is_plain(raw: &[u8]) -> bool {
    !raw.windows(2)
        .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
        && !raw.contains(&b'%')
}

#[cfg(test)]
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if is_plain(raw) {
        return Ok(raw.to_vec());
    }
    decode_in_steps(raw)
}

fn decode_in_steps(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let unreserved = decode_unreserved(raw)?;
    let resolved = remove_dot_segments(&unreserved)?;
    decode_rest(&resolved)
}

/// An absolute-form target is mapped by its path only (S3).
fn strip_absolute_form(target: &str) -> Result<&str, PathError> {
    // Compared as bytes: the target may hold multi-byte characters.
    let lower_starts = |p: &str| {
        target
            .as_bytes()
            .get(..p.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(p.as_bytes()))
    };
    for scheme in ["http://", "https://", "ws://", "wss://"] {
        if lower_starts(scheme) {
            let rest = &target[scheme.len()..];
            let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
            if path_start == 0 {
                return Err(PathError::BadRequest);
            }
            let path = &rest[path_start..];
            return Ok(if path.is_empty() { "/" } else { path });
        }
    }
    Ok(target)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Step one: `%XX` of an unreserved character becomes the character; every
/// escape must be well formed.
fn decode_unreserved(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadRequest);
            };
            let c = h * 16 + l;
            if is_unreserved(c) {
                out.push(c);
            } else {
                out.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Removes `.` and `..` segments and merges runs of `/`; a `..` above the
/// root is refused.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            b"" => trailing_slash = i == last,
            b"." => trailing_slash = i == last,
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::BadRequest);
                }
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Step three: every remaining escape is decoded for matching, except that an
/// encoded slash or NUL makes the request a 404.
fn decode_rest(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            // Step one checked every escape; `get` keeps this safe anyway.
            let digit = |k: usize| path.get(i + k).copied().and_then(hex);
            let c = digit(1).zip(digit(2)).map(|(h, l)| h * 16 + l);
            let c = c.ok_or(PathError::BadRequest)?;
            if c == b'/' || c == 0 {
                return Err(PathError::NotFound);
            }
            out.push(c);
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The characters mod_proxy leaves unencoded in a path it forwards.
fn keep_in_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"~$-_.+!*'(),;:@&=/".contains(&b)
}

/// Re-encodes a decoded path for the backend request line (S26): every byte
/// outside the kept set becomes `%XX`, so a decoded `?`, space or CR LF can
/// never change the meaning of the forwarded request.
pub fn encode_path(path: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = path;
    while !rest.is_empty() {
        let kept = rest
            .iter()
            .position(|&b| !keep_in_path(b))
            .unwrap_or(rest.len());
        // The kept bytes are ASCII.
        out.push_str(std::str::from_utf8(&rest[..kept]).unwrap_or_default());
        let Some(&b) = rest.get(kept) else {
            break;
        };
        out.push('%');
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
        rest = &rest[kept + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-scan shortcut gives what the three steps give.
        #[test]
        fn the_shortcut_agrees_with_the_three_steps(path in "/[a-z/.%2A-F~_]{0,24}") {
            prop_assert_eq!(decode(path.as_bytes()), decode_in_steps(path.as_bytes()));
        }
    }

    fn norm(t: &str) -> Result<String, PathError> {
        normalize(&Text::from(t)).map(|p| String::from_utf8_lossy(&p.decoded).into_owned())
    }

    #[test]
    fn unreserved_escapes_are_decoded_first() {
        assert_eq!(norm("/%7e%41").unwrap(), "/~A");
    }

    #[test]
    fn encoded_dot_segments_are_resolved() {
        assert_eq!(norm("/x/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/x/.%2E/y").unwrap(), "/y");
        assert_eq!(norm("/ws2/../admin").unwrap(), "/admin");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
    }

    #[test]
    fn climbing_above_root_is_400() {
        assert_eq!(norm("/../x"), Err(PathError::BadRequest));
        assert_eq!(norm("/a/%2e%2e/%2e%2e/x"), Err(PathError::BadRequest));
    }

    #[test]
    fn slashes_merge() {
        assert_eq!(norm("//a///b//").unwrap(), "/a/b/");
    }

    #[test]
    fn invalid_and_double_escapes() {
        assert_eq!(norm("/%zz"), Err(PathError::BadRequest));
        assert_eq!(norm("/%%32%65"), Err(PathError::BadRequest));
        assert_eq!(norm("/%2%65"), Err(PathError::BadRequest));
        assert_eq!(norm("/x/%252e%252e/y").unwrap(), "/x/%2e%2e/y");
    }

    #[test]
    fn encoded_slash_and_nul_are_404() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::NotFound));
        assert_eq!(norm("/a%00b"), Err(PathError::NotFound));
    }

    #[test]
    fn other_escapes_decode_and_query_splits() {
        let p = normalize(&Text::from("/a%20b%3Fc?x=%41")).unwrap();
        assert_eq!(&p.decoded[..], b"/a b?c");
        assert_eq!(p.query.as_deref(), Some("x=%41"));
        assert_eq!(p.raw, "/a%20b%3Fc");
    }

    #[test]
    fn fragment_and_relative_targets_are_400() {
        assert_eq!(norm("/a#b"), Err(PathError::BadRequest));
        assert_eq!(norm("@evil/x"), Err(PathError::BadRequest));
        assert_eq!(norm(":@evil/x"), Err(PathError::BadRequest));
    }

    #[test]
    fn multi_byte_characters_near_the_start_are_no_problem() {
        // Found by the rewrite fuzz target: slicing a str at byte 7.
        assert_eq!(norm("/hr\u{fffd}e/x").unwrap(), "/hr\u{fffd}e/x");
        assert_eq!(
            norm("/\u{fffd}\u{fffd}\u{fffd}"),
            Ok("/\u{fffd}\u{fffd}\u{fffd}".to_string())
        );
    }

    #[test]
    fn absolute_form_maps_by_path() {
        assert_eq!(norm("http://other/x/abs").unwrap(), "/x/abs");
        assert_eq!(norm("HTTP://other").unwrap(), "/");
    }

    #[test]
    fn encoding_keeps_apaches_set() {
        let mut s = String::new();
        encode_path(b"/a b\"<%?|\\\r\n~$-_.+!*'(),;:@&=", &mut s);
        assert_eq!(s, "/a%20b%22%3C%25%3F%7C%5C%0D%0A~$-_.+!*'(),;:@&=");
    }
}
