//! Header actions and SetEnvIf on their own.

use super::*;
use crate::config::from_str;
use crate::http::{FieldValue, HeaderFields};

fn rules(text: &str) -> crate::config::model::headers::Rules {
    let c = from_str(&format!("Listen 127.0.0.1:1\n{text}"), "t.conf").unwrap();
    c.main.rules.clone()
}

struct NoVars;
impl expr::Context for NoVars {
    fn var(&self, _: &expr::ExprVar) -> String {
        String::new()
    }
}

fn run(text: &str, headers: &[(&str, &str)], env: &Env) -> Vec<(String, String)> {
    let r = rules(text);
    let mut fields: HeaderFields = headers
        .iter()
        .map(|(n, v)| ((*n).into(), FieldValue::copy_from_slice(v.as_bytes())))
        .collect();
    let request = fields.clone();
    let facts = Facts {
        env,
        expr: &NoVars,
        received_us: 1,
        elapsed_us: 2,
        request_headers: &request,
    };
    for rule in &r.response {
        if rule.applies(&facts, false) {
            rule.apply(&mut fields, &facts);
        }
    }
    fields
        .into_iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn set_append_add_merge_setifempty_unset() {
    let env = Env::default();
    assert_eq!(
        run(
            "Header set X-A new",
            &[("X-A", "1"), ("B", "b"), ("x-a", "2")],
            &env
        ),
        pairs(&[("X-A", "new"), ("B", "b")])
    );
    assert_eq!(
        run("Header append X-A two", &[("X-A", "one")], &env),
        pairs(&[("X-A", "one, two")])
    );
    assert_eq!(
        run("Header add X-A two", &[("X-A", "one")], &env),
        pairs(&[("X-A", "one"), ("X-A", "two")])
    );
    assert_eq!(
        run("Header merge X-A one", &[("X-A", "one")], &env),
        pairs(&[("X-A", "one")])
    );
    assert_eq!(
        run("Header merge X-A two", &[("X-A", "one")], &env),
        pairs(&[("X-A", "one, two")])
    );
    assert_eq!(
        run("Header setifempty X-A v", &[("X-A", "one")], &env),
        pairs(&[("X-A", "one")])
    );
    assert_eq!(
        run("Header setifempty X-A v", &[], &env),
        pairs(&[("X-A", "v")])
    );
    assert_eq!(
        run(
            "Header unset X-A",
            &[("X-A", "1"), ("x-a", "2"), ("B", "b")],
            &env
        ),
        pairs(&[("B", "b")])
    );
}

#[test]
fn edit_first_and_every_match() {
    let env = Env::default();
    assert_eq!(
        run("Header edit X-A a(\\d) b$1", &[("X-A", "a1a2")], &env),
        pairs(&[("X-A", "b1a2")])
    );
    assert_eq!(
        run("Header edit* X-A a(\\d) b$1", &[("X-A", "a1a2")], &env),
        pairs(&[("X-A", "b1b2")])
    );
}

#[test]
fn env_conditions_and_format_specifiers() {
    let mut env = Env::default();
    env.set("ROUTE", "r1");
    assert_eq!(
        run("Header set X-R \"route=%{ROUTE}e %%\" env=ROUTE", &[], &env),
        pairs(&[("X-R", "route=r1 %")])
    );
    assert_eq!(run("Header set X-R v env=!ROUTE", &[], &env), pairs(&[]));
    assert_eq!(
        run("Header set X-M %{MISSING}e", &[], &env),
        pairs(&[("X-M", "(null)")])
    );
    assert_eq!(
        run("Header set X-T \"%t %D\"", &[], &env),
        pairs(&[("X-T", "t=1 D=2")])
    );
}

#[test]
fn no_rule_can_emit_a_line_break() {
    let mut env = Env::default();
    env.set("EVIL", "a\r\nX-Injected: 1");
    assert_eq!(run("Header set X-E %{EVIL}e", &[], &env), pairs(&[]));
    // The configuration syntax has no escape for CR or LF at all.
    let edited = run(
        "Header edit X-A (.*) \"$1\\r\\nX-Injected: 1\"",
        &[("X-A", "v")],
        &env,
    );
    assert!(
        edited.iter().all(|(_, v)| !v.contains(['\r', '\n'])),
        "{edited:?}"
    );
}

#[test]
fn setenvif_sets_unsets_and_captures() {
    let r = rules("SetEnvIf User-Agent \"^curl/(\\d+)\" is_curl CURL_MAJOR=$1\nSetEnvIfNoCase X-Mode ^DEBUG debug\nSetEnvIf Request_URI ^/private !is_curl\n");
    let headers: HeaderFields = vec![
        ("User-Agent".into(), "curl/8.1".into()),
        ("X-Mode".into(), "debug-please".into()),
    ];
    let run_for = |uri: &[u8]| {
        let mut env = Env::default();
        let a = RequestAttributes {
            remote_addr: "127.0.0.1".into(),
            server_addr: "127.0.0.1".into(),
            method: "GET",
            protocol: "HTTP/1.1",
            uri,
            headers: &headers,
        };
        for s in &r.setenvif {
            s.apply(&a, &mut env);
        }
        env
    };
    let env = run_for(b"/x");
    assert_eq!(env.get("is_curl"), Some("1"));
    assert_eq!(env.get("CURL_MAJOR"), Some("8"));
    assert_eq!(env.get("debug"), Some("1"));
    assert_eq!(run_for(b"/private/a").get("is_curl"), None);
}

#[test]
fn unsupported_parts_are_configuration_errors() {
    for bad in [
        "Header set X %{SSL_PROTOCOL}s",
        "Header set X %q",
        "Header note X y",
        "Header set X v expr=%{TIME_HOUR}",
        "Header frobnicate X v",
        "RequestHeader echo X",
        "SetEnvIf Remote_User x y",
        "Header set X",
    ] {
        assert!(
            from_str(&format!("Listen 127.0.0.1:1\n{bad}"), "t.conf").is_err(),
            "{bad}"
        );
    }
}
