//! Static files' directives: the core's `DocumentRoot`, `<Directory>`,
//! `<DirectoryMatch>`, `<Files>`, `<FilesMatch>`, `Options`,
//! `AllowOverride`, `AddDefaultCharset`; mod_alias; mod_dir; mod_mime's
//! type tables; mod_autoindex's `IndexIgnore`.

use std::path::Path;
use std::sync::Arc;

use super::directives::{arg, dispatch, Scope};
use super::error::ConfigError;
use super::lexer::Node;
use super::model::files::{
    Alias, AliasMatcher, DirSettings, Files, Mime, Negotiation, OptionsChange, Opts, Redirect,
    Section, SectionMatcher,
};
use super::source;
use super::{proxy, values, At, Builder};

/// A server's file directives before the vhost is merged over the main
/// server.
#[derive(Debug, Default)]
pub(crate) struct FilesDraft {
    document_root: Option<Vec<u8>>,
    aliases: Vec<Alias>,
    redirects: Vec<Redirect>,
    directories: Vec<Section>,
    files: Vec<Section>,
    /// Written outside any section: under every section.
    pub(super) base: DirSettings,
    mime: MimeDraft,
    index_ignore: Vec<String>,
    negotiation: NegotiationDraft,
}

/// mod_negotiation's lines of one server: what it sets.
#[derive(Debug, Default)]
struct NegotiationDraft {
    language_priority: Option<Vec<String>>,
    force: Option<u8>,
    cache: Option<bool>,
}

impl NegotiationDraft {
    fn over(&self, base: &Negotiation) -> Negotiation {
        Negotiation {
            language_priority: self
                .language_priority
                .clone()
                .unwrap_or_else(|| base.language_priority.clone()),
            force_language_priority: self.force.unwrap_or(base.force_language_priority),
            cache_negotiated_docs: self.cache.unwrap_or(base.cache_negotiated_docs),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct MimeDraft {
    types: Vec<(String, String)>,
    charsets: Vec<(String, String)>,
    encodings: Vec<(String, String)>,
    languages: Vec<(String, String)>,
    handlers: Vec<(String, String)>,
    default_charset: Option<Option<String>>,
}

impl FilesDraft {
    /// The folders these directives serve files from: the `DocumentRoot`
    /// and the aliases' folders (an `AliasMatch`'s up to its first `$`).
    fn roots(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let aliases = self.aliases.iter().map(|a| {
            let end = a
                .real
                .iter()
                .position(|&c| c == b'$')
                .unwrap_or(a.real.len());
            let upto = a.real[..end]
                .iter()
                .rposition(|&c| c == b'/')
                .map_or(0, |i| i + 1);
            a.real[..if end == a.real.len() { end } else { upto }].to_vec()
        });
        self.document_root.iter().cloned().chain(aliases)
    }

    /// Whether these directives serve files: a `DocumentRoot`, an alias,
    /// or a `<Directory>`/`<Files>` section.
    pub(crate) fn names_files(&self) -> bool {
        self.document_root.is_some()
            || !self.aliases.is_empty()
            || !self.directories.is_empty()
            || !self.files.is_empty()
    }

    /// The main server's `DocumentRoot`, Apache's compiled-in one where
    /// none is written.
    pub(crate) fn default_root(&mut self) {
        self.document_root
            .get_or_insert_with(|| super::model::files::DEFAULT_DOCUMENT_ROOT.to_vec());
    }

    /// The main server's files.
    pub(crate) fn main(&self, types: &Arc<Mime>) -> Files {
        Files::default().merged_with(self, types)
    }

    /// A vhost's: its own over `main`'s (`main_draft` holds the main
    /// server's mime additions, applied under the vhost's).
    pub(crate) fn vhost(&self, main: &Files, main_draft: &FilesDraft, types: &Arc<Mime>) -> Files {
        let mut merged = main.clone();
        merged.document_root = self.document_root.clone().or(merged.document_root);
        // mod_alias: the vhost's aliases and redirects come first.
        merged.aliases = self.aliases.iter().chain(&main.aliases).cloned().collect();
        merged.redirects = self
            .redirects
            .iter()
            .chain(&main.redirects)
            .cloned()
            .collect();
        merged.directories.extend(self.directories.iter().cloned());
        sort_directories(&mut merged.directories);
        merged.files.extend(self.files.iter().cloned());
        merged.base = merge_settings(&main.base, &self.base);
        merged
            .index_ignore
            .extend(self.index_ignore.iter().cloned());
        merged.negotiation = self.negotiation.over(&main.negotiation);
        if !self.mime.is_empty() {
            let mut mime = MimeDraft::default();
            mime.absorb(&main_draft.mime);
            mime.absorb(&self.mime);
            merged.mime = Arc::new(mime.over(types));
        }
        merged
    }
}

impl Files {
    fn merged_with(mut self, draft: &FilesDraft, types: &Arc<Mime>) -> Files {
        self.document_root = draft.document_root.clone();
        self.aliases = draft.aliases.clone();
        self.redirects = draft.redirects.clone();
        self.directories = draft.directories.clone();
        sort_directories(&mut self.directories);
        self.files = draft.files.clone();
        self.base = draft.base.clone();
        self.index_ignore = draft.index_ignore.clone();
        self.negotiation = draft.negotiation.over(&Negotiation::default());
        self.mime = if draft.mime.is_empty() {
            types.clone()
        } else {
            Arc::new(draft.mime.over(types))
        };
        self
    }
}

impl MimeDraft {
    fn is_empty(&self) -> bool {
        self.types.is_empty()
            && self.charsets.is_empty()
            && self.encodings.is_empty()
            && self.languages.is_empty()
            && self.handlers.is_empty()
            && self.default_charset.is_none()
    }

    fn absorb(&mut self, other: &MimeDraft) {
        self.types.extend(other.types.iter().cloned());
        self.charsets.extend(other.charsets.iter().cloned());
        self.encodings.extend(other.encodings.iter().cloned());
        self.languages.extend(other.languages.iter().cloned());
        self.handlers.extend(other.handlers.iter().cloned());
        if other.default_charset.is_some() {
            self.default_charset = other.default_charset.clone();
        }
    }

    fn over(&self, base: &Mime) -> Mime {
        let mut m = base.clone();
        let put = |table: &mut std::collections::HashMap<String, String>,
                   pairs: &[(String, String)]| {
            for (ext, v) in pairs {
                table.insert(ext.clone(), v.clone());
            }
        };
        put(&mut m.types, &self.types);
        put(&mut m.charsets, &self.charsets);
        put(&mut m.encodings, &self.encodings);
        put(&mut m.languages, &self.languages);
        put(&mut m.handlers, &self.handlers);
        if let Some(c) = &self.default_charset {
            m.default_charset = c.clone();
        }
        m
    }
}

/// Apache's order of `<Directory>` sections: plain ones by their number
/// of components (stable), then the regex ones as written.
fn sort_directories(dirs: &mut [Section]) {
    dirs.sort_by_key(|s| match &s.matcher {
        SectionMatcher::Wildcard(p) => (false, p.iter().filter(|&&b| b == b'/').count()),
        SectionMatcher::Regex(_) => (true, 0),
    });
}

/// `later` over `earlier`.
pub(crate) fn merge_settings(earlier: &DirSettings, later: &DirSettings) -> DirSettings {
    DirSettings {
        options: match (earlier.options, later.options) {
            (Some(a), Some(b)) => Some(OptionsChange {
                replace: Some(b.apply(a.apply(Opts::DEFAULT))),
                add: Opts(0),
                remove: Opts(0),
            }),
            (a, b) => b.or(a),
        },
        require: later.require.clone().or_else(|| earlier.require.clone()),
        // Authentication is never written outside a section (where this
        // merges), so there is nothing to merge field by field.
        auth: later.auth.clone().or_else(|| earlier.auth.clone()),
        directory_index: later
            .directory_index
            .clone()
            .or_else(|| earlier.directory_index.clone()),
        directory_slash: later.directory_slash.or(earlier.directory_slash),
        fallback: later.fallback.clone().or_else(|| earlier.fallback.clone()),
        error_docs: earlier
            .error_docs
            .iter()
            .chain(&later.error_docs)
            .cloned()
            .collect(),
        rewrite: later.rewrite.clone().or_else(|| earlier.rewrite.clone()),
    }
}

/// Where a setting of a file directive goes: the section being read, or
/// the server's base.
fn settings<'a>(at: &'a mut At<'_>) -> &'a mut DirSettings {
    match at.section.as_deref_mut() {
        Some(s) => &mut s.settings,
        None => &mut at.server.files.base,
    }
}

pub(super) fn document_root(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let path = b.root.join(arg(node));
    if !path.is_dir() {
        // Apache warns (AH00112) and starts.
        b.warnings.push(format!(
            "{}: DocumentRoot [{}] does not exist or is not a directory",
            node.origin,
            path.display()
        ));
    }
    at.server.files.document_root = Some(trimmed_path(&path));
    Ok(())
}

/// A path's bytes without trailing slashes (`/` stays `/`… as empty).
fn trimmed_path(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    while bytes.last() == Some(&b'/') {
        bytes.pop();
    }
    bytes
}

pub(super) fn alias(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let regex = node.is("AliasMatch") || node.is("ScriptAliasMatch");
    let script = node.is("ScriptAlias") || node.is("ScriptAliasMatch");
    let [from, to] = node.args.as_slice() else {
        return Err(ConfigError::new(
            o,
            format!(
                "{} takes two arguments, a fakename and a realname",
                node.name
            ),
        ));
    };
    let matcher = if regex {
        AliasMatcher::Regex(proxy::compile_regex(o, from)?)
    } else {
        AliasMatcher::Prefix(from.as_bytes().to_vec())
    };
    let real = if regex {
        to.as_bytes().to_vec()
    } else {
        use std::os::unix::ffi::OsStrExt;
        b.root.join(to).as_os_str().as_bytes().to_vec()
    };
    if script {
        b.warnings.push(script_warning(node, &real, regex));
    }
    at.server.files.aliases.push(Alias {
        matcher,
        real,
        origin: o.clone(),
        script,
    });
    Ok(())
}

/// The warning a `ScriptAlias` line gives: what wsgate answers there,
/// and the programs its folder holds now.
fn script_warning(node: &Node, real: &[u8], regex: bool) -> String {
    let folder = String::from_utf8_lossy(real).into_owned();
    let mut out = format!(
        "{}: {} {}: wsgate runs no CGI programs (mod_cgi, mod_cgid): a request for a file under it answers 500 and is logged, never the file's bytes; a missing one 404 and a folder 403, as Apache",
        node.origin,
        node.name,
        node.args.join(" ")
    );
    if regex {
        return out;
    }
    let programs = programs_in(Path::new(&folder));
    if !programs.is_empty() {
        let more = programs.len().saturating_sub(8);
        let named: Vec<&str> = programs.iter().take(8).map(String::as_str).collect();
        out.push_str(&format!(
            "; {folder} holds programs Apache would run: {}{}",
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    out
}

/// The executable files in `dir` and its folders (a bounded look).
fn programs_in(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    walk_bounded(vec![dir.to_path_buf()], 10_000, |e| {
        let program = e
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if program {
            out.push(e.path().display().to_string());
        }
        true
    });
    out.sort();
    out
}

/// Visits the entries under `folders` (not following links to folders),
/// at most `limit` of them, while `visit` says go on. `false`: stopped
/// early (by `visit` or the limit).
fn walk_bounded(
    mut folders: Vec<std::path::PathBuf>,
    limit: usize,
    mut visit: impl FnMut(&std::fs::DirEntry) -> bool,
) -> bool {
    let mut seen = 0;
    while let Some(d) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > limit || !visit(&e) {
                return false;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                folders.push(e.path());
            }
        }
    }
    true
}

pub(super) fn redirect(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let lower = node.name.to_ascii_lowercase();
    let (fixed, regex) = match lower.as_str() {
        "redirectpermanent" => (Some(301), false),
        "redirecttemp" => (Some(302), false),
        "redirectmatch" => (None, true),
        _ => (None, false),
    };
    let mut args: &[String] = &node.args;
    let mut status = fixed.unwrap_or(302);
    if fixed.is_none() && args.len() > 1 {
        if let Some(s) = status_word(&args[0]) {
            status = s?;
            args = &args[1..];
        } else if args[0].bytes().all(|b| b.is_ascii_digit()) {
            status = args[0].parse().unwrap_or(0);
            if !(300..600).contains(&status) {
                return Err(ConfigError::new(
                    o,
                    format!("{}: invalid status {}", node.name, args[0]),
                ));
            }
            args = &args[1..];
        }
    }
    let redirecting = (300..400).contains(&status);
    let (from, url) = match (args, redirecting) {
        ([from, url], true) => (from, Some(url.clone())),
        ([from], false) => (from, None),
        ([_, _], false) => {
            return Err(ConfigError::new(
                o,
                format!("{}: a status of {status} takes no url", node.name),
            ))
        }
        _ => {
            return Err(
                ConfigError::new(o, format!("{} takes [status] URL-path URL", node.name))
                    .hint("e.g. Redirect permanent /old https://example.com/new"),
            )
        }
    };
    if let Some(u) = &url {
        if !u.starts_with('/') && !u.contains("://") {
            return Err(ConfigError::new(
                o,
                format!("{}: '{u}' is not a url or an absolute url-path", node.name),
            ));
        }
    }
    let matcher = if regex {
        AliasMatcher::Regex(proxy::compile_regex(o, from)?)
    } else {
        AliasMatcher::Prefix(from.as_bytes().to_vec())
    };
    at.server.files.redirects.push(Redirect {
        matcher,
        status,
        url,
        origin: o.clone(),
    });
    Ok(())
}

fn status_word(word: &str) -> Option<Result<u16, ConfigError>> {
    Some(Ok(match word.to_ascii_lowercase().as_str() {
        "permanent" => 301,
        "temp" => 302,
        "seeother" => 303,
        "gone" => 410,
        _ => return None,
    }))
}

/// `EnableSendfile On|Off`: read for its syntax only. Apache chooses
/// with it how a file's bytes reach the socket (the kernel's sendfile, or
/// reads and writes); wsgate always reads a file in 64 KiB pieces and
/// writes them, so the bytes served are the same either way.
pub(super) fn enable_sendfile(
    _: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    values::on_off(&node.origin, "EnableSendfile", arg(node)).map(|_| ())
}

/// `<Directory>`, `<DirectoryMatch>`, `<Files>`, `<FilesMatch>`.
pub(super) fn section(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let lower = node.name.to_ascii_lowercase();
    let directory = lower.starts_with("directory");
    let (regex, pattern) = match (lower.as_str(), node.args.as_slice()) {
        ("directory" | "files", [t, p]) if t == "~" => (true, p),
        ("directory" | "files", [p]) => (false, p),
        ("directorymatch" | "filesmatch", [p]) => (true, p),
        _ => {
            return Err(ConfigError::new(
                o,
                format!("<{}> takes one path, name or regex", node.name),
            ))
        }
    };
    let matcher = if regex {
        SectionMatcher::Regex(proxy::compile_regex(o, pattern)?)
    } else if directory {
        use std::os::unix::ffi::OsStrExt;
        let path = if pattern.starts_with('/') || pattern.contains(['*', '?', '[']) {
            Path::new(pattern.as_str()).to_path_buf()
        } else {
            b.root.join(pattern)
        };
        let mut bytes = path.as_os_str().as_bytes().to_vec();
        if bytes.last() != Some(&b'/') {
            bytes.push(b'/');
        }
        SectionMatcher::Wildcard(bytes)
    } else {
        SectionMatcher::Wildcard(pattern.as_bytes().to_vec())
    };
    let mut section = Section {
        matcher,
        settings: DirSettings::default(),
        origin: o.clone(),
    };
    {
        let mut inner = At {
            scope: if directory {
                Scope::Directory
            } else {
                Scope::Files
            },
            server: &mut *at.server,
            location: None,
            proxy: None,
            section: Some(&mut section),
        };
        for child in node.children.iter().flatten() {
            let read = dispatch(b, &mut inner, child);
            b.go_on(read)?;
        }
    }
    let files = &mut at.server.files;
    if directory {
        files.directories.push(section);
    } else {
        files.files.push(section);
    }
    Ok(())
}

pub(super) fn options(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let mut change = OptionsChange {
        replace: None,
        add: Opts(0),
        remove: Opts(0),
    };
    let mut plain = Opts(0);
    let (mut signed, mut unsigned) = (false, false);
    for word in &node.args {
        let (sign, name) = match word.as_bytes().first() {
            Some(b'+') => (Some(true), &word[1..]),
            Some(b'-') => (Some(false), &word[1..]),
            _ => (None, word.as_str()),
        };
        let bits = match name.to_ascii_lowercase().as_str() {
            "indexes" => Opts::INDEXES,
            "followsymlinks" => Opts::FOLLOW_SYMLINKS,
            "symlinksifownermatch" => Opts::SYMLINKS_IF_OWNER_MATCH,
            "none" if sign.is_none() => Opts(0),
            "all" if sign.is_none() => Opts(Opts::FOLLOW_SYMLINKS.0 | Opts::SYMLINKS_IF_OWNER_MATCH.0),
            "multiviews" => Opts::MULTIVIEWS,
            // Taking away what wsgate never does changes nothing.
            "execcgi" | "includes" | "includesnoexec" if sign == Some(false) => Opts(0),
            "execcgi" | "includes" | "includesnoexec" if nowhere(at.section.as_deref()) => {
                b.warnings.push(format!(
                    "{o}: Options {name}: read and ignored: no folder matches its <Directory> now, so nothing is served under it; wsgate runs no CGI programs nor server-side includes should one appear"
                ));
                Opts(0)
            }
            "execcgi" | "includes" | "includesnoexec" => {
                return Err(ConfigError::new(o, format!("Options {name}: wsgate runs no CGI programs or server-side includes"))
                    .hint(format!("take it out (or write -{name}); run such programs in a backend and ProxyPass to it")))
            }
            _ => {
                return Err(ConfigError::new(o, format!("Illegal option {name}"))
                    .hint("Indexes, FollowSymLinks, SymLinksIfOwnerMatch, MultiViews, None, All (and -ExecCGI, -Includes)"))
            }
        };
        match sign {
            Some(true) => {
                signed = true;
                change.add.0 |= bits.0;
                change.remove.0 &= !bits.0;
            }
            Some(false) => {
                signed = true;
                change.remove.0 |= bits.0;
                change.add.0 &= !bits.0;
            }
            None => {
                unsigned = true;
                plain.0 |= bits.0;
            }
        }
    }
    if signed && unsigned {
        // Apache 2.4 refuses the mix (AH00526's "Either all Options must
        // start with + or -, or no Option may.").
        return Err(ConfigError::new(
            o,
            "Either all Options must start with + or -, or no Option may.",
        ));
    }
    if unsigned {
        change.replace = Some(plain);
    }
    // A <Location>'s Options come after the file sections' (Apache's
    // merge order); only Indexes can matter there, as in Apache, whose
    // directory walk reads the symbolic-link options before it.
    let slot = match at.location.as_deref_mut() {
        Some(loc) => &mut loc.options,
        None => &mut settings(at).options,
    };
    *slot = Some(match *slot {
        Some(before) => OptionsChange {
            replace: Some(change.apply(before.apply(Opts::DEFAULT))),
            add: Opts(0),
            remove: Opts(0),
        },
        None => change,
    });
    Ok(())
}

/// `AllowOverride None` (and `AllowOverrideList None`): `.htaccess` files
/// are not read, as wsgate never reads them. Anything else only in a
/// `<Directory>` under which no `.htaccess` file exists now (with a
/// warning): one that exists is never ignored.
pub(super) fn allow_override(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let plain = match at.section.as_deref().map(|s| &s.matcher) {
        Some(SectionMatcher::Wildcard(p)) => Some(p.clone()),
        _ => None,
    };
    match (node.args.as_slice(), plain) {
        ([none], _) if none.eq_ignore_ascii_case("none") => Ok(()),
        (_, Some(pattern)) if no_htaccess(at.section.as_deref()) => {
            let warning = format!(
                "{}: {} {}: read and ignored: no .htaccess file exists now under the folders its <Directory> matches, and wsgate serves no file there; a .htaccess written there later would not be read",
                node.origin,
                node.name,
                node.args.join(" ")
            );
            let text = format!("{} {}", node.name, node.args.join(" "));
            b.unread_overrides
                .push((pattern, (node.origin.clone(), text), warning));
            Ok(())
        }
        _ => Err(ConfigError::new(
            &node.origin,
            format!("{} {}: wsgate reads no .htaccess files", node.name, node.args.join(" ")),
        )
        .hint("move the .htaccess files' directives into the configuration and write AllowOverride None: ignoring them could let in whom they keep out")),
    }
}

/// `AllowOverride` lines let pass for want of a `.htaccess` file: each is
/// an error if a folder it names is one wsgate serves files from (a
/// `DocumentRoot` or an alias's folder under or above it), since a
/// `.htaccess` written there later would be ignored; else its warning.
pub(crate) fn check_unread_overrides(b: &mut Builder) -> Result<(), ConfigError> {
    let drafts: Vec<&FilesDraft> = std::iter::once(&b.main.files)
        .chain(b.vhosts.iter().map(|v| &v.files))
        .collect();
    for (pattern, (origin, text), warning) in std::mem::take(&mut b.unread_overrides) {
        let served = drafts
            .iter()
            .flat_map(|d| d.roots())
            .find(|root| overlaps(&pattern, root));
        if let Some(root) = served {
            return Err(ConfigError::new(
                &origin,
                format!(
                    "{text}: wsgate reads no .htaccess files, and it serves files from {} there: one written later would be ignored",
                    String::from_utf8_lossy(&root)
                ),
            )
            .hint("move the .htaccess files' directives into the configuration and write AllowOverride None: ignoring them could let in whom they keep out"));
        }
        b.warnings.push(warning);
    }
    Ok(())
}

/// Whether a `<Directory>` pattern and a served folder share folders: one
/// is above the other, component by component (wildcards as fnmatch).
fn overlaps(pattern: &[u8], root: &[u8]) -> bool {
    let comps = |p: &'_ [u8]| -> Vec<Vec<u8>> {
        p.split(|&c| c == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let (p, r) = (comps(pattern), comps(root));
    p.iter().zip(&r).all(|(pc, rc)| {
        use std::os::unix::ffi::OsStrExt;
        fnmatch(pc, std::ffi::OsStr::from_bytes(rc))
    })
}

/// The folders a plain `<Directory>` section matches now (its wildcards
/// expanded); `None` for another section, or too many to look at.
fn section_folders(section: Option<&Section>) -> Option<Vec<std::path::PathBuf>> {
    let s = section?;
    let SectionMatcher::Wildcard(pattern) = &s.matcher else {
        return None;
    };
    if pattern.first() != Some(&b'/') {
        return None;
    }
    let mut found = vec![std::path::PathBuf::from("/")];
    for comp in pattern.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &found {
            if !comp.iter().any(|c| b"*?[\\".contains(c)) {
                let p = dir.join(String::from_utf8_lossy(comp).as_ref());
                if p.is_dir() {
                    next.push(p);
                }
                continue;
            }
            for e in std::fs::read_dir(dir).ok()?.flatten() {
                if fnmatch(comp, &e.file_name()) && e.path().is_dir() {
                    next.push(e.path());
                }
            }
            if next.len() > 1000 {
                return None;
            }
        }
        found = next;
    }
    Some(found)
}

/// A path component against a shell wildcard (`fnmatch`, as Apache's
/// `<Directory>` matching).
fn fnmatch(pattern: &[u8], name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(pattern),
        std::ffi::CString::new(name.as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both are NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), libc::FNM_PATHNAME) == 0 }
}

/// Whether no folder matches the section now (a `<Directory>` that
/// serves nothing).
fn nowhere(section: Option<&Section>) -> bool {
    section_folders(section).is_some_and(|f| f.is_empty())
}

/// Whether no `.htaccess` file exists under the section's folders (a
/// bounded look: too much to read counts as one existing).
fn no_htaccess(section: Option<&Section>) -> bool {
    let Some(folders) = section_folders(section) else {
        return false;
    };
    walk_bounded(folders, 20_000, |e| e.file_name() != ".htaccess")
}

pub(super) fn directory_index(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let names = match node.args.as_slice() {
        [] => {
            return Err(ConfigError::new(
                &node.origin,
                "DirectoryIndex takes at least one name",
            ))
        }
        [d] if d.eq_ignore_ascii_case("disabled") => Vec::new(),
        list => list.to_vec(),
    };
    settings(at).directory_index = Some(names);
    Ok(())
}

pub(super) fn directory_slash(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let on = values::on_off(&node.origin, "DirectorySlash", arg(node))?;
    settings(at).directory_slash = Some(on);
    Ok(())
}

pub(super) fn fallback_resource(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    let fallback = if v.eq_ignore_ascii_case("disabled") {
        None
    } else {
        Some(v.to_string())
    };
    settings(at).fallback = Some(fallback);
    Ok(())
}

pub(super) fn types_config(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let path = b.root.join(arg(node));
    let text = source::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            &node.origin,
            format!(
                "could not open mime types config file {}: {e}",
                path.display()
            ),
        )
    })?;
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let Some(ty) = words.next() else { continue };
        for ext in words {
            types.insert(ext.to_ascii_lowercase(), ty.to_string());
        }
    }
    b.types = Some(types);
    Ok(())
}

/// `AddType`, `AddCharset`, `AddEncoding`, `AddLanguage`.
pub(super) fn add_mime(_: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let [value, exts @ ..] = node.args.as_slice() else {
        return Err(ConfigError::new(
            &node.origin,
            format!("{} takes a value and extensions", node.name),
        ));
    };
    if exts.is_empty() {
        return Err(ConfigError::new(
            &node.origin,
            format!("{} takes a value and extensions", node.name),
        ));
    }
    let mime = &mut at.server.files.mime;
    let table = match node.name.to_ascii_lowercase().as_str() {
        "addtype" => &mut mime.types,
        "addcharset" => &mut mime.charsets,
        "addencoding" => &mut mime.encodings,
        "addhandler" => &mut mime.handlers,
        _ => &mut mime.languages,
    };
    // mod_mime lower-cases every value (and the extension, without its
    // dot): `AddCharset UTF-8 .utf8` gives `charset=utf-8`.
    let value = value.to_ascii_lowercase();
    for ext in exts {
        let ext = ext.strip_prefix('.').unwrap_or(ext).to_ascii_lowercase();
        table.push((ext, value.clone()));
    }
    Ok(())
}

/// mod_mime_magic's `MIMEMagicFile`: read, its guesses not made (one
/// warning says so).
pub(super) fn mime_magic_file(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let path = b.root.join(arg(node));
    b.warnings.push(format!(
        "{}: MIMEMagicFile {}: read and ignored: mod_mime_magic guesses a type from a file's first bytes only for a file mod_mime gives none (no known extension); wsgate sends such a file without a Content-Type, the same bytes to the same clients",
        node.origin,
        path.display()
    ));
    Ok(())
}

/// mod_userdir's `UserDir`: `disabled` (for everyone or some users) and
/// `enabled USER…` serve nothing while no line names a folder, as in
/// Apache 2.4, whose default names none; a folder is refused.
pub(super) fn user_dir(_: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    match node.args.first().map(|a| a.to_ascii_lowercase()) {
        Some(w) if w == "disabled" || w == "disable" => Ok(()),
        Some(w) if (w == "enabled" || w == "enable") && node.args.len() > 1 => Ok(()),
        _ => Err(ConfigError::new(
            &node.origin,
            format!("UserDir {}: wsgate does not serve users' home folders", node.args.join(" ")),
        )
        .hint("write UserDir disabled, or Alias /~NAME/ /home/NAME/public_html/ for the users whose folders are served")),
    }
}

/// `MultiviewsMatch NegotiatedOnly`, mod_mime's default; the others let
/// handlers' and filters' extensions (or any) into MultiViews' variants.
pub(super) fn multiviews_match(
    _: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    if arg(node).eq_ignore_ascii_case("NegotiatedOnly") {
        return Ok(());
    }
    Err(ConfigError::new(
        &node.origin,
        format!("MultiviewsMatch {}: wsgate does NegotiatedOnly only", arg(node)),
    )
    .hint("a file with a handler's or filter's extension is never served as it is by wsgate; take the line out"))
}

/// mod_negotiation's `LanguagePriority`, `ForceLanguagePriority` and
/// `CacheNegotiatedDocs`, for a server or virtual host.
pub(super) fn negotiation(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let draft = &mut at.server.files.negotiation;
    match node.name.to_ascii_lowercase().as_str() {
        "languagepriority" => draft
            .language_priority
            .get_or_insert_with(Vec::new)
            .extend(node.args.iter().cloned()),
        "forcelanguagepriority" => {
            let mut force = draft.force.filter(|&f| f != 0).unwrap_or(0);
            for w in &node.args {
                let bit = match w.to_ascii_lowercase().as_str() {
                    "none" => 0,
                    "prefer" => Negotiation::PREFER,
                    "fallback" => Negotiation::FALLBACK,
                    _ => {
                        return Err(ConfigError::new(
                            o,
                            format!("Invalid ForceLanguagePriority option {w}"),
                        ))
                    }
                };
                if (bit == 0 && force != 0) || (bit != 0 && draft.force == Some(0)) {
                    return Err(ConfigError::new(
                        o,
                        "Cannot combine ForceLanguagePriority options with None",
                    ));
                }
                force |= bit;
                draft.force = Some(force);
            }
        }
        _ => draft.cache = Some(values::on_off(o, "CacheNegotiatedDocs", arg(node))?),
    }
    Ok(())
}

pub(super) fn add_default_charset(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    let charset = if v.eq_ignore_ascii_case("off") {
        None
    } else if v.eq_ignore_ascii_case("on") {
        Some("iso-8859-1".to_string())
    } else {
        Some(v.to_string())
    };
    at.server.files.mime.default_charset = Some(charset);
    Ok(())
}

pub(super) fn index_ignore(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    at.server
        .files
        .index_ignore
        .extend(node.args.iter().cloned());
    Ok(())
}

/// The main server's table from `TypesConfig` (none written: empty, as
/// wsgate has no compiled-in path to read).
pub(crate) fn types_table(types: Option<std::collections::HashMap<String, String>>) -> Arc<Mime> {
    Arc::new(Mime {
        types: types.unwrap_or_default(),
        ..Mime::default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_override_overlaps_a_served_folder_above_or_below_it() {
        use super::overlaps;
        assert!(overlaps(b"/var/www", b"/var/www/html"));
        assert!(overlaps(b"/var/www/html/app", b"/var/www/html"));
        assert!(overlaps(
            b"/home/*/public_html",
            b"/home/alice/public_html/x"
        ));
        assert!(!overlaps(b"/home/*/public_html", b"/var/www/html"));
        assert!(!overlaps(b"/usr/share/httpd/icons", b"/var/www/cgi-bin/"));
    }
}
