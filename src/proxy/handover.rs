//! A new wsgate binary taking over from the running one without refusing a
//! connection or dropping a tunnel (`SIGUSR2`, as nginx's `USR2` and
//! HAProxy's `-x`): the running process starts the program it was started
//! as, with the same arguments and its listening sockets as descriptors 3
//! onwards (named in [`PASSED`] by the `Listen` address each serves), and
//! waits for the successor's `READY=1` on a notification socket of its own
//! (the successor speaks sd_notify to it, and to systemd's `NOTIFY_SOCKET`
//! if there is one; systemd is then told the successor's `MAINPID`). Both then hold the same sockets, so
//! connections queue on them throughout; the old process stops accepting
//! and finishes its requests and tunnels within `GracefulShutdownTimeout`.
//! A successor that fails to start, or is not ready in time, is stopped,
//! and the running process goes on as before. Serving as `User`, the
//! successor also gets the privileged opener's descriptor (after the
//! sockets, named by `WSGATE_OPENER_FD`), and asks it what it cannot open.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use super::server::Handle;

/// The `Listen` addresses of the sockets passed from descriptor 3 on.
pub const PASSED: &str = "WSGATE_PASSED_LISTEN";

/// Starts the successor and waits until it serves; returns its PID.
pub async fn hand_over(
    handle: &Handle,
    argv: &[OsString],
    ready_within: Duration,
) -> io::Result<u32> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("no program to start"))?;
    let sockets = handle.listening_sockets()?;
    let names: Vec<String> = sockets.iter().map(|(a, _)| a.to_string()).collect();
    let (notify, name) = notify_socket()?;
    let mut sources: Vec<i32> = sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    // Serving as `User`: the successor asks the same opener for what it
    // cannot open itself; its descriptor follows the sockets.
    let opener = crate::ops::privilege::connection_for_successor();
    sources.extend(opener.as_ref().map(AsRawFd::as_raw_fd));
    // Room for the descriptors on their way to 3.., made before the fork.
    let mut moved = vec![0i32; sources.len()];
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env(PASSED, names.join(" "))
        .env(crate::ops::notify::HANDOVER, format!("@{name}"))
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove(crate::ops::privilege::OPENER_FD)
        .stdin(std::process::Stdio::null());
    if opener.is_some() {
        cmd.env(
            crate::ops::privilege::OPENER_FD,
            (3 + sockets.len()).to_string(),
        );
    }
    // SAFETY: between fork and exec only fcntl, dup2 and close, which are
    // async-signal-safe, on descriptors this process holds open; nothing
    // allocates.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that no source is overwritten by an
            // earlier one's move.
            for (m, fd) in moved.iter_mut().zip(&sources) {
                *m = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 1024);
                if *m < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, m) in moved.iter().enumerate() {
                if libc::dup2(*m, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(*m);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // The successor's end of its connection to the opener is its own now.
    drop(opener);
    let pid = child.id();
    let ready = tokio::time::timeout(ready_within, async {
        let mut buf = [0u8; 512];
        loop {
            let n = notify.recv(&mut buf).await?;
            if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") {
                return Ok::<(), io::Error>(());
            }
        }
    })
    .await;
    match ready {
        Ok(Ok(())) => Ok(pid),
        Ok(Err(e)) => {
            stop(&mut child);
            Err(e)
        }
        Err(_) => {
            let exited = child.try_wait().ok().flatten();
            stop(&mut child);
            Err(io::Error::other(match exited {
                Some(status) => format!("the new wsgate (pid {pid}) exited: {status}"),
                None => format!(
                    "the new wsgate (pid {pid}) was not ready within {} s; stopped",
                    ready_within.as_secs()
                ),
            }))
        }
    }
}

fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A datagram socket in Linux's abstract namespace (no file to clean up),
/// and its name.
fn notify_socket() -> io::Result<(tokio::net::UnixDatagram, String)> {
    use std::os::linux::net::SocketAddrExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("wsgate-handover-{}-{nanos}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    Ok((tokio::net::UnixDatagram::from_std(socket)?, name))
}
