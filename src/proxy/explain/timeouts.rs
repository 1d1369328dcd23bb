//! Every timeout that applies to a request, each as `timeout NAME: VALUE
//! (WHERE)`: the configuration line it comes from, or `default`. The
//! values are the ones the proxy computes (`forward::Timeouts`,
//! `connection::head_completion`, the configuration's merged settings);
//! only where they were written is looked up here.

use std::net::SocketAddr;
use std::time::Duration;

use super::sources::Sources;
use super::Report;
use crate::config::{Config, Origin, Server, TcpLiveness};
use crate::proxy::forward::{self, Backend, Timeouts};
use crate::proxy::tunnel::Mode;

/// `60 s`, `1500 ms`.
pub(super) fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Where a server-level directive holds: the server's own line, else the
/// main server's, else `default`.
fn written<'c>(config: &'c Config, server: &'c Server, name: &str) -> Option<&'c Origin> {
    server
        .written
        .last(name)
        .or_else(|| config.main.written.last(name))
}

fn place(o: Option<&Origin>) -> String {
    o.map_or("default".to_string(), |o| o.to_string())
}

/// The timeouts of the connection, whatever its requests: the heads, keep-alive,
/// a graceful stop, and the client side's socket options.
pub(super) fn global(
    out: &mut Report,
    sources: &mut Sources,
    config: &Config,
    local: Option<SocketAddr>,
) {
    let main = &config.main;
    out.line(
        "timeout Timeout",
        format!(
            "{} ({}): waiting for a connection's first request; each read and write toward the client",
            duration(config.timeout),
            place(main.written.last("Timeout"))
        ),
    );
    let keepalive = if config.keepalive {
        "waiting for a next request on a kept-alive connection".to_string()
    } else {
        format!(
            "unused: KeepAlive Off ({}) closes a connection after each answer",
            place(main.written.last("KeepAlive"))
        )
    };
    out.line(
        "timeout KeepAliveTimeout",
        format!(
            "{} ({}): {keepalive}",
            duration(config.keepalive_timeout),
            place(main.written.last("KeepAliveTimeout"))
        ),
    );
    let at = local.map_or(main, |l| crate::route::select_server(config, l, None));
    let stages = &at.read_timeouts;
    let written = at
        .written
        .last("RequestReadTimeout")
        .or_else(|| main.written.last("RequestReadTimeout"));
    for (name, stage) in [
        ("handshake", &stages.handshake),
        ("header", &stages.header),
        ("body", &stages.body),
    ] {
        let text = if stage.is_off() || !stages.any() {
            "off, each read within Timeout".to_string()
        } else {
            let mut t = duration(stage.timeout);
            if let Some(rate) = stage.min_rate {
                let max = stage.max.map_or(", without end".into(), |m| {
                    format!(", up to {}", duration(m))
                });
                t.push_str(&format!(
                    " from the first read, {rate} bytes a second more{max}"
                ));
            }
            t
        };
        out.line(
            &format!("timeout RequestReadTimeout {name}"),
            format!("{text} ({})", place(written)),
        );
    }
    let grace = match config.graceful_shutdown {
        Some(d) => duration(d),
        None => "none, waits for ever".into(),
    };
    out.line(
        "timeout GracefulShutdownTimeout",
        format!(
            "{grace} ({}): how long a graceful stop lets requests and tunnels finish",
            place(main.written.last("GracefulShutdownTimeout"))
        ),
    );
    // Client sockets take the options of the server their address selects.
    let server = local.map_or(main, |l| crate::route::select_server(config, l, None));
    liveness(out, sources, config, server, "client");
}

/// TCP keepalive and `TCP_USER_TIMEOUT` of one side's sockets.
fn liveness(out: &mut Report, sources: &mut Sources, config: &Config, server: &Server, side: &str) {
    let l: &TcpLiveness = if side == "client" {
        &server.liveness.client
    } else {
        &server.liveness.backend
    };
    let keepalive = match &l.keepalive {
        Some(p) => format!(
            "idle {}, then every {}, closed after {} unanswered probes",
            duration(p.idle),
            duration(p.interval),
            p.count
        ),
        None => "off".into(),
    };
    let o = side_origin(sources, config, server, "WsgateTCPKeepAlive", side);
    out.line(
        &format!("timeout TCP keepalive {side}"),
        format!("{keepalive} ({})", place(o.as_ref())),
    );
    let user = l.user_timeout.map_or("off".into(), duration);
    let o = side_origin(sources, config, server, "WsgateTCPUserTimeout", side);
    out.line(
        &format!("timeout TCP_USER_TIMEOUT {side}"),
        format!("{user} ({})", place(o.as_ref())),
    );
}

/// The last line of a liveness directive that sets `side` (a line naming
/// no side sets both), the server's before the main server's.
fn side_origin(
    sources: &mut Sources,
    config: &Config,
    server: &Server,
    name: &str,
    side: &str,
) -> Option<Origin> {
    for s in [server, &config.main] {
        let lines: Vec<&Origin> = s.written.all(name).collect();
        for o in lines.into_iter().rev() {
            let text = sources.line(o);
            let first = text.split_whitespace().nth(1).unwrap_or("");
            let named =
                first.eq_ignore_ascii_case("client") || first.eq_ignore_ascii_case("backend");
            if !named || first.eq_ignore_ascii_case(side) {
                return Some(o.clone());
            }
        }
    }
    None
}

/// The timeouts of a request proxied to `backend`: `t` as the proxy
/// computes them, the tunnel's mode, and the worker's line.
pub(super) fn request(
    out: &mut Report,
    sources: &mut Sources,
    global: &Config,
    req: &forward::Request<'_>,
    backend: &Backend<'_>,
    (t, mode, worker): (Timeouts, Option<Mode>, Option<&Origin>),
    locations: &[usize],
) {
    let server = req.server;
    let params = backend.worker.params;
    if server.written.last("Timeout").is_some() && server.origin.is_some() {
        out.line(
            "timeout Timeout (vhost)",
            format!(
                "{} ({}): each read and write toward the client once the vhost is known",
                duration(t.client),
                place(server.written.last("Timeout"))
            ),
        );
    }
    let worker_place = place(worker);
    let backend_source = if params.timeout.is_some() {
        format!("timeout=, {worker_place}")
    } else if req.settings.base.proxy_timeout.is_some() {
        format!(
            "ProxyTimeout, {}",
            place(written(global, server, "ProxyTimeout"))
        )
    } else {
        format!("Timeout, {}", place(written(global, server, "Timeout")))
    };
    out.line(
        "timeout backend",
        format!(
            "{} ({backend_source}): each read and write toward the backend, and the wait for its answer",
            duration(t.backend)
        ),
    );
    let connect_source = if params.connection_timeout.is_some() {
        format!("connectiontimeout=, {worker_place}")
    } else {
        "the backend timeout".into()
    };
    out.line(
        "timeout connect",
        format!(
            "{} ({connect_source}): connecting to the backend",
            duration(t.connect)
        ),
    );
    let idle = match mode {
        Some(Mode::HalfClose(Some(d))) => format!(
            "{} (the larger of the client and backend timeouts): a tunnel quiet this long both ways is closed",
            duration(d)
        ),
        Some(Mode::HalfClose(None)) => "none".into(),
        Some(Mode::CloseBoth) => {
            let o = legacy_origin(global, server, locations);
            format!("none (ProxyWebsocketFallbackToProxyHttp Off, {}: legacy mod_proxy_wstunnel has no idle timeout)", place(o))
        }
        None => "not a tunnel".into(),
    };
    out.line("timeout tunnel idle", idle);
    if mode.is_some() {
        websocket(out, global, server, req, locations);
    }
    let text = worker.map(|o| sources.line(o)).unwrap_or_default();
    let set = |key: &str| text.to_ascii_lowercase().contains(&format!("{key}="));
    let retry_source = if set("retry") {
        format!("retry=, {worker_place}")
    } else {
        "default".into()
    };
    out.line(
        "timeout retry",
        format!(
            "{} ({retry_source}): a worker in error is not used again for this long",
            duration(params.retry)
        ),
    );
    if let Some(a) = params.acquire {
        out.line(
            "timeout acquire",
            format!(
                "{} (acquire=, {worker_place}): waiting for a free connection (max=)",
                duration(a)
            ),
        );
    }
    if let Some(ttl) = params.ttl {
        out.line(
            "timeout ttl",
            format!(
                "{} (ttl=, {worker_place}): an idle pooled backend connection is closed after this",
                duration(ttl)
            ),
        );
    }
    if server.http2.enabled || server.http2.cleartext {
        let h2 = server
            .http2
            .stream_timeout
            .map_or("Timeout".into(), duration);
        out.line(
            "timeout H2StreamTimeout",
            format!(
                "{h2} ({}): an HTTP/2 stream's body reads and window waits",
                place(written(global, server, "H2StreamTimeout"))
            ),
        );
    }
    liveness(out, sources, global, server, "backend");
}

/// A WebSocket tunnel's frame tracker and Pings (`WsgateWebSocketFrames`,
/// `WsgateWebSocketPing`), as the request's settings have them.
fn websocket(
    out: &mut Report,
    config: &Config,
    server: &Server,
    req: &forward::Request<'_>,
    locations: &[usize],
) {
    let at = |name| place(last_set(config, server, locations, name));
    let s = req.settings;
    let frames = if s.frames || s.ping.is_some() {
        "on: a stop, a drained member or a reload that removed the backend closes the tunnel with 1001"
    } else {
        "off: a stop or a drain cuts the TCP connections"
    };
    let source = if !s.frames && s.ping.is_some() {
        format!("with WsgateWebSocketPing, {}", at("WsgateWebSocketPing"))
    } else {
        at("WsgateWebSocketFrames")
    };
    out.line("websocket frames", format!("{frames} ({source})"));
    let ping = match s.ping {
        Some(p) => format!(
            "a side silent for {} gets a Ping; closed as dead without an answer within {} ({})",
            duration(p.every()),
            duration(p.wait()),
            at("WsgateWebSocketPing")
        ),
        None => format!("off ({})", at("WsgateWebSocketPing")),
    };
    out.line("timeout WebSocket ping", ping);
}

/// Where a directive a `<Location>` may set was set for this request: the
/// last matching `<Location>` that sets it, else the server.
fn last_set<'c>(
    config: &'c Config,
    server: &'c Server,
    locations: &[usize],
    name: &str,
) -> Option<&'c Origin> {
    locations
        .iter()
        .rev()
        .find_map(|&i| server.locations[i].written.last(name))
        .or_else(|| written(config, server, name))
}

/// Where `ProxyWebsocketFallbackToProxyHttp` was set for this request:
/// the last matching `<Location>` that sets it, else the server.
fn legacy_origin<'c>(
    config: &'c Config,
    server: &'c Server,
    locations: &[usize],
) -> Option<&'c Origin> {
    let name = "ProxyWebsocketFallbackToProxyHttp";
    locations
        .iter()
        .rev()
        .find_map(|&i| server.locations[i].written.last(name))
        .or_else(|| written(config, server, name))
}
