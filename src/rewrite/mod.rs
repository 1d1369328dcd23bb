//! mod_rewrite's server- and vhost-context engine, for the proxy subset:
//! rules are tried in order on the decoded path, each rule's pattern first
//! and then its conditions, and the outcome is a proxy target, a redirect, a
//! status, a path handed on to ProxyPass, or nothing. Pure: the request is
//! read through [`Vars`], nothing here does I/O.
//!
//! The safety checks of Apache 2.4.60+ are kept: a `?` that a back-reference
//! or variable would turn into the query delimiter is a 403 (CVE-2024-38474),
//! a rewritten query holding a space or control character is a 403
//! (CVE-2023-25690), and only `[P]` ever proxies (CVE-2024-39573).

use regex::bytes::Captures;

use crate::config::model::rewrite::{
    BackrefEscape, Cond, CondPattern, FileTest, IntMap, Piece, RewriteMap, Rule, RuleFlags,
    Template, Var,
};

mod perdir;
pub use perdir::{apply_perdir, PerDirContext, PerDirOutcome};

/// How the engine reads the request.
pub trait Vars {
    fn var(&self, var: &Var) -> String;
    /// The request's original query string (`None`: no `?` at all).
    fn query(&self) -> Option<&str>;
    /// This server's own `host[:port]` as the client addressed it, for
    /// qualifying redirects.
    fn self_authority(&self) -> String;
    /// Whether `authority` (`host[:port]`) names this server on the port
    /// the request came in on: such a url is reduced to a local path.
    fn is_self(&self, authority: &str) -> bool;
    fn scheme(&self) -> &'static str;
    /// A `RewriteCond` file test on `path` (per-directory rules only; the
    /// caller has looked at the file system beforehand).
    fn file_test(&self, _test: FileTest, _path: &[u8]) -> bool {
        false
    }
}

/// What the engine reports of each rule it looks at, for `wsgate -t
/// --explain`. The proxy passes `()`, whose empty methods compile to
/// nothing: the request path neither allocates nor branches for it.
pub trait Trace {
    /// Rule `index` of the list, and what became of it.
    fn rule(&mut self, _index: usize, _step: Step<'_>) {}
    /// Condition `cond` of rule `rule`: the test string as expanded, and
    /// whether the condition held (after `!`).
    fn cond(&mut self, _rule: usize, _cond: usize, _tested: &[u8], _held: bool) {}
}

impl Trace for () {}

/// What became of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Not tried: an earlier rule's `[S=N]`, or a failed `[C]` chain.
    Skipped,
    /// The pattern did not match (with `!`: it did).
    NoMatch,
    /// The pattern matched, a condition did not hold.
    ConditionsFailed,
    /// The rule applied: the url after its substitution and its query
    /// (`None` for `-`, `[F]` and `[G]`).
    Applied {
        url: Option<&'a [u8]>,
        query: Option<&'a str>,
    },
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No rule rewrote the URL: ProxyPass maps it as usual.
    Unchanged,
    /// `[PT]`: ProxyPass maps this decoded path and query instead.
    PassThrough {
        path: Vec<u8>,
        query: Option<String>,
    },
    /// `[P]`: proxy to this absolute url. Its path is still decoded (to be
    /// canonicalised like a ProxyPass target) unless `noescape`. `rule` is
    /// the rule's index in the list.
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
    Status(u16),
    /// Rewritten to a local path; wsgate serves no files (404).
    Local,
}

/// Runs `rules` on the decoded request path, telling `trace` what each
/// rule did.
pub fn apply<T: Trace + ?Sized>(
    rules: &[Rule],
    path: &[u8],
    vars: &dyn Vars,
    trace: &mut T,
) -> Outcome {
    let mut uri: Vec<u8> = path.to_vec();
    let mut query: Option<String> = vars.query().map(str::to_string);
    let original_query = query.clone();
    let mut changed = false;
    let mut noescape = false;
    let mut redirect: Option<u16> = None;
    let mut skip = 0usize;
    let mut chain_failed = false;
    let mut passthrough = false;
    for (index, rule) in rules.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            trace.rule(index, Step::Skipped);
            continue;
        }
        if chain_failed {
            // A failed [C] rule skips the rest of its chain.
            chain_failed = rule.flags.chain;
            trace.rule(index, Step::Skipped);
            continue;
        }
        // The DFA answers "no match" far faster than a capturing search,
        // and most rules do not match most requests.
        let captures = if rule.pattern.is_match(&uri) {
            rule.pattern.captures(&uri)
        } else {
            None
        };
        let matched = captures.is_some() != rule.negate;
        let rule_caps = if rule.negate { None } else { captures };
        if !matched {
            chain_failed = rule.flags.chain;
            trace.rule(index, Step::NoMatch);
            continue;
        }
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
        if rule.flags.forbidden {
            trace.rule(index, no_url);
            return Outcome::Status(403);
        }
        if rule.flags.gone {
            trace.rule(index, no_url);
            return Outcome::Status(410);
        }
        if let Some(template) = &rule.substitution {
            let expanded = expand(
                template,
                rule_caps.as_ref(),
                cond_caps.as_ref(),
                vars,
                &rule.flags,
            );
            if expanded.unsafe_qmark && !rule.flags.unsafe_allow_3f {
                let url = Some(expanded.text.as_slice());
                trace.rule(index, Step::Applied { url, query: None });
                return Outcome::Status(403);
            }
            let mut new_uri = expanded.text;
            if !rule.flags.proxy
                && redirect.is_none()
                && rule.flags.redirect.is_none()
                && !is_absolute_url(&new_uri)
                && new_uri.first() != Some(&b'/')
            {
                // S100: a relative result gets a leading '/', so it can
                // never turn into a proxy or other scheme's url.
                new_uri.insert(0, b'/');
            }
            split_query(&mut new_uri, &mut query, &rule.flags);
            uri = new_uri;
            changed = true;
            noescape = rule.flags.noescape;
            let (url, query) = (Some(uri.as_slice()), query.as_deref());
            trace.rule(index, Step::Applied { url, query });
        } else {
            trace.rule(index, no_url);
            if let Some(code) = rule.flags.redirect {
                if !(300..400).contains(&code) {
                    return Outcome::Status(code);
                }
            }
        }
        // A `-` rule has no proxy target: [P] on it only stops the rules.
        if rule.flags.proxy && rule.substitution.is_some() {
            if let Some(q) = &query {
                if has_space_or_control(q) {
                    return Outcome::Status(403);
                }
            }
            let url = qualify(&uri, vars);
            return Outcome::Proxy {
                url,
                query,
                noescape,
                rule: index,
            };
        }
        if let Some(code) = rule.flags.redirect {
            redirect = Some(code);
        }
        if rule.flags.passthrough {
            passthrough = true;
            break;
        }
        if rule.flags.end || rule.flags.last || rule.flags.proxy {
            break;
        }
        skip = rule.flags.skip;
    }
    conclude(
        Rewritten {
            uri,
            query,
            original_query,
            changed,
            noescape,
            redirect,
            passthrough,
        },
        vars,
    )
}

/// Where the rules left the url once they stopped.
struct Rewritten {
    uri: Vec<u8>,
    query: Option<String>,
    original_query: Option<String>,
    changed: bool,
    noescape: bool,
    redirect: Option<u16>,
    passthrough: bool,
}

/// The outcome of rules that neither proxied nor answered on their own:
/// unchanged, a redirect (or a url of this server made local again), a
/// path for ProxyPass, or a local path.
fn conclude(r: Rewritten, vars: &dyn Vars) -> Outcome {
    let Rewritten {
        mut uri,
        query,
        original_query,
        changed,
        noescape,
        redirect,
        passthrough,
    } = r;
    if !changed {
        return match redirect {
            Some(code) if !(300..400).contains(&code) => Outcome::Status(code),
            _ => Outcome::Unchanged,
        };
    }
    let absolute = is_absolute_url(&uri);
    if redirect.is_some() || absolute {
        let skip = scheme_length(&uri);
        let authority_end = uri[skip..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(uri.len(), |p| p + skip);
        let authority = String::from_utf8_lossy(&uri[skip..authority_end]).into_owned();
        let own_scheme = starts_with_ignore_case(&uri, vars.scheme().as_bytes());
        if redirect.is_none() && absolute && own_scheme && vars.is_self(&authority) {
            // Self-reduction: a url naming this server is a local path.
            uri.drain(..authority_end);
            if uri.is_empty() {
                uri.push(b'/');
            }
        } else {
            let status = redirect.unwrap_or(302);
            let url = qualify(&uri, vars);
            let location =
                redirect_location(&url, query.as_deref(), original_query.as_deref(), noescape);
            return Outcome::Redirect { status, location };
        }
    }
    if let Some(q) = &query {
        if has_space_or_control(q) {
            return Outcome::Status(403);
        }
    }
    if passthrough {
        return Outcome::PassThrough { path: uri, query };
    }
    Outcome::Local
}

/// Evaluates a rule's conditions (S87): AND-combined, `[OR]` joining a
/// condition with the next. Returns the captures of the last condition that
/// matched with a regex, for `%N`.
fn conditions_hold<T: Trace + ?Sized>(
    rule: &Rule,
    rule_caps: Option<&Captures<'_>>,
    vars: &dyn Vars,
    (index, trace): (usize, &mut T),
) -> Option<Option<OwnedCaptures>> {
    let mut last_caps: Option<OwnedCaptures> = None;
    let mut i = 0;
    let conds = &rule.conditions;
    while i < conds.len() {
        let c = &conds[i];
        let test = expand(
            &c.test,
            rule_caps,
            last_caps.as_ref(),
            vars,
            &RuleFlags::default(),
        )
        .text;
        let (ok, caps) = evaluate(c, &test, vars);
        trace.cond(index, i, &test, ok);
        if ok {
            if let Some(caps) = caps {
                last_caps = Some(caps);
            }
        }
        if c.or_next {
            if ok {
                // Skip the rest of this OR chain.
                while i < conds.len() && conds[i].or_next {
                    i += 1;
                }
            }
        } else if !ok {
            return None;
        }
        i += 1;
    }
    Some(last_caps)
}

/// Captures copied out of the string they were taken from.
#[derive(Debug, Clone)]
pub struct OwnedCaptures(Vec<Option<Vec<u8>>>);

impl OwnedCaptures {
    fn get(&self, n: usize) -> Option<&[u8]> {
        self.0.get(n).and_then(|m| m.as_deref())
    }
}

fn evaluate(c: &Cond, test: &[u8], vars: &dyn Vars) -> (bool, Option<OwnedCaptures>) {
    let (ok, caps) = match &c.pattern {
        CondPattern::Regex(re) => match re.captures(test) {
            Some(caps) if !c.negate => (
                true,
                Some(OwnedCaptures(
                    caps.iter()
                        .map(|m| m.map(|m| m.as_bytes().to_vec()))
                        .collect(),
                )),
            ),
            Some(_) => (true, None),
            None => (false, None),
        },
        CondPattern::Compare(order, or_equal, s) => {
            // Apache compares case-sensitively by length first, then bytes;
            // with [NC] it is plain case-insensitive string order.
            let ord = if c.nocase {
                test.to_ascii_lowercase()
                    .cmp(&s.to_ascii_lowercase().into_bytes())
            } else {
                test.len()
                    .cmp(&s.len())
                    .then_with(|| test.cmp(s.as_bytes()))
            };
            (
                ord == *order || (*or_equal && ord == std::cmp::Ordering::Equal),
                None,
            )
        }
        CondPattern::Int(op, n) => {
            let v: i64 = std::str::from_utf8(test)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            (op.holds(v, *n), None)
        }
        CondPattern::File(t) => (vars.file_test(*t, test), None),
    };
    (ok != c.negate, caps)
}

struct Expanded {
    text: Vec<u8>,
    /// The first `?` came from a back-reference or a variable.
    unsafe_qmark: bool,
}

/// Expands a template (Apache's `do_expand`).
fn expand(
    t: &Template,
    rule_caps: Option<&Captures<'_>>,
    cond_caps: Option<&OwnedCaptures>,
    vars: &dyn Vars,
    flags: &RuleFlags,
) -> Expanded {
    let mut text = Vec::new();
    let mut decided = false;
    let mut unsafe_qmark = false;
    for piece in &t.pieces {
        let (bytes, expanded): (std::borrow::Cow<'_, [u8]>, bool) = match piece {
            Piece::Literal(l) => (l.as_slice().into(), false),
            Piece::RuleRef(n) => {
                let raw = rule_caps
                    .and_then(|c| c.get(*n))
                    .map(|m| m.as_bytes())
                    .unwrap_or(b"");
                match &flags.escape_backrefs {
                    Some(e) => (escape_backref(raw, e).into(), true),
                    None => (raw.into(), true),
                }
            }
            Piece::CondRef(n) => (
                cond_caps
                    .and_then(|c| c.get(*n))
                    .unwrap_or(b"")
                    .to_vec()
                    .into(),
                true,
            ),
            Piece::Var(v) => (vars.var(v).into_bytes().into(), true),
            Piece::Map {
                map, key, default, ..
            } => {
                let key = expand(key, rule_caps, cond_caps, vars, flags).text;
                let value = match lookup(map, key) {
                    Some(v) => v,
                    None => default
                        .as_ref()
                        .map(|d| expand(d, rule_caps, cond_caps, vars, flags).text)
                        .unwrap_or_default(),
                };
                (value.into(), true)
            }
        };
        if !decided && bytes.contains(&b'?') {
            // Whichever part holds the first '?' decides (QSL: the last).
            unsafe_qmark = expanded;
            decided = !flags.qslast;
        }
        text.extend_from_slice(&bytes);
    }
    Expanded { text, unsafe_qmark }
}

/// A `RewriteMap` lookup (Apache's `lookup_map`): `None` for a key the
/// map does not have or an empty value.
fn lookup(map: &RewriteMap, mut key: Vec<u8>) -> Option<Vec<u8>> {
    let value = match map {
        RewriteMap::Int(IntMap::ToLower) => {
            key.make_ascii_lowercase();
            key
        }
        RewriteMap::Int(IntMap::ToUpper) => {
            key.make_ascii_uppercase();
            key
        }
        RewriteMap::Int(IntMap::Escape) => escape_uri(&key).into_bytes(),
        RewriteMap::Int(IntMap::Unescape) => unescape(&key),
        RewriteMap::Text { file, random } => {
            let entries = file.entries();
            let value = entries.entries.get(&key)?;
            if *random {
                pick(value).to_vec()
            } else {
                value.clone()
            }
        }
    };
    (!value.is_empty()).then_some(value)
}

/// One of the `|`-separated parts of a `rnd:` value, at random.
fn pick(value: &[u8]) -> &[u8] {
    use std::hash::{BuildHasher, Hasher};
    let parts = value.split(|&b| b == b'|').count();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let n = usize::try_from(random % parts as u64).unwrap_or(0);
    value.split(|&b| b == b'|').nth(n).unwrap_or(value)
}

/// `%XX` decoded; a `%` without two hex digits stays (Apache's
/// `ap_unescape_url`, whose refusal of `%2F` the map ignores).
fn unescape(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// `[B]`: escapes a back-reference (Apache's `escape_backref`).
fn escape_backref(raw: &[u8], e: &BackrefEscape) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() * 3);
    for &c in raw {
        let selected = if e.controls_only {
            c <= b' ' || c == 0x7f
        } else {
            e.only
                .as_ref()
                .is_none_or(|only| only.as_bytes().contains(&c))
        };
        if !selected || c.is_ascii_alphanumeric() || c == b'_' {
            out.push(c);
        } else if c == b' ' && !e.no_plus {
            out.push(b'+');
        } else {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        }
    }
    out
}

/// Splits the query from a rewritten url (Apache's `splitout_queryargs`).
fn split_query(uri: &mut Vec<u8>, query: &mut Option<String>, flags: &RuleFlags) {
    if flags.qsdiscard {
        *query = None;
    }
    let skip = scheme_length(uri);
    let pos = if flags.qslast {
        uri[skip..].iter().rposition(|&b| b == b'?')
    } else {
        uri[skip..].iter().position(|&b| b == b'?')
    };
    let Some(pos) = pos.map(|p| p + skip) else {
        return;
    };
    let new = String::from_utf8_lossy(&uri[pos + 1..]).into_owned();
    uri.truncate(pos);
    let mut q = if flags.qsappend {
        if new.is_empty() {
            query.take()
        } else {
            Some(match query.take() {
                Some(old) => format!("{new}&{old}"),
                None => new,
            })
        }
    } else {
        Some(new)
    };
    if let Some(s) = &mut q {
        if s.ends_with('&') {
            s.pop();
        }
        if s.is_empty() {
            q = None;
        }
    }
    *query = q;
}

/// Length of `scheme://` for the schemes a rewritten url may carry.
fn scheme_length(uri: &[u8]) -> usize {
    for scheme in [
        &b"http://"[..],
        b"https://",
        b"ws://",
        b"wss://",
        b"balancer://",
    ] {
        if starts_with_ignore_case(uri, scheme) {
            return scheme.len();
        }
    }
    0
}

pub fn is_absolute_url(uri: &[u8]) -> bool {
    scheme_length(uri) > 0
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A path made absolute with this server's own scheme and authority.
fn qualify(uri: &[u8], vars: &dyn Vars) -> Vec<u8> {
    if is_absolute_url(uri) {
        return uri.to_vec();
    }
    let mut out = format!("{}://{}", vars.scheme(), vars.self_authority()).into_bytes();
    if uri.first() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(uri);
    out
}

fn has_space_or_control(s: &str) -> bool {
    s.bytes().any(|b| b <= b' ' || b == 0x7f)
}

/// `ap_escape_uri` for a query: everything outside the path-safe set.
fn escape_uri(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"$-_.+!*'(),:@&=/~".contains(&b) {
            out.push(b as char);
        } else {
            // Apache's c2x writes lower-case hex here.
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Escapes the path of an absolute url for a Location header, leaving the
/// scheme and authority alone (Apache's `escape_absolute_uri`).
/// A redirect's `Location`: the url escaped as mod_rewrite escapes one
/// (unless `[NE]`), and its query, escaped too unless it is the request's
/// own.
pub(super) fn redirect_location(
    url: &[u8],
    query: Option<&str>,
    original_query: Option<&str>,
    noescape: bool,
) -> String {
    let mut location = if noescape {
        String::from_utf8_lossy(url).into_owned()
    } else {
        escape_for_redirect(url)
    };
    if let Some(q) = query {
        location.push('?');
        if noescape || Some(q) == original_query {
            location.push_str(q);
        } else {
            location.push_str(&escape_uri(q.as_bytes()));
        }
    }
    location
}

fn escape_for_redirect(url: &[u8]) -> String {
    let skip = scheme_length(url);
    let authority_end = url[skip..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(url.len(), |p| p + skip);
    let mut out = String::from_utf8_lossy(&url[..authority_end]).into_owned();
    out.push_str(&escape_uri(&url[authority_end..]));
    out
}

#[cfg(test)]
mod tests;
