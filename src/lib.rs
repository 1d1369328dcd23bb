//! wsgate: a reverse proxy for WebSocket and other HTTP/1.1 upgrades,
//! configured with Apache httpd's own directives.
//!
//! # Map
//!
//! Layers import only downward; the README's "How it is built" lists what
//! each module imports. From the bottom:
//!
//! * `http` — the message model (heads, fields, versions, target urls,
//!   limits, body framing) and the HTTP/1 wire format. A leaf.
//! * `config` — Apache configuration text to an immutable [`config::Config`]:
//!   plain data, with a stable identity per worker, balancer and member.
//! * `rewrite` — pure: mod_rewrite's rules and conditions.
//! * `rules` — pure: mod_headers, mod_env and mod_setenvif, and ap_expr.
//! * `route` — pure: virtual host, path normalisation, and a request's
//!   mapping to a backend url (ProxyPass, ProxyPassMatch, `<Location>`).
//! * `balancer` — pure choices: a balancer member by lbmethod, sticky route
//!   and error state, over counters kept by `upstream`.
//! * `upstream` — everything toward backends and the only place that opens
//!   connections to them: resolve, connect (TCP, TLS), pool, `max=`, health
//!   checks, and the runtime that keeps their state by identity.
//! * `proxy` — a connection's life: accept, read the head, plan, forward,
//!   upgrade, tunnel, park.
//! * `ops` — what the operator sees: the error log and the running counts.
//! * `demo` — the self-contained `wsgate demo`.
//! * `alloc` — the process's allocator: glibc's, with tokio's over-aligned
//!   blocks taken from its fast path.

pub mod alloc;
mod balancer;
pub mod config;
pub mod demo;
pub mod http;
pub mod ops;
pub mod proxy;
mod rewrite;
pub mod route;
mod rules;
pub mod upstream;
