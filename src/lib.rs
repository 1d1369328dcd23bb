//! wsgate: a reverse proxy for WebSocket and other HTTP/1.1 upgrades,
//! configured with Apache httpd's own directives.
//!
//! # Layout
//!
//! The modules follow a connection:
//!
//! * `config` — Apache configuration text to a validated [`config::Config`]:
//!   `lexer` (file syntax), `include` (Include, Define, IfModule…), then one
//!   file per Apache module (`proxy`, `ssl`) building `model`.
//! * `route` — pure: request path normalisation and the mapping of a request
//!   to a backend url (ProxyPass, ProxyPassMatch, `<Location>`), after
//! * `rewrite` — pure: mod_rewrite's rules and conditions.
//! * `rules` — pure: mod_headers, mod_env and mod_setenvif rules, and the
//!   ap_expr subset they use.
//! * `balancer` — choosing a balancer member (lbmethods, sticky routes,
//!   error states) and the background health checks.
//! * `proxy` — the engine: `server` accepts, `http` reads requests and
//!   forwards them, `upgrade` decides on protocol switches, `tunnel` copies
//!   bytes after a 101, `headers` builds the heads, `backend` and `pool`
//!   connect to backends.
//! * `tls` — rustls configuration for backends from `SSLProxy*`.
//! * `demo` — the self-contained `wsgate demo`.
//! * `alloc` — the process's allocator: glibc's, with tokio's over-aligned
//!   blocks taken from its fast path.

pub mod alloc;
pub mod balancer;
pub mod config;
pub mod demo;
pub mod http;
pub mod log;
pub mod proxy;
pub mod rewrite;
pub mod route;
pub mod rules;
pub mod tls;
pub mod upstream;
