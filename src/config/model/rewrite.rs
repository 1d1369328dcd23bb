//! mod_rewrite's rules as data: patterns, conditions, substitutions and
//! flags. `config::rewrite` builds them, `crate::rewrite` runs them.

use regex::bytes::Regex;

use super::super::error::Origin;
use super::IntOp;

/// One `RewriteRule` with the `RewriteCond`s written before it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Regex,
    pub negate: bool,
    /// `None` for `-` (no substitution).
    pub substitution: Option<Template>,
    pub flags: RuleFlags,
    pub conditions: Vec<Cond>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct RuleFlags {
    pub proxy: bool,
    pub last: bool,
    pub end: bool,
    pub chain: bool,
    pub skip: usize,
    pub passthrough: bool,
    pub forbidden: bool,
    pub gone: bool,
    /// `R[=code]`.
    pub redirect: Option<u16>,
    pub qsappend: bool,
    pub qsdiscard: bool,
    pub qslast: bool,
    pub noescape: bool,
    /// `B`, `B=chars`, with `BNP` and `BCTLS`.
    pub escape_backrefs: Option<BackrefEscape>,
    pub unsafe_allow_3f: bool,
}

#[derive(Debug, Clone, Default)]
pub struct BackrefEscape {
    /// Only these characters (`B=chars`); all but alphanumerics and `_` when empty.
    pub only: Option<String>,
    pub no_plus: bool,
    pub controls_only: bool,
}

#[derive(Debug, Clone)]
pub struct Cond {
    pub test: Template,
    pub pattern: CondPattern,
    pub negate: bool,
    pub nocase: bool,
    pub or_next: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum CondPattern {
    Regex(Regex),
    /// `=`, `<`, `>`, `<=`, `>=`: string comparisons.
    Compare(std::cmp::Ordering, bool, String),
    /// `-eq`, `-lt`… : integer comparisons (`op`, or-equal).
    Int(IntOp, i64),
    /// `-f`, `-d`, `-s`, `-l`, `-x`: a file test (per-directory rules only).
    File(FileTest),
}

/// A `RewriteCond` file test, answered by the caller through
/// `rewrite::Vars::file_test` (the engine does no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTest {
    /// `-d`: a directory.
    Dir,
    /// `-f`: a regular file.
    File,
    /// `-s`: a regular file of more than zero bytes.
    NonEmpty,
    /// `-l`, `-L`, `-h`: a symbolic link.
    Symlink,
    /// `-x`: a file with an execute permission bit.
    Executable,
}

/// Per-directory rewriting: the `RewriteEngine`, `RewriteOptions`,
/// `RewriteBase` and rules of one `<Location>` or `<Directory>` (and
/// their regex forms), which Apache runs in its fixup phase on the
/// request's filename.
#[derive(Debug, Clone, Default)]
pub struct PerDir {
    /// `RewriteEngine`; `None`: not said here.
    pub engine: Option<bool>,
    /// `RewriteOptions Inherit` (`Some(false)`) or `InheritBefore`
    /// (`Some(true)`): the enclosing sections' rules come after (before)
    /// these.
    pub inherit: Option<bool>,
    /// `RewriteBase`: the url-path that replaces `directory` in a relative
    /// substitution's internal redirect.
    pub base: Option<Vec<u8>>,
    pub rules: Vec<Rule>,
    /// The section's path with a trailing slash (for a regex section, its
    /// pattern, as Apache takes it): stripped from the filename before
    /// matching, added back to a relative substitution.
    pub directory: Vec<u8>,
    /// Conditions read and not yet followed by their rule (while the
    /// section is read).
    pub pending: Vec<Cond>,
}

/// A substitution or test string: literal text, back-references and
/// variables.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
pub enum Piece {
    Literal(Vec<u8>),
    /// `$N`.
    RuleRef(usize),
    /// `%N`.
    CondRef(usize),
    Var(Var),
    /// `${name:key|default}`: a `RewriteMap` lookup.
    Map {
        name: String,
        map: std::sync::Arc<RewriteMap>,
        key: Template,
        default: Option<Template>,
    },
}

/// The server variables wsgate provides (S89).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `%{HTTP:Name}`, and the `HTTP_*` shorthands.
    Header(String),
    RequestUri,
    RequestMethod,
    RequestScheme,
    QueryString,
    TheRequest,
    RemoteAddr,
    RemotePort,
    ServerName,
    ServerPort,
    ServerAddr,
    ServerProtocol,
    Https,
    /// `REQUEST_FILENAME`, `SCRIPT_FILENAME`: the file the request maps
    /// to (per-directory); the url-path in server context, as in Apache's
    /// translate phase.
    RequestFilename,
    /// `DOCUMENT_ROOT`.
    DocumentRoot,
}

impl Var {
    /// The variable a `%{NAME}` names, if wsgate knows it.
    pub fn parse(name: &str) -> Option<Var> {
        if let Some(h) = name.strip_prefix("HTTP:") {
            return Some(Var::Header(h.to_string()));
        }
        Some(match name {
            "HTTP_HOST" => Var::Header("Host".into()),
            "HTTP_COOKIE" => Var::Header("Cookie".into()),
            "HTTP_USER_AGENT" => Var::Header("User-Agent".into()),
            "HTTP_REFERER" => Var::Header("Referer".into()),
            "HTTP_ACCEPT" => Var::Header("Accept".into()),
            "HTTP_FORWARDED" => Var::Header("Forwarded".into()),
            "HTTP_PROXY_CONNECTION" => Var::Header("Proxy-Connection".into()),
            "REQUEST_URI" => Var::RequestUri,
            "REQUEST_METHOD" => Var::RequestMethod,
            "REQUEST_SCHEME" => Var::RequestScheme,
            "QUERY_STRING" => Var::QueryString,
            "THE_REQUEST" => Var::TheRequest,
            "REMOTE_ADDR" => Var::RemoteAddr,
            "REMOTE_PORT" => Var::RemotePort,
            "SERVER_NAME" => Var::ServerName,
            "SERVER_PORT" => Var::ServerPort,
            "SERVER_ADDR" => Var::ServerAddr,
            "SERVER_PROTOCOL" => Var::ServerProtocol,
            "HTTPS" => Var::Https,
            "REQUEST_FILENAME" | "SCRIPT_FILENAME" => Var::RequestFilename,
            "DOCUMENT_ROOT" => Var::DocumentRoot,
            _ => return None,
        })
    }
}

/// The variable names accepted, for configuration errors.
pub const VARIABLES: &str = "HTTP:Name, HTTP_HOST, HTTP_COOKIE, HTTP_USER_AGENT, HTTP_REFERER, HTTP_ACCEPT, HTTP_FORWARDED, REQUEST_URI, REQUEST_METHOD, REQUEST_SCHEME, QUERY_STRING, THE_REQUEST, REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, SERVER_ADDR, SERVER_PROTOCOL, HTTPS, REQUEST_FILENAME, SCRIPT_FILENAME, DOCUMENT_ROOT";

/// A `RewriteMap`: what `${name:key|default}` looks up.
#[derive(Debug)]
pub enum RewriteMap {
    /// `txt:` (and `rnd:`, `random`: a value is `a|b|c`, one of which is
    /// chosen at random each time).
    Text { file: TextFile, random: bool },
    /// `int:`.
    Int(IntMap),
}

/// mod_rewrite's internal maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntMap {
    ToLower,
    ToUpper,
    /// `ap_escape_uri`.
    Escape,
    /// `ap_unescape_url`.
    Unescape,
}

/// A text map's file, as last read. The proxy looks at the file's
/// modification time at most once a second (`next_check`) and reads it
/// again when it changed; a failed read keeps the entries it had.
#[derive(Debug)]
pub struct TextFile {
    pub path: std::path::PathBuf,
    pub current: std::sync::RwLock<std::sync::Arc<TextEntries>>,
    /// Seconds since the epoch before which the file is not looked at.
    pub next_check: std::sync::atomic::AtomicU64,
    /// A failed read was logged, and none succeeded since.
    pub failed: std::sync::atomic::AtomicBool,
}

/// A text map's entries: for each key, the value of its first line.
#[derive(Debug, Default)]
pub struct TextEntries {
    pub modified: Option<std::time::SystemTime>,
    pub entries: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

impl TextEntries {
    /// Lines of `key value`, as Apache reads them: a line starting with
    /// `#` or white space is skipped, the value is the word after the
    /// key (what follows it is ignored), a key's first line counts.
    pub fn parse(text: &[u8], modified: Option<std::time::SystemTime>) -> TextEntries {
        let mut entries = std::collections::HashMap::new();
        for line in text.split(|&b| b == b'\n') {
            if line
                .first()
                .is_none_or(|&b| b == b'#' || b.is_ascii_whitespace())
            {
                continue;
            }
            let mut words = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            entries
                .entry(key.to_vec())
                .or_insert_with(|| value.to_vec());
        }
        TextEntries { modified, entries }
    }
}

impl TextFile {
    pub fn new(path: std::path::PathBuf, entries: TextEntries) -> TextFile {
        TextFile {
            path,
            current: std::sync::RwLock::new(std::sync::Arc::new(entries)),
            next_check: std::sync::atomic::AtomicU64::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The entries as last read.
    pub fn entries(&self) -> std::sync::Arc<TextEntries> {
        match self.current.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
