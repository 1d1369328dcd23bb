//! The file server: what Apache's core, mod_dir and mod_autoindex do with
//! a request mapped to the file system. It walks the path a component at
//! a time as Apache's directory walk does (a symbolic link only where
//! `Options` allows it), checks access with the `<Directory>` and
//! `<Files>` sections' `Require` under the `<Location>`'s, redirects a
//! directory to its trailing slash, tries the `DirectoryIndex` names,
//! lists a directory where `Options Indexes` allows, falls back to
//! `FallbackResource`, and sends a file with its validators, answering
//! conditional and range requests.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::deflate::{self, Deflate};
use super::downstream::Downstream;
use super::errordoc::{self, Internal};
use super::forward::Outcome;
use super::gate;
use super::header_rules::{self, Context};
use super::headers::{BodyHeader, ClientResponse};
use super::logging::LogTrail;
use super::multiviews::{self, Found, Negotiated};
use crate::config::model::files::{Files, Merged, Opts};
use crate::http::body::Encoding;
use crate::http::conditional::{self, Precondition, Ranges, Validators};
use crate::http::gzip::Gzip;
use crate::http::write::Signed;
use crate::http::{canonical_reason, FieldValue, HeaderFields, Headers, RequestHead, ResponseHead};
use crate::route::access::{self, Access, Asked, Facts, Need, Refusal};
use crate::route::files::{self as map, FileMapped, Translated};
use crate::route::{encode_path, RequestPath};
use crate::rules::Env;

/// Internal redirects (an index file, the fallback) one request may take.
const MAX_HOPS: usize = 10;
/// The piece of a file read and sent at a time.
const PIECE: usize = 64 * 1024;

/// What the walk found at a mapped path.
#[derive(Debug)]
enum Look {
    File {
        path: PathBuf,
        meta: std::fs::Metadata,
        /// Path components followed the file (Apache's path info).
        path_info: bool,
    },
    Dir,
    /// The first component that does not exist, in directory `dir`.
    Missing {
        dir: Vec<u8>,
        name: Vec<u8>,
    },
    /// A symbolic link `Options` does not allow, something neither file
    /// nor directory, or a component the server may not read.
    Forbidden(&'static str),
}

/// Where an answer goes and what it may use.
pub struct Place<'a> {
    pub cx: Context<'a>,
    pub env: &'a Env,
    pub close: bool,
    pub timeout: Duration,
    /// The matching `<Location>` sections' header rules.
    pub locations: &'a [&'a crate::config::model::headers::Rules],
    /// `DeflateCompressionLevel`.
    pub deflate_level: u32,
    /// `ServerTokens` and `ServerSignature` for this request.
    pub signed: &'a Signed<'a>,
    /// What the access log needs: `%f`, and `%u`/`%h` once access
    /// control has found them out.
    pub log: Option<&'a mut LogTrail>,
    /// `ErrorDocument`s: whether the server has any (then `spot` follows
    /// the walk), and where a local one is left for the caller's internal
    /// redirect (nothing was sent then).
    pub docs: bool,
    pub spot: Option<(Vec<u8>, Option<Vec<u8>>)>,
    pub redirect: Option<&'a std::sync::OnceLock<Internal>>,
    /// The request fields access control's `Require expr` read, for the
    /// answer's `Vary`.
    pub vary: Option<String>,
    /// Serving the local `ErrorDocument` of this status: the file goes
    /// with it, whole and unconditionally (Apache's `no_local_copy`), and
    /// a failure gives the status's own page.
    pub as_error: Option<u16>,
    /// `Options MultiViews` chose the file: what its answer adds.
    pub negotiated: Option<Negotiated>,
}

impl<'a> Place<'a> {
    /// A place with no `<Location>` rules, no log and no documents.
    pub fn new(
        cx: Context<'a>,
        env: &'a Env,
        (close, timeout): (bool, Duration),
        signed: &'a Signed<'a>,
        deflate_level: u32,
    ) -> Place<'a> {
        Place {
            cx,
            env,
            close,
            timeout,
            locations: &[],
            deflate_level,
            signed,
            log: None,
            vary: None,
            docs: false,
            spot: None,
            redirect: None,
            as_error: None,
            negotiated: None,
        }
    }
}

/// Answers a request `route` mapped to the file system.
pub async fn serve<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    file: &FileMapped<'_>,
    mut place: Place<'_>,
) -> Outcome {
    let files = file.files;
    let mut filename = file.filename.clone();
    let mut uri = file.uri.clone();
    let mut fallen_back = false;
    let mut seen = gate::Found::default();
    let mut index_name = false;
    for _ in 0..MAX_HOPS {
        let look = look_at(files, &filename).await;
        let (dir, name) = split_dir(&filename);
        if place.docs {
            place.spot = Some((dir.clone(), Some(name.clone())));
        }
        if let Some(log) = place.log.as_deref_mut() {
            log.filename = Some(String::from_utf8_lossy(&filename).into_owned());
        }
        let (dir, name) = match &look {
            Look::Forbidden(why) => {
                tracing::error!(peer = %place.cx.facts.peer, "{why}: {}", String::from_utf8_lossy(&filename));
                return status_page(client, head, &place, 403, &[]).await;
            }
            Look::Missing { dir, name } => (dir.clone(), Some(name.clone())),
            Look::Dir => (with_slash(&filename), None),
            // The file the walk stopped at (its <Files> sections), not
            // the path info after it.
            Look::File { path, .. } => {
                let (dir, name) = split_dir(path.as_os_str().as_bytes());
                (dir, Some(name))
            }
        };
        if place.docs {
            place.spot = Some((dir.clone(), name.clone()));
        }
        let merged = map::merged(files, &dir, name.as_deref());
        let access = file.location_access.over_files(&merged);
        if access.guards() {
            let checked = check_access(head, &access, &mut place, &mut seen).await;
            if let Err((status, challenge)) = checked {
                if status == 403 {
                    tracing::error!(peer = %place.cx.facts.peer, "AH01630: client denied by server configuration: {}", String::from_utf8_lossy(&filename));
                }
                let extra = challenge.as_deref().map(|c| ("WWW-Authenticate", c));
                return status_page(client, head, &place, status, extra.as_slice()).await;
            }
        }
        if map::under_script_alias(files, &uri) {
            match &look {
                Look::File { path, .. } => {
                    tracing::error!(peer = %place.cx.facts.peer, "{}: a program under ScriptAlias, and wsgate runs no CGI programs (answered 500, never the file)", path.display());
                    return status_page(client, head, &place, 500, &[]).await;
                }
                Look::Dir if uri.ends_with(b"/") => {
                    tracing::error!(peer = %place.cx.facts.peer, "AH01265: {}: attempt to invoke directory as script", String::from_utf8_lossy(&filename));
                    return status_page(client, head, &place, 403, &[]).await;
                }
                _ => {}
            }
        }
        if let Look::Missing { dir: d, name: n } = &look {
            let options = map::with_location_options(place.cx.server, &uri, merged.options);
            // Never under a ScriptAlias: a variant there is a program.
            if options.has(Opts::MULTIVIEWS) && !map::under_script_alias(files, &uri) {
                let path_info = filename.len() > d.len() + n.len();
                let found = {
                    let permitted = |v: &[u8]| {
                        visible(head, file, &map::merged(files, d, Some(v)), &place, &seen)
                    };
                    let how = (path_info, file.query.is_some());
                    multiviews::negotiate(files, (d, n), head, how, &permitted).await
                };
                let found = match found {
                    Found::Chosen { path, mut neg } if index_name => {
                        neg.vlist = None;
                        Found::Chosen { path, neg }
                    }
                    other => other,
                };
                if let Some(done) =
                    negotiated(client, head, file, found, path_info, &mut place).await
                {
                    return done;
                }
            }
        }
        match look {
            Look::Missing { .. } | Look::Forbidden(_) => {
                // mod_dir's FallbackResource, once.
                if let (Some(url), false) = (merged.fallback, fallen_back) {
                    let path = fallback_path(url, &uri);
                    if let Some(Translated::File(f)) = map::translate(files, &path) {
                        fallen_back = true;
                        filename = f;
                        uri = path.decoded.to_vec();
                        continue;
                    }
                }
                tracing::info!(peer = %place.cx.facts.peer, "AH00128: File does not exist: {}", String::from_utf8_lossy(&filename));
                return status_page(client, head, &place, 404, &[]).await;
            }
            Look::File {
                path_info: true, ..
            } => {
                tracing::info!(peer = %place.cx.facts.peer, "AH00130: File does not exist: {}", String::from_utf8_lossy(&file.filename));
                return status_page(client, head, &place, 404, &[]).await;
            }
            Look::File { path, meta, .. } => {
                return send_file(client, head, file, (&path, &meta), &place).await;
            }
            Look::Dir if !uri.ends_with(b"/") => {
                if !merged.directory_slash {
                    return status_page(client, head, &place, 404, &[]).await;
                }
                return slash_redirect(client, head, &uri, file.query.as_deref(), &place).await;
            }
            Look::Dir => match match index_file(&merged, &filename).await {
                Some(index) => Some(index),
                None => {
                    negotiated_index((file, &seen), &merged, (&filename, &uri), head, &place).await
                }
            } {
                Some(index) => {
                    index_name = true;
                    uri.extend_from_slice(&index);
                    filename = with_slash(&filename);
                    filename.extend_from_slice(&index);
                    continue;
                }
                // An error document is never a listing (Apache's
                // mod_autoindex makes none for one: its status is not 200).
                None if place.as_error.is_none()
                    && map::with_location_options(place.cx.server, &uri, merged.options)
                        .has(Opts::INDEXES) =>
                {
                    return listing(client, head, (file, &seen), (&filename, &uri), &place).await;
                }
                None => {
                    tracing::error!(peer = %place.cx.facts.peer, "AH01276: Cannot serve directory {}: No matching DirectoryIndex found, and server-generated directory index forbidden by Options directive", String::from_utf8_lossy(&with_slash(&filename)));
                    return status_page(client, head, &place, 403, &[]).await;
                }
            },
        }
    }
    status_page(client, head, &place, 500, &[]).await
}

/// Answers with what MultiViews found, if it found anything.
async fn negotiated<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    file: &FileMapped<'_>,
    found: Found,
    path_info: bool,
    place: &mut Place<'_>,
) -> Option<Outcome> {
    let peer = place.cx.facts.peer;
    let name = || String::from_utf8_lossy(&file.filename).into_owned();
    let fields = |f: &[(&'static str, String)]| -> Vec<(&'static str, String)> { f.to_vec() };
    Some(match found {
        Found::Nothing => return None,
        Found::NoneUsable => {
            tracing::error!(peer = %peer, "AH00687: Negotiation: discovered file(s) matching request: {} (None could be negotiated).", name());
            status_page(client, head, place, 404, &[]).await
        }
        Found::TypeMap(map) => {
            tracing::error!(peer = %peer, "{}: MultiViews found the type map {}, and wsgate reads no type maps (answered 500)", name(), String::from_utf8_lossy(&map));
            status_page(client, head, place, 500, &[]).await
        }
        Found::NotAcceptable(f) => {
            tracing::error!(peer = %peer, "AH00690: no acceptable variant: {}", name());
            let extra: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
            status_page(client, head, place, 406, &extra).await
        }
        // The variant with path info: the default handler's 404, with
        // the negotiation's Vary.
        Found::Chosen { neg, .. } if path_info => {
            tracing::info!(peer = %peer, "AH00130: File does not exist: {}", name());
            let f = fields(&neg.fields);
            let extra: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
            status_page(client, head, place, 404, &extra).await
        }
        Found::Chosen { path, neg } => {
            let p = path.clone();
            let meta = tokio::task::spawn_blocking(move || std::fs::metadata(p))
                .await
                .ok()
                .and_then(Result::ok);
            let Some(meta) = meta else {
                return Some(status_page(client, head, place, 404, &[]).await);
            };
            if let Some(log) = place.log.as_deref_mut() {
                log.filename = Some(path.display().to_string());
            }
            place.negotiated = Some(neg);
            send_file(client, head, file, (&path, &meta), place).await
        }
    })
}

/// Access control for a mapped file before anything acts on it: Apache's
/// directory walk and access phase, which come before mod_rewrite's
/// per-directory rules (its fixups) may proxy or redirect the request.
/// `Err`: the status to answer (403, 401 with its challenge, 500).
pub async fn access_before_fixups(
    head: &RequestHead,
    file: &FileMapped<'_>,
    mut place: Place<'_>,
) -> Result<(), (u16, Option<String>)> {
    let look = look_at(file.files, &file.filename).await;
    let (dir, name) = match look {
        Look::Forbidden(why) => {
            tracing::error!(peer = %place.cx.facts.peer, "{why}: {}", String::from_utf8_lossy(&file.filename));
            return Err((403, None));
        }
        Look::Missing { dir, name } => (dir, Some(name)),
        Look::Dir => (with_slash(&file.filename), None),
        // The file the walk stopped at, not the path info after it: its
        // <Files> sections apply.
        Look::File { path, .. } => {
            let (dir, name) = split_dir(path.as_os_str().as_bytes());
            (dir, Some(name))
        }
    };
    let merged = map::merged(file.files, &dir, name.as_deref());
    let access = file.location_access.over_files(&merged);
    if !access.guards() {
        return Ok(());
    }
    let checked = check_access(head, &access, &mut place, &mut gate::Found::default()).await;
    if let Err((403, _)) = checked {
        tracing::error!(peer = %place.cx.facts.peer, "AH01630: client denied by server configuration: {}", String::from_utf8_lossy(&file.filename));
    }
    checked
}

/// Apache's access phase for a file, once the walk has found where it is:
/// `access` is the `<Directory>` and `<Files>` sections' settings under
/// the `<Location>`s'. What it needs found out (the client's name, the
/// user) is found out once for all the request's hops, and noted for the
/// log. `Err`: the status to answer (403, 401 with its challenge, 500).
async fn check_access(
    head: &RequestHead,
    access: &Access<'_>,
    place: &mut Place<'_>,
    found: &mut gate::Found,
) -> Result<(), (u16, Option<String>)> {
    let view = header_rules::Varying::new(header_rules::expr_view(head, place.cx, place.env));
    let peer = place.cx.facts.peer;
    let checked = loop {
        view.take();
        let verdict = access::check(access, &asked(head, place, &view, found), &mut ());
        let challenge = |realm: &str| Some(format!("Basic realm=\"{realm}\""));
        match verdict {
            Ok(()) => {
                // `Require expr` read these fields: the answer varies
                // with them (Apache's error pages drop it).
                place.vary = view.take();
                break Ok(());
            }
            Err(Refusal::Need(need)) => {
                if let Err(status) = gate::find_out(&need, head, peer, found).await {
                    let realm = match need {
                        Need::User { realm, .. } if status == 401 => challenge(realm),
                        _ => None,
                    };
                    break Err((status, realm));
                }
            }
            Err(Refusal::Denied) => break Err((403, None)),
            Err(Refusal::Unauthorized(realm)) => {
                let user = found.user.as_deref().unwrap_or("-");
                tracing::error!(%peer, "AH01631: user {user}: authorization failure for \"{}\"", head.target);
                break Err((401, challenge(realm)));
            }
            Err(Refusal::Error(why)) => {
                tracing::error!(%peer, "{why}: {}", head.target);
                break Err((500, None));
            }
        }
    };
    if let Some(log) = place.log.as_deref_mut() {
        if found.sent_user.is_some() {
            log.user.clone_from(&found.sent_user);
        }
        if let Some(host) = &found.remote_host {
            log.remote_host.clone_from(host);
        }
    }
    checked
}

/// Whether access control lets the request see a file with settings
/// `merged` without asking anything more (mod_autoindex's and
/// mod_negotiation's subrequests: what would be refused, or ask for a
/// user not yet known, is not shown or chosen).
fn visible(
    head: &RequestHead,
    file: &FileMapped<'_>,
    merged: &Merged<'_>,
    place: &Place<'_>,
    found: &gate::Found,
) -> bool {
    let access = file.location_access.over_files(merged);
    if !access.guards() {
        return true;
    }
    let view = header_rules::expr_view(head, place.cx, place.env);
    access::check(&access, &asked(head, place, &view, found), &mut ()).is_ok()
}

/// The request as access control sees it, with what has been found out.
fn asked<'a>(
    head: &'a RequestHead,
    place: &'a Place<'_>,
    view: &'a dyn crate::rules::expr::Context,
    found: &'a gate::Found,
) -> Asked<'a> {
    Asked {
        method: &head.method,
        client: place.cx.facts.peer.ip(),
        local: place.cx.facts.local.ip(),
        facts: Facts {
            env: Some(place.env),
            expr: Some(view),
            remote_host: found.remote_host.as_ref().map(Option::as_deref),
            user: found.user.as_deref(),
        },
        user: None,
    }
}

/// The fallback's url-path (relative ones from the request's directory).
fn fallback_path(url: &str, uri: &[u8]) -> RequestPath {
    let mut path = if url.starts_with('/') {
        Vec::new()
    } else {
        let end = uri.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        uri[..end].to_vec()
    };
    path.extend_from_slice(url.as_bytes());
    let mut raw = String::new();
    encode_path(&path, &mut raw);
    RequestPath {
        decoded: path.into(),
        raw: raw.into(),
        query: None,
    }
}

/// The first `DirectoryIndex` name that is a file in `dir`.
async fn index_file(merged: &Merged<'_>, dir: &[u8]) -> Option<Vec<u8>> {
    let names: Vec<Vec<u8>> = merged
        .index_names()
        .filter(|n| !n.contains('/'))
        .map(|n| n.as_bytes().to_vec())
        .collect();
    let dir = with_slash(dir);
    tokio::task::spawn_blocking(move || {
        names.into_iter().find(|n| {
            let mut p = dir.clone();
            p.extend_from_slice(n);
            std::fs::metadata(OsStr::from_bytes(&p)).is_ok_and(|m| m.is_file())
        })
    })
    .await
    .ok()
    .flatten()
}

/// mod_dir's sub-request for an index name that does not exist: under
/// `Options MultiViews`, the first name a variant answers for.
async fn negotiated_index(
    (file, seen): (&FileMapped<'_>, &gate::Found),
    merged: &Merged<'_>,
    (dir, uri): (&[u8], &[u8]),
    head: &RequestHead,
    place: &Place<'_>,
) -> Option<Vec<u8>> {
    let options = map::with_location_options(place.cx.server, uri, merged.options);
    if !options.has(Opts::MULTIVIEWS) {
        return None;
    }
    let dir = with_slash(dir);
    for name in merged.index_names().filter(|n| !n.contains('/')) {
        let n = name.as_bytes();
        // The sub-request's own access check, for the folder's files.
        let permitted = |v: &[u8]| {
            visible(
                head,
                file,
                &map::merged(file.files, &dir, Some(v)),
                place,
                seen,
            )
        };
        let found =
            multiviews::negotiate(file.files, (&dir, n), head, (false, false), &permitted).await;
        if matches!(found, Found::Chosen { .. }) {
            return Some(n.to_vec());
        }
    }
    None
}

/// Walks `filename` from `/`, off the runtime's threads.
async fn look_at(files: &Files, filename: &[u8]) -> Look {
    // The walk needs each directory's Options: computed here, where the
    // configuration is borrowed, for the directories on the path.
    let mut options = Vec::new();
    let mut dir = b"/".to_vec();
    for comp in filename.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        options.push(map::merged(files, &dir, None).options);
        dir.extend_from_slice(comp);
        dir.push(b'/');
    }
    let filename = filename.to_vec();
    tokio::task::spawn_blocking(move || walk(&filename, &options))
        .await
        .unwrap_or(Look::Forbidden("the file system could not be read"))
}

/// Apache's directory walk: each component looked at without following
/// it, a symbolic link followed only as its directory's `Options` allow.
fn walk(filename: &[u8], options: &[Opts]) -> Look {
    let comps: Vec<&[u8]> = filename
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut cur = b"/".to_vec();
    for (i, comp) in comps.iter().enumerate() {
        if *comp == b".." || *comp == b"." || comp.contains(&0) {
            return Look::Forbidden("a path component is . or ..");
        }
        let mut path = cur.clone();
        path.extend_from_slice(comp);
        let p = Path::new(OsStr::from_bytes(&path));
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if is_missing(&e) => {
                return Look::Missing {
                    dir: cur,
                    name: comp.to_vec(),
                }
            }
            Err(_) => return Look::Forbidden("AH00035: access denied because search permissions are missing on a component of the path"),
        };
        let meta = if meta.file_type().is_symlink() {
            let opts = options.get(i).copied().unwrap_or(Opts::DEFAULT);
            match std::fs::metadata(p) {
                Ok(target)
                    if opts.has(Opts::FOLLOW_SYMLINKS)
                        || (opts.has(Opts::SYMLINKS_IF_OWNER_MATCH)
                            && target.uid() == meta.uid()) =>
                {
                    target
                }
                _ => {
                    return Look::Forbidden(
                        "AH00037: Symbolic link not allowed or link target not accessible",
                    )
                }
            }
        } else {
            meta
        };
        if meta.is_file() {
            // As Apache's default handler, which opens the file before it
            // answers: one this process may not read (serving as `User`)
            // is 403, not a 200 head with no body.
            let unreadable = std::fs::File::open(p)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
            if unreadable && i + 1 == comps.len() {
                return Look::Forbidden("AH00132: file permissions deny server access");
            }
            return Look::File {
                path: p.to_path_buf(),
                meta,
                path_info: i + 1 < comps.len(),
            };
        }
        if !meta.is_dir() {
            return Look::Forbidden("AH00038: Forbidden: it is neither a file nor a directory");
        }
        cur = path;
        cur.push(b'/');
    }
    Look::Dir
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// `filename`'s directory (with its slash) and last component.
fn split_dir(filename: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match filename.iter().rposition(|&b| b == b'/') {
        Some(i) => (filename[..=i].to_vec(), filename[i + 1..].to_vec()),
        None => (b"/".to_vec(), filename.to_vec()),
    }
}

fn with_slash(path: &[u8]) -> Vec<u8> {
    let mut p = path.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p
}

/// mod_dir's redirect of a directory to its trailing slash.
async fn slash_redirect<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    uri: &[u8],
    query: Option<&str>,
    place: &Place<'_>,
) -> Outcome {
    let mut location = format!(
        "{}://{}",
        if place.cx.facts.https {
            "https"
        } else {
            "http"
        },
        head.headers
            .get_str("host")
            .unwrap_or(&place.cx.server.server_name)
    );
    encode_path(uri, &mut location);
    location.push('/');
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    status_page(client, head, place, 301, &[("Location", &location)]).await
}

/// An answer wsgate writes itself, with the server's `Header always`
/// rules.
async fn status_page<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    place: &Place<'_>,
    status: u16,
    extra: &[(&str, &str)],
) -> Outcome {
    let close = place.close || status >= 500;
    let answer = match place.as_error {
        // The error document failed: the original status's own page
        // (Apache's recursive error).
        Some(original) => header_rules::error_page_with(
            head,
            place.cx,
            place.env,
            (original, canonical_reason(original)),
            close,
            &[],
            place.signed,
        ),
        None => {
            let spot = place
                .spot
                .as_ref()
                .map(|(d, n)| (d.as_slice(), n.as_deref()));
            let how = (status, canonical_reason(status), close);
            match errordoc::page(head, place.cx, place.env, how, extra, place.signed, spot) {
                Ok(answer) => answer,
                Err(internal) => match place.redirect {
                    Some(slot) => {
                        let _ = slot.set(internal);
                        return Outcome::KeepAlive;
                    }
                    None => header_rules::error_page_with(
                        head,
                        place.cx,
                        place.env,
                        (status, canonical_reason(status)),
                        close,
                        extra,
                        place.signed,
                    ),
                },
            }
        }
    };
    match client.send_answer(&answer, place.timeout).await {
        Ok(()) if !close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// The core's default handler: GET, HEAD and POST get the file; OPTIONS
/// the methods; others 405.
async fn send_file<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    file: &FileMapped<'_>,
    (path, meta): (&Path, &std::fs::Metadata),
    place: &Place<'_>,
) -> Outcome {
    let name = path.file_name().map_or(&b""[..], |n| n.as_bytes());
    let ty = map::file_type(&file.files.mime, name);
    if let Some(handler) = ty.handler {
        tracing::error!(peer = %place.cx.facts.peer, "{}: needs the handler \"{handler}\" (AddHandler), which wsgate does not have", path.display());
        return status_page(client, head, place, 403, &[]).await;
    }
    let content_type =
        ty.content_type.map(
            |t| match ty.charset.or(default_charset(&file.files.mime, t)) {
                Some(c) if !t.contains("charset") => format!("{t}; charset={c}"),
                _ => t.to_string(),
            },
        );
    let push = |fields: &mut HeaderFields, n: &'static str, v: String| {
        fields.push((n.into(), FieldValue::copy_from_slice(v.as_bytes())));
    };
    let mut fields: HeaderFields = negotiated_fields(place);
    if let Some(vary) = &place.vary {
        push(&mut fields, "Vary", vary.clone());
    }
    let allow = if place.cx.server.settings.trace_enable {
        "OPTIONS,HEAD,GET,POST,TRACE"
    } else {
        "OPTIONS,HEAD,GET,POST"
    };
    match head.method.as_str() {
        "GET" | "HEAD" | "POST" => {}
        // The core's OPTIONS answer: the methods, and the file's type.
        "OPTIONS" => {
            push(&mut fields, "Allow", allow.into());
            if let Some(t) = content_type {
                push(&mut fields, "Content-Type", t);
            }
            return send(client, head, place, (200, fields), Body::Bytes(Vec::new())).await;
        }
        _ => return status_page(client, head, place, 405, &[("Allow", allow)]).await,
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mtime_usec = u64::try_from(meta.mtime()).unwrap_or(0) * 1_000_000
        + u64::try_from(meta.mtime_nsec()).unwrap_or(0) / 1000;
    let size = meta.len();
    let v = negotiated_etag(Validators::of_file(size, mtime_usec, now), place, now);
    push(
        &mut fields,
        "Last-Modified",
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(v.modified)),
    );
    push(&mut fields, "ETag", v.etag.clone());
    push(&mut fields, "Accept-Ranges", "bytes".into());
    let precondition = match place.as_error {
        Some(_) => Precondition::Proceed,
        None => conditional::evaluate(&head.method, &head.headers, &v, now),
    };
    let ok = place.as_error.unwrap_or(200);
    match precondition {
        Precondition::Proceed => {}
        // As Apache: the validators, no type, no body.
        Precondition::NotModified => {
            return send(client, head, place, (304, fields), Body::None).await;
        }
        // As Apache: the file's head with an empty body.
        Precondition::Failed => {
            if let Some(t) = content_type {
                push(&mut fields, "Content-Type", t);
            }
            return send(client, head, place, (412, fields), Body::Bytes(Vec::new())).await;
        }
    }
    if let Some(e) = ty.encoding {
        let e = crate::route::negotiate::fix_encoding(e, head.headers.get_str("accept-encoding"));
        push(&mut fields, "Content-Encoding", e);
    }
    if let Some(l) = ty.language {
        push(&mut fields, "Content-Language", l.to_string());
    }
    if let Some(t) = &content_type {
        push(&mut fields, "Content-Type", t.clone());
    }
    // mod_deflate runs before the byte ranges, as Apache's filters do: a
    // range of a compressed answer is a range of the gzip.
    let rules = std::iter::once(&place.cx.server.rules).chain(place.locations.iter().copied());
    let what = deflate::decide(head, place.env, rules, (ok, Some(size)), &fields);
    deflate::adjust(&mut fields, what);
    let source = match what {
        Deflate::Gzip if size > GZIP_WHOLE => {
            let g = Gzip::new(place.deflate_level);
            return send_gzip_stream(client, head, place, (ok, fields), path, g).await;
        }
        Deflate::Gzip => match tokio::fs::read(path).await {
            Ok(data) => Source::Memory(Gzip::whole(place.deflate_level, &data)),
            Err(_) => return status_page(client, head, place, 403, &[]).await,
        },
        _ => Source::File(path),
    };
    let size = source.len(size);
    let ranges = if head.method == "POST" || place.as_error.is_some() {
        Ranges::Whole
    } else {
        conditional::ranges(&head.headers, size, &v)
    };
    match ranges {
        Ranges::Whole => {
            let body = Body::Parts(source, vec![(0, size)], None);
            send(client, head, place, (ok, fields), body).await
        }
        // As Apache: an error page (without a Content-Range).
        Ranges::Unsatisfiable => status_page(client, head, place, 416, &[]).await,
        Ranges::Parts(parts) if parts.len() == 1 => {
            let (s, e) = parts[0];
            push(
                &mut fields,
                "Content-Range",
                format!("bytes {s}-{e}/{size}"),
            );
            let body = Body::Parts(source, vec![(s, e + 1 - s)], None);
            send(client, head, place, (206, fields), body).await
        }
        Ranges::Parts(parts) => {
            let boundary = format!("{:x}{:x}", now, mtime_usec ^ size);
            fields.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            push(
                &mut fields,
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            );
            let parts = parts.iter().map(|&(s, e)| (s, e + 1 - s)).collect();
            let multi = Multipart {
                boundary,
                content_type,
                size,
            };
            let body = Body::Parts(source, parts, Some(multi));
            send(client, head, place, (206, fields), body).await
        }
    }
}

/// The fields a negotiated answer starts with (`Content-Location`,
/// `Vary`, `TCN`); none for another.
fn negotiated_fields(place: &Place<'_>) -> HeaderFields {
    let Some(neg) = &place.negotiated else {
        return Vec::new();
    };
    neg.fields
        .iter()
        .map(|(n, v)| ((*n).into(), FieldValue::copy_from_slice(v.as_bytes())))
        .collect()
}

/// Apache's structured ETag of a negotiated answer: the variant's, then
/// `;` and the variant list validator (the folder's time); a folder
/// changed within the second makes the whole tag weak, as a file does
/// its own.
fn negotiated_etag(mut v: Validators, place: &Place<'_>, now: u64) -> Validators {
    let vlist = place.negotiated.as_ref().and_then(|n| n.vlist);
    if let (Some(open), Some(vlist)) = (v.etag.strip_suffix('"'), vlist) {
        let weak = !open.starts_with("W/") && now.saturating_sub(vlist / 1_000_000) < 1;
        v.etag = format!("{}{open};{vlist:x}\"", if weak { "W/" } else { "" });
    }
    v
}

/// Where an answer's bytes come from: the file, or its gzip in memory.
enum Source<'p> {
    File(&'p Path),
    Memory(Vec<u8>),
}

impl Source<'_> {
    /// The representation's length (`file`: the file's).
    fn len(&self, file: u64) -> u64 {
        match self {
            Source::File(_) => file,
            Source::Memory(m) => m.len() as u64,
        }
    }
}

fn default_charset<'c>(mime: &'c crate::config::model::files::Mime, ty: &str) -> Option<&'c str> {
    let textual = ty.eq_ignore_ascii_case("text/plain") || ty.eq_ignore_ascii_case("text/html");
    mime.default_charset.as_deref().filter(|_| textual)
}

/// How a multi-range answer's parts are introduced.
struct Multipart {
    boundary: String,
    content_type: Option<String>,
    size: u64,
}

impl Multipart {
    fn part_head(&self, start: u64, len: u64) -> String {
        let mut h = format!("\r\n--{}\r\n", self.boundary);
        if let Some(t) = &self.content_type {
            h.push_str(&format!("Content-type: {t}\r\n"));
        }
        h.push_str(&format!(
            "Content-range: bytes {start}-{}/{}\r\n\r\n",
            start + len - 1,
            self.size
        ));
        h
    }

    fn tail(&self) -> String {
        format!("\r\n--{}--\r\n", self.boundary)
    }

    fn length(&self, parts: &[(u64, u64)]) -> u64 {
        let heads: u64 = parts
            .iter()
            .map(|&(s, l)| self.part_head(s, l).len() as u64 + l)
            .sum();
        heads + self.tail().len() as u64
    }
}

enum Body<'p> {
    None,
    /// Pieces (start, length) of the representation, as one body or as
    /// multipart parts.
    Parts(Source<'p>, Vec<(u64, u64)>, Option<Multipart>),
    Bytes(Vec<u8>),
}

/// Sends an answer with the `Header` rules of the server and locations.
async fn send<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    place: &Place<'_>,
    (status, mut fields): (u16, HeaderFields),
    mut body: Body<'_>,
) -> Outcome {
    // mod_deflate on a page of wsgate's (a listing); files are
    // compressed where their ranges are read.
    if let (200, Body::Bytes(b), false) = (status, &body, head.method == "HEAD") {
        let rules = std::iter::once(&place.cx.server.rules).chain(place.locations.iter().copied());
        let what = deflate::decide(
            head,
            place.env,
            rules,
            (status, Some(b.len() as u64)),
            &fields,
        );
        deflate::adjust(&mut fields, what);
        if what == Deflate::Gzip {
            body = Body::Bytes(Gzip::whole(place.deflate_level, b));
        }
    }
    let length = match &body {
        Body::None => None,
        Body::Parts(_, parts, None) => Some(parts.iter().map(|p| p.1).sum()),
        Body::Parts(_, parts, Some(m)) => Some(m.length(parts)),
        Body::Bytes(b) => Some(b.len() as u64),
    };
    let framing = length.map_or(BodyHeader::None, BodyHeader::Length);
    let t = place.timeout;
    if send_head(
        client,
        head,
        place,
        (status, fields),
        (framing, place.close),
    )
    .await
    .is_err()
    {
        return Outcome::Close;
    }
    let sent = if head.method == "HEAD" {
        Ok(())
    } else {
        match body {
            Body::None => Ok(()),
            Body::Bytes(b) => {
                client
                    .send_piece(&Bytes::from(b), Encoding::Length, t)
                    .await
            }
            Body::Parts(source, parts, multi) => {
                send_parts(client, &source, &parts, multi.as_ref(), t).await
            }
        }
    };
    match sent {
        Ok(()) if !place.close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// An answer's head, with the `Header` rules of the server and the
/// matching locations, and the server's banner unless a rule set one.
async fn send_head<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    place: &Place<'_>,
    (status, mut fields): (u16, HeaderFields),
    (body, close): (BodyHeader, bool),
) -> std::io::Result<()> {
    header_rules::response(
        head,
        place.cx,
        place.locations,
        place.env,
        status,
        &mut fields,
    );
    let resp = ResponseHead {
        version: crate::http::Version::HTTP_11,
        status,
        reason: canonical_reason(status).into(),
        headers: Headers { fields },
    };
    let c = ClientResponse {
        body,
        close,
        upgrade: None,
        public_host: "",
        reverse: &[],
        banner: place.signed.banner,
    };
    client.send_head(&resp, &c, None, place.timeout).await
}

/// Files up to this size are compressed whole and sent with a length;
/// larger ones stream chunked.
const GZIP_WHOLE: u64 = 256 * 1024;

/// A large file compressed as it is read, chunked (HTTP/1.0: until the
/// connection closes).
async fn send_gzip_stream<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    place: &Place<'_>,
    (status, fields): (u16, HeaderFields),
    path: &Path,
    mut g: Gzip,
) -> Outcome {
    let http11 = deflate::client_is_http11(head);
    let (encoding, header, close) = if http11 {
        (Encoding::Chunked, BodyHeader::Chunked, place.close)
    } else {
        (Encoding::Raw, BodyHeader::None, true)
    };
    let t = place.timeout;
    let sent = async {
        send_head(client, head, place, (status, fields), (header, close)).await?;
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; PIECE];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Some(out) = g.push(&buf[..n], false) {
                client.send_piece(&out, encoding, t).await?;
            }
        }
        client.send_piece(&g.finish(), encoding, t).await?;
        client.finish(encoding, t).await
    };
    match sent.await {
        Ok(()) if !close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// A representation's pieces, a file's read a piece at a time.
async fn send_parts<D: Downstream>(
    client: &mut D,
    source: &Source<'_>,
    parts: &[(u64, u64)],
    multi: Option<&Multipart>,
    t: Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    let mut file = match source {
        Source::File(path) => Some(tokio::fs::File::open(path).await?),
        Source::Memory(_) => None,
    };
    let mut buf = vec![0u8; PIECE];
    for &(start, len) in parts {
        if let Some(m) = multi {
            let h = Bytes::from(m.part_head(start, len));
            client.send_piece(&h, Encoding::Length, t).await?;
        }
        let (Some(f), Source::File(_)) = (file.as_mut(), source) else {
            if let Source::Memory(m) = source {
                let (s, e) = (start as usize, (start + len) as usize);
                let piece = Bytes::copy_from_slice(m.get(s..e).unwrap_or_default());
                client.send_piece(&piece, Encoding::Length, t).await?;
            }
            continue;
        };
        f.seek(std::io::SeekFrom::Start(start)).await?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
            let n = f.read(&mut buf[..want]).await?;
            if n == 0 {
                // The file shrank since its length was sent: the answer
                // cannot be finished.
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            client
                .send_piece(&Bytes::copy_from_slice(&buf[..n]), Encoding::Length, t)
                .await?;
            left -= n as u64;
        }
    }
    if let Some(m) = multi {
        client
            .send_piece(&Bytes::from(m.tail()), Encoding::Length, t)
            .await?;
    }
    client.finish(Encoding::Length, t).await
}

/// mod_autoindex's plain listing: the entries an `IndexIgnore` or a
/// `Require` does not hide, sorted by name, directories with a slash.
async fn listing<D: Downstream>(
    client: &mut D,
    head: &RequestHead,
    (file, found): (&FileMapped<'_>, &gate::Found),
    (dir, uri): (&[u8], &[u8]),
    place: &Place<'_>,
) -> Outcome {
    if !matches!(head.method.as_str(), "GET" | "HEAD") {
        return status_page(client, head, place, 405, &[("Allow", "GET,HEAD")]).await;
    }
    let dir_path = with_slash(dir);
    let read_from = dir_path.clone();
    let entries = tokio::task::spawn_blocking(move || read_dir(&read_from))
        .await
        .unwrap_or_default();
    let mut shown: Vec<(Vec<u8>, bool)> = entries
        .into_iter()
        .filter(|(name, _)| !map::ignored_in_listing(file.files, name))
        .filter(|(name, is_dir)| {
            let m = if *is_dir {
                let mut d = dir_path.clone();
                d.extend_from_slice(name);
                d.push(b'/');
                map::merged(file.files, &d, None)
            } else {
                map::merged(file.files, &dir_path, Some(name))
            };
            // As mod_autoindex's subrequests: an entry access would refuse
            // (or ask a user for) is left out.
            visible(head, file, &m, place, found)
        })
        .collect();
    shown.sort();
    let title = crate::ops::status::escape(&String::from_utf8_lossy(uri));
    let mut page = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html>\n <head>\n  <title>Index of {title}</title>\n </head>\n <body>\n<h1>Index of {title}</h1>\n<ul>"
    );
    if uri != b"/" {
        page.push_str("<li><a href=\"../\"> Parent Directory</a></li>\n");
    }
    for (name, is_dir) in &shown {
        let mut href = String::new();
        encode_path(name, &mut href);
        let text = crate::ops::status::escape(&String::from_utf8_lossy(name));
        let slash = if *is_dir { "/" } else { "" };
        page.push_str(&format!(
            "<li><a href=\"{href}{slash}\"> {text}{slash}</a></li>\n"
        ));
    }
    page.push_str("</ul>\n</body></html>\n");
    let mut fields = vec![
        ("Server".into(), FieldValue::from_static(b"wsgate")),
        (
            "Content-Type".into(),
            FieldValue::from_static(b"text/html;charset=UTF-8"),
        ),
    ];
    if let Some(vary) = &place.vary {
        fields.push(("Vary".into(), FieldValue::copy_from_slice(vary.as_bytes())));
    }
    send(
        client,
        head,
        place,
        (200, fields),
        Body::Bytes(page.into_bytes()),
    )
    .await
}

/// A directory's entries: names and whether each is a directory
/// (following links).
fn read_dir(dir: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let Ok(entries) = std::fs::read_dir(OsStr::from_bytes(dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            let is_dir = std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            (e.file_name().as_bytes().to_vec(), is_dir)
        })
        .collect()
}
