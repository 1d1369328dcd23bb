//! mod_rewrite per directory, as Apache's fixup phase runs it once the
//! request is mapped and its access checked: the rules of the matching
//! `<Directory>` sections (for a request mapped to the file system), then
//! of the matching `<Location>` sections, merged as mod_rewrite merges
//! them, run on the request's filename. Pure: file tests are answered from
//! what the caller looked up ([`FileFacts`]); a test on a path not looked
//! up yet is reported back ([`Fixup::NeedStats`]) for the caller to look
//! and ask again.

use std::cell::RefCell;

use crate::config::model::files::Opts;
use crate::config::model::rewrite::{FileTest, PerDir, Rule, Var};
use crate::config::{Config, Server};
use crate::rewrite::{self, PerDirContext, PerDirOutcome};

use super::files::{directory_matches, merged, with_location_options};
use super::{
    prefix_match, proxy_from_rewrite, settings_for, Backend, Decision, LocationMatcher, Request,
    RewriteTarget, RewriteVars,
};

pub use crate::config::model::files::DEFAULT_DOCUMENT_ROOT;

/// What the file system said of a path (`None` in a lookup: nothing
/// there, or it could not be looked at).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileFacts {
    pub file: bool,
    pub dir: bool,
    pub size: u64,
    pub symlink: bool,
    pub executable: bool,
}

/// What the per-directory rules made of a mapped request.
#[derive(Debug)]
pub enum Fixup<'c> {
    /// Nothing to do: the request goes on as mapped.
    Go,
    /// The rules answer or proxy instead.
    Answer(Decision<'c>),
    /// Process the request again for this target (an internal redirect).
    Internal(String),
    /// File tests need these paths looked at first.
    NeedStats(Vec<Vec<u8>>),
    /// `Options` allows no symbolic links, so no rules (Apache's AH00670).
    Forbidden,
}

/// Whether any section of `server` has per-directory rules.
pub fn any(server: &Server) -> bool {
    server.locations.iter().any(|l| l.rewrite.is_some())
        || server
            .files
            .directories
            .iter()
            .any(|d| d.settings.rewrite.is_some())
}

/// The per-directory configuration of the sections that apply, merged.
struct Merged<'c> {
    engine: bool,
    inherit: Option<bool>,
    base: Option<&'c [u8]>,
    directory: &'c [u8],
    rules: Vec<&'c Rule>,
}

impl<'c> Merged<'c> {
    /// `over` merged over what came before (Apache's
    /// `config_perdir_merge`).
    fn add(&mut self, over: &'c PerDir) {
        self.engine = over.engine.unwrap_or(self.engine);
        self.inherit = over.inherit.or(self.inherit);
        self.base = over.base.as_deref();
        self.directory = &over.directory;
        let own = over.rules.iter();
        self.rules = match self.inherit {
            Some(false) => own.chain(self.rules.iter().copied()).collect(),
            Some(true) => self.rules.iter().copied().chain(own).collect(),
            None => own.collect(),
        };
    }
}

/// Runs the per-directory rules for `req`, which routing mapped to
/// `decision`. `stats` holds what the caller has looked up; `ended`: an
/// `[END]` rule applied earlier in this request (no more rewriting).
/// Returns with the fixup whether an `[END]` rule applied now.
pub fn fixup<'c>(
    config: &'c Config,
    server: &'c Server,
    req: &Request<'_>,
    decision: &Decision<'c>,
    stats: &[(Vec<u8>, Option<FileFacts>)],
) -> (Fixup<'c>, bool) {
    let root = server
        .files
        .document_root
        .as_deref()
        .unwrap_or(DEFAULT_DOCUMENT_ROOT);
    let uri = &req.path.decoded[..];
    let (filename, proxied) = match decision {
        Decision::File(f) => (f.filename.clone(), false),
        Decision::NotFound => ([root, uri].concat(), false),
        Decision::Proxy(m) => {
            let url = match &m.backend {
                Backend::Single { url, .. } => url.origin(),
                Backend::Balanced(b) => format!("balancer://{}", config.balancer(*b).name),
            };
            (
                format!("proxy:{url}{}", m.path_and_query).into_bytes(),
                true,
            )
        }
        _ => return (Fixup::Go, false),
    };
    let mut m = Merged {
        engine: false,
        inherit: None,
        base: None,
        directory: b"",
        rules: Vec::new(),
    };
    let (dir, name) = split(&filename);
    if !proxied {
        for s in &server.files.directories {
            if let Some(p) = &s.settings.rewrite {
                if directory_matches(&s.matcher, &dir) {
                    m.add(p);
                }
            }
        }
    }
    for loc in &server.locations {
        let Some(p) = &loc.rewrite else { continue };
        let hit = match &loc.matcher {
            LocationMatcher::Prefix(p) => prefix_match(p, uri).is_some(),
            LocationMatcher::Regex(r) => r.is_match(uri),
        };
        if hit {
            m.add(p);
        }
    }
    if !m.engine || m.directory.is_empty() || m.rules.is_empty() {
        return (Fixup::Go, false);
    }
    // A request for the directory without its slash is left to mod_dir.
    if !proxied && m.directory.strip_suffix(b"/") == Some(&filename[..]) {
        return (Fixup::Go, false);
    }
    if !proxied {
        let options = merged(&server.files, &dir, name.as_deref()).options;
        let options = with_location_options(server, uri, options);
        if !options.has(Opts::FOLLOW_SYMLINKS) && !options.has(Opts::SYMLINKS_IF_OWNER_MATCH) {
            return (Fixup::Forbidden, false);
        }
    }
    let vars = PerDirVars {
        inner: RewriteVars { req, server },
        filename: &filename,
        root,
        stats,
        missing: RefCell::new(Vec::new()),
    };
    let cx = PerDirContext {
        directory: m.directory,
        base: m.base,
        document_root: root,
        proxied,
    };
    let (outcome, end) = rewrite::apply_perdir(&m.rules, &filename, &cx, &vars, &mut ());
    let missing = vars.missing.into_inner();
    if !missing.is_empty() {
        return (Fixup::NeedStats(missing), false);
    }
    let fixup = match outcome {
        PerDirOutcome::Declined | PerDirOutcome::Same => Fixup::Go,
        PerDirOutcome::Status(s) => Fixup::Answer(Decision::Status(s)),
        PerDirOutcome::Redirect { status, location } => {
            Fixup::Answer(Decision::Redirect { status, location })
        }
        PerDirOutcome::Proxy {
            url,
            query,
            noescape,
            rule,
        } => {
            let (settings, _, _) = settings_for(server, req.path, &mut ());
            let target = RewriteTarget {
                url: &url,
                query,
                noescape,
                origin: &m.rules[rule].origin,
            };
            Fixup::Answer(proxy_from_rewrite(config, server, settings, target))
        }
        PerDirOutcome::Internal { path, query } => {
            let mut target = String::with_capacity(path.len() + 16);
            super::encode_path(&path, &mut target);
            if let Some(q) = query {
                target.push('?');
                target.push_str(&q);
            }
            Fixup::Internal(target)
        }
    };
    (fixup, end)
}

/// A filename's directory (with its slash) and last component.
fn split(filename: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match filename.iter().rposition(|&b| b == b'/') {
        Some(i) => (filename[..=i].to_vec(), Some(filename[i + 1..].to_vec())),
        None => (b"/".to_vec(), Some(filename.to_vec())),
    }
}

/// The request as per-directory conditions read it.
struct PerDirVars<'a> {
    inner: RewriteVars<'a>,
    filename: &'a [u8],
    root: &'a [u8],
    stats: &'a [(Vec<u8>, Option<FileFacts>)],
    /// Paths a file test asked about that `stats` does not hold.
    missing: RefCell<Vec<Vec<u8>>>,
}

impl rewrite::Vars for PerDirVars<'_> {
    fn var(&self, var: &Var) -> String {
        match var {
            Var::RequestFilename => String::from_utf8_lossy(self.filename).into_owned(),
            Var::DocumentRoot => String::from_utf8_lossy(self.root).into_owned(),
            other => self.inner.var(other),
        }
    }

    fn query(&self) -> Option<&str> {
        self.inner.query()
    }

    fn self_authority(&self) -> String {
        self.inner.self_authority()
    }

    fn is_self(&self, authority: &str) -> bool {
        self.inner.is_self(authority)
    }

    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn file_test(&self, test: FileTest, path: &[u8]) -> bool {
        let Some((_, facts)) = self.stats.iter().find(|(p, _)| p == path) else {
            let mut missing = self.missing.borrow_mut();
            if !missing.iter().any(|p| p == path) {
                missing.push(path.to_vec());
            }
            return false;
        };
        let Some(f) = facts else { return false };
        match test {
            FileTest::Dir => f.dir,
            FileTest::File => f.file,
            FileTest::NonEmpty => f.file && f.size > 0,
            FileTest::Symlink => f.symlink,
            FileTest::Executable => f.executable,
        }
    }
}
