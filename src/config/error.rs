//! Configuration errors: every one names the file and line it came from.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a directive was read: the file and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configuration that cannot be used. Displays as `FILE:LINE: what is wrong`,
/// followed by a hint on its own line where one helps; with the errors
/// found after it in the same reading (`more`), each the same way, like a
/// compiler's.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
    pub hint: Option<String>,
    /// Errors found after this one, in the order of the files.
    pub more: Vec<ConfigError>,
}

/// At most this many errors are gathered in one reading.
pub const MAX_ERRORS: usize = 50;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in std::iter::once(self).chain(&self.more).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.origin, e.message)?;
            if let Some(h) = &e.hint {
                write!(f, "\n  hint: {h}")?;
            }
        }
        let n = 1 + self.more.len();
        if n >= MAX_ERRORS {
            write!(f, "\n{n} errors; reading stopped there")?;
        } else if n > 1 {
            write!(f, "\n{n} errors")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(origin: &Origin, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.clone(),
            message: message.into(),
            hint: None,
            more: Vec::new(),
        }
    }

    /// The first of `errors`, carrying the rest; `None` for none.
    pub fn gathered(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        if errors.is_empty() {
            return None;
        }
        let mut first = errors.remove(0);
        first.more = errors;
        Some(first)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A file that could not be read at all (no line to point at).
pub fn unreadable(path: &std::path::Path, err: &std::io::Error) -> ConfigError {
    ConfigError {
        origin: Origin {
            file: Arc::new(path.to_path_buf()),
            line: 0,
        },
        message: format!("cannot read configuration file: {err}"),
        hint: None,
        more: Vec::new(),
    }
}

/// The directive name closest to `word` among `known`, for "did you mean".
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (edit_distance(&word, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_a_misspelled_directive() {
        let known = ["ProxyPass", "ProxyPassMatch", "ProxyPreserveHost"];
        assert_eq!(nearest("ProxyPas", known), Some("ProxyPass"));
        assert_eq!(nearest("proxypassmatc", known), Some("ProxyPassMatch"));
        assert_eq!(nearest("Completely", known), None);
    }
}
