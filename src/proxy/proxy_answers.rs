//! What mod_proxy_http adds to an exchange besides the request and the
//! answer themselves: `ProxyVia`'s entry, toward the backend and on its
//! answer, and the cookie forms of `ProxyPassReverse`.

use super::error::{Overridden, ProxyError};
use super::header_rules::ConnFacts;
use super::headers::ViaHeader;
use crate::config::model::proxy_answers::{ErrorOverride, Via};
use crate::config::{ReverseKind, ReverseRule, Server};
use crate::http::{host_without_port, RequestHead, ResponseHead};
use crate::route::Settings;

/// This proxy's `Via` entry, `MAJOR.MINOR NAME[:PORT]` (with `Full`, the
/// product in a comment): the client's protocol version, the server's
/// name (Apache's choice with `UseCanonicalName Off`: the virtual host's
/// name, never the client's Host), and the Host's port unless it is the
/// scheme's own (without one, none: `ServerName`'s port is not kept). `None`
/// when `ProxyVia` adds nothing.
pub(super) fn via_entry(head: &RequestHead, server: &Server, facts: ConnFacts) -> Option<String> {
    let full = match server.settings.via {
        Via::Off | Via::Block => return None,
        Via::On => false,
        Via::Full => true,
    };
    let host = head.headers.get_str("host").map(str::trim);
    let default = if facts.https { 443 } else { 80 };
    let port = host
        .and_then(|h| h.strip_prefix(host_without_port(h)))
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(default);
    let mut entry = format!(
        "{}.{} {}",
        head.version.major, head.version.minor, server.server_name
    );
    if port != default {
        entry.push_str(&format!(":{port}"));
    }
    if full {
        entry.push_str(concat!(" (wsgate/", env!("CARGO_PKG_VERSION"), ")"));
    }
    Some(entry)
}

/// What the request's `Via` becomes toward the backend.
pub(super) fn via_toward_backend<'a>(server: &Server, entry: Option<&'a str>) -> ViaHeader<'a> {
    match (server.settings.via, entry) {
        (Via::Block, _) => ViaHeader::Block,
        (_, Some(entry)) => ViaHeader::Add(entry.as_bytes()),
        (_, None) => ViaHeader::Pass,
    }
}

/// A backend's answer as mod_proxy_http reads it, before any `Header`
/// rule: `Set-Cookie` values through the cookie rules, and with `ProxyVia
/// On` or `Full` this proxy's entry as a `Via` field of its own after the
/// backend's fields (Apache adds a field; it does not merge).
pub(super) fn fix_answer(resp: &mut ResponseHead, via: Option<&str>, reverse: &[&ReverseRule]) {
    if reverse.iter().any(|r| r.kind != ReverseKind::Url) {
        for (name, value) in &mut resp.headers.fields {
            if name.eq_ignore_ascii_case("set-cookie") {
                if let Some(mapped) = cookie_map(value, reverse) {
                    *value = mapped.into();
                }
            }
        }
    }
    if let Some(entry) = via {
        resp.headers.push("Via", entry.as_bytes().to_vec());
    }
}

/// A backend's final answer as mod_proxy_http takes it: replaced by the
/// server's own page (`Err`, [`error_override`]), or fixed up
/// ([`fix_answer`]) before any `Header` rule runs.
pub(super) fn on_answer(
    resp: &mut ResponseHead,
    settings: &Settings<'_>,
    via: Option<&str>,
) -> Result<(), ProxyError> {
    if let Some(replaced) = error_override(settings, resp) {
        return Err(replaced);
    }
    fix_answer(resp, via, &settings.reverse);
    Ok(())
}

/// `ProxyErrorOverride`: whether the backend's answer is replaced by the
/// server's own error page for its status, as an error the request's one
/// failure path answers (`request::proxy_mapped`, through
/// `header_rules::error_page`: where `ErrorDocument` applies to it too).
/// The backend's status line stays (and a 401's `WWW-Authenticate`), its
/// other fields and body are dropped, its connection closed.
pub(super) fn error_override(settings: &Settings<'_>, resp: &ResponseHead) -> Option<ProxyError> {
    let levels = std::iter::once(&settings.base.error_override)
        .chain(settings.error_override.iter().copied());
    if !ErrorOverride::replaces(levels, resp.status) {
        return None;
    }
    let authenticate = (resp.status == 401)
        .then(|| resp.headers.get_str("www-authenticate"))
        .flatten()
        .map(str::to_string);
    Some(ProxyError::ErrorOverride(Box::new(Overridden {
        status: resp.status,
        reason: resp.reason.to_string(),
        authenticate,
    })))
}

/// `ProxyPassReverseCookiePath` and `ProxyPassReverseCookieDomain` on a
/// `Set-Cookie` value, as mod_proxy does it: the value of its `path=`
/// attribute, when a rule's backend path is a prefix of it (exact case),
/// becomes the rule's client path — the whole value, not the prefix — and
/// its `domain=` value, when a rule's backend domain is a prefix of it
/// (any case), becomes the rule's client domain. The first matching rule
/// wins; of several `path=` (or `domain=`) attributes only the last one
/// counts (Apache 2.4.71). `None`: nothing to change.
pub(super) fn cookie_map(value: &[u8], rules: &[&ReverseRule]) -> Option<Vec<u8>> {
    let mut path: Option<(std::ops::Range<usize>, Option<&str>)> = None;
    let mut domain: Option<(std::ops::Range<usize>, Option<&str>)> = None;
    let mut start = 0;
    for token in value.split(|&b| b == b';') {
        let end = start + token.len();
        let lead = token.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let attr = &token[lead..];
        let at = |name: &str| {
            attr.len() >= name.len() && attr[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        };
        if at("path=") {
            let range = start + lead + 5..end;
            let found = matching(rules, ReverseKind::CookiePath, &value[range.clone()]);
            path = Some((range, found));
        } else if at("domain=") {
            let range = start + lead + 7..end;
            let found = matching(rules, ReverseKind::CookieDomain, &value[range.clone()]);
            domain = Some((range, found));
        }
        start = end + 1;
    }
    let mut changes: Vec<(std::ops::Range<usize>, &str)> = [path, domain]
        .into_iter()
        .flatten()
        .filter_map(|(range, real)| Some((range, real?)))
        .collect();
    if changes.is_empty() {
        return None;
    }
    changes.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(value.len() + 32);
    let mut from = 0;
    for (range, real) in changes {
        out.extend_from_slice(&value[from..range.start]);
        out.extend_from_slice(real.as_bytes());
        from = range.end;
    }
    out.extend_from_slice(&value[from..]);
    Some(out)
}

/// The client's value of the first cookie rule of `kind` whose backend
/// value starts `value` (paths in exact case, domains in any).
fn matching<'r>(rules: &[&'r ReverseRule], kind: ReverseKind, value: &[u8]) -> Option<&'r str> {
    rules
        .iter()
        .filter(|r| r.kind == kind)
        .find(|r| {
            let fake = r.url.as_bytes();
            value.len() >= fake.len()
                && match kind {
                    ReverseKind::CookieDomain => value[..fake.len()].eq_ignore_ascii_case(fake),
                    _ => value[..fake.len()] == *fake,
                }
        })
        .map(|r| r.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: ReverseKind, fake: &str, real: &str) -> ReverseRule {
        ReverseRule {
            path: real.into(),
            url: fake.into(),
            kind,
        }
    }

    fn mapped(value: &str, rules: &[ReverseRule]) -> String {
        let rules: Vec<&ReverseRule> = rules.iter().collect();
        match cookie_map(value.as_bytes(), &rules) {
            Some(v) => String::from_utf8(v).unwrap(),
            None => value.to_string(),
        }
    }

    #[test]
    fn a_cookie_path_prefix_replaces_the_whole_value() {
        let r = [rule(ReverseKind::CookiePath, "/app/", "/front/")];
        assert_eq!(
            mapped("a=1; Path=/app/x; Secure", &r),
            "a=1; Path=/front/; Secure"
        );
        assert_eq!(
            mapped("a=1; path=/App/x", &r),
            "a=1; path=/App/x",
            "paths keep case"
        );
        assert_eq!(mapped("a=1;path=/app/", &r), "a=1;path=/front/");
    }

    #[test]
    fn a_cookie_domain_prefix_matches_in_any_case() {
        let r = [rule(
            ReverseKind::CookieDomain,
            "backend.internal",
            "www.example",
        )];
        assert_eq!(
            mapped("a=1; Domain=BACKEND.Internal.example; Path=/", &r),
            "a=1; Domain=www.example; Path=/"
        );
        assert_eq!(
            mapped("a=1; domain=.backend.internal", &r),
            "a=1; domain=.backend.internal"
        );
    }

    #[test]
    fn path_and_domain_change_together_in_either_order() {
        let r = [
            rule(ReverseKind::CookiePath, "/app", "/f"),
            rule(ReverseKind::CookieDomain, "b.internal", "w.example"),
        ];
        assert_eq!(
            mapped("a=1; Path=/app/x; Domain=b.internal", &r),
            "a=1; Path=/f; Domain=w.example"
        );
        assert_eq!(
            mapped("a=1; Domain=b.internal ;  path=/app ;HttpOnly", &r),
            "a=1; Domain=w.example;  path=/f;HttpOnly"
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_url_rules_do_not_count() {
        let r = [
            rule(ReverseKind::Url, "/app", "/no"),
            rule(ReverseKind::CookiePath, "/app", "/one"),
            rule(ReverseKind::CookiePath, "/app/x", "/two"),
        ];
        assert_eq!(mapped("a=1; path=/app/x", &r), "a=1; path=/one");
    }

    #[test]
    fn only_the_last_path_attribute_counts() {
        let r = [rule(ReverseKind::CookiePath, "/app", "/f")];
        let unchanged = "a=1; path=/app; path=/other";
        assert_eq!(mapped(unchanged, &r), unchanged);
        assert_eq!(
            mapped("a=1; path=/other; path=/app/x", &r),
            "a=1; path=/other; path=/f"
        );
    }
}
