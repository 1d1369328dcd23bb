//! TCP liveness socket options, on backend connections here and on client
//! connections by `proxy` (the same options, the other side).
//!
//! Apache's `keepalive=On` sets `SO_KEEPALIVE` alone (mod_proxy's
//! `ap_proxy_connect_backend`), so probes start after the system's
//! `tcp_keepalive_time` (two hours by default); wsgate's
//! `WsgateTCPKeepAlive` adds the timings, and `WsgateTCPUserTimeout`
//! bounds how long sent bytes may go unacknowledged — which also ends a
//! connection whose peer is alive but stopped reading, once its window has
//! been shut that long (Linux 5.11 and later).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::config::TcpLiveness;

/// Sets `SO_KEEPALIVE` (with `liveness`'s timings when it has some, else
/// the system's, as Apache's `keepalive=On`) when `keepalive_on` or
/// `liveness` asks for it, and `TCP_USER_TIMEOUT` when `liveness` has one.
/// Nothing when neither is asked: an unconfigured connection costs no
/// system call.
pub fn apply(socket: BorrowedFd<'_>, liveness: &TcpLiveness, keepalive_on: bool) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    if keepalive_on || liveness.keepalive.is_some() {
        set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    }
    if let Some(k) = liveness.keepalive {
        // Whole seconds from 1 to 32767 and 1 to 127 probes (checked when
        // the configuration was read).
        set(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            k.idle.as_secs() as libc::c_int,
        )?;
        set(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            k.interval.as_secs() as libc::c_int,
        )?;
        set(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            k.count as libc::c_int,
        )?;
    }
    if let Some(t) = liveness.user_timeout {
        let ms = t.as_millis().min(i32::MAX as u128) as libc::c_int;
        set(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)?;
    }
    Ok(())
}

fn set(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live
    // c_int, on a descriptor the caller borrows for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeepAliveProbes;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn get(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        value
    }

    fn socket() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn timings_and_user_timeout_reach_the_socket() {
        let s = socket();
        let liveness = TcpLiveness {
            keepalive: Some(KeepAliveProbes {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(7),
                count: 4,
            }),
            user_timeout: Some(Duration::from_millis(2500)),
        };
        apply(s.as_fd(), &liveness, false).unwrap();
        assert_eq!(get(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 30);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 7);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 4);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 2500);
    }

    #[test]
    fn apache_keepalive_on_alone_keeps_the_systems_timings() {
        let (plain, on) = (socket(), socket());
        apply(on.as_fd(), &TcpLiveness::default(), true).unwrap();
        apply(plain.as_fd(), &TcpLiveness::default(), false).unwrap();
        assert_eq!(get(&on, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(&plain, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        for name in [libc::TCP_KEEPIDLE, libc::TCP_KEEPINTVL, libc::TCP_KEEPCNT] {
            assert_eq!(
                get(&on, libc::IPPROTO_TCP, name),
                get(&plain, libc::IPPROTO_TCP, name),
                "the system's value"
            );
        }
        assert_eq!(get(&on, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 0);
    }
}
