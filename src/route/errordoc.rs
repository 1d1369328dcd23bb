//! Which `ErrorDocument` answers a status: the one of the request's
//! per-directory configuration, merged as Apache merges it — the
//! server's, the `<Directory>` and `<Files>` sections' of a file (a
//! proxied request has none: mod_proxy skips the directory walk), then
//! the matching `<Location>` sections', the last line for the status
//! winning. `ErrorDocument CODE default` gives back the server's own page.

use crate::config::model::files::ErrorDoc;
use crate::config::{LocationMatcher, Server};

use super::files::sections;
use super::prefix_match;

/// Where in the file system a request was when it failed: the directory
/// (with its trailing slash) and the name in it, if any.
pub type FileSpot<'a> = (&'a [u8], Option<&'a [u8]>);

/// The document for `status` of a request for url-path `path` (decoded),
/// or `None` for the server's own page.
pub fn lookup<'c>(
    server: &'c Server,
    path: &[u8],
    file: Option<FileSpot<'_>>,
    status: u16,
) -> Option<&'c ErrorDoc> {
    let mut found: Option<&'c ErrorDoc> = None;
    let mut take = |list: &'c [(u16, ErrorDoc)]| {
        if let Some((_, doc)) = list.iter().rev().find(|(s, _)| *s == status) {
            found = Some(doc);
        }
    };
    match file {
        Some((dir, name)) => {
            for s in sections(&server.files, dir, name) {
                take(&s.error_docs);
            }
        }
        None => take(&server.files.base.error_docs),
    }
    for loc in &server.locations {
        let hit = match &loc.matcher {
            LocationMatcher::Prefix(p) => prefix_match(p, path).is_some(),
            LocationMatcher::Regex(r) => r.is_match(path),
        };
        if hit {
            take(&loc.error_docs);
        }
    }
    found.filter(|d| **d != ErrorDoc::Default)
}

/// Whether any `ErrorDocument` is configured for this server (none: the
/// error paths never look).
pub fn any(server: &Server) -> bool {
    !server.files.base.error_docs.is_empty()
        || server
            .files
            .directories
            .iter()
            .chain(&server.files.files)
            .any(|s| !s.settings.error_docs.is_empty())
        || server.locations.iter().any(|l| !l.error_docs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> crate::config::Config {
        crate::config::from_str(
            &format!("Listen 127.0.0.1:0\nServerName main.test\n{text}"),
            "t.conf",
        )
        .expect("a valid configuration")
    }

    #[test]
    fn a_location_wins_over_a_directory_and_the_server() {
        let c = config(
            "ErrorDocument 404 /server.html\n<Directory /srv/sub>\nErrorDocument 404 \"in sub\"\n</Directory>\n<Location /sub/over>\nErrorDocument 404 \"loc wins\"\n</Location>\n<Location /sub/default>\nErrorDocument 404 default\n</Location>",
        );
        let s = &c.main;
        let text = |t: &str| Some(ErrorDoc::Text(t.into()));
        let local = Some(ErrorDoc::Local("/server.html".into()));
        // Proxied: no directory walk.
        assert_eq!(lookup(s, b"/sub/x", None, 404).cloned(), local);
        let spot = Some((&b"/srv/sub/"[..], Some(&b"x"[..])));
        assert_eq!(lookup(s, b"/sub/x", spot, 404).cloned(), text("in sub"));
        assert_eq!(
            lookup(s, b"/sub/over/x", spot, 404).cloned(),
            text("loc wins")
        );
        assert_eq!(lookup(s, b"/sub/default/x", spot, 404), None);
        assert_eq!(lookup(s, b"/sub/x", spot, 403), None);
        let other = Some((&b"/srv/other/"[..], None));
        assert_eq!(lookup(s, b"/x", other, 404).cloned(), local);
        assert!(any(s));
        assert!(!any(&config("").main));
    }

    #[test]
    fn a_vhost_inherits_the_main_servers_documents_per_status() {
        let c = config(
            "ErrorDocument 404 \"main 404\"\nErrorDocument 403 \"main 403\"\n<VirtualHost *:0>\nServerName v.test\nErrorDocument 404 \"vhost 404\"\n</VirtualHost>",
        );
        let v = &c.vhosts[0];
        assert_eq!(
            lookup(v, b"/", None, 404),
            Some(&ErrorDoc::Text("vhost 404".into()))
        );
        assert_eq!(
            lookup(v, b"/", None, 403),
            Some(&ErrorDoc::Text("main 403".into()))
        );
    }
}
