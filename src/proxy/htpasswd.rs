//! HTTP Basic credentials and htpasswd files, as mod_auth_basic,
//! mod_authn_file and APR's `apr_password_validate` read them: the
//! `Authorization` field's lenient base64, the file's `user:hash` lines,
//! and the hashes `htpasswd` writes — bcrypt (`$2y$`, the `bcrypt`
//! crate), APR's MD5 (`$apr1$`, on the `md-5` crate), SHA-1 (`{SHA}`, the
//! `sha1` crate) and, for anything else, the system's `crypt(3)` as APR
//! calls it (DES, `$1$`, `$5$`, `$6$`, `$2b$`, yescrypt). A plain-text
//! password thus fails, as it does for Apache on Linux.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// Why credentials were not taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoCredentials {
    /// No `Authorization` field.
    Missing,
    /// A scheme other than Basic (AH01614).
    WrongScheme,
}

/// The user and password of an `Authorization: Basic …` value, as
/// `get_basic_auth` reads it: the scheme word ends at the first space
/// (any case), spaces and tabs after it are skipped, the rest is decoded
/// as `apr_base64_decode` does (up to the first character outside the
/// alphabet, padding not needed) and cut at a NUL, the user ends at the
/// first colon and the password is the rest (empty without a colon).
pub fn credentials(value: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>), NoCredentials> {
    let value = value.ok_or(NoCredentials::Missing)?;
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return Err(NoCredentials::WrongScheme);
    }
    let start = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    let mut decoded = apr_base64_decode(&rest[start..]);
    if let Some(nul) = decoded.iter().position(|&b| b == 0) {
        decoded.truncate(nul);
    }
    Ok(match decoded.iter().position(|&b| b == b':') {
        Some(i) => (decoded[..i].to_vec(), decoded[i + 1..].to_vec()),
        None => (decoded, Vec::new()),
    })
}

fn six_bits(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `apr_base64_decode`: the leading characters of the alphabet, by fours;
/// a last group of two or three gives one or two bytes, of one nothing.
fn apr_base64_decode(s: &[u8]) -> Vec<u8> {
    let sixes: Vec<u8> = s.iter().map_while(|&b| six_bits(b)).collect();
    let mut out = Vec::with_capacity(sixes.len() / 4 * 3 + 2);
    for g in sixes.chunks(4) {
        if g.len() > 1 {
            out.push(g[0] << 2 | g[1] >> 4);
        }
        if g.len() > 2 {
            out.push(g[1] << 4 | g[2] >> 2);
        }
        if g.len() > 3 {
            out.push(g[2] << 6 | g[3]);
        }
    }
    out
}

/// The hash of `user` in an htpasswd file's text, as mod_authn_file reads
/// it: lines trimmed of surrounding white space, `#` lines and blank
/// ones skipped, the first line whose name (up to its first colon) is
/// `user` exactly; its hash ends at the next colon.
pub fn lookup<'t>(text: &'t [u8], user: &[u8]) -> Option<&'t [u8]> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            return None;
        }
        let mut fields = line.splitn(3, |&b| b == b':');
        if fields.next()? != user {
            return None;
        }
        Some(fields.next().unwrap_or_default())
    })
}

/// `apr_password_validate`: whether `password` matches `hash`.
pub fn verify(password: &[u8], hash: &[u8]) -> bool {
    if hash.starts_with(b"$2a$") || hash.starts_with(b"$2y$") {
        return std::str::from_utf8(hash)
            .ok()
            .and_then(|h| bcrypt::verify(password, h).ok())
            .unwrap_or(false);
    }
    if hash.starts_with(APR1) {
        return apr1(password, hash).as_bytes() == hash;
    }
    if let Some(b64) = hash.strip_prefix(b"{SHA}") {
        use base64::Engine as _;
        use sha1::Digest as _;
        let digest = sha1::Sha1::digest(password);
        return base64::engine::general_purpose::STANDARD
            .encode(digest)
            .as_bytes()
            == b64;
    }
    system_crypt(password, hash).is_some_and(|out| out == hash)
}

const APR1: &[u8] = b"$apr1$";

/// `apr_md5_encode`: the FreeBSD MD5 crypt with APR's `$apr1$` magic; the
/// salt is what follows the magic up to a `$`, at most 8 characters.
pub fn apr1(password: &[u8], setting: &[u8]) -> String {
    use md5::{Digest as _, Md5};
    let rest = setting.strip_prefix(APR1).unwrap_or(setting);
    let salt_len = rest
        .iter()
        .take(8)
        .position(|&b| b == b'$')
        .unwrap_or(rest.len().min(8));
    let salt = &rest[..salt_len];

    let mut alternate = Md5::new();
    alternate.update(password);
    alternate.update(salt);
    alternate.update(password);
    let alternate = alternate.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(APR1);
    ctx.update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize().into();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(f(a) << 16 | f(b) << 8 | f(c), 4);
    }
    to64(f(11), 2);
    out
}

#[link(name = "crypt")]
extern "C" {
    /// libxcrypt's reentrant `crypt`: NULL when the setting is not one it
    /// knows (it never returns the `*0` failure token).
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut c_void,
        size: c_int,
    ) -> *mut c_char;
}

/// The size of libxcrypt's `struct crypt_data` (the space `crypt_rn`
/// works in).
const CRYPT_DATA_SIZE: usize = 32768;

/// `crypt(password, hash)` by the system's library, as APR calls it for a
/// hash that is none of its own.
fn system_crypt(password: &[u8], hash: &[u8]) -> Option<Vec<u8>> {
    let phrase = CString::new(password).ok()?;
    let setting = CString::new(hash).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and live across the call;
    // `data` is a zeroed, writable buffer of the size passed (the size of
    // `struct crypt_data`, which crypt_rn requires at least); the result
    // points into `data` (or is NULL) and is copied out before `data` is
    // dropped.
    unsafe {
        let out = crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as c_int,
        );
        if out.is_null() {
            return None;
        }
        Some(CStr::from_ptr(out).to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's `htpasswd -nb` (apache2-utils 2.4.71) for the
    /// password `s3cret`.
    const WRITTEN_BY_HTPASSWD: &[(&str, &str)] = &[
        ("bcrypt (-B)", "$2y$05$dAEWRofM9zrJ9f7OJn/oOeYfyX3uHFXhWVPht5UJaLP2Ry9UDLQs6"),
        ("MD5 (-m)", "$apr1$9t9R8O1l$4KS.TiJr9QLapimTyxxOP1"),
        ("SHA-1 (-s)", "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg="),
        ("crypt (-d)", "JVM785P6AsBe2"),
        ("SHA-256 (-2)", "$5$F6NeJ5GkJW6dwLk/$IcTNeEJrzFZI800CTINtK.2dFOo/x0DnmM5QEN7hOj0"),
        ("SHA-512 (-5)", "$6$Lc/PYK4zq3NfbvgV$6effq7oh3XlJZgi.UrviC76si22WYKH5DhKNihNGYW2ZUUr8wdEV2UMx3K.W5mvs0xwEhrCjZHqG09lBBGpnW/"),
    ];

    #[test]
    fn every_hash_htpasswd_writes_verifies_and_a_wrong_password_does_not() {
        for (kind, hash) in WRITTEN_BY_HTPASSWD {
            assert!(verify(b"s3cret", hash.as_bytes()), "{kind}: {hash}");
            assert!(
                !verify(b"s3cret!", hash.as_bytes()),
                "{kind} took a wrong password"
            );
            assert!(
                !verify(b"", hash.as_bytes()),
                "{kind} took an empty password"
            );
        }
    }

    #[test]
    fn a_plain_text_password_is_refused_as_apr_refuses_it_on_linux() {
        // `htpasswd -p` writes the password as it is; APR gives it to
        // crypt(3), whose DES result never equals it.
        assert!(!verify(b"s3cret", b"s3cret"));
        assert!(!verify(b"", b""));
    }

    #[test]
    fn apr1_is_md5_crypt_with_aprs_magic() {
        assert_eq!(
            apr1(b"s3cret", b"$apr1$9t9R8O1l$whatever"),
            "$apr1$9t9R8O1l$4KS.TiJr9QLapimTyxxOP1"
        );
        // A password longer than one digest, and the salt cut at 8.
        let long = apr1(&[b'x'; 40], b"$apr1$0123456789");
        assert!(long.starts_with("$apr1$01234567$"), "{long}");
        assert_eq!(long.len(), "$apr1$01234567$".len() + 22);
    }

    #[test]
    fn credentials_are_decoded_as_get_basic_auth_does() {
        let c = |v: &str| credentials(Some(v.as_bytes()));
        let pair = |u: &str, p: &str| Ok((u.as_bytes().to_vec(), p.as_bytes().to_vec()));
        assert_eq!(c("Basic YWxpY2U6czNjcmV0"), pair("alice", "s3cret"));
        assert_eq!(c("basic  \tYWxpY2U6czNjcmV0"), pair("alice", "s3cret"));
        // A colon in the password stays in it; no colon: no password.
        assert_eq!(c("Basic YTpiOmM="), pair("a", "b:c"));
        assert_eq!(c("Basic YWxpY2U="), pair("alice", ""));
        // Decoding stops at the first character outside the alphabet.
        assert_eq!(c("Basic YWxpY2U6czNjcmV0!!!"), pair("alice", "s3cret"));
        assert_eq!(
            c("Basic YWxpY2U6czNjcmV0, Basic eA=="),
            pair("alice", "s3cret")
        );
        assert_eq!(c("Basic"), pair("", ""));
        assert_eq!(c("Bearer abc"), Err(NoCredentials::WrongScheme));
        assert_eq!(c("Basic\tYWxpY2U="), Err(NoCredentials::WrongScheme));
        assert_eq!(credentials(None), Err(NoCredentials::Missing));
    }

    #[test]
    fn the_file_is_read_as_mod_authn_file_reads_it() {
        let text = b"# users\n\n  bob:$apr1$x$y  \nalice:HASH:extra\nAlice:OTHER\n";
        assert_eq!(lookup(text, b"alice"), Some(&b"HASH"[..]));
        assert_eq!(lookup(text, b"Alice"), Some(&b"OTHER"[..]));
        assert_eq!(lookup(text, b"bob"), Some(&b"$apr1$x$y"[..]));
        assert_eq!(lookup(text, b"carol"), None);
        assert_eq!(lookup(text, b"# users"), None);
    }
}
