//! The byte tunnel after a 101: copies both ways unchanged, passes a
//! half-close on, closes both sides when both are done, and closes an idle
//! tunnel (S63–S70).
//!
//! Tunnels are long-lived and numerous, so an idle one owns no buffer: a
//! direction reads into a buffer on the stack and writes what it read at
//! once; only bytes its reader cannot take yet go into a buffer from a
//! per-thread pool, kept until they are written. A slow reader therefore
//! costs at most one buffer per direction, and wsgate stops reading the
//! other side until it drains (backpressure).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{
    close_from_client, close_from_server, new_mask, Frames, Phase, Tracker, GOING_AWAY,
};
use super::ping::{Pinger, BACKEND, CLIENT};
use super::splice;
use crate::config::model::WsPing;
use tokio::time::{Instant, Sleep};

/// One read's worth; also the most a direction holds for a slow reader.
pub const BUFFER_SIZE: usize = 16 * 1024;
/// A splice that moves less than this goes back to copying.
const BULK_AGAIN: usize = 4 * 1024;
/// Buffers kept per thread for reuse.
const POOL_KEEP: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_KEEP {
            pool.push(buf);
        }
    });
}

/// How a tunnel ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// mod_proxy_http: a half-close is passed on; idle for `Some(t)` closes.
    HalfClose(Option<Duration>),
    /// Legacy mod_proxy_wstunnel (S62): the first end closes both sides and
    /// there is no idle timeout.
    CloseBoth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished (or with `CloseBoth`, one).
    Done,
    IdleTimeout,
    /// Bytes from this side failed to move (reset, broken pipe), or wsgate
    /// could not go on with the tunnel.
    Failed(Who),
    /// This side stopped answering: TCP keepalive probes or
    /// `TCP_USER_TIMEOUT` gave up on a socket of its direction
    /// (`ETIMEDOUT`).
    PeerTimedOut(Who),
    /// The server stopped with the tunnel open.
    Shutdown,
    /// Closed politely at a graceful stop: Close 1001 to both sides.
    Drain,
}

/// Whether the kernel has closed this socket (its TCP state is `CLOSE`):
/// after `ETIMEDOUT`, the socket whose peer stopped answering.
fn closed_by_kernel(tcp: Option<&tokio::net::TcpStream>) -> bool {
    use std::os::fd::AsRawFd;
    /// Linux's `TCP_CLOSE` (`include/net/tcp_states.h`).
    const TCP_CLOSE: u8 = 7;
    let Some(tcp) = tcp else {
        return false;
    };
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    r == 0 && info.tcpi_state == TCP_CLOSE
}

/// A tunnel's side, or wsgate itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Client,
    Backend,
    Proxy,
}

/// What a direction holds while bytes are in flight.
enum Held {
    Buf(Box<[u8]>),
    /// Between two TCP sockets: the bytes wait in a pipe (splice).
    Pipe(splice::Pipe),
}

impl Held {
    fn give_back(self) {
        match self {
            Held::Buf(buf) => give_back(buf),
            Held::Pipe(pipe) => splice::give_back(pipe),
        }
    }
}

#[derive(Default)]
struct Half {
    /// Bytes `start..end` of what was read are still to be written.
    held: Option<Held>,
    /// Bytes are arriving faster than a buffer takes them: splice (when
    /// both sides are TCP). Small reads go back to copying, which costs
    /// fewer system calls for small messages.
    bulk: bool,
    start: usize,
    end: usize,
    needs_flush: bool,
    eof: bool,
    shut: bool,
    bytes: u64,
    /// The source was read until it would block in this poll (see
    /// [`Half::read_ahead`]): no need to try it again before the next.
    drained: bool,
    /// A read that failed after bytes were read ahead: reported once those
    /// bytes are written.
    failed: Option<io::Error>,
}

enum Step {
    Progress,
    Blocked,
}

impl Half {
    /// Moves bytes from `from` to `to` until one of them would block.
    /// `last`: the other direction is finished, so the tunnel ends with
    /// this one.
    /// With `frames`, the bytes read are followed frame by frame (and
    /// never spliced past it); while a drain waits for a frame boundary,
    /// reads stop there.
    #[inline(always)]
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        last: bool,
        mut frames: Option<&mut Frames>,
        draining: bool,
    ) -> Poll<io::Result<bool>>
    where
        R: AsyncRead + Unpin + AsTcp,
        W: AsyncWrite + Unpin + AsTcp,
    {
        let mut moved = false;
        self.drained = false;
        loop {
            if draining && self.held.is_none() && frames.as_deref().is_some_and(Frames::at_boundary)
            {
                // At the boundary: what was written goes out, nothing more
                // is read.
                if self.needs_flush {
                    match Pin::new(&mut *to).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.needs_flush = false,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                return Poll::Ready(Ok(moved));
            }
            match self.step(cx, from, to, last, frames.as_deref_mut(), draining)? {
                Step::Progress => moved = true,
                Step::Blocked => return Poll::Ready(Ok(moved)),
            }
        }
    }

    #[inline(always)]
    fn step<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        last: bool,
        frames: Option<&mut Frames>,
        draining: bool,
    ) -> io::Result<Step>
    where
        R: AsyncRead + Unpin + AsTcp,
        W: AsyncWrite + Unpin + AsTcp,
    {
        if let Some(held) = &self.held {
            let written = match held {
                Held::Buf(buf) => write_out(cx, to, &buf[self.start..self.end], self.eof),
                Held::Pipe(pipe) => {
                    let to = to
                        .as_tcp()
                        .expect("a pipe is only taken between TCP sockets");
                    splice::poll_drain(cx, to, pipe, self.end - self.start)
                }
            };
            return match written {
                Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.wrote(n);
                    if self.start == self.end {
                        if let Some(held) = self.held.take() {
                            held.give_back();
                        }
                    }
                    Ok(Step::Progress)
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(Step::Blocked),
            };
        }
        if self.needs_flush {
            match Pin::new(&mut *to).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(Step::Blocked),
            }
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.eof {
            // The last direction of a TCP tunnel needs no shutdown: both
            // sockets close next, everything was read from `to` (the other
            // direction saw its end), so closing it sends the same FIN.
            if !self.shut {
                if !(last && to.as_tcp().is_some()) {
                    match Pin::new(&mut *to).poll_shutdown(cx) {
                        Poll::Ready(Ok(())) => {}
                        // The peer may already be gone; the direction is over anyway.
                        Poll::Ready(Err(_)) => {}
                        Poll::Pending => return Ok(Step::Blocked),
                    }
                }
                self.shut = true;
            }
            return Ok(Step::Blocked);
        }
        if self.drained {
            return Ok(Step::Blocked);
        }
        // A pipe when the data is bulk and both sides are TCP (and no
        // frames are followed: spliced bytes are not seen).
        if let (true, true, Some(from), Some(_)) =
            (self.bulk, frames.is_none(), from.as_tcp(), to.as_tcp())
        {
            if let Some(pipe) = splice::take() {
                return self.fill_pipe(cx, from, pipe);
            }
        }
        let limit = match &frames {
            Some(f) if draining => f.room(),
            _ => BUFFER_SIZE,
        };
        self.copy_through_stack(cx, from, to, frames, limit)
    }

    /// Reads into a buffer on the stack and writes what was read at once:
    /// a direction takes a buffer of its own only for bytes its reader
    /// cannot take yet.
    #[inline(always)]
    fn copy_through_stack<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        frames: Option<&mut Frames>,
        limit: usize,
    ) -> io::Result<Step>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + AsTcp,
    {
        let mut stack = [MaybeUninit::<u8>::uninit(); BUFFER_SIZE];
        let mut read_buf = ReadBuf::uninit(&mut stack[..limit.clamp(1, BUFFER_SIZE)]);
        match Pin::new(&mut *from).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => {}
            // A TLS peer that closed its connection without close_notify:
            // its end of stream, as mod_ssl takes it (a WebSocket's own
            // framing tells a cut message).
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(Step::Blocked),
        }
        let n = read_buf.filled().len();
        self.bulk = n == BUFFER_SIZE;
        if n == 0 {
            self.eof = true;
            return Ok(Step::Progress);
        }
        if n < BUFFER_SIZE && to.as_tcp().is_some() {
            self.read_ahead(cx, from, &mut read_buf);
        }
        let bytes = read_buf.filled();
        if let Some(f) = frames {
            f.feed(bytes);
        }
        let mut start = 0;
        while start < bytes.len() {
            match write_out(cx, to, &bytes[start..], self.eof) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(k)) => {
                    start += k;
                    self.bytes += k as u64;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    // The reader is slow: keep the rest until it drains.
                    let mut buf = take_buffer();
                    let rest = &bytes[start..];
                    buf[..rest.len()].copy_from_slice(rest);
                    self.start = 0;
                    self.end = rest.len();
                    self.held = Some(Held::Buf(buf));
                    break;
                }
            }
        }
        Ok(Step::Progress)
    }

    fn fill_pipe(
        &mut self,
        cx: &mut Context<'_>,
        from: &tokio::net::TcpStream,
        pipe: splice::Pipe,
    ) -> io::Result<Step> {
        match splice::poll_fill(cx, from, &pipe) {
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                splice::give_back(pipe);
                Ok(Step::Progress)
            }
            Poll::Ready(Ok(n)) => {
                self.bulk = n >= BULK_AGAIN;
                self.start = 0;
                self.end = n;
                self.held = Some(Held::Pipe(pipe));
                Ok(Step::Progress)
            }
            Poll::Ready(Err(e)) => {
                splice::give_back(pipe);
                Err(e)
            }
            Poll::Pending => {
                splice::give_back(pipe);
                Ok(Step::Blocked)
            }
        }
    }

    fn wrote(&mut self, n: usize) {
        self.start += n;
        self.bytes += n as u64;
        self.needs_flush = true;
    }

    /// After a read that did not fill `buf`, reads on until `from` would
    /// block. Usually that costs no system call: the runtime already knows
    /// the socket has nothing more. When the peer's FIN came with the
    /// bytes (a WebSocket close frame, then close), this finds the end of
    /// stream before the bytes are written, so that they and the FIN
    /// leave as one segment instead of two.
    #[inline(always)]
    fn read_ahead<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        buf: &mut ReadBuf<'_>,
    ) {
        while buf.remaining() > 0 {
            let before = buf.filled().len();
            match Pin::new(&mut *from).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    self.eof = true;
                    return;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    return;
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.failed = Some(e);
                    return;
                }
                Poll::Pending => {
                    self.drained = true;
                    return;
                }
            }
        }
    }

    /// At its end of stream with every byte written.
    fn ended(&self) -> bool {
        self.eof && self.held.is_none()
    }

    fn finished(&self) -> bool {
        self.ended() && self.shut
    }
}

/// Writes bytes read from the other side. The last bytes before the end of
/// this direction are held back for the FIN (on TCP), so that both leave in
/// one segment.
fn write_out<W: AsyncWrite + Unpin + AsTcp>(
    cx: &mut Context<'_>,
    to: &mut W,
    bytes: &[u8],
    eof: bool,
) -> Poll<io::Result<usize>> {
    match (eof, to.as_tcp()) {
        (true, Some(tcp)) => poll_send_before_fin(cx, tcp, bytes),
        _ => Pin::new(&mut *to).poll_write(cx, bytes),
    }
}

/// Writes `bytes` to `to` with `MSG_MORE`: the kernel keeps them until the
/// shutdown or close that follows, which sends them with its FIN.
fn poll_send_before_fin(
    cx: &mut Context<'_>,
    to: &tokio::net::TcpStream,
    bytes: &[u8],
) -> Poll<io::Result<usize>> {
    use std::os::fd::AsRawFd;
    splice::poll_syscall(cx, to, tokio::io::Interest::WRITABLE, || {
        // SAFETY: the descriptor is open while `to` is borrowed, and the
        // pointer and length describe `bytes`.
        let n = unsafe {
            libc::send(
                to.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// The tunnel between a client (`A`) and a backend (`B`).
pub struct Tunnel<A, B> {
    client: A,
    backend: B,
    up: Half,
    down: Half,
    mode: Mode,
    last_activity: Instant,
    /// The side whose end of stream came first.
    first_fin: Option<Who>,
    /// `WsgateWebSocketFrames On`: frames followed, for a polite drain.
    tracker: Option<Box<Tracker>>,
}

/// What a tunnel set aside while idle keeps besides its two sockets.
#[derive(Debug, Clone, Copy)]
pub struct Resting {
    pub mode: Mode,
    pub last_activity: Instant,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Its frames are followed (only a tunnel between frames rests).
    pub frames: bool,
    /// `WsgateWebSocketPing`: woken when a Ping is due.
    pub ping: Option<WsPing>,
}

impl Resting {
    /// When an idle tunnel in this state must close, if ever.
    pub fn idle_deadline(&self) -> Option<Instant> {
        match self.mode {
            Mode::HalfClose(Some(t)) => Some(self.last_activity + t),
            _ => None,
        }
    }

    /// When a resting tunnel must wake: to close, or to send a Ping.
    pub fn deadline(&self) -> Option<Instant> {
        let ping = self.ping.map(|p| self.last_activity + p.every());
        [self.idle_deadline(), ping].into_iter().flatten().min()
    }
}

/// What a finished tunnel reports.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub end: End,
    /// Client to backend.
    pub bytes_up: u64,
    /// Backend to client.
    pub bytes_down: u64,
    /// The side that ended its direction first.
    pub first_fin: Option<Who>,
    /// With the frame tracker: the first WebSocket Close's code.
    pub ws_close: Option<u16>,
}

/// How [`Tunnel::run`] returns.
pub enum Outcome<A, B> {
    Ended(Summary),
    /// Nothing moved for the `park_after` given to `run`, and nothing is in
    /// flight: the caller may set the sockets aside (see `proxy::park`).
    Quiet(Tunnel<A, B>),
}

/// A stream that may be plain TCP underneath, for zero-copy forwarding.
pub trait AsTcp {
    fn as_tcp(&self) -> Option<&tokio::net::TcpStream>;
}

impl AsTcp for tokio::net::TcpStream {
    fn as_tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }
}

impl AsTcp for tokio::io::DuplexStream {
    fn as_tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

impl<A, B> Tunnel<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + AsTcp,
    B: AsyncRead + AsyncWrite + Unpin + AsTcp,
{
    pub fn new(client: A, backend: B, mode: Mode) -> Self {
        Tunnel::resume(
            client,
            backend,
            Resting {
                mode,
                last_activity: Instant::now(),
                bytes_up: 0,
                bytes_down: 0,
                frames: false,
                ping: None,
            },
        )
    }

    /// A tunnel set aside by [`Tunnel::into_parts`], going again.
    pub fn resume(client: A, backend: B, rest: Resting) -> Self {
        Tunnel {
            client,
            backend,
            up: Half {
                bytes: rest.bytes_up,
                ..Half::default()
            },
            down: Half {
                bytes: rest.bytes_down,
                ..Half::default()
            },
            mode: rest.mode,
            last_activity: rest.last_activity,
            first_fin: None,
            tracker: rest.frames.then(|| Tracker::boxed(rest.ping, &rest)),
        }
    }

    /// Follows the tunnel's WebSocket frames (for a polite drain and the
    /// close code in the log).
    pub fn tracking(mut self, frames: bool, ping: Option<WsPing>) -> Self {
        let now = Resting {
            mode: self.mode,
            last_activity: self.last_activity,
            bytes_up: self.up.bytes,
            bytes_down: self.down.bytes,
            frames,
            ping,
        };
        self.tracker = frames.then(|| Tracker::boxed(ping, &now));
        self
    }

    /// Bytes that went each way before the tunnel ran (they came with the
    /// heads), for the frame tracker: client to backend, and back.
    pub fn followed(&mut self, up: &[u8], down: &[u8]) {
        if let Some(t) = self.tracker.as_deref_mut() {
            t.frames[0].feed(up);
            t.frames[1].feed(down);
        }
    }

    /// Tells a tracked tunnel which orders to close it concern it (see
    /// `upstream::order`); untracked tunnels cannot close politely.
    pub fn listen_to(&mut self, scope: impl FnOnce() -> super::frames::Scope) {
        if let Some(t) = self.tracker.as_deref_mut() {
            t.scope = Some(scope());
        }
    }

    /// The sockets and the state to resume with. Only for a quiet tunnel
    /// (as [`Outcome::Quiet`] hands back): bytes in flight would be lost.
    pub fn into_parts(self) -> (A, B, Resting) {
        debug_assert!(self.is_quiet());
        let rest = Resting {
            mode: self.mode,
            last_activity: self.last_activity,
            bytes_up: self.up.bytes,
            bytes_down: self.down.bytes,
            frames: self.tracker.is_some(),
            ping: self
                .tracker
                .as_deref()
                .and_then(|t| t.ping.as_ref())
                .map(|p| p.cfg),
        };
        (self.client, self.backend, rest)
    }

    pub fn client(&self) -> &A {
        &self.client
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Nothing held for a slow reader, both directions still open, and
    /// (when followed) between frames and not draining.
    fn is_quiet(&self) -> bool {
        let frames_rest = self.tracker.as_deref().is_none_or(|t| {
            t.phase == Phase::Running
                && t.frames.iter().all(Frames::at_boundary)
                && t.ping.as_ref().is_none_or(Pinger::is_quiet)
        });
        frames_rest
            && [&self.up, &self.down]
                .iter()
                .all(|h| h.held.is_none() && !h.needs_flush && !h.eof)
    }

    /// How the tunnel ends when the direction from `source` failed with
    /// `e`. A peer that stopped answering (`ETIMEDOUT`: TCP keepalive or
    /// `TCP_USER_TIMEOUT`) may be at either end of that direction, so its
    /// side is the one whose socket the kernel closed.
    fn failed(&self, source: Who, e: &io::Error) -> End {
        if e.kind() != io::ErrorKind::TimedOut {
            return End::Failed(source);
        }
        if closed_by_kernel(self.client.as_tcp()) {
            End::PeerTimedOut(Who::Client)
        } else if closed_by_kernel(self.backend.as_tcp()) {
            End::PeerTimedOut(Who::Backend)
        } else {
            End::PeerTimedOut(source)
        }
    }

    /// Moves bytes until the tunnel ends; with `park_after`, returns the
    /// tunnel itself once it has been quiet that long.
    pub fn run(self, park_after: Option<Duration>) -> Run<A, B> {
        let timeout = match self.mode {
            Mode::HalfClose(t) => t,
            Mode::CloseBoth => None,
        };
        // A tunnel just woken has not seen its wake-up event yet: it may rest
        // again only when quiet for `park_after` from now.
        let running_since = Instant::now();
        let first = [
            timeout.map(|t| self.last_activity + t),
            park_after.map(|p| self.last_activity.max(running_since) + p),
        ]
        .into_iter()
        .flatten()
        .min();
        Run {
            tunnel: Some(self),
            timeout,
            park_after,
            running_since,
            timer: first.map(tokio::time::sleep_until),
            timer_armed: false,
        }
    }

    /// Copies both ways; ready when the tunnel is over.
    fn poll_move(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if self.tracker.is_some() {
            return self.poll_move_tracked(cx);
        }
        // Untracked: the copies are built without frames (constant `None`),
        // so none of the tracker's checks is in this loop.
        let down_done = self.down.finished();
        let up = self.up.poll_copy(
            cx,
            &mut self.client,
            &mut self.backend,
            down_done,
            None,
            false,
        );
        let up_done = self.up.finished();
        let down = self.down.poll_copy(
            cx,
            &mut self.backend,
            &mut self.client,
            up_done,
            None,
            false,
        );
        self.after_copies(up, down)
    }

    /// [`Tunnel::poll_move`] with the frame tracker: a polite close when
    /// ordered, Pings when due, frames followed.
    #[inline(never)]
    fn poll_move_tracked(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if let Some(t) = self.tracker.as_deref_mut() {
            if t.poll_phase(cx) {
                // A Ping half written goes out whole before any Close.
                if t.ping.as_ref().is_some_and(Pinger::holds_any) {
                    return match self.poll_pings(cx) {
                        Err(end) => Poll::Ready(end),
                        Ok(_) => Poll::Pending,
                    };
                }
                return self.poll_drain(cx);
            }
        }
        let mut hold = [false; 2];
        if self.tracker.as_deref().is_some_and(|t| t.ping.is_some()) {
            match self.poll_pings(cx) {
                Ok(h) => hold = h,
                Err(end) => return Poll::Ready(end),
            }
        }
        let (fu, fd) = match self.tracker.as_deref_mut() {
            Some(t) => {
                let [u, d] = &mut t.frames;
                (Some(u), Some(d))
            }
            None => (None, None),
        };
        // A Ping half written toward a side holds the stream toward it.
        let down_done = self.down.finished();
        let up = if hold[BACKEND] {
            Poll::Ready(Ok(false))
        } else {
            self.up.poll_copy(
                cx,
                &mut self.client,
                &mut self.backend,
                down_done,
                fu,
                false,
            )
        };
        let up_done = self.up.finished();
        let down = if hold[CLIENT] {
            Poll::Ready(Ok(false))
        } else {
            self.down
                .poll_copy(cx, &mut self.backend, &mut self.client, up_done, fd, false)
        };
        if let Poll::Ready(end) = self.after_copies(up, down) {
            return Poll::Ready(end);
        }
        // A Ping that waited for the end of a frame may go now.
        if self
            .tracker
            .as_deref()
            .is_some_and(|t| t.ping.as_ref().is_some_and(Pinger::owes_any))
        {
            if let Err(end) = self.poll_pings(cx) {
                return Poll::Ready(end);
            }
        }
        Poll::Pending
    }

    /// What both directions' copies mean for the tunnel: an end, or on.
    #[inline(always)]
    fn after_copies(
        &mut self,
        up: Poll<io::Result<bool>>,
        down: Poll<io::Result<bool>>,
    ) -> Poll<End> {
        let (up, down) = match (up, down) {
            (Poll::Ready(Ok(u)), Poll::Ready(Ok(d))) => (u, d),
            (Poll::Ready(Err(e)), _) => return Poll::Ready(self.failed(Who::Client, &e)),
            (_, Poll::Ready(Err(e))) => return Poll::Ready(self.failed(Who::Backend, &e)),
            _ => return Poll::Ready(End::Failed(Who::Backend)),
        };
        if self.first_fin.is_none() {
            if self.up.eof {
                self.first_fin = Some(Who::Client);
            } else if self.down.eof {
                self.first_fin = Some(Who::Backend);
            }
        }
        match self.mode {
            Mode::CloseBoth if self.up.ended() || self.down.ended() => {
                return Poll::Ready(End::Done)
            }
            _ if self.up.finished() && self.down.finished() => return Poll::Ready(End::Done),
            _ => {}
        }
        if up || down {
            self.last_activity = Instant::now();
        }
        Poll::Pending
    }

    /// `WsgateWebSocketPing`: looks at the sides whose time came (a side
    /// that did not answer its Ping ends the tunnel) and writes the Pings
    /// due where the stream toward the side is between two frames with
    /// nothing held. Returns the sides whose stream a half-written Ping
    /// holds.
    #[cold]
    #[inline(never)]
    fn poll_pings(&mut self, cx: &mut Context<'_>) -> Result<[bool; 2], End> {
        let Tunnel {
            client,
            backend,
            up,
            down,
            tracker,
            ..
        } = self;
        let Some(t) = tracker.as_deref_mut() else {
            return Ok([false; 2]);
        };
        let Some(p) = t.ping.as_mut() else {
            return Ok([false; 2]);
        };
        let who = |side| {
            if side == CLIENT {
                Who::Client
            } else {
                Who::Backend
            }
        };
        // Heard: bytes read from each side (perhaps not yet written);
        // stuck: bytes wait for a side that does not read them.
        let heard = [t.frames[0].seen, t.frames[1].seen];
        let stuck = [down.held.is_some(), up.held.is_some()];
        if let Some(side) = p.poll_check(cx, heard, stuck) {
            return Err(End::PeerTimedOut(who(side)));
        }
        for side in [CLIENT, BACKEND] {
            // The stream toward the client is the one from the backend.
            let (toward, frames) = if side == CLIENT {
                (&*down, &t.frames[1])
            } else {
                (&*up, &t.frames[0])
            };
            let free = toward.held.is_none() && !toward.eof && frames.at_boundary();
            if !p.owes(side) || !(p.holds(side) || free) {
                continue;
            }
            let sent = if side == CLIENT {
                p.poll_send(cx, side, client)
            } else {
                p.poll_send(cx, side, backend)
            };
            if let Poll::Ready(Err(_)) = sent {
                return Err(End::Failed(who(side)));
            }
        }
        Ok([p.holds(CLIENT), p.holds(BACKEND)])
    }

    /// A graceful stop's polite close: each direction is forwarded up to
    /// a frame boundary, then cut, its receiver sent Close 1001 (unless a
    /// Close already went its way); once both sides have answered with a
    /// Close or an end of stream — or the drain's time is up — both
    /// connections close.
    #[cold]
    #[inline(never)]
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let Some(t) = self.tracker.as_deref_mut() else {
            return Poll::Ready(End::Drain);
        };
        let Tunnel {
            client,
            backend,
            up,
            down,
            ..
        } = self;
        let expired = t.poll_expired(cx);
        let mut answered = [false; 2];
        // Up: from the client, to the backend (a client's masked Close).
        let mut failed = None;
        match drain_half(cx, up, client, backend, t, 0) {
            Ok(a) => answered[0] = a,
            Err(_) => failed = Some(Who::Client),
        }
        match drain_half(cx, down, backend, client, t, 1) {
            Ok(a) => answered[1] = a,
            Err(_) => failed = failed.or(Some(Who::Backend)),
        }
        let done = t.cut.iter().all(|c| *c) && t.out.iter().all(Option::is_none);
        if !(expired || failed.is_some() || (done && answered.iter().all(|a| *a))) {
            return Poll::Pending;
        }
        // The server closes first (RFC 6455 §7.1.1): both connections go.
        let _ = Pin::new(&mut *client).poll_shutdown(cx);
        let _ = Pin::new(&mut *backend).poll_shutdown(cx);
        Poll::Ready(End::Drain)
    }
}

/// One direction of a draining tunnel (`d`: 0 up, 1 down): forwarded to
/// a frame boundary, then cut and its receiver sent a Close; after that
/// what its sender sends is read and dropped. Returns whether its sender
/// has answered (a Close frame, or its end of stream).
fn drain_half<R, W>(
    cx: &mut Context<'_>,
    half: &mut Half,
    from: &mut R,
    to: &mut W,
    t: &mut Tracker,
    d: usize,
) -> io::Result<bool>
where
    R: AsyncRead + AsyncWrite + Unpin + AsTcp,
    W: AsyncRead + AsyncWrite + Unpin + AsTcp,
{
    if !t.cut[d] {
        // Bytes read with the sender's end of stream still go out first.
        if half.ended() || half.shut {
            t.cut[d] = true;
        } else {
            let frames = &mut t.frames[d];
            if let Poll::Ready(Err(e)) = half.poll_copy(cx, from, to, false, Some(frames), true) {
                return Err(e);
            }
            if half.held.is_none() && !half.needs_flush && t.frames[d].at_boundary() {
                t.cut[d] = true;
                // A Close already went this way, or the sender ended its
                // stream: the receiver needs no Close from wsgate.
                if t.frames[d].closes == 0 && !half.eof {
                    let close = if d == 0 {
                        close_from_client(GOING_AWAY, new_mask())
                    } else {
                        close_from_server(GOING_AWAY)
                    };
                    t.out[d] = Some((close, 0));
                }
            }
        }
    }
    if let Some((bytes, at)) = &mut t.out[d] {
        while *at < bytes.len() {
            match Pin::new(&mut *to).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    *at = bytes.len();
                }
                Poll::Ready(Ok(n)) => *at += n,
                Poll::Pending => return Ok(false),
            }
        }
        if Pin::new(&mut *to).poll_flush(cx).is_pending() {
            return Ok(false);
        }
        t.out[d] = None;
    }
    if !t.cut[d] {
        return Ok(t.frames[d].closes > 0 || half.eof);
    }
    // Cut: read and drop what the sender still sends, watching for its
    // Close.
    let mut buf = [0u8; 2048];
    while t.frames[d].closes == 0 && !half.eof {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *from).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => half.eof = true,
            Poll::Ready(Ok(())) => t.frames[d].feed(rb.filled()),
            Poll::Ready(Err(_)) => half.eof = true,
            Poll::Pending => break,
        }
    }
    Ok(t.frames[d].closes > 0 || half.eof)
}

pin_project_lite::pin_project! {
    /// A tunnel running (see [`Tunnel::run`]). A named future rather than an
    /// `async fn`, so that a tunnel's task holds the tunnel once: tunnels
    /// are many, and every byte here is paid by each.
    pub struct Run<A, B> {
        tunnel: Option<Tunnel<A, B>>,
        timeout: Option<Duration>,
        park_after: Option<Duration>,
        running_since: Instant,
        #[pin]
        timer: Option<Sleep>,
        // The timer has been polled since it was set, so it will wake this
        // task: it needs polling again only once it has fired.
        timer_armed: bool,
    }
}

impl<A, B> Future for Run<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + AsTcp,
    B: AsyncRead + AsyncWrite + Unpin + AsTcp,
{
    type Output = Outcome<A, B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<A, B>> {
        let this = self.project();
        let Some(tunnel) = this.tunnel.as_mut() else {
            return Poll::Pending;
        };
        if let Poll::Ready(end) = tunnel.poll_move(cx) {
            return Poll::Ready(Outcome::Ended(tunnel.summary(end)));
        }
        let Some(mut timer) = this.timer.as_pin_mut() else {
            return Poll::Pending;
        };
        // The timer is moved only when it fires, not on every byte, and
        // polled only when set or fired (a task's waker does not change).
        if *this.timer_armed && !timer.is_elapsed() {
            return Poll::Pending;
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                *this.timer_armed = true;
                return Poll::Pending;
            }
            let now = Instant::now();
            let last = tunnel.last_activity;
            if this
                .timeout
                .is_some_and(|t| now.saturating_duration_since(last) >= t)
            {
                return Poll::Ready(Outcome::Ended(tunnel.summary(End::IdleTimeout)));
            }
            let mut next = this.timeout.map(|t| last + t);
            if let Some(p) = *this.park_after {
                let quiet_from = last.max(*this.running_since);
                if now.saturating_duration_since(quiet_from) >= p && tunnel.is_quiet() {
                    return match this.tunnel.take() {
                        Some(tunnel) => Poll::Ready(Outcome::Quiet(tunnel)),
                        None => Poll::Pending,
                    };
                }
                // Not quiet long enough yet, or bytes waiting for a slow
                // reader (then look again later).
                let check = if quiet_from + p > now {
                    quiet_from + p
                } else {
                    now + p
                };
                next = Some(next.map_or(check, |n| n.min(check)));
            }
            if let Some(next) = next {
                timer.as_mut().reset(next);
            }
        }
    }
}

impl<A, B> Tunnel<A, B> {
    pub fn summary(&self, end: End) -> Summary {
        Summary {
            end,
            bytes_up: self.up.bytes,
            bytes_down: self.down.bytes,
            first_fin: self.first_fin,
            ws_close: self.tracker.as_deref().and_then(Tracker::close_code),
        }
    }
}

impl<A, B> Run<A, B> {
    /// What the tunnel has done so far, were it to end now with `end`.
    pub fn summary(&self, end: End) -> Option<Summary> {
        self.tunnel.as_ref().map(|t| t.summary(end))
    }
}

/// Runs a tunnel to its end, never setting it aside.
#[cfg(test)]
pub async fn run_to_end<A, B>(tunnel: Tunnel<A, B>) -> Summary
where
    A: AsyncRead + AsyncWrite + Unpin + AsTcp,
    B: AsyncRead + AsyncWrite + Unpin + AsTcp,
{
    match tunnel.run(None).await {
        Outcome::Ended(summary) => summary,
        Outcome::Quiet(_) => unreachable!("run(None) never returns a quiet tunnel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_and_half_close_passes_on() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(64);
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(None),
        )));
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            backend.read_to_end(&mut rest).await.unwrap(),
            0,
            "backend sees EOF"
        );
        backend.write_all(b"after").await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"after", "the other direction still works");
        backend.shutdown().await.unwrap();
        let summary = task.await.unwrap();
        assert_eq!(summary.end, End::Done);
        assert_eq!((summary.bytes_up, summary.bytes_down), (5, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_times_out_and_traffic_keeps_it_open() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(64);
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(Some(Duration::from_secs(2))),
        )));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            backend.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let summary = task.await.unwrap();
        assert_eq!(summary.end, End::IdleTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_tunnel_comes_back_and_resumes_where_it_was() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(64);
        let tunnel = Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(Some(Duration::from_secs(60))),
        );
        let park_after = Some(Duration::from_secs(5));
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let Outcome::Quiet(tunnel) = tunnel.run(park_after).await else {
                panic!("an idle tunnel ended instead of coming back");
            };
            (started.elapsed(), tunnel)
        });
        client.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        backend.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        backend.write_all(b"de").await.unwrap();
        let mut got = [0u8; 2];
        client.read_exact(&mut got).await.unwrap();
        let (quiet_after, tunnel) = task.await.unwrap();
        assert!(
            quiet_after >= Duration::from_secs(8) && quiet_after < Duration::from_secs(9),
            "quiet 5 s after the last byte (at 3 s), came back after {quiet_after:?}"
        );
        let (a, b, rest) = tunnel.into_parts();
        assert_eq!((rest.bytes_up, rest.bytes_down), (3, 2));
        assert_eq!(
            rest.deadline(),
            Some(rest.last_activity + Duration::from_secs(60))
        );
        let task = tokio::spawn(run_to_end(Tunnel::resume(a, b, rest)));
        client.write_all(b"f").await.unwrap();
        let mut got = [0u8; 1];
        backend.read_exact(&mut got).await.unwrap();
        drop(client);
        drop(backend);
        let summary = task.await.unwrap();
        assert_eq!(
            (summary.bytes_up, summary.bytes_down),
            (4, 2),
            "counts carry over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_held_for_a_slow_reader_keep_a_tunnel_from_resting() {
        let (_client, client_side) = tokio::io::duplex(64);
        let (backend_side, mut backend) = tokio::io::duplex(16);
        let tunnel = Tunnel::new(client_side, backend_side, Mode::HalfClose(None));
        let task = tokio::spawn(tunnel.run(Some(Duration::from_secs(5))));
        // More than the backend pipe holds: the rest waits in the tunnel.
        let mut client = _client;
        client.write_all(&[7u8; 40]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!task.is_finished(), "set aside with bytes in flight");
        let mut got = vec![0u8; 40];
        backend.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(task.is_finished(), "quiet again once drained");
        assert!(matches!(task.await.unwrap(), Outcome::Quiet(_)));
    }

    #[tokio::test]
    async fn bytes_reach_a_slow_narrow_reader_whole_and_in_order() {
        let (mut client, client_side) = tokio::io::duplex(4096);
        let (backend_side, mut backend) = tokio::io::duplex(7);
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(None),
        )));
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                // Writes of many sizes, some larger than a read.
                let mut at = 0;
                let mut size = 1;
                while at < sent.len() {
                    let end = (at + size).min(sent.len());
                    client.write_all(&sent[at..end]).await.unwrap();
                    at = end;
                    size = size * 3 % 40_000 + 1;
                }
                client.shutdown().await.unwrap();
                client
            })
        };
        let mut got = Vec::new();
        let mut chunk = [0u8; 5];
        loop {
            let n = backend.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == sent, "{} bytes arrived of {}", got.len(), sent.len());
        let _client = writer.await.unwrap();
        drop(backend);
        let summary = task.await.unwrap();
        assert_eq!(summary.bytes_up, sent.len() as u64);
    }

    #[tokio::test]
    async fn legacy_mode_closes_both_at_the_first_end() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (backend_side, _backend) = tokio::io::duplex(64);
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::CloseBoth,
        )));
        client.shutdown().await.unwrap();
        assert_eq!(task.await.unwrap().end, End::Done);
    }

    async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Segments a socket has received so far (TCP_INFO).
    fn segments_in(s: &tokio::net::TcpStream) -> u32 {
        use std::os::fd::AsRawFd;
        // SAFETY: tcp_info is plain data; getsockopt fills at most `len`
        // bytes of it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO: {}", io::Error::last_os_error());
        info.tcpi_segs_in
    }

    #[tokio::test]
    async fn the_last_bytes_and_the_fin_reach_the_client_in_one_segment() {
        let (mut client, client_side) = tcp_pair().await;
        let (backend_side, mut backend) = tcp_pair().await;
        // The backend's last words and its FIN are both in before the
        // tunnel looks, as when a server echoes a close frame and closes.
        backend.write_all(b"bye").await.unwrap();
        backend.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = segments_in(&client);
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::HalfClose(None),
        )));
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        assert_eq!(
            segments_in(&client) - before,
            1,
            "the bytes and the FIN came as one segment"
        );
        drop(client);
        let summary = task.await.unwrap();
        assert_eq!((summary.end, summary.bytes_down), (End::Done, 3));
        let _ = backend.read(&mut [0u8; 1]).await;
    }

    #[tokio::test]
    async fn legacy_mode_writes_the_last_bytes_before_closing_both() {
        // A client that takes bytes slowly, through small socket buffers:
        // the tunnel reads the backend's last bytes with its FIN but can
        // write only part of them at once.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let mut client = socket.connect(l.local_addr().unwrap()).await.unwrap();
        let (client_side, _) = l.accept().await.unwrap();
        socket2::SockRef::from(&client_side)
            .set_send_buffer_size(2048)
            .unwrap();
        let (backend_side, mut backend) = tcp_pair().await;
        let last: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
        backend.write_all(&last).await.unwrap();
        backend.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let task = tokio::spawn(run_to_end(Tunnel::new(
            client_side,
            backend_side,
            Mode::CloseBoth,
        )));
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            match client.read(&mut chunk).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&chunk[..n]),
            }
        }
        assert_eq!(got.len(), last.len(), "every byte before the close");
        assert_eq!(got, last);
        let summary = task.await.unwrap();
        assert_eq!((summary.end, summary.bytes_down), (End::Done, 12_000));
    }
}
