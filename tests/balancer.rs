//! balancer:// end to end: real backends on 127.0.0.1 behind the real
//! binary, some of them killed and restarted during the test.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket echo backend that answers with its name, counts the
/// tunnels it took, and can be killed (listener and every connection
/// dropped) and started again on the same port.
struct Member {
    name: &'static str,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections open now (the backend side of live tunnels).
    live: Arc<AtomicUsize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Member {
    async fn start(name: &'static str) -> Member {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Member {
            name,
            addr,
            accepted: Arc::default(),
            live: Arc::default(),
            tasks: Arc::default(),
        };
        m.serve(listener);
        m
    }

    fn serve(&self, listener: TcpListener) {
        let (name, accepted, tasks) = (self.name, self.accepted.clone(), self.tasks.clone());
        let live = self.live.clone();
        let inner = tasks.clone();
        tasks.lock().unwrap().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let live = live.clone();
                inner.lock().unwrap().spawn(async move {
                    live.fetch_add(1, Ordering::SeqCst);
                    let _ended = Ended(live);
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() {
                            let reply = format!("{name}:{}", msg.into_text().unwrap());
                            if ws.send(Message::Text(reply.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    }

    /// Returns once the listener is closed and every connection dropped:
    /// an abort only asks, and a listener still open a moment after it
    /// would take a connection and then drop it (a 502, not a refusal).
    async fn kill(&self) {
        loop {
            let mut set = std::mem::take(&mut *self.tasks.lock().unwrap());
            if set.is_empty() {
                return;
            }
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }

    async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Counts a connection out when its task ends, however it ends.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn open(gate: &Wsgate, path: &str) -> Ws {
    tokio::time::timeout(T, tokio_tungstenite::connect_async(gate.url(path)))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("handshake through {path}: {e}"))
        .0
}

/// Sends `text` and returns which member answered.
async fn whoami(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::Text(text.into())).await.unwrap();
    let reply = tokio::time::timeout(T, ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("ok");
    let reply = reply.into_text().unwrap().to_string();
    reply.split(':').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_tunnels_follow_loadfactors_1_2_3() {
    let members = [
        Member::start("a").await,
        Member::start("b").await,
        Member::start("c").await,
    ];
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://chat>\nBalancerMember ws://{} loadfactor=1\nBalancerMember ws://{} loadfactor=2\nBalancerMember ws://{} loadfactor=3\n</Proxy>\nProxyPass /ws/ balancer://chat/\n",
        members[0].addr, members[1].addr, members[2].addr
    ));
    let mut open_tunnels = Vec::new();
    for _ in 0..10 {
        let batch: Vec<_> = (0..100).map(|_| open(&gate, "/ws/")).collect();
        open_tunnels.extend(futures_util::future::join_all(batch).await);
    }
    let counts: Vec<usize> = members.iter().map(Member::count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000);
    for (count, share) in counts.iter().zip([1.0, 2.0, 3.0]) {
        let ideal = 1000.0 * share / 6.0;
        assert!(
            (*count as f64 - ideal).abs() <= 20.0,
            "{counts:?} is not within 2% of 1:2:3"
        );
    }
    assert_eq!(
        whoami(&mut open_tunnels[999], "x").await.len(),
        1,
        "still echoing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bybusyness_sends_new_tunnels_to_the_member_with_fewest_live_ones() {
    let a = Member::start("a").await;
    let b = Member::start("b").await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://chat>\nBalancerMember ws://{}\nBalancerMember ws://{}\nProxySet lbmethod=bybusyness\n</Proxy>\nProxyPass /ws/ balancer://chat/\n",
        a.addr, b.addr
    ));
    let mut tunnels = Vec::new();
    for i in 0..4 {
        let mut ws = open(&gate, "/ws/").await;
        let who = whoami(&mut ws, &i.to_string()).await;
        tunnels.push((who, ws));
    }
    assert_eq!(tunnels.iter().filter(|(w, _)| w == "a").count(), 2);
    // Close a's two tunnels: the next two go to a, which is now idle.
    let mut kept = Vec::new();
    for (who, mut ws) in tunnels {
        if who == "a" {
            ws.close(None).await.unwrap();
            while ws.next().await.is_some() {}
        } else {
            kept.push(ws);
        }
    }
    eventually(T, "a's tunnels ended", || {
        a.live.load(Ordering::SeqCst) == 0
    })
    .await;
    for _ in 0..2 {
        let mut ws = open(&gate, "/ws/").await;
        assert_eq!(whoami(&mut ws, "n").await, "a");
        kept.push(ws);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_sessions_by_cookie_and_url_parameter() {
    let one = http_backend("one").await;
    let two = http_backend("two").await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://app>\nBalancerMember http://{one} route=r1\nBalancerMember http://{two} route=r2\nProxySet stickysession=SID|sid\n</Proxy>\nProxyPass / balancer://app/\n"
    ));
    for _ in 0..4 {
        let got = raw_exchange(
            gate.addr,
            b"GET /p HTTP/1.1\r\nHost: f\r\nCookie: a=b; SID=xyz.r2\r\nConnection: close\r\n\r\n",
            T,
        )
        .await;
        assert!(got.ends_with("two /p body=0"), "{got}");
        let got = raw_exchange(
            gate.addr,
            b"GET /p?x=1&sid=abc.r1 HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
            T,
        )
        .await;
        assert!(got.ends_with("one /p?x=1&sid=abc.r1 body=0"), "{got}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_killed_mid_run_closes_its_tunnels_and_new_ones_go_elsewhere_until_it_returns() {
    let a = Member::start("a").await;
    let b = Member::start("b").await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://chat>\nBalancerMember ws://{} retry=1\nBalancerMember ws://{} retry=1\n</Proxy>\nProxyPass /ws/ balancer://chat/\n",
        a.addr, b.addr
    ));
    let mut tunnels = Vec::new();
    for i in 0..10 {
        let mut ws = open(&gate, "/ws/").await;
        let who = whoami(&mut ws, &i.to_string()).await;
        tunnels.push((who, ws));
    }
    a.kill().await;
    let started = Instant::now();
    for (who, ws) in &mut tunnels {
        if who == "a" {
            // The client sees the tunnel end, promptly and without a hang.
            let end = tokio::time::timeout(T, ws.next())
                .await
                .expect("closed in time");
            assert!(!matches!(end, Some(Ok(Message::Text(_)))));
        } else {
            assert_eq!(whoami(ws, "still").await, "b", "b's tunnels are untouched");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // New tunnels: a refuses, the request fails over to b, the client never notices.
    for _ in 0..6 {
        let mut ws = open(&gate, "/ws/").await;
        assert_eq!(whoami(&mut ws, "new").await, "b");
    }
    a.restart().await;
    let back = Instant::now();
    loop {
        let mut ws = open(&gate, "/ws/").await;
        if whoami(&mut ws, "back").await == "a" {
            break;
        }
        assert!(
            back.elapsed() < T,
            "a takes tunnels again once retry=1 has passed"
        );
    }
    assert!(
        back.elapsed() >= Duration::from_millis(500),
        "not before retry=1 ran out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_standby_takes_over_only_when_no_member_is_usable() {
    let a = Member::start("a").await;
    let standby = Member::start("s").await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://chat>\nBalancerMember ws://{}\nBalancerMember ws://{} status=+H\n</Proxy>\nProxyPass /ws/ balancer://chat/\n",
        a.addr, standby.addr
    ));
    for _ in 0..3 {
        let mut ws = open(&gate, "/ws/").await;
        assert_eq!(whoami(&mut ws, "x").await, "a");
    }
    a.kill().await;
    for _ in 0..3 {
        let mut ws = open(&gate, "/ws/").await;
        assert_eq!(whoami(&mut ws, "x").await, "s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nofailover_answers_503_when_the_sticky_member_is_down() {
    let a = Member::start("a").await;
    let b = Member::start("b").await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://chat>\nBalancerMember ws://{} route=ra\nBalancerMember ws://{} route=rb\nProxySet stickysession=ROUTEID nofailover=On\n</Proxy>\nProxyPass /ws/ balancer://chat/\n",
        a.addr, b.addr
    ));
    a.kill().await;
    let request = ws_request("/ws/", "websocket").replace(
        "Host: proxy.test\r\n",
        "Host: proxy.test\r\nCookie: ROUTEID=.ra\r\n",
    );
    let got = raw_exchange(gate.addr, request.as_bytes(), T).await;
    assert_eq!(status_of(&got), 503, "{got}");
    let request = ws_request("/ws/", "websocket").replace(
        "Host: proxy.test\r\n",
        "Host: proxy.test\r\nCookie: ROUTEID=.rb\r\n",
    );
    let got = raw_exchange(gate.addr, request.as_bytes(), Duration::from_millis(500)).await;
    assert_eq!(status_of(&got), 101, "{got}");
}

/// An HTTP backend whose answers come from `status` (a 200 naming it, or
/// the status stored there) and whose /health follows `healthy`.
async fn switchable(
    name: &'static str,
    status: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
) -> Backend {
    raw_backend(move |head, mut stream| {
        let (status, healthy) = (status.clone(), healthy.clone());
        async move {
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let code = if target == "/health" {
                if healthy.load(Ordering::SeqCst) { 200 } else { 503 }
            } else {
                status.load(Ordering::SeqCst)
            };
            let body = format!("{name} {code}");
            let _ = stream
                .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                .await;
        }
    })
    .await
}

async fn who_answers(gate: &Wsgate) -> String {
    let got = raw_exchange(
        gate.addr,
        b"GET /x HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    got.rsplit("\r\n\r\n").next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn failonstatus_relays_the_answer_and_puts_the_member_in_error() {
    let a_status = Arc::new(AtomicUsize::new(503));
    let a = switchable("a", a_status.clone(), Arc::new(AtomicBool::new(true))).await;
    let b = switchable(
        "b",
        Arc::new(AtomicUsize::new(200)),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://app>\nBalancerMember http://{a} retry=30\nBalancerMember http://{b}\nProxySet failonstatus=503\n</Proxy>\nProxyPass / balancer://app/\n"
    ));
    assert_eq!(
        who_answers(&gate).await,
        "a 503",
        "the response still reaches the client"
    );
    for _ in 0..4 {
        assert_eq!(who_answers(&gate).await, "b 200", "a is in error now");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_take_a_member_out_and_bring_it_back() {
    let healthy = Arc::new(AtomicBool::new(true));
    let a = switchable("a", Arc::new(AtomicUsize::new(200)), healthy.clone()).await;
    let b = switchable(
        "b",
        Arc::new(AtomicUsize::new(200)),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let gate = Wsgate::start(&format!(
        "ProxyHCExpr ok2xx {{%{{REQUEST_STATUS}} =~ /^2/}}\n<Proxy balancer://app>\nBalancerMember http://{a} hcmethod=GET hcuri=/health hcinterval=200ms hcfails=2 hcpasses=1 hcexpr=ok2xx\nBalancerMember http://{b}\n</Proxy>\nProxyPass / balancer://app/\n"
    ));
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(who_answers(&gate).await);
    }
    assert!(answers.contains(&"a 200".to_string()), "{answers:?}");
    healthy.store(false, Ordering::SeqCst);
    gate.wait_log("failed 2 health checks: out of use", 1).await;
    for _ in 0..4 {
        assert_eq!(who_answers(&gate).await, "b 200");
    }
    healthy.store(true, Ordering::SeqCst);
    gate.wait_log("passed its health checks: back in use", 1)
        .await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(who_answers(&gate).await);
    }
    assert!(
        answers.contains(&"a 200".to_string()),
        "back in use: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn member_error_state_survives_a_reload() {
    let a_status = Arc::new(AtomicUsize::new(503));
    let a = switchable("a", a_status.clone(), Arc::new(AtomicBool::new(true))).await;
    let b = switchable(
        "b",
        Arc::new(AtomicUsize::new(200)),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://app>\nBalancerMember http://{a} retry=60\nBalancerMember http://{b}\nProxySet failonstatus=503\n</Proxy>\nProxyPass / balancer://app/\n"
    ));
    assert_eq!(who_answers(&gate).await, "a 503");
    a_status.store(200, Ordering::SeqCst);
    // Same members, a new ProxyPass line: a reload keeps a's error state.
    let conf = std::fs::read_to_string(&gate.conf).unwrap() + "ProxyPass /other/ balancer://app/\n";
    gate.reload(&conf).await;
    for _ in 0..3 {
        assert_eq!(who_answers(&gate).await, "b 200");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn header_rules_inside_the_proxy_section_apply_to_its_requests() {
    let one = http_backend("one").await;
    let seen = one.seen.clone();
    let plain = http_backend("plain").await;
    let plain_seen = plain.seen.clone();
    let gate = Wsgate::start(&format!(
        "<Proxy balancer://app>\nBalancerMember http://{one}\nRequestHeader set X-Via-Balancer yes\nHeader set X-Member %{{BALANCER_WORKER_NAME}}e\n</Proxy>\nProxyPass /b/ balancer://app/\nProxyPass / http://{plain}/\n"
    ));
    let got = raw_exchange(
        gate.addr,
        b"GET /b/x HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(
        got.contains(&format!("X-Member: http://{one}\r\n")),
        "{got}"
    );
    assert!(
        seen.last().contains("X-Via-Balancer: yes\r\n"),
        "{}",
        seen.last()
    );
    let got = raw_exchange(
        gate.addr,
        b"GET /x HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(!got.contains("X-Member"), "{got}");
    assert!(
        !plain_seen.last().contains("X-Via-Balancer"),
        "{}",
        plain_seen.last()
    );
}
