//! Per-directory rewriting: the rules of a `<Location>` or `<Directory>`,
//! which Apache runs in its fixup phase on the request's filename (its
//! `hook_fixup` and `apply_rewrite_rule` with a per-directory prefix).
//! The section's directory is stripped from the filename before each
//! pattern is matched and added back to a relative substitution; a result
//! that is a local path becomes an internal redirect (with `RewriteBase`
//! in place of the directory, or without the document root). Pure, as the
//! server-level engine: file tests are answered through [`Vars`].

use super::{
    conditions_hold, expand, has_space_or_control, is_absolute_url, qualify, scheme_length,
    split_query, starts_with_ignore_case, Step, Trace, Vars,
};
use crate::config::model::rewrite::Rule;

/// Where per-directory rules run.
#[derive(Debug, Clone, Copy)]
pub struct PerDirContext<'a> {
    /// The section's path with its trailing slash.
    pub directory: &'a [u8],
    /// `RewriteBase`.
    pub base: Option<&'a [u8]>,
    /// The document root without its trailing slash: taken off a local
    /// result without `RewriteBase`.
    pub document_root: &'a [u8],
    /// The filename is a proxy request's (`proxy:url`): nothing is
    /// stripped or added.
    pub proxied: bool,
}

/// What per-directory rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerDirOutcome {
    /// No rule rewrote the filename: the request goes on as mapped.
    Declined,
    /// The rules ended where they started (Apache's "initial URL equal
    /// rewritten URL"): the request goes on as mapped.
    Same,
    Status(u16),
    /// `[P]`: proxy to this absolute url (see [`super::Outcome::Proxy`]).
    Proxy {
        url: Vec<u8>,
        query: Option<String>,
        noescape: bool,
        rule: usize,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// An internal redirect: the request is processed again for this
    /// url-path and query.
    Internal {
        path: Vec<u8>,
        query: Option<String>,
    },
}

/// Runs per-directory `rules` on `filename`. The second value says
/// whether an `[END]` rule applied: no rewriting happens any more for
/// this request, after an internal redirect either.
pub fn apply_perdir<T: Trace + ?Sized>(
    rules: &[&Rule],
    filename: &[u8],
    cx: &PerDirContext<'_>,
    vars: &dyn Vars,
    trace: &mut T,
) -> (PerDirOutcome, bool) {
    let mut current = filename.to_vec();
    let mut query: Option<String> = vars.query().map(str::to_string);
    let original_query = query.clone();
    let (mut changed, mut noescape, mut end) = (false, false, false);
    let mut redirect: Option<u16> = None;
    let (mut skip, mut chain_failed) = (0usize, false);
    for (index, rule) in rules.iter().enumerate() {
        if skip > 0 || chain_failed {
            skip = skip.saturating_sub(1);
            if chain_failed {
                chain_failed = rule.flags.chain;
            }
            trace.rule(index, Step::Skipped);
            continue;
        }
        let strip = !cx.proxied && current.starts_with(cx.directory);
        let subject = if strip {
            current[cx.directory.len()..].to_vec()
        } else {
            current.clone()
        };
        let captures = if rule.pattern.is_match(&subject) {
            rule.pattern.captures(&subject)
        } else {
            None
        };
        if captures.is_some() == rule.negate {
            chain_failed = rule.flags.chain;
            trace.rule(index, Step::NoMatch);
            continue;
        }
        let rule_caps = if rule.negate { None } else { captures };
        let Some(cond_caps) = conditions_hold(rule, rule_caps.as_ref(), vars, (index, trace))
        else {
            chain_failed = rule.flags.chain;
            trace.rule(index, Step::ConditionsFailed);
            continue;
        };
        let no_url = Step::Applied {
            url: None,
            query: None,
        };
        let status = if rule.flags.forbidden {
            Some(403)
        } else if rule.flags.gone {
            Some(410)
        } else {
            rule.flags.redirect.filter(|c| !(300..400).contains(c))
        };
        if let Some(status) = status {
            trace.rule(index, no_url);
            return (PerDirOutcome::Status(status), end);
        }
        if let Some(template) = &rule.substitution {
            let flags = &rule.flags;
            let expanded = expand(
                template,
                rule_caps.as_ref(),
                cond_caps.as_ref(),
                vars,
                flags,
            );
            if expanded.unsafe_qmark && !flags.unsafe_allow_3f {
                let url = Some(expanded.text.as_slice());
                trace.rule(index, Step::Applied { url, query: None });
                return (PerDirOutcome::Status(403), end);
            }
            let mut new = expanded.text;
            if !cx.proxied && new.first() != Some(&b'/') && !is_absolute_url(&new) {
                let mut prefixed = cx.directory.to_vec();
                prefixed.extend_from_slice(&new);
                new = prefixed;
            }
            split_query(&mut new, &mut query, flags);
            current = new;
            changed = true;
            noescape = flags.noescape;
            let (url, q) = (Some(current.as_slice()), query.as_deref());
            trace.rule(index, Step::Applied { url, query: q });
            if flags.proxy {
                if query.as_deref().is_some_and(has_space_or_control) {
                    return (PerDirOutcome::Status(403), end);
                }
                let url = qualify(&current, vars);
                let rule = index;
                return (
                    PerDirOutcome::Proxy {
                        url,
                        query,
                        noescape,
                        rule,
                    },
                    end,
                );
            }
            if let Some(code) = flags.redirect {
                current = qualify(&current, vars);
                redirect = Some(code);
            } else {
                reduce(&mut current, vars);
                if is_absolute_url(&current) && redirect.is_none() {
                    redirect = Some(302);
                }
            }
        } else {
            trace.rule(index, no_url);
        }
        if rule.flags.end {
            end = true;
            break;
        }
        if rule.flags.passthrough || rule.flags.last || rule.flags.proxy {
            break;
        }
        skip = rule.flags.skip;
    }
    if !changed {
        return (PerDirOutcome::Declined, end);
    }
    let ended = Ended {
        url: current,
        query,
        original_query,
        noescape,
        redirect,
    };
    (conclude(ended, filename, cx), end)
}

/// Where the rules left the filename once they changed it.
struct Ended {
    url: Vec<u8>,
    query: Option<String>,
    original_query: Option<String>,
    noescape: bool,
    redirect: Option<u16>,
}

/// A redirect, an internal redirect, or the request going on (Apache's
/// `hook_fixup` after the rules).
fn conclude(e: Ended, filename: &[u8], cx: &PerDirContext<'_>) -> PerDirOutcome {
    let Ended {
        url: current,
        query,
        original_query,
        noescape,
        redirect,
    } = e;
    let absolute = is_absolute_url(&current);
    let will_escape = absolute && !noescape;
    if !will_escape && query.as_deref().is_some_and(has_space_or_control) {
        return PerDirOutcome::Status(403);
    }
    if absolute {
        let status = redirect.filter(|c| (300..400).contains(c)).unwrap_or(302);
        let location = redirect_location(&current, cx, (query, original_query), noescape);
        PerDirOutcome::Redirect { status, location }
    } else if current.first() != Some(&b'/') {
        PerDirOutcome::Status(400)
    } else if current == filename {
        PerDirOutcome::Same
    } else {
        let path = match cx.base {
            Some(base) => subst_prefix_path(&current, cx.directory, base),
            None => {
                let root = cx.document_root;
                if current.starts_with(root) && current.get(root.len()) == Some(&b'/') {
                    current[root.len()..].to_vec()
                } else {
                    current
                }
            }
        };
        PerDirOutcome::Internal { path, query }
    }
}

/// Self-reduction: `http://this-server/path` becomes `/path`.
fn reduce(url: &mut Vec<u8>, vars: &dyn Vars) {
    let skip = scheme_length(url);
    if skip == 0 || !starts_with_ignore_case(url, vars.scheme().as_bytes()) {
        return;
    }
    let end = url[skip..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(url.len(), |p| p + skip);
    if vars.is_self(&String::from_utf8_lossy(&url[skip..end])) {
        url.drain(..end);
        if url.is_empty() {
            url.push(b'/');
        }
    }
}

/// The Location of a per-directory redirect: the directory in the url's
/// path replaced by `RewriteBase` (Apache's "hack" for `RewriteRule ^a b
/// [R]`), escaped unless `[NE]`, with the query.
fn redirect_location(
    url: &[u8],
    cx: &PerDirContext<'_>,
    (query, original_query): (Option<String>, Option<String>),
    noescape: bool,
) -> String {
    let mut url = url.to_vec();
    if let Some(base) = cx.base {
        let skip = scheme_length(&url);
        if let Some(slash) = url[skip..].iter().position(|&b| b == b'/') {
            let path_start = skip + slash + 1;
            if path_start < url.len() {
                let directory = cx.directory.strip_prefix(b"/").unwrap_or(cx.directory);
                let base = base.get(1..).unwrap_or_default();
                let replaced = subst_prefix_path(&url[path_start..], directory, base);
                url.truncate(path_start);
                url.extend_from_slice(&replaced);
            }
        }
    }
    super::redirect_location(&url, query.as_deref(), original_query.as_deref(), noescape)
}

/// `input` with the directory `prefix` (trailing slash optional) replaced
/// by `subst`, when `input` is inside it (Apache's `subst_prefix_path`).
fn subst_prefix_path(input: &[u8], prefix: &[u8], subst: &[u8]) -> Vec<u8> {
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    if !input.starts_with(prefix) || input.get(prefix.len()) != Some(&b'/') {
        return input.to_vec();
    }
    let mut out = subst.to_vec();
    if !out.is_empty() && out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(&input[prefix.len() + 1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::subst_prefix_path;

    #[test]
    fn a_prefix_is_replaced_only_at_a_segment_boundary() {
        assert_eq!(
            subst_prefix_path(b"/srv/www/index.html", b"/srv/www/", b"/"),
            b"/index.html"
        );
        assert_eq!(
            subst_prefix_path(b"/srv/www/a", b"/srv/www/", b"/app"),
            b"/app/a"
        );
        assert_eq!(
            subst_prefix_path(b"/srv/wwwx/a", b"/srv/www/", b"/"),
            b"/srv/wwwx/a"
        );
        assert_eq!(subst_prefix_path(b"srv/www/a", b"srv/www/", b""), b"a");
    }
}
