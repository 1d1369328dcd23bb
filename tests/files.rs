//! Static files, attacked: no request reaches a file outside the
//! document root and its aliases, a symbolic link is followed only as
//! `Options` allows, names in a listing cannot inject markup, large files
//! and multi-range answers arrive whole, and a WebSocket site with files
//! works on one server. (The answers' agreement with Apache is in the
//! conformance suite's `files` group.)

mod common;

use std::time::Duration;

use common::{raw_exchange, status_of, Wsgate};

const SECRET: &str = "TOPSECRET-7f3a";

/// A tree: `www/` the root, `secret.txt` beside it, links out of it.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("www/locked")).unwrap();
    std::fs::create_dir_all(root.join("www/open")).unwrap();
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("www/index.html"), "<p>home</p>\n").unwrap();
    std::fs::write(root.join("www/locked/plain.txt"), "plain\n").unwrap();
    std::os::unix::fs::symlink("../../secret.txt", root.join("www/locked/out.txt")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("www/locked/up")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", root.join("www/open/out.txt")).unwrap();
    dir
}

fn config(root: &std::path::Path) -> String {
    let r = root.display();
    format!(
        "DocumentRoot {r}/www\n\
         Alias /al/ {r}/www/\n\
         <Directory {r}/www/locked>\n  Options None\n</Directory>\n\
         <Directory {r}/www/open>\n  Options FollowSymLinks\n</Directory>\n"
    )
}

async fn get(w: &Wsgate, target: &str) -> String {
    let req = format!("GET {target} HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n");
    raw_exchange(w.addr, req.as_bytes(), Duration::from_secs(5)).await
}

#[tokio::test]
async fn no_request_reads_a_file_outside_the_root() {
    let dir = tree();
    let w = Wsgate::start(&config(dir.path()));
    // The server serves at all, and a link Options allows is followed:
    // the refusals below are the walk's, not a dead server's.
    let home = get(&w, "/index.html").await;
    assert_eq!(status_of(&home), 200, "{home}");
    assert!(home.ends_with("<p>home</p>\n"), "{home}");
    let open = get(&w, "/open/out.txt").await;
    assert_eq!(status_of(&open), 200, "{open}");
    assert!(open.contains(SECRET));
    let attacks = [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/.%2e/secret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/..\\secret.txt",
        "/%252e%252e/secret.txt",
        "/index.html/../../secret.txt",
        "/%00/../secret.txt",
        "/al/../secret.txt",
        "/al/%2e%2e/secret.txt",
        "/locked/out.txt",
        "/locked/up/secret.txt",
        "/locked/up/www/index.html",
        "http://h.test/../secret.txt",
        "../secret.txt",
        "/locked/../../secret.txt",
    ];
    for a in attacks {
        let answer = get(&w, a).await;
        assert!(!answer.contains(SECRET), "{a} read the secret: {answer}");
        let status = status_of(&answer);
        assert!(matches!(status, 400 | 403 | 404), "{a}: {status}: {answer}");
    }
    // A link in a directory without FollowSymLinks is refused as such.
    let locked = get(&w, "/locked/out.txt").await;
    assert_eq!(status_of(&locked), 403, "{locked}");
    let plain = get(&w, "/locked/plain.txt").await;
    assert_eq!(status_of(&plain), 200, "{plain}");
    assert!(w.stderr().contains("AH00037: Symbolic link not allowed"));
}

#[tokio::test]
async fn symlinks_if_owner_match_follows_only_the_owners_links() {
    // chown needs root; the check is about owners, so it runs only there.
    let root_user = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root_user {
        eprintln!("SKIP: SymLinksIfOwnerMatch needs root to give files other owners");
        assert!(std::env::var("CI").is_err(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("mine.txt"), "mine\n").unwrap();
    std::fs::write(www.join("theirs.txt"), "theirs\n").unwrap();
    std::os::unix::fs::chown(www.join("theirs.txt"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink("mine.txt", www.join("to-mine")).unwrap();
    std::os::unix::fs::symlink("theirs.txt", www.join("to-theirs")).unwrap();
    let w = Wsgate::start(&format!(
        "DocumentRoot {0}\n<Directory {0}>\n  Options SymLinksIfOwnerMatch\n</Directory>\n",
        www.display()
    ));
    let mine = get(&w, "/to-mine").await;
    assert_eq!(status_of(&mine), 200, "{mine}");
    let theirs = get(&w, "/to-theirs").await;
    assert_eq!(status_of(&theirs), 403, "{theirs}");
    let direct = get(&w, "/theirs.txt").await;
    assert_eq!(status_of(&direct), 200, "{direct}");
}

#[tokio::test]
async fn a_listing_escapes_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("list");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("<script>x.txt"), "1").unwrap();
    std::fs::write(d.join("a\"b c.txt"), "2").unwrap();
    std::fs::write(d.join(".hidden"), "3").unwrap();
    let w = Wsgate::start(&format!(
        "DocumentRoot {0}\n<Directory {0}>\n  Options Indexes\n</Directory>\nIndexIgnore .??*\n",
        dir.path().display()
    ));
    let page = get(&w, "/list/").await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;x.txt"), "{page}");
    assert!(page.contains("href=\"%3Cscript%3Ex.txt\""), "{page}");
    assert!(page.contains("a&quot;b c.txt"), "{page}");
    assert!(!page.contains(".hidden"), "IndexIgnore: {page}");
    // Without Options Indexes: 403.
    let w2 = Wsgate::start(&format!("DocumentRoot {}\n", dir.path().display()));
    let refused = get(&w2, "/list/").await;
    assert_eq!(status_of(&refused), 403, "{refused}");
}

#[tokio::test]
async fn a_large_file_and_a_multi_range_answer_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &body).unwrap();
    let w = Wsgate::start(&format!("DocumentRoot {}\n", dir.path().display()));
    let whole = common::raw_exchange_bytes(
        w.addr,
        b"GET /big.bin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    let at = find(&whole, b"\r\n\r\n").expect("a head") + 4;
    assert!(whole.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(&whole[at..], &body[..], "the whole file, byte for byte");
    let multi = common::raw_exchange_bytes(
        w.addr,
        b"GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9,4000000-4000009\r\nConnection: close\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    let text = String::from_utf8_lossy(&multi);
    assert_eq!(status_of(&text), 206, "{text}");
    let boundary = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: multipart/byteranges; boundary="))
        .expect("a boundary")
        .trim()
        .to_string();
    let length: usize = common::header_value(&text, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let at = find(&multi, b"\r\n\r\n").unwrap() + 4;
    let parts = &multi[at..];
    assert_eq!(parts.len(), length, "Content-Length counts the parts");
    for (start, end) in [(0usize, 9usize), (4_000_000, 4_000_009)] {
        let head = format!("--{boundary}\r\nContent-range: bytes {start}-{end}/5000000\r\n\r\n");
        let p = find(parts, head.as_bytes()).expect("the part's head") + head.len();
        assert_eq!(&parts[p..p + 10], &body[start..=end]);
    }
    assert!(parts.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
    let head = get(&w, "/big.bin").await;
    assert!(head.contains("Content-Length: 5000000"));
}

#[tokio::test]
async fn a_websocket_site_with_files_serves_both() {
    let backend = common::ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>app</p>\n").unwrap();
    let w = Wsgate::start(&format!(
        "DocumentRoot {}\nProxyPass /ws ws://127.0.0.1:{}/ws\n",
        dir.path().display(),
        backend.port()
    ));
    let page = get(&w, "/").await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.ends_with("<p>app</p>\n"));
    let echo = common::ws_roundtrip(&w.url("/ws"), "over the tunnel").await;
    assert_eq!(echo, "over the tunnel");
    backend.finish().await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
