//! mod_negotiation's `Options MultiViews`, as plain computation: which
//! files of a folder are variants of a name that does not exist (mod_mime
//! must know every extension the name does not have), how each rates
//! against the request's `Accept`, `Accept-Language`, `Accept-Charset` and
//! `Accept-Encoding` (Apache's own algorithm, with its fiddles for clients
//! that send no q-values), and the `Vary`, `Alternates` and variant list
//! Apache sends with the choice or the 406. The file server reads the
//! folder and serves the choice.
//!
//! Not done: type maps (a folder where one is a variant answers 500), the `Negotiate` header of
//! transparent negotiation (answered as if absent: never a 300 list), and
//! the `prefer-language`, `no-gzip` and `gzip-only-text/html` variables.

use crate::config::model::files::{Mime, Negotiation};

/// The media type a variant with a handler and no type gets (Apache's
/// `CGI_MAGIC_TYPE`).
const CGI_TYPE: &str = "application/x-httpd-cgi";

/// One file that may answer for the name asked.
#[derive(Debug, Clone)]
pub struct Variant {
    pub file_name: Vec<u8>,
    /// Lower case, without parameters.
    pub mime_type: String,
    pub charset: String,
    pub languages: Vec<String>,
    pub encoding: Option<String>,
    pub length: u64,
    /// mod_mime gave it a handler (`AddHandler`).
    pub handler: bool,
    /// That handler is `type-map`: Apache would read the file as the
    /// list of variants, which wsgate does not.
    pub type_map: bool,
    source_quality: f32,
    level: f32,
    level_matched: f32,
    mime_stars: u8,
    lang_index: i32,
    mime_type_quality: f32,
    lang_quality: f32,
    charset_quality: f32,
    encoding_quality: f32,
}

/// What mod_mime and mod_negotiation make of `file` (a regular file in
/// the folder) as a variant of `wanted`: `None` when it is not one.
pub fn variant(mime: &Mime, wanted: &[u8], file: &[u8], length: u64) -> Option<Variant> {
    if file.len() <= wanted.len() || !file.starts_with(wanted) || file[wanted.len()] != b'.' {
        return None;
    }
    let name = String::from_utf8_lossy(file);
    // mod_mime's exception list: the base name (leading dots kept), then
    // each extension it knows nothing of.
    let lead = name.len() - name.trim_start_matches('.').len();
    let (base, rest) = match name[lead..].find('.') {
        Some(i) => (&name[..lead + i], &name[lead + i + 1..]),
        None => (&name[..], ""),
    };
    let mut exceptions = vec![base.to_string()];
    let mut found_any = false;
    let (mut ty, mut charset, mut handler) = (None::<&str>, None::<&str>, false);
    let mut type_map = false;
    let mut languages = Vec::new();
    let mut encoding: Option<String> = None;
    for ext in rest.split('.').filter(|e| !e.is_empty()) {
        let lower = ext.to_ascii_lowercase();
        let mut found = false;
        if let Some(t) = mime.types.get(&lower) {
            ty = Some(t);
            found = true;
        }
        if let Some(c) = mime.charsets.get(&lower) {
            charset = Some(c);
            found = true;
        }
        if let Some(l) = mime.languages.get(&lower) {
            languages.push(l.to_ascii_lowercase());
            found = true;
        }
        if let Some(e) = mime.encodings.get(&lower) {
            encoding = Some(match encoding {
                Some(before) => format!("{before}, {e}"),
                None => e.clone(),
            });
            found = true;
        }
        // A handler's extension is not metadata (MultiviewsMatch
        // NegotiatedOnly, the default).
        if let Some(h) = mime.handlers.get(&lower) {
            handler = true;
            type_map |= h.eq_ignore_ascii_case("type-map");
        }
        if found {
            found_any = true;
        } else {
            exceptions.push(ext.to_string());
        }
    }
    if !found_any {
        return None;
    }
    // Each exception must be the next of the wanted name's segments.
    let wanted = String::from_utf8_lossy(wanted);
    let mut left = exceptions.iter().peekable();
    for segment in wanted.split('.') {
        if left.peek().is_some_and(|e| **e == segment) {
            left.next();
        }
        if left.peek().is_none() {
            break;
        }
    }
    if left.peek().is_some() {
        return None;
    }
    let content_type = match (ty, handler) {
        (Some(t), _) => t.to_string(),
        (None, true) => CGI_TYPE.to_string(),
        (None, false) => return None,
    };
    let parsed = parse_list(&content_type).into_iter().next()?;
    Some(Variant {
        file_name: file.to_vec(),
        mime_type: parsed.name,
        // mod_mime adds AddCharset's charset to the type.
        charset: charset
            .map(str::to_ascii_lowercase)
            .unwrap_or(parsed.charset),
        languages,
        encoding,
        length,
        handler,
        type_map,
        source_quality: parsed.quality,
        level: parsed.level,
        level_matched: 0.0,
        mime_stars: 0,
        lang_index: -1,
        mime_type_quality: 1.0,
        lang_quality: 1.0,
        charset_quality: 1.0,
        encoding_quality: 1.0,
    })
}

/// One item of an `Accept…` header (or of a variant's type).
#[derive(Debug, Clone)]
struct Item {
    name: String,
    quality: f32,
    level: f32,
    charset: String,
}

/// Apache's reading of q-values: `0.xyz` to three digits, anything not
/// starting `0` or `.` is 1.
fn atoq(s: &str) -> f32 {
    let s = s.trim_start();
    if s.is_empty() {
        return 1.0;
    }
    let b = s.as_bytes();
    let mut i = 0;
    if b[0] != b'.' {
        if b[0] != b'0' {
            return 1.0;
        }
        i = 1;
    }
    if b.get(i) != Some(&b'.') {
        return 0.0;
    }
    let digit = |j: usize| {
        b.get(j)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i32::from(c - b'0'))
    };
    let mut v = 0;
    if let Some(d) = digit(i + 1) {
        v += d * 100;
        if let Some(d) = digit(i + 2) {
            v += d * 10;
            if let Some(d) = digit(i + 3).filter(|&d| d > 0) {
                v += d;
            }
        }
    }
    v as f32 / 1000.0
}

/// An `Accept`-style list: `name;q=N;level=N;charset=X, …`, names lower
/// case (`text/html` at level 2 unless it says otherwise).
fn parse_list(line: &str) -> Vec<Item> {
    let mut out = Vec::new();
    for entry in line.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut item = Item {
            level: if name == "text/html" { 2.0 } else { 0.0 },
            name,
            quality: 1.0,
            charset: String::new(),
        };
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"').to_ascii_lowercase();
            match k.as_str() {
                "q" | "qs" => item.quality = atoq(&v),
                "level" => item.level = v.parse::<i32>().unwrap_or(0) as f32,
                "charset" => item.charset = v,
                _ => {}
            }
        }
        out.push(item);
    }
    out
}

/// The request's side.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub accept: Option<&'a str>,
    pub language: Option<&'a str>,
    pub charset: Option<&'a str>,
    pub encoding: Option<&'a str>,
    /// Not a GET, or with a query or path info: a variant with a handler
    /// is much preferred (Apache's `prefer_scripts`).
    pub prefer_scripts: bool,
}

/// The variant chosen (an index into the variants), or none acceptable.
pub fn choose(variants: &mut [Variant], asked: &Asked<'_>, prefs: &Negotiation) -> Option<usize> {
    let mut accepts = match asked.accept {
        Some(a) => parse_list(a),
        None => vec![Item {
            name: "*/*".into(),
            quality: 1.0,
            level: 0.0,
            charset: String::new(),
        }],
    };
    let accept_q = accepts.iter().any(|a| a.quality < 1.0);
    accepts.push(Item {
        name: CGI_TYPE.into(),
        quality: if asked.prefer_scripts { 2.0 } else { 0.001 },
        level: 0.0,
        charset: String::new(),
    });
    let langs = asked.language.map(parse_list);
    let charsets = asked.charset.map(parse_list);
    let encodings = asked.encoding.map(parse_list);
    let default_lang_q = if variants.iter().any(|v| !v.languages.is_empty()) {
        0.0001
    } else {
        1.0
    };
    let mut best: Option<usize> = None;
    let mut bestq = 0.0f32;
    for i in 0..variants.len() {
        let v = &mut variants[i];
        v.mime_stars = 0;
        v.level_matched = 0.0;
        v.lang_index = -1;
        (v.lang_quality, v.charset_quality, v.encoding_quality) = (1.0, 1.0, 1.0);
        accept_quality(v, &accepts, accept_q);
        language_quality(v, langs.as_deref(), default_lang_q, prefs);
        encoding_quality(v, encodings.as_deref());
        charset_quality(v, charsets.as_deref());
        let better = match best {
            None => better_than(&variants[i], None, &mut bestq),
            Some(b) => better_than(&variants[i], Some(&variants[b]), &mut bestq),
        };
        if better {
            best = Some(i);
        }
    }
    best.filter(|_| bestq > 0.0)
}

fn mime_match(accept: &Item, v: &mut Variant) -> bool {
    let a = accept.name.as_str();
    if a == "*" || a == "*/*" {
        v.mime_stars = v.mime_stars.max(1);
        return true;
    }
    if let Some(major) = a.strip_suffix("/*") {
        if v.mime_type.starts_with(major) && v.mime_type.as_bytes().get(major.len()) == Some(&b'/')
        {
            v.mime_stars = v.mime_stars.max(2);
            return true;
        }
        return false;
    }
    if a == v.mime_type && accept.level >= v.level {
        v.level_matched = v.level;
        v.mime_stars = 3;
        return true;
    }
    false
}

fn accept_quality(v: &mut Variant, accepts: &[Item], accept_q: bool) {
    let mut q = 0.0;
    for a in accepts {
        let before = v.mime_stars;
        if !mime_match(a, v) || before == v.mime_stars {
            continue;
        }
        q = match v.mime_stars {
            1 if !accept_q => 0.01,
            2 if !accept_q => 0.02,
            _ => a.quality,
        };
    }
    v.mime_type_quality = q;
}

fn language_quality(v: &mut Variant, langs: Option<&[Item]>, default_q: f32, prefs: &Negotiation) {
    if v.languages.is_empty() {
        v.lang_quality = default_q;
        return;
    }
    if let Some(accs) = langs {
        let mut best: Option<&Item> = None;
        let mut star: Option<&Item> = None;
        let mut fiddle_q = 0.0;
        let mut any_on_star = false;
        for lang in &v.languages {
            let mut this: Option<&Item> = None;
            let mut longest = 0;
            for a in accs {
                if a.name == "*" {
                    star.get_or_insert(a);
                    continue;
                }
                let alen = a.name.len();
                if lang.len() >= alen
                    && lang.as_bytes()[..alen] == *a.name.as_bytes()
                    && matches!(lang.as_bytes().get(alen), None | Some(b'-'))
                    && alen > longest
                {
                    longest = alen;
                    this = Some(a);
                }
                if this.is_none() {
                    if let Some(p) = a.name.find('-') {
                        if lang.len() >= p && lang.as_bytes()[..p] == a.name.as_bytes()[..p] {
                            fiddle_q = 0.001;
                        }
                    }
                }
            }
            if best.is_none() || this.is_some_and(|t| best.is_some_and(|b| t.quality > b.quality)) {
                best = this;
            }
            if this.is_none() && star.is_some() {
                any_on_star = true;
            }
        }
        if let (true, Some(s)) = (any_on_star, star) {
            if best.is_none_or(|b| s.quality > b.quality) {
                best = Some(s);
            }
        }
        v.lang_quality = best.map_or(fiddle_q, |b| b.quality);
    }
    // ForceLanguagePriority (Prefer by default) with LanguagePriority.
    let force = prefs.force_language_priority;
    let prefer = force & Negotiation::PREFER != 0;
    let fallback = force & Negotiation::FALLBACK != 0;
    if (prefer && v.lang_index < 0) || (fallback && v.lang_quality == 0.0) {
        let best_idx = v
            .languages
            .iter()
            .filter_map(|l| {
                prefs.language_priority.iter().position(|p| {
                    l.len() >= p.len() && l.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                })
            })
            .min();
        if let Some(idx) = best_idx {
            let idx = i32::try_from(idx).unwrap_or(i32::MAX);
            if v.lang_quality != 0.0 {
                if prefer {
                    v.lang_index = idx;
                }
            } else if fallback {
                v.lang_index = idx;
                v.lang_quality = 0.0001;
            }
        }
    }
}

fn charset_quality(v: &mut Variant, charsets: Option<&[Item]>) {
    let Some(accs) = charsets else { return };
    let charset = if v.charset.is_empty() {
        if !v.mime_type.starts_with("text/") {
            return;
        }
        "iso-8859-1"
    } else {
        v.charset.as_str()
    };
    let mut star = None;
    for a in accs {
        if a.name == charset {
            v.charset_quality = a.quality;
            return;
        }
        if a.name == "*" {
            star = Some(a.quality);
        }
    }
    v.charset_quality = match star {
        Some(q) => q,
        None if charset == "iso-8859-1" => 1.0,
        None => 0.0,
    };
}

fn identity(enc: Option<&str>) -> bool {
    enc.is_none_or(|e| e.is_empty() || e == "7bit" || e == "8bit" || e == "binary")
}

fn encoding_quality(v: &mut Variant, encodings: Option<&[Item]>) {
    let enc = v.encoding.as_deref();
    let Some(accs) = encodings else {
        v.encoding_quality = if identity(enc) { 1.0 } else { 0.5 };
        return;
    };
    let (enc, if_not_found) = match enc {
        e if identity(e) => ("identity", 0.0001),
        Some(e) => (e, 0.0),
        None => ("identity", 0.0001),
    };
    let enc = enc.strip_prefix("x-").unwrap_or(enc);
    let mut star = None;
    for a in accs {
        let name = a.name.strip_prefix("x-").unwrap_or(&a.name);
        if name == enc {
            v.encoding_quality = a.quality;
            return;
        }
        if name == "*" {
            star = Some(a.quality);
        }
    }
    v.encoding_quality = star.unwrap_or(if_not_found);
}

fn pseudo_html(v: &Variant) -> bool {
    v.mime_type == "text/html"
}

/// Apache's `level_cmp`: 1 when `a` is better, -1 worse, 0 tied.
fn level_cmp(a: &Variant, b: &Variant) -> i32 {
    if pseudo_html(a) && !pseudo_html(b) {
        return 0;
    }
    if !pseudo_html(a) && a.mime_type != b.mime_type {
        return 0;
    }
    if a.level_matched > b.level_matched {
        return 1;
    }
    if a.level_matched < b.level_matched {
        return -1;
    }
    if a.level < b.level {
        return 1;
    }
    if a.level > b.level {
        return -1;
    }
    0
}

/// Apache's `is_variant_better` (its own algorithm, not RVSA/1.0).
fn better_than(v: &Variant, best: Option<&Variant>, bestq: &mut f32) -> bool {
    if v.encoding_quality == 0.0
        || v.lang_quality == 0.0
        || v.source_quality == 0.0
        || v.charset_quality == 0.0
        || v.mime_type_quality == 0.0
    {
        return false;
    }
    let q = v.mime_type_quality * v.source_quality;
    if q == 0.0 || q < *bestq {
        return false;
    }
    let Some(best) = best.filter(|_| q <= *bestq) else {
        *bestq = q;
        return true;
    };
    let mut take = || {
        *bestq = q;
        true
    };
    if v.lang_quality < best.lang_quality {
        return false;
    }
    if v.lang_quality > best.lang_quality {
        return take();
    }
    if best.lang_index != -1 && (v.lang_index == -1 || v.lang_index > best.lang_index) {
        return false;
    }
    if v.lang_index != -1 && (best.lang_index == -1 || v.lang_index < best.lang_index) {
        return take();
    }
    match level_cmp(v, best) {
        -1 => return false,
        1 => return take(),
        _ => {}
    }
    if v.charset_quality < best.charset_quality {
        return false;
    }
    let own = |c: &str| !c.is_empty() && c != "iso-8859-1";
    if v.charset_quality > best.charset_quality || (own(&v.charset) && !own(&best.charset)) {
        return take();
    }
    if v.encoding_quality < best.encoding_quality {
        return false;
    }
    if v.encoding_quality > best.encoding_quality {
        return take();
    }
    if v.length >= best.length {
        return false;
    }
    take()
}

/// Apache's `Vary` for a negotiated answer: `negotiate` when transparent,
/// then each dimension in which the variants differ.
pub fn vary(variants: &[Variant], transparent: bool) -> Option<String> {
    let first = variants.first()?;
    let differ = |f: &dyn Fn(&Variant) -> String| variants.iter().any(|v| f(v) != f(first));
    let mut parts = Vec::new();
    if transparent {
        parts.push("negotiate");
    }
    if differ(&|v| v.mime_type.clone()) {
        parts.push("accept");
    }
    if differ(&|v| v.languages.join(",")) {
        parts.push("accept-language");
    }
    if differ(&|v| v.charset.clone()) {
        parts.push("accept-charset");
    }
    if differ(&|v| v.encoding.clone().unwrap_or_default()) {
        parts.push("accept-encoding");
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// mod_negotiation's fix-up of a file's `Content-Encoding` (any file's,
/// negotiated or not): the client's own token when its `Accept-Encoding`
/// names the encoding with or without `x-` (`gzip` for `x-gzip`), the
/// plain one first.
pub fn fix_encoding(encoding: &str, accept: Option<&str>) -> String {
    let Some(accept) = accept else {
        return encoding.to_string();
    };
    let enc = encoding.strip_prefix("x-").unwrap_or(encoding);
    let mut x_enc = None;
    for item in accept.split(',') {
        let name = item.split(';').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case(enc) {
            return name.to_ascii_lowercase();
        }
        // By bytes: the client's text need not split at a character here.
        let n = name.as_bytes();
        if n.len() == enc.len() + 2
            && n[..2].eq_ignore_ascii_case(b"x-")
            && n[2..].eq_ignore_ascii_case(enc.as_bytes())
        {
            x_enc = Some(name);
        }
    }
    x_enc.unwrap_or(encoding).to_ascii_lowercase()
}

/// A variant's name as a url-path segment (Apache's
/// `ap_escape_path_segment`).
pub fn escaped_name(v: &Variant) -> String {
    let mut out = String::new();
    for &b in &v.file_name {
        if b.is_ascii_alphanumeric() || b"$-_.+!*'(),:@&=~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The `Alternates` field of a 406.
pub fn alternates(variants: &[Variant]) -> String {
    let items: Vec<String> = variants
        .iter()
        .map(|v| {
            let mut s = format!(
                "{{\"{}\" {}",
                escaped_name(v),
                quality_text(v.source_quality)
            );
            if !v.mime_type.is_empty() {
                s.push_str(&format!(" {{type {}}}", v.mime_type));
            }
            if !v.charset.is_empty() {
                s.push_str(&format!(" {{charset {}}}", v.charset));
            }
            if !v.languages.is_empty() {
                s.push_str(&format!(" {{language {}}}", v.languages.join(",")));
            }
            if let Some(e) = v.encoding.as_deref().filter(|e| !e.is_empty()) {
                s.push_str(&format!(" {{encoding {e}}}"));
            }
            if !v.handler {
                s.push_str(&format!(" {{length {}}}", v.length));
            }
            s.push('}');
            s
        })
        .collect();
    items.join(", ")
}

/// `%1.3f` with trailing zeros taken off as Apache does (`1`, `0.5`).
fn quality_text(q: f32) -> String {
    let mut s = format!("{q:1.3}");
    if s.ends_with("000") {
        s.truncate(s.len() - 4);
    } else {
        while s.ends_with('0') {
            s.pop();
        }
    }
    s
}

/// The variant list of a 406's page.
pub fn variant_list(variants: &[Variant]) -> String {
    let mut out = String::from("Available variants:\n<ul>\n");
    for v in variants {
        let name = String::from_utf8_lossy(&v.file_name);
        out.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ",
            escaped_name(v),
            crate::http::write::escape_html(&name)
        ));
        if !v.mime_type.is_empty() {
            out.push_str(&format!(", type {}", v.mime_type));
        }
        if !v.languages.is_empty() {
            out.push_str(&format!(", language {}", v.languages.join(",")));
        }
        if !v.charset.is_empty() {
            out.push_str(&format!(", charset {}", v.charset));
        }
        if let Some(e) = &v.encoding {
            out.push_str(&format!(", encoding {e}"));
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_encoding_is_compared_by_bytes_not_sliced_in_a_character() {
        // Two bytes into `a€gz` is inside the euro sign: no panic.
        assert_eq!(super::fix_encoding("gzip", Some("a€gz, x-gzip")), "x-gzip");
        assert_eq!(super::fix_encoding("gzip", Some("a€gz")), "gzip");
    }

    use super::*;

    fn mime() -> Mime {
        let mut m = Mime::default();
        for (e, t) in [
            ("gif", "image/gif"),
            ("png", "image/png"),
            ("html", "text/html"),
            ("txt", "text/plain"),
        ] {
            m.types.insert(e.into(), t.into());
        }
        m.languages.insert("en".into(), "en".into());
        m.languages.insert("fr".into(), "fr".into());
        m.encodings.insert("gz".into(), "x-gzip".into());
        m
    }

    fn vars(names: &[(&str, u64)]) -> Vec<Variant> {
        let m = mime();
        names
            .iter()
            .filter_map(|(n, l)| variant(&m, b"doc", n.as_bytes(), *l))
            .collect()
    }

    fn pick(names: &[(&str, u64)], asked: Asked<'_>) -> Option<String> {
        let mut v = vars(names);
        choose(&mut v, &asked, &Negotiation::default())
            .map(|i| String::from_utf8_lossy(&v[i].file_name).into_owned())
    }

    #[test]
    fn variants_need_every_extension_known() {
        let m = mime();
        assert!(variant(&m, b"doc", b"doc.html.en", 1).is_some());
        assert!(
            variant(&m, b"doc", b"doc.bak.html", 1).is_none(),
            "bak unknown"
        );
        assert!(variant(&m, b"doc", b"docs.html", 1).is_none());
        assert!(variant(&m, b"doc", b"doc.zzz", 1).is_none());
        assert!(variant(&m, b"doc.bak", b"doc.bak.html", 1).is_some());
        assert!(variant(&m, b"index.html", b"index.html.en", 1).is_some());
    }

    #[test]
    fn apache_choices() {
        let imgs = [("doc.gif", 6), ("doc.png", 8)];
        assert_eq!(
            pick(&imgs, Asked::default()).as_deref(),
            Some("doc.gif"),
            "smaller"
        );
        let png = Asked {
            accept: Some("image/png"),
            ..Asked::default()
        };
        assert_eq!(pick(&imgs, png).as_deref(), Some("doc.png"));
        let html = Asked {
            accept: Some("text/html"),
            ..Asked::default()
        };
        assert_eq!(pick(&imgs, html), None, "406");
        let langs = [("doc.html.en", 10), ("doc.html.fr", 10)];
        let fr = Asked {
            language: Some("fr, en;q=0.5"),
            ..Asked::default()
        };
        assert_eq!(pick(&langs, fr).as_deref(), Some("doc.html.fr"));
        let de = Asked {
            language: Some("de"),
            ..Asked::default()
        };
        assert_eq!(pick(&langs, de), None);
        let fr_ca = Asked {
            language: Some("fr-CA"),
            ..Asked::default()
        };
        assert_eq!(
            pick(&langs, fr_ca).as_deref(),
            Some("doc.html.fr"),
            "prefix fiddle"
        );
        // Wildcards without q-values rank below an exact type.
        let both = [("doc.html", 50), ("doc.txt", 5)];
        let a = Asked {
            accept: Some("text/html, */*"),
            ..Asked::default()
        };
        assert_eq!(pick(&both, a).as_deref(), Some("doc.html"));
        let gz = [("doc.txt", 50), ("doc.txt.gz", 5)];
        assert_eq!(
            pick(&gz, Asked::default()).as_deref(),
            Some("doc.txt"),
            "identity first"
        );
        let a = Asked {
            encoding: Some("gzip"),
            ..Asked::default()
        };
        assert_eq!(
            pick(&gz, a).as_deref(),
            Some("doc.txt.gz"),
            "x- ignored, then smaller"
        );
    }

    #[test]
    fn language_priority_breaks_ties() {
        let mut v = vars(&[("doc.html.en", 10), ("doc.html.fr", 10)]);
        let prefs = Negotiation {
            language_priority: vec!["fr".into(), "en".into()],
            ..Negotiation::default()
        };
        assert_eq!(choose(&mut v, &Asked::default(), &prefs), Some(1));
        let de = Asked {
            language: Some("de"),
            ..Asked::default()
        };
        assert_eq!(choose(&mut v, &de, &prefs), None);
        let fallback = Negotiation {
            force_language_priority: Negotiation::PREFER | Negotiation::FALLBACK,
            ..prefs
        };
        assert_eq!(choose(&mut v, &de, &fallback), Some(1));
    }

    #[test]
    fn vary_and_alternates() {
        let v = vars(&[("doc.html.en", 10), ("doc.html.fr", 12)]);
        assert_eq!(vary(&v, true).as_deref(), Some("negotiate,accept-language"));
        assert_eq!(
            alternates(&v),
            "{\"doc.html.en\" 1 {type text/html} {language en} {length 10}}, {\"doc.html.fr\" 1 {type text/html} {language fr} {length 12}}"
        );
        assert_eq!(quality_text(0.5), "0.5");
        assert_eq!(atoq("0.25"), 0.25);
        assert_eq!(atoq(".5"), 0.5);
        assert_eq!(atoq("1"), 1.0);
        assert_eq!(atoq("0"), 0.0);
    }
}
