//! What access control needs found out before it can decide, found out:
//! the client's host name (`Require host`, `Allow from NAME`) and the user
//! of a request's Basic credentials (mod_auth_basic with
//! mod_authn_file). The decisions stay in `route::access`; this is the
//! I/O — name lookups and the password file, read for each request as
//! Apache reads it — done off the serving threads.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use super::htpasswd::{self, NoCredentials};
use crate::http::RequestHead;
use crate::route::access::Need;

/// What has been found out for one request.
#[derive(Debug, Default)]
pub struct Found {
    /// `Some(None)`: looked up, and the client has no name its forward
    /// lookup confirms.
    pub remote_host: Option<Option<String>>,
    /// The authenticated user.
    pub user: Option<String>,
    /// The user the credentials named, let in or not: `%u` logs it (as
    /// Apache's `r->user` is set before the password is checked).
    pub sent_user: Option<String>,
}

/// The client's host name as Apache's `REMOTE_DOUBLE_REV` lookup finds
/// it: the reverse lookup's name (lower case), kept only when its forward
/// lookup gives the client's address back.
pub async fn remote_host(ip: IpAddr) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let name = reverse_lookup(ip)?.to_ascii_lowercase();
        let confirmed = (name.as_str(), 0)
            .to_socket_addrs()
            .ok()?
            .any(|a| a.ip().to_canonical() == ip.to_canonical());
        confirmed.then_some(name)
    })
    .await
    .ok()
    .flatten()
}

fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let addr = socket2::SockAddr::from(SocketAddr::new(ip.to_canonical(), 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `addr` is a valid socket address of the length passed;
    // `host` is a writable buffer of the length passed, which getnameinfo
    // NUL-terminates on success; no service buffer is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr().cast(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_string)
}

/// Finds out what access control waits for and puts it in `found`.
/// `Err`: the answer instead: 401 (no user, or credentials not let in) or
/// 500 (the credentials could not be checked).
pub async fn find_out(
    need: &Need<'_>,
    head: &RequestHead,
    peer: SocketAddr,
    found: &mut Found,
) -> Result<(), u16> {
    match need {
        Need::Host => found.remote_host = Some(remote_host(peer.ip()).await),
        Need::User { user_file, .. } => match authenticate(head, *user_file, peer, found).await {
            Authn::User(user) => found.user = Some(user),
            Authn::Unauthorized => return Err(401),
            Authn::Error => return Err(500),
        },
    }
    Ok(())
}

/// How checking a request's credentials ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Authn {
    /// The password matches: this user.
    User(String),
    /// 401: no credentials, another scheme, an unknown user or a wrong
    /// password.
    Unauthorized,
    /// 500: the password file is not set or cannot be read.
    Error,
}

/// Checks the request's Basic credentials against `user_file`, as
/// `authenticate_basic_user` with the file provider does; sets
/// `found.sent_user` to the user they name.
pub async fn authenticate(
    head: &RequestHead,
    user_file: Option<&Path>,
    peer: SocketAddr,
    found: &mut Found,
) -> Authn {
    // Apache joins repeated fields with ", " before reading one.
    let joined: Vec<u8>;
    let value = match head.headers.count("authorization") {
        0 | 1 => head.headers.get("authorization"),
        _ => {
            let values: Vec<&[u8]> = head
                .headers
                .fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| &v[..])
                .collect();
            joined = values.join(&b", "[..]);
            Some(&joined[..])
        }
    };
    let (user, password) = match htpasswd::credentials(value) {
        Ok(c) => c,
        Err(NoCredentials::Missing) => return Authn::Unauthorized,
        Err(NoCredentials::WrongScheme) => {
            tracing::error!(%peer, "AH01614: client used wrong authentication scheme: {}", head.target);
            return Authn::Unauthorized;
        }
    };
    let shown = String::from_utf8_lossy(&user).into_owned();
    found.sent_user = Some(shown.clone());
    let Some(file) = user_file else {
        tracing::error!(%peer, "AH01619: AuthUserFile not specified in the configuration");
        return Authn::Error;
    };
    let file = file.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || {
        let text = std::fs::read(&file).map_err(|e| (file.clone(), e))?;
        Ok::<_, (std::path::PathBuf, std::io::Error)>(
            htpasswd::lookup(&text, &user).map(|hash| htpasswd::verify(&password, hash)),
        )
    })
    .await;
    match checked {
        Ok(Ok(Some(true))) => Authn::User(shown),
        Ok(Ok(Some(false))) => {
            tracing::error!(%peer, "AH01617: user {shown}: authentication failure for \"{}\": Password Mismatch", head.target);
            Authn::Unauthorized
        }
        Ok(Ok(None)) => {
            tracing::error!(%peer, "AH01618: user {shown} not found: {}", head.target);
            Authn::Unauthorized
        }
        Ok(Err((file, e))) => {
            tracing::error!(%peer, "AH01620: Could not open password file: {} ({e})", file.display());
            Authn::Error
        }
        Err(e) => {
            tracing::error!(%peer, "checking a password failed: {e}");
            Authn::Error
        }
    }
}
