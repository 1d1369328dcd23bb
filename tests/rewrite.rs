//! mod_rewrite end to end: the seed's third example with a real WebSocket
//! client and a plain HTTP client on the same port, and the advisories of its
//! security history with their attack inputs.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_three_routes_by_upgrade_header_on_one_port() {
    let ws = ws_echo_backend().await;
    let ws_seen = ws.seen.clone();
    let http = http_backend("app").await;
    let http_seen = http.seen.clone();
    let gate = Wsgate::start(&format!(
        "ProxyPass / http://{http}/\nRewriteEngine on\nRewriteCond %{{HTTP:Upgrade}} websocket [NC]\nRewriteCond %{{HTTP:Connection}} upgrade [NC]\nRewriteRule ^/?(.*) \"ws://{ws}/$1\" [P,L]\n"
    ));
    assert_eq!(
        ws_roundtrip(&gate.url("/socket/chat?room=7"), "through the rule").await,
        "through the rule"
    );
    assert!(
        ws_seen.last().starts_with("GET /socket/chat?room=7\n"),
        "{}",
        ws_seen.last()
    );
    let page = raw_exchange(
        gate.addr,
        b"GET /socket/chat?room=7 HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(
        page.ends_with("app /socket/chat?room=7 body=0"),
        "plain requests fall through to ProxyPass: {page}"
    );
    assert_eq!(http_seen.all().len(), 1);
    assert_eq!(ws_seen.all().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2023_25690_no_request_splitting_through_a_rewritten_query() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!(
        "RewriteEngine On\nRewriteRule ^/here/(.*) http://{backend}/elsewhere?$1 [P]\n"
    ));
    let attack = b"GET /here/x%20HTTP/1.1%0d%0aHost:%20evil%0d%0a%0d%0aGET%20/smuggled HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n";
    let got = raw_exchange(gate.addr, attack, T).await;
    assert_eq!(status_of(&got), 403, "{got}");
    assert!(
        seen.all().is_empty(),
        "nothing reached the backend: {:?}",
        seen.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2024_38473_an_encoded_question_mark_stays_in_the_path() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass /x/ http://{backend}/x/\n"));
    let got = raw_exchange(
        gate.addr,
        b"GET /x/admin%3Fa.php HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 200);
    assert!(
        seen.last().starts_with("GET /x/admin%3Fa.php HTTP/1.1\r\n"),
        "{}",
        seen.last()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2024_38474_a_question_mark_from_a_backreference_is_refused() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!(
        "RewriteEngine On\nRewriteRule ^/keep/(.*)$ http://{backend}/keep/$1 [P]\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET /keep/a%3fb HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 403, "{got}");
    assert!(seen.all().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2024_38476_backend_headers_are_relayed_never_interpreted() {
    let backend = raw_backend(|_, mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nLocation: /server-status\r\nContent-Type: application/x-httpd-php\r\nContent-Length: 4\r\n\r\nbody")
            .await;
    })
    .await;
    let gate = Wsgate::start(&format!(
        "RewriteEngine On\nRewriteRule ^/(.*) http://{backend}/$1 [P]\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET /x HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.contains("Location: /server-status\r\n")
            && got.contains("Content-Type: application/x-httpd-php\r\n"),
        "{got}"
    );
    assert!(got.ends_with("\r\n\r\nbody"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2024_38477_a_target_without_host_is_400_and_no_crash() {
    let ws = ws_echo_backend().await;
    let gate = Wsgate::start(&format!(
        "RewriteEngine On\nRewriteRule ^/nohost/(.*) http:///$1 [P]\nRewriteRule ^/noport/(.*) http://:8080/$1 [P]\nProxyPass /ws/ ws://{ws}/\n"
    ));
    for path in ["/nohost/x", "/noport/x"] {
        let got = raw_exchange(
            gate.addr,
            format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            T,
        )
        .await;
        assert_eq!(status_of(&got), 400, "{path}: {got}");
    }
    assert_eq!(ws_roundtrip(&gate.url("/ws/"), "alive").await, "alive");
}

#[tokio::test(flavor = "multi_thread")]
async fn cve_2024_39573_a_substitution_never_becomes_a_proxy_request() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let gate = Wsgate::start(&format!(
        "RewriteEngine On\nRewriteRule ^/r/(.*) $1\nProxyPass /other/ http://{backend}/\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET /r/proxy:http://127.0.0.1/ HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 404, "{got}");
    assert!(seen.all().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_and_statuses_from_rules() {
    let gate = Wsgate::start(
        "RewriteEngine On\nRewriteRule ^/old/(.*) /new/$1 [R=301,L]\nRewriteRule ^/gone - [G]\n",
    );
    let got = raw_exchange(
        gate.addr,
        b"GET /old/page?x=1 HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(
        got.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{got}"
    );
    assert!(
        got.contains("Location: http://front.test/new/page?x=1\r\n"),
        "{got}"
    );
    let got = raw_exchange(
        gate.addr,
        b"GET /gone HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(status_of(&got), 410);
}
