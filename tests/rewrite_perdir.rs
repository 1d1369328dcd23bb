//! mod_rewrite per directory end to end: the WebSocket recipes with the
//! rules inside `<Location>` and inside `<Directory>` (a real WebSocket
//! client through wsgate to a real echo backend), the single-page
//! application recipe on a real document root, and the internal-redirect
//! limit; a RewriteMap text file read again when it changes. The
//! conformance scenarios in tests/conformance/31-rewrite-perdir-map.scn
//! compare the same recipes and the maps with Apache.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn location_recipe_proxies_websockets_by_their_upgrade_header() {
    let ws = ws_echo_backend().await;
    let seen = ws.seen.clone();
    let gate = Wsgate::start(&format!(
        "<Location /ws>\n  RewriteEngine on\n  RewriteCond %{{HTTP:Upgrade}} websocket [NC]\n  RewriteRule .* ws://{ws}%{{REQUEST_URI}} [P]\n</Location>\n"
    ));
    assert_eq!(
        ws_roundtrip(&gate.url("/ws/chat?room=7"), "per-location").await,
        "per-location"
    );
    assert!(
        seen.last().starts_with("GET /ws/chat?room=7\n"),
        "the backend sees the path and query: {}",
        seen.last()
    );
    // The section's own path, without a slash, is rewritten too (the
    // filename is the document root's, not the section's directory).
    assert_eq!(ws_roundtrip(&gate.url("/ws"), "bare").await, "bare");
    assert!(seen.last().starts_with("GET /ws\n"), "{}", seen.last());
    // Without Upgrade the condition fails: nothing proxies it.
    let page = raw_exchange(gate.addr, &get("/ws/chat"), T).await;
    assert_eq!(status_of(&page), 404, "{page}");
    assert_eq!(seen.all().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_recipe_strips_the_directory_and_proxies() {
    let ws = ws_echo_backend().await;
    let seen = ws.seen.clone();
    let docs = tempfile::tempdir().unwrap();
    let root = docs.path().display().to_string();
    let gate = Wsgate::start(&format!(
        "DocumentRoot {root}\n<Directory {root}>\n  Require all granted\n  RewriteEngine on\n  RewriteRule ^ws/(.*) ws://{ws}/back/$1 [P]\n</Directory>\n"
    ));
    assert_eq!(
        ws_roundtrip(&gate.url("/ws/room?k=v"), "per-directory").await,
        "per-directory"
    );
    assert!(
        seen.last().starts_with("GET /back/room?k=v\n"),
        "the directory prefix was stripped before matching: {}",
        seen.last()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn single_page_application_recipe_serves_index_for_client_routes() {
    let docs = tempfile::tempdir().unwrap();
    let root = docs.path().display().to_string();
    std::fs::write(docs.path().join("index.html"), "<p>spa</p>\n").unwrap();
    std::fs::write(docs.path().join("app.js"), "let app;\n").unwrap();
    std::fs::create_dir(docs.path().join("assets")).unwrap();
    let gate = Wsgate::start(&format!(
        "DocumentRoot {root}\n<Directory {root}>\n  Require all granted\n  RewriteEngine On\n  RewriteBase /\n  RewriteRule ^index\\.html$ - [L]\n  RewriteCond %{{REQUEST_FILENAME}} !-f\n  RewriteCond %{{REQUEST_FILENAME}} !-d\n  RewriteRule . /index.html [L]\n</Directory>\n"
    ));
    for route in [
        "/settings/profile",
        "/deep/link?tab=2",
        "/assets/missing.js",
    ] {
        let page = raw_exchange(gate.addr, &get(route), T).await;
        assert_eq!(status_of(&page), 200, "{route}: {page}");
        assert!(page.ends_with("<p>spa</p>\n"), "{route}: {page}");
    }
    let page = raw_exchange(gate.addr, &get("/app.js"), T).await;
    assert!(
        page.ends_with("let app;\n"),
        "a file is served as is: {page}"
    );
    let page = raw_exchange(gate.addr, &get("/assets"), T).await;
    assert_eq!(
        status_of(&page),
        301,
        "a directory keeps mod_dir's slash redirect: {page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_loop_ends_at_the_internal_redirect_limit() {
    let gate = Wsgate::start(
        "<Location /loop>\n  RewriteEngine On\n  RewriteRule ([^/]+)$ t$1\n</Location>\n",
    );
    let page = raw_exchange(gate.addr, &get("/loop/x"), T).await;
    assert_eq!(status_of(&page), 500, "{page}");
    gate.wait_log("AH00124", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_map_is_read_again_when_its_file_changes_and_kept_when_it_goes() {
    let backend = http_backend("b").await;
    let seen = backend.seen.clone();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("rooms.map");
    std::fs::write(&map, "# rooms\nlobby /first\n").unwrap();
    let gate = Wsgate::start(&format!(
        "RewriteEngine on\nRewriteMap rooms txt:{}\nRewriteRule ^/room/(.*)$ http://{backend}${{rooms:$1|/unknown}} [P]\n",
        map.display()
    ));
    let page = raw_exchange(gate.addr, &get("/room/lobby"), T).await;
    assert!(page.ends_with("b /first body=0"), "{page}");
    let page = raw_exchange(gate.addr, &get("/room/other"), T).await;
    assert!(page.ends_with("b /unknown body=0"), "the default: {page}");
    // A new value, and a modification time that surely differs.
    std::fs::write(&map, "lobby /second\n").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&map)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = raw_exchange(gate.addr, &get("/room/lobby"), T).await;
        if page.ends_with("b /second body=0") {
            break;
        }
        assert!(page.ends_with("b /first body=0"), "{page}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was never seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The file goes: the entries read last stay, and the failure is logged once.
    std::fs::remove_file(&map).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !gate.stderr().contains("AH00655") {
        let page = raw_exchange(gate.addr, &get("/room/lobby"), T).await;
        assert!(page.ends_with("b /second body=0"), "{page}");
        assert!(tokio::time::Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = raw_exchange(gate.addr, &get("/room/lobby"), T).await;
    assert!(page.ends_with("b /second body=0"), "{page}");
    assert_eq!(gate.stderr().matches("AH00655").count(), 1);
    assert!(seen.all().len() >= 4);
}
