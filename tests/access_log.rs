//! Access logs through the real binary: a line per request, and per tunnel
//! when it ends (with how it ended), piped programs started once and
//! again when they die, a program that stops reading never stalls
//! traffic, conditions, virtual hosts, reload and stop. Field-by-field
//! equality with Apache is in the conformance suite
//! (tests/conformance/14-access-log.scn).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{eventually, raw_exchange, status_of, ws_echo_backend, Wsgate};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const NOTES: &str = "%>s %U %{wsgate-backend}n %{wsgate-close}n %{wsgate-closed-by}n %{wsgate-up}n %{wsgate-down}n %I %O";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until `path` has `n` lines, at most 10 s, and returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {n} lines: {l:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(w: &Wsgate, path: &str, extra: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n{extra}Connection: close\r\n\r\n");
    status_of(&raw_exchange(w.addr, req.as_bytes(), Duration::from_secs(5)).await)
}

#[tokio::test]
async fn a_websocket_is_logged_when_it_ends_with_who_closed_and_the_bytes() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&format!(
        "ProxyPass /ws/ ws://127.0.0.1:{}/ws/\nLogFormat \"{NOTES}\" notes\nCustomLog {} notes\n",
        backend.port(),
        log.display()
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(w.url("/ws/chat"))
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    // Open: nothing is written yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        lines(&log).is_empty(),
        "a line before the tunnel ended: {:?}",
        lines(&log)
    );
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let l = wait_lines(&log, 1).await;
    let f: Vec<&str> = l[0].split(' ').collect();
    // After the closing handshake the server closes the TCP connection
    // first (RFC 6455 §7.1.1).
    let member = format!("ws://127.0.0.1:{}/ws/", backend.port());
    assert_eq!(
        f[..5],
        ["101", "/ws/chat", &member, "backend-fin", "backend"][..],
        "{l:?}"
    );
    // A masked 5-byte text frame and a masked close frame went up (11 +
    // 6), an unmasked echo and close came down (7 + 2).
    let (up, down): (u64, u64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
    assert_eq!((up, down), (17, 9), "{l:?}");
    // %I and %O: the heads and the tunnel's bytes.
    let (i, o): (u64, u64) = (f[7].parse().unwrap(), f[8].parse().unwrap());
    assert!(i > up + 100 && o > down + 100, "{l:?}");
}

#[tokio::test]
async fn a_backend_that_closes_first_and_an_idle_timeout_are_told_apart() {
    // A backend that answers 101, echoes one read, then closes.
    let backend = common::raw_backend(|_head, mut s: TcpStream| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
            )
            .await;
        let mut buf = [0u8; 64];
        if let Ok(n @ 1..) = s.read(&mut buf).await {
            if &buf[..n] == b"quit" {
                return;
            }
            let _ = s.write_all(&buf[..n]).await;
            // Stays open and quiet: the idle timeout ends it.
            let _ = s.read(&mut buf).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&format!(
        "Timeout 1\nProxyPass /t/ http://127.0.0.1:{}/t/ upgrade=x timeout=1\nCustomLog {} \"{NOTES}\"\n",
        backend.port(),
        log.display()
    ));
    let open = |path: &'static str| {
        let addr = w.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: h.test\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let head = common::read_head(&mut s).await.unwrap();
            assert_eq!(status_of(&head), 101, "{head}");
            s
        }
    };
    let mut quit = open("/t/quit").await;
    quit.write_all(b"quit").await.unwrap();
    let rest = common::read_to_close(&mut quit, Duration::from_secs(5)).await;
    assert_eq!(rest, "", "the backend closed without a byte");
    drop(quit);
    let l = wait_lines(&log, 1).await;
    assert!(
        l[0].starts_with("101 /t/quit ") && l[0].contains(" backend-fin backend 4 0 "),
        "{l:?}"
    );

    // The client ends its side first: its FIN reaches the backend, which
    // then ends too.
    let mut done = open("/t/done").await;
    done.write_all(b"abc").await.unwrap();
    let mut echo = [0u8; 3];
    done.read_exact(&mut echo).await.unwrap();
    done.shutdown().await.unwrap();
    assert_eq!(
        common::read_to_close(&mut done, Duration::from_secs(5)).await,
        ""
    );
    drop(done);
    let l = wait_lines(&log, 2).await;
    assert!(
        l[1].starts_with("101 /t/done ") && l[1].contains(" client-fin client 3 3 "),
        "{l:?}"
    );

    let mut idle = open("/t/idle").await;
    idle.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    idle.read_exact(&mut echo).await.unwrap();
    let l = wait_lines(&log, 3).await;
    assert!(
        l[2].starts_with("101 /t/idle ") && l[2].contains(" idle-timeout proxy 4 4 "),
        "{l:?}"
    );
}

#[tokio::test]
async fn requests_are_logged_by_their_server_with_conditions_and_a_global_log() {
    let backend = common::http_backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let w = Wsgate::start(&format!(
        r#"LogFormat "%v %>s %U" short
ProxyPass /p/ http://127.0.0.1:{port}/p/
CustomLog {main} short
CustomLog {errors} short "expr=%{{REQUEST_STATUS}} -ge 400"
CustomLog {tagged} short env=!quiet
SetEnvIf X-Quiet . quiet
GlobalLog {global} short
<VirtualHost *:*>
  ServerName proxy.test
</VirtualHost>
<VirtualHost *:*>
  ServerName own.test
  CustomLog {own} "%V %>s %U %{{X-Quiet}}i"
</VirtualHost>
<VirtualHost *:*>
  ServerName inherits.test
</VirtualHost>
"#,
        port = backend.port(),
        main = p("main.log").display(),
        errors = p("errors.log").display(),
        tagged = p("tagged.log").display(),
        global = p("global.log").display(),
        own = p("own.log").display(),
    ));
    let ask = |host: &'static str, path: &'static str, extra: &'static str| {
        let addr = w.addr;
        async move {
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
            status_of(&raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await)
        }
    };
    assert_eq!(ask("proxy.test", "/p/a", "").await, 200);
    assert_eq!(ask("proxy.test", "/none", "X-Quiet: 1\r\n").await, 404);
    assert_eq!(ask("inherits.test", "/p/b", "").await, 200);
    assert_eq!(ask("own.test", "/p/c", "X-Quiet: yes\r\n").await, 200);
    let global = wait_lines(&p("global.log"), 4).await;
    assert_eq!(
        global,
        [
            "proxy.test 200 /p/a",
            "proxy.test 404 /none",
            "inherits.test 200 /p/b",
            "own.test 200 /p/c"
        ]
    );
    // Each log has its own writer: wait for each file's lines.
    wait_lines(&p("main.log"), 3).await;
    wait_lines(&p("errors.log"), 1).await;
    wait_lines(&p("tagged.log"), 2).await;
    wait_lines(&p("own.log"), 1).await;
    // A virtual host without logs of its own writes to the main server's.
    assert_eq!(
        lines(&p("main.log")),
        [
            "proxy.test 200 /p/a",
            "proxy.test 404 /none",
            "inherits.test 200 /p/b"
        ]
    );
    assert_eq!(lines(&p("errors.log")), ["proxy.test 404 /none"]);
    assert_eq!(
        lines(&p("tagged.log")),
        ["proxy.test 200 /p/a", "inherits.test 200 /p/b"]
    );
    assert_eq!(lines(&p("own.log")), ["own.test 200 /p/c yes"]);
}

/// mod_reqtimeout's header stage, logged as Apache logs it: a head cut
/// off before its request line came is a 408 with no request line ("-")
/// and no answer; one cut off after it, a 408 with that line and the page.
#[tokio::test]
async fn heads_cut_off_by_the_header_stage_are_logged_as_apaches_408s() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&format!(
        "RequestReadTimeout header=1\nCustomLog {} \"%>s \\\"%r\\\" %b\"\n",
        log.display()
    ));
    let unanswered = raw_exchange(w.addr, b"GET /half HT", Duration::from_secs(10)).await;
    assert_eq!(unanswered, "", "no answer without a request line");
    assert_eq!(wait_lines(&log, 1).await, ["408 \"-\" -"]);
    let answered = raw_exchange(
        w.addr,
        b"GET /line HTTP/1.1\r\nHost: h.test\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&answered), 408, "{answered}");
    let logged = wait_lines(&log, 2).await;
    assert!(
        logged[1].starts_with("408 \"GET /line HTTP/1.1\" "),
        "{logged:?}"
    );
}

#[tokio::test]
async fn a_piped_log_is_started_once_and_again_when_it_dies() {
    let backend = common::http_backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("piped.log");
    let pids = dir.path().join("pids");
    // The program notes its pid, then copies its input to the file.
    let w = Wsgate::start(&format!(
        "ProxyPass /p/ http://127.0.0.1:{}/p/\nCustomLog \"|$echo $$ >> {}; exec cat >> {}\" \"%>s %U\"\n",
        backend.port(),
        pids.display(),
        out.display()
    ));
    eventually(Duration::from_secs(5), "the piped program starts", || {
        lines(&pids).len() == 1
    })
    .await;
    assert_eq!(get(&w, "/p/1", "").await, 200);
    assert_eq!(get(&w, "/p/2", "").await, 200);
    assert_eq!(wait_lines(&out, 2).await, ["200 /p/1", "200 /p/2"]);
    assert_eq!(lines(&pids).len(), 1, "started once for many lines");
    // It dies: wsgate starts it again, and lines go on.
    let first: u32 = lines(&pids)[0].trim().parse().unwrap();
    let killed = std::process::Command::new("kill")
        .arg(first.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    w.wait_log("the piped program ended", 1).await;
    eventually(
        Duration::from_secs(5),
        "the piped program starts again",
        || lines(&pids).len() == 2,
    )
    .await;
    assert_eq!(get(&w, "/p/3", "").await, 200);
    let l = wait_lines(&out, 3).await;
    assert_eq!(l.last().map(String::as_str), Some("200 /p/3"), "{l:?}");
}

#[tokio::test]
async fn a_piped_program_that_stops_reading_never_stalls_a_request() {
    let backend = common::http_backend("b").await;
    // `sleep` never reads: once the pipe and the queue are full, lines
    // are lost and counted, and requests go on.
    let w = Wsgate::start(&format!(
        "ProxyPass /p/ http://127.0.0.1:{}/p/\nKeepAliveTimeout 30\nMaxKeepAliveRequests 0\nLogFormat \"%>s %U %{{User-Agent}}i\" long\nCustomLog \"||/bin/sleep 600\" long\n",
        backend.port()
    ));
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    let agent = "x".repeat(2000);
    let started = Instant::now();
    // 8,192 queued lines and a 64 KiB pipe: 10,000 lines of 2 KiB overflow.
    for i in 0..10_000 {
        let req = format!("GET /p/{i} HTTP/1.1\r\nHost: h.test\r\nUser-Agent: {agent}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = common::read_response(&mut s).await;
        assert_eq!(status_of(&resp), 200, "request {i}: {resp}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "requests stalled behind the log (at {i})"
        );
    }
    w.wait_log("line(s) lost so far: its writer is behind", 1)
        .await;
}

#[tokio::test]
async fn a_reload_reopens_the_file_that_logrotate_moved() {
    let backend = common::http_backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let conf = format!(
        "{}\nServerName proxy.test\nProxyPass /p/ http://127.0.0.1:{}/p/\nCustomLog {} \"%>s %U\"\n",
        common::LISTEN,
        backend.port(),
        log.display()
    );
    let w = Wsgate::start_file(&conf);
    assert_eq!(get(&w, "/p/before", "").await, 200);
    wait_lines(&log, 1).await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    w.reload(&conf).await;
    assert_eq!(get(&w, "/p/after", "").await, 200);
    assert_eq!(wait_lines(&log, 1).await, ["200 /p/after"]);
    assert_eq!(lines(&rotated), ["200 /p/before"]);
}

#[tokio::test]
async fn tunnels_open_at_stop_are_logged_as_shutdown() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut w = Wsgate::start(&format!(
        "GracefulShutdownTimeout 1\nProxyPass /ws/ ws://127.0.0.1:{}/ws/\nCustomLog {} \"{NOTES}\"\n",
        backend.port(),
        log.display()
    ));
    let mut open = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(w.url("/ws/x"))
            .await
            .unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
        open.push(ws);
    }
    w.signal("TERM");
    assert!(
        w.wait_exit(Duration::from_secs(10)).is_some(),
        "wsgate stopped"
    );
    let l = lines(&log);
    assert_eq!(l.len(), 3, "{l:?}");
    for line in &l {
        assert!(
            line.starts_with("101 /ws/x ") && line.contains(" shutdown proxy 8 4 "),
            "{l:?}"
        );
    }
}

#[test]
fn a_format_wsgate_cannot_read_is_an_error_with_its_line() {
    let check = |body: &str| {
        let out = common::check_file(&format!("Listen 127.0.0.1:1\n{body}"), |_| {});
        assert!(!out.status.success(), "{body}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("LogFormat \"%h %Z\" broken\n");
    assert!(
        err.contains("c.conf:2: LogFormat: Unrecognized LogFormat directive %Z"),
        "{err}"
    );
    let err = check("CustomLog /tmp/x.log common env\n");
    assert!(
        err.contains("c.conf:2: CustomLog: 'env' is not a condition"),
        "{err}"
    );
    let err = check("CustomLog /no/such/dir/x.log common\n");
    assert!(
        err.contains("c.conf:2: CustomLog /no/such/dir/x.log"),
        "{err}"
    );
    let err = check("CustomLog \"|\" common\n");
    assert!(
        err.contains("c.conf:2: CustomLog: '|' names no program"),
        "{err}"
    );
    // Apache writes an undefined nickname as a literal word; wsgate takes
    // Debian's definition and says so.
    let out = common::check_file(
        "Listen 127.0.0.1:1\nCustomLog /tmp/x.log combined\n",
        |_| {},
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "c.conf:2: no LogFormat defines the nickname 'combined': wsgate writes Debian's"
        ),
        "{err}"
    );
}

/// A tunnel's line is kept while it is open (on the shelf, whatever its
/// size: a short record, a long one, or boxed when longer still, or
/// written to two logs, or with `%{end:…}t`), and comes out whole when it
/// ends: each User-Agent as sent, each end field filled in.
#[tokio::test]
async fn tunnel_lines_of_every_size_and_several_logs_come_out_whole() {
    let backend = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.log"), dir.path().join("two.log"));
    let w = Wsgate::start(&format!(
        "ProxyPass /ws/ ws://127.0.0.1:{}/ws/\n\
         CustomLog {} \"%U %{{wsgate-close}}n %{{wsgate-up}}n \\\"%{{User-Agent}}i\\\" %D\"\n\
         CustomLog {} \"%U %{{wsgate-close}}n %{{end:%Y}}t\" env=TWO\n\
         SetEnvIf Request_URI ^/ws/two TWO\n",
        backend.port(),
        one.display(),
        two.display()
    ));
    // Short, long and longer than any record.
    let agents = ["short".to_string(), "L".repeat(300), "X".repeat(1_000)];
    for (i, agent) in agents.iter().enumerate() {
        let path = if i == 2 { "/ws/two" } else { "/ws/one" };
        let mut c = TcpStream::connect(w.addr).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: h.test\r\nUser-Agent: {agent}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = common::read_head(&mut c).await.unwrap();
        assert_eq!(status_of(&head), 101, "{head}");
        // A masked text frame "hi" up, its echo back.
        c.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
            .await
            .unwrap();
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).await.unwrap();
        drop(c);
        let l = wait_lines(&one, i + 1).await;
        let want = format!("{path} client-fin 8 \"{agent}\" ");
        assert!(l[i].starts_with(&want), "line {i}: {}", l[i]);
        let micros: u64 = l[i][want.len()..].parse().expect("%D filled in");
        assert!(micros > 0);
    }
    let year = wait_lines(&two, 1).await;
    assert_eq!(year.len(), 1, "only /ws/two: {year:?}");
    let (path, rest) = year[0].split_once(' ').unwrap();
    assert_eq!(path, "/ws/two");
    let (close, y) = rest.split_once(' ').unwrap();
    assert_eq!(close, "client-fin");
    assert!(
        y.len() == 4 && y.starts_with("20"),
        "the year it ended: {y}"
    );
}
