//! `ErrorDocument` on the answers wsgate makes itself, as Apache's
//! `ap_die` does: a message is the body (`text/html;
//! charset=iso-8859-1`, the status kept), a full URL a 302 to it, and a
//! local url-path an internal redirect — a GET of that path, answered by
//! the file server with the original status, or by a backend with its own
//! answer. A document that fails in turn gives the server's own page for
//! the original status, as Apache's recursive error does.
//!
//! Backend answers are the backend's: Apache applies `ErrorDocument` to
//! them only under `ProxyErrorOverride On`, whose hook is [`page`] (call it
//! with the backend's status where that directive says so).

use super::header_rules::{self, Context};
use crate::config::model::files::ErrorDoc;
use crate::http::write::{LocalAnswer, Signed};
use crate::http::{canonical_reason, FieldValue, RequestHead};
use crate::route::errordoc::{lookup, FileSpot};
use crate::rules::Env;

/// A local url-path to answer an error status with: the caller makes the
/// internal redirect (see `request::internal_redirect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Internal {
    pub status: u16,
    pub url: String,
}

/// The answer to an error `status` wsgate makes for a request (the
/// server's own page, or its `ErrorDocument`'s message or redirect);
/// `Err` for a document that is a local url-path. `spot`: where in the
/// file system the request was, for the `<Directory>`/`<Files>` sections'
/// documents.
pub fn page<'c>(
    head: &RequestHead,
    cx: Context<'c>,
    env: &Env,
    (status, reason, close): (u16, &str, bool),
    extra: &[(&str, &str)],
    signed: &Signed<'_>,
    spot: Option<FileSpot<'_>>,
) -> Result<LocalAnswer, Internal> {
    let own = |status: u16, extra: &[(&str, &str)]| {
        let reason = if status == 302 {
            canonical_reason(302)
        } else {
            reason
        };
        header_rules::error_page_with(head, cx, env, (status, reason), close, extra, signed)
    };
    let doc = if status >= 400 {
        lookup(cx.server, &cx.path.decoded, spot, status)
    } else {
        None
    };
    match doc {
        None | Some(ErrorDoc::Default) => Ok(own(status, extra)),
        Some(ErrorDoc::Text(text)) => {
            let mut answer = own(status, extra);
            answer.fields.retain(|(n, _)| {
                !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("content-type")
            });
            answer.fields.push((
                "Content-Length".into(),
                FieldValue::copy_from_slice(text.len().to_string().as_bytes()),
            ));
            answer.fields.push((
                "Content-Type".into(),
                FieldValue::from_static(b"text/html; charset=iso-8859-1"),
            ));
            answer.body = text.as_bytes().to_vec();
            Ok(answer)
        }
        // The original status's own fields (a 405's Allow) do not follow:
        // Apache sets them for that status only.
        Some(ErrorDoc::Remote(url)) => Ok(own(302, &[("Location", url.as_str())])),
        Some(ErrorDoc::Local(url)) => Err(Internal {
            status,
            url: url.clone(),
        }),
    }
}

/// The request an internal redirect to `url` makes of `head`: a GET (a
/// HEAD stays a HEAD, so no body is sent), without a body.
pub fn redirected_head(head: &RequestHead, url: &str) -> RequestHead {
    let mut new = head.clone();
    if new.method != "HEAD" {
        new.method = "GET".into();
    }
    new.target = url.into();
    new.headers.remove("content-length");
    new.headers.remove("transfer-encoding");
    new.headers.remove("expect");
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_rules::ConnFacts;
    use crate::route::RequestPath;

    fn config(text: &str) -> crate::config::Config {
        crate::config::from_str(
            &format!("Listen 127.0.0.1:0\nServerName main.test\n{text}"),
            "t.conf",
        )
        .expect("a valid configuration")
    }

    fn answer(c: &crate::config::Config, target: &str, status: u16) -> Result<LocalAnswer, String> {
        let head = RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: crate::http::Version::HTTP_11,
            headers: Default::default(),
        };
        let path = crate::route::normalize(&head.target).expect("a path");
        let path: &RequestPath = &path;
        let addr = "127.0.0.1:80".parse().expect("an address");
        let facts = ConnFacts {
            peer: addr,
            local: addr,
            https: false,
            via: None,
            keepalive: true,
        };
        let now = std::time::SystemTime::now();
        let cx = Context {
            path,
            facts,
            server: &c.main,
            received: now,
            started: std::time::Instant::now(),
        };
        let signed = crate::proxy::signature::signed(c, &c.main, None, false);
        let reason = canonical_reason(status);
        page(
            &head,
            cx,
            &Env::default(),
            (status, reason, false),
            &[],
            &signed,
            None,
        )
        .map_err(|i| format!("{} {}", i.status, i.url))
    }

    #[test]
    fn a_message_is_the_body_as_apache_types_it() {
        let c = config("ErrorDocument 404 \"Not here\"");
        let a = answer(&c, "/x", 404).expect("an answer");
        assert_eq!((a.status, a.body.as_slice()), (404, &b"Not here"[..]));
        let field = |n: &str| {
            a.fields
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(n))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(
            field("content-type").as_deref(),
            Some("text/html; charset=iso-8859-1")
        );
        assert_eq!(field("content-length").as_deref(), Some("8"));
    }

    #[test]
    fn a_url_is_a_302_and_a_path_an_internal_redirect() {
        let c = config("ErrorDocument 503 http://e.test/down\nErrorDocument 404 /err/404.html");
        let a = answer(&c, "/x", 503).expect("an answer");
        assert_eq!(a.status, 302);
        assert!(a
            .fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("location") && &v[..] == b"http://e.test/down"));
        assert_eq!(
            answer(&c, "/x", 404).err().as_deref(),
            Some("404 /err/404.html")
        );
        assert_eq!(answer(&c, "/x", 403).expect("own page").status, 403);
    }
}
