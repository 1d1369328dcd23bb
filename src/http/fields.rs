//! Header fields and the text of heads, shared with the bytes a head was
//! read into.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Text taken from a head: a header name, a method, a target, a reason
/// phrase. It shares the bytes the head was read into (a parsed head costs
/// no allocation per field), and is always UTF-8.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(pub(super) Bytes);

impl Text {
    /// The bytes as text, if they are UTF-8 (tokens always are: ASCII).
    pub(crate) fn from_utf8(bytes: Bytes) -> Option<Text> {
        std::str::from_utf8(&bytes).ok()?;
        Some(Text(bytes))
    }

    /// As [`Text::from_utf8`], with invalid sequences replaced (U+FFFD).
    pub(crate) fn from_utf8_lossy(bytes: Bytes) -> Text {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Text(bytes),
            Err(_) => Text::from(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// `part` as text: sharing these bytes when it is a slice of them,
    /// a copy otherwise.
    pub fn slice_of(&self, part: &str) -> Text {
        let whole = self.0.as_ptr_range();
        let inner = part.as_bytes().as_ptr_range();
        if whole.start <= inner.start && inner.end <= whole.end {
            Text(self.0.slice_ref(part.as_bytes()))
        } else {
            Text::from(part)
        }
    }

    /// The bytes, shared.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks the bytes are UTF-8 or takes
        // them from a `str`, and the bytes never change afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header field value as received (any bytes but CR, LF and NUL).
pub type FieldValue = Bytes;

/// Header fields as name and value, in order.
pub type HeaderFields = Vec<(Text, FieldValue)>;

/// Header fields in received order, names as spelled on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub fields: HeaderFields,
}

impl Headers {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn count(&self, name: &str) -> usize {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn push(&mut self, name: &str, value: impl Into<FieldValue>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Whether `name`'s comma-separated value holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|&b| b == b',' || b == b';'))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}
