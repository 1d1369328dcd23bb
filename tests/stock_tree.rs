//! Debian's stock `/etc/apache2`, with the proxy modules and a WebSocket
//! site enabled, run by Apache and by wsgate from one copy, and their
//! answers compared (issue 18: "the running wsgate answers the site's
//! requests as Apache does"): the default site's files and validators, the
//! stock error statuses (a missing file, the `.ht*` guard, a folder
//! without an index, `TraceEnable Off`), mod_status's `Require local`, the
//! icons alias, and a name-based vhost that proxies HTTP and tunnels a
//! WebSocket through its `RewriteRule [P]`.
//!
//! The copy differs from the installed tree only in its port (`Listen 80`
//! and `*:80` become a free port, given as `${STOCK_PORT}`), `ServerRoot`
//! and envvars' folders, as `apache2ctl` would set them. Both servers
//! start as the test's user: as root both serve as `www-data`.
//! Without apache2, SKIP (a failure under `CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A server started on the copied tree, stopped (SIGTERM, then SIGKILL)
/// when dropped.
struct Running {
    child: Child,
    port: u16,
    log_dir: PathBuf,
}

impl Running {
    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            all.push_str(&format!("== {}\n{text}", entry.path().display()));
        }
        all
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the installed tree into `root`, enables what a WebSocket
/// deployment enables (a2enmod proxy proxy_http proxy_wstunnel rewrite
/// headers) and a site for `chat.example`, and moves port 80 to
/// `${STOCK_PORT}`.
fn copy_tree(root: &Path, backend: u16, ws_backend: u16) -> PathBuf {
    let copied = Command::new("cp")
        .arg("-a")
        .arg("/etc/apache2")
        .arg(root)
        .status()
        .unwrap();
    assert!(copied.success());
    for m in [
        "proxy",
        "proxy_http",
        "proxy_wstunnel",
        "rewrite",
        "headers",
    ] {
        for ext in ["load", "conf"] {
            let from = root.join(format!("mods-available/{m}.{ext}"));
            if from.exists() {
                std::os::unix::fs::symlink(&from, root.join(format!("mods-enabled/{m}.{ext}")))
                    .unwrap();
            }
        }
    }
    std::fs::write(
        root.join("sites-available/chat.conf"),
        format!(
            "<VirtualHost *:80>\n    ServerName chat.example\n    RewriteEngine On\n    RewriteCond %{{HTTP:Upgrade}} =websocket [NC]\n    RewriteRule ^/socket.io/(.*) ws://127.0.0.1:{ws_backend}/socket.io/$1 [P,L]\n    ProxyPass /api/ http://127.0.0.1:{backend}/api/\n    ProxyPassReverse /api/ http://127.0.0.1:{backend}/api/\n</VirtualHost>\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        root.join("sites-available/chat.conf"),
        root.join("sites-enabled/chat.conf"),
    )
    .unwrap();
    let port_moved = |file: &str| {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let moved = text
            .replace("Listen 80\n", "Listen 127.0.0.1:${STOCK_PORT}\n")
            .replace("*:80>", "*:${STOCK_PORT}>");
        assert_ne!(text, moved, "{file} names port 80");
        std::fs::write(&path, moved).unwrap();
    };
    port_moved("ports.conf");
    port_moved("sites-available/000-default.conf");
    port_moved("sites-available/chat.conf");
    let conf = root.join("apache2.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("ServerRoot \"{}\"\n{text}", root.display())).unwrap();
    conf
}

/// Starts `program` on the tree with envvars' values (its own folders
/// under `dir`) on a free port, retrying with another port when the one
/// chosen was taken meanwhile; ready once the port accepts.
fn start(program: &str, args: &[&str], conf: &Path, dir: &Path) -> Running {
    let mut last = String::new();
    for _ in 0..3 {
        let port = common::free_port();
        let at = |p: &str| dir.join(p);
        for d in ["log", "run", "lock"] {
            std::fs::create_dir_all(at(d)).unwrap();
        }
        let mut child = Command::new(program)
            .args(args)
            .arg("-f")
            .arg(conf)
            .env("APACHE_RUN_USER", "www-data")
            .env("APACHE_RUN_GROUP", "www-data")
            .env("APACHE_PID_FILE", at("run/apache2.pid"))
            .env("APACHE_RUN_DIR", at("run"))
            .env("APACHE_LOCK_DIR", at("lock"))
            .env("APACHE_LOG_DIR", at("log"))
            .env("STOCK_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(at("log/stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Running {
                    child,
                    port,
                    log_dir: at("log"),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                last = format!(
                    "{program} exited with {status}: {}",
                    std::fs::read_to_string(at("log/stderr")).unwrap_or_default()
                        + &std::fs::read_to_string(at("log/error.log")).unwrap_or_default()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{program} did not listen on {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{last}");
}

/// One answer, its body de-chunked.
#[derive(Debug)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(bytes: &[u8]) -> Answer {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = common::status_of(lines.next().unwrap_or(""));
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = &bytes[end + 4..];
    let chunked = fields
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .unwrap_or(0);
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[(eol + 4 + size).min(rest.len())..];
        }
        body
    } else {
        rest.to_vec()
    };
    Answer {
        status,
        fields,
        body,
    }
}

async fn ask(server: &Running, request: &str) -> Answer {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the answer within 10 s")
        .expect("read");
    parse(&out)
}

/// What a case compares beyond the status.
#[derive(Clone, Copy)]
enum Compare {
    Status,
    /// And `Content-Type`.
    Typed,
    /// A file: the type, length, validators and the body.
    File,
    /// A proxied answer: the body and `X-Backend`.
    Proxied,
}

fn request(method: &str, target: &str, host: &str, extra: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

fn post(target: &str, host: &str, body: &str) -> String {
    let extra = format!("Content-Length: {}\r\n", body.len());
    request("POST", target, host, &extra) + body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_stock_tree_answers_as_apache_does() {
    if !common::require_program("apache2", "apache2") {
        return;
    }
    let backend = common::http_backend("api").await;
    let ws = common::ws_echo_backend().await;
    let tmp = tempfile::tempdir().unwrap();
    // Readable by the user both serve as (www-data, when started as root).
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let conf = copy_tree(
        &tmp.path().join("apache2"),
        backend.addr.port(),
        ws.addr.port(),
    );
    let apache = start(
        "apache2",
        &["-DFOREGROUND"],
        &conf,
        &tmp.path().join("apache"),
    );
    let wsgate = start(common::WSGATE, &[], &conf, &tmp.path().join("wsgate"));

    let site = "localhost";
    let first = ask(&apache, &request("GET", "/", site, "")).await;
    let etag = first.get("etag").unwrap_or("\"none\"").to_string();
    let if_none_match = format!("If-None-Match: {etag}\r\n");
    let cases: Vec<(&str, String, Compare)> = vec![
        (
            "the default site's page",
            request("GET", "/", site, ""),
            Compare::File,
        ),
        ("HEAD of it", request("HEAD", "/", site, ""), Compare::File),
        (
            "by name",
            request("GET", "/index.html", site, ""),
            Compare::File,
        ),
        (
            "unchanged since",
            request("GET", "/index.html", site, &if_none_match),
            Compare::Typed,
        ),
        (
            "a range of it",
            request("GET", "/index.html", site, "Range: bytes=10-99\r\n"),
            Compare::File,
        ),
        (
            "a missing file",
            request("GET", "/missing.html", site, ""),
            Compare::Typed,
        ),
        (
            "the .ht guard",
            request("GET", "/.htaccess", site, ""),
            Compare::Typed,
        ),
        (
            "a folder outside /var/www",
            request("GET", "/icons/", site, ""),
            Compare::Typed,
        ),
        (
            "an icon",
            request("GET", "/icons/a.gif", site, ""),
            Compare::File,
        ),
        (
            "an SVG icon",
            request("GET", "/icons/apache_pb.svg", site, ""),
            Compare::File,
        ),
        (
            "a missing icon",
            request("GET", "/icons/none.gif", site, ""),
            Compare::Typed,
        ),
        (
            "TraceEnable Off",
            request("TRACE", "/", site, ""),
            Compare::Status,
        ),
        (
            "mod_status, Require local",
            request("GET", "/server-status", site, ""),
            Compare::Typed,
        ),
        (
            "no CGI (mod_cgi is not enabled)",
            request("GET", "/cgi-bin/test", site, ""),
            Compare::Typed,
        ),
        (
            "an unknown method",
            request("PATCH", "/index.html", site, "Content-Length: 0\r\n"),
            Compare::Status,
        ),
        (
            "the proxied API",
            request("GET", "/api/v1?x=1", "chat.example", ""),
            Compare::Proxied,
        ),
        (
            "a POST to it",
            post("/api/post", "chat.example", "abc"),
            Compare::Proxied,
        ),
        (
            "the chat vhost's files",
            request("GET", "/index.html", "chat.example", ""),
            Compare::File,
        ),
        (
            "a plain GET on the socket path",
            request(
                "GET",
                "/socket.io/?EIO=4&transport=polling",
                "chat.example",
                "",
            ),
            Compare::Typed,
        ),
    ];
    let mut differences = Vec::new();
    for (what, req, compare) in cases {
        let (a, w) = (ask(&apache, &req).await, ask(&wsgate, &req).await);
        let mut names: Vec<&str> = Vec::new();
        match compare {
            Compare::Status => {}
            Compare::Typed => names.push("content-type"),
            Compare::File if a.status >= 400 => names.push("content-type"),
            Compare::File => names.extend([
                "content-type",
                "content-length",
                "etag",
                "last-modified",
                "accept-ranges",
                "content-range",
            ]),
            Compare::Proxied => names.extend(["x-backend", "content-length"]),
        }
        let mut diff = Vec::new();
        if a.status != w.status {
            diff.push(format!("status {} / {}", a.status, w.status));
        }
        for n in names {
            if a.get(n) != w.get(n) {
                diff.push(format!("{n}: {:?} / {:?}", a.get(n), w.get(n)));
            }
        }
        // An error page's text is each server's own.
        let page = a.status >= 400;
        if matches!(compare, Compare::File | Compare::Proxied) && !page && a.body != w.body {
            diff.push(format!("body of {} / {} bytes", a.body.len(), w.body.len()));
        }
        if !diff.is_empty() {
            differences.push(format!("{what}: {} (Apache / wsgate)", diff.join("; ")));
        }
    }
    // The WebSocket through the vhost's RewriteRule [P], on each.
    for (name, server) in [("Apache", &apache), ("wsgate", &wsgate)] {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            server.addr()
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("host", "chat.example".parse().unwrap());
        let handshake = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await;
        let (mut socket, answer) = match handshake {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => panic!("{name}: the handshake: {e}\n{}", server.logs()),
            Err(_) => panic!("{name}: no handshake within 10 s"),
        };
        assert_eq!(answer.status(), 101, "{name}");
        socket
            .send(Message::Text("hello over the stock tree".into()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: the echo within 10 s"))
            .expect("a message")
            .expect("not an error");
        assert_eq!(
            echo.into_text().unwrap(),
            "hello over the stock tree",
            "{name}"
        );
        let _ = socket.close(None).await;
    }
    assert!(
        differences.is_empty(),
        "wsgate answers differently from Apache on Debian's stock tree:\n{}\n\nApache's logs:\n{}\nwsgate's logs:\n{}",
        differences.join("\n"),
        apache.logs(),
        wsgate.logs()
    );
    // The API's backend saw both servers' requests, as the same requests.
    let seen = backend.seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
}
