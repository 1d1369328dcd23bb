//! The read-time part of Apache's configuration: `Include`/`IncludeOptional`,
//! `Define`/`UnDefine`/`${VAR}`, `<IfDefine>`, `<IfModule>` and `ServerRoot`.
//! What comes out is the tree the modules see, with every directive still
//! pointing at the file and line it was written on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{unreadable, ConfigError, Origin, MAX_ERRORS};
use super::lexer::{self, Node};
use super::source;

/// Apache's own limit on nested includes; deeper means a loop.
const MAX_INCLUDE_DEPTH: usize = 128;

pub use super::directives::module_is_built_in;

pub struct Expander {
    defines: HashMap<String, String>,
    server_root: PathBuf,
    /// Lines that could not be expanded, kept to report with the
    /// directives' errors (see `config::build`).
    pub errors: Vec<ConfigError>,
    /// `LoadModule` lines of modules wsgate does not have (`foreign`).
    pub loaded_missing: Vec<(String, Origin)>,
    /// `<IfModule NAME>` blocks skipped because wsgate lacks NAME (the
    /// name without `mod_`, `.c` or `_module`): what they hold would apply
    /// in Apache with the module loaded.
    pub skipped_blocks: Vec<(String, Origin)>,
    /// `LoadModule unique_id_module`: every request gets `UNIQUE_ID`.
    pub unique_id: bool,
}

/// A module's name as `<IfModule>` and `LoadModule` write it (`mod_x.c`,
/// `mod_x`, `x_module`), bare (`x`).
pub fn bare_module(name: &str) -> &str {
    let n = name.strip_suffix(".c").unwrap_or(name);
    let n = n.strip_prefix("mod_").unwrap_or(n);
    n.strip_suffix("_module").unwrap_or(n)
}

impl Expander {
    /// `ServerRoot` as the files set it (where they were read from when
    /// none does): relative paths of every directive resolve against it.
    pub fn server_root(&self) -> &Path {
        &self.server_root
    }

    /// `defines` are the `-D NAME` given on the command line; relative
    /// `Include` paths resolve against `server_root` until `ServerRoot` says
    /// otherwise.
    pub fn new(defines: &[String], server_root: PathBuf) -> Self {
        Expander {
            defines: defines
                .iter()
                .map(|d| match d.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (d.clone(), String::new()),
                })
                .collect(),
            server_root,
            errors: Vec::new(),
            loaded_missing: Vec::new(),
            skipped_blocks: Vec::new(),
            unique_id: false,
        }
    }

    pub fn read_file(&mut self, path: &Path) -> Result<Vec<Node>, ConfigError> {
        let text = source::read_to_string(path).map_err(|e| unreadable(path, &e))?;
        self.expand_text(&text, path, 0)
    }

    pub fn expand_text(
        &mut self,
        text: &str,
        path: &Path,
        depth: usize,
    ) -> Result<Vec<Node>, ConfigError> {
        let nodes = lexer::parse(text, path)?;
        let mut out = Vec::with_capacity(nodes.len());
        self.expand(nodes, &mut out, depth)?;
        Ok(out)
    }

    /// Expands `nodes` into `out`; a node that fails is kept in
    /// [`Expander::errors`] and the rest are read on.
    fn expand(
        &mut self,
        nodes: Vec<Node>,
        out: &mut Vec<Node>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        for node in nodes {
            let read = self.expand_node(node, out, depth);
            self.go_on(read)?;
        }
        Ok(())
    }

    /// Keeps an error to report with the others; an `Err` once
    /// [`MAX_ERRORS`] are kept.
    fn go_on(&mut self, read: Result<(), ConfigError>) -> Result<(), ConfigError> {
        let Err(e) = read else { return Ok(()) };
        if self.errors.len() >= MAX_ERRORS {
            return Err(e);
        }
        self.errors.push(e);
        if self.errors.len() >= MAX_ERRORS {
            return Err(ConfigError::new(&self.errors[0].origin, "too many errors"));
        }
        Ok(())
    }

    fn expand_node(
        &mut self,
        mut node: Node,
        out: &mut Vec<Node>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        {
            node.args = node
                .args
                .iter()
                .map(|a| self.substitute(a, &node.origin))
                .collect::<Result<_, _>>()?;
            let lower = node.name.to_ascii_lowercase();
            match lower.as_str() {
                "define" => {
                    let (name, value) = match node.args.as_slice() {
                        [n] => (n.clone(), String::new()),
                        [n, v] => (n.clone(), v.clone()),
                        _ => return Err(arity(&node, "Define NAME [VALUE]")),
                    };
                    if name.contains(':') {
                        return Err(ConfigError::new(
                            &node.origin,
                            format!("Define: '{name}': variable names may not contain ':'"),
                        ));
                    }
                    self.defines.insert(name, value);
                }
                "undefine" => {
                    let [name] = node.args.as_slice() else {
                        return Err(arity(&node, "UnDefine NAME"));
                    };
                    self.defines.remove(name);
                }
                "serverroot" => {
                    let [root] = node.args.as_slice() else {
                        return Err(arity(&node, "ServerRoot DIRECTORY"));
                    };
                    let root = self.server_root.join(root);
                    if !root.is_dir() {
                        return Err(ConfigError::new(
                            &node.origin,
                            format!("ServerRoot '{}' is not a directory", root.display()),
                        ));
                    }
                    self.server_root = root;
                }
                "ifdefine" | "ifmodule" => {
                    let Some(children) = node.children.take() else {
                        return Err(ConfigError::new(
                            &node.origin,
                            format!(
                                "{} is a section: write <{}> … </{}>",
                                node.name, node.name, node.name
                            ),
                        ));
                    };
                    let [test] = node.args.as_slice() else {
                        return Err(arity(&node, &format!("<{} [!]NAME>", node.name)));
                    };
                    let (negate, name) = match test.strip_prefix('!') {
                        Some(rest) => (true, rest),
                        None => (false, test.as_str()),
                    };
                    let holds = if lower == "ifdefine" {
                        self.defines.contains_key(name)
                    } else {
                        module_is_built_in(name)
                    };
                    if holds != negate {
                        self.expand(children, out, depth)?;
                    } else if lower == "ifmodule" && !negate && !children.is_empty() {
                        self.skipped_blocks
                            .push((bare_module(name).to_string(), node.origin.clone()));
                    }
                }
                "include" | "includeoptional" => {
                    let optional = lower == "includeoptional";
                    let [pattern] = node.args.as_slice() else {
                        return Err(arity(
                            &node,
                            &format!("{} FILE-PATH|DIRECTORY-PATH|WILDCARD", node.name),
                        ));
                    };
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(ConfigError::new(
                            &node.origin,
                            format!("{} nested more than {MAX_INCLUDE_DEPTH} deep: does a file include itself?", node.name),
                        ));
                    }
                    for file in self.include_files(pattern, optional, &node.origin)? {
                        let text = source::read_to_string(&file).map_err(|e| {
                            ConfigError::new(
                                &node.origin,
                                format!("{}: cannot read '{}': {e}", node.name, file.display()),
                            )
                        })?;
                        let nodes = lexer::parse(&text, &file)?;
                        self.expand(nodes, out, depth + 1)?;
                    }
                }
                "loadmodule" => {
                    // The modules are built in; one wsgate does not have is
                    // one error at this line (`foreign`), naming its lines.
                    let [module, _file] = node.args.as_slice() else {
                        return Err(arity(&node, "LoadModule MODULE FILE"));
                    };
                    self.unique_id |= bare_module(module) == "unique_id";
                    if !module_is_built_in(module) {
                        self.loaded_missing
                            .push((module.clone(), node.origin.clone()));
                    }
                }
                _ => {
                    if let Some(children) = node.children.take() {
                        let mut inner = Vec::with_capacity(children.len());
                        self.expand(children, &mut inner, depth)?;
                        node.children = Some(inner);
                    }
                    out.push(node);
                }
            }
        }
        Ok(())
    }

    /// Replaces `${NAME}` with the value of a Define or, as Apache does when
    /// there is none, of the environment variable NAME.
    fn substitute(&self, arg: &str, origin: &Origin) -> Result<String, ConfigError> {
        if !arg.contains("${") {
            return Ok(arg.to_string());
        }
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = &after[..end];
            if name.contains(':') {
                // Not a variable (Apache refuses ':' in Define names) but
                // mod_rewrite's map lookup, which Apache leaves for
                // mod_rewrite: kept as written (RewriteRule and
                // RewriteCond check the map exists).
                out.push_str(&rest[start..start + 2 + end + 1]);
                rest = &after[end + 1..];
                continue;
            }
            let from_env = || std::env::var(name).ok();
            match self.defines.get(name).cloned().or_else(from_env) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(ConfigError::new(
                        origin,
                        format!("variable ${{{name}}} is not defined"),
                    )
                    .hint(format!(
                        "define it with 'Define {name} VALUE' or 'wsgate -D {name}=VALUE', or set it in wsgate's environment"
                    )))
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn include_files(
        &self,
        pattern: &str,
        optional: bool,
        origin: &Origin,
    ) -> Result<Vec<PathBuf>, ConfigError> {
        let path = self.server_root.join(pattern);
        let has_wildcard = pattern.contains(['*', '?', '[']);
        if !has_wildcard {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                    .map_err(|e| {
                        ConfigError::new(
                            origin,
                            format!("Include: cannot list '{}': {e}", path.display()),
                        )
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                return Ok(files);
            }
            if source::is_file(&path) {
                return Ok(vec![path]);
            }
            if optional {
                return Ok(Vec::new());
            }
            return Err(ConfigError::new(
                origin,
                format!("Include: '{}' does not exist", path.display()),
            )
            .hint("use IncludeOptional for a file that may be absent"));
        }
        let pattern_text = path.to_string_lossy();
        let mut files: Vec<PathBuf> = Vec::new();
        let found = glob::glob(&pattern_text)
            .map_err(|e| ConfigError::new(origin, format!("Include: bad wildcard pattern: {e}")))?;
        for entry in found {
            match entry {
                Ok(p) if p.is_file() => files.push(p),
                Ok(_) => {}
                // A folder that vanished meanwhile matches nothing; one
                // that cannot be listed is an error, never "no match" (a
                // reload as `User` would otherwise drop every site of a
                // folder only root may list).
                Err(e) if e.error().kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::new(
                        origin,
                        format!(
                            "Include: cannot list '{}' for the wildcard pattern: {}",
                            e.path().display(),
                            e.error()
                        ),
                    )
                    .hint("the folders an Include's wildcard names must be readable by the User wsgate serves as (a reload reads them again as that user), as Debian's and RHEL's are"))
                }
            }
        }
        files.sort();
        if files.is_empty() && !optional {
            return Err(ConfigError::new(
                origin,
                format!("Include: no file matches the wildcard pattern '{pattern_text}'"),
            )
            .hint("use IncludeOptional when no match is fine"));
        }
        Ok(files)
    }
}

fn arity(node: &Node, usage: &str) -> ConfigError {
    ConfigError::new(
        &node.origin,
        format!("{} takes other arguments: {usage}", node.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, defines: &[&str]) -> Result<Vec<Node>, ConfigError> {
        let defines: Vec<String> = defines.iter().map(|s| s.to_string()).collect();
        let mut ex = Expander::new(&defines, PathBuf::from("/nonexistent"));
        let nodes = ex.expand_text(text, Path::new("t.conf"), 0);
        checked(&mut ex, nodes)
    }

    /// What expanding gave, the errors it kept as an `Err`.
    fn checked(
        ex: &mut Expander,
        nodes: Result<Vec<Node>, ConfigError>,
    ) -> Result<Vec<Node>, ConfigError> {
        match ConfigError::gathered(std::mem::take(&mut ex.errors)) {
            Some(e) => Err(e),
            None => nodes,
        }
    }

    #[test]
    fn errors_are_gathered_and_the_lines_after_them_read() {
        let mut ex = Expander::new(&[], PathBuf::from("/nonexistent"));
        let nodes = ex
            .expand_text(
                "Listen ${a}\nInclude /nonexistent/x.conf\nDefine b 1\nListen ${b}\nListen ${c}\n",
                Path::new("t.conf"),
                0,
            )
            .unwrap();
        assert_eq!(nodes.len(), 1, "the line that could be read");
        assert_eq!(nodes[0].args, ["1"]);
        let lines: Vec<usize> = ex.errors.iter().map(|e| e.origin.line).collect();
        assert_eq!(lines, [1, 2, 5]);
    }

    #[test]
    fn ifdefine_and_variables() {
        let nodes = expand(
            "Define port 9000\n<IfDefine !NOPE>\nListen ${port}\n</IfDefine>\n<IfDefine NOPE>\nListen 1\n</IfDefine>\n",
            &[],
        )
        .unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].args, vec!["9000"]);
        let nodes = expand("<IfDefine X>\nListen 1\n</IfDefine>\n", &["X"]).unwrap();
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn ifmodule_is_true_only_for_built_in_modules() {
        let nodes = expand(
            "<IfModule mod_proxy.c>\nA\n</IfModule>\n<IfModule proxy_wstunnel_module>\nB\n</IfModule>\n<IfModule mod_php.c>\nC\n</IfModule>\n<IfModule !mod_php.c>\nD\n</IfModule>\n",
            &[],
        )
        .unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["A", "B", "D"]);
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let e = expand("Listen ${nope}\n", &[]).unwrap_err();
        assert!(e.message.contains("${nope}"), "{e}");
    }

    #[test]
    fn include_with_glob_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "Listen 1\n").unwrap();
        std::fs::write(dir.path().join("b.conf"), "Listen 2\n").unwrap();
        let mut ex = Expander::new(&[], dir.path().to_path_buf());
        let nodes = ex
            .expand_text(
                "Include *.conf\nIncludeOptional none/*.conf\n",
                Path::new("main.conf"),
                0,
            )
            .unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(nodes[1].origin.file.ends_with("b.conf"));
        let nodes = ex.expand_text("Include missing.conf\n", Path::new("main.conf"), 0);
        let e = checked(&mut ex, nodes).unwrap_err();
        assert_eq!(e.origin.line, 1);
    }

    #[test]
    fn include_loop_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("self.conf"), "Include self.conf\n").unwrap();
        let mut ex = Expander::new(&[], dir.path().to_path_buf());
        let nodes = ex.read_file(&dir.path().join("self.conf"));
        let e = checked(&mut ex, nodes).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
    }
}
