//! Apache's configuration file syntax, and nothing of its meaning.
//!
//! One directive per line, `\` at the very end of a line continues it, a line
//! whose first non-blank character is `#` is a comment, arguments are separated
//! by blanks and may be quoted with `"` or `'` (a backslash escapes the quote
//! character inside), and `<Name args>` … `</Name>` enclose a section. This is
//! what `ap_build_config` and `ap_getword_conf` accept.

use std::path::Path;
use std::sync::Arc;

use super::error::{ConfigError, Origin};

/// A directive or a section as written, with where it was written.
#[derive(Clone, Debug)]
pub struct Node {
    /// The name as spelled in the file (compare case-insensitively).
    pub name: String,
    pub args: Vec<String>,
    pub origin: Origin,
    /// `Some` for a `<Section>`, holding what it encloses.
    pub children: Option<Vec<Node>>,
}

impl Node {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Splits `text` (read from `file`) into a tree of directives and sections.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Node>, ConfigError> {
    // A byte-order mark, as some Windows editors write: Apache skips it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let file = Arc::new(file.to_path_buf());
    // Each frame is an open section: its node (None for the file itself) and
    // the directives read inside it so far.
    let mut stack: Vec<(Option<Node>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut lines = text.split('\n').enumerate().peekable();

    while let Some((index, raw)) = lines.next() {
        let origin = Origin {
            file: file.clone(),
            line: index + 1,
        };
        let mut line = raw.strip_suffix('\r').unwrap_or(raw).to_string();
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next.strip_suffix('\r').unwrap_or(next)),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }

        if let Some(rest) = trimmed.strip_prefix("</") {
            let name = rest
                .strip_suffix('>')
                .ok_or_else(|| {
                    ConfigError::new(&origin, format!("'{trimmed}' is missing its closing '>'"))
                })?
                .trim();
            let (open, children) = stack.pop().expect("the file frame is never popped here");
            let Some(mut open) = open else {
                return Err(ConfigError::new(
                    &origin,
                    format!("</{name}> without a matching <{name}> section"),
                ));
            };
            if !open.name.eq_ignore_ascii_case(name) {
                return Err(ConfigError::new(
                    &origin,
                    format!(
                        "</{name}> closes <{}> opened at line {}",
                        open.name, open.origin.line
                    ),
                )
                .hint(format!("close it with </{}> first", open.name)));
            }
            open.children = Some(children);
            stack
                .last_mut()
                .expect("a section always has a parent frame")
                .1
                .push(open);
            continue;
        }

        if let Some(rest) = trimmed.strip_prefix('<') {
            let inner = rest.strip_suffix('>').ok_or_else(|| {
                ConfigError::new(
                    &origin,
                    format!("section '{trimmed}' is missing its closing '>'"),
                )
            })?;
            let mut words = split_args(inner, &origin)?;
            if words.is_empty() {
                return Err(ConfigError::new(&origin, "empty section name '<>'"));
            }
            let name = words.remove(0);
            stack.push((
                Some(Node {
                    name,
                    args: words,
                    origin,
                    children: None,
                }),
                Vec::new(),
            ));
            continue;
        }

        let mut words = split_args(trimmed, &origin)?;
        let name = words.remove(0);
        stack
            .last_mut()
            .expect("the file frame is always there")
            .1
            .push(Node {
                name,
                args: words,
                origin,
                children: None,
            });
    }

    let (open, nodes) = stack.pop().expect("the file frame is always there");
    if let Some(open) = open {
        return Err(
            ConfigError::new(&open.origin, format!("<{}> is never closed", open.name))
                .hint(format!("add </{}> after its last directive", open.name)),
        );
    }
    Ok(nodes)
}

/// Splits one line into words as `ap_getword_conf` does.
pub fn split_args(line: &str, origin: &Origin) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(ConfigError::new(
                    origin,
                    format!("unterminated quoted argument {first}{word}"),
                )
                .hint(format!("add the closing {first}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> Result<Vec<Node>, ConfigError> {
        parse(text, Path::new("t.conf"))
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        let nodes = lex("\u{feff}Listen 8080\n").unwrap();
        assert_eq!(
            (nodes[0].name.as_str(), nodes[0].origin.line),
            ("Listen", 1)
        );
    }

    #[test]
    fn quotes_comments_and_continuations() {
        let nodes = lex("# comment\n  ProxyPass \"/a b/\" 'ws://h/' \\\n   timeout=3\n").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "ProxyPass");
        assert_eq!(nodes[0].args, vec!["/a b/", "ws://h/", "timeout=3"]);
        assert_eq!(nodes[0].origin.line, 2);
    }

    #[test]
    fn escaped_quote_inside_quotes() {
        let nodes = lex(r#"X "a \"q\" b" c\d"#).unwrap();
        assert_eq!(nodes[0].args, vec![r#"a "q" b"#, r"c\d"]);
    }

    #[test]
    fn sections_nest() {
        let nodes = lex(
            "<VirtualHost *:80>\n<Location /x>\nProxyPass ws://h/\n</Location>\n</virtualhost>\n",
        )
        .unwrap();
        let vhost = &nodes[0];
        assert!(vhost.is("virtualhost"));
        assert_eq!(vhost.args, vec!["*:80"]);
        let loc = &vhost.children.as_ref().unwrap()[0];
        assert_eq!(loc.children.as_ref().unwrap()[0].args, vec!["ws://h/"]);
    }

    #[test]
    fn unclosed_and_mismatched_sections_are_errors() {
        let e = lex("<Location /x>\nProxyPass ws://h/\n").unwrap_err();
        assert_eq!(e.origin.line, 1);
        assert!(e.message.contains("never closed"), "{e}");
        let e = lex("<Location /x>\n</VirtualHost>\n").unwrap_err();
        assert_eq!(e.origin.line, 2);
        let e = lex("</Location>\n").unwrap_err();
        assert!(e.message.contains("without a matching"), "{e}");
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = lex("ProxyPass \"/x ws://h/\n").unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
    }
}
