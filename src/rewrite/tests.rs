//! The rewrite engine on its own, through the configuration parser and the
//! router: each case is named for the mod_rewrite rule it checks.

use crate::config::from_str;
use crate::http::{FieldValue, HeaderFields};
use crate::route::tests::map_request;

fn cfg(text: &str) -> crate::config::Config {
    from_str(
        &format!("Listen 127.0.0.1:80\nServerName proxy.test\n{text}"),
        "t.conf",
    )
    .unwrap()
}

fn get(c: &crate::config::Config, target: &str) -> String {
    map_request(c, "GET", target, &[("Host".into(), "proxy.test".into())])
}

fn with(c: &crate::config::Config, target: &str, headers: &[(&str, &str)]) -> String {
    let mut h: HeaderFields = Vec::new();
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        h.push(("Host".into(), "proxy.test".into()));
    }
    h.extend(
        headers
            .iter()
            .map(|(n, v)| ((*n).into(), FieldValue::copy_from_slice(v.as_bytes()))),
    );
    map_request(c, "GET", target, &h)
}

const SEED: &str = "ProxyPass / http://example.com:9080/\nRewriteEngine on\nRewriteCond %{HTTP:Upgrade} websocket [NC]\nRewriteCond %{HTTP:Connection} upgrade [NC]\nRewriteRule ^/?(.*) \"ws://example.com:9080/$1\" [P,L]\n";

#[test]
fn seed_example_three_routes_upgrades_to_ws_and_the_rest_to_proxypass() {
    let c = cfg(SEED);
    assert_eq!(
        with(
            &c,
            "/chat?x=1",
            &[
                ("Upgrade", "WebSocket"),
                ("Connection", "keep-alive, Upgrade")
            ]
        ),
        "ws://example.com:9080/chat?x=1"
    );
    assert_eq!(
        with(&c, "/chat", &[("Upgrade", "websocket")]),
        "http://example.com:9080/chat",
        "both conditions must hold"
    );
    assert_eq!(get(&c, "/page"), "http://example.com:9080/page");
}

#[test]
fn rules_run_before_proxypass_and_a_local_rewrite_hides_the_request() {
    let c = cfg("ProxyPass /pp/ http://b/\nRewriteEngine On\nRewriteRule ^/rel/(.*) /pp/$1\n");
    assert_eq!(
        get(&c, "/rel/a"),
        "404",
        "S11: rewritten to a local path, ProxyPass never sees it"
    );
    assert_eq!(get(&c, "/pp/a"), "http://b/a");
    let c = cfg("ProxyPass /pp/ http://b/\nRewriteEngine On\nRewriteRule ^/rel/(.*) /pp/$1 [PT]\n");
    assert_eq!(
        get(&c, "/rel/a"),
        "http://b/a",
        "[PT] hands the new path to ProxyPass"
    );
}

#[test]
fn engine_off_ignores_rules() {
    let c = cfg("RewriteEngine Off\nRewriteRule ^/x http://b/ [P]\n");
    assert_eq!(get(&c, "/x"), "404");
}

#[test]
fn query_string_handling() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/keep/(.*)$ http://b/keep/$1 [P]\nRewriteRule ^/q/(.*)$ http://b/q?arg=$1 [P]\nRewriteRule ^/qsa/(.*)$ http://b/qsa?arg=$1 [P,QSA]\nRewriteRule ^/qsd/(.*)$ http://b/qsd/$1 [P,QSD]\nRewriteRule ^/qm/(.*)$ http://b/qm/$1? [P]\n");
    assert_eq!(get(&c, "/keep/abc?orig=1"), "http://b/keep/abc?orig=1");
    assert_eq!(get(&c, "/q/abc?orig=1"), "http://b/q?arg=abc");
    assert_eq!(get(&c, "/qsa/abc?orig=1"), "http://b/qsa?arg=abc&orig=1");
    assert_eq!(get(&c, "/qsd/abc?orig=1"), "http://b/qsd/abc");
    assert_eq!(get(&c, "/qm/abc?orig=1"), "http://b/qm/abc");
}

#[test]
fn proxied_paths_are_canonicalised() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/keep/(.*)$ http://b/keep/$1 [P]\n");
    assert_eq!(
        get(&c, "/keep/a%20b%22c%3Cd%25e"),
        "http://b/keep/a%20b%22c%3Cd%25e"
    );
    assert_eq!(
        get(&c, "/keep/a%0d%0aHost:%20x"),
        "http://b/keep/a%0D%0AHost:%20x"
    );
}

#[test]
fn cve_2023_25690_a_query_with_space_or_crlf_is_403() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/q/(.*)$ http://b/q?arg=$1 [P]\n");
    assert_eq!(get(&c, "/q/a%20b"), "403");
    assert_eq!(
        get(
            &c,
            "/q/x%20HTTP/1.1%0d%0aHost:%20evil%0d%0a%0d%0aGET%20/smuggled"
        ),
        "403"
    );
    assert_eq!(
        get(&c, "/q/a%3fb"),
        "http://b/q?arg=a?b",
        "after a literal '?', a decoded '?' is data"
    );
}

#[test]
fn cve_2024_38474_a_question_mark_from_a_backreference_is_403() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/keep/(.*)$ http://b/keep/$1 [P]\nRewriteRule ^/ok/(.*)$ http://b/ok/$1 [P,UnsafeAllow3F]\n");
    assert_eq!(get(&c, "/keep/a%3fb"), "403");
    assert_eq!(get(&c, "/ok/a%3fb"), "http://b/ok/a?b");
}

#[test]
fn cve_2024_39573_only_p_rules_proxy() {
    let c = cfg(
        "RewriteEngine On\nRewriteRule ^/r/(.*) $1\nRewriteRule ^/ext/(.*) http://example.com/$1\n",
    );
    assert_eq!(get(&c, "/r/proxy:http://evil/"), "404");
    assert_eq!(
        get(&c, "/r/http://evil/x"),
        "404",
        "merged slashes: 'http:/evil/x' is a local path"
    );
    assert_eq!(
        get(&c, "/ext/x?a=1"),
        "302 http://example.com/x?a=1",
        "an absolute url without [P] is a redirect, never a proxy"
    );
}

#[test]
fn cve_2024_38477_a_target_without_host_is_400() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/nohost/(.*) http:///$1 [P]\n");
    assert_eq!(get(&c, "/nohost/x"), "400");
}

#[test]
fn userinfo_from_the_request_is_refused() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/c/(.*) http://127.0.0.1:9$1 [P]\n");
    assert_eq!(get(&c, "/c/@127.0.0.1:10/evil"), "403");
}

#[test]
fn flags_f_g_and_redirects() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/f - [F]\nRewriteRule ^/g - [G]\nRewriteRule ^/r/(.*) /new/$1 [R,L]\nRewriteRule ^/p/(.*) /new/$1 [R=301,L]\nRewriteRule ^/s - [R=404]\n");
    assert_eq!(get(&c, "/f"), "403");
    assert_eq!(get(&c, "/g"), "410");
    assert_eq!(get(&c, "/r/a?x=1"), "302 http://proxy.test/new/a?x=1");
    assert_eq!(get(&c, "/p/a"), "301 http://proxy.test/new/a");
    assert_eq!(get(&c, "/s"), "404");
}

#[test]
fn conditions_or_negation_and_backreferences() {
    let c = cfg("RewriteEngine On\nRewriteCond %{HTTP_HOST} ^(www)\\.(.*)$ [NC]\nRewriteRule ^/h/(.*) http://%2/$1/%1 [P]\nRewriteCond %{REQUEST_METHOD} =POST [OR]\nRewriteCond %{QUERY_STRING} go\nRewriteRule ^/or http://b/or [P]\nRewriteCond %{HTTP:X-Skip} !^yes$\nRewriteRule ^/neg http://b/neg [P]\n");
    assert_eq!(
        with(&c, "/h/p", &[("Host", "WWW.Example.com")]),
        "http://example.com/p/WWW"
    );
    assert_eq!(get(&c, "/or?go=1"), "http://b/or?go=1");
    assert_eq!(get(&c, "/or"), "404");
    assert_eq!(map_request(&c, "POST", "/or", &[]), "http://b/or");
    assert_eq!(
        get(&c, "/neg"),
        "http://b/neg",
        "an absent header is the empty string"
    );
    assert_eq!(with(&c, "/neg", &[("X-Skip", "yes")]), "404");
}

#[test]
fn lexicographic_and_integer_conditions() {
    let c = cfg("RewriteEngine On\nRewriteCond %{HTTP:X-V} >m\nRewriteRule ^/gt http://b/gt [P]\nRewriteCond %{HTTP:X-N} -lt10\nRewriteRule ^/lt http://b/lt [P]\nRewriteCond %{HTTP:X-E} =\"\"\nRewriteRule ^/empty http://b/empty [P]\n");
    assert_eq!(with(&c, "/gt", &[("X-V", "z")]), "http://b/gt");
    assert_eq!(with(&c, "/gt", &[("X-V", "a")]), "404");
    assert_eq!(with(&c, "/lt", &[("X-N", "9")]), "http://b/lt");
    assert_eq!(with(&c, "/lt", &[("X-N", "10")]), "404");
    assert_eq!(get(&c, "/empty"), "http://b/empty");
}

#[test]
fn rules_chain_without_l_and_stop_with_it() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/a/(.*) /b/$1\nRewriteRule ^/b/(.*) http://back/$1 [P]\nRewriteRule ^/l/(.*) /b/$1 [L]\n");
    assert_eq!(
        get(&c, "/a/x"),
        "http://back/x",
        "the second rule sees the first one's output"
    );
    assert_eq!(get(&c, "/l/x"), "404", "[L] stops before the [P] rule");
}

#[test]
fn b_flag_escapes_backreferences_and_proxying_encodes_again() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/b/(.*) http://b/b/$1 [P,B]\n");
    assert_eq!(get(&c, "/b/a%20b&c"), "http://b/b/a+b%2526c");
}

#[test]
fn dot_matches_newline() {
    let c = cfg("RewriteEngine On\nRewriteRule ^/dot/(.*)$ http://b/dot/$1 [P]\n");
    assert_eq!(get(&c, "/dot/a%0ab"), "http://b/dot/a%0Ab");
}

#[test]
fn p_uses_the_parameters_of_the_matching_worker() {
    let c = cfg("ProxyPass /x/ ws://b:9/ timeout=7\nRewriteEngine On\nRewriteRule ^/r/(.*) ws://b:9/$1 [P]\nRewriteRule ^/o/(.*) ws://other/$1 [P]\n");
    let path = crate::route::normalize(&"/r/a".into()).unwrap();
    let headers: HeaderFields = vec![("Host".into(), "proxy.test".into())];
    let req = crate::route::Request {
        method: "GET",
        target: "/r/a",
        version: "HTTP/1.1",
        headers: &headers,
        path: &path,
        remote: "127.0.0.1:1".parse().unwrap(),
        local: "127.0.0.1:80".parse().unwrap(),
        https: false,
        access: Default::default(),
    };
    let params = |w: &crate::config::WorkerRef| match w {
        crate::config::WorkerRef::Configured(i) => c.worker(*i).params.clone(),
        crate::config::WorkerRef::Generic => crate::config::WorkerParams::generic(),
    };
    match crate::route::decide(&c, &c.main, &req) {
        crate::route::Decision::Proxy(m) => {
            let crate::route::Backend::Single { worker, .. } = &m.backend else {
                panic!("{m:?}")
            };
            assert_eq!(
                params(worker).timeout,
                Some(std::time::Duration::from_secs(7))
            );
            assert!(m.reuse);
        }
        other => panic!("{other:?}"),
    }
    let path = crate::route::normalize(&"/o/a".into()).unwrap();
    let req = crate::route::Request {
        target: "/o/a",
        path: &path,
        ..req
    };
    match crate::route::decide(&c, &c.main, &req) {
        crate::route::Decision::Proxy(m) => {
            let crate::route::Backend::Single { worker, .. } = &m.backend else {
                panic!("{m:?}")
            };
            assert_eq!(*worker, crate::config::WorkerRef::Generic);
            assert_eq!(
                params(worker).timeout,
                None,
                "no worker prefixes ws://other/: the generic one"
            );
            assert!(!m.reuse);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vhosts_inherit_the_engine_but_not_the_rules_unless_asked() {
    let text = "Listen 127.0.0.1:80\nServerName main.test\nRewriteEngine On\nRewriteRule ^/main http://main/ [P]\n\
        <VirtualHost *:80>\nServerName a.test\nRewriteRule ^/own http://a/ [P]\n</VirtualHost>\n\
        <VirtualHost *:80>\nServerName b.test\nRewriteOptions Inherit\nRewriteRule ^/own http://b/ [P]\n</VirtualHost>\n";
    let c = from_str(text, "t.conf").unwrap();
    let describe = |vhost: usize, target: &str| {
        let path = crate::route::normalize(&target.into()).unwrap();
        let req = crate::route::Request {
            method: "GET",
            target,
            version: "HTTP/1.1",
            headers: &[],
            path: &path,
            remote: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            https: false,
            access: Default::default(),
        };
        crate::route::tests::describe(&c, crate::route::decide(&c, &c.vhosts[vhost], &req))
    };
    assert_eq!(describe(0, "/own"), "http://a/");
    assert_eq!(describe(0, "/main"), "404");
    assert_eq!(describe(1, "/main"), "http://main/");
}

mod properties {
    use crate::config::from_str;
    use crate::http::HeaderFields;
    use crate::route::tests::map_request;
    use proptest::prelude::*;

    fn pattern() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "^/?(.*)",
            "^/(a|b)/(.*)$",
            "(.*)",
            "^/x",
            "!^/y",
            "^/([^/]+)/?(.*)",
            ".",
            "^$",
            "^/dot/(.*)$",
        ])
        .prop_map(str::to_string)
    }

    fn substitution() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "-",
            "/local/$1",
            "http://b/$1",
            "ws://b:9/$2?q=$1",
            "http://b$1",
            "$1",
            "/a?$1",
            "http://b/%1/$1?x=%{QUERY_STRING}",
            "http://b/%{HTTP:X-A}/$0",
            "%{REQUEST_URI}",
            "http://%1/",
            "/r/$1?",
            "https://b/\\$1",
        ])
        .prop_map(str::to_string)
    }

    fn flags() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "P",
                "L",
                "NC",
                "QSA",
                "QSD",
                "QSL",
                "NE",
                "B",
                "END",
                "PT",
                "R",
                "R=301",
                "F",
                "G",
                "C",
                "S=1",
                "BNP",
                "UnsafeAllow3F",
            ]),
            0..4,
        )
        .prop_map(|f| {
            if f.is_empty() {
                String::new()
            } else {
                format!("[{}]", f.join(","))
            }
        })
    }

    fn condition() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "RewriteCond %{HTTP:Upgrade} websocket [NC]\n",
            "RewriteCond %{QUERY_STRING} (.*) [OR]\n",
            "RewriteCond %{HTTP_HOST} !^www\\.\n",
            "RewriteCond %{HTTP:X-N} -lt5\n",
            "RewriteCond %{REQUEST_METHOD} =GET\n",
            "",
        ])
        .prop_map(str::to_string)
    }

    fn rules() -> impl Strategy<Value = String> {
        prop::collection::vec((condition(), pattern(), substitution(), flags()), 1..5).prop_map(
            |rules| {
                rules
                    .into_iter()
                    .map(|(c, p, s, f)| format!("{c}RewriteRule {p} {s} {f}\n"))
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_engine_never_panics_and_never_proxies_without_p(
            rules in rules(),
            path in "(/([a-z.]|%[0-9a-fA-F]{2}|@|:|\\?){0,6}){1,4}",
            query in proptest::option::of("[a-z=&%0-9?]{0,12}"),
            header in "[ -~]{0,12}",
        ) {
            let text = format!("ProxyPass /pp/ http://pp/\nRewriteEngine On\n{rules}");
            // Some combinations are refused (e.g. P with R); that is fine.
            let Ok(c) = from_str(&format!("Listen 127.0.0.1:80\nServerName proxy.test\n{text}"), "t.conf") else {
                return Ok(());
            };
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let headers: HeaderFields = vec![
                ("Host".into(), "proxy.test".into()),
                ("X-A".into(), header.into()),
                ("Upgrade".into(), "websocket".into()),
            ];
            let got = map_request(&c, "GET", &target, &headers);
            let proxies = got.contains("://") && !got.starts_with('3');
            if proxies && !got.starts_with("http://pp/") {
                prop_assert!(rules.contains('P'), "proxied to {} without a [P] rule:\n{}", got, rules);
            }
            if proxies {
                let path_part = got.split_once("://").map(|(_, r)| r).unwrap_or("");
                prop_assert!(!path_part.bytes().any(|b| b <= b' ' || b == 0x7f), "a space or control character reached the backend line: {}", got);
            }
        }
    }
}
