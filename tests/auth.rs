//! A password on a WebSocket endpoint, end to end: the real wsgate binary
//! with `AuthType Basic` and an htpasswd file, a real WebSocket client
//! (tokio-tungstenite) with and without credentials, a real WebSocket
//! backend, and the access log's `%u`.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const T: Duration = Duration::from_secs(10);

/// `s3cret`, hashed by Debian's `htpasswd -B` (bcrypt, cost 5).
const BCRYPT_S3CRET: &str = "$2y$05$dAEWRofM9zrJ9f7OJn/oOeYfyX3uHFXhWVPht5UJaLP2Ry9UDLQs6";
/// `alice:s3cret` in base64.
const ALICE: &str = "Basic YWxpY2U6czNjcmV0";

fn config(dir: &std::path::Path, backend: u16) -> String {
    format!(
        "ProxyPass /ws/ ws://127.0.0.1:{backend}/ws/\n\
         LogFormat \"%u %>s %r\" auth\n\
         CustomLog {log} auth\n\
         <Location /ws/>\n\
         AuthType Basic\n\
         AuthName \"Chat room\"\n\
         AuthUserFile {users}\n\
         Require valid-user\n\
         </Location>\n",
        log = dir.join("access.log").display(),
        users = dir.join("users").display(),
    )
}

/// Opens a WebSocket to `url`, with `Authorization: credentials` if any.
async fn connect(
    url: &str,
    credentials: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsError,
> {
    let mut request = url.into_client_request().unwrap();
    if let Some(c) = credentials {
        request
            .headers_mut()
            .insert("Authorization", c.parse().unwrap());
    }
    tokio::time::timeout(T, tokio_tungstenite::connect_async(request))
        .await
        .expect("a handshake answer in time")
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn a_websocket_behind_a_password_opens_with_it_and_gets_401_without() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), format!("alice:{BCRYPT_S3CRET}\n")).unwrap();
    let wsgate = Wsgate::start(&config(dir.path(), backend.port()));
    let url = format!("ws://{}/ws/chat", wsgate.addr);

    // Without credentials: 401 asking for the realm, no tunnel, and the
    // backend never hears of it.
    match connect(&url, None).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.headers()["www-authenticate"],
                "Basic realm=\"Chat room\""
            );
        }
        other => panic!("expected a 401, got {:?}", other.map(|_| "a WebSocket")),
    }
    // A wrong password: 401 again.
    match connect(&url, Some("Basic YWxpY2U6d3Jvbmc=")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| "a WebSocket")),
    }
    assert!(backend.seen.all().is_empty(), "{:?}", backend.seen.all());

    // With them: the tunnel opens and echoes; the backend gets the
    // Authorization field unchanged, as Apache forwards it.
    let mut ws = connect(&url, Some(ALICE))
        .await
        .expect("the handshake succeeds");
    ws.send(Message::Text("hello".into())).await.unwrap();
    let echo = tokio::time::timeout(T, ws.next())
        .await
        .expect("an echo in time");
    assert_eq!(
        echo.unwrap().unwrap().into_text().unwrap().as_str(),
        "hello"
    );
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(T, ws.next()).await {}
    drop(ws);
    let head = backend.seen.last();
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: {ALICE}"))),
        "{head}"
    );

    // %u: "-" without credentials, the user named by them otherwise (let
    // in or not, as Apache logs r->user).
    let log_path = dir.path().join("access.log");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + T;
    while read().lines().count() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not three lines in time: {:?}; {}",
            read(),
            wsgate.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = read();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "- 401 GET /ws/chat HTTP/1.1",
            "alice 401 GET /ws/chat HTTP/1.1",
            "alice 101 GET /ws/chat HTTP/1.1",
        ],
        "{log}"
    );
}

#[tokio::test]
async fn the_password_file_is_read_for_each_request() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let wsgate = Wsgate::start(&config(dir.path(), backend.port()));
    let url = format!("ws://{}/ws/chat", wsgate.addr);

    // No file yet: 500, as mod_authn_file answers when it cannot open it.
    match connect(&url, Some(ALICE)).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 500),
        other => panic!("expected a 500, got {:?}", other.map(|_| "a WebSocket")),
    }
    // Written while wsgate runs: the next request reads it, no reload.
    std::fs::write(&users, format!("# users\nalice:{BCRYPT_S3CRET}\n")).unwrap();
    let ws = connect(&url, Some(ALICE))
        .await
        .expect("the handshake succeeds");
    drop(ws);
    // Removed from it: refused at once.
    std::fs::write(&users, "bob:{SHA}x\n").unwrap();
    match connect(&url, Some(ALICE)).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| "a WebSocket")),
    }
}

#[test]
fn a_password_file_that_cannot_be_read_is_a_warning_at_check_time() {
    let out = check_file(
        "Listen 127.0.0.1:0\n<Location /ws/>\nAuthType Basic\nAuthName x\nAuthUserFile /nonexistent/users\nRequire valid-user\n</Location>\n",
        |_| {},
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":5: AuthUserFile /nonexistent/users: No such file or directory")
            && stderr.contains("get 500 until it can be read"),
        "{stderr}"
    );
}

/// Each hash kind Debian's `htpasswd` writes logs in through wsgate, and
/// plain text does not (as with Apache on Linux).
#[tokio::test]
async fn every_hash_htpasswd_writes_lets_its_user_in() {
    if !require_program("htpasswd", "apache2-utils") {
        return;
    }
    let backend = http_backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let kinds = ["-B", "-m", "-s", "-d", "-2", "-5", "-p"];
    for (i, flag) in kinds.iter().enumerate() {
        let mut flags = format!("-b{}", &flag[1..]);
        if i == 0 {
            flags.push('c');
        }
        let out = std::process::Command::new("htpasswd")
            .args([
                flags.as_str(),
                users.to_str().unwrap(),
                &format!("u{i}"),
                "pw",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "htpasswd {flag}: {out:?}");
    }
    let wsgate = Wsgate::start(&format!(
        "ProxyPass /p/ http://127.0.0.1:{}/p/\n<Location /p/>\nAuthType Basic\nAuthName x\nAuthUserFile {}\nRequire valid-user\n</Location>\n",
        backend.port(),
        users.display()
    ));
    for (i, flag) in kinds.iter().enumerate() {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("u{i}:pw"));
        let request = format!(
            "GET /p/x HTTP/1.1\r\nHost: proxy.test\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(wsgate.addr, request.as_bytes(), T).await;
        let want = if *flag == "-p" { 401 } else { 200 };
        assert_eq!(status_of(&answer), want, "htpasswd {flag}: {answer}");
    }
}
