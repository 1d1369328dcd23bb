//! Several wsgate instances behind a TCP load balancer: HAProxy in `mode
//! tcp` spreads client connections round-robin over two wsgate instances
//! with `send-proxy-v2`, and both instances carry the same
//! `balancer://` configuration with sticky sessions (Apache's recipe: a
//! `ROUTEID` cookie set from `BALANCER_WORKER_ROUTE` when the route
//! changes). Whichever instance HAProxy picks, a client's cookie reaches the
//! member it names, over HTTP and through a WebSocket tunnel, and the
//! member sees the client's own address in `X-Forwarded-For` (from the
//! PROXY protocol), not HAProxy's.
//!
//! [`Cluster`] holds the balancer and the instances, so that tests of what
//! happens to one instance (a drain, a stop) start from the same setup.
//!
//! HAProxy is the Debian package `haproxy`: without it these tests say
//! SKIP, and under `CI=true` they fail.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The client's own address, distinct from HAProxy's (127.0.0.1), so that
/// the members can tell which one they were given.
const CLIENT_IP: &str = "127.0.0.9";

/// HAProxy on a listening socket the test bound (port 0), passed as
/// descriptor 3 (`bind fd@3`): no port to guess, and connections wait in
/// its backlog until HAProxy accepts them, so there is nothing to wait for.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(servers: &[SocketAddr]) -> Haproxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conf = String::from(
            "global\n    maxconn 2000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n    retries 2\n    option redispatch\nfrontend clients\n    bind fd@3\n    default_backend wsgate\nbackend wsgate\n    balance roundrobin\n",
        );
        for (i, s) in servers.iter().enumerate() {
            conf.push_str(&format!("    server w{} {s} send-proxy-v2\n", i + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        // SAFETY: dup2 is async-signal-safe; it runs in the child between
        // fork and exec, on a descriptor the parent keeps open until then.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start haproxy");
        drop(listener);
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A balancer member: answers a request with its name, and an upgrade with
/// a 101 and then an echo of each read, prefixed by its name.
async fn member(name: &'static str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let mut backend = serve(listener, move |mut s| {
        let record = record.clone();
        async move {
            while let Some(head) = read_head(&mut s).await {
                record.push(head.clone());
                if header_value(&head, "upgrade").is_some() {
                    s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        let echo = [name.as_bytes(), b":", &buf[..n]].concat();
                        if s.write_all(&echo).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    backend.seen = seen;
    backend
}

/// HAProxy in front of wsgate instances that share one configuration.
struct Cluster {
    haproxy: Haproxy,
    instances: Vec<Wsgate>,
}

impl Cluster {
    /// `n` instances (ServerName w1, w2…: the members see which one
    /// forwarded a request in `X-Forwarded-Server`) balancing over
    /// `members`, routes m1, m2…
    fn start(n: usize, members: &[&Backend]) -> Cluster {
        Cluster::start_with(n, members, "")
    }

    /// [`Cluster::start`] with `extra` lines in each instance's
    /// configuration.
    fn start_with(n: usize, members: &[&Backend], extra: &str) -> Cluster {
        let mut shared = String::from(extra);
        shared.push_str("<Proxy balancer://app>\n");
        for (i, m) in members.iter().enumerate() {
            shared.push_str(&format!(
                "    BalancerMember http://{m} route=m{} upgrade=websocket\n",
                i + 1
            ));
        }
        shared.push_str(
            "    ProxySet stickysession=ROUTEID\n</Proxy>\n\
             ProxyPass / balancer://app/\n\
             Header add Set-Cookie \"ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/\" env=BALANCER_ROUTE_CHANGED\n\
             RemoteIPProxyProtocol On\n",
        );
        let instances: Vec<Wsgate> = (1..=n)
            .map(|i| Wsgate::start_file(&format!("{LISTEN}\nServerName w{i}\n{shared}")))
            .collect();
        let servers: Vec<SocketAddr> = instances.iter().map(|w| w.addr).collect();
        Cluster {
            haproxy: Haproxy::start(&servers),
            instances,
        }
    }

    /// A new client connection through HAProxy, from [`CLIENT_IP`].
    async fn connect(&self) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(CLIENT_IP.parse().unwrap(), 0))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), socket.connect(self.haproxy.addr))
            .await
            .expect("connected in time")
            .expect("connected")
    }

    /// A request on a new connection, with `cookie` if given: the answer.
    async fn get(&self, cookie: Option<&str>) -> String {
        let mut s = self.connect().await;
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        s.write_all(
            format!("GET /page HTTP/1.1\r\nHost: app.test\r\n{cookie}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        read_until_close(&mut s, Duration::from_secs(10)).await
    }
}

impl Cluster {
    /// No instance logged an error (a refused PROXY header would be one).
    fn assert_no_errors(&self) {
        for (i, w) in self.instances.iter().enumerate() {
            let log = w.stderr();
            assert!(!log.contains("ERROR"), "instance w{}: {log}", i + 1);
        }
    }
}

fn haproxy_here() -> bool {
    require_program("haproxy", "haproxy")
}

/// The body of an answer (the member's name).
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn a_sticky_cookie_reaches_its_member_whichever_instance_takes_the_connection() {
    if !haproxy_here() {
        return;
    }
    let m1 = member("m1").await;
    let m2 = member("m2").await;
    let cluster = Cluster::start(2, &[&m1, &m2]);

    // The first request has no cookie: a member is chosen, and named.
    let first = cluster.get(None).await;
    assert_eq!(status_of(&first), 200, "{first}");
    let chosen = body(&first).to_string();
    let cookie = header_value(&first, "set-cookie").expect("a route cookie");
    assert_eq!(cookie, format!("ROUTEID=.{chosen}; path=/"));

    // Every later connection carries the cookie; HAProxy alternates
    // instances, and the member stays the same.
    for _ in 0..8 {
        let answer = cluster.get(Some(&format!("ROUTEID=.{chosen}"))).await;
        assert_eq!(status_of(&answer), 200, "{answer}");
        assert_eq!(body(&answer), chosen, "the cookie's member");
        assert_eq!(header_value(&answer, "set-cookie"), None, "the route held");
    }
    // The other route is just as sticky.
    let other = if chosen == "m1" { "m2" } else { "m1" };
    for _ in 0..4 {
        let answer = cluster.get(Some(&format!("ROUTEID=.{other}"))).await;
        assert_eq!(body(&answer), other);
    }

    let heads: Vec<String> = m1.seen.all().into_iter().chain(m2.seen.all()).collect();
    assert_eq!(heads.len(), 13);
    let instances: BTreeSet<String> = heads
        .iter()
        .filter_map(|h| header_value(h, "x-forwarded-server"))
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from(["w1".to_string(), "w2".to_string()]),
        "both instances served"
    );
    for h in &heads {
        assert_eq!(
            header_value(h, "x-forwarded-for").as_deref(),
            Some(CLIENT_IP),
            "the client's address, from the PROXY protocol: {h}"
        );
    }
    cluster.assert_no_errors();
}

#[tokio::test]
async fn websocket_tunnels_follow_the_cookie_through_either_instance() {
    if !haproxy_here() {
        return;
    }
    let m1 = member("m1").await;
    let m2 = member("m2").await;
    let cluster = Cluster::start(2, &[&m1, &m2]);
    for i in 0..4 {
        let mut s = cluster.connect().await;
        s.write_all(
            b"GET /chat HTTP/1.1\r\nHost: app.test\r\nCookie: ROUTEID=.m2\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await.expect("an answer");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let msg = format!("hello {i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let echo = read_exactly(&mut s, 3 + msg.len(), Duration::from_secs(10)).await;
        assert_eq!(echo, format!("m2:{msg}"));
    }
    assert!(m1.seen.all().is_empty(), "nothing reached m1");
    let heads = m2.seen.all();
    let instances: BTreeSet<String> = heads
        .iter()
        .filter_map(|h| header_value(h, "x-forwarded-server"))
        .collect();
    assert_eq!(instances.len(), 2, "both instances tunnelled: {heads:?}");
    assert!(heads
        .iter()
        .all(|h| header_value(h, "x-forwarded-for").as_deref() == Some(CLIENT_IP)));
    cluster.assert_no_errors();
}

/// A WebSocket member: echoes each text message prefixed with its name and
/// the instance that forwarded the tunnel (`m1@w2:`), and records the Close
/// codes it gets (`close 1001`) in `seen`.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback type
async fn ws_member(name: &'static str) -> Backend {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let mut backend = serve(listener, move |s| {
        let record = record.clone();
        async move {
            let mut via = String::new();
            let callback = |req: &Request, resp: Response| {
                via = req
                    .headers()
                    .get("x-forwarded-server")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                Ok(resp)
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, callback).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(frame) = &msg {
                    let code = frame.as_ref().map_or(0, |f| u16::from(f.code));
                    record.push(format!("close {code}"));
                } else if msg.is_text() {
                    let echo = format!("{name}@{via}:{}", msg.to_text().unwrap());
                    if ws.send(Message::text(echo)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    backend.seen = seen;
    backend
}

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

impl Cluster {
    /// A WebSocket through HAProxy with the route cookie `ROUTEID=.{route}`;
    /// the member's answer to "who" (`m1@w2:who`).
    async fn websocket(&self, route: &str) -> (Client, String) {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let mut request = "ws://app.test/chat".into_client_request().unwrap();
        request
            .headers_mut()
            .insert("cookie", format!("ROUTEID=.{route}").parse().unwrap());
        let stream = self.connect().await;
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(request, stream),
        )
        .await
        .expect("a handshake in time")
        .expect("a WebSocket");
        ws.send(Message::text("who")).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        (ws, answer.to_text().unwrap().to_string())
    }
}

/// One instance stops gracefully (as for its own upgrade or its machine's
/// maintenance): its WebSocket clients get Close 1001 "going away", not a
/// cut connection, and reconnect — through HAProxy, to the other instance,
/// which sends them to the same member by their cookie. The other
/// instance's tunnels never notice.
#[tokio::test]
async fn a_stopped_instance_hands_its_websocket_clients_over_with_1001() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    if !haproxy_here() {
        return;
    }
    let m1 = ws_member("m1").await;
    let m2 = ws_member("m2").await;
    let mut cluster = Cluster::start_with(
        2,
        &[&m1, &m2],
        "GracefulShutdownTimeout 4\n<IfModule wsgate_module>\n  WsgateWebSocketFrames On\n</IfModule>\n",
    );
    let (mut on_w1, mut on_w2) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let (ws, who) = cluster.websocket("m1").await;
        match who.as_str() {
            "m1@w1:who" => on_w1.push(ws),
            "m1@w2:who" => on_w2.push(ws),
            other => panic!("answered {other}"),
        }
    }
    assert_eq!((on_w1.len(), on_w2.len()), (3, 3), "round robin");

    let mut w1 = cluster.instances.remove(0);
    w1.signal("TERM");
    let handed = on_w1.into_iter().enumerate().map(|(i, mut ws)| {
        let cluster = &cluster;
        async move {
            let msg = tokio::time::timeout(Duration::from_secs(6), ws.next())
                .await
                .unwrap_or_else(|_| panic!("client {i}: no Close within 6 s"))
                .unwrap()
                .unwrap();
            match msg {
                Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "client {i}"),
                other => panic!("client {i}: {other:?} instead of Close 1001"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
            // Reconnects as a browser would, with its cookie.
            let (_again, who) = cluster.websocket("m1").await;
            assert_eq!(
                who, "m1@w2:who",
                "client {i} came back through the other instance"
            );
        }
    });
    futures_util::future::join_all(handed).await;
    assert!(
        w1.wait_exit(Duration::from_secs(10)).is_some(),
        "the stopped instance exited"
    );
    for (i, ws) in on_w2.iter_mut().enumerate() {
        ws.send(Message::text("still")).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.to_text().unwrap(), "m1@w2:still", "w2's tunnel {i}");
    }
    let closes = || -> Vec<String> {
        m1.seen
            .all()
            .into_iter()
            .filter(|s| s.starts_with("close"))
            .collect()
    };
    common::eventually(Duration::from_secs(5), "member m1 saw three Closes", || {
        closes().len() >= 3
    })
    .await;
    let closes = closes();
    // Exactly the three going-away closes: the reconnections ended
    // without one (dropped), the other instance's tunnels are open.
    assert_eq!(closes, ["close 1001"; 3], "member m1's Closes");
    assert!(m2.seen.all().is_empty(), "nothing reached m2");
    cluster.assert_no_errors();
}
