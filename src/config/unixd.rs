//! mod_unixd's `User` and `Group`: whom wsgate serves as when it is
//! started as root. As Apache, names or `#number`s, resolved when the
//! configuration is read (a name this system lacks is an error at its
//! line), and never root: Apache refuses to serve as root, and so does
//! wsgate. Unlike Apache, whose default is `#-1`, `Group` may be left out:
//! the user's own group is taken.

use std::ffi::{CStr, CString};

use super::directives::arg;
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::model::RunAs;
use super::{At, Builder};

/// One `User` or `Group` line, resolved.
#[derive(Debug, Clone)]
pub(super) struct Named {
    pub name: String,
    pub id: u32,
    pub origin: Origin,
}

pub(super) fn user(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let (o, v) = (&node.origin, arg(node));
    let (name, uid) = match number(v) {
        Some(uid) => (account_of(uid).map_or_else(|| v.to_string(), |a| a.0), uid),
        None => {
            let (uid, _) = account_named(v).ok_or_else(|| {
                ConfigError::new(o, format!("User '{v}': no such user on this system"))
                    .hint("name an existing user (Debian's envvars set APACHE_RUN_USER=www-data; RHEL's httpd.conf says `User apache`), or create it with `adduser --system NAME`")
            })?;
            (v.to_string(), uid)
        }
    };
    if uid == 0 {
        return Err(ConfigError::new(
            o,
            format!("User {v}: wsgate does not serve as root (nor does Apache: a process serving requests as root turns any flaw into a root compromise)"),
        )
        .hint("name an unprivileged user, e.g. `User www-data`; wsgate binds its ports and opens its logs and keys as root before it changes to that user"));
    }
    b.user = Some(Named {
        name,
        id: uid,
        origin: o.clone(),
    });
    Ok(())
}

pub(super) fn group(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let (o, v) = (&node.origin, arg(node));
    let gid = match number(v) {
        Some(gid) => gid,
        None => group_named(v).ok_or_else(|| {
            ConfigError::new(o, format!("Group '{v}': no such group on this system"))
                .hint("name an existing group (Debian: www-data; RHEL: apache), or create it with `addgroup --system NAME`")
        })?,
    };
    b.group = Some(Named {
        name: v.to_string(),
        id: gid,
        origin: o.clone(),
    });
    Ok(())
}

/// The two lines together: `None` without `User`.
pub(super) fn run_as(
    user: Option<Named>,
    group: Option<Named>,
) -> Result<Option<RunAs>, ConfigError> {
    let Some(user) = user else {
        return match group {
            Some(g) => Err(ConfigError::new(
                &g.origin,
                format!(
                    "Group {} without User: wsgate changes its group only along with its user",
                    g.name
                ),
            )
            .hint("add `User NAME` (Debian: `User ${APACHE_RUN_USER}`)")),
            None => Ok(None),
        };
    };
    let gid = match &group {
        Some(g) => g.id,
        None => match account_of(user.id) {
            Some((_, gid)) => gid,
            None => {
                return Err(ConfigError::new(
                    &user.origin,
                    format!(
                        "User {}: no such user on this system, so no group to take from it",
                        user.name
                    ),
                )
                .hint("add `Group NAME` or `Group #GID`"))
            }
        },
    };
    Ok(Some(RunAs {
        user: user.name,
        uid: user.id,
        group: group.map(|g| g.name),
        gid,
    }))
}

/// `#123` (Apache's form for a number).
fn number(v: &str) -> Option<u32> {
    v.strip_prefix('#')?.parse().ok()
}

/// The user named `name`: its uid and primary gid.
fn account_named(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    passwd(&mut |pw, buf: &mut Vec<libc::c_char>, out| {
        // SAFETY: every pointer is valid for the call; getpwnam_r writes
        // only into `pw` and `buf`, within `buf.len()`.
        unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf.as_mut_ptr(), buf.len(), out) }
    })
    .map(|(_, uid, gid)| (uid, gid))
}

/// The user with `uid`: its name and primary gid.
pub(crate) fn account_of(uid: u32) -> Option<(String, u32)> {
    passwd(&mut |pw, buf: &mut Vec<libc::c_char>, out| {
        // SAFETY: as in `account_named`.
        unsafe { libc::getpwuid_r(uid, pw, buf.as_mut_ptr(), buf.len(), out) }
    })
    .map(|(name, _, gid)| (name, gid))
}

type PasswdCall<'a> = dyn FnMut(*mut libc::passwd, &mut Vec<libc::c_char>, *mut *mut libc::passwd) -> libc::c_int
    + 'a;

fn passwd(call: &mut PasswdCall<'_>) -> Option<(String, u32, u32)> {
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: a zeroed passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pw, &mut buf, &mut out);
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || out.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points into `buf`, NUL-terminated.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Some((name, pw.pw_uid, pw.pw_gid));
    }
}

fn group_named(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: a zeroed group is a valid out-parameter; getgrnam_r
        // writes only into `gr` and `buf`, within `buf.len()`.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc =
            unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return (rc == 0 && !out.is_null()).then_some(gr.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;

    fn load_str(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        from_str(text, "t.conf")
    }

    fn error(text: &str) -> String {
        load_str(&format!("Listen 127.0.0.1:0\n{text}"))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn names_and_numbers_resolve() {
        let c = load_str("Listen 127.0.0.1:0\nUser nobody\nGroup nogroup\n").unwrap();
        let r = c.run_as.unwrap();
        assert_eq!((r.user.as_str(), r.uid, r.gid), ("nobody", 65534, 65534));
        let c = load_str("Listen 127.0.0.1:0\nUser #65534\n").unwrap();
        let r = c.run_as.unwrap();
        assert_eq!(
            (r.user.as_str(), r.uid, r.gid, r.group),
            ("nobody", 65534, 65534, None)
        );
        assert!(load_str("Listen 127.0.0.1:0\n").unwrap().run_as.is_none());
    }

    #[test]
    fn unknown_names_root_and_a_lone_group_are_errors_at_their_line() {
        let e = error("User no-such-user-here\n");
        assert!(
            e.contains(":2: User 'no-such-user-here': no such user"),
            "{e}"
        );
        let e = error("User nobody\nGroup no-such-group-here\n");
        assert!(
            e.contains(":3: Group 'no-such-group-here': no such group"),
            "{e}"
        );
        let e = error("User root\n");
        assert!(
            e.contains(":2: User root: wsgate does not serve as root"),
            "{e}"
        );
        let e = error("User #0\n");
        assert!(e.contains("does not serve as root"), "{e}");
        let e = error("Group nogroup\n");
        assert!(e.contains(":2: Group nogroup without User"), "{e}");
    }
}
