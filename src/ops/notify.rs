//! systemd's service notifications (`sd_notify(3)`), for units of
//! `Type=notify` or `Type=notify-reload`: `READY=1` once every listener is
//! bound and the signals are handled, `RELOADING=1` (with the
//! `MONOTONIC_USEC` systemd asks for) and `READY=1` again around each
//! reload, `STOPPING=1` when a graceful stop begins; `STATUS=` says what
//! happened in words; after a binary upgrade, `MAINPID=` of the successor.
//! Nothing at all when systemd set no `NOTIFY_SOCKET` (and no predecessor
//! waits, see [`HANDOVER`]).

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where a wsgate that hands its sockets over (`proxy::handover`) waits
/// for its successor's `READY=1`, besides systemd's `NOTIFY_SOCKET`.
pub const HANDOVER: &str = "WSGATE_HANDOVER_NOTIFY";

pub struct Notifier {
    socket: UnixDatagram,
    to: Vec<SocketAddr>,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` and [`HANDOVER`] ask for (each a path,
    /// or `@name` for Linux's abstract namespace), if any.
    pub fn from_env() -> Option<Notifier> {
        let to: Vec<SocketAddr> = ["NOTIFY_SOCKET", HANDOVER]
            .iter()
            .filter_map(|var| address(std::env::var_os(var)?.to_str()?))
            .collect();
        if to.is_empty() {
            return None;
        }
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, to })
    }

    /// A successor now serves in this process's place (`SIGUSR2`):
    /// systemd follows it as the service's main process.
    pub fn handed_over(&self, pid: u32) {
        self.send(&format!(
            "MAINPID={pid}\nSTATUS=handed over to the new wsgate, pid {pid}; finishing requests and tunnels"
        ));
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={status}",
            std::process::id()
        ));
    }

    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: letting requests and tunnels finish");
    }

    /// Best effort, as sd_notify: a manager that is gone changes nothing.
    fn send(&self, message: &str) {
        for to in &self.to {
            if let Err(e) = self.socket.send_to_addr(message.as_bytes(), to) {
                tracing::debug!("NOTIFY_SOCKET: {e}");
            }
        }
    }
}

fn address(path: &str) -> Option<SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => abstract_addr(name),
        None => SocketAddr::from_pathname(path).ok(),
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes()).ok()
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &str) -> Option<SocketAddr> {
    None
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which
    // points to a live, writable one.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
