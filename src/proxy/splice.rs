//! Zero-copy forwarding between two TCP sockets: `splice(2)` from one socket
//! into a pipe, and from the pipe into the other socket. The bytes never
//! enter wsgate's memory; the kernel moves page references instead of
//! copying twice.
//!
//! Pipes are taken from a small per-thread pool only while bytes are in
//! flight, as a read buffer would be, and their number is capped well below
//! the open-file limit: when none is to be had, the tunnel copies through a
//! buffer instead.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most one splice moves (a pipe holds 64 KiB by default).
const CHUNK: usize = 64 * 1024;
/// Empty pipes kept per thread for reuse.
const POOL_KEEP: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Pipes open now, pooled or in use.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// At most 1,024 pipes, and never more than 1/32 of the open-file limit
/// (two descriptors each): tunnels need their sockets first.
fn max_pipes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and nothing else.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        if got != 0 {
            return 0;
        }
        (limit.rlim_cur as usize / 32).min(1024)
    })
}

/// A pipe: what one direction of a tunnel holds while bytes are in flight.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn open() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An empty pipe, if one is to be had.
pub fn take() -> Option<Pipe> {
    take_under(max_pipes())
}

fn take_under(cap: usize) -> Option<Pipe> {
    if let Some(p) = POOL.with(|p| p.borrow_mut().pop()) {
        return Some(p);
    }
    if OPEN.fetch_add(1, Ordering::Relaxed) >= cap {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    match Pipe::open() {
        Ok(p) => Some(p),
        Err(_) => {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// Returns an empty pipe to the pool. A pipe still holding bytes (its
/// tunnel failed) must be dropped instead.
pub fn give_back(pipe: Pipe) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_KEEP {
            pool.push(pipe);
        }
    });
}

fn splice(from: libc::c_int, to: libc::c_int, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // caller borrows their owners); null offsets mean "the current one".
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Runs a non-blocking system call on `tcp` once the runtime says it is
/// ready for `interest`, and again after the next readiness while the call
/// would block (which also tells the runtime the socket is not ready).
pub fn poll_syscall(
    cx: &mut Context<'_>,
    tcp: &TcpStream,
    interest: Interest,
    mut call: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        if interest.is_readable() {
            ready!(tcp.poll_read_ready(cx))?;
        } else {
            ready!(tcp.poll_write_ready(cx))?;
        }
        match tcp.try_io(interest, &mut call) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

/// Moves what `from` has into the empty `pipe`; `Ok(0)` is end of stream.
/// The pipe is empty, so "would block" can only mean the socket is.
pub fn poll_fill(cx: &mut Context<'_>, from: &TcpStream, pipe: &Pipe) -> Poll<io::Result<usize>> {
    poll_syscall(cx, from, Interest::READABLE, || {
        splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
    })
}

/// Moves up to `len` bytes from `pipe` into `to`. The pipe holds bytes, so
/// "would block" can only mean the socket's send buffer is full.
pub fn poll_drain(
    cx: &mut Context<'_>,
    to: &TcpStream,
    pipe: &Pipe,
    len: usize,
) -> Poll<io::Result<usize>> {
    poll_syscall(cx, to, Interest::WRITABLE, || {
        splice(pipe.read.as_raw_fd(), to.as_raw_fd(), len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[test]
    fn no_new_pipe_at_the_cap_but_pooled_ones_are_reused() {
        // A thread of its own: its pool starts empty.
        std::thread::spawn(|| {
            assert!(take_under(0).is_none(), "a pipe opened over the cap");
            let pipe = take_under(usize::MAX).expect("a pipe under the cap");
            give_back(pipe);
            assert!(
                take_under(0).is_some(),
                "a pooled pipe is not a new one and is reused at the cap"
            );
        })
        .join()
        .unwrap();
        assert!(max_pipes() <= 1024);
    }

    #[tokio::test]
    async fn bytes_cross_from_socket_to_socket_through_a_pipe() {
        let (mut client, from) = pair().await;
        let (to, mut backend) = pair().await;
        let pipe = take().expect("a pipe under the limit");
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let writer = {
            let payload = payload.clone();
            tokio::spawn(async move {
                client.write_all(&payload).await.unwrap();
                client.shutdown().await.unwrap();
                client
            })
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            got
        });
        loop {
            let n = std::future::poll_fn(|cx| poll_fill(cx, &from, &pipe))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            let mut left = n;
            while left > 0 {
                left -= std::future::poll_fn(|cx| poll_drain(cx, &to, &pipe, left))
                    .await
                    .unwrap();
            }
        }
        drop(to);
        let _client = writer.await.unwrap();
        assert_eq!(reader.await.unwrap(), payload);
        give_back(pipe);
    }
}
