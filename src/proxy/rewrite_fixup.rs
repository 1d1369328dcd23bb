//! mod_rewrite's per-directory rules in the request's path: routing's
//! pure [`route::perdir::fixup`] decides, and this looks at the file
//! system for its file tests (off the runtime's threads) and asks again.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::header_rules::ConnFacts;
use crate::config::model::rewrite::{RewriteMap, TextEntries, TextFile};
use crate::config::{Config, Server};
use crate::http::RequestHead;
use crate::route::perdir::{self, FileFacts, Fixup};
use crate::route::{self, Decision, RequestPath};

/// Apache's `LimitInternalRecursion` default: internal redirects one
/// request may take before a 500.
pub const MAX_INTERNAL_REDIRECTS: u8 = 10;

/// What becomes of a mapped request after the per-directory rules.
pub enum Fixed<'c> {
    Go(Decision<'c>),
    /// An internal redirect to this target.
    Again(String),
    /// `Options` forbids the rules (Apache's AH00670): 403.
    Forbidden,
}

/// Rewriting state across one request's internal redirects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rounds {
    /// Internal redirects taken so far.
    pub redirects: u8,
    /// An `[END]` rule applied: no rewriting any more.
    pub ended: bool,
}

/// Runs the per-directory rules on `decision`.
pub async fn fixup<'c>(
    (config, server): (&'c Config, &'c Server),
    (head, path, facts): (&RequestHead, &RequestPath, ConnFacts),
    decision: Decision<'c>,
    rounds: &mut Rounds,
) -> Fixed<'c> {
    if rounds.ended {
        return Fixed::Go(decision);
    }
    let mut stats: Vec<(Vec<u8>, Option<FileFacts>)> = Vec::new();
    // Each round looks up at least one path more; rules test few.
    for _ in 0..32 {
        let (fixup, end) = {
            let req = route::Request::from_head(head, path, facts.peer, facts.local, facts.https);
            perdir::fixup(config, server, &req, &decision, &stats)
        };
        rounds.ended |= end;
        match fixup {
            Fixup::NeedStats(paths) => {
                let found = tokio::task::spawn_blocking(move || {
                    paths
                        .into_iter()
                        .map(|p| {
                            let facts = look(&p);
                            (p, facts)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                if found.is_empty() {
                    break;
                }
                stats.extend(found);
            }
            Fixup::Go => return Fixed::Go(decision),
            Fixup::Answer(d) => return Fixed::Go(d),
            Fixup::Internal(target) => return Fixed::Again(target),
            Fixup::Forbidden => {
                tracing::error!(peer = %facts.peer, "AH00670: Options FollowSymLinks and SymLinksIfOwnerMatch are both off, so the RewriteRule directive is also forbidden due to its similar ability to circumvent directory restrictions : {}", head.target);
                return Fixed::Forbidden;
            }
        }
    }
    Fixed::Go(Decision::Status(500))
}

/// Looks at the text RewriteMaps' files, each at most once a second, and
/// reads again one whose modification time changed (Apache looks at each
/// lookup). A failed read keeps the entries read before and is logged
/// once, until a read succeeds again.
pub async fn refresh_maps(config: &Config) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for map in &config.text_maps {
        let RewriteMap::Text { file, .. } = &**map else {
            continue;
        };
        let due = file.next_check.load(Ordering::Relaxed);
        if now < due
            || file
                .next_check
                .compare_exchange(due, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let map = map.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let RewriteMap::Text { file, .. } = &*map {
                reread(file);
            }
        })
        .await;
    }
}

/// Reads a text map's file again if its modification time changed.
fn reread(file: &TextFile) {
    let modified = std::fs::metadata(&file.path).and_then(|m| m.modified());
    let old = file.entries();
    let read = match modified {
        Ok(m) if Some(m) == old.modified => return,
        Ok(m) => crate::config::source::read(&file.path).map(|text| (text, m)),
        Err(e) => Err(e),
    };
    match read {
        Ok((text, m)) => {
            let entries = Arc::new(TextEntries::parse(&text, Some(m)));
            match file.current.write() {
                Ok(mut current) => *current = entries,
                Err(poisoned) => *poisoned.into_inner() = entries,
            }
            if file.failed.swap(false, Ordering::Relaxed) {
                tracing::warn!("RewriteMap file {} is readable again", file.path.display());
            }
        }
        Err(e) => {
            if !file.failed.swap(true, Ordering::Relaxed) {
                tracing::error!("AH00655: mod_rewrite: can't open text RewriteMap file {}: {e}; the entries read before stay in use", file.path.display());
            }
        }
    }
}

/// What a file test needs to know of `path` (`stat`, and `lstat` for a
/// symbolic link).
fn look(path: &[u8]) -> Option<FileFacts> {
    let path = Path::new(OsStr::from_bytes(path));
    let link = std::fs::symlink_metadata(path).ok();
    let meta = std::fs::metadata(path).ok();
    if link.is_none() && meta.is_none() {
        return None;
    }
    Some(FileFacts {
        file: meta.as_ref().is_some_and(|m| m.is_file()),
        dir: meta.as_ref().is_some_and(|m| m.is_dir()),
        size: meta.as_ref().map_or(0, |m| m.len()),
        symlink: link.is_some_and(|m| m.file_type().is_symlink()),
        executable: meta.is_some_and(|m| m.mode() & 0o111 != 0),
    })
}
