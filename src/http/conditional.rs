//! Validators, conditional requests and byte ranges for answers with a
//! known body (RFC 9110 §8.8, §13, §14), as Apache's core applies them to
//! files: its ETag format, `ap_meets_conditions`' order, and the byte
//! range filter's merging of ranges.

use super::Headers;

/// What a file's answer is validated by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// With its quotes, `W/` first when weak.
    pub etag: String,
    /// `Last-Modified`, in seconds since the epoch.
    pub modified: u64,
}

impl Validators {
    /// Apache's `FileETag MTime Size` (its default): the size and the
    /// modification time in microseconds, in hex; weak while the file was
    /// modified less than a second before `now_secs` (it may change again
    /// within the same second).
    pub fn of_file(size: u64, mtime_usec: u64, now_secs: u64) -> Validators {
        let modified = (mtime_usec / 1_000_000).min(now_secs);
        let weak = now_secs.saturating_sub(mtime_usec / 1_000_000) < 1;
        Validators {
            etag: format!(
                "{}\"{size:x}-{mtime_usec:x}\"",
                if weak { "W/" } else { "" }
            ),
            modified,
        }
    }

    fn weak(&self) -> bool {
        self.etag.starts_with("W/")
    }

    fn opaque(&self) -> &str {
        self.etag.strip_prefix("W/").unwrap_or(&self.etag)
    }
}

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    /// 304.
    NotModified,
    /// 412.
    Failed,
}

/// `ap_meets_conditions`: If-Match, else If-Unmodified-Since; then
/// If-None-Match, else If-Modified-Since (GET and HEAD only, and not a
/// date in the future).
pub fn evaluate(method: &str, headers: &Headers, v: &Validators, now_secs: u64) -> Precondition {
    let get = matches!(method, "GET" | "HEAD");
    if let Some(list) = headers.get_str("if-match") {
        if list.trim() != "*" && (v.weak() || !in_list(list, v.opaque(), true)) {
            return Precondition::Failed;
        }
    } else if let Some(date) = headers.get_str("if-unmodified-since").and_then(seconds) {
        if v.modified > date {
            return Precondition::Failed;
        }
    }
    if let Some(list) = headers.get_str("if-none-match") {
        if list.trim() == "*" || in_list(list, v.opaque(), false) {
            return if get {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if let Some(date) = headers.get_str("if-modified-since").and_then(seconds) {
        if get && date <= now_secs && v.modified <= date {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether `opaque` (a quoted tag) is in the comma-separated `list`;
/// `strong`: tags marked weak in the list do not count.
fn in_list(list: &str, opaque: &str, strong: bool) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| match tag.strip_prefix("W/") {
            Some(t) => !strong && t == opaque,
            None => tag == opaque,
        })
}

fn seconds(date: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(date.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No range, one that cannot be read, or one whose `If-Range` does not
    /// hold: the whole body (200).
    Whole,
    /// Inclusive byte ranges, in order, overlapping and adjacent ones
    /// merged (206).
    Parts(Vec<(u64, u64)>),
    /// None of the ranges overlaps the body (416).
    Unsatisfiable,
}

/// Apache's `MaxRanges` default: more ranges than this get the whole body.
const MAX_RANGES: usize = 200;

/// The ranges of a GET's `Range` header, if its `If-Range` holds.
pub fn ranges(headers: &Headers, size: u64, v: &Validators) -> Ranges {
    let Some(spec) = headers.get_str("range") else {
        return Ranges::Whole;
    };
    if let Some(cond) = headers.get_str("if-range") {
        let cond = cond.trim();
        let holds = if cond.starts_with('"') || cond.starts_with("W/") {
            !v.weak() && cond == v.opaque()
        } else {
            seconds(cond) == Some(v.modified)
        };
        if !holds {
            return Ranges::Whole;
        }
    }
    let Some(list) = spec
        .trim()
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| &spec.trim()[6..])
    else {
        return Ranges::Whole;
    };
    let mut parts: Vec<(u64, u64)> = Vec::new();
    let mut asked = 0;
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        asked += 1;
        let Some((a, b)) = item.split_once('-') else {
            return Ranges::Whole;
        };
        let number = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let (start, end) = match (a.trim(), b.trim()) {
            ("", n) => match number(n) {
                Some(0) => continue,
                Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
                None => return Ranges::Whole,
            },
            (s, "") => match number(s) {
                Some(s) => (s, size.saturating_sub(1)),
                None => return Ranges::Whole,
            },
            (s, e) => match (number(s), number(e)) {
                (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
                _ => return Ranges::Whole,
            },
        };
        if size == 0 || start >= size {
            continue;
        }
        parts.push((start, end));
    }
    if asked == 0 || asked > MAX_RANGES {
        return Ranges::Whole;
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    // Overlapping and adjacent ranges merged, in the order asked.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in parts {
        match merged
            .iter_mut()
            .find(|(ms, me)| s <= me.saturating_add(1) && *ms <= e.saturating_add(1))
        {
            Some(m) => *m = (m.0.min(s), m.1.max(e)),
            None => merged.push((s, e)),
        }
    }
    Ranges::Parts(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{FieldValue, Headers};

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in list {
            h.fields
                .push(((*n).into(), FieldValue::copy_from_slice(v.as_bytes())));
        }
        h
    }

    fn v() -> Validators {
        Validators::of_file(45, 1_700_000_000_123_456, 1_800_000_000)
    }

    #[test]
    fn etags_are_apaches_and_weak_within_the_second() {
        assert_eq!(v().etag, "\"2d-60a2418202240\"");
        assert!(Validators::of_file(1, 5_000_000, 5)
            .etag
            .starts_with("W/\""));
    }

    #[test]
    fn preconditions_in_apaches_order() {
        let tag = v().etag;
        let check =
            |list: &[(&str, &str)], method| evaluate(method, &headers(list), &v(), 1_800_000_000);
        assert_eq!(
            check(&[("If-None-Match", &tag)], "GET"),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[("If-None-Match", &tag)], "POST"),
            Precondition::Failed
        );
        assert_eq!(
            check(&[("If-None-Match", "\"x\"")], "GET"),
            Precondition::Proceed
        );
        assert_eq!(check(&[("If-Match", "\"x\"")], "GET"), Precondition::Failed);
        assert_eq!(check(&[("If-Match", &tag)], "GET"), Precondition::Proceed);
        let later = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000),
        );
        let earlier = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
        );
        assert_eq!(
            check(&[("If-Modified-Since", &later)], "GET"),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[("If-Modified-Since", &earlier)], "GET"),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[("If-Unmodified-Since", &earlier)], "GET"),
            Precondition::Failed
        );
        // If-None-Match decides alone when present.
        assert_eq!(
            check(
                &[("If-None-Match", "\"x\""), ("If-Modified-Since", &later)],
                "GET"
            ),
            Precondition::Proceed
        );
    }

    #[test]
    fn ranges_are_read_merged_and_bounded() {
        let r = |spec: &str| ranges(&headers(&[("Range", spec)]), 100, &v());
        assert_eq!(r("bytes=0-9"), Ranges::Parts(vec![(0, 9)]));
        assert_eq!(r("bytes=-10"), Ranges::Parts(vec![(90, 99)]));
        assert_eq!(r("bytes=95-"), Ranges::Parts(vec![(95, 99)]));
        assert_eq!(r("bytes=90-200"), Ranges::Parts(vec![(90, 99)]));
        assert_eq!(r("bytes=0-9,10-19"), Ranges::Parts(vec![(0, 19)]));
        assert_eq!(r("bytes=0-9,50-59"), Ranges::Parts(vec![(0, 9), (50, 59)]));
        assert_eq!(r("bytes=200-300"), Ranges::Unsatisfiable);
        assert_eq!(r("bytes=9-1"), Ranges::Whole);
        assert_eq!(r("items=0-9"), Ranges::Whole);
        let stale = headers(&[("Range", "bytes=0-9"), ("If-Range", "\"other\"")]);
        assert_eq!(ranges(&stale, 100, &v()), Ranges::Whole);
    }
}
