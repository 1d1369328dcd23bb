//! The message model and the HTTP/1 wire format: a leaf that imports
//! nothing else of wsgate.
//!
//! * `fields` — header fields and the text of heads, sharing the bytes a
//!   head was read into.
//! * `message` — versions, request and response heads, request limits.
//! * `url` — backend urls and authorities.
//! * `host` — the `Host` header: Apache's strict check, the name it asks for.
//! * `h1` — the HTTP/1 head parser, written for Apache's byte-exact answers
//!   to odd input (order, spelling, folding, limits).
//! * `body` — framing: how a head frames its body, the decoder, the
//!   encodings written toward the other side.
//! * `write` — writing HTTP/1 heads and the answers wsgate makes itself.
//! * `conditional` — validators, conditional requests and byte ranges.
//! * `gzip` — mod_deflate's pieces: who takes gzip, the stream.
//!
//! HTTP/2 (the `h2` crate) will be a second wire format producing the same
//! heads; see the README's design notes.

pub mod body;
pub mod conditional;
mod fields;
pub mod gzip;
pub mod h1;
mod host;
mod message;
mod url;
pub mod write;

pub use fields::{FieldValue, HeaderFields, Headers, Text};
pub use host::{host_name, host_without_port, valid_host};
pub use message::{canonical_reason, Limits, RequestHead, ResponseHead, Version};
pub use url::{
    absolute_form_authority, parse_target_url, split_host_port, Scheme, TargetUrl, UrlError,
};
