//! The error log: standard error or the `ErrorLog` file, at `LogLevel`.
//! A reload opens the file again (after logrotate has moved it, the new
//! lines go to a new file, as Apache's graceful restart does) and takes a
//! changed `ErrorLog` path or `LogLevel`.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Registry;

enum Target {
    Stderr,
    File { path: PathBuf, file: File },
}

/// Where log lines go now; shared by the subscriber and [`Logging`].
#[derive(Clone)]
struct Sink(Arc<Mutex<Target>>);

impl Sink {
    fn target(&self) -> std::sync::MutexGuard<'_, Target> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One log line's writer: the line is formatted into a buffer and written
/// in one call when it is complete, so lines from threads never mix.
pub struct LineWriter {
    sink: Sink,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        // A log line that cannot be written has nowhere else to go.
        let _ = match &mut *self.sink.target() {
            Target::Stderr => io::stderr().write_all(&self.line),
            Target::File { file, .. } => file.write_all(&self.line),
        };
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sink: self.clone(),
            line: Vec::with_capacity(160),
        }
    }
}

/// The running log, to change on reload.
pub struct Logging {
    sink: Sink,
    level: reload::Handle<LevelFilter, Registry>,
}

/// Opened here, or by the privileged opener where this process, serving
/// as `User`, may not (root's log directory).
fn open(path: &Path) -> io::Result<File> {
    super::privilege::open_append(path)
}

impl Logging {
    /// Sets up the process's log. Colours only on a terminal with no
    /// `ErrorLog` (a file, a pipe or journald gets plain text).
    pub fn init(level: tracing::Level, file: Option<&Path>) -> Logging {
        let (target, failed) = match file.map(|p| (p, open(p))) {
            Some((path, Ok(file))) => (
                Target::File {
                    path: path.to_path_buf(),
                    file,
                },
                None,
            ),
            Some((path, Err(e))) => (Target::Stderr, Some((path.to_path_buf(), e))),
            None => (Target::Stderr, None),
        };
        let ansi = matches!(target, Target::Stderr) && io::stderr().is_terminal();
        let sink = Sink(Arc::new(Mutex::new(target)));
        let (filter, level_handle) = reload::Layer::new(LevelFilter::from_level(level));
        let fmt = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(sink.clone());
        // Only fails if a subscriber was set already (tests start servers
        // in-process, and the first one's log stays).
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        if let Some((path, e)) = failed {
            tracing::error!(
                "cannot open ErrorLog {}: {e}; logging to standard error",
                path.display()
            );
        }
        Logging {
            sink,
            level: level_handle,
        }
    }

    /// Takes a reloaded configuration's `ErrorLog` and `LogLevel`: the file
    /// is opened again even when its name is the same. If it cannot be
    /// opened, the log stays where it was.
    pub fn reload(&self, level: tracing::Level, file: Option<&Path>) {
        let reopened = match file {
            Some(path) => match open(path) {
                Ok(file) => Ok(Target::File {
                    path: path.to_path_buf(),
                    file,
                }),
                Err(e) => Err((path, e)),
            },
            None => Ok(Target::Stderr),
        };
        match reopened {
            Ok(target) => {
                let (before, now) = (describe(&self.sink.target()), describe(&target));
                if now != before {
                    // The last line where the log was: where it went.
                    tracing::warn!("the log moves from {before} to {now}");
                }
                *self.sink.target() = target;
            }
            Err((path, e)) => tracing::error!(
                "cannot open ErrorLog {}: {e}; the log stays where it was",
                path.display()
            ),
        }
        if let Err(e) = self.level.modify(|f| *f = LevelFilter::from_level(level)) {
            tracing::error!("cannot change LogLevel: {e}");
        }
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Stderr => "standard error".into(),
        Target::File { path, .. } => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_written_whole_when_it_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let sink = Sink(Arc::new(Mutex::new(Target::File {
            path: path.clone(),
            file: open(&path).unwrap(),
        })));
        let mut w = sink.make_writer();
        w.write_all(b"half ").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        w.write_all(b"and half\n").unwrap();
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "half and half\n");
    }
}
