//! mod_access_compat (`Order`, `Allow`, `Deny`, `Satisfy`) and the
//! authentication modules: mod_authn_core (`AuthType`, `AuthName`),
//! mod_auth_basic (`AuthBasicProvider`) and mod_authn_file
//! (`AuthUserFile`). `route::access` applies them with `Require`, in
//! Apache 2.4's order; the messages are the modules' own.

use super::directives::{arg, Scope};
use super::error::ConfigError;
use super::lexer::Node;
use super::model::authz::{Auth, Compat, From, Order};
use super::require::{subnet_parts, SubnetError};
use super::{At, Builder};

/// The settings of the section being read.
fn slot<'a>(
    b: &'a mut Builder,
    at: &'a mut At<'_>,
    node: &Node,
) -> Result<&'a mut Auth, ConfigError> {
    let slot = match (
        at.scope,
        at.location.as_deref_mut(),
        at.proxy,
        at.section.as_deref_mut(),
    ) {
        (Scope::Proxy, _, Some(url), _) => &mut b.balancers.get(url, &node.origin)?.draft.auth,
        (_, Some(loc), _, _) => &mut loc.auth,
        (_, _, _, Some(section)) => &mut section.settings.auth,
        _ => {
            return Err(
                ConfigError::new(&node.origin, format!("{} not allowed here", node.name))
                    .hint("it belongs in <Location>, <LocationMatch>, <Directory>, <Files> or <Proxy balancer://…>"),
            )
        }
    };
    Ok(slot.get_or_insert_with(Box::default))
}

/// `Order Allow,Deny|Deny,Allow|Mutual-failure`.
pub(super) fn order(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let order = match arg(node).to_ascii_lowercase().as_str() {
        "allow,deny" => Order::AllowDeny,
        "deny,allow" => Order::DenyAllow,
        "mutual-failure" => Order::MutualFailure,
        _ => {
            return Err(ConfigError::new(&node.origin, "unknown order").hint(
                "write Order Allow,Deny, Order Deny,Allow or Order Mutual-failure (no space after the comma)",
            ))
        }
    };
    compat(slot(b, at, node)?).order = order;
    Ok(())
}

/// `Allow from …` and `Deny from …`.
pub(super) fn allow_deny(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let allow = node.is("Allow");
    let (first, hosts) = match node.args.split_first() {
        Some((first, hosts)) if !hosts.is_empty() => (first, hosts),
        _ => {
            return Err(ConfigError::new(
                o,
                format!(
                    "{} requires at least two arguments, 'from' followed by hostnames or IP-address wildcards",
                    node.name.to_ascii_lowercase()
                ),
            )
            .hint(format!("e.g. {} from 192.168.1 or {} from all", node.name, node.name)))
        }
    };
    if !first.eq_ignore_ascii_case("from") {
        return Err(ConfigError::new(
            o,
            "allow and deny must be followed by 'from'",
        ));
    }
    let parsed = hosts
        .iter()
        .map(|w| from(w).map_err(|why| ConfigError::new(o, why)))
        .collect::<Result<Vec<_>, _>>()?;
    let c = compat(slot(b, at, node)?);
    if allow {
        c.allow.extend(parsed);
    } else {
        c.deny.extend(parsed);
    }
    Ok(())
}

/// One `Allow from` / `Deny from` argument, as `allow_cmd` reads it.
fn from(w: &str) -> Result<From, String> {
    let lower = w.to_ascii_lowercase();
    if lower.starts_with("env=!") {
        return Ok(From::NotEnv(w[5..].to_string()));
    }
    if lower.starts_with("env=") {
        return Ok(From::Env(w[4..].to_string()));
    }
    if lower == "all" {
        return Ok(From::All);
    }
    if let Some((addr, mask)) = w.split_once('/') {
        return match subnet_parts(addr, Some(mask)) {
            Ok(s) => Ok(From::Ip(s)),
            Err(SubnetError::NotAnAddress) => Err("An IP address was expected".into()),
            Err(e) => Err(e.apr_message().into()),
        };
    }
    match subnet_parts(w, None) {
        Ok(s) => Ok(From::Ip(s)),
        Err(SubnetError::NotAnAddress) if w.contains('#') => {
            Err("No comments are allowed here".into())
        }
        Err(SubnetError::NotAnAddress) => Ok(From::Host(w.to_string())),
        Err(e) => Err(e.apr_message().into()),
    }
}

/// `Satisfy All|Any`.
pub(super) fn satisfy(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let any = match arg(node).to_ascii_lowercase().as_str() {
        "all" => false,
        "any" => true,
        _ => {
            return Err(ConfigError::new(
                &node.origin,
                "Satisfy either 'any' or 'all'.",
            ))
        }
    };
    compat(slot(b, at, node)?).satisfy_any = Some(any);
    Ok(())
}

fn compat(auth: &mut Auth) -> &mut Compat {
    auth.compat.get_or_insert_with(Compat::default)
}

/// `AuthType Basic|None`.
pub(super) fn auth_type(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let value = arg(node);
    let basic = if value.eq_ignore_ascii_case("basic") {
        true
    } else if value.eq_ignore_ascii_case("none") {
        false
    } else {
        return Err(ConfigError::new(
            &node.origin,
            format!("AuthType {value}: wsgate has Basic authentication only"),
        )
        .hint(if value.eq_ignore_ascii_case("digest") {
            "Digest needs mod_auth_digest, which wsgate does not have: use AuthType Basic over TLS"
        } else {
            "write AuthType Basic (or None)"
        }));
    };
    no_expression(node, value)?;
    slot(b, at, node)?.basic = Some(basic);
    Ok(())
}

/// `AuthName REALM`.
pub(super) fn auth_name(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let value = arg(node);
    no_expression(node, value)?;
    slot(b, at, node)?.realm = Some(escape_quotes(value));
    Ok(())
}

/// AuthType and AuthName are ap_expr strings in Apache; wsgate reads them
/// as the plain text nearly every configuration writes.
fn no_expression(node: &Node, value: &str) -> Result<(), ConfigError> {
    if value.contains("%{") {
        return Err(ConfigError::new(
            &node.origin,
            format!(
                "{}: wsgate reads it as plain text, without %{{…}} variables",
                node.name
            ),
        )
        .hint("write the realm out, e.g. AuthName \"Restricted\""));
    }
    Ok(())
}

/// `ap_escape_quotes`: a double quote gets a backslash, a backslash keeps
/// the character after it as it is.
pub(crate) fn escape_quotes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            out.push('\\');
        }
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(c);
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `AuthBasicProvider file`: the only provider wsgate has, and the default.
pub(super) fn auth_basic_provider(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    for p in &node.args {
        if p != "file" {
            return Err(
                ConfigError::new(&node.origin, format!("Unknown Authn provider: {p}"))
                    .hint("wsgate has the file provider only (AuthUserFile)"),
            );
        }
    }
    slot(b, at, node)?;
    Ok(())
}

/// `AuthUserFile FILE`: read for each request, as mod_authn_file reads
/// it, so an edit by `htpasswd` counts at once; a file that cannot be read
/// then is a 500, and a warning now.
pub(super) fn auth_user_file(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let path = b.root.join(arg(node));
    if let Err(e) = std::fs::File::open(&path) {
        b.warnings.push(format!(
            "{}: AuthUserFile {}: {e}; requests that need a password there get 500 until it can be read (as with Apache)",
            node.origin,
            path.display()
        ));
    }
    slot(b, at, node)?.user_file = Some(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_from_arguments_are_read_as_mod_access_compat_reads_them() {
        assert_eq!(from("all"), Ok(From::All));
        assert_eq!(from("ALL"), Ok(From::All));
        assert_eq!(from("env=let_me_in"), Ok(From::Env("let_me_in".into())));
        assert_eq!(from("Env=!bad"), Ok(From::NotEnv("bad".into())));
        assert_eq!(from("example.org"), Ok(From::Host("example.org".into())));
        assert_eq!(from(".example.org"), Ok(From::Host(".example.org".into())));
        assert!(matches!(from("10.1"), Ok(From::Ip(_))));
        assert!(matches!(from("10.0.0.0/255.0.0.0"), Ok(From::Ip(_))));
        assert!(matches!(from("2001:db8::/32"), Ok(From::Ip(_))));
        assert_eq!(from("host/24"), Err("An IP address was expected".into()));
        assert_eq!(from("a#b"), Err("No comments are allowed here".into()));
        assert_eq!(
            from("10.0.0.0/33"),
            Err("The specified network mask is invalid.".into())
        );
        assert_eq!(
            from("300.1.1.1"),
            Err("The specified IP address is invalid.".into())
        );
    }

    #[test]
    fn realms_get_their_quotes_escaped_as_ap_auth_name_does() {
        assert_eq!(escape_quotes("Members Only"), "Members Only");
        assert_eq!(escape_quotes("say \"hi\""), "say \\\"hi\\\"");
        assert_eq!(escape_quotes("a\\\"b"), "a\\\"b");
        assert_eq!(escape_quotes("end\\"), "end\\");
    }
}
