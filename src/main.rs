//! The `wsgate` command: arguments, logging, signals and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use wsgate::config;
use wsgate::ops::notify::Notifier;
use wsgate::ops::privilege;
use wsgate::ops::Logging;
use wsgate::proxy::handover;
use wsgate::proxy::server::Handle;

/// How long a new binary may take to serve before the hand-over is given up.
const HANDOVER_READY: std::time::Duration = std::time::Duration::from_secs(30);

#[global_allocator]
static ALLOCATOR: wsgate::alloc::Allocator = wsgate::alloc::Allocator;

/// Exit codes a shell script can rely on.
const EXIT_OK: u8 = 0;
const EXIT_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 2;

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "A reverse proxy for WebSocket and HTTP/1.1 upgrades, configured with Apache httpd's directives",
    after_help = "Explaining a request: wsgate -t -f FILE --explain GET http://chat.example/ws 'Cookie: ROUTEID=.a' \
                  prints the virtual host, each rewrite rule and condition, the ProxyPass line, Require, the backend \
                  and balancer member, the upgrade decision and every timeout, each with its FILE:LINE, \
                  without sending anything (a ws:// url adds the WebSocket handshake's Upgrade and Connection).\n\
                  Signals: SIGHUP or SIGUSR1 reloads the configuration; SIGTERM, SIGINT or SIGWINCH stop \
                  gracefully (a second SIGTERM/SIGINT stops at once); SIGUSR2 starts the binary again \
                  (a new build in its place) on the same listening sockets, then stops gracefully.\n\
                  Exit codes: 0 success, 1 configuration error, 2 usage or runtime error."
)]
struct Args {
    /// The configuration file (Apache syntax).
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Check the configuration and exit: prints "Syntax OK", or every FILE:LINE: what is wrong.
    #[arg(short = 't')]
    test: bool,
    /// Define a name for <IfDefine> and ${NAME} (NAME or NAME=VALUE), like httpd -D.
    #[arg(short = 'D', value_name = "NAME")]
    defines: Vec<String>,
    /// List the configuration directives wsgate reads (like httpd -L):
    /// syntax, what wsgate does with each, and where it may be written.
    #[arg(short = 'L')]
    list_directives: bool,
    /// With -t: explain what wsgate would do with a request, without
    /// sending it: METHOD URL (or a /path) then header lines 'Name: value'.
    #[arg(long, requires = "test", num_args = 2.., value_names = ["METHOD", "URL"])]
    explain: Option<Vec<String>>,
    /// With --explain: the local address the request reaches (default:
    /// from the url's port and the Listen lines).
    #[arg(long, value_name = "IP:PORT", requires = "explain")]
    explain_listen: Option<String>,
    /// With --explain: the client's address (default 192.0.2.1, a remote
    /// client), as Require and the rules see it.
    #[arg(long, value_name = "IP", requires = "explain")]
    explain_client: Option<String>,
    /// Once listening, print one line per address to standard output,
    /// "listening on IP:PORT" (the port a `Listen` on port 0 was given).
    #[arg(long)]
    print_listen: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a self-contained demonstration: the proxy, a WebSocket echo backend and a page.
    Demo {
        /// Where the proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Demo { listen }) = args.command {
        Logging::init(tracing::Level::INFO, None);
        return run_runtime(async move {
            match wsgate::demo::run(listen).await {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("wsgate demo: {e:#}");
                    EXIT_RUNTIME
                }
            }
        });
    }
    if args.list_directives {
        print!("{}", config::directive_listing());
        return ExitCode::from(EXIT_OK);
    }
    let Some(file) = args.file else {
        eprintln!(
            "wsgate: no configuration file: use wsgate -f FILE (or wsgate demo); see wsgate --help"
        );
        return ExitCode::from(EXIT_RUNTIME);
    };
    let question = match &args.explain {
        Some(words) => match wsgate::proxy::explain::Question::parse(
            words,
            args.explain_listen.as_deref(),
            args.explain_client.as_deref(),
        ) {
            Ok(q) => Some(q),
            Err(e) => {
                eprintln!("wsgate: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        },
        None => None,
    };
    // A successor of a binary upgrade reads root's files through its
    // predecessor's opener (its configuration's keys, say).
    let adopted = privilege::adopt_from_env();
    let (loaded, read) = config::source::recording(|| config::load(&file, &args.defines));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.test {
        for w in &config.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(q) = question {
            print!("{}", wsgate::proxy::explain::explain(config, &q));
            return ExitCode::from(EXIT_OK);
        }
        println!("Syntax OK");
        return ExitCode::from(EXIT_OK);
    }
    // `User`: the opener keeps root's powers for reloads; forked now, while
    // this process has one thread.
    let run_as = match &config.run_as {
        Some(r) if privilege::is_root() && !adopted => {
            if let Err(e) = privilege::start(&file, &args.defines, &config, read) {
                eprintln!(
                    "wsgate: cannot start the privileged opener for User {}: {e}",
                    r.user
                );
                return ExitCode::from(EXIT_RUNTIME);
            }
            Some(r.clone())
        }
        _ => None,
    };
    let logging = Logging::init(config.log_level, config.error_log.as_deref());
    if let (Some(r), false, false) = (&config.run_as, privilege::is_root(), adopted) {
        tracing::info!(
            "not started as root: serving as uid {} (User {} applies when started as root)",
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() },
            r.user
        );
    }
    run_runtime(serve(
        run_as,
        config,
        file,
        args.defines,
        args.print_listen,
        logging,
    ))
}

fn run_runtime(f: impl std::future::Future<Output = u8>) -> ExitCode {
    let mut builder = if worker_threads() == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsgate: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(f);
    // Tunnels still open end with the runtime; their access log lines,
    // and every line queued, are written before the process exits.
    drop(runtime);
    wsgate::ops::access::flush_all(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

async fn serve(
    run_as: Option<config::RunAs>,
    config: config::Config,
    file: PathBuf,
    defines: Vec<String>,
    print_listen: bool,
    logging: Logging,
) -> u8 {
    // Before the PidFile and the port say it runs: a stop asked for from
    // then on is taken once it serves, not met by the default action (an
    // exit that left the PidFile behind).
    let signals = (|| -> std::io::Result<_> {
        Ok((
            signal(SignalKind::hangup())?,
            signal(SignalKind::user_defined1())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::window_change())?,
            signal(SignalKind::user_defined2())?,
        ))
    })();
    let (mut hup, mut usr1, mut term, mut int, mut winch, mut usr2) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsgate: cannot install signal handlers: {e}");
            return EXIT_RUNTIME;
        }
    };
    let pid_file = config.pid_file.clone();
    // Written before listening, so that whoever sees the port open finds it.
    if let Some(p) = &pid_file {
        if let Err(e) = privilege::write_pid(p) {
            tracing::error!("cannot write PidFile {}: {e}", p.display());
        }
    }
    // Listening, logs open, keys read: as `User` from here on, before
    // the first connection is accepted.
    let mut change_user = || match &run_as {
        Some(r) => {
            privilege::drop_to(r).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot change to User {} and group {}: {e}; not serving as root",
                    r.user, r.gid
                ))
            })?;
            tracing::info!(
                "serving as user {} (uid {}), group {}",
                r.user,
                r.uid,
                r.gid
            );
            Ok(())
        }
        None => Ok(()),
    };
    let handle = match Handle::start_then(config, &mut change_user).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("wsgate: {e}");
            if let Some(p) = &pid_file {
                privilege::remove_pid(p);
            }
            return EXIT_RUNTIME;
        }
    };
    // Only now: whoever waits for these lines may signal at once.
    if print_listen {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for addr in handle.local_addrs() {
            let _ = writeln!(out, "listening on {addr}");
        }
        let _ = out.flush();
    }
    let notify = Notifier::from_env();
    if let Some(n) = &notify {
        let addrs: Vec<String> = handle.local_addrs().iter().map(|a| a.to_string()).collect();
        n.ready(&format!("listening on {}", addrs.join(", ")));
    }
    let mut handed_over = false;
    loop {
        let reloading = tokio::select! {
            _ = hup.recv() => true,
            _ = usr1.recv() => true,
            _ = term.recv() => false,
            _ = int.recv() => false,
            _ = winch.recv() => false,
            _ = usr2.recv() => {
                let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
                match handover::hand_over(&handle, &argv, HANDOVER_READY).await {
                    Ok(pid) => {
                        tracing::warn!("the listening sockets are handed to the new wsgate, pid {pid}; finishing requests and tunnels here");
                        if let Some(n) = &notify {
                            n.handed_over(pid);
                        }
                        handed_over = true;
                        break;
                    }
                    Err(e) => tracing::error!("binary upgrade failed, still serving: {e}"),
                }
                continue;
            }
        };
        if !reloading {
            break;
        }
        if let Some(n) = &notify {
            n.reloading();
        }
        let status = reload(&handle, &file, &defines, &logging).await;
        if let Some(n) = &notify {
            n.ready(&status);
        }
    }
    if let (Some(n), false) = (&notify, handed_over) {
        n.stopping();
    }
    let grace = handle.shared().generation().config.graceful_shutdown;
    match grace {
        Some(t) => tracing::info!(
            "stopping: waiting up to {} s for requests and tunnels to finish",
            t.as_secs_f64()
        ),
        None => tracing::info!("stopping: waiting for requests and tunnels to finish"),
    }
    let left = tokio::select! {
        n = handle.shutdown(grace) => n,
        _ = term.recv() => 0,
        _ = int.recv() => 0,
    };
    if left > 0 {
        let s = if left == 1 { "" } else { "s" };
        tracing::warn!("closing {left} connection{s} still open after GracefulShutdownTimeout");
    }
    // Only if it is still ours: after a hand-over, it names the successor.
    if let Some(p) = &pid_file {
        privilege::remove_pid(p);
    }
    EXIT_OK
}

/// Reads the configuration again and swaps it in; says what happened. The
/// files are read and checked on a thread of their own: with one runtime
/// thread, parsing a large configuration there would stall every
/// connection meanwhile.
async fn reload(
    handle: &Handle,
    file: &std::path::Path,
    defines: &[String],
    logging: &Logging,
) -> String {
    let (path, names) = (file.to_path_buf(), defines.to_vec());
    let loaded = match tokio::task::spawn_blocking(move || config::load(&path, &names)).await {
        Ok(loaded) => loaded.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let swapped = loaded.and_then(|config| {
        let (level, error_log) = (config.log_level, config.error_log.clone());
        handle.reload(config).map_err(|e| e.to_string())?;
        logging.reload(level, error_log.as_deref());
        Ok(())
    });
    match swapped {
        Ok(()) => {
            tracing::warn!("configuration reloaded from {}", file.display());
            format!("configuration reloaded from {}", file.display())
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e}");
            format!("reload failed, keeping the running configuration: {e}")
        }
    }
}

/// How many runtime threads: TOKIO_WORKER_THREADS if set, else one per core.
/// With one, the whole proxy runs on the main thread (a current-thread
/// runtime): no cross-thread wake-ups, no work-stealing queues.
fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
