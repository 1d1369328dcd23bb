//! The message model shared by every wire format: versions, request and
//! response heads, and the limits a request head must keep.

use super::fields::{Headers, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    pub const HTTP_10: Version = Version { major: 1, minor: 0 };
    pub const HTTP_11: Version = Version { major: 1, minor: 1 };
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead {
    pub method: Text,
    pub target: Text,
    pub version: Version,
    pub headers: Headers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    /// The backend's reason phrase, or the canonical one if it held control
    /// characters (S76).
    pub reason: Text,
    pub headers: Headers,
}

/// What a request head may hold (`LimitRequestLine`, `LimitRequestFieldSize`,
/// `LimitRequestFields`, `LimitRequestBody`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub request_line: usize,
    pub field_size: usize,
    pub fields: usize,
    /// 0 means unlimited, as in Apache.
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8190,
            field_size: 8190,
            fields: 100,
            body: 1 << 30,
        }
    }
}

impl Limits {
    /// The most bytes a request head within these limits can take: the
    /// request line, every field line and the blank line.
    pub fn max_head(&self) -> usize {
        self.request_line
            .saturating_add(2)
            .saturating_add((self.field_size + 2).saturating_mul(self.fields.saturating_add(1)))
            .saturating_add(2)
    }
}

/// The reason phrase RFC 9110 gives a status (Apache's where they differ).
pub fn canonical_reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        410 => "Gone",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "Request-URI Too Long",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
