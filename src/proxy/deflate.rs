//! mod_deflate's output filter on an answer's head: whether it applies
//! (the types `AddOutputFilterByType DEFLATE` names, or every type for
//! `SetOutputFilter DEFLATE`), and what it changes — `Vary:
//! Accept-Encoding` whenever it applies, and for a client that takes gzip
//! `Content-Encoding: gzip`, no `Content-Length`, the ETag's `-gzip`.
//! The body is compressed by `http::gzip` where it is written.

use crate::config::model::headers::Rules;
use crate::http::gzip::{accepts_gzip, gzip_etag};
use crate::http::{FieldValue, HeaderFields, RequestHead};
use crate::rules::Env;

/// What the filter does to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deflate {
    /// Not its type, or an answer it leaves alone.
    No,
    /// Its type, but the client does not take gzip: only `Vary`.
    VaryOnly,
    /// Compress.
    Gzip,
}

/// Apache leaves an answer alone, `Vary` and all, when it knows the
/// whole body is shorter than this (measured against 2.4.71: 68 bytes
/// stay as they are, 69 are compressed).
const MIN_LENGTH: u64 = 69;

/// Decides for an answer with a body of `status` and `fields` to
/// `head`; `rules`: the server's and the matching locations';
/// `length`: the body's, when known before it is sent.
pub fn decide<'r>(
    head: &RequestHead,
    env: &Env,
    rules: impl Iterator<Item = &'r Rules>,
    (status, length): (u16, Option<u64>),
    fields: &HeaderFields,
) -> Deflate {
    // Most servers name no type: nothing is read of the answer then (an
    // empty Vec does not allocate).
    let types: Vec<&String> = rules.flat_map(|r| r.deflate.iter()).collect();
    if types.is_empty() || length.is_some_and(|n| n < MIN_LENGTH) {
        return Deflate::No;
    }
    let headers = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let Some(media) = headers("content-type").map(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }) else {
        return Deflate::No;
    };
    let wanted = types.iter().any(|t| *t == "*" || **t == media);
    if !wanted
        || status == 204
        || env.get("no-gzip").is_some()
        || headers("content-range").is_some()
    {
        return Deflate::No;
    }
    if env.get("gzip-only-text/html").is_some_and(|v| v == "1") && media != "text/html" {
        return Deflate::No;
    }
    let encoded =
        headers("content-encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let no_transform = headers("cache-control").is_some_and(|c| {
        c.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
    });
    if encoded || no_transform {
        return Deflate::No;
    }
    if env.get("force-gzip").is_some() || accepts_gzip(&head.headers) {
        Deflate::Gzip
    } else {
        Deflate::VaryOnly
    }
}

/// The head as mod_deflate leaves it.
pub fn adjust(fields: &mut HeaderFields, what: Deflate) {
    if what == Deflate::No {
        return;
    }
    add_vary(fields);
    if what == Deflate::VaryOnly {
        return;
    }
    fields.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("content-encoding")
    });
    for (n, v) in fields.iter_mut() {
        if n.eq_ignore_ascii_case("etag") {
            *v = FieldValue::copy_from_slice(&gzip_etag(v));
        }
    }
    fields.push(("Content-Encoding".into(), FieldValue::from_static(b"gzip")));
}

/// `Vary: Accept-Encoding`, merged into one that is there.
fn add_vary(fields: &mut HeaderFields) {
    for (n, v) in fields.iter_mut() {
        if n.eq_ignore_ascii_case("vary") {
            let has = v
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"));
            if !has {
                let mut merged = v.to_vec();
                merged.extend_from_slice(b",Accept-Encoding");
                *v = FieldValue::copy_from_slice(&merged);
            }
            return;
        }
    }
    fields.push(("Vary".into(), FieldValue::from_static(b"Accept-Encoding")));
}

/// Whether the client's head leaves room for a compressed body with no
/// length: HTTP/1.1 (chunked); HTTP/1.0 clients get it closed-delimited.
pub fn client_is_http11(head: &RequestHead) -> bool {
    head.version >= crate::http::Version::HTTP_11
}
