//! Static files, as plain data: the core's `DocumentRoot`, `<Directory>`,
//! `<DirectoryMatch>`, `<Files>`, `<FilesMatch>` and `Options`, mod_alias's
//! `Alias`, `AliasMatch`, `Redirect` and `RedirectMatch`, mod_dir's
//! `DirectoryIndex`, `DirectorySlash` and `FallbackResource`, and
//! mod_mime's types. `route::files` maps a request onto them; the proxy's
//! file server does the file system's part.

use std::collections::HashMap;
use std::sync::Arc;

use regex::bytes::Regex;

use super::authz::{Auth, Policy, Require};
use super::Origin;

/// Apache's compiled-in `DocumentRoot` (Debian's and RHEL's builds): the
/// main server's when the configuration serves files but names none, and
/// the root per-directory rules see.
pub const DEFAULT_DOCUMENT_ROOT: &[u8] = b"/var/www/html";

/// A server's files (a vhost's merged over the main server's).
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// `DocumentRoot`, without a trailing slash; `None`: no files are
    /// served under `/` (wsgate has no compiled-in root, unlike Apache).
    pub document_root: Option<Vec<u8>>,
    /// `Alias` and `AliasMatch`, the vhost's before the main server's (as
    /// mod_alias merges them).
    pub aliases: Vec<Alias>,
    /// `Redirect…` and `RedirectMatch`, likewise.
    pub redirects: Vec<Redirect>,
    /// `<Directory>` and `<DirectoryMatch>`: plain ones by their number of
    /// path components (fewest first), then the regex ones in order
    /// (Apache's `ap_core_reorder_directories`).
    pub directories: Vec<Section>,
    /// `<Files>` and `<FilesMatch>`, in order.
    pub files: Vec<Section>,
    /// What is written outside any section: under every section.
    pub base: DirSettings,
    /// mod_mime's tables.
    pub mime: Arc<Mime>,
    /// `IndexIgnore` patterns: names a listing leaves out.
    pub index_ignore: Vec<String>,
    /// mod_negotiation's settings, for `Options MultiViews`.
    pub negotiation: Negotiation,
}

/// mod_negotiation's `LanguagePriority`, `ForceLanguagePriority` and
/// `CacheNegotiatedDocs` (a server's or virtual host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    pub language_priority: Vec<String>,
    /// [`Negotiation::PREFER`] and/or [`Negotiation::FALLBACK`]; 0: None.
    pub force_language_priority: u8,
    pub cache_negotiated_docs: bool,
}

impl Negotiation {
    pub const PREFER: u8 = 2;
    pub const FALLBACK: u8 = 4;
}

impl Default for Negotiation {
    fn default() -> Negotiation {
        Negotiation {
            language_priority: Vec::new(),
            force_language_priority: Negotiation::PREFER,
            cache_negotiated_docs: false,
        }
    }
}

impl Files {
    /// Whether anything here can serve a file or a redirect.
    pub fn any(&self) -> bool {
        self.document_root.is_some() || !self.aliases.is_empty() || !self.redirects.is_empty()
    }
}

/// One `Alias` or `AliasMatch`.
#[derive(Debug, Clone)]
pub struct Alias {
    pub matcher: AliasMatcher,
    /// The file system path (with `$N` for `AliasMatch`).
    pub real: Vec<u8>,
    pub origin: Origin,
    /// `ScriptAlias`/`ScriptAliasMatch`: what it maps to is a program,
    /// which wsgate never runs nor sends (a file there answers 500).
    pub script: bool,
}

#[derive(Debug, Clone)]
pub enum AliasMatcher {
    /// The url-path prefix; runs of slashes in a request match one here.
    Prefix(Vec<u8>),
    Regex(Regex),
}

/// One `Redirect`, `RedirectPermanent`, `RedirectTemp` or `RedirectMatch`.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub matcher: AliasMatcher,
    pub status: u16,
    /// The target url (with `$N` for `RedirectMatch`); `None` for a status
    /// outside 3xx (`gone`: 410).
    pub url: Option<String>,
    pub origin: Origin,
}

/// A `<Directory>`, `<DirectoryMatch>`, `<Files>` or `<FilesMatch>`.
#[derive(Debug, Clone)]
pub struct Section {
    pub matcher: SectionMatcher,
    pub settings: DirSettings,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum SectionMatcher {
    /// `<Directory path>` (with a trailing slash) or `<Files name>`:
    /// shell wildcards, `*` and `?` not matching `/`.
    Wildcard(Vec<u8>),
    /// `<Directory ~ re>`, `<DirectoryMatch re>`, `<Files ~ re>`,
    /// `<FilesMatch re>`.
    Regex(Regex),
}

/// What a section sets; `None`: what the sections before it say.
#[derive(Debug, Clone, Default)]
pub struct DirSettings {
    pub options: Option<OptionsChange>,
    /// `Require` lines: replace those of earlier sections (`AuthMerging
    /// Off`); a `<Location>`'s replace them in turn.
    pub require: Option<Require>,
    /// mod_access_compat's and the authentication modules' settings.
    pub auth: Option<Box<Auth>>,
    pub directory_index: Option<Vec<String>>,
    pub directory_slash: Option<bool>,
    /// `FallbackResource url`; `Some(None)`: `FallbackResource disabled`.
    pub fallback: Option<Option<String>>,
    /// `ErrorDocument` lines, in order (a later one for a status wins).
    pub error_docs: Vec<(u16, ErrorDoc)>,
    /// mod_rewrite's per-directory rules of a `<Directory>` section.
    pub rewrite: Option<Arc<super::rewrite::PerDir>>,
}

/// What `ErrorDocument` sends for a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDoc {
    /// A message: the body, as `text/html; charset=iso-8859-1`.
    Text(String),
    /// A local url-path (and query): a GET of it answers, internally.
    Local(String),
    /// A full URL: a 302 to it.
    Remote(String),
    /// `default`: the server's own page again.
    Default,
}

/// `Options`: a list without signs replaces what was set before; one with
/// `+`/`-` adds to and takes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionsChange {
    pub replace: Option<Opts>,
    pub add: Opts,
    pub remove: Opts,
}

impl OptionsChange {
    pub fn apply(&self, to: Opts) -> Opts {
        let base = self.replace.unwrap_or(to);
        Opts((base.0 | self.add.0) & !self.remove.0)
    }
}

/// The `Options` wsgate honours, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opts(pub u8);

impl Opts {
    pub const INDEXES: Opts = Opts(1);
    pub const FOLLOW_SYMLINKS: Opts = Opts(2);
    pub const SYMLINKS_IF_OWNER_MATCH: Opts = Opts(4);
    /// mod_negotiation's content negotiation of missing names.
    pub const MULTIVIEWS: Opts = Opts(8);
    /// Apache 2.4's default: `FollowSymlinks`.
    pub const DEFAULT: Opts = Opts::FOLLOW_SYMLINKS;

    pub fn has(self, o: Opts) -> bool {
        self.0 & o.0 != 0
    }
}

/// mod_mime's tables: `TypesConfig` then `AddType`, `AddCharset`,
/// `AddEncoding`, `AddLanguage` (extensions lower-case, without the dot).
#[derive(Debug, Clone, Default)]
pub struct Mime {
    pub types: HashMap<String, String>,
    pub charsets: HashMap<String, String>,
    pub encodings: HashMap<String, String>,
    pub languages: HashMap<String, String>,
    /// `AddHandler`: files wsgate refuses, naming the handler they need.
    pub handlers: HashMap<String, String>,
    /// `AddDefaultCharset`: added to `text/plain` and `text/html` answers.
    pub default_charset: Option<String>,
}

/// The settings for one file: the sections that match it, merged.
#[derive(Debug, Clone)]
pub struct Merged<'c> {
    pub options: Opts,
    pub require: Option<&'c Require>,
    pub auth: Policy<'c>,
    /// `None`: mod_dir's default, `index.html`.
    pub directory_index: Option<&'c [String]>,
    pub directory_slash: bool,
    pub fallback: Option<&'c str>,
}

impl Merged<'_> {
    /// The names `DirectoryIndex` tries, in order.
    pub fn index_names(&self) -> impl Iterator<Item = &str> {
        const DEFAULT: &[&str] = &["index.html"];
        let own = self.directory_index.map(|l| l.iter().map(String::as_str));
        let default = own.is_none().then(|| DEFAULT.iter().copied());
        own.into_iter()
            .flatten()
            .chain(default.into_iter().flatten())
    }
}
