//! Routing tables: each case is named for the Apache rule it checks.

use super::*;
use crate::config::from_str;
use crate::http::HeaderFields;
use proptest::prelude::*;

fn config(text: &str) -> Config {
    from_str(
        &format!("Listen 127.0.0.1:1\nServerName proxy.test\n{text}"),
        "t.conf",
    )
    .unwrap()
}

/// Maps `target` on the main server and gives `url-authority + path`, or a
/// word for a local answer.
fn map(cfg: &Config, target: &str) -> String {
    map_upgrade(cfg, target, false)
}

fn map_upgrade(cfg: &Config, target: &str, upgrade: bool) -> String {
    let mut headers: HeaderFields = vec![("Host".into(), "proxy.test".into())];
    if upgrade {
        headers.push(("Upgrade".into(), "websocket".into()));
    }
    map_request(cfg, "GET", target, &headers)
}

/// Routes a whole request on the main server and describes the decision.
pub(crate) fn map_request(
    cfg: &Config,
    method: &str,
    target: &str,
    headers: &[(Text, FieldValue)],
) -> String {
    let path = match normalize(&Text::from(target)) {
        Ok(p) => p,
        Err(PathError::BadRequest) => return "400".into(),
        Err(PathError::NotFound) => return "404".into(),
    };
    let req = Request {
        method,
        target,
        version: "HTTP/1.1",
        headers,
        path: &path,
        remote: "127.0.0.1:5555".parse().unwrap(),
        local: "127.0.0.1:80".parse().unwrap(),
        https: false,
        access: Default::default(),
    };
    describe(cfg, decide(cfg, &cfg.main, &req))
}

pub(crate) fn describe(cfg: &Config, d: Decision<'_>) -> String {
    match d {
        Decision::Proxy(m) => match &m.backend {
            Backend::Single { url, .. } => {
                format!(
                    "{}://{}{}",
                    url.scheme.as_str(),
                    url.authority(),
                    m.path_and_query
                )
            }
            Backend::Balanced(b) => format!("{}{}", cfg.balancer(*b).name, m.path_and_query),
        },
        Decision::NotFound => "404".into(),
        Decision::Forbidden => "403".into(),
        Decision::BadTarget => "400".into(),
        Decision::Redirect { status, location } => format!("{status} {location}"),
        Decision::Status(s) => s.to_string(),
        Decision::Denied => "403 denied".into(),
        Decision::Unauthorized { realm } => format!("401 {realm}"),
        Decision::AccessError(why) => format!("500 {why}"),
        Decision::Pending(p) => match p.need {
            crate::route::Need::Host => "pending host".into(),
            crate::route::Need::User { realm, .. } => format!("pending user {realm}"),
        },
        Decision::Handler(h) => format!("handler {}", h.name()),
        Decision::File(f) => format!("file {}", String::from_utf8_lossy(&f.filename)),
    }
}

/// Apache's translate-name order: rewrite, ProxyPass, then mod_alias's
/// redirects and aliases, then the DocumentRoot; a `SetHandler` page
/// wins over a file, a `!` exclusion falls through to the files.
#[test]
fn files_come_after_proxypass_and_alias_order() {
    let cfg = config(
        "DocumentRoot /srv/www\nAlias /icons/ /usr/share/icons/\nAliasMatch ^/img/(.*)\\.png$ /srv/png/$1.png\n\
         Redirect /old https://e.test/new\nRedirect gone /gone\nRedirectMatch 307 ^/rm/(.*) /m/$1\n\
         ProxyPass /app/static !\nProxyPass /app/ http://b/app/\n\
         <Location /status>\nSetHandler server-status\n</Location>\n",
    );
    assert_eq!(map(&cfg, "/index.html"), "file /srv/www/index.html");
    assert_eq!(map(&cfg, "/a%20b/../c.txt"), "file /srv/www/c.txt");
    assert_eq!(map(&cfg, "/icons/x.png"), "file /usr/share/icons/x.png");
    assert_eq!(map(&cfg, "/icons"), "file /srv/www/icons");
    assert_eq!(map(&cfg, "/img/a/b.png"), "file /srv/png/a/b.png");
    assert_eq!(map(&cfg, "/old/x?y=1"), "302 https://e.test/new/x?y=1");
    assert_eq!(map(&cfg, "/gone/x"), "410");
    assert_eq!(map(&cfg, "/rm/q"), "307 http://proxy.test/m/q");
    assert_eq!(map(&cfg, "/app/x"), "http://b/app/x");
    assert_eq!(
        map(&cfg, "/app/static/s.css"),
        "file /srv/www/app/static/s.css"
    );
    assert_eq!(map(&cfg, "/status"), "handler server-status");
}

/// Without a DocumentRoot (or an Alias), nothing is a file: 404 as before.
#[test]
fn no_document_root_serves_no_files() {
    let cfg = config("ProxyPass /app/ http://b/app/\n");
    assert_eq!(map(&cfg, "/index.html"), "404");
}

#[test]
fn a_proxypass_that_matches_wins_over_sethandler() {
    let c = config(
        "ProxyPass / http://b/\n<Location /server-status>\nSetHandler server-status\n</Location>\n<Location /s2>\nSetHandler server-status\nProxyPass !\n</Location>\n<Location /s2/none>\nSetHandler none\n</Location>\n",
    );
    assert_eq!(map(&c, "/server-status"), "http://b/server-status");
    assert_eq!(map(&c, "/s2"), "handler server-status");
    assert_eq!(map(&c, "/s2/x?auto"), "handler server-status");
    assert_eq!(map(&c, "/s2/none"), "404");
}

#[test]
fn require_refuses_before_mapping_and_handlers() {
    let c = config(
        "ProxyPass /a/ http://b/\n<Location /a/x>\nRequire ip 10.1\n</Location>\n<Location /s>\nSetHandler server-status\nRequire all denied\n</Location>\n<Location /a/x/y>\nRequire local\n</Location>\n",
    );
    assert_eq!(map(&c, "/a/x/1"), "403 denied");
    assert_eq!(map(&c, "/a/x/y/1"), "http://b/x/y/1");
    assert_eq!(map(&c, "/s"), "403 denied");
}

#[test]
fn seed_example_one_ws_and_wss_prefixes() {
    let c = config("ProxyPass \"/ws2/\" \"ws://echo.example/\"\nProxyPass \"/wss2/\" \"ws://echo2.example/\"\n");
    assert_eq!(map(&c, "/ws2/chat?room=1"), "ws://echo.example/chat?room=1");
    assert_eq!(map(&c, "/wss2/"), "ws://echo2.example/");
    assert_eq!(
        map(&c, "/ws2"),
        "404",
        "a trailing-slash prefix does not match the bare name (S16)"
    );
}

#[test]
fn seed_example_two_websocket_path_before_http() {
    let c = config("ProxyPassMatch ^/(myApp/ws)$ ws://backend.example:9080/$1\nProxyPass / http://backend.example:9080/\n");
    assert_eq!(map(&c, "/myApp/ws"), "ws://backend.example:9080/myApp/ws");
    assert_eq!(
        map(&c, "/myApp/ws/x"),
        "http://backend.example:9080/myApp/ws/x"
    );
    assert_eq!(
        map(&c, "/index.html?a=b"),
        "http://backend.example:9080/index.html?a=b"
    );
}

#[test]
fn prefix_without_slash_stops_at_a_segment_boundary() {
    let c = config("ProxyPass /x http://b/base\n");
    assert_eq!(map(&c, "/x"), "http://b/base");
    assert_eq!(map(&c, "/x/"), "http://b/base/");
    assert_eq!(map(&c, "/x/a"), "http://b/base/a");
    assert_eq!(map(&c, "/xyz"), "404");
}

#[test]
fn slash_mismatches_are_not_repaired() {
    let c = config("ProxyPass /m/ http://b/nos\nProxyPass /n http://b/withs/\n");
    assert_eq!(map(&c, "/m/foo"), "http://b/nosfoo");
    assert_eq!(map(&c, "/n/foo"), "http://b/withs//foo");
    assert_eq!(map(&c, "/n"), "http://b/withs/");
}

#[test]
fn exclusions_stop_the_search() {
    let c = config("ProxyPass /x/private !\nProxyPass /x http://b\n");
    assert_eq!(map(&c, "/x/private"), "404");
    assert_eq!(map(&c, "/x/private/z"), "404");
    assert_eq!(map(&c, "/x/privatez"), "http://b/privatez");
}

#[test]
fn first_match_in_configuration_order_wins() {
    let c = config("ProxyPass / http://general/\nProxyPass /ws/ ws://special/\n");
    assert_eq!(map(&c, "/ws/a"), "http://general/ws/a");
}

#[test]
fn matching_is_case_sensitive_and_on_the_normalised_path() {
    let c = config("ProxyPass /admin !\nProxyPass /ws2/ ws://b/\n");
    assert_eq!(map(&c, "/X/a"), "404");
    assert_eq!(
        map(&c, "/ws2/../admin"),
        "404",
        "dot-segments resolve before matching"
    );
    assert_eq!(map(&c, "/ws2/%2e%2e/admin"), "404");
    assert_eq!(map(&c, "/ws2//a"), "ws://b/a", "slashes merge");
}

#[test]
fn regex_captures_and_whole_path_append() {
    let c = config("ProxyPassMatch ^/m1/(.*)$ http://b/m1dst/$1\nProxyPassMatch ^/m2 http://b/m2dst\nProxyPassMatch ^/opt(/x)?$ http://b/o$1\n");
    assert_eq!(map(&c, "/m1/a/b?z=1"), "http://b/m1dst/a/b?z=1");
    assert_eq!(map(&c, "/m2/more"), "http://b/m2dst/m2/more");
    assert_eq!(
        map(&c, "/opt"),
        "http://b/o",
        "a group that did not take part is empty"
    );
}

#[test]
fn a_question_mark_in_the_url_is_encoded_into_the_path() {
    let c = config("ProxyPassMatch ^/m3/(.*)$ http://b/m3dst?q=$1\nProxyPass /q/ http://b/x?a=1\n");
    assert_eq!(map(&c, "/m3/abc?orig=1"), "http://b/m3dst%3Fq=abc?orig=1");
    assert_eq!(map(&c, "/q/z?b=2"), "http://b/x%3Fa=1z?b=2");
}

#[test]
fn decoded_characters_are_re_encoded_for_the_backend() {
    let c = config("ProxyPass /x/ http://b/base/\n");
    assert_eq!(map(&c, "/x/a%252fb"), "http://b/base/a%252fb");
    assert_eq!(map(&c, "/x/%3F?real=1"), "http://b/base/%3F?real=1");
    assert_eq!(map(&c, "/x/admin%3Fa.php"), "http://b/base/admin%3Fa.php");
    assert_eq!(
        map(&c, "/x/a%0d%0aHost:%20evil"),
        "http://b/base/a%0D%0AHost:%20evil"
    );
}

#[test]
fn nocanon_forwards_the_raw_path() {
    let c = config("ProxyPass /nc/ http://b/nc/ nocanon\n");
    assert_eq!(
        map(&c, "/nc/a%20b%41/%2e?x=%41%20"),
        "http://b/nc/a%20b%41/%2e?x=%41%20"
    );
}

#[test]
fn noquery_drops_the_query() {
    let c = config("ProxyPass /nq/ http://b/ noquery\n");
    assert_eq!(map(&c, "/nq/a?x=1"), "http://b/a");
}

#[test]
fn location_proxypass_beats_a_server_exclusion() {
    let c =
        config("ProxyPass /loc/inner !\n<Location /loc/>\nProxyPass http://b/l/\n</Location>\n");
    assert_eq!(map(&c, "/loc/inner"), "http://b/l/inner");
    assert_eq!(map(&c, "/loc"), "404");
}

#[test]
fn locationmatch_uses_its_regex() {
    let c = config("<LocationMatch ^/lm/(\\w+)$>\nProxyPassMatch ws://b/r/$1\n</LocationMatch>\n");
    assert_eq!(map(&c, "/lm/abc"), "ws://b/r/abc");
    assert_eq!(map(&c, "/lm/a/b"), "404");
}

#[test]
fn legacy_mode_skips_ws_routes_without_upgrade() {
    let c = config(
        "ProxyWebsocketFallbackToProxyHttp Off\nProxyPass / ws://b/\nProxyPass / http://b/\n",
    );
    assert_eq!(map_upgrade(&c, "/a", false), "http://b/a");
    assert_eq!(map_upgrade(&c, "/a", true), "ws://b/a");
    let c = config("ProxyPass / ws://b/\n");
    assert_eq!(
        map_upgrade(&c, "/a", false),
        "ws://b/a",
        "fallback On does not skip"
    );
}

#[test]
fn userinfo_from_a_capture_is_refused() {
    // CVE-2011-3368 by configuration (S142).
    let c = config("ProxyPassMatch ^/c/(.*)$ http://host$1\n");
    assert_eq!(map(&c, "/c/@evil/x"), "403");
    assert_eq!(map(&c, "@evil/x"), "400");
}

#[test]
fn query_with_unix_socket_text_goes_to_the_configured_backend() {
    // CVE-2021-40438.
    let c = config("ProxyPass / http://b/\n");
    let long = "A".repeat(5000);
    assert_eq!(
        map(&c, &format!("/?unix:{long}|http://evil/")),
        format!("http://b/?unix:{long}|http://evil/")
    );
}

#[test]
fn vhosts_by_name_and_main_routes_first() {
    let c = from_str(
        "Listen 127.0.0.1:1\nServerName main.test\nProxyPass /shared/ http://main/\n\
         <VirtualHost *:1>\nServerName a.test\nServerAlias *.a.test\nProxyPass /shared/ http://a/\nProxyPass / http://a-all/\n</VirtualHost>\n\
         <VirtualHost *:1>\nServerName b.test\nProxyPass / http://b-all/\n</VirtualHost>\n",
        "t.conf",
    )
    .unwrap();
    let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let name = |host: Option<&str>| select_server(&c, local, host).server_name.clone();
    assert_eq!(name(Some("B.test:1")), "b.test");
    assert_eq!(name(Some("x.a.test")), "a.test");
    assert_eq!(
        name(Some("unknown")),
        "a.test",
        "the first vhost is the default"
    );
    assert_eq!(name(None), "a.test");
    let a = select_server(&c, local, Some("a.test"));
    let p = normalize(&Text::from("/shared/x")).unwrap();
    let req = Request {
        method: "GET",
        target: "/shared/x",
        version: "HTTP/1.1",
        headers: &[],
        path: &p,
        remote: local,
        local,
        https: false,
        access: Default::default(),
    };
    match decide(&c, a, &req) {
        Decision::Proxy(Mapped {
            backend: Backend::Single { url, .. },
            ..
        }) => assert_eq!(
            url.host, "main",
            "the main server's entries come first (S12)"
        ),
        other => panic!("{other:?}"),
    }
    let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
    assert_eq!(
        select_server(&c, other, Some("a.test")).server_name,
        "main.test"
    );
}

/// The reference model: a prefix without a trailing slash matches itself or
/// itself followed by `/`; one with a trailing slash matches as a string prefix.
fn reference_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "b", "ab", "ws", "x.y", "~", "%20", "%61", "", ".",
    ])
    .prop_map(str::to_string)
}

/// Configured paths are written decoded, as Apache compares them.
fn prefix_segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "ws", "x.y", "~", " "]).prop_map(str::to_string)
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    (prop::collection::vec(prefix_segment(), 0..3), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash && !p.ends_with('/') {
            p.push('/');
        }
        p
    })
}

fn path_strategy() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash && !p.ends_with('/') {
            p.push('/');
        }
        p
    })
}

proptest! {
    #[test]
    fn prefix_matching_agrees_with_the_reference_model(prefix in prefix_strategy(), path in path_strategy()) {
        let decoded = normalize(&Text::from(path.as_str())).unwrap().decoded;
        let decoded_text = String::from_utf8(decoded.to_vec()).unwrap();
        let got = prefix_match(prefix.as_bytes(), &decoded).is_some();
        prop_assert_eq!(got, reference_matches(&prefix, &decoded_text));
    }

    #[test]
    fn first_matching_route_wins(prefixes in prop::collection::vec(prefix_strategy(), 1..5), path in path_strategy()) {
        let lines: String = prefixes.iter().enumerate().map(|(i, p)| format!("ProxyPass \"{p}\" http://r{i}/\n")).collect();
        let c = config(&lines);
        let decoded = String::from_utf8(normalize(&Text::from(path.as_str())).unwrap().decoded.to_vec()).unwrap();
        let expected = prefixes.iter().position(|p| reference_matches(p, &decoded));
        let got = map(&c, &path);
        match expected {
            Some(i) => prop_assert!(got.starts_with(&format!("http://r{i}/")), "{} -> {}", path, got),
            None => prop_assert_eq!(got, "404"),
        }
    }

    #[test]
    fn normalised_paths_hold_no_dot_segments_or_double_slashes(path in "(/(\\.|\\.\\.|%2e|%2E|a|b|%41|%2f)?){0,8}") {
        if let Ok(p) = normalize(&Text::from(path.as_str())) {
            let text = String::from_utf8_lossy(&p.decoded).into_owned();
            prop_assert!(text.starts_with('/'));
            prop_assert!(!text.contains("//"));
            prop_assert!(!text.split('/').any(|s| s == "." || s == ".."), "{}", text);
        }
    }

    #[test]
    fn the_forwarded_path_never_carries_space_crlf_or_question_mark(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut out = String::new();
        encode_path(&bytes, &mut out);
        prop_assert!(!out.bytes().any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f));
    }
}

#[test]
fn a_host_from_the_request_is_looked_up_per_connection_unless_addressttl_says() {
    use crate::config::AddressTtl;
    let cfg = config(
        "ProxyPassMatch ^/n/(\\w+)/ ws://$1.internal:8080/\n\
         ProxyPassMatch ^/k/(\\w+)/ ws://$1.internal:8080/ addressttl=30\n\
         ProxyPassMatch ^/p/(.*) ws://backend.internal/$1\n",
    );
    let ttls: Vec<AddressTtl> = cfg
        .main
        .routes
        .iter()
        .map(|r| match &r.target {
            Target::Proxy(ProxyTarget {
                to: PassTo::Worker { worker, .. },
                ..
            }) => cfg.worker(*worker).params.effective_address_ttl(),
            _ => panic!("a proxy route"),
        })
        .collect();
    assert_eq!(
        ttls,
        vec![
            AddressTtl::EveryTime,
            AddressTtl::For(std::time::Duration::from_secs(30)),
            AddressTtl::Forever,
        ]
    );
}
