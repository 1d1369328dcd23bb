//! mod_rewrite's directives: `RewriteEngine`, `RewriteOptions`,
//! `RewriteCond`, `RewriteRule` and `RewriteBase`, in server and
//! virtual-host context and per directory (`<Location>`, `<Directory>` and
//! their regex forms).

use std::sync::Arc;

use regex::bytes::RegexBuilder;

use super::balancer::ServerKey;
use super::directives::Scope;
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model::files::SectionMatcher;
use super::model::rewrite::{
    BackrefEscape, Cond, CondPattern, FileTest, IntMap, PerDir, Piece, RewriteMap, Rule, RuleFlags,
    Template, TextEntries, TextFile, Var, VARIABLES,
};
use super::model::{IntOp, LocationMatcher};
use super::values;
use super::{At, Builder};

/// `RewriteEngine`, `RewriteOptions`, `RewriteCond`, `RewriteRule`,
/// `RewriteBase` (and `RewriteMap`, to refuse it with a reason).
pub(super) fn rewrite(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let lower = node.name.to_ascii_lowercase();
    let key = at.server.key;
    if lower == "rewritemap" {
        let (name, map) = rewrite_map(b, node)?;
        b.rewrite_maps.push((key, name, map));
        return Ok(());
    }
    // The maps this server sees: the main server's, then its own (a later
    // one of a name wins, as in Apache).
    let maps: Vec<(String, Arc<RewriteMap>)> = b
        .rewrite_maps
        .iter()
        .filter(|(k, _, _)| *k == ServerKey::Main)
        .chain(
            b.rewrite_maps
                .iter()
                .filter(|(k, _, _)| *k == key && key != ServerKey::Main),
        )
        .map(|(_, n, m)| (n.clone(), m.clone()))
        .collect();
    let maps = maps.as_slice();
    let directory = match (at.scope, at.location.as_deref(), at.section.as_deref()) {
        (Scope::Location | Scope::LocationMatch, Some(loc), _) => match &loc.matcher {
            LocationMatcher::Prefix(p) => p.clone(),
            LocationMatcher::Regex(r) => r.as_str().as_bytes().to_vec(),
        },
        (Scope::Directory, _, Some(section)) => match &section.matcher {
            SectionMatcher::Wildcard(p) => p.clone(),
            SectionMatcher::Regex(r) => r.as_str().as_bytes().to_vec(),
        },
        _ => return at.server.rewrite.directive(node, &lower, maps),
    };
    let slot = match (at.location.as_deref_mut(), at.section.as_deref_mut()) {
        (Some(loc), _) => loc.rewrite.get_or_insert_with(Default::default).as_mut(),
        (None, Some(section)) => Arc::make_mut(
            section
                .settings
                .rewrite
                .get_or_insert_with(Default::default),
        ),
        (None, None) => return at.server.rewrite.directive(node, &lower, maps),
    };
    if slot.directory.is_empty() {
        // Apache's per-directory prefix always ends with a slash.
        slot.directory = directory;
        if slot.directory.last() != Some(&b'/') {
            slot.directory.push(b'/');
        }
    }
    per_directory(slot, node, &lower, maps)
}

/// `RewriteEngine On|Off`, in any context.
fn engine(node: &Node) -> Result<bool, ConfigError> {
    let [v] = node.args.as_slice() else {
        return Err(ConfigError::new(
            &node.origin,
            "RewriteEngine takes one argument, On or Off",
        ));
    };
    values::on_off(&node.origin, "RewriteEngine", v)
}

/// `RewriteOptions Inherit|InheritBefore`: whether the last one asks for
/// the inherited rules before this context's own (`None`: no option).
fn inherit_option(node: &Node) -> Result<Option<bool>, ConfigError> {
    let mut before = None;
    for opt in &node.args {
        before = Some(match opt.to_ascii_lowercase().as_str() {
            "inherit" => false,
            "inheritbefore" => true,
            _ => {
                return Err(ConfigError::new(
                    &node.origin,
                    format!("RewriteOptions: '{opt}' is not supported"),
                )
                .hint("wsgate supports RewriteOptions Inherit and InheritBefore"))
            }
        });
    }
    Ok(before)
}

/// The maps a template may name.
type Maps<'a> = &'a [(String, Arc<RewriteMap>)];

/// One directive inside a `<Location>` or `<Directory>`.
fn per_directory(
    slot: &mut PerDir,
    node: &Node,
    lower: &str,
    maps: Maps<'_>,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    match lower {
        "rewriteengine" => slot.engine = Some(engine(node)?),
        "rewriteoptions" => {
            if let Some(before) = inherit_option(node)? {
                slot.inherit = Some(before);
            }
        }
        "rewritebase" => {
            let [base] = node.args.as_slice() else {
                return Err(ConfigError::new(o, "RewriteBase takes one url-path"));
            };
            if !base.starts_with('/') {
                // Apache: "RewriteBase: argument is not a valid URL".
                return Err(ConfigError::new(
                    o,
                    format!("RewriteBase: '{base}' is not a url-path"),
                )
                .hint("write it with its leading slash, e.g. RewriteBase /app/"));
            }
            slot.base = Some(base.as_bytes().to_vec());
        }
        "rewritecond" => {
            let cond = parse_cond(node, true, maps)?;
            slot.pending.push(cond);
        }
        "rewriterule" => {
            let rule = parse_rule(node, std::mem::take(&mut slot.pending), maps)?;
            slot.rules.push(rule);
        }
        _ => {
            return Err(ConfigError::new(
                &node.origin,
                format!("{} is not allowed here", node.name),
            ))
        }
    }
    Ok(())
}

/// Whether a vhost runs the main server's rules too (`RewriteOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inherit {
    #[default]
    No,
    After,
    Before,
}

/// One server's rewrite directives before merging.
#[derive(Debug, Default)]
pub struct RewriteDraft {
    pub engine: Option<bool>,
    pub inherit: Inherit,
    pub rules: Vec<Rule>,
    pending: Vec<Cond>,
}

impl RewriteDraft {
    pub fn directive(
        &mut self,
        node: &Node,
        lower: &str,
        maps: Maps<'_>,
    ) -> Result<(), ConfigError> {
        let o = &node.origin;
        match lower {
            "rewriteengine" => self.engine = Some(engine(node)?),
            "rewriteoptions" => match inherit_option(node)? {
                Some(true) => self.inherit = Inherit::Before,
                Some(false) => self.inherit = Inherit::After,
                None => {}
            },
            "rewritecond" => {
                let cond = parse_cond(node, false, maps)?;
                self.pending.push(cond);
            }
            "rewriterule" => {
                let rule = parse_rule(node, std::mem::take(&mut self.pending), maps)?;
                self.rules.push(rule);
            }
            _ => {
                // Apache: "RewriteBase: only valid in per-directory config files".
                return Err(ConfigError::new(
                    o,
                    format!("{} is only valid per directory", node.name),
                )
                .hint("put it inside the <Directory> or <Location> whose rules it serves"));
            }
        }
        Ok(())
    }

    /// Conditions left without a rule; Apache ignores them silently.
    pub fn dangling(&self) -> Option<&Origin> {
        self.pending.first().map(|c| &c.origin)
    }
}

/// A `RewriteCond`; file tests only per directory (`per_dir`), where
/// the request has a filename.
fn parse_cond(node: &Node, per_dir: bool, maps: Maps<'_>) -> Result<Cond, ConfigError> {
    let o = &node.origin;
    let (test, pattern, flags) = match node.args.as_slice() {
        [t, p] => (t, p, None),
        [t, p, f] => (t, p, Some(f)),
        _ => {
            return Err(ConfigError::new(
                o,
                "RewriteCond takes a test string, a pattern and optional [flags]",
            )
            .hint("e.g. RewriteCond %{HTTP:Upgrade} websocket [NC]"))
        }
    };
    if test == "expr" {
        return Err(
            ConfigError::new(o, "RewriteCond expr is not supported by wsgate")
                .hint("write the test as %{VARIABLE} with a regex or a comparison"),
        );
    }
    let mut nocase = false;
    let mut or_next = false;
    if let Some(f) = flags {
        for flag in flag_list(o, f)? {
            match flag.to_ascii_lowercase().as_str() {
                "nc" | "nocase" => nocase = true,
                "or" | "ornext" => or_next = true,
                "nv" | "novary" => {}
                _ => {
                    return Err(
                        ConfigError::new(o, format!("RewriteCond: unknown flag '{flag}'"))
                            .hint("RewriteCond flags are NC, OR and NV"),
                    )
                }
            }
        }
    }
    let (negate, pattern) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern.as_str()),
    };
    let compare = |rest: &str, ord, or_equal| {
        CondPattern::Compare(ord, or_equal, rest.trim_matches('"').to_string())
    };
    use std::cmp::Ordering::*;
    let pattern = if let Some(rest) = pattern.strip_prefix("<=") {
        compare(rest, Less, true)
    } else if let Some(rest) = pattern.strip_prefix(">=") {
        compare(rest, Greater, true)
    } else if let Some(rest) = pattern.strip_prefix('<') {
        compare(rest, Less, false)
    } else if let Some(rest) = pattern.strip_prefix('>') {
        compare(rest, Greater, false)
    } else if let Some(rest) = pattern.strip_prefix('=') {
        // `=""` is the empty string.
        compare(rest, Equal, false)
    } else if let (Some(op), true) = (int_op(pattern), pattern.len() > 3) {
        // Apache writes the number right after the operator: `-lt1024`.
        let n = pattern[3..].parse::<i64>().map_err(|_| {
            ConfigError::new(
                o,
                format!(
                    "RewriteCond: '{pattern}': the number after {} is not an integer",
                    &pattern[..3]
                ),
            )
        })?;
        CondPattern::Int(op, n)
    } else if pattern.len() == 2 && pattern.starts_with('-') && "fdslLhxFU".contains(&pattern[1..])
    {
        let test = match &pattern[1..] {
            "d" => FileTest::Dir,
            "f" => FileTest::File,
            "s" => FileTest::NonEmpty,
            "l" | "L" | "h" => FileTest::Symlink,
            "x" => FileTest::Executable,
            _ => {
                return Err(ConfigError::new(
                    o,
                    format!("RewriteCond: the test '{pattern}' (a subrequest) is not supported"),
                )
                .hint("use -f or -d on %{REQUEST_FILENAME}"))
            }
        };
        if !per_dir {
            return Err(ConfigError::new(
                o,
                format!("RewriteCond: the file test '{pattern}' is supported per directory only"),
            )
            .hint("put the rules inside the <Directory> of the DocumentRoot, where the request has a filename"));
        }
        CondPattern::File(test)
    } else {
        CondPattern::Regex(compile(o, "RewriteCond", pattern, nocase)?)
    };
    Ok(Cond {
        test: template(o, test, maps)?,
        pattern,
        negate,
        nocase,
        or_next,
        origin: o.clone(),
    })
}

fn int_op(pattern: &str) -> Option<IntOp> {
    IntOp::from_test(pattern.get(..3)?)
}

fn parse_rule(node: &Node, conditions: Vec<Cond>, maps: Maps<'_>) -> Result<Rule, ConfigError> {
    let o = &node.origin;
    let (pattern, substitution, flags) = match node.args.as_slice() {
        [p, s] => (p, s, None),
        [p, s, f] => (p, s, Some(f)),
        _ => {
            return Err(ConfigError::new(
                o,
                "RewriteRule takes a pattern, a substitution and optional [flags]",
            )
            .hint("e.g. RewriteRule ^/?(.*) ws://backend:9080/$1 [P,L]"))
        }
    };
    let mut fl = RuleFlags::default();
    let mut nocase = false;
    if let Some(f) = flags {
        for flag in flag_list(o, f)? {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(v)),
                None => (flag.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("p" | "proxy", None) => fl.proxy = true,
                ("l" | "last", None) => fl.last = true,
                ("end", None) => fl.end = true,
                ("nc" | "nocase", None) => nocase = true,
                ("f" | "forbidden", None) => fl.forbidden = true,
                ("g" | "gone", None) => fl.gone = true,
                ("r" | "redirect", v) => fl.redirect = Some(redirect_code(o, v)?),
                ("qsa" | "qsappend", None) => fl.qsappend = true,
                ("qsd" | "qsdiscard", None) => fl.qsdiscard = true,
                ("qsl" | "qslast", None) => fl.qslast = true,
                ("ne" | "noescape", None) => fl.noescape = true,
                ("pt" | "passthrough", None) => fl.passthrough = true,
                ("c" | "chain", None) => fl.chain = true,
                ("s" | "skip", Some(n)) => {
                    fl.skip = n.parse().map_err(|_| ConfigError::new(o, format!("RewriteRule: skip count '{n}' is not a number")))?
                }
                ("ns" | "nosubreq", None) => {}
                ("unsafeallow3f", None) => fl.unsafe_allow_3f = true,
                ("b", only) => {
                    let e = fl.escape_backrefs.get_or_insert_with(BackrefEscape::default);
                    e.only = only.map(str::to_string);
                }
                ("bnp" | "backrefnoplus", None) => fl.escape_backrefs.get_or_insert_with(BackrefEscape::default).no_plus = true,
                ("bctls", None) => fl.escape_backrefs.get_or_insert_with(BackrefEscape::default).controls_only = true,
                ("e" | "env" | "co" | "cookie" | "t" | "type" | "h" | "handler" | "n" | "next" | "dpi" | "discardpath" | "unsafeprefixstat" | "bne", _) => {
                    return Err(ConfigError::new(o, format!("RewriteRule: flag '{flag}' is not supported by wsgate"))
                        .hint("supported: P, L, END, NC, F, G, R[=code], QSA, QSD, QSL, NE, B, BNP, BCTLS, PT, C, S=n, NS, UnsafeAllow3F"))
                }
                _ => {
                    return Err(ConfigError::new(o, format!("RewriteRule: unknown flag '{flag}'"))
                        .hint("supported: P, L, END, NC, F, G, R[=code], QSA, QSD, QSL, NE, B, BNP, BCTLS, PT, C, S=n, NS, UnsafeAllow3F"))
                }
            }
        }
    }
    if fl.proxy && (fl.redirect.is_some() || fl.forbidden || fl.gone) {
        return Err(ConfigError::new(
            o,
            "RewriteRule: [P] cannot be combined with R, F or G",
        ));
    }
    let (negate, pattern) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern.as_str()),
    };
    let substitution = if substitution == "-" {
        None
    } else {
        Some(template(o, substitution, maps)?)
    };
    if fl.proxy {
        if let Some(t) = &substitution {
            check_proxy_target(o, t)?;
        }
    }
    Ok(Rule {
        pattern: compile(o, "RewriteRule", pattern, nocase)?,
        negate,
        substitution,
        flags: fl,
        conditions,
        origin: o.clone(),
    })
}

/// A `[P]` substitution must start with a literal scheme wsgate proxies to
/// (or be a path, which Apache qualifies with the server itself).
fn check_proxy_target(o: &Origin, t: &Template) -> Result<(), ConfigError> {
    let Some(Piece::Literal(first)) = t.pieces.first() else {
        return Err(ConfigError::new(o, "RewriteRule [P]: the substitution must start with a literal scheme and host, e.g. ws://backend/$1")
            .hint("a target whose scheme or host comes from the request could send it anywhere"));
    };
    let text = String::from_utf8_lossy(first);
    if text.starts_with('/') {
        return Ok(());
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("balancer://") {
        return Ok(());
    }
    if !["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return Err(ConfigError::new(
            o,
            format!(
                "RewriteRule [P]: '{text}' does not start with http://, https://, ws:// or wss://"
            ),
        ));
    }
    Ok(())
}

fn redirect_code(o: &Origin, v: Option<&str>) -> Result<u16, ConfigError> {
    let Some(v) = v else { return Ok(302) };
    let code = match v.to_ascii_lowercase().as_str() {
        "permanent" => 301,
        "temp" => 302,
        "seeother" => 303,
        n => n
            .parse::<u16>()
            .map_err(|_| ConfigError::new(o, format!("RewriteRule: R={v} is not a status code")))?,
    };
    if !(300..600).contains(&code) {
        return Err(ConfigError::new(
            o,
            format!("RewriteRule: R={v}: the status must be between 300 and 599"),
        ));
    }
    Ok(code)
}

/// `[A,B=c,…]` into its flags.
fn flag_list<'a>(o: &Origin, f: &'a str) -> Result<Vec<&'a str>, ConfigError> {
    let inner = f
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| {
            ConfigError::new(
                o,
                format!("flags '{f}' must be written in brackets, e.g. [P,L]"),
            )
        })?;
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect())
}

fn compile(
    o: &Origin,
    directive: &str,
    pattern: &str,
    nocase: bool,
) -> Result<regex::bytes::Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .case_insensitive(nocase)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let mut err = ConfigError::new(o, format!("{directive}: cannot compile regular expression '{pattern}'"));
            if detail.contains("look-around") || detail.contains("backreference") {
                err = err.hint("wsgate uses Rust's regex dialect, which has no look-around or backreferences inside a pattern (PCRE has); rewrite the pattern or split it into a RewriteCond");
            } else if let Some(last) = detail.lines().rev().find(|l| l.starts_with("error:")) {
                err = err.hint(last.trim_start_matches("error:").trim().to_string());
            }
            err
        })
}

/// A test string or substitution: `$N`, `%N`, `%{VAR}`, `\x`.
pub fn template(o: &Origin, text: &str, maps: Maps<'_>) -> Result<Template, ConfigError> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut i = 0;
    let flush = |literal: &mut Vec<u8>, pieces: &mut Vec<Piece>| {
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(literal)));
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match (c, bytes.get(i + 1)) {
            (b'\\', Some(&next)) => {
                literal.push(next);
                i += 2;
            }
            (b'$' | b'%', Some(d)) if d.is_ascii_digit() => {
                flush(&mut literal, &mut pieces);
                let n = usize::from(d - b'0');
                pieces.push(if c == b'$' {
                    Piece::RuleRef(n)
                } else {
                    Piece::CondRef(n)
                });
                i += 2;
            }
            (b'%', Some(b'{')) => {
                let Some(end) = text[i + 2..].find('}') else {
                    literal.extend_from_slice(b"%{");
                    i += 2;
                    continue;
                };
                let name = &text[i + 2..i + 2 + end];
                let var = Var::parse(name).ok_or_else(|| {
                    let mut e = ConfigError::new(o, format!("unknown variable %{{{name}}}"));
                    e = if name.starts_with("LA-U") || name.starts_with("LA-F") {
                        e.hint("look-ahead variables are not supported")
                    } else if name.starts_with("ENV:") || name.starts_with("SSL:") {
                        e.hint("environment and SSL variables are not available in this version of wsgate")
                    } else {
                        e.hint(format!("wsgate knows {}", VARIABLES))
                    };
                    e
                })?;
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Var(var));
                i += 2 + end + 1;
            }
            (b'$', Some(b'{')) => {
                let Some((name, key, default, end)) = map_lookup(&text[i + 2..]) else {
                    literal.extend_from_slice(b"${");
                    i += 2;
                    continue;
                };
                let Some((_, map)) = maps.iter().rev().find(|(n, _)| n == name) else {
                    let written = &text[i..i + 2 + end + 1];
                    let e = ConfigError::new(
                        o,
                        format!("{written} is a RewriteMap lookup, and no map '{name}' exists: Apache would look it up as empty and never match"),
                    );
                    return Err(if name.eq_ignore_ascii_case("HTTP") {
                        e.hint(format!(
                            "the request header is %{{HTTP:{key}}} (with %, not $)"
                        ))
                    } else {
                        e.hint("define the map with RewriteMap before the lines that use it (in this server or the main one); mod_rewrite's variables are written %{NAME}")
                    });
                };
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Map {
                    name: name.to_string(),
                    map: map.clone(),
                    key: template(o, key, maps)?,
                    default: default.map(|d| template(o, d, maps)).transpose()?,
                });
                i += 2 + end + 1;
            }
            _ => {
                literal.push(c);
                i += 1;
            }
        }
    }
    flush(&mut literal, &mut pieces);
    Ok(Template { pieces })
}

/// `name:key|default}` after a `${`: the parts and where the closing
/// brace is, braces nested inside counted (Apache's `find_closing_curly`
/// and `find_char_in_curlies`); `None` when it has no `:` or no end.
fn map_lookup(text: &str) -> Option<(&str, &str, Option<&str>, usize)> {
    let mut depth = 0usize;
    let (mut colon, mut bar) = (None, None);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                let colon = colon?;
                let name = &text[..colon];
                return Some(match bar {
                    Some(b) => (name, &text[colon + 1..b], Some(&text[b + 1..i]), i),
                    None => (name, &text[colon + 1..i], None, i),
                });
            }
            '}' => depth -= 1,
            ':' if depth == 0 && colon.is_none() => colon = Some(i),
            '|' if depth == 0 && colon.is_some() && bar.is_none() => bar = Some(i),
            _ => {}
        }
    }
    None
}

/// `RewriteMap NAME TYPE:SOURCE`: the map, its file read now.
fn rewrite_map(b: &Builder, node: &Node) -> Result<(String, Arc<RewriteMap>), ConfigError> {
    let o = &node.origin;
    let (name, source) = match node.args.as_slice() {
        [n, s] | [n, s, _] => (n, s),
        _ => {
            return Err(
                ConfigError::new(o, "RewriteMap takes a name and TYPE:SOURCE")
                    .hint("e.g. RewriteMap backends txt:/etc/apache2/backends.map"),
            )
        }
    };
    let lower = source.to_ascii_lowercase();
    let (kind, rest) = match lower.split_once(':') {
        Some((k, _))
            if ["txt", "rnd", "int", "prg", "dbd", "fastdbd"].contains(&k)
                || k.starts_with("dbm") =>
        {
            (k.to_string(), &source[k.len() + 1..])
        }
        _ => ("txt".to_string(), source.as_str()),
    };
    let map = match kind.as_str() {
        "int" => {
            RewriteMap::Int(match rest {
                "tolower" => IntMap::ToLower,
                "toupper" => IntMap::ToUpper,
                "escape" => IntMap::Escape,
                "unescape" => IntMap::Unescape,
                _ => return Err(ConfigError::new(
                    o,
                    format!("RewriteMap: internal map not found: {rest}"),
                )
                .hint(
                    "the internal maps are int:tolower, int:toupper, int:escape and int:unescape",
                )),
            })
        }
        "txt" | "rnd" => {
            let path = b.root.join(rest);
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let text = super::source::read(&path).map_err(|e| {
                ConfigError::new(
                    o,
                    format!("RewriteMap: file for map {name} cannot be read: {}: {e}", path.display()),
                )
                .hint("Apache refuses a map file that does not exist; wsgate reads it at startup, so it must be readable too")
            })?;
            let entries = TextEntries::parse(&text, modified);
            RewriteMap::Text {
                file: TextFile::new(path, entries),
                random: kind == "rnd",
            }
        }
        "prg" => {
            return Err(ConfigError::new(
                o,
                "RewriteMap prg: is not supported: wsgate runs no external map programs",
            )
            .hint("compute the mapping ahead into a text map (txt:), or do it in the backend"))
        }
        "dbd" | "fastdbd" => {
            return Err(ConfigError::new(
                o,
                format!("RewriteMap {kind}: is not supported: wsgate has no SQL maps"),
            )
            .hint("export the table to a text map (txt:, one 'key value' line each)"))
        }
        _ => return Err(
            ConfigError::new(o, "RewriteMap dbm: is not supported by wsgate").hint(
                "use the text file the DBM file was made from (httxt2dbm's input) as a txt: map",
            ),
        ),
    };
    Ok((name.clone(), Arc::new(map)))
}

#[cfg(test)]
mod tests {
    use super::map_lookup;
    use crate::config::model::rewrite::TextEntries;

    #[test]
    fn a_lookup_ends_at_its_own_brace() {
        assert_eq!(map_lookup("m:$1}x"), Some(("m", "$1", None, 4)));
        assert_eq!(
            map_lookup("m:${n:$1}|${o:x|y}}rest"),
            Some(("m", "${n:$1}", Some("${o:x|y}"), 18))
        );
        assert_eq!(map_lookup("VAR}"), None);
        assert_eq!(map_lookup("m:unclosed"), None);
    }

    #[test]
    fn a_text_map_keeps_a_keys_first_line_and_its_first_word() {
        let t = TextEntries::parse(
            b"# c\nk v1 more\n k2 skipped\nk v2\nalone\n\tx y\nk2 v\n",
            None,
        );
        assert_eq!(
            t.entries.get(&b"k"[..]).map(Vec::as_slice),
            Some(&b"v1"[..])
        );
        assert_eq!(
            t.entries.get(&b"k2"[..]).map(Vec::as_slice),
            Some(&b"v"[..])
        );
        assert!(!t.entries.contains_key(&b"alone"[..]));
        assert_eq!(t.entries.len(), 2);
    }
}
