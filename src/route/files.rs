//! Mapping a request onto the file system, without touching it: mod_alias's
//! redirects and aliases, then the `DocumentRoot` (Apache's translate-name
//! order after mod_rewrite and mod_proxy), and the settings of the
//! `<Directory>` and `<Files>` sections that apply to a path, merged in
//! Apache's order. The proxy's file server looks at the files.

use crate::config::model::files::{
    AliasMatcher, DirSettings, Files, Merged, Mime, Opts, SectionMatcher,
};
use crate::config::model::headers::Rules;

use super::path::{encode_path, RequestPath};
use super::{prefix_match, substitute};

/// A request mapped to a file system path.
#[derive(Debug)]
pub struct FileMapped<'c> {
    pub files: &'c Files,
    /// Absolute; made of the decoded url-path, which has no `.` or `..`
    /// segment and no NUL.
    pub filename: Vec<u8>,
    /// The decoded url-path it came from.
    pub uri: Vec<u8>,
    pub query: Option<String>,
    /// What the matching `<Location>` sections say of access, merged over
    /// the file sections' by the file server, which checks it.
    pub location_access: super::access::Access<'c>,
    pub location_rules: Vec<&'c Rules>,
}

/// What mod_alias and the core's `DocumentRoot` make of a url-path.
#[derive(Debug, PartialEq, Eq)]
pub enum Translated {
    /// A redirect; a `location` starting with `/` is made absolute with
    /// the request's own scheme and host.
    Redirect {
        status: u16,
        location: String,
    },
    /// `Redirect gone` and other statuses without a url.
    Status(u16),
    File(Vec<u8>),
}

/// Translates `path` (after the proxy found nothing to do with it).
pub fn translate(files: &Files, path: &RequestPath) -> Option<Translated> {
    let uri = &path.decoded[..];
    for r in &files.redirects {
        let Some((len, captures)) = matches(&r.matcher, uri) else {
            continue;
        };
        let Some(url) = &r.url else {
            return Some(Translated::Status(r.status));
        };
        let mut location = match &captures {
            Some(c) => String::from_utf8_lossy(&substitute(url.as_bytes(), Some(c))).into_owned(),
            None => {
                let mut l = url.clone();
                encode_path(&uri[len..], &mut l);
                l
            }
        };
        if let Some(q) = &path.query {
            if !location.contains('?') {
                location.push('?');
                location.push_str(q);
            }
        }
        return Some(Translated::Redirect {
            status: r.status,
            location,
        });
    }
    for a in &files.aliases {
        let Some((len, captures)) = matches(&a.matcher, uri) else {
            continue;
        };
        let filename = match &captures {
            Some(c) => substitute(&a.real, Some(c)),
            None => {
                let mut f = a.real.clone();
                f.extend_from_slice(&uri[len..]);
                f
            }
        };
        return Some(Translated::File(filename));
    }
    let root = files.document_root.as_ref()?;
    let mut filename = root.clone();
    filename.extend_from_slice(uri);
    Some(Translated::File(filename))
}

/// Whether `uri` is mapped by a `ScriptAlias` (the alias that
/// translates it is one).
pub fn under_script_alias(files: &Files, uri: &[u8]) -> bool {
    if files
        .redirects
        .iter()
        .any(|r| matches(&r.matcher, uri).is_some())
    {
        return false;
    }
    files
        .aliases
        .iter()
        .find(|a| matches(&a.matcher, uri).is_some())
        .is_some_and(|a| a.script)
}

/// Whether an alias or redirect matches: the length of the url-path it
/// covers (for a prefix), or the regex's captures.
fn matches<'u>(
    m: &AliasMatcher,
    uri: &'u [u8],
) -> Option<(usize, Option<regex::bytes::Captures<'u>>)> {
    match m {
        // mod_alias's match is ProxyPass's: slash runs, whole segments.
        AliasMatcher::Prefix(p) => prefix_match(p, uri).map(|l| (l, None)),
        AliasMatcher::Regex(r) => r.captures(uri).map(|c| (0, Some(c))),
    }
}

/// The settings for a file in directory `dir` (absolute, with its
/// trailing slash) named `name` (`None` for the directory itself): the
/// server's, then the matching `<Directory>` sections in Apache's order,
/// then the matching `<Files>` sections.
pub fn merged<'c>(files: &'c Files, dir: &[u8], name: Option<&[u8]>) -> Merged<'c> {
    let mut m = Merged {
        options: Opts::DEFAULT,
        require: None,
        auth: Default::default(),
        directory_index: None,
        directory_slash: true,
        fallback: None,
    };
    for s in sections(files, dir, name) {
        apply(&mut m, s);
    }
    m
}

/// `options` (a file's, from its sections) with the `Options` of the
/// `<Location>` sections matching url-path `uri` over them, as Apache
/// merges them last. The walk has read the symbolic-link options before.
pub fn with_location_options(server: &crate::config::Server, uri: &[u8], options: Opts) -> Opts {
    server
        .locations
        .iter()
        .filter(|loc| match &loc.matcher {
            crate::config::LocationMatcher::Prefix(p) => prefix_match(p, uri).is_some(),
            crate::config::LocationMatcher::Regex(r) => r.is_match(uri),
        })
        .filter_map(|loc| loc.options)
        .fold(options, |o, change| change.apply(o))
}

/// The settings that apply to `name` in directory `dir`, in Apache's
/// order: the base, the `<Directory>` sections, the `<Files>` sections.
pub fn sections<'c, 'a>(
    files: &'c Files,
    dir: &'a [u8],
    name: Option<&'a [u8]>,
) -> impl Iterator<Item = &'c DirSettings> + 'a
where
    'c: 'a,
{
    let dirs = files
        .directories
        .iter()
        .filter(move |s| directory_matches(&s.matcher, dir))
        .map(|s| &s.settings);
    let name = name.filter(|n| !n.is_empty());
    let named = files
        .files
        .iter()
        .filter(move |s| {
            name.is_some_and(|name| match &s.matcher {
                SectionMatcher::Wildcard(p) => wildcard(p, name),
                SectionMatcher::Regex(r) => r.is_match(name),
            })
        })
        .map(|s| &s.settings);
    std::iter::once(&files.base).chain(dirs).chain(named)
}

fn apply<'c>(m: &mut Merged<'c>, s: &'c DirSettings) {
    if let Some(o) = s.options {
        m.options = o.apply(m.options);
    }
    if let Some(r) = &s.require {
        m.require = Some(r);
    }
    if let Some(a) = &s.auth {
        m.auth.add(a);
    }
    if let Some(i) = &s.directory_index {
        m.directory_index = Some(i);
    }
    if let Some(d) = s.directory_slash {
        m.directory_slash = d;
    }
    if let Some(f) = &s.fallback {
        m.fallback = f.as_deref();
    }
}

/// Whether a `<Directory>` section covers directory `dir` (with its
/// trailing slash): its pattern matches `dir`'s first components, as many
/// as it has; a regex section is tried on `dir` itself.
pub(super) fn directory_matches(m: &SectionMatcher, dir: &[u8]) -> bool {
    match m {
        SectionMatcher::Regex(r) => r.is_match(dir),
        SectionMatcher::Wildcard(p) => {
            let slashes = p.iter().filter(|&&b| b == b'/').count();
            let Some(end) = dir
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'/')
                .nth(slashes - 1)
                .map(|(i, _)| i + 1)
            else {
                return false;
            };
            wildcard(p, &dir[..end])
        }
    }
}

/// Shell wildcards as `fnmatch` with `FNM_PATHNAME`: `*` and `?` never
/// match `/`; `[...]` classes (with `!` or `^`), `\` escapes.
pub fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern, text).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let c = text[t];
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') if c != b'/' => Some(1),
            Some(b'[') if c != b'/' => class(&pattern[p..], c),
            Some(b'\\') if pattern.get(p + 1) == Some(&c) => Some(2),
            Some(&b) if b == c && b != b'\\' => Some(1),
            _ => None,
        };
        match step {
            Some(len) => {
                p += len;
                t += 1;
            }
            None => match star {
                // A `*` may take one more byte, but never a `/`.
                Some((sp, st)) if text[st] != b'/' => {
                    star = Some((sp, st + 1));
                    p = sp;
                    t = st + 1;
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A `[...]` class at the start of `pattern` tested on `c`: the class's
/// length when it matches.
fn class(pattern: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&b) = pattern.get(i) {
        if b == b']' && !first {
            return (hit != negate).then_some(i + 1);
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let e = pattern[i + 2];
            hit |= (b..=e).contains(&c);
            i += 3;
        } else {
            hit |= b == c;
            i += 1;
        }
    }
    // No closing bracket: a literal `[`.
    (c == b'[').then_some(1)
}

/// Whether a listing leaves `name` out (`IndexIgnore`).
pub fn ignored_in_listing(files: &Files, name: &[u8]) -> bool {
    files
        .index_ignore
        .iter()
        .any(|p| wildcard(p.as_bytes(), name))
}

/// What mod_mime says of a file by its extensions: every extension
/// after the first dot counts, the last one of each kind winning.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileType<'c> {
    pub content_type: Option<&'c str>,
    pub charset: Option<&'c str>,
    pub encoding: Option<&'c str>,
    pub language: Option<&'c str>,
    pub handler: Option<&'c str>,
}

pub fn file_type<'c>(mime: &'c Mime, name: &[u8]) -> FileType<'c> {
    let mut t = FileType::default();
    let name = String::from_utf8_lossy(name);
    for ext in name.split('.').skip(1) {
        let ext = ext.to_ascii_lowercase();
        let get = |table: &'c std::collections::HashMap<String, String>| {
            table.get(&ext).map(String::as_str)
        };
        if let Some(v) = get(&mime.types) {
            t.content_type = Some(v);
        }
        if let Some(v) = get(&mime.charsets) {
            t.charset = Some(v);
        }
        if let Some(v) = get(&mime.encodings) {
            t.encoding = Some(v);
        }
        if let Some(v) = get(&mime.languages) {
            t.language = Some(v);
        }
        if let Some(v) = get(&mime.handlers) {
            t.handler = Some(v);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_prefixes_match_runs_of_slashes_and_whole_segments() {
        assert_eq!(prefix_match(b"/icons/", b"/icons/a.png"), Some(7));
        assert_eq!(prefix_match(b"/icons/", b"/icons"), None);
        assert_eq!(prefix_match(b"/icons", b"/icons"), Some(6));
        assert_eq!(prefix_match(b"/icons", b"/iconsx"), None);
        assert_eq!(prefix_match(b"/icons", b"/icons/x"), Some(6));
        assert_eq!(prefix_match(b"/a//b", b"/a/b/c"), Some(4));
    }

    #[test]
    fn wildcards_do_not_cross_slashes() {
        assert!(wildcard(b"/home/*/public_html/", b"/home/ann/public_html/"));
        assert!(!wildcard(
            b"/home/*/public_html/",
            b"/home/a/b/public_html/"
        ));
        assert!(wildcard(b".ht*", b".htaccess"));
        assert!(!wildcard(b".ht*", b"x.htaccess"));
        assert!(wildcard(b"*.p[hl]?", b"index.php"));
        assert!(!wildcard(b"*.p[!hl]?", b"index.php"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"a/c"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"[a-c]x", b"bx"));
    }

    #[test]
    fn directory_sections_match_their_number_of_components() {
        let m = SectionMatcher::Wildcard(b"/var/www/".to_vec());
        assert!(directory_matches(&m, b"/var/www/"));
        assert!(directory_matches(&m, b"/var/www/html/"));
        assert!(!directory_matches(&m, b"/var/"));
        assert!(!directory_matches(&m, b"/var/wwwx/"));
        let root = SectionMatcher::Wildcard(b"/".to_vec());
        assert!(directory_matches(&root, b"/etc/"));
    }

    #[test]
    fn extensions_give_type_charset_encoding_language() {
        let mut mime = Mime::default();
        mime.types.insert("html".into(), "text/html".into());
        mime.types.insert("gz".into(), "application/x-gzip".into());
        mime.encodings.insert("gz".into(), "x-gzip".into());
        mime.languages.insert("en".into(), "en".into());
        let t = file_type(&mime, b"index.html.en");
        assert_eq!(t.content_type, Some("text/html"));
        assert_eq!(t.language, Some("en"));
        let t = file_type(&mime, b"a.tar.GZ");
        assert_eq!(t.content_type, Some("application/x-gzip"));
        assert_eq!(t.encoding, Some("x-gzip"));
        assert_eq!(file_type(&mime, b"README"), FileType::default());
    }
}
