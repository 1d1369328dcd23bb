//! mod_unique_id: `UNIQUE_ID`, an identifier no other request of this
//! server gets, set in every request's environment when the
//! configuration loads the module (`%{UNIQUE_ID}e` in a `LogFormat`,
//! `RequestHeader set X-Request-Id %{UNIQUE_ID}e`). As Apache's: 24
//! characters of `A-Z a-z 0-9 @ -`, made of the time in seconds, what
//! tells this process apart, and a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Six bytes chosen at random when the process first needs them.
fn process_bytes() -> [u8; 6] {
    static BYTES: OnceLock<[u8; 6]> = OnceLock::new();
    *BYTES.get_or_init(|| {
        let mut b = [0u8; 6];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
            let pid = std::process::id().to_be_bytes();
            b[..4].copy_from_slice(&pid);
        }
        b
    })
}

/// Sets `UNIQUE_ID` in a request's environment when the module is loaded.
pub fn stamp(loaded: bool, env: &mut crate::rules::Env) {
    if loaded {
        env.set("UNIQUE_ID", next());
    }
}

/// The next identifier.
pub fn next() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut raw = [0u8; 18];
    raw[..4].copy_from_slice(&(secs as u32).to_be_bytes());
    raw[4..10].copy_from_slice(&process_bytes());
    raw[10..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    encode(&raw)
}

/// Three bytes to four characters, 18 bytes to 24.
fn encode(raw: &[u8; 18]) -> String {
    let mut out = String::with_capacity(24);
    for c in raw.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_24_characters_and_differ() {
        let a = next();
        let b = next();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
        assert_eq!(a[..14], b[..14].to_string()[..], "same second and process");
    }
}
