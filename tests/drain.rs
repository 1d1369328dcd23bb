//! Polite drain (`WsgateWebSocketFrames On`): at a graceful stop, every
//! WebSocket is closed with Close 1001 "going away" to both its client and
//! its backend, at a frame boundary, spread over the grace period — parked
//! tunnels included — and a browser sees 1001, not 1006. The same close
//! sends away the tunnels of a balancer member set to Drain in the
//! balancer manager, and those of a backend a reload removed, while every
//! other tunnel goes on.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{raw_backend, require_program, Wsgate};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo backend that records the Close codes it receives.
async fn recording_backend() -> (u16, Arc<Mutex<Vec<u16>>>, common::Watched) {
    named_backend("").await
}

/// [`recording_backend`] whose echoes start with `name` (so that a client
/// sees which backend its tunnel reached).
async fn named_backend(name: &'static str) -> (u16, Arc<Mutex<Vec<u16>>>, common::Watched) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let codes = Arc::new(Mutex::new(Vec::new()));
    let watched = common::Watched::default();
    let record = codes.clone();
    let tasks = watched.clone();
    watched.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tasks.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(frame) = &msg {
                        let code = frame.as_ref().map_or(0, |f| u16::from(f.code));
                        record.lock().unwrap().push(code);
                    } else if msg.is_text() {
                        let echo = format!("{name}{}", msg.to_text().unwrap_or_default());
                        if ws.send(Message::text(echo)).await.is_err() {
                            return;
                        }
                    } else if msg.is_binary() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, codes, watched)
}

fn config(backend: u16, log: &std::path::Path, grace: u64) -> String {
    format!(
        "GracefulShutdownTimeout {grace}\n\
         ProxyPass /ws/ ws://127.0.0.1:{backend}/ws/\n\
         <IfModule wsgate_module>\n  WsgateWebSocketFrames On\n</IfModule>\n\
         CustomLog {} \"%U %{{wsgate-close}}n %{{wsgate-closed-by}}n %{{wsgate-ws-close}}n\"\n",
        log.display()
    )
}

#[tokio::test]
async fn a_graceful_stop_sends_1001_to_both_sides_spread_over_the_grace_period() {
    let (port, codes, backend) = recording_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut w = Wsgate::start(&config(port, &log, 6));
    let mut clients = Vec::new();
    for i in 0..20 {
        let (mut ws, _) = tokio_tungstenite::connect_async(w.url(&format!("/ws/{i}")))
            .await
            .unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
        clients.push(ws);
    }
    // Half of them quiet long enough to be parked (5 s), the others
    // talking: both kinds must close politely.
    let talk_until = Instant::now() + Duration::from_millis(5_600);
    for ws in clients.iter_mut().step_by(2) {
        ws.send(Message::text("still here")).await.unwrap();
        ws.next().await.unwrap().unwrap();
    }
    tokio::time::sleep_until(talk_until.into()).await;
    let stop = Instant::now();
    w.signal("TERM");
    // Each client waits for its Close at the same time as the others, so
    // that when each came is seen.
    let waits = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| async move {
            let msg = tokio::time::timeout(Duration::from_secs(8), ws.next())
                .await
                .unwrap_or_else(|_| panic!("tunnel {i}: no Close within 8 s"))
                .unwrap()
                .unwrap();
            let at = stop.elapsed();
            match msg {
                Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "tunnel {i}"),
                other => panic!("tunnel {i}: {other:?} instead of Close 1001"),
            }
            // The client answers the Close (tungstenite does when read on).
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
            at
        });
    let closed_at = futures_util::future::join_all(waits).await;
    assert!(
        w.wait_exit(Duration::from_secs(10)).is_some(),
        "wsgate stopped"
    );
    // Spread over half the grace period (3 s), not all in the same moment.
    let first = closed_at.iter().min().unwrap();
    let last = closed_at.iter().max().unwrap();
    assert!(
        *last - *first > Duration::from_millis(300),
        "closes not spread: {closed_at:?}"
    );
    common::eventually(Duration::from_secs(5), "the backend saw 20 Closes", || {
        codes.lock().unwrap().len() == 20
    })
    .await;
    assert!(
        codes.lock().unwrap().iter().all(|c| *c == 1001),
        "the backend got {:?}",
        codes.lock().unwrap()
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 20, "{lines}");
    for l in lines.lines() {
        assert!(l.ends_with(" drain proxy 1001"), "{lines}");
    }
    backend.check();
}

/// A frame the client is in the middle of sending when the stop comes is
/// finished first: the backend gets it whole, then the Close.
#[tokio::test]
async fn the_close_waits_for_the_frame_in_flight() {
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let record = seen.clone();
    let backend = raw_backend(move |_head, mut s: TcpStream| {
        let record = record.clone();
        async move {
            let _ = s
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                .await;
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // A grace of 4 s: the Close comes within 2 s, the rest waits for it.
    let w = Wsgate::start(&config(backend.port(), &log, 4));
    let mut c = TcpStream::connect(w.addr).await.unwrap();
    c.write_all(b"GET /ws/x HTTP/1.1\r\nHost: h.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let head = common::read_head(&mut c).await.unwrap();
    assert_eq!(common::status_of(&head), 101, "{head}");
    // A masked binary frame of 1,000 bytes, of which 400 go now.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | 126, 0x03, 0xe8];
    frame.extend_from_slice(&mask);
    frame.extend((0..1000).map(|i| (i as u8) ^ mask[i % 4]));
    c.write_all(&frame[..8 + 400]).await.unwrap();
    common::eventually(
        Duration::from_secs(5),
        "the backend has the first part",
        || seen.lock().unwrap().len() == 8 + 400,
    )
    .await;
    w.signal("TERM");
    // Nothing was in flight toward the client: its Close 1001 (unmasked,
    // as a server's) may come at once — each direction is its own.
    let mut close = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut close))
        .await
        .expect("a Close in time")
        .unwrap();
    assert_eq!(close, [0x88, 0x02, 0x03, 0xe9]);
    // Toward the backend a frame is in flight: no Close cuts into it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        8 + 400,
        "something went to the backend mid-frame"
    );
    c.write_all(&frame[8 + 400..]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while seen.lock().unwrap().len() < frame.len() + 8 {
        assert!(
            Instant::now() < deadline,
            "the backend has {} bytes, not the frame and a Close: {}",
            seen.lock().unwrap().len(),
            w.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got[..frame.len()],
        frame[..],
        "the frame reached the backend whole"
    );
    // Then a masked Close 1001 of its own.
    let rest = &got[frame.len()..];
    assert_eq!(rest.len(), 8, "{rest:?}");
    assert_eq!(rest[..2], [0x88, 0x82]);
    let code = [rest[6] ^ rest[2], rest[7] ^ rest[3]];
    assert_eq!(u16::from_be_bytes(code), 1001);
}

/// Chromium, the client most users have: its `close` event says 1001.
#[tokio::test]
async fn a_browser_sees_1001_not_1006() {
    if !require_program("chromium", "chromium") {
        return;
    }
    let (port, codes, backend) = recording_backend().await;
    // The page holds a request open (`/page/hold`, never answered) so that
    // Chromium's virtual time stands still until wsgate stops.
    let page = raw_backend(|head, mut s: TcpStream| async move {
        if head.starts_with("GET /page/hold") {
            let mut sink = [0u8; 64];
            while let Ok(1..) = s.read(&mut sink).await {}
            return;
        }
        let body = r#"<!doctype html><html><body><p id="state">opening</p><script>
const ws = new WebSocket(`ws://${location.host}/ws/page`);
ws.onopen = () => { document.getElementById('state').textContent = 'open'; ws.send('ready'); };
ws.onclose = (e) => { document.getElementById('state').textContent = 'closed ' + e.code; };
fetch('/page/hold').catch(() => {});
</script></body></html>"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let conf = format!(
        "{}ProxyPass /page http://127.0.0.1:{}/page\n",
        config(port, &log, 2),
        page.port()
    );
    let w = Wsgate::start(&conf);
    let url = format!("http://{}/page", w.addr);
    // Stop wsgate once the page's WebSocket is open.
    let pid = w.pid();
    let stopper = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let open = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok()
                && backend_has_client(port);
            if open {
                std::thread::sleep(Duration::from_millis(300));
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let dom =
        tokio::task::spawn_blocking(move || common::chromium_dom_until(&url, &[], "closed 1001"))
            .await
            .unwrap();
    assert!(stopper.join().unwrap(), "the page's WebSocket never opened");
    let dom = dom.unwrap_or_else(|d| panic!("Chromium did not see 1001: {d}"));
    assert!(dom.contains("closed 1001"));
    assert_eq!(codes.lock().unwrap().as_slice(), [1001]);
    backend.check();
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url`; the backend's answer to "who".
async fn open(url: &str) -> (Client, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("who")).await.unwrap();
    let answer = ws.next().await.unwrap().unwrap();
    (ws, answer.to_text().unwrap().to_string())
}

/// The next message on `ws` is a Close 1001 (within `limit`), which the
/// client then answers.
async fn expect_going_away(ws: &mut Client, limit: Duration, what: &str) {
    let msg = tokio::time::timeout(limit, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no Close within {limit:?}"))
        .unwrap()
        .unwrap();
    match msg {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "{what}"),
        other => panic!("{what}: {other:?} instead of Close 1001"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
}

/// `ws` still carries messages both ways, and no Close came.
async fn expect_talking(ws: &mut Client, what: &str) {
    ws.send(Message::text("again")).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no echo"))
        .unwrap()
        .unwrap();
    assert!(
        msg.is_text() && msg.to_text().unwrap().ends_with("again"),
        "{what}: {msg:?}"
    );
}

/// Keeps `talking` talking (every half second, so that they stay in the
/// runtime) until the `quiet` others are parked, so that an order must
/// reach parked tunnels as well as running ones.
async fn let_the_quiet_park(w: &Wsgate, talking: &mut [Client], quiet: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let parked = || w.stderr().matches("tunnel parked").count();
    while parked() < quiet {
        for ws in talking.iter_mut() {
            ws.send(Message::text("still here")).await.unwrap();
            ws.next().await.unwrap().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the quiet tunnels never parked: {}",
            w.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(parked(), quiet, "only the quiet tunnels parked");
}

/// A balancer member set to Drain in the balancer manager: its tunnels,
/// parked or running, close with 1001 on both sides; the other member's
/// keep talking, and new tunnels go to the other member.
#[tokio::test]
async fn a_member_drained_in_the_balancer_manager_sends_its_tunnels_away_with_1001() {
    let (pa, codes_a, backend_a) = named_backend("a:").await;
    let (pb, codes_b, backend_b) = named_backend("b:").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = Wsgate::start(&format!(
        "GracefulShutdownTimeout 4
         LogLevel debug
         <Proxy balancer://pool>
  BalancerMember ws://127.0.0.1:{pa}
  BalancerMember ws://127.0.0.1:{pb}
</Proxy>
         ProxyPass /ws/ balancer://pool/ws/
         <Location /balancer-manager>
  SetHandler balancer-manager
</Location>
         <IfModule wsgate_module>
  WsgateWebSocketFrames On
</IfModule>
         CustomLog {} \"%{{wsgate-backend}}n %{{wsgate-close}}n %{{wsgate-ws-close}}n\"
",
        log.display()
    ));
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (ws, who) = open(&w.url(&format!("/ws/{i}"))).await;
        match who.as_str() {
            "a:who" => on_a.push(ws),
            "b:who" => on_b.push(ws),
            other => panic!("answered by {other}"),
        }
    }
    assert!(!on_a.is_empty() && !on_b.is_empty(), "byrequests spreads");
    // One tunnel of each member keeps talking; the rest are parked.
    let mut talking = vec![on_a.remove(0), on_b.remove(0)];
    let quiet = on_a.len() + on_b.len();
    let_the_quiet_park(&w, &mut talking, quiet).await;
    on_a.push(talking.remove(0));
    on_b.push(talking.remove(0));

    let page = http(
        &w,
        "GET /balancer-manager HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    let nonce = regex::Regex::new(r"nonce=([0-9a-f-]{36})")
        .unwrap()
        .captures(&page)
        .expect("a nonce")[1]
        .to_string();
    let form = format!("w_status_N=1&w=ws://127.0.0.1:{pa}&b=pool&nonce={nonce}");
    let answer = http(&w, format!(
        "POST /balancer-manager HTTP/1.1\r\nHost: proxy.test\r\nReferer: http://proxy.test/balancer-manager\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )).await;
    assert_eq!(common::status_of(&answer), 200, "{answer}");
    let drained = on_a.len();
    // Spread over half the grace period (2 s).
    let waits = on_a.iter_mut().enumerate().map(|(i, ws)| async move {
        expect_going_away(
            ws,
            Duration::from_secs(6),
            &format!("member a's tunnel {i}"),
        )
        .await
    });
    futures_util::future::join_all(waits).await;
    common::eventually(
        Duration::from_secs(5),
        "member a saw a Close per tunnel",
        || codes_a.lock().unwrap().len() == drained,
    )
    .await;
    assert!(
        codes_a.lock().unwrap().iter().all(|c| *c == 1001),
        "{:?}",
        codes_a.lock().unwrap()
    );
    for (i, ws) in on_b.iter_mut().enumerate() {
        expect_talking(ws, &format!("member b's tunnel {i}")).await;
    }
    assert!(codes_b.lock().unwrap().is_empty(), "member b got a Close");
    // A drained member takes no new tunnel (it has no sticky sessions here).
    for i in 0..4 {
        let (_ws, who) = open(&w.url(&format!("/ws/new{i}"))).await;
        assert_eq!(who, "b:who");
    }
    let drain_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" drain"))
            .count()
    };
    common::eventually(Duration::from_secs(5), "a drain line per tunnel", || {
        drain_lines() >= drained
    })
    .await;
    let lines = std::fs::read_to_string(&log).unwrap();
    let drains: Vec<&str> = lines.lines().filter(|l| l.contains(" drain")).collect();
    assert_eq!(drains.len(), drained, "{lines}");
    let a_drained = format!("ws://127.0.0.1:{pa} drain 1001");
    assert!(drains.iter().all(|l| *l == a_drained), "{lines}");
    backend_a.check();
    backend_b.check();
}

/// A reload that points a route at another backend: the tunnels to the
/// backend no longer configured close with 1001 (the client reconnects to
/// the new one); the tunnels of the route the reload kept go on.
#[tokio::test]
async fn a_reload_sends_away_the_tunnels_of_a_backend_it_removed() {
    let (pa, codes_a, backend_a) = named_backend("a:").await;
    let (pb, codes_b, backend_b) = named_backend("b:").await;
    let (pc, _codes_c, backend_c) = named_backend("c:").await;
    let conf = |first: u16| {
        format!(
            "{}
ServerName proxy.test
GracefulShutdownTimeout 2
             LogLevel debug
             ProxyPass /a/ ws://127.0.0.1:{first}/a/
             ProxyPass /b/ ws://127.0.0.1:{pb}/b/
             <IfModule wsgate_module>
  WsgateWebSocketFrames On
</IfModule>
",
            common::LISTEN
        )
    };
    let w = Wsgate::start_file(&conf(pa));
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let (ws, who) = open(&w.url(&format!("/a/{i}"))).await;
        assert_eq!(who, "a:who");
        on_a.push(ws);
        let (ws, who) = open(&w.url(&format!("/b/{i}"))).await;
        assert_eq!(who, "b:who");
        on_b.push(ws);
    }
    let mut talking = vec![on_a.remove(0)];
    let quiet = on_a.len() + on_b.len();
    let_the_quiet_park(&w, &mut talking, quiet).await;
    on_a.push(talking.remove(0));
    w.reload(&conf(pc)).await;
    let waits = on_a.iter_mut().enumerate().map(|(i, ws)| async move {
        expect_going_away(ws, Duration::from_secs(5), &format!("/a tunnel {i}")).await
    });
    futures_util::future::join_all(waits).await;
    common::eventually(Duration::from_secs(5), "backend a saw three Closes", || {
        codes_a.lock().unwrap().len() == 3
    })
    .await;
    assert!(codes_a.lock().unwrap().iter().all(|c| *c == 1001));
    for (i, ws) in on_b.iter_mut().enumerate() {
        expect_talking(ws, &format!("/b tunnel {i}")).await;
    }
    assert!(codes_b.lock().unwrap().is_empty(), "backend b got a Close");
    let (_ws, who) = open(&w.url("/a/again")).await;
    assert_eq!(who, "c:who", "the route's new backend");
    backend_a.check();
    backend_b.check();
    backend_c.check();
}

/// One request on its own connection: the whole answer.
async fn http(w: &Wsgate, raw: String) -> String {
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    common::read_until_close(&mut s, Duration::from_secs(10)).await
}

/// Whether a connection to the backend's port is established (the page's
/// WebSocket went through).
fn backend_has_client(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(hex.trim_end()) && f[3] == "01"
        })
}
