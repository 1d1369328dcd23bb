//! Listening, accepting, connection limits, reload and graceful shutdown.
//!
//! The running configuration is a [`Generation`] (the configuration bound
//! to the runtime's state) swapped atomically: each connection and request
//! takes the one current when it starts, so a reload never touches a live
//! request or tunnel, and taking it costs no lock.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::DuplexStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use super::connection::{self, ConnFacts};
use super::park::{self, Parker};
use super::proxy_protocol;
use super::tls::{self, Edge, Handshake, TlsFacts};
use crate::config::{Config, TcpLiveness};
use crate::ops::access::{AccessLogs, Sinks};
use crate::ops::Stats;
use crate::upstream::memory::MemoryNet;
use crate::upstream::order::Order;
use crate::upstream::{health, Generation, Network, Runtime};

/// What new connections and requests run on: the configuration bound to
/// the runtime, and its TLS servers' rustls configurations, swapped
/// together.
pub struct Current {
    pub generation: Arc<Generation>,
    pub edge: Edge,
    /// Its access logs' queues, in the order of its `access_logs`.
    pub logs: Sinks,
}

impl Current {
    fn new(generation: Generation, logs: &AccessLogs) -> Current {
        let edge = Edge::new(&generation.config);
        Current {
            logs: logs.sinks_for(&generation.config),
            generation: Arc::new(generation),
            edge,
        }
    }
}

pub struct Shared {
    current: ArcSwap<Current>,
    /// Pools, addresses, member states and `max=` slots, by identity,
    /// for every generation.
    runtime: Runtime,
    pub stats: Stats,
    /// The open tunnels, when a status page shows them.
    pub tunnels: crate::ops::tunnels::Tunnels,
    shutdown: watch::Sender<bool>,
    drained: Notify,
    limit: Option<Arc<Semaphore>>,
    /// `limit` was reached once and that was logged.
    limit_reported: AtomicBool,
    /// Idle tunnels set aside (see `park`).
    parker: Arc<Parker>,
    /// The access logs' writers, kept across reloads.
    access: AccessLogs,
    /// A graceful stop's order to close every tunnel politely.
    pub stop: Arc<Order>,
}

impl Shared {
    /// The configuration, bound to the runtime, that new requests use.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load().generation.clone()
    }

    /// The generation and its TLS configurations.
    pub fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    pub fn parker(&self) -> Arc<Parker> {
        self.parker.clone()
    }

    /// Changes to `true` when a graceful shutdown starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Holds a connection's place in the count (and `MaxRequestWorkers`) until
/// the connection, or the tunnel it became, ends.
pub struct ConnGuard {
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl ConnGuard {
    /// Counts a connection in until the guard is dropped.
    fn new(shared: &Arc<Shared>, permit: Option<OwnedSemaphorePermit>) -> ConnGuard {
        shared.stats.connections.fetch_add(1, Ordering::AcqRel);
        shared
            .stats
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            shared: shared.clone(),
            _permit: permit,
        }
    }
}

/// A place in the connection count for a tunnel on an HTTP/2 stream: the
/// stream holds it as a connection's tunnel does, beside its connection's.
pub(crate) fn stream_guard(shared: &Arc<Shared>) -> ConnGuard {
    ConnGuard::new(shared, None)
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.shared.stats.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.drained.notify_waiters();
        }
    }
}

/// A listener in service.
struct Accepting {
    task: JoinHandle<()>,
    local: SocketAddr,
    socket: OwnedFd,
}

/// A running proxy.
pub struct Handle {
    shared: Arc<Shared>,
    /// By the address `Listen` names: the accepting task, the address
    /// bound (they differ for port 0), and a duplicate of the socket to
    /// hand to a successor (`handover`).
    listeners: Mutex<HashMap<SocketAddr, Accepting>>,
    health_checks: Mutex<Vec<JoinHandle<()>>>,
    parker_watch: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in self
            .health_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        for (_, Accepting { task, .. }) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
        // Parked tunnels hold the server (their guards count connections),
        // and the server holds them: close them so that both go.
        self.parker_watch.abort();
        self.shared.parker.close_all(super::tunnel::End::Shutdown);
    }
}

impl Handle {
    /// Binds every `Listen` address — or takes the socket systemd passed
    /// for it (socket activation) — and starts accepting.
    pub async fn start(config: Config) -> io::Result<Handle> {
        Handle::start_then(config, &mut || Ok(())).await
    }

    /// [`Handle::start`], running `before_serving` once the sockets are
    /// bound and the logs open, before any connection is accepted or
    /// backend checked (`User`: the change of user, so that nothing is
    /// served as root). Its error stops the start.
    pub async fn start_then(
        config: Config,
        before_serving: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<Handle> {
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let mut passed = passed_listeners();
        let mut bound = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let listener = match take_passed(&mut passed, addr) {
                Some(l) => {
                    tracing::info!("{addr}: using the socket passed to wsgate");
                    l.set_nonblocking(true)?;
                    TcpListener::from_std(l)?
                }
                None => bind(addr)?,
            };
            bound.push((addr, listener));
        }
        for (addr, _) in passed {
            tracing::warn!(
                "systemd passed a socket bound to {addr}, which no Listen names: closed"
            );
        }
        Handle::start_with(config, bound, Runtime::default(), before_serving)
    }

    /// Starts accepting on listeners already bound, each under the `Listen`
    /// address it stands for (tests hand in sockets they bound themselves).
    pub fn start_on(
        config: Config,
        listeners: Vec<(SocketAddr, TcpListener)>,
    ) -> io::Result<Handle> {
        Handle::start_with(config, listeners, Runtime::default(), &mut || Ok(()))
    }

    /// Starts with no listener, its backends on an in-process network;
    /// clients come through [`Handle::connect`]. With tokio's clock paused,
    /// timeouts then run exactly (see `upstream::memory`).
    pub fn start_in_memory(config: Config, net: Arc<MemoryNet>) -> io::Result<Handle> {
        let runtime = Runtime::with_network(Network::Memory(net));
        Handle::start_with(config, Vec::new(), runtime, &mut || Ok(()))
    }

    /// A client connection made in process: the client's end of a pipe
    /// whose other end the server serves as if `peer` had connected to
    /// `local`.
    pub fn connect(&self, peer: SocketAddr, local: SocketAddr) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let facts = ConnFacts {
            peer,
            local,
            https: false,
            via: None,
            keepalive: true,
        };
        spawn_connection(&self.shared, server, facts, None, None);
        client
    }

    fn start_with(
        config: Config,
        listeners: Vec<(SocketAddr, TcpListener)>,
        runtime: Runtime,
        before_serving: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<Handle> {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let limit = config.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let (shutdown, _) = watch::channel(false);
        let (parker, watcher) = Parker::new()?;
        let watcher = tokio::spawn(watcher);
        let access = AccessLogs::default();
        let current = Current::new(runtime.bind(config), &access);
        before_serving()?;
        let checks = health::start(&current.generation);
        let shared = Arc::new(Shared {
            access,
            current: ArcSwap::from_pointee(current),
            runtime,
            stats: Stats::default(),
            tunnels: Default::default(),
            shutdown,
            drained: Notify::new(),
            limit,
            limit_reported: AtomicBool::new(false),
            parker,
            stop: Arc::default(),
        });
        shared
            .stats
            .timed
            .store(shared.generation().config.shows_counts, Ordering::Relaxed);
        super::polite::follow_members(&shared, &shared.generation());
        let mut accepting = HashMap::new();
        for (addr, listener) in listeners {
            let local = listener.local_addr()?;
            let fd = listener.as_fd().try_clone_to_owned()?;
            tracing::info!("listening on {local}");
            let task = tokio::spawn(accept_loop(listener, shared.clone()));
            accepting.insert(
                addr,
                Accepting {
                    task,
                    local,
                    socket: fd,
                },
            );
        }
        Ok(Handle {
            shared,
            listeners: Mutex::new(accepting),
            health_checks: Mutex::new(checks),
            parker_watch: watcher,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The addresses accepting connections, as bound (a `Listen` on port 0
    /// gets its port here), in no particular order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|a| a.local)
            .collect();
        addrs.sort();
        addrs
    }

    /// Each listening socket under the `Listen` address it serves,
    /// duplicated, for a successor to take over (`handover`).
    pub fn listening_sockets(&self) -> io::Result<Vec<(SocketAddr, OwnedFd)>> {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners
            .iter()
            .map(|(addr, a)| Ok((*addr, a.socket.try_clone()?)))
            .collect()
    }

    /// Swaps in a new configuration: new connections and requests use it,
    /// live ones keep theirs. Listeners added are bound first; if one cannot
    /// be, nothing changes. Workers and members the new configuration keeps
    /// keep their pools, addresses, `max=` slots and states.
    pub fn reload(&self, config: Config) -> io::Result<()> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let mut fresh = Vec::new();
        for addr in &wanted {
            if !listeners.contains_key(addr) {
                fresh.push((*addr, bind(*addr)?));
            }
        }
        let old = self.shared.generation();
        if old.config.max_connections != config.max_connections {
            tracing::warn!(
                "MaxRequestWorkers changes take effect at the next start, not on reload"
            );
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let current = Current::new(self.shared.runtime.bind(config), &self.shared.access);
        let checks = health::start(&current.generation);
        let new = current.generation.clone();
        self.shared
            .stats
            .timed
            .store(new.config.shows_counts, Ordering::Relaxed);
        self.shared.current.store(Arc::new(current));
        self.shared.stats.reloaded();
        super::polite::follow_reload(&self.shared, &old, &new);
        super::polite::follow_members(&self.shared, &new);
        for task in std::mem::replace(
            &mut *self.health_checks.lock().unwrap_or_else(|p| p.into_inner()),
            checks,
        ) {
            task.abort();
        }
        for (addr, listener) in fresh {
            let local = listener.local_addr()?;
            let fd = listener.as_fd().try_clone_to_owned()?;
            tracing::info!("listening on {local}");
            let task = tokio::spawn(accept_loop(listener, self.shared.clone()));
            listeners.insert(
                addr,
                Accepting {
                    task,
                    local,
                    socket: fd,
                },
            );
        }
        listeners.retain(|addr, Accepting { task, local, .. }| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!("no longer listening on {local}");
                task.abort();
            }
            keep
        });
        Ok(())
    }

    /// Stops accepting, closes idle keep-alive connections, and waits for
    /// requests and tunnels to finish for at most `grace` (`None`: for
    /// ever). Returns how many connections were still open at the end.
    pub async fn shutdown(&self, grace: Option<Duration>) -> usize {
        for (_, Accepting { task, .. }) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
        let _ = self.shared.shutdown.send(true);
        // WebSockets whose frames are followed close with 1001, spread
        // over half the grace period (the rest is for their answers).
        self.shared
            .stop
            .give_all(grace.unwrap_or(crate::config::model::DEFAULT_GRACEFUL_SHUTDOWN));
        self.shared.parker.wake_ordered();
        let drained = async {
            loop {
                let notified = self.shared.drained.notified();
                if self.shared.stats.connections.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        match grace {
            Some(t) => {
                let _ = tokio::time::timeout(t, drained).await;
            }
            None => drained.await,
        }
        self.shared.stats.connections.load(Ordering::Acquire)
    }

    /// Serves until `stop` completes, then shuts down gracefully with the
    /// configuration's `GracefulShutdownTimeout`; returns how many
    /// connections were still open at the end (for in-process use: tests,
    /// embedding).
    pub async fn serve_until(self, stop: impl Future<Output = ()>) -> usize {
        stop.await;
        let grace = self.shared.generation().config.graceful_shutdown;
        self.shutdown(grace).await
    }
}

/// The listening sockets systemd passed this process (socket activation,
/// `sd_listen_fds(3)`): `LISTEN_FDS` descriptors from 3 on, when
/// `LISTEN_PID` names this process; by the address each is bound to.
fn passed_listeners() -> HashMap<SocketAddr, std::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    let mut passed = HashMap::new();
    // A wsgate handing over (`handover`) names the `Listen` address each
    // socket serves, in order from descriptor 3.
    let named: Option<Vec<SocketAddr>> = std::env::var(super::handover::PASSED).ok().map(|v| {
        v.split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect()
    });
    let count = match &named {
        Some(names) => names.len() as i32,
        None if number("LISTEN_PID") == Some(std::process::id()) => {
            number("LISTEN_FDS").unwrap_or(0).min(1024) as i32
        }
        None => return passed,
    };
    for fd in 3..3 + count {
        // SAFETY: systemd hands descriptors 3.. to the process LISTEN_PID
        // names, which is this one, for it to own; nothing else here uses
        // them.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        match listener.local_addr() {
            Ok(bound) => {
                // SAFETY: fcntl on a descriptor this process owns.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                let addr = named
                    .as_ref()
                    .and_then(|n| n.get((fd - 3) as usize).copied())
                    .unwrap_or(bound);
                passed.insert(addr, listener);
            }
            // Not a TCP socket: left as it was, and open.
            Err(_) => {
                let _ = listener.into_raw_fd();
            }
        }
    }
    passed
}

/// The passed socket for `Listen addr`: bound to it, or for a wildcard
/// `Listen`, to any address on its port (systemd binds `[::]` for both
/// families).
fn take_passed(
    passed: &mut HashMap<SocketAddr, std::net::TcpListener>,
    addr: SocketAddr,
) -> Option<std::net::TcpListener> {
    if let Some(l) = passed.remove(&addr) {
        return Some(l);
    }
    let wildcard = addr.ip().is_unspecified();
    let other = passed
        .keys()
        .find(|a| wildcard && a.ip().is_unspecified() && a.port() == addr.port())
        .copied()?;
    passed.remove(&other)
}

/// Binds here, or by the privileged opener where this process, serving
/// as `User`, may not (a port below 1024 a reload added).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = crate::ops::privilege::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let local = listener.local_addr().ok();
    loop {
        let permit = match &shared.limit {
            Some(limit) => match limit.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(TryAcquireError::Closed) => return,
                Err(TryAcquireError::NoPermits) => {
                    // Once, as Apache's AH00484: the backlog is now filling.
                    if !shared.limit_reported.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "server reached MaxRequestWorkers setting: new connections wait in the listen backlog until one ends; consider raising MaxRequestWorkers"
                        );
                    }
                    match limit.clone().acquire_owned().await {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    }
                }
            },
            None => None,
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Only a wildcard listener needs to ask which address was reached.
        let local = match local {
            Some(l) if !l.ip().is_unspecified() => l,
            _ => stream.local_addr().ok().or(local).unwrap_or(peer),
        };
        let facts = ConnFacts {
            peer,
            local,
            https: false,
            via: None,
            keepalive: true,
        };
        let current = shared.current();
        let config = &current.generation.config;
        if config.proxy_protocol.applies(local, peer) {
            // The balancer's header first, in the connection's own task.
            let (shared, timeout) = (shared.clone(), config.timeout);
            let mut stream = stream;
            tokio::spawn(async move {
                if let Some(facts) = proxy_protocol::accept(&mut stream, facts, timeout).await {
                    dispatch(&shared, current, stream, facts, permit);
                }
            });
        } else {
            dispatch(&shared, current, stream, facts, permit);
        }
    }
}

/// Starts serving an accepted connection: TLS, h2c or HTTP/1, as the
/// server its address selects (before a Host is read) says, with that
/// server's client-side socket options.
fn dispatch(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    stream: TcpStream,
    facts: ConnFacts,
    permit: Option<OwnedSemaphorePermit>,
) {
    let config = &current.generation.config;
    let server = crate::route::select_server(config, facts.local, None);
    client_liveness(&stream, &server.liveness.client, facts.peer);
    if tls::tls_server(config, facts.local).is_some() {
        spawn_tls_connection(shared, current, stream, facts, permit);
    } else if server.http2.cleartext {
        spawn_cleartext(shared, current, stream, facts, permit);
    } else {
        spawn_connection(shared, stream, facts, None, permit);
    }
}

/// `WsgateTCPKeepAlive` and `WsgateTCPUserTimeout` on a client connection,
/// when set (best effort: a failure only loses probes).
fn client_liveness(stream: &TcpStream, liveness: &TcpLiveness, peer: SocketAddr) {
    if *liveness == TcpLiveness::default() {
        return;
    }
    if let Err(e) = crate::upstream::liveness::apply(stream.as_fd(), liveness, false) {
        tracing::warn!(%peer, "TCP keepalive or user timeout not set: {e}");
    }
}

/// How long a TLS handshake may take: `Timeout`, or mod_reqtimeout's
/// handshake stage of the address's server if shorter. The stage's
/// initial time only: wsgate counts no handshake bytes to extend it by
/// `MinRate` (a handshake's few hundred bytes are worth less than a
/// second at any sensible rate).
fn handshake_time(config: &Config, local: SocketAddr) -> Duration {
    let t = &crate::route::select_server(config, local, None).read_timeouts;
    if t.handshake.is_off() {
        config.timeout
    } else {
        config.timeout.min(t.handshake.timeout)
    }
}

/// A connection to an address whose server speaks TLS: the handshake in the
/// connection's own task, then the same service as over plain TCP.
fn spawn_tls_connection(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    stream: TcpStream,
    facts: ConnFacts,
    permit: Option<OwnedSemaphorePermit>,
) {
    let guard = ConnGuard::new(shared, permit);
    let shared = shared.clone();
    tokio::spawn(async move {
        let config = &current.generation.config;
        let timeout = handshake_time(config, facts.local);
        match tls::handshake(stream, config, &current.edge, facts.local, timeout).await {
            Handshake::Done(stream, tls) => {
                drop(current);
                let facts = ConnFacts {
                    https: true,
                    ..facts
                };
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    super::h2::serve(*stream, facts, tls, shared, guard).await;
                    return;
                }
                http1(*stream, facts, Some(tls), shared, guard).await;
            }
            Handshake::PlainHttp(stream) => {
                connection::refuse_plain_http(stream, config).await;
            }
            Handshake::NotTls(stream) => connection::close_gracefully(stream).await,
            Handshake::Failed => {}
        }
    });
}

/// A connection to an address whose server lists `h2c`: HTTP/2 when the
/// client opens with its preface (prior knowledge, as mod_http2's
/// `H2Direct`), HTTP/1 otherwise.
fn spawn_cleartext(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    stream: TcpStream,
    facts: ConnFacts,
    permit: Option<OwnedSemaphorePermit>,
) {
    let guard = ConnGuard::new(shared, permit);
    let shared = shared.clone();
    let timeout = current.generation.config.timeout;
    drop(current);
    tokio::spawn(async move {
        match h2c_preface(&stream, timeout).await {
            Some(true) => {
                super::h2::serve(stream, facts, TlsFacts::default(), shared, guard).await;
            }
            Some(false) => http1(stream, facts, None, shared, guard).await,
            // Closed, or nothing but part of the preface within Timeout.
            None => {}
        }
    });
}

/// Whether a connection's first bytes are HTTP/2's preface, without taking
/// them: waits for all 24 while they match it, at most `timeout`.
async fn h2c_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if first[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // The preface split across segments (rare): what is there stays
        // readable, so look again shortly rather than on readiness.
        tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5)))
            .await
            .ok()?;
    }
}

/// Serves a client connection in a task of its own, counted (and holding
/// its `MaxRequestWorkers` place) until it ends.
fn spawn_connection<S>(
    shared: &Arc<Shared>,
    stream: S,
    facts: ConnFacts,
    tls: Option<TlsFacts>,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + park::Parkable + Unpin + Send + 'static,
{
    let guard = ConnGuard::new(shared, permit);
    tokio::spawn(http1(stream, facts, tls, shared.clone(), guard));
}

/// A client connection served as HTTP/1, its tunnel in the same task. The
/// request handler is boxed, so that the runtime moves a pointer rather
/// than kilobytes into the task and again on each of its changes of
/// stage: at one request per connection (WebSocket handshakes) those
/// copies cost more than the allocation.
fn http1<S>(
    stream: S,
    facts: ConnFacts,
    tls: Option<TlsFacts>,
    shared: Arc<Shared>,
    guard: ConnGuard,
) -> impl Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + park::Parkable + Unpin + Send + 'static,
{
    park::Connection::new(Box::pin(connection::serve(
        stream, facts, tls, shared, guard,
    )))
}
