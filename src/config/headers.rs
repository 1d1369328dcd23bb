//! mod_headers (`Header`, `RequestHeader`), mod_env (`SetEnv`, `UnsetEnv`)
//! and mod_setenvif (`SetEnvIf`, `SetEnvIfNoCase`, `BrowserMatch`,
//! `BrowserMatchNoCase`).

use regex::bytes::RegexBuilder as BytesRegexBuilder;
use regex::RegexBuilder;

use super::directives::Scope;
use super::error::{ConfigError, Origin};
use super::expr;
use super::lexer::Node;
use super::{At, Builder};

/// `Header`, `RequestHeader`, `SetEnv`, `UnsetEnv`, `SetEnvIf`,
/// `SetEnvIfNoCase`: the rules of the context they are written in (a
/// `<Proxy>` section's apply to requests proxied to its balancer).
pub(super) fn header_rule(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let lower = node.name.to_ascii_lowercase();
    match (at.scope, at.location.as_deref_mut(), at.proxy) {
        (Scope::Proxy, _, Some(url)) => {
            let draft = b.balancers.get(url, &node.origin)?.draft;
            draft.rules.directive(node, &lower, true)
        }
        (_, Some(loc), _) => loc.rules.directive(node, &lower, true),
        _ => at.server.rules.directive(node, &lower, false),
    }
}
/// mod_filter's `AddOutputFilterByType` and the core's `SetOutputFilter`:
/// the DEFLATE filter (the one output filter wsgate has) for some media
/// types or all, in the context they are written in.
pub(super) fn output_filter(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let by_type = node.is("AddOutputFilterByType");
    let (filters, types) = match (node.args.as_slice(), by_type) {
        ([f, types @ ..], true) if !types.is_empty() => (f, types),
        ([f], false) => (f, &[][..]),
        _ => {
            return Err(ConfigError::new(
                o,
                format!(
                    "{} takes {}",
                    node.name,
                    if by_type {
                        "FILTER[;FILTER…] MEDIA-TYPE …"
                    } else {
                        "FILTER[;FILTER…]"
                    }
                ),
            ))
        }
    };
    for f in filters.split(';').filter(|f| !f.is_empty()) {
        if !f.eq_ignore_ascii_case("DEFLATE") {
            return Err(ConfigError::new(o, format!("{}: wsgate has no {f} filter", node.name))
                .hint(format!("DEFLATE is the one output filter wsgate has; keep this line for Apache only inside <IfModule> of the module that provides {f}")));
        }
    }
    let rules = match at.location.as_deref_mut() {
        Some(loc) => &mut loc.rules,
        None => &mut at.server.rules,
    };
    if by_type {
        rules
            .deflate
            .extend(types.iter().map(|t| t.to_ascii_lowercase()));
    } else {
        rules.deflate.push("*".into());
    }
    Ok(())
}

use super::model::headers::{
    Action, Attribute, Condition, HeaderRule, Piece, Rules, SetEnvIf, Value,
};

impl Rules {
    pub fn directive(
        &mut self,
        node: &Node,
        lower: &str,
        in_location: bool,
    ) -> Result<(), ConfigError> {
        let o = &node.origin;
        match lower {
            "header" | "requestheader" => {
                let rule = parse_header(node, lower == "requestheader")?;
                if in_location && matches!(rule.condition, Condition::Early) {
                    return Err(ConfigError::new(
                        o,
                        format!(
                            "{}: 'early' is allowed only in the server config or a <VirtualHost>",
                            node.name
                        ),
                    ));
                }
                if lower == "header" {
                    self.response.push(rule);
                } else {
                    self.request.push(rule);
                }
            }
            "setenv" => match node.args.as_slice() {
                [name] => self.setenv.push((name.clone(), Some(String::new()))),
                [name, value] => self.setenv.push((name.clone(), Some(value.clone()))),
                _ => {
                    return Err(ConfigError::new(
                        o,
                        "SetEnv takes a name and an optional value",
                    ))
                }
            },
            "unsetenv" => {
                if node.args.is_empty() {
                    return Err(ConfigError::new(o, "UnsetEnv takes one or more names"));
                }
                self.setenv
                    .extend(node.args.iter().map(|n| (n.clone(), None)));
            }
            "browsermatch" | "browsermatchnocase" => {
                // SetEnvIf User-Agent, as mod_setenvif defines it.
                let mut as_setenvif = node.clone();
                as_setenvif.args.insert(0, "User-Agent".into());
                self.setenvif
                    .push(parse_setenvif(&as_setenvif, lower == "browsermatchnocase")?);
            }
            _ => self
                .setenvif
                .push(parse_setenvif(node, lower == "setenvifnocase")?),
        }
        Ok(())
    }
}

fn parse_header(node: &Node, request: bool) -> Result<HeaderRule, ConfigError> {
    let o = &node.origin;
    let directive = node.name.as_str();
    let mut args: &[String] = &node.args;
    let mut always = false;
    if !request {
        match args.first().map(|a| a.to_ascii_lowercase()) {
            Some(a) if a == "always" => {
                always = true;
                args = &args[1..];
            }
            Some(a) if a == "onsuccess" => args = &args[1..],
            _ => {}
        }
    }
    let usage = || {
        ConfigError::new(o, format!("{directive}: too few or too many arguments")).hint(format!(
            "{directive} {}ACTION NAME [VALUE [REPLACEMENT]] [early|env=[!]VAR|expr=EXPR]",
            if request { "" } else { "[always|onsuccess] " }
        ))
    };
    let (action_word, rest) = args.split_first().ok_or_else(usage)?;
    let action_lower = action_word.to_ascii_lowercase();
    let (name, rest) = rest.split_first().ok_or_else(usage)?;
    let values_needed =
        match action_lower.as_str() {
            "set" | "append" | "add" | "merge" | "setifempty" => 1,
            "edit" | "edit*" => 2,
            "unset" => 0,
            "echo" if !request => 0,
            "echo" => return Err(ConfigError::new(
                o,
                "RequestHeader echo is not a thing: echo copies request headers into the response",
            )
            .hint("use Header echo")),
            "note" => {
                return Err(ConfigError::new(
                    o,
                    format!("{directive} note is not supported by wsgate"),
                ))
            }
            other => {
                return Err(
                    ConfigError::new(o, format!("{directive}: '{other}' is not an action"))
                        .hint("set, append, add, merge, setifempty, unset, edit, edit*, echo"),
                )
            }
        };
    if rest.len() < values_needed || rest.len() > values_needed + 1 {
        return Err(usage());
    }
    let condition = match rest.get(values_needed) {
        None => Condition::Always,
        Some(c) if c.eq_ignore_ascii_case("early") => Condition::Early,
        Some(c) if c.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("env=")) && c.len() > 4 => {
            match c[4..].strip_prefix('!') {
                Some(name) => Condition::Env {
                    name: name.to_string(),
                    present: false,
                },
                None => Condition::Env {
                    name: c[4..].to_string(),
                    present: true,
                },
            }
        }
        Some(c) if c.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("expr=")) && c.len() > 5 => {
            Condition::Expr(
                expr::parse_cond(&c[5..]).map_err(|e| {
                    ConfigError::new(o, format!("{directive}: expr={}: {e}", &c[5..]))
                })?,
            )
        }
        Some(c) => {
            return Err(
                ConfigError::new(o, format!("{directive}: '{c}' is not a condition"))
                    .hint("the last argument may be early, env=[!]VAR or expr=EXPRESSION"),
            )
        }
    };
    let action = match action_lower.as_str() {
        "set" => Action::Set,
        "append" => Action::Append,
        "add" => Action::Add,
        "merge" => Action::Merge,
        "setifempty" => Action::SetIfEmpty,
        "unset" => Action::Unset,
        "edit" | "edit*" => Action::Edit {
            pattern: RegexBuilder::new(&rest[0])
                .build()
                .map_err(|_| ConfigError::new(o, format!("{directive} edit: cannot compile regular expression '{}'", rest[0])).hint("wsgate uses Rust's regex dialect: no look-around, no backreferences in the pattern"))?,
            replacement: replacement(&rest[1]),
            all: action_lower == "edit*",
        },
        _ => Action::Echo(
            RegexBuilder::new(name)
                .case_insensitive(true)
                .build()
                .map_err(|_| ConfigError::new(o, format!("Header echo: cannot compile regular expression '{name}'")))?,
        ),
    };
    let value = match (&action, rest.first()) {
        (
            Action::Set | Action::Append | Action::Add | Action::Merge | Action::SetIfEmpty,
            Some(v),
        ) => Some(
            match v.get(..5).filter(|p| p.eq_ignore_ascii_case("expr=")) {
                Some(_) => Value::Expr(
                    expr::parse_string(&v[5..])
                        .map_err(|e| ConfigError::new(o, format!("{directive}: {v}: {e}")))?,
                ),
                None => Value::Format(format(o, directive, v)?),
            },
        ),
        _ => None,
    };
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':') {
        return Err(ConfigError::new(
            o,
            format!("{directive}: '{name}' is not a header name"),
        ));
    }
    Ok(HeaderRule {
        always,
        action,
        name: name.clone(),
        value,
        condition,
        origin: o.clone(),
    })
}

/// Apache's `$N` in an edit replacement, in the regex crate's `${N}` form.
fn replacement(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            let d = chars.next().expect("peeked");
            out.push_str(&format!("${{{d}}}"));
        } else if c == '$' {
            out.push_str("$$");
        } else if c == '\\' && chars.peek().is_some() {
            out.push(chars.next().expect("peeked"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A value's format string: `%{VAR}e`, `%t`, `%D`, `%%`.
fn format(o: &Origin, directive: &str, text: &str) -> Result<Vec<Piece>, ConfigError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => literal.push('%'),
            Some('t') => {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                pieces.push(Piece::Time);
            }
            Some('D') => {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                pieces.push(Piece::Duration);
            }
            Some('{') => {
                let name: String = chars.by_ref().take_while(|&d| d != '}').collect();
                match chars.next() {
                    Some('e') => {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                        pieces.push(Piece::Env(name));
                    }
                    Some('s') => {
                        return Err(ConfigError::new(o, format!("{directive}: %{{{name}}}s needs SSL variables, which wsgate does not provide")))
                    }
                    other => {
                        return Err(ConfigError::new(o, format!("{directive}: unknown format %{{{name}}}{}", other.map(String::from).unwrap_or_default()))
                            .hint("supported: %{VAR}e, %t, %D, %%"))
                    }
                }
            }
            Some(other) => {
                return Err(
                    ConfigError::new(o, format!("{directive}: unknown format %{other}"))
                        .hint("supported: %{VAR}e, %t, %D, %%"),
                )
            }
            None => literal.push('%'),
        }
    }
    pieces.push(Piece::Literal(literal));
    pieces.retain(|p| !matches!(p, Piece::Literal(s) if s.is_empty()));
    Ok(pieces)
}

fn parse_setenvif(node: &Node, nocase: bool) -> Result<SetEnvIf, ConfigError> {
    let o = &node.origin;
    let [attribute, pattern, assignments @ ..] = node.args.as_slice() else {
        return Err(ConfigError::new(
            o,
            format!(
                "{} takes an attribute, a regex and variables to set",
                node.name
            ),
        )
        .hint(format!(
            "e.g. {} User-Agent \"^Mozilla\" is_browser",
            node.name
        )));
    };
    if assignments.is_empty() {
        return Err(ConfigError::new(
            o,
            format!("{}: no variable to set", node.name),
        ));
    }
    let attribute = match attribute.to_ascii_lowercase().as_str() {
        "remote_host" => Attribute::RemoteHost,
        "remote_addr" => Attribute::RemoteAddr,
        "server_addr" => Attribute::ServerAddr,
        "request_method" => Attribute::RequestMethod,
        "request_protocol" => Attribute::RequestProtocol,
        "request_uri" => Attribute::RequestUri,
        "remote_user" => {
            return Err(ConfigError::new(
                o,
                format!("{}: Remote_User is not available in wsgate", node.name),
            ))
        }
        _ => Attribute::Header(attribute.clone()),
    };
    let pattern = BytesRegexBuilder::new(pattern)
        .case_insensitive(nocase)
        .dot_matches_new_line(true)
        .build()
        .map_err(|_| {
            ConfigError::new(
                o,
                format!(
                    "{}: cannot compile regular expression '{pattern}'",
                    node.name
                ),
            )
        })?;
    Ok(SetEnvIf {
        attribute,
        pattern,
        assignments: assignments
            .iter()
            .map(|a| match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            })
            .collect(),
    })
}
