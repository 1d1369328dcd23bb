//! Listening, accepting, connection limits, reload and graceful shutdown.
//!
//! The running configuration sits behind a lock that is only held to clone
//! an `Arc`: each request takes the configuration current when it starts, so
//! a reload never touches a live request or tunnel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use super::http::{self, ConnFacts};
use super::park::{self, Parker};
use crate::config::{Config, StateRegistry};

/// Listen backlog: enough for thousands of clients connecting at once.
const BACKLOG: u32 = 4096;

/// Counters for logs and, later, metrics and the status page.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub tunnels: AtomicUsize,
    pub tunnels_total: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

impl Stats {
    pub fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn add_tunnel_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
    }
}

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub stats: Stats,
    shutdown: watch::Sender<bool>,
    drained: Notify,
    limit: Option<Arc<Semaphore>>,
    /// `limit` was reached once and that was logged.
    limit_reported: AtomicBool,
    /// Idle tunnels set aside (see `park`).
    parker: Arc<Parker>,
}

impl Shared {
    /// The configuration new requests use.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.shared.stats.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.drained.notify_waiters();
        }
    }
}

/// A running proxy.
pub struct Handle {
    shared: Arc<Shared>,
    listeners: Mutex<HashMap<SocketAddr, JoinHandle<()>>>,
    /// Balancer members' state, kept across reloads.
    registry: StateRegistry,
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
        // Parked tunnels hold the server (their guards count connections),
        // and the server holds them: close them so that both go.
        self.parker_watch.abort();
        self.shared.parker.close_all();
    }
}

/// Starts the health checks of a configuration's balancer members.
fn start_health_checks(config: &Config) -> Vec<JoinHandle<()>> {
    crate::balancer::health::start(
        &config.balancers,
        config.main.settings.ssl_proxy.client.clone(),
    )
}

impl Handle {
    /// Binds every `Listen` address and starts accepting.
    pub async fn start(config: Config) -> io::Result<Handle> {
        Handle::start_with(config, StateRegistry::default()).await
    }

    /// Like [`Handle::start`], for a configuration built with `registry`
    /// (`config::load_with`), which reloads must then use too.
    pub async fn start_with(config: Config, registry: StateRegistry) -> io::Result<Handle> {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let limit = config.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let (shutdown, _) = watch::channel(false);
        let (parker, watcher) = Parker::new()?;
        let watcher = tokio::spawn(watcher);
        let shared = Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            stats: Stats::default(),
            shutdown,
            drained: Notify::new(),
            limit,
            limit_reported: AtomicBool::new(false),
            parker,
        });
        let mut listeners = HashMap::new();
        for addr in addrs {
            let listener = bind(addr)?;
            let bound = listener.local_addr()?;
            tracing::info!("listening on {bound}");
            listeners.insert(addr, tokio::spawn(accept_loop(listener, shared.clone())));
        }
        let checks = start_health_checks(&shared.config());
        Ok(Handle {
            shared,
            listeners: Mutex::new(listeners),
            registry,
            health_checks: Mutex::new(checks),
            parker_watch: watcher,
        })
    }

    /// The member state a reloaded configuration must be built with.
    pub fn registry(&self) -> &StateRegistry {
        &self.registry
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Swaps in a new configuration: new connections and requests use it,
    /// live ones keep theirs. Listeners added are bound first; if one cannot
    /// be, nothing changes.
    pub fn reload(&self, config: Config) -> io::Result<()> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let mut fresh = Vec::new();
        for addr in &wanted {
            if !listeners.contains_key(addr) {
                fresh.push((*addr, bind(*addr)?));
            }
        }
        let old = self.shared.config();
        if old.max_connections != config.max_connections {
            tracing::warn!(
                "MaxRequestWorkers changes take effect at the next start, not on reload"
            );
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let checks = start_health_checks(&config);
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        for task in std::mem::replace(
            &mut *self.health_checks.lock().unwrap_or_else(|p| p.into_inner()),
            checks,
        ) {
            task.abort();
        }
        for (addr, listener) in fresh {
            tracing::info!("listening on {addr}");
            listeners.insert(
                addr,
                tokio::spawn(accept_loop(listener, self.shared.clone())),
            );
        }
        listeners.retain(|addr, task| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!("no longer listening on {addr}");
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
        for (_, task) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
        let _ = self.shared.shutdown.send(true);
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
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("could not bind to address {addr}: {e}")))?;
    socket.listen(BACKLOG)
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
        shared.stats.connections.fetch_add(1, Ordering::AcqRel);
        let guard = ConnGuard {
            shared: shared.clone(),
            _permit: permit,
        };
        // The request handler is boxed, so that the runtime moves a
        // pointer rather than kilobytes into the task and again on each of
        // its changes of stage: at one request per connection (WebSocket
        // handshakes) those copies cost more than the allocation.
        tokio::spawn(park::Connection::new(Box::pin(http::serve(
            stream,
            ConnFacts { peer, local },
            shared.clone(),
            guard,
        ))));
    }
}
