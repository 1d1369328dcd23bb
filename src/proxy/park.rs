//! Idle tunnels set aside outside the runtime.
//!
//! Most tunnels are idle most of the time, and a tunnel in the runtime costs
//! a task and two readiness registrations (about 1.5 KiB). A tunnel quiet
//! for [`PARK_AFTER`] with nothing in flight gives its task and
//! registrations back: its two sockets go into an epoll set of our own, and
//! what it must remember (counts, guards, when it times out) into a slot of
//! a table — a few hundred bytes. The first readiness on either socket (data,
//! a close, an error) puts it back in the runtime as a new task, exactly
//! where it was; its idle timeout runs on while it is parked.
//!
//! Only tunnels whose both sides are plain TCP are parked: a TLS session's
//! state cannot leave its stream.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Registry, Token};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::frames::Scope;
use super::logging::TunnelLog;
use super::record::{Sealed, Session};
use super::server::{ConnGuard, Shared};
use super::tunnel::{AsTcp, End, Outcome, Resting, Run, Summary, Tunnel, Who};
use crate::balancer::Busy;
use crate::upstream::order::clock;
use crate::upstream::{BackendStream, Slot};

/// Batches of readiness events handled before the watcher lets other tasks run.
const WAKE_BATCHES: usize = 4;

/// How long a tunnel must be quiet before it is parked. Waking a parked
/// tunnel costs a few system calls, so a tunnel that talks every few seconds
/// stays in the runtime.
pub const PARK_AFTER: Duration = Duration::from_secs(5);

/// Parking frees the tasks' memory, which is only worth it if the process
/// gets smaller: freed pages are returned to the system a second after the
/// last return when this many tunnels have been parked since, and a few
/// seconds after it for any fewer (each return walks the whole heap).
const TRIM_BATCH: usize = 64;
const TRIM_SOON: Duration = Duration::from_secs(1);
const TRIM_LATER: Duration = Duration::from_secs(5);

/// What a tunnel holds for its whole life, running or parked: its places in
/// the counts and limits, given back when it ends.
pub struct Life {
    shared: Arc<Shared>,
    _guard: ConnGuard,
    _slot: Slot,
    _busy: Option<Busy>,
    /// When it started, by `upstream::order::clock`: with `entry`, as
    /// large as an `Instant` alone, so that the status page's table costs
    /// a tunnel nothing when no status page is configured.
    started: u64,
    /// Its entry in the status page's table (`ops::tunnels`), plus one.
    entry: Option<std::num::NonZeroU32>,
    /// Its access log lines, when the server has any (on the shelf).
    log: Option<TunnelLog>,
}

impl Life {
    pub fn new(
        shared: Arc<Shared>,
        guard: ConnGuard,
        slot: Slot,
        busy: Option<Busy>,
        tunnel: Option<crate::ops::tunnels::TunnelInfo>,
        log: Option<TunnelLog>,
    ) -> Life {
        shared.stats.tunnel_opened();
        slot.tunnel_opened();
        let entry =
            tunnel.and_then(|t| std::num::NonZeroU32::new(shared.tunnels.open(t).wrapping_add(1)));
        Life {
            entry,
            shared,
            _guard: guard,
            _slot: slot,
            _busy: busy,
            started: clock(),
            log,
        }
    }

    fn age(&self) -> Duration {
        Duration::from_nanos(clock().saturating_sub(self.started))
    }

    /// The orders to close politely that may concern this tunnel.
    fn scope(&self) -> Scope {
        Scope {
            stop: self.shared.stop.clone(),
            worker: self._slot.limit().clone(),
            started: self.started,
        }
    }

    /// Whether an order to close concerns this tunnel now.
    fn ordered(&self) -> bool {
        self.shared.stop.concerns(self.started) || self._slot.limit().order.concerns(self.started)
    }

    fn finish(mut self, summary: Summary) {
        if let End::PeerTimedOut(side) = summary.end {
            self.shared.stats.dead_peer();
            tracing::info!(
                ?side,
                up = summary.bytes_up,
                down = summary.bytes_down,
                "tunnel closed: a peer stopped answering (TCP keepalive, WsgateTCPUserTimeout or WsgateWebSocketPing)"
            );
        }
        if let Some(log) = self.log.take() {
            log.finish(&summary);
        }
        tracing::debug!(
            end = ?summary.end,
            up = summary.bytes_up,
            down = summary.bytes_down,
            secs = self.age().as_secs_f64(),
            "tunnel closed"
        );
        self.shared
            .stats
            .add_tunnel_bytes(summary.bytes_up, summary.bytes_down);
        if self.shared.stats.is_timed() {
            let age = self.age();
            self.shared.stats.add_duration(age);
            self.shared.stats.tunnel_life.observe(age);
        }
        self._slot
            .tunnel_bytes(summary.bytes_up, summary.bytes_down);
    }

    /// The byte counts as of now, for the status page's table.
    fn note_bytes(&self, up: u64, down: u64) {
        if let Some(i) = self.entry {
            self.shared.tunnels.note_bytes(i.get() - 1, up, down);
        }
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        self.shared.stats.tunnel_closed();
        self._slot.tunnel_closed();
        if let Some(i) = self.entry {
            self.shared.tunnels.close(i.get() - 1);
        }
    }
}

/// A tunnel's side that may be set aside: plain TCP, or a TLS 1.3
/// session that can leave rustls (`wire`, `record`).
pub trait Parkable: Sized + AsTcp {
    /// Whether quiet tunnels with this side may be parked at all (asked
    /// when the tunnel starts).
    fn can_park(&self) -> bool {
        self.as_tcp().is_some()
    }
    /// Out of the runtime; only called when `can_park`.
    fn into_parked(self) -> Park<Self>;
}

/// What [`Parkable::into_parked`] gives.
pub enum Park<S> {
    Out(Side),
    /// Bytes are held inside the stream that a park would lose: the tunnel
    /// runs on, and tries again when quiet again.
    NotNow(S),
    Failed(io::Error),
}

/// A side of a parked tunnel: its socket, and the TLS session's record
/// state when it speaks TLS.
pub struct Side {
    pub tcp: std::net::TcpStream,
    pub tls: Option<Box<Session>>,
}

fn plain<S>(tcp: io::Result<std::net::TcpStream>) -> Park<S> {
    match tcp {
        Ok(tcp) => Park::Out(Side { tcp, tls: None }),
        Err(e) => Park::Failed(e),
    }
}

impl Parkable for TcpStream {
    fn into_parked(self) -> Park<Self> {
        plain(self.into_std())
    }
}

impl Parkable for tokio::io::DuplexStream {
    fn into_parked(self) -> Park<Self> {
        Park::Failed(io::Error::other("only sockets are parked"))
    }
}

impl Parkable for Sealed {
    fn can_park(&self) -> bool {
        true
    }

    fn into_parked(self) -> Park<Self> {
        if !self.at_rest() {
            return Park::NotNow(self);
        }
        let (tcp, session) = self.into_parts();
        match tcp.into_std() {
            Ok(tcp) => Park::Out(Side {
                tcp,
                tls: Some(session),
            }),
            Err(e) => Park::Failed(e),
        }
    }
}

impl AsTcp for BackendStream {
    fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            BackendStream::Plain(s) => Some(s),
            BackendStream::Tls(_) | BackendStream::Memory(_) => None,
        }
    }
}

impl Parkable for BackendStream {
    fn into_parked(self) -> Park<Self> {
        match self {
            BackendStream::Plain(s) => plain(s.into_std()),
            other => Park::NotNow(other),
        }
    }
}

pin_project_lite::pin_project! {
    /// A client connection's task: its requests (the boxed future of
    /// `http::serve`), then, after a protocol switch, its tunnel in the
    /// same task. The request handler is dropped when the tunnel starts,
    /// so a live tunnel holds only what it needs — every byte of this
    /// future is paid once per tunnel, and not at all while it is parked —
    /// and a handshake costs one task, not two.
    #[project = ConnectionProj]
    pub enum Connection<F, S> {
        Serving { serve: Pin<Box<F>> },
        Tunnel { #[pin] task: TunnelTask<S> },
    }
}

impl<F, S> Connection<F, S> {
    pub fn new(serve: Pin<Box<F>>) -> Self {
        Connection::Serving { serve }
    }
}

impl<F, S> Future for Connection<F, S>
where
    F: Future<Output = Option<TunnelTask<S>>>,
    S: Parkable + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                ConnectionProj::Serving { serve } => match ready!(serve.as_mut().poll(cx)) {
                    None => return Poll::Ready(()),
                    Some(task) => self.set(Connection::Tunnel { task }),
                },
                ConnectionProj::Tunnel { task } => return task.poll(cx),
            }
        }
    }
}

/// Runs a tunnel in a task of its own: one woken from its parking.
fn spawn_with<S>(tunnel: Tunnel<S, BackendStream>, life: Life, parker: Arc<Parker>, park: bool)
where
    S: Parkable + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(TunnelTask::new(tunnel, life, parker, park));
}

pin_project_lite::pin_project! {
    /// A tunnel's task: the tunnel running, then its end or its parking.
    /// Written out rather than an `async` block, which would hold the tunnel
    /// twice (before and inside `run`): this is paid once per live tunnel.
    pub struct TunnelTask<S> {
        #[pin]
        run: Run<S, BackendStream>,
        life: Option<Life>,
        parker: Arc<Parker>,
    }

    impl<S> PinnedDrop for TunnelTask<S> {
        // Dropped unfinished: the runtime is going away with the server.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(life), Some(summary)) = (this.life.take(), this.run.summary(End::Shutdown)) {
                life.finish(summary);
            }
        }
    }
}

impl<S> TunnelTask<S>
where
    S: Parkable + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// A new tunnel, parked whenever it is quiet if both its sides can be.
    pub fn start(tunnel: Tunnel<S, BackendStream>, life: Life, parker: Arc<Parker>) -> Self {
        let parkable = tunnel.client().can_park() && tunnel.backend().can_park();
        TunnelTask::new(tunnel, life, parker, parkable)
    }

    fn new(
        mut tunnel: Tunnel<S, BackendStream>,
        life: Life,
        parker: Arc<Parker>,
        park: bool,
    ) -> Self {
        tunnel.listen_to(|| life.scope());
        TunnelTask {
            run: tunnel.run(park.then_some(PARK_AFTER)),
            life: Some(life),
            parker,
        }
    }
}

impl<S> Future for TunnelTask<S>
where
    S: Parkable + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            let outcome = ready!(this.run.as_mut().poll(cx));
            let Some(life) = this.life.take() else {
                return Poll::Ready(());
            };
            let tunnel = match outcome {
                Outcome::Ended(summary) => {
                    life.finish(summary);
                    return Poll::Ready(());
                }
                Outcome::Quiet(tunnel) => tunnel,
            };
            let (client, backend, rest) = tunnel.into_parts();
            match client.into_parked() {
                Park::Out(client) => match backend.into_parked() {
                    Park::Out(backend) => {
                        Parker::park(this.parker, client, backend.tcp, rest, life)
                    }
                    _ => life.finish(summary(&rest, End::Failed(Who::Proxy))),
                },
                Park::NotNow(client) => {
                    // Not between two records yet: on with the tunnel.
                    let mut tunnel = Tunnel::resume(client, backend, rest);
                    tunnel.listen_to(|| life.scope());
                    *this.life = Some(life);
                    this.run.set(tunnel.run(Some(PARK_AFTER)));
                    continue;
                }
                Park::Failed(e) => {
                    tracing::warn!("cannot park an idle tunnel: {e}");
                    life.finish(summary(&rest, End::Failed(Who::Proxy)));
                }
            }
            return Poll::Ready(());
        }
    }
}

struct Parked {
    /// Its TLS session, if any, is in the table's `sessions` while parked.
    client: Side,
    backend: std::net::TcpStream,
    rest: Resting,
    life: Life,
    session: Option<u32>,
}

#[derive(Default)]
struct Table {
    /// Slot `i` with its generation (bumped at each reuse, so that a stale
    /// deadline is told from a live one).
    slots: Vec<(u32, Option<Parked>)>,
    free: Vec<u32>,
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Parked TLS sessions, side by side: each alone in the heap would
    /// keep a page of the freed TLS state around it from going back.
    sessions: Vec<Option<Session>>,
    free_sessions: Vec<u32>,
    parked: usize,
    parks_since_trim: usize,
}

impl Table {
    /// Copies rather than moves, here and in `take_session`, so that the
    /// copy left behind is dropped, which wipes its keys.
    fn keep_session(&mut self, session: Box<Session>) -> u32 {
        let kept = Some(Session::clone(&session));
        drop(session);
        match self.free_sessions.pop() {
            Some(i) => {
                self.sessions[i as usize] = kept;
                i
            }
            None => {
                self.sessions.push(kept);
                (self.sessions.len() - 1) as u32
            }
        }
    }

    fn take_session(&mut self, index: u32) -> Option<Box<Session>> {
        let slot = self.sessions.get_mut(index as usize)?;
        let session = Box::new(slot.as_ref()?.clone());
        *slot = None;
        self.free_sessions.push(index);
        Some(session)
    }
}

/// The parked tunnels of one server, and the epoll set that watches them.
pub struct Parker {
    table: Mutex<Table>,
    registry: Registry,
    /// A deadline earlier than the watcher's, or memory to give back.
    wake: Notify,
    /// The watcher has stopped: nothing may be parked.
    broken: std::sync::atomic::AtomicBool,
}

impl Parker {
    /// A parker and the future that watches it (run it as a task).
    pub fn new() -> io::Result<(Arc<Parker>, impl std::future::Future<Output = ()>)> {
        let poll = mio::Poll::new()?;
        let parker = Arc::new(Parker {
            table: Mutex::new(Table::default()),
            registry: poll.registry().try_clone()?,
            wake: Notify::new(),
            broken: Default::default(),
        });
        let watcher = watch(parker.clone(), poll);
        Ok((parker, watcher))
    }

    /// Stops parking (the watcher cannot go on): parked tunnels are closed
    /// and quiet ones stay in the runtime from now on.
    fn give_up(&self) {
        self.broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.close_all(End::Failed(Who::Proxy));
    }

    /// Puts the parked tunnels whose frames are followed and that an order
    /// to close concerns back in the runtime, for their polite close.
    pub fn wake_ordered(self: &Arc<Self>) {
        let indices: Vec<u32> = {
            let table = self.table();
            table
                .slots
                .iter()
                .enumerate()
                .filter(|(_, (_, p))| {
                    p.as_ref()
                        .is_some_and(|p| p.rest.frames && p.life.ordered())
                })
                .map(|(i, _)| i as u32)
                .collect()
        };
        for i in indices {
            if let Some(p) = self.take(i) {
                // Parked again if the order is taken back in the meantime.
                self.resume(p, true);
            }
        }
    }

    /// Closes every parked tunnel (the server is going away).
    pub fn close_all(&self, end: End) {
        let taken: Vec<Parked> = {
            let mut table = self.table();
            table.deadlines.clear();
            table.parked = 0;
            let taken = table
                .slots
                .iter_mut()
                .filter_map(|(_, p)| p.take())
                .collect();
            table.slots = Vec::new();
            table.free = Vec::new();
            table.sessions = Vec::new();
            table.free_sessions = Vec::new();
            taken
        };
        for p in taken {
            self.close(p, end);
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn park(
        self: &Arc<Self>,
        client: Side,
        backend: std::net::TcpStream,
        rest: Resting,
        life: Life,
    ) {
        life.note_bytes(rest.bytes_up, rest.bytes_down);
        let mut parked = Parked {
            client,
            backend,
            rest,
            life,
            session: None,
        };
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            self.resume(parked, false);
            return;
        }
        let (cfd, bfd) = (parked.client.tcp.as_raw_fd(), parked.backend.as_raw_fd());
        let tls = parked.client.tls.is_some();
        let parked_peer = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| parked.client.tcp.peer_addr().ok())
            .flatten();
        let mut table = self.table();
        let index = match table.free.pop() {
            Some(i) => i,
            None => {
                table.slots.push((0, None));
                (table.slots.len() - 1) as u32
            }
        };
        let registered = self
            .registry
            .register(&mut SourceFd(&cfd), token(index, 0), Interest::READABLE)
            .and_then(|()| {
                self.registry
                    .register(&mut SourceFd(&bfd), token(index, 1), Interest::READABLE)
                    .inspect_err(|_| {
                        let _ = self.registry.deregister(&mut SourceFd(&cfd));
                    })
            });
        if let Err(e) = registered {
            table.free.push(index);
            drop(table);
            tracing::warn!("cannot park an idle tunnel: {e}");
            // It cannot wait here, so it goes back to the runtime for good.
            self.resume(parked, false);
            return;
        }
        if let Some(session) = parked.client.tls.take() {
            parked.session = Some(table.keep_session(session));
        }
        let slot = &mut table.slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        let generation = slot.0;
        // An order given while this tunnel was on its way here (it looked
        // before; `wake_ordered` scanned the table before it came in) is
        // seen now; one given after finds it in the table.
        let ordered = parked.rest.frames && parked.life.ordered();
        slot.1 = Some(parked);
        table.parked += 1;
        table.parks_since_trim += 1;
        // Deadlines of tunnels that woke early stay in the heap until they
        // pass; rebuild it when they outnumber the parked tunnels.
        if table.deadlines.len() > 2 * table.parked + 1024 {
            let deadlines = std::mem::take(&mut table.deadlines);
            let slots = &table.slots;
            let live: BinaryHeap<_> = deadlines
                .into_iter()
                .filter(|Reverse((_, i, g))| {
                    slots
                        .get(*i as usize)
                        .is_some_and(|(sg, p)| sg == g && p.is_some())
                })
                .collect();
            table.deadlines = live;
        }
        // The watcher plans a return of memory from the first park on.
        let mut wake = table.parks_since_trim == 1 || table.parks_since_trim == TRIM_BATCH;
        if let Some(deadline) = rest.deadline() {
            let earliest = table.deadlines.peek().map(|Reverse((d, _, _))| *d);
            table.deadlines.push(Reverse((deadline, index, generation)));
            wake |= earliest.is_none_or(|e| deadline < e);
        }
        drop(table);
        if ordered {
            if let Some(p) = self.take_current(index, generation) {
                self.resume(p, true);
            }
            return;
        }
        tracing::debug!(client = ?parked_peer, tls, "tunnel parked");
        if wake {
            self.wake.notify_one();
        }
    }

    /// [`Parker::take`], if slot `index` still holds the tunnel parked as
    /// `generation`.
    fn take_current(&self, index: u32, generation: u32) -> Option<Parked> {
        let current = self
            .table()
            .slots
            .get(index as usize)
            .is_some_and(|(g, p)| *g == generation && p.is_some());
        if current {
            self.take(index)
        } else {
            None
        }
    }

    /// Takes a parked tunnel out of the table and the epoll set.
    fn take(&self, index: u32) -> Option<Parked> {
        let mut table = self.table();
        let mut parked = table.slots.get_mut(index as usize)?.1.take()?;
        table.free.push(index);
        table.parked -= 1;
        if let Some(session) = parked.session.take() {
            parked.client.tls = table.take_session(session);
        }
        drop(table);
        for fd in [parked.client.tcp.as_raw_fd(), parked.backend.as_raw_fd()] {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        Some(parked)
    }

    /// Back into the runtime, as a task of its own.
    fn resume(self: &Arc<Self>, p: Parked, park_again: bool) {
        let Parked {
            client,
            backend,
            rest,
            life,
            ..
        } = p;
        let sockets = TcpStream::from_std(client.tcp)
            .and_then(|c| Ok((c, BackendStream::Plain(TcpStream::from_std(backend)?))));
        let failed = match (sockets, client.tls) {
            (Ok((tcp, backend)), None) => {
                let tunnel = Tunnel::resume(tcp, backend, rest);
                return spawn_with(tunnel, life, self.clone(), park_again);
            }
            (Ok((tcp, backend)), Some(session)) => match Sealed::new(tcp, session) {
                Ok(tls) => {
                    let tunnel = Tunnel::resume(tls, backend, rest);
                    return spawn_with(tunnel, life, self.clone(), park_again);
                }
                Err(e) => e,
            },
            (Err(e), _) => e,
        };
        tracing::warn!("cannot resume a parked tunnel: {failed}");
        life.finish(summary(&rest, End::Failed(Who::Proxy)));
    }

    /// Ends a parked tunnel where it is (its sockets close).
    fn close(&self, p: Parked, end: End) {
        for fd in [p.client.tcp.as_raw_fd(), p.backend.as_raw_fd()] {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        p.life.finish(summary(&p.rest, end));
    }

    /// Closes the tunnels whose idle timeout has passed, and wakes those
    /// due a Ping; returns the next deadline.
    fn expire(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        loop {
            let mut table = self.table();
            let Reverse((deadline, index, generation)) = *table.deadlines.peek()?;
            if deadline > now {
                return Some(deadline);
            }
            table.deadlines.pop();
            let live = table
                .slots
                .get(index as usize)
                .is_some_and(|(g, p)| *g == generation && p.is_some());
            drop(table);
            if live {
                if let Some(p) = self.take(index) {
                    if p.rest.idle_deadline().is_some_and(|d| d <= now) {
                        p.life.finish(summary(&p.rest, End::IdleTimeout));
                    } else {
                        // A Ping is due (`WsgateWebSocketPing`): the tunnel
                        // sends it, and rests again once answered.
                        self.resume(p, true);
                    }
                }
            }
        }
    }

    /// When freed memory should next go back to the system, if any is owed.
    fn trim_due(&self, last_trim: Instant) -> Option<Instant> {
        match self.table().parks_since_trim {
            0 => None,
            n if n >= TRIM_BATCH => Some(last_trim + TRIM_SOON),
            _ => Some(last_trim + TRIM_LATER),
        }
    }

    fn trimmed(&self) {
        self.table().parks_since_trim = 0;
    }
}

fn token(index: u32, side: usize) -> Token {
    Token(((index as usize) << 1) | side)
}

fn summary(rest: &Resting, end: End) -> Summary {
    Summary {
        end,
        bytes_up: rest.bytes_up,
        bytes_down: rest.bytes_down,
        first_fin: None,
        ws_close: None,
    }
}

/// Waits for readiness on parked sockets and for deadlines.
async fn watch(parker: Arc<Parker>, poll: mio::Poll) {
    // SAFETY: mio::Poll owns its epoll descriptor, keeps it open for its
    // whole life and always returns the same one; it does not leave the
    // AsyncFd.
    let registered =
        unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
    let mut poll = match registered {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot watch parked tunnels: {e}");
            parker.give_up();
            return;
        }
    };
    let mut events = Events::with_capacity(256);
    let mut last_trim = Instant::now();
    let mut more;
    loop {
        more = false;
        let now = Instant::now();
        let mut trim = parker.trim_due(last_trim);
        if trim.is_some_and(|due| due <= now) {
            parker.trimmed();
            give_back_memory();
            last_trim = Instant::now();
            trim = None;
        }
        let next = parker.expire(now);
        let until = [next, trim]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| now + Duration::from_secs(3600));
        tokio::select! {
            ready = poll.readable_mut() => {
                let mut ready = match ready {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("cannot watch parked tunnels: {e}");
                        return;
                    }
                };
                // The epoll set is edge-triggered inside the runtime's:
                // drain it before saying it is empty — a few batches at a
                // time, so that a mass wake-up does not hold the thread.
                more = true;
                for _ in 0..WAKE_BATCHES {
                    events.clear();
                    match ready.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::error!("cannot watch parked tunnels any more: {e}");
                            parker.give_up();
                            return;
                        }
                    }
                    if events.is_empty() {
                        ready.clear_ready();
                        more = false;
                        break;
                    }
                    for event in events.iter() {
                        if let Some(p) = parker.take((event.token().0 >> 1) as u32) {
                            tracing::debug!(client = ?p.client.tcp.peer_addr().ok(), "tunnel woken");
                            parker.resume(p, true);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(until) => {}
            _ = parker.wake.notified() => {}
        }
        if more {
            tokio::task::yield_now().await;
        }
    }
}

/// Hands freed heap pages back to the system (glibc keeps them otherwise).
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim only walks glibc's own free lists; it takes
        // no pointers from us and is safe to call at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod size {
    /// What a tunnel keeps for its whole life stays small: the status
    /// page's table costs nothing (an `Instant` was 16 bytes; the start as
    /// nanoseconds and the table's index share them), the access log an
    /// index beside the table's (its lines are on `access::shelf`).
    #[test]
    fn a_tunnels_life_stays_small() {
        assert_eq!(std::mem::size_of::<super::Life>(), 64);
    }

    /// What a parked tunnel keeps besides its sockets and life: its
    /// `WsgateWebSocketPing` setting fits in what was padding.
    #[test]
    fn a_resting_tunnels_state_stays_small() {
        assert_eq!(std::mem::size_of::<super::Resting>(), 56);
    }
}
