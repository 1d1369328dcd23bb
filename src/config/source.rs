//! Every file the configuration reads (its own files, `TypesConfig`, the
//! TLS certificates and keys) is read here, for two reasons that only
//! matter once wsgate has dropped privileges (`User`/`Group`):
//!
//! - a file the unprivileged process may not read (a key readable by root
//!   alone, as Apache's parent reads it) is asked of the privileged opener
//!   instead, through the fallback the process installs
//!   ([`set_fallback`]);
//! - the opener, parsing the same configuration as root, records which
//!   files it read ([`recording`]): those, and only those, it will hand
//!   over later.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Reads a whole file another way when this process may not.
pub type Fallback = dyn Fn(&Path) -> io::Result<Vec<u8>> + Send + Sync;

static FALLBACK: OnceLock<Box<Fallback>> = OnceLock::new();

thread_local! {
    static RECORD: RefCell<Option<Vec<PathBuf>>> = const { RefCell::new(None) };
}

/// Installs the way to read a file permission is denied for (once per
/// process; a second call is ignored).
pub fn set_fallback(f: Box<Fallback>) {
    let _ = FALLBACK.set(f);
}

/// Runs `f` and returns, with its result, every file read meanwhile on
/// this thread.
pub fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<PathBuf>) {
    RECORD.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let out = f();
    let paths = RECORD.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (out, paths)
}

/// The bytes of the file at `path`.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    RECORD.with(|r| {
        if let Some(paths) = r.borrow_mut().as_mut() {
            paths.push(path.to_path_buf());
        }
    });
    match std::fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match FALLBACK.get() {
            Some(fallback) => fallback(path).map_err(|asked| {
                io::Error::new(
                    e.kind(),
                    format!("{e} (and the privileged opener: {asked})"),
                )
            }),
            None => Err(e),
        },
        other => other,
    }
}

/// Whether `path` is a file; where this process may not look and a
/// fallback reads for it, the read says (the fallback is asked then).
pub fn is_file(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file(),
        Err(e) => e.kind() == io::ErrorKind::PermissionDenied && FALLBACK.get().is_some(),
    }
}

/// The text of the file at `path` (UTF-8, as `std::fs::read_to_string`).
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_each_file_read_on_this_thread_only_while_recording() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        read(&a).unwrap();
        let (text, paths) = recording(|| {
            let t = read_to_string(&b).unwrap();
            assert!(read(&dir.path().join("missing")).is_err());
            t
        });
        assert_eq!(text, "B");
        assert_eq!(paths, vec![b.clone(), dir.path().join("missing")]);
        read(&a).unwrap();
        assert_eq!(recording(|| ()).1, Vec::<PathBuf>::new());
    }
}
