//! `Options MultiViews` for the file server: a name that does not exist
//! in a folder is looked for as `name.*`, the files mod_mime can type are
//! rated by `route::negotiate` (Apache's algorithm), and the choice is
//! served with the `Content-Location`, `Vary` and `TCN` Apache sends; a
//! 406 carries `Alternates`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::config::model::files::{Files, Opts};
use crate::http::RequestHead;
use crate::route::files as map;
use crate::route::negotiate::{self, Asked, Variant};

/// What a negotiated answer adds to the chosen file's.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// `Content-Location`, `Vary`, `TCN` (those that apply), in order.
    pub fields: Vec<(&'static str, String)>,
    /// The folder's modification time (µs): Apache's variant list
    /// validator, joined to the file's ETag (not for a `DirectoryIndex`
    /// name, whose sub-request's validator Apache does not keep).
    pub vlist: Option<u64>,
}

/// What MultiViews made of a missing name.
#[derive(Debug)]
pub enum Found {
    /// No file is named `name.…`: as without MultiViews.
    Nothing,
    /// Files are, but none could be served (AH00687): 404.
    NoneUsable,
    Chosen {
        path: PathBuf,
        neg: Negotiated,
    },
    /// A variant is a type map (`AddHandler type-map`): 500.
    TypeMap(Vec<u8>),
    /// None acceptable: 406 with these fields.
    NotAcceptable(Vec<(&'static str, String)>),
}

/// One entry of the folder that may be a variant.
struct Entry {
    name: Vec<u8>,
    meta: Option<std::fs::Metadata>,
}

/// Negotiates `name` in folder `dir` (with its slash). `permitted` says
/// whether the file sections let a file of the folder be served.
pub async fn negotiate(
    files: &Files,
    (dir, name): (&[u8], &[u8]),
    head: &RequestHead,
    (path_info, query): (bool, bool),
    permitted: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Found {
    let options = map::merged(files, dir, None).options;
    let (read_dir, wanted) = (dir.to_vec(), name.to_vec());
    let read = tokio::task::spawn_blocking(move || entries(&read_dir, &wanted, options))
        .await
        .unwrap_or_default();
    let Some((entries, dir_mtime)) = read else {
        return Found::Nothing;
    };
    if entries.is_empty() {
        return Found::Nothing;
    }
    let mut variants: Vec<Variant> = entries
        .iter()
        .filter_map(|e| {
            let meta = e.meta.as_ref().filter(|m| m.is_file())?;
            if !permitted(&e.name) {
                return None;
            }
            negotiate::variant(&files.mime, name, &e.name, meta.len())
        })
        .collect();
    if variants.is_empty() {
        return Found::NoneUsable;
    }
    // Apache reads a type map found among the variants instead; wsgate
    // reads none, so it chooses nothing here rather than choose otherwise.
    if let Some(map) = variants.iter().find(|v| v.type_map) {
        return Found::TypeMap(map.file_name.clone());
    }
    variants.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    let get = |n: &str| head.headers.get_str(n);
    let transparent = matches!(head.method.as_str(), "GET" | "HEAD") && !path_info;
    let asked = Asked {
        accept: get("accept"),
        language: get("accept-language"),
        charset: get("accept-charset"),
        encoding: get("accept-encoding"),
        prefer_scripts: head.method != "GET" || query || path_info,
    };
    let chosen = negotiate::choose(&mut variants, &asked, &files.negotiation);
    let vary = negotiate::vary(&variants, transparent);
    let Some(i) = chosen else {
        let mut fields = vec![("Alternates", negotiate::alternates(&variants))];
        fields.extend(vary.map(|v| ("Vary", v)));
        if transparent {
            fields.push(("TCN", "list".to_string()));
        }
        return Found::NotAcceptable(fields);
    };
    let mut fields = Vec::new();
    if transparent {
        fields.push(("Content-Location", negotiate::escaped_name(&variants[i])));
    }
    fields.extend(vary.map(|v| ("Vary", v)));
    if transparent {
        fields.push(("TCN", "choice".to_string()));
    }
    let mut path = dir.to_vec();
    path.extend_from_slice(&variants[i].file_name);
    Found::Chosen {
        path: PathBuf::from(OsStr::from_bytes(&path)),
        neg: Negotiated {
            fields,
            vlist: Some(dir_mtime),
        },
    }
}

/// The folder's entries named `wanted.…` that are not folders (a
/// symbolic link followed as `Options` allows; `None` metadata when it
/// may not be), and the folder's modification time in µs; `None` when
/// the folder cannot be read.
fn entries(dir: &[u8], wanted: &[u8], options: Opts) -> Option<(Vec<Entry>, u64)> {
    let path = OsStr::from_bytes(dir);
    let dir_meta = std::fs::metadata(path).ok()?;
    let mtime = u64::try_from(dir_meta.mtime()).unwrap_or(0) * 1_000_000
        + u64::try_from(dir_meta.mtime_nsec()).unwrap_or(0) / 1000;
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).ok()?.flatten() {
        let name = e.file_name().as_bytes().to_vec();
        if name.len() <= wanted.len() || !name.starts_with(wanted) || name[wanted.len()] != b'.' {
            continue;
        }
        let Ok(own) = e.path().symlink_metadata() else {
            continue;
        };
        if own.is_dir() {
            continue;
        }
        let meta = if own.file_type().is_symlink() {
            std::fs::metadata(e.path()).ok().filter(|target| {
                options.has(Opts::FOLLOW_SYMLINKS)
                    || (options.has(Opts::SYMLINKS_IF_OWNER_MATCH) && target.uid() == own.uid())
            })
        } else {
            Some(own)
        };
        out.push(Entry { name, meta });
    }
    Some((out, mtime))
}
