//! The proxy engine, a connection's life from accepted socket to answer or
//! tunnel, in the order a connection goes through it:
//!
//! * `server` — listeners, accepting, `MaxRequestWorkers`, reload (the
//!   configuration generation swapped atomically), graceful stop.
//! * `connection` — a client connection: read heads, keep-alive, hand over
//!   a tunnel; `conn` is a socket with its read buffer.
//! * `request` — one request: checks, server, rules, mapping, attempts at
//!   backends, and the one place a failure becomes an answer (`error`).
//! * `plan` — pure decisions about a request and its response (framing,
//!   close, reuse, upgrade); `upgrade` is the upgrade decision itself.
//! * `header_rules` — when mod_headers/env/setenvif rules run.
//! * `forward` — the I/O of one attempt at one backend; `headers` writes
//!   the heads (`proxy_answers`: ProxyVia, the cookie rules and
//!   ProxyErrorOverride on them), `body` reads bodies; `downstream` is
//!   the client side it writes to (HTTP/1 bytes on the connection).
//! * `tls` — TLS toward clients: the handshake and the server SNI selects;
//!   `h2` serves the connections that chose HTTP/2 (ALPN), each stream
//!   through `request` as an HTTP/1 request goes.
//! * `handler` — the pages wsgate answers itself (`SetHandler`: the
//!   status page, the metrics), from the live state.
//! * `explain` — `wsgate -t --explain`: a request taken through these
//!   same steps without traffic, each decision with its configuration line.
//! * `handover` — a new binary taking the listening sockets over
//!   (`SIGUSR2`) while this one finishes its tunnels.
//! * `frames`, `ping`, `polite` — the WebSocket frame tracker, which
//!   closes a tunnel with 1001 when ordered to (`polite`: a drained member,
//!   a backend a reload removed; or a stop), and sends Pings for liveness.
//! * `logging` — access log lines; `proxy_protocol` — PROXY headers;
//!   `remote_ip` — the client a `RemoteIPHeader` names.
//! * `tunnel`, `splice`, `park` — the byte tunnel after a 101, its
//!   zero-copy path, and quiet tunnels set aside outside the runtime;
//!   `wire` and `record` let a quiet wss:// tunnel's TLS 1.3 session leave
//!   rustls as its keys, and carry its records when it wakes.

mod body;
pub(crate) mod conn;
mod connection;
mod deflate;
mod downstream;
pub(crate) mod error;
mod errordoc;
pub mod explain;
mod files;
mod forward;
mod frames;
mod gate;
mod h2;
mod handler;
pub mod handover;
mod header_rules;
mod headers;
mod htpasswd;
mod logging;
mod multiviews;
pub(crate) mod park;
mod ping;
mod plan;
mod polite;
mod proxy_answers;
pub mod proxy_protocol;
mod record;
mod remote_ip;
mod reqtimeout;
mod request;
mod rewrite_fixup;
pub mod server;
mod signature;
mod splice;
mod tls;
pub(crate) mod tunnel;
mod unique_id;
mod upgrade;
mod wire;

pub use connection::ConnFacts;
