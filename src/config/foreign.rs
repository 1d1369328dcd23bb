//! Directives of an Apache tree that wsgate does not read as settings:
//! those it reads and ignores — with one warning that names them and says
//! why ignoring them cannot change who gets in or what is served — and
//! those of a module a `LoadModule` line names that wsgate does not have,
//! which make one error at that line instead of one per directive.

use super::apache_modules::{self, ApacheModule};
use super::error::{ConfigError, Origin};
use super::lexer::Node;

/// Directives read and ignored, by what they belong to, and why that is
/// safe in wsgate.
struct Ignored {
    /// As the warning names it.
    what: &'static str,
    /// Every directive of this Apache module, as `LoadModule` names it…
    module: Option<&'static str>,
    /// …or these.
    directives: &'static [&'static str],
    why: &'static str,
    /// Only in a `<VirtualHost>`: directives wsgate reads for the whole
    /// server, which Apache also takes per virtual host.
    in_vhost: bool,
}

const IGNORED: &[Ignored] = &[
    Ignored {
        what: "mod_autoindex",
        module: Some("autoindex_module"),
        directives: &[],
        why: "they dress directory listings (icons, descriptions, columns); wsgate's listings are plain, and it honours IndexIgnore",
        in_vhost: false,
    },
    Ignored {
        what: "mod_mime",
        module: Some("mime_module"),
        directives: &[],
        why: "wsgate reads TypesConfig, AddType, AddCharset, AddEncoding, AddLanguage and AddHandler (a file of a handler's extension is refused); these others name filters wsgate does not have or set what a request's path info does to the type (ModMimeUsePathInfo)",
        in_vhost: false,
    },
    Ignored {
        what: "the MPM",
        module: None,
        directives: &[
            "AsyncRequestWorkerFactor",
            "MaxConnectionsPerChild",
            "MaxMemFree",
            "MaxRequestsPerChild",
            "MaxSpareServers",
            "MaxSpareThreads",
            "MinSpareServers",
            "MinSpareThreads",
            "ServerLimit",
            "StartServers",
            "ThreadLimit",
            "ThreadsPerChild",
            "ThreadStackSize",
        ],
        why: "they size and recycle Apache's processes and threads; wsgate is one process with a thread per core (TOKIO_WORKER_THREADS), never recycled, and reads MaxRequestWorkers as its connection limit",
        in_vhost: false,
    },
    Ignored {
        what: "core",
        module: None,
        directives: &["DefaultRuntimeDir", "Mutex"],
        why: "they place Apache's runtime files and cross-process locks; wsgate keeps neither",
        in_vhost: false,
    },
    Ignored {
        what: "core",
        module: None,
        directives: &["AccessFileName"],
        why: "it names the per-directory files Apache reads beside the files it serves; wsgate reads none (AllowOverride other than None is an error)",
        in_vhost: false,
    },
    Ignored {
        what: "mod_ssl",
        module: None,
        directives: &[
            "SSLPassPhraseDialog",
            "SSLRandomSeed",
            "SSLSessionCache",
            "SSLSessionCacheTimeout",
        ],
        why: "entropy, key pass phrases and the session cache's store: wsgate's TLS library takes the system's randomness, reads keys without a pass phrase (an encrypted key is an error when it is loaded) and keeps resumable sessions in memory",
        in_vhost: false,
    },
    Ignored {
        what: "<VirtualHost>",
        module: None,
        directives: &["ErrorLog"],
        why: "wsgate writes one error log, the server's, and a virtual host's errors go there",
        in_vhost: true,
    },
    Ignored {
        what: "mod_deflate",
        module: None,
        directives: &["DeflateBufferSize", "DeflateMemLevel", "DeflateWindowSize", "DeflateFilterNote"],
        why: "zlib's buffer and window sizes and the compression ratio noted for logs: wsgate's gzip streams size their own buffers, and the answers are the same gzip either way",
        in_vhost: false,
    },
    Ignored {
        what: "mod_socache_shmcb",
        module: Some("socache_shmcb_module"),
        directives: &[],
        why: "a store for session caches, which wsgate keeps in memory",
        in_vhost: false,
    },
];

impl Ignored {
    fn covers(&self, directive: &str) -> bool {
        match self.module {
            Some(m) => apache_modules::by_name(m).is_some_and(|m| m.defines(directive)),
            None => self
                .directives
                .iter()
                .any(|d| d.eq_ignore_ascii_case(directive)),
        }
    }
}

/// Whether `<IfModule>` and `LoadModule` count a module as one wsgate has
/// because it reads and ignores all its directives (`bare`: the name
/// without `mod_`, `_module` or `.c`).
pub fn ignored_module(bare: &str) -> bool {
    IGNORED
        .iter()
        .filter_map(|i| i.module)
        .any(|m| m.strip_suffix("_module") == Some(bare))
}

/// What the foreign lines of one configuration came to.
#[derive(Debug, Default)]
pub struct Foreign {
    /// Ignored directives: (group in [`IGNORED`], name as written, lines).
    ignored: Vec<(usize, String, usize)>,
    /// `LoadModule` lines of modules wsgate does not have, with the lines
    /// that use their directives.
    missing: Vec<Missing>,
    /// `LoadModule unique_id_module` was read.
    pub unique_id: bool,
}

#[derive(Debug)]
struct Missing {
    name: String,
    origin: Origin,
    module: Option<&'static ApacheModule>,
    uses: Vec<(String, Origin)>,
}

/// Modules that change what Apache serves with no line of configuration:
/// loading one is an error even when nothing names it.
/// (mod_unique_id was one: wsgate has it now; mod_userdir 2.4's default
/// names no folder.)
const ACT_UNCONFIGURED: &[&str] = &[];

impl Foreign {
    /// `LoadModule NAME FILE` lines for modules wsgate does not have, and
    /// the `<IfModule>` blocks skipped for lack of a module (bare names):
    /// a block of a loaded module is a use of it.
    pub fn new(loaded_missing: Vec<(String, Origin)>, skipped: &[(String, Origin)]) -> Foreign {
        Foreign {
            unique_id: false,
            ignored: Vec::new(),
            missing: loaded_missing
                .into_iter()
                .map(|(name, origin)| {
                    let bare = super::include::bare_module(&name).to_string();
                    let uses = skipped
                        .iter()
                        .filter(|(m, _)| *m == bare)
                        .map(|(_, o)| ("<IfModule>".to_string(), o.clone()))
                        .collect();
                    Missing {
                        module: apache_modules::by_name(&name),
                        name,
                        origin,
                        uses,
                    }
                })
                .collect(),
        }
    }

    /// A missing module that nothing uses and that does nothing unless
    /// configured: read and ignored, named in the warning.
    fn unused(m: &Missing) -> bool {
        m.uses.is_empty() && !ACT_UNCONFIGURED.contains(&m.name.as_str())
    }

    /// Takes a line wsgate has no directive for, if it is one to ignore
    /// or belongs to a missing loaded module; `false`: an unknown line.
    pub fn take(&mut self, node: &Node) -> bool {
        let name = node.name.as_str();
        if let Some(m) = self.missing.iter_mut().find(|m| {
            m.module
                .is_some_and(|module| module.defines(name) || module.opens_section(name))
        }) {
            m.uses.push((name.to_string(), node.origin.clone()));
            return true;
        }
        if node.children.is_some() {
            return false;
        }
        self.ignore(node, false)
    }

    /// Takes a line of a directive wsgate reads for the whole server only,
    /// written in a `<VirtualHost>`, if it is one to ignore there.
    pub fn take_in_vhost(&mut self, node: &Node) -> bool {
        self.ignore(node, true)
    }

    fn ignore(&mut self, node: &Node, in_vhost: bool) -> bool {
        let name = node.name.as_str();
        let Some(group) = IGNORED
            .iter()
            .position(|i| i.in_vhost == in_vhost && i.covers(name))
        else {
            return false;
        };
        match self
            .ignored
            .iter_mut()
            .find(|(g, n, _)| *g == group && n.eq_ignore_ascii_case(name))
        {
            Some((_, _, count)) => *count += 1,
            None => self.ignored.push((group, name.to_string(), 1)),
        }
        true
    }

    /// The one warning for every ignored line, if any.
    pub fn warning(&self) -> Option<String> {
        let unused: Vec<&str> = self
            .missing
            .iter()
            .filter(|m| Foreign::unused(m))
            .map(|m| m.name.as_str())
            .collect();
        if self.ignored.is_empty() && unused.is_empty() {
            return None;
        }
        let mut out = String::from(
            "read and ignored (ignoring them cannot change who gets in or what is served):",
        );
        if !unused.is_empty() {
            out.push_str(&format!(
                "\n  LoadModule: {}: wsgate does not have these modules, and no line of this configuration uses them (no directive, no <IfModule> block), so Apache would do nothing with them that wsgate does not",
                unused.join(", ")
            ));
        }
        for (g, group) in IGNORED.iter().enumerate() {
            let names: Vec<String> = self
                .ignored
                .iter()
                .filter(|(i, _, _)| *i == g)
                .map(|(_, n, count)| match count {
                    1 => n.clone(),
                    c => format!("{n} ({c} lines)"),
                })
                .collect();
            if !names.is_empty() {
                out.push_str(&format!(
                    "\n  {}: {}: {}",
                    group.what,
                    names.join(", "),
                    group.why
                ));
            }
        }
        Some(out)
    }

    /// One error per `LoadModule` of a module wsgate does not have, naming
    /// where its directives are used.
    pub fn errors(&self) -> Vec<ConfigError> {
        self.missing
            .iter()
            .filter(|m| !Foreign::unused(m))
            .map(|m| {
                let file = m.module.map_or(m.name.as_str(), |module| module.file);
                let used = if m.uses.is_empty() {
                    String::new()
                } else {
                    let places: Vec<String> = m
                        .uses
                        .iter()
                        .take(12)
                        .map(|(n, o)| format!("{o} ({n})"))
                        .collect();
                    let more = m.uses.len().saturating_sub(12);
                    format!(
                        "; its directives are used at {}{}",
                        places.join(", "),
                        if more > 0 {
                            format!(" and {more} more lines")
                        } else {
                            String::new()
                        }
                    )
                };
                ConfigError::new(
                    &m.origin,
                    format!("LoadModule {}: wsgate does not have {file}{used}", m.name),
                )
                .hint(format!(
                    "wsgate cannot do what those lines ask: remove them with this line, or, in a file shared with Apache, keep this line inside <IfModule !wsgate_module> … </IfModule> and those lines inside <IfModule {}> … </IfModule>",
                    m.name
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node(name: &str, line: usize) -> Node {
        Node {
            name: name.to_string(),
            args: Vec::new(),
            children: None,
            origin: Origin {
                file: Arc::new("t.conf".into()),
                line,
            },
        }
    }

    #[test]
    fn ignored_directives_make_one_warning_by_group() {
        let mut f = Foreign::default();
        for (i, n) in ["AddIcon", "AddIcon", "StartServers", "AddType", "Mutex"]
            .iter()
            .enumerate()
        {
            assert!(f.take(&node(n, i + 1)), "{n}");
        }
        assert!(
            !f.take(&node("Timout", 9)),
            "an unknown directive is not ignored"
        );
        assert!(
            !f.take(&node("AuthType", 9)),
            "access control is never ignored"
        );
        let w = f.warning().unwrap();
        assert!(w.contains("mod_autoindex: AddIcon (2 lines): "), "{w}");
        assert!(w.contains("the MPM: StartServers: "), "{w}");
        assert!(w.contains("mod_mime: AddType: "), "{w}");
        assert!(w.contains("core: Mutex: "), "{w}");
    }

    #[test]
    fn a_missing_loaded_module_is_one_error_naming_its_lines() {
        let o = node("x", 3).origin;
        let mut f = Foreign::new(
            vec![
                ("php_module".into(), o.clone()),
                ("echo_module".into(), o.clone()),
                ("mime_magic_module".into(), o.clone()),
            ],
            &[("mime_magic".to_string(), node("x", 20).origin)],
        );
        assert!(f.take(&node("php_value", 10)));
        assert!(f.take(&node("php_admin_flag", 11)));
        assert!(!f.take(&node("WSGIDaemonProcess", 12)), "not loaded");
        let errors = f.errors();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        // php: its directives; mime_magic: an <IfModule> block Apache
        // would read. echo: nothing uses it.
        assert_eq!(errors.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("t.conf:10 (php_value), t.conf:11 (php_admin_flag)"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("t.conf:20 (<IfModule>)"),
            "{messages:?}"
        );
        let w = f.warning().unwrap();
        assert!(w.contains("\n  LoadModule: echo_module: "), "{w}");
    }
}
