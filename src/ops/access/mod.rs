//! Access logs: lines made on the request path (`format`) and written by
//! a thread per file or piped program, through a bounded queue — a full
//! disk or a program that stops reading costs lost lines, counted and
//! reported, never a stalled request or tunnel.
//!
//! A log's writer is kept across reloads while the configuration names
//! it: a reload reopens files (after logrotate moved them, lines go to
//! the new file) and leaves piped programs running; a piped program that
//! dies is started again, as Apache's piped logs are.

pub mod format;
pub mod shelf;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::model::log::LogTarget;
use crate::config::Config;

pub use format::{ConnStatus, Entry, Opened, Pending, SslVars, TunnelEnd};

/// How many lines may wait for a log's writer.
const QUEUE: usize = 8192;
/// At most one report of lost lines or a failing write per log this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// A piped program that died is started again at most this often.
const RESTART_EVERY: Duration = Duration::from_secs(1);

enum Msg {
    Line(String),
    Reopen,
}

/// One log's queue, shared by the configurations that name it.
pub struct Sink {
    target: LogTarget,
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
    /// Milliseconds since `epoch` of the last report of lost lines.
    reported: AtomicU64,
    epoch: Instant,
}

impl Sink {
    /// Queues a line (its line end is added here); when the writer is too
    /// far behind, the line is lost and counted.
    pub fn send(&self, mut line: String) {
        line.push('\n');
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.lost(),
        }
    }

    fn lost(&self) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.reported.load(Ordering::Relaxed);
        let due = n == 1 || now.saturating_sub(last) >= REPORT_EVERY.as_millis() as u64;
        if due
            && self
                .reported
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                "access log {}: {n} line(s) lost so far: its writer is behind (a full disk, or a piped program that does not read)",
                self.target
            );
        }
    }

    /// Lines lost so far (the queue was full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn target(&self) -> &LogTarget {
        &self.target
    }
}

/// The sinks of one configuration, in the order of
/// [`Config::access_logs`].
#[derive(Default)]
pub struct Sinks(pub Vec<Arc<Sink>>);

impl Sinks {
    pub fn get(&self, idx: usize) -> Option<&Arc<Sink>> {
        self.0.get(idx)
    }
}

/// Every log's writer, by target, across reloads.
#[derive(Default)]
pub struct AccessLogs {
    open: Mutex<HashMap<LogTarget, std::sync::Weak<Sink>>>,
}

impl AccessLogs {
    /// The sinks `config` writes to: a log already open is kept (a file
    /// is reopened), a new one is started. A log no configuration names
    /// any more stops once its last request or tunnel is done with it.
    pub fn sinks_for(&self, config: &Config) -> Sinks {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, s| s.strong_count() > 0);
        let mut fresh: HashMap<&LogTarget, Arc<Sink>> = HashMap::new();
        let mut sinks = Vec::with_capacity(config.access_logs.len());
        for log in &config.access_logs {
            if let Some(s) = fresh.get(&log.target) {
                sinks.push(s.clone());
                continue;
            }
            let sink = match open.get(&log.target).and_then(|w| w.upgrade()) {
                Some(s) => {
                    let _ = s.tx.try_send(Msg::Reopen);
                    s
                }
                None => {
                    let s = start(log.target.clone());
                    open.insert(log.target.clone(), Arc::downgrade(&s));
                    s
                }
            };
            fresh.insert(&log.target, sink.clone());
            sinks.push(sink);
        }
        Sinks(sinks)
    }
}

/// The writer threads, so that the process can wait for their last lines
/// before it exits.
static WRITERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits (at most `limit`) for the writers whose logs are no longer used
/// to write what they hold: called when the server has stopped.
pub fn flush_all(limit: Duration) {
    let deadline = Instant::now() + limit;
    let writers = std::mem::take(&mut *WRITERS.lock().unwrap_or_else(|p| p.into_inner()));
    for w in writers {
        while !w.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if w.is_finished() {
            let _ = w.join();
        }
    }
}

fn start(target: LogTarget) -> Arc<Sink> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let sink = Arc::new(Sink {
        target: target.clone(),
        tx,
        dropped: AtomicU64::new(0),
        reported: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let name = format!("wsgate-log {target}");
    let spawned = std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || Writer::new(target).run(rx));
    match spawned {
        Ok(handle) => WRITERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle),
        Err(e) => tracing::error!("access log {}: cannot start its writer: {e}", sink.target),
    }
    sink
}

enum Output {
    None,
    File(File),
    /// `child` is `None` when the privileged opener runs the program (as
    /// root, as Apache's parent does): its end shows as a failed write.
    Pipe {
        child: Option<Child>,
        stdin: File,
    },
}

struct Writer {
    target: LogTarget,
    out: Output,
    /// When the piped program was last started.
    started: Option<Instant>,
    last_error: Option<Instant>,
    failed_lines: u64,
}

impl Writer {
    fn new(target: LogTarget) -> Writer {
        let mut w = Writer {
            target,
            out: Output::None,
            started: None,
            last_error: None,
            failed_lines: 0,
        };
        w.open();
        w
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut lines = 0u64;
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.check_child();
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match msg {
                    Msg::Line(l) => {
                        batch.extend_from_slice(l.as_bytes());
                        lines += 1;
                    }
                    // In order: the lines before it go to the old file,
                    // the ones after (a request served after the reload)
                    // to the new one.
                    // A file that could not be opened before is tried
                    // again too.
                    Msg::Reopen => {
                        self.flush(&mut batch, &mut lines);
                        if let LogTarget::File(_) = self.target {
                            self.open();
                        }
                    }
                }
                if batch.len() >= 256 * 1024 {
                    break;
                }
            }
            self.flush(&mut batch, &mut lines);
        }
        self.close();
    }

    fn flush(&mut self, batch: &mut Vec<u8>, lines: &mut u64) {
        if !batch.is_empty() {
            self.write(batch, *lines);
            batch.clear();
            *lines = 0;
        }
    }

    fn open(&mut self) {
        let result = match &self.target {
            LogTarget::File(path) => super::privilege::open_append(path).map(Output::File),
            LogTarget::Pipe { command, shell } => {
                self.started = Some(Instant::now());
                spawn(command, *shell)
            }
        };
        match result {
            Ok(out) => {
                self.close();
                self.out = out;
            }
            Err(e) => self.report(&format!("cannot open: {e}")),
        }
    }

    /// A piped program that exited is started again (at most once a
    /// second).
    fn check_child(&mut self) {
        let exited = match &mut self.out {
            Output::Pipe {
                child: Some(child), ..
            } => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            },
            Output::None if matches!(self.target, LogTarget::Pipe { .. }) => {
                Some("not running".into())
            }
            _ => None,
        };
        let Some(why) = exited else { return };
        let due = self.started.is_none_or(|s| s.elapsed() >= RESTART_EVERY);
        if due {
            tracing::error!(
                "access log {}: the piped program ended ({why}): starting it again",
                self.target
            );
            self.out = Output::None;
            self.open();
        }
    }

    fn write(&mut self, bytes: &[u8], lines: u64) {
        let mut result = self.write_once(bytes);
        if result.is_err() && matches!(self.target, LogTarget::Pipe { .. }) {
            // The program may have just died: once more, started again.
            self.out = Output::None;
            if self.started.is_none_or(|s| s.elapsed() >= RESTART_EVERY) {
                self.open();
                result = self.write_once(bytes);
            }
        }
        if let Err(e) = result {
            self.failed_lines += lines;
            let n = self.failed_lines;
            self.report(&format!("cannot write ({n} line(s) lost so far): {e}"));
        }
    }

    fn write_once(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Output::File(f) => f.write_all(bytes),
            Output::Pipe { stdin, .. } => stdin.write_all(bytes),
            Output::None => Err(io::Error::other("not open")),
        }
    }

    fn report(&mut self, what: &str) {
        if self.last_error.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            self.last_error = Some(Instant::now());
            tracing::error!("access log {}: {what}", self.target);
        }
    }

    /// Lets a piped program see the end of its input and exit.
    fn close(&mut self) {
        if let Output::Pipe {
            child: Some(mut child),
            stdin,
        } = std::mem::replace(&mut self.out, Output::None)
        {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn spawn(command: &str, shell: bool) -> io::Result<Output> {
    if let Some(stdin) = super::privilege::pipe(command, shell) {
        return Ok(Output::Pipe {
            child: None,
            stdin: stdin?,
        });
    }
    let mut child = super::privilege::log_program(command, shell).spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no standard input"))?;
    Ok(Output::Pipe {
        child: Some(child),
        stdin: File::from(std::os::fd::OwnedFd::from(stdin)),
    })
}
