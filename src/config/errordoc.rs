//! The core's `ErrorDocument CODE "message"|/url-path|URL|default`, read
//! as Apache's `set_error_document` reads it: a value with a space in it
//! is a message, one starting with `/` a local url-path, one with a
//! scheme a full URL, anything else a message.

use super::error::ConfigError;
use super::lexer::Node;
use super::model::files::ErrorDoc;
use super::{At, Builder};

pub(super) fn error_document(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let o = &node.origin;
    let [code, value] = node.args.as_slice() else {
        return Err(ConfigError::new(o, "ErrorDocument takes two arguments")
            .hint("ErrorDocument CODE \"message\"|/local/url-path|http://url|default"));
    };
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| ConfigError::new(o, format!("Unsupported HTTP response code {code}")))?;
    if status < 400 {
        // Apache would also change the pages of its own redirects
        // (mod_alias's, DirectorySlash's); wsgate applies documents to the
        // error statuses only, so it says so rather than skip the line.
        return Err(ConfigError::new(
            o,
            format!(
                "ErrorDocument {status}: wsgate applies ErrorDocument to 4xx and 5xx answers only"
            ),
        )
        .hint("take it out, or keep it for Apache only inside <IfModule !wsgate_module>"));
    }
    if value.contains("%{") {
        return Err(ConfigError::new(
            o,
            "ErrorDocument: wsgate does not evaluate expressions (%{...}) in an ErrorDocument",
        )
        .hint("write the text or url-path out"));
    }
    let doc = if value.eq_ignore_ascii_case("default") {
        ErrorDoc::Default
    } else if value.contains(' ') {
        ErrorDoc::Text(value.clone())
    } else if value.starts_with('/') {
        ErrorDoc::Local(value.clone())
    } else if is_url(value) {
        if status == 401 {
            // Apache's AH00113, a notice: the line is dropped.
            b.warnings.push(format!(
                "{o}: cannot use a full URL in a 401 ErrorDocument directive --- ignoring!"
            ));
            return Ok(());
        }
        ErrorDoc::Remote(value.clone())
    } else {
        ErrorDoc::Text(value.clone())
    };
    let list = match (at.location.as_deref_mut(), at.section.as_deref_mut()) {
        (Some(loc), _) => &mut loc.error_docs,
        (None, Some(s)) => &mut s.settings.error_docs,
        (None, None) => &mut at.server.files.base.error_docs,
    };
    list.push((status, doc));
    Ok(())
}

/// Apache's `ap_is_url`: a scheme (letters, digits, `+`, `-`, `.`) and a
/// colon.
fn is_url(v: &str) -> bool {
    match v.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::model::files::ErrorDoc;

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        crate::config::from_str(
            &format!("Listen 127.0.0.1:0\nServerName main.test\n{text}"),
            "t.conf",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn values_are_told_apart_as_apache_does() {
        let c = parse(
            "ErrorDocument 404 /err/404.html\nErrorDocument 403 \"Go away now\"\nErrorDocument 500 http://e.test/oops\nErrorDocument 405 bareword\nErrorDocument 502 default\nErrorDocument 401 https://e.test/login",
        )
        .expect("valid");
        assert_eq!(
            c.main.files.base.error_docs,
            vec![
                (404, ErrorDoc::Local("/err/404.html".into())),
                (403, ErrorDoc::Text("Go away now".into())),
                (500, ErrorDoc::Remote("http://e.test/oops".into())),
                (405, ErrorDoc::Text("bareword".into())),
                (502, ErrorDoc::Default),
            ]
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("cannot use a full URL in a 401 ErrorDocument")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn redirect_codes_expressions_and_odd_codes_are_errors() {
        for (line, says) in [
            ("ErrorDocument 302 /x", "4xx and 5xx"),
            ("ErrorDocument 404 /x%{REQUEST_URI}", "expressions"),
            ("ErrorDocument 999 /x", "Unsupported HTTP response code 999"),
            ("ErrorDocument 404", "two arguments"),
        ] {
            let e = parse(line).expect_err(line);
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn location_and_directory_lines_stay_in_their_section() {
        let c = parse(
            "<Location /a>\nErrorDocument 404 \"in a\"\n</Location>\n<Directory /srv>\nErrorDocument 403 /no.html\n</Directory>",
        )
        .expect("valid");
        assert_eq!(
            c.main.locations[0].error_docs,
            vec![(404, ErrorDoc::Text("in a".into()))]
        );
        assert_eq!(
            c.main.files.directories[0].settings.error_docs,
            vec![(403, ErrorDoc::Local("/no.html".into()))]
        );
    }
}
