//! Serving as `User`/`Group` (mod_unixd) without losing what a reload
//! needs.
//!
//! Apache keeps a root parent that binds the ports, opens the logs, reads
//! the keys and starts the piped log programs, and children that serve as
//! `User`. wsgate is one process, so before it drops its privileges it
//! forks a small helper that keeps them, the *opener*: a loop on one end of
//! a socket pair, doing nothing until the server asks it for a descriptor
//! it cannot get itself — a listening socket on a port below 1024 a reload
//! added, an `ErrorLog` or access log reopened in root's directory after
//! logrotate moved it, a key only root may read, a piped log program to
//! run as root (as Apache's are), the `PidFile` in root's directory. The
//! server always tries first itself; the opener is asked only when
//! permission is denied.
//!
//! The opener grants nothing the configuration on disk does not name: it
//! parses the same files as root (recording which files that reads, see
//! `config::source`), and answers a request only for a `Listen` address,
//! a log path or command, a file its own parse read, or the `PidFile`; for
//! anything else it parses the files again (a reload may have changed
//! them) and refuses what they still do not name. A compromised server
//! process thus gets from it at most what the configuration already gives.
//!
//! The opener ignores the signals a terminal or an init system sends to
//! the whole group (the server decides when to stop), and ends when the
//! last server holding its socket has exited (after a binary upgrade
//! (`SIGUSR2`) the successor holds it too: [`successor_fd`]).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::log::LogTarget;
use crate::config::{self, Config, RunAs};

/// The environment variable naming the opener's descriptor in a
/// successor started by a binary upgrade.
pub const OPENER_FD: &str = "WSGATE_OPENER_FD";

/// The listen backlog of every listening socket: enough for thousands of
/// clients connecting at once.
pub const BACKLOG: i32 = 4096;

/// How long the server waits for the opener's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The largest request or answer.
const MESSAGE_MAX: usize = 8192;

/// The connection to the opener; `None` once an exchange on it failed
/// (an answer arriving after its request timed out would otherwise be
/// read as the next request's).
static OPENER: OnceLock<Mutex<Option<OwnedFd>>> = OnceLock::new();

/// What the server asks of the opener.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ask {
    Bind(SocketAddr),
    Append(PathBuf),
    Read(PathBuf),
    Pipe {
        command: String,
        shell: bool,
    },
    WritePid(PathBuf, u32),
    RemovePid(PathBuf, u32),
    /// A connection of its own, for a successor (requests and answers on
    /// one connection shared by two processes could cross).
    Connect,
}

impl Ask {
    fn encode(&self) -> Vec<u8> {
        let path = |tag: u8, p: &Path| [&[tag][..], p.as_os_str().as_bytes()].concat();
        let pid = |tag: u8, p: &Path, pid: u32| {
            [&[tag][..], &pid.to_le_bytes(), p.as_os_str().as_bytes()].concat()
        };
        match self {
            Ask::Bind(a) => [b"b", a.to_string().as_bytes()].concat(),
            Ask::Append(p) => path(b'a', p),
            Ask::Read(p) => path(b'r', p),
            Ask::Pipe { command, shell } => {
                [&[b'p', u8::from(*shell)][..], command.as_bytes()].concat()
            }
            Ask::WritePid(p, n) => pid(b'w', p, *n),
            Ask::RemovePid(p, n) => pid(b'x', p, *n),
            Ask::Connect => b"c".to_vec(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Ask> {
        let (tag, rest) = bytes.split_first()?;
        let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
        let pid = |b: &[u8]| -> Option<(u32, PathBuf)> {
            let (n, p) = b.split_at_checked(4)?;
            Some((u32::from_le_bytes(n.try_into().ok()?), path(p)))
        };
        Some(match tag {
            b'b' => Ask::Bind(std::str::from_utf8(rest).ok()?.parse().ok()?),
            b'a' => Ask::Append(path(rest)),
            b'r' => Ask::Read(path(rest)),
            b'p' => {
                let (shell, command) = rest.split_first()?;
                Ask::Pipe {
                    command: String::from_utf8(command.to_vec()).ok()?,
                    shell: *shell == 1,
                }
            }
            b'w' => pid(rest).map(|(n, p)| Ask::WritePid(p, n))?,
            b'x' => pid(rest).map(|(n, p)| Ask::RemovePid(p, n))?,
            b'c' if rest.is_empty() => Ask::Connect,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ask::Bind(a) => write!(f, "listening on {a}"),
            Ask::Append(p) => write!(f, "appending to {}", p.display()),
            Ask::Read(p) => write!(f, "reading {}", p.display()),
            Ask::Pipe { command, .. } => write!(f, "running the log program `{command}`"),
            Ask::WritePid(p, _) | Ask::RemovePid(p, _) => write!(f, "the PidFile {}", p.display()),
            Ask::Connect => write!(f, "a connection for a successor"),
        }
    }
}

/// What the configuration names, and so what the opener may hand over.
#[derive(Debug, Default, PartialEq)]
struct Allowed {
    listen: Vec<SocketAddr>,
    append: Vec<PathBuf>,
    pipes: Vec<(String, bool)>,
    read: Vec<PathBuf>,
    pid_file: Option<PathBuf>,
}

impl Allowed {
    fn of(config: &Config, read: Vec<PathBuf>) -> Allowed {
        let mut allowed = Allowed {
            listen: config.listeners.iter().map(|l| l.addr).collect(),
            append: config.error_log.iter().cloned().collect(),
            pipes: Vec::new(),
            read,
            pid_file: config.pid_file.clone(),
        };
        for log in &config.access_logs {
            match &log.target {
                LogTarget::File(p) => allowed.append.push(p.clone()),
                LogTarget::Pipe { command, shell } => allowed.pipes.push((command.clone(), *shell)),
            }
        }
        allowed
    }

    fn permits(&self, ask: &Ask) -> bool {
        match ask {
            Ask::Bind(a) => self.listen.contains(a),
            Ask::Append(p) => self.append.contains(p),
            Ask::Read(p) => self.read.contains(p),
            Ask::Pipe { command, shell } => {
                self.pipes.iter().any(|(c, s)| c == command && s == shell)
            }
            Ask::WritePid(p, _) | Ask::RemovePid(p, _) => self.pid_file.as_ref() == Some(p),
            // Grants nothing its holder could not ask already.
            Ask::Connect => true,
        }
    }
}

fn denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// Whether this process runs as root (and so applies `User`/`Group`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether an opener serves this process.
pub fn has_opener() -> bool {
    OPENER.get().is_some()
}

/// A listening socket on `addr` (address reuse, [`BACKLOG`]), bound here
/// or, where this process may not, by the opener.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    match listen_socket(addr) {
        Err(e) if denied(&e) && has_opener() => {
            let fd = ask_fd(&Ask::Bind(addr)).map_err(|asked| {
                io::Error::new(e.kind(), format!("{e}; the privileged opener: {asked}"))
            })?;
            Ok(std::net::TcpListener::from(fd))
        }
        other => other,
    }
}

fn listen_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("could not bind to address {addr}: {e}")))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `path` opened for appending (created if missing), here or by the
/// opener.
pub fn open_append(path: &Path) -> io::Result<File> {
    match File::options().create(true).append(true).open(path) {
        Err(e) if denied(&e) && has_opener() => ask_fd(&Ask::Append(path.to_path_buf()))
            .map(File::from)
            .map_err(|asked| {
                io::Error::new(e.kind(), format!("{e}; the privileged opener: {asked}"))
            }),
        other => other,
    }
}

/// With an opener, a piped log program is run by it (as root, as Apache's
/// parent runs them): the write end of its standard input. `None`: run it
/// here.
pub fn pipe(command: &str, shell: bool) -> Option<io::Result<File>> {
    has_opener().then(|| {
        ask_fd(&Ask::Pipe {
            command: command.to_string(),
            shell,
        })
        .map(File::from)
        .map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))
    })
}

/// Writes this process's id to the `PidFile`, here or by the opener.
pub fn write_pid(path: &Path) -> io::Result<()> {
    let pid = std::process::id();
    match std::fs::write(path, format!("{pid}\n")) {
        Err(e) if denied(&e) && has_opener() => ask_fd(&Ask::WritePid(path.to_path_buf(), pid))
            .map(drop)
            .map_err(|asked| {
                io::Error::new(e.kind(), format!("{e}; the privileged opener: {asked}"))
            }),
        other => other,
    }
}

/// Removes the `PidFile` if it still names this process (after a binary
/// upgrade it names the successor). Where this process may not read or
/// remove it, the opener does, with the same check.
pub fn remove_pid(path: &Path) {
    let pid = std::process::id();
    let removed = match std::fs::read_to_string(path) {
        Ok(text) if text.trim() != pid.to_string() => return,
        Ok(_) => match std::fs::remove_file(path) {
            Err(e) if denied(&e) && has_opener() => Err(e),
            Err(e) => Ok(Err(e.to_string())),
            Ok(()) => Ok(Ok(())),
        },
        Err(e) if denied(&e) && has_opener() => Err(e),
        Err(_) => return,
    };
    let removed =
        removed.unwrap_or_else(|_| ask_fd(&Ask::RemovePid(path.to_path_buf(), pid)).map(drop));
    if let Err(why) = removed {
        tracing::warn!("cannot remove PidFile {}: {why}", path.display());
    }
}

/// A whole file read by the opener (the configuration's fallback, for
/// files only root may read).
fn read_by_opener(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = ask_fd(&Ask::Read(path.to_path_buf())).map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Asks the opener; its refusal or failure as text.
fn ask_fd(ask: &Ask) -> Result<OwnedFd, String> {
    let sock = OPENER.get().ok_or("no privileged opener")?;
    let mut sock = sock.lock().unwrap_or_else(|p| p.into_inner());
    let fd = sock
        .as_ref()
        .ok_or("the connection to it was closed after an earlier failure")?
        .as_raw_fd();
    let mut buf = vec![0u8; MESSAGE_MAX];
    let exchanged = send(fd, &ask.encode(), None)
        .map_err(|e| format!("cannot ask: {e}"))
        .and_then(|()| recv(fd, &mut buf).map_err(|e| format!("no answer: {e}")));
    let (n, passed, _) = match exchanged {
        Ok((0, ..)) | Err(_) => {
            *sock = None;
            return Err(exchanged.err().unwrap_or_else(|| "it has exited".into()));
        }
        Ok(answer) => answer,
    };
    match buf[..n].split_first() {
        None => Err("it has exited".into()),
        Some((0, _)) => passed.ok_or_else(|| "it answered without a descriptor".into()),
        Some((_, why)) => Err(String::from_utf8_lossy(why).into_owned()),
    }
}

fn adopt(fd: OwnedFd) {
    let timeout = libc::timeval {
        tv_sec: ANSWER_WITHIN.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: a valid socket and a timeval of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    if OPENER.set(Mutex::new(Some(fd))).is_ok() {
        config::source::set_fallback(Box::new(read_by_opener));
    }
}

/// A successor started by a binary upgrade takes over its predecessor's
/// opener ([`OPENER_FD`]); true if it did. Never as root (root forks an
/// opener of its own and changes user: an inherited variable must not let
/// it skip that), and only a descriptor that is a Unix SOCK_SEQPACKET
/// socket. The successor runs as `User`, so it is made undumpable: other
/// processes of that user may not trace it or read its memory (keys, the
/// opener's connection).
pub fn adopt_from_env() -> bool {
    let named = std::env::var(OPENER_FD).ok();
    std::env::remove_var(OPENER_FD);
    let Some(fd) = named.and_then(|v| v.parse::<RawFd>().ok()) else {
        return false;
    };
    if is_root() || fd < 3 || !is_seqpacket(fd) {
        return false;
    }
    // SAFETY: the predecessor passed this descriptor, a Unix SOCK_SEQPACKET
    // socket (checked), for this purpose; nothing else here owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl and prctl on this process's own state.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    adopt(owned);
    true
}

fn is_seqpacket(fd: RawFd) -> bool {
    let option = |name: libc::c_int| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int-sized out-parameter and its length; an fd that is
        // not a socket gives an error.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && option(libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET)
}

/// A connection of its own to the opener, to pass to a successor (`None`
/// without an opener, or if the opener cannot make one).
pub fn connection_for_successor() -> Option<OwnedFd> {
    if !has_opener() {
        return None;
    }
    match ask_fd(&Ask::Connect) {
        Ok(fd) => Some(fd),
        Err(why) => {
            tracing::error!("the privileged opener gave no connection for the new wsgate: {why}");
            None
        }
    }
}

/// Has the kernel attach each sender's credentials to what this end
/// receives.
fn pass_credentials(fd: &OwnedFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: an int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Two connected ends of a new connection (close-on-exec); the first is
/// the opener's, which receives credentials.
fn connection_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut pair = [0 as RawFd; 2];
    // SAFETY: `pair` has room for the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new descriptors we own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    pass_credentials(&ours)?;
    Ok((ours, theirs))
}

/// Forks the opener. Must run while this process has one thread (before
/// the runtime starts): the child runs ordinary code after `fork`.
/// `read`: the files the configuration's parse read.
pub fn start(
    file: &Path,
    defines: &[String],
    config: &Config,
    read: Vec<PathBuf>,
) -> io::Result<()> {
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_string()))
        });
    if threads.as_deref() != Some("1") {
        return Err(io::Error::other(
            "the opener must be started before any thread",
        ));
    }
    let (opener, server) = connection_pair()?;
    let allowed = Allowed::of(config, read);
    // SAFETY: one thread (checked above), so the child may run ordinary
    // code: no lock is held by a thread that does not exist there.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(server);
            // SAFETY: naming this process's (only) thread.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"wsgate-opener".as_ptr()) };
            let sock = close_all_but(opener);
            Opener {
                file: file.to_path_buf(),
                defines: defines.to_vec(),
                allowed,
                pipes: Vec::new(),
            }
            .run(sock)
        }
        _ => {
            drop(opener);
            adopt(server);
            Ok(())
        }
    }
}

/// Closes every descriptor but standard input, output, error and `keep`
/// (the server's listening sockets and files are not the opener's to
/// hold), which becomes descriptor 3.
fn close_all_but(keep: OwnedFd) -> OwnedFd {
    // SAFETY: in the forked child, on descriptors it will never use but
    // `keep`, which dup2 moves to 3 first (or leaves there).
    unsafe {
        let raw = keep.as_raw_fd();
        if raw != 3 {
            if libc::dup3(raw, 3, libc::O_CLOEXEC) != 3 {
                return keep;
            }
            std::mem::forget(keep);
        } else {
            std::mem::forget(keep);
        }
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            for fd in 4..limit.rlim_cur.min(1 << 20) as RawFd {
                libc::close(fd);
            }
        }
        OwnedFd::from_raw_fd(3)
    }
}

/// Changes to `run_as` for good: supplementary groups as the user's
/// (`initgroups`, as Apache), then the group, then the user; then checks
/// that root cannot be taken back.
pub fn drop_to(run_as: &RunAs) -> io::Result<()> {
    let name = CString::new(run_as.user.as_str()).map_err(io::Error::other)?;
    // SAFETY: plain system calls on values we own.
    unsafe {
        if libc::initgroups(name.as_ptr(), run_as.gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(run_as.gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(run_as.uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(0) == 0 || libc::geteuid() != run_as.uid || libc::getegid() != run_as.gid {
            return Err(io::Error::other(
                "root could be taken back after the change",
            ));
        }
    }
    Ok(())
}

/// The privileged side.
struct Opener {
    file: PathBuf,
    defines: Vec<String>,
    allowed: Allowed,
    /// Piped log programs it started, reaped as they end.
    pipes: Vec<Child>,
}

/// Signals meant for the server (a terminal's ^C, systemd's stop to the
/// whole group): the opener waits for its socket to close instead.
const SIGNALS_FOR_THE_SERVER: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGQUIT,
];

impl Opener {
    /// Serves its connections until the last one closes: the server's,
    /// and one per successor of a binary upgrade ([`Ask::Connect`]).
    fn run(&mut self, sock: OwnedFd) -> ! {
        // SAFETY: setting signal dispositions.
        unsafe {
            for s in SIGNALS_FOR_THE_SERVER {
                libc::signal(s, libc::SIG_IGN);
            }
        }
        let mut clients = vec![sock];
        let mut buf = vec![0u8; MESSAGE_MAX];
        while !clients.is_empty() {
            self.pipes.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            let mut polls: Vec<libc::pollfd> = clients
                .iter()
                .map(|c| libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: `polls` holds `polls.len()` valid pollfds.
            let ready =
                unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 1000) };
            if ready <= 0 {
                continue;
            }
            let mut closed = Vec::new();
            for (i, p) in polls.iter().enumerate().filter(|(_, p)| p.revents != 0) {
                match self.serve_one(p.fd, &mut buf) {
                    Ok(Some(new)) => clients.push(new),
                    Ok(None) => {}
                    Err(()) => closed.push(i),
                }
            }
            for i in closed.into_iter().rev() {
                clients.remove(i);
            }
        }
        // SAFETY: ending the child without the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }

    /// One request on `fd` answered; a new connection to serve as well, or
    /// `Err` when this one has ended.
    fn serve_one(&mut self, fd: RawFd, buf: &mut [u8]) -> Result<Option<OwnedFd>, ()> {
        let (n, sender) = match recv(fd, buf) {
            Ok((0, ..)) => return Err(()),
            Ok((n, _, sender)) => (n, sender),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(_) => return Err(()),
        };
        let mut kept = None;
        // The PidFile names the process that asks, as the kernel says, not
        // as its request does.
        let decoded = Ask::decode(&buf[..n]).map(|ask| match (ask, sender) {
            (Ask::WritePid(p, _), Some(pid)) => Ok(Ask::WritePid(p, pid)),
            (Ask::RemovePid(p, _), Some(pid)) => Ok(Ask::RemovePid(p, pid)),
            (Ask::WritePid(..) | Ask::RemovePid(..), None) => {
                Err("no credentials came with the request".to_string())
            }
            (ask, _) => Ok(ask),
        });
        let answer = match decoded {
            Some(Err(why)) => Err(why),
            Some(Ok(Ask::Connect)) => connection_pair()
                .map_err(|e| format!("a new connection: {e}"))
                .map(|(ours, theirs)| {
                    kept = Some(ours);
                    Some(theirs)
                }),
            Some(Ok(ask)) => self.answer(&ask),
            None => Err("a request it cannot read".to_string()),
        };
        let sent = match answer {
            Ok(passed) => send(fd, &[0], passed.as_ref().map(AsRawFd::as_raw_fd)),
            Err(why) => send(fd, &[&[1u8][..], why.as_bytes()].concat(), None),
        };
        match sent {
            Ok(()) => Ok(kept),
            Err(_) => Err(()),
        }
    }

    fn answer(&mut self, ask: &Ask) -> Result<Option<OwnedFd>, String> {
        if !self.allowed.permits(ask) {
            // A reload may have named it: read the files again.
            let (loaded, read) =
                config::source::recording(|| config::load(&self.file, &self.defines));
            let config = loaded.map_err(|e| {
                let first = e.to_string();
                format!(
                    "refused {ask}: the configuration does not load: {}",
                    first.lines().next().unwrap_or("")
                )
            })?;
            self.allowed = Allowed::of(&config, read);
            if !self.allowed.permits(ask) {
                return Err(format!(
                    "refused {ask}: the configuration ({}) does not name it",
                    self.file.display()
                ));
            }
        }
        self.perform(ask).map_err(|e| format!("{ask}: {e}"))
    }

    fn perform(&mut self, ask: &Ask) -> io::Result<Option<OwnedFd>> {
        let mut append = File::options();
        append.create(true).append(true);
        let mut write = File::options();
        write.create(true).write(true).truncate(true);
        Ok(Some(match ask {
            Ask::Bind(addr) => listen_socket(*addr)?.into(),
            Ask::Append(p) => plain(p, &append)?.into(),
            Ask::Read(p) => plain(p, File::options().read(true))?.into(),
            Ask::Pipe { command, shell } => {
                let mut child = log_program(command, *shell).spawn()?;
                let stdin = child
                    .stdin
                    .take()
                    .ok_or_else(|| io::Error::other("no standard input"))?;
                self.pipes.push(child);
                stdin.into()
            }
            Ask::WritePid(p, pid) => {
                use std::io::Write;
                let mut f = plain(p, &write)?;
                f.write_all(format!("{pid}\n").as_bytes())?;
                f.into()
            }
            Ask::Connect => return Err(io::Error::other("answered by serve_one")),
            Ask::RemovePid(p, pid) => {
                use std::io::Read;
                // Left alone when it names another process (a successor).
                let mut f = plain(p, File::options().read(true))?;
                let mut text = String::new();
                f.read_to_string(&mut text)?;
                if text.trim() == pid.to_string() {
                    std::fs::remove_file(p)?;
                }
                f.into()
            }
        }))
    }
}

/// A regular file opened as root, its last component not a symbolic link
/// (a link the serving user planted in a folder it may write would
/// otherwise point root's open anywhere) and without waiting on a FIFO
/// (which would block the opener for every request after).
fn plain(path: &Path, options: &std::fs::OpenOptions) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options
        .clone()
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    // Back to blocking, as a file opened by the server itself would be.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(file)
}

/// A piped log program's command, with the signals the opener ignores
/// back to their defaults for it.
pub fn log_program(command: &str, shell: bool) -> Command {
    let mut cmd = if shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(command);
        c
    } else {
        let words = config::split_command(command).unwrap_or_default();
        let mut c = Command::new(words.first().map_or("", String::as_str));
        c.args(words.iter().skip(1));
        c
    };
    cmd.stdin(Stdio::piped());
    // SAFETY: only signal(), which is async-signal-safe, between fork and
    // exec.
    unsafe {
        cmd.pre_exec(|| {
            for s in SIGNALS_FOR_THE_SERVER {
                libc::signal(s, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    cmd
}

/// One message, with a descriptor if given.
fn send(fd: RawFd, bytes: &[u8], pass: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut space = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives
    // the call, and the control buffer is large and aligned enough for one
    // descriptor's header (CMSG_SPACE(4) is 24 bytes).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(pass) = pass {
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), pass);
        }
        loop {
            if libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// One message, the descriptor that came with it, and the sender's process
/// id as the kernel vouches for it (on a socket with `SO_PASSCRED`);
/// `(0, None, _)` at the end.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>, Option<u32>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = [0u64; 8];
    // SAFETY: as in `send`; descriptors received are taken into OwnedFds
    // once each.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space);
        let n = loop {
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let (mut passed, mut sender) = (None, None);
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::ucred>());
                sender = u32::try_from(cred.pid).ok();
            }
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let count =
                    ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let owned = OwnedFd::from_raw_fd(fd);
                    if passed.is_none() {
                        passed = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::other("a message too long"));
        }
        Ok((n, passed, sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for ask in [
            Ask::Bind("127.0.0.1:80".parse().unwrap()),
            Ask::Bind("[::1]:443".parse().unwrap()),
            Ask::Append("/var/log/apache2/access.log".into()),
            Ask::Read("/etc/ssl/private/key.pem".into()),
            Ask::Pipe {
                command: "/usr/bin/rotatelogs /var/log/a.%Y 86400".into(),
                shell: false,
            },
            Ask::Pipe {
                command: "cat >> /x".into(),
                shell: true,
            },
            Ask::WritePid("/run/apache2/apache2.pid".into(), 4242),
            Ask::RemovePid("/run/x.pid".into(), 7),
            Ask::Connect,
        ] {
            assert_eq!(Ask::decode(&ask.encode()), Some(ask));
        }
        assert_eq!(Ask::decode(b""), None);
        assert_eq!(Ask::decode(b"bnot-an-address"), None);
        assert_eq!(Ask::decode(b"w12"), None);
        assert_eq!(Ask::decode(b"z/x"), None);
    }

    #[test]
    fn only_what_the_configuration_names_is_permitted() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, key) = (dir.path().join("logs"), dir.path().join("key.pem"));
        std::fs::create_dir(&logs).unwrap();
        let text = format!(
            "Listen 127.0.0.1:81\nErrorLog {l}/error.log\nCustomLog {l}/access.log common\nCustomLog \"|/usr/bin/rotatelogs {l}/r 86400\" common\nPidFile {l}/w.pid\n",
            l = logs.display()
        );
        let config = crate::config::from_str(&text, "t.conf").unwrap();
        let allowed = Allowed::of(&config, vec![key.clone()]);
        let yes = [
            Ask::Bind("127.0.0.1:81".parse().unwrap()),
            Ask::Append(logs.join("error.log")),
            Ask::Append(logs.join("access.log")),
            Ask::Pipe {
                command: format!("/usr/bin/rotatelogs {}/r 86400", logs.display()),
                shell: false,
            },
            Ask::Read(key.clone()),
            Ask::WritePid(logs.join("w.pid"), 1),
            Ask::RemovePid(logs.join("w.pid"), 1),
        ];
        for ask in &yes {
            assert!(allowed.permits(ask), "{ask}");
        }
        let no = [
            Ask::Bind("127.0.0.1:22".parse().unwrap()),
            Ask::Bind("0.0.0.0:81".parse().unwrap()),
            Ask::Append("/etc/passwd".into()),
            Ask::Append(logs.join("other.log")),
            Ask::Read("/etc/shadow".into()),
            Ask::Pipe {
                command: "/bin/sh".into(),
                shell: true,
            },
            Ask::Pipe {
                command: format!("/usr/bin/rotatelogs {}/r 86400", logs.display()),
                shell: true,
            },
            Ask::WritePid("/etc/passwd".into(), 1),
        ];
        for ask in &no {
            assert!(!allowed.permits(ask), "{ask}");
        }
    }

    #[test]
    fn the_opener_grants_what_a_reload_named_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("w.conf");
        let (first, added) = (dir.path().join("first.log"), dir.path().join("added.log"));
        let write = |logs: &[&Path]| {
            let lines: String = logs
                .iter()
                .map(|l| format!("CustomLog {} common\n", l.display()))
                .collect();
            std::fs::write(&conf, format!("Listen 127.0.0.1:0\n{lines}")).unwrap();
        };
        write(&[&first]);
        let mut opener = Opener {
            file: conf.clone(),
            defines: Vec::new(),
            allowed: Allowed::default(),
            pipes: Vec::new(),
        };
        assert!(opener.answer(&Ask::Append(first.clone())).is_ok());
        let refused = opener.answer(&Ask::Append(added.clone())).unwrap_err();
        assert!(refused.starts_with("refused appending to"), "{refused}");
        assert!(refused.contains("does not name it"), "{refused}");
        assert!(!added.exists());
        // A reload names it: the opener reads the files again and grants it.
        write(&[&first, &added]);
        assert!(opener.answer(&Ask::Append(added.clone())).is_ok());
        assert!(added.exists());
        // The files it read are what it reads for the server, nothing else.
        assert!(opener.answer(&Ask::Read(conf.clone())).is_ok());
        assert!(opener.answer(&Ask::Read(dir.path().join("other"))).is_err());
        // A symbolic link as the last component is not followed.
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        write(&[&link]);
        let e = opener.answer(&Ask::Append(link)).unwrap_err();
        assert!(e.contains("appending to"), "{e}");
    }
}
