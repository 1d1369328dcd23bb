//! Timeouts, exactly: the server runs in the test's runtime with tokio's
//! clock paused, clients and backends on in-memory pipes (`Handle::connect`,
//! an in-process network for the backends), so a 20-second timeout takes
//! no time and is checked to the millisecond. (Over real sockets a paused
//! clock jumps to the next timer whenever the runtime polls for I/O, so
//! these could not be exact there.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Watched;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use wsgate::proxy::server::Handle;
use wsgate::upstream::memory::MemoryNet;

const BACKEND: &str = "10.9.0.1:80";
const CLIENT: &str = "192.0.2.7:40000";
const LOCAL: &str = "127.0.0.1:80";

/// A proxy on `body`, with its backends on `net`.
fn proxy(net: &Arc<MemoryNet>, body: &str) -> Handle {
    let text = format!("Listen 127.0.0.1:80\nServerName proxy.test\n{body}");
    let config = wsgate::config::from_str(&text, "t.conf").expect("a valid configuration");
    Handle::start_in_memory(config, net.clone()).expect("started")
}

fn client(handle: &Handle) -> DuplexStream {
    handle.connect(CLIENT.parse().unwrap(), LOCAL.parse().unwrap())
}

/// A backend at `addr` on `net`, each connection handled by `serve`
/// (watched: its panics fail the test).
fn backend<F, Fut>(net: &Arc<MemoryNet>, addr: &str, serve: F) -> Watched
where
    F: Fn(DuplexStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut listener = net.listen(addr.parse::<SocketAddr>().unwrap());
    let tasks = Watched::default();
    let watched = tasks.clone();
    tokio::spawn(async move {
        while let Some(pipe) = listener.accept().await {
            watched.spawn(serve(pipe));
        }
    });
    tasks
}

async fn read_head(s: &mut DuplexStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A backend that switches to the protocol asked for, then echoes.
async fn switching_echo(mut pipe: DuplexStream) {
    let head = read_head(&mut pipe).await;
    let proto = head
        .lines()
        .find_map(|l| l.strip_prefix("Upgrade: "))
        .unwrap_or("none")
        .to_string();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\n\r\n"
    );
    if pipe.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        if pipe.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A backend that answers every request with a small 200, keeping the
/// connection.
async fn ok_backend(mut pipe: DuplexStream) {
    while !read_head(&mut pipe).await.is_empty() {
        if pipe
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

const HANDSHAKE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// Opens a tunnel through `handle`: the 101's head.
async fn tunnel(handle: &Handle) -> (DuplexStream, String) {
    let mut c = client(handle);
    c.write_all(HANDSHAKE).await.unwrap();
    let head = read_head(&mut c).await;
    (c, head)
}

/// Reads until the server closes; the bytes, and when the close came.
async fn until_closed(s: &mut DuplexStream) -> (String, Instant) {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    (String::from_utf8_lossy(&out).into_owned(), Instant::now())
}

/// Sends `request`; the server answers with `status_line` and closes,
/// `after` from then.
async fn send_then_expect(
    c: &mut DuplexStream,
    request: &[u8],
    status_line: &str,
    after: Duration,
) {
    c.write_all(request).await.unwrap();
    let sent = Instant::now();
    let (answer, closed) = until_closed(c).await;
    assert!(answer.starts_with(status_line), "{answer}");
    assert_after(sent, closed, after, status_line);
}

/// `at` is `want` after `from`, to the millisecond the timer wheel keeps.
fn assert_after(from: Instant, at: Instant, want: Duration, what: &str) {
    let took = at - from;
    assert!(
        took >= want && took < want + Duration::from_millis(5),
        "{what}: after {took:?}, not {want:?}"
    );
}

/// S64: a tunnel idle for the larger of Timeout and the backend timeout
/// is closed; traffic either way keeps it open.
#[tokio::test(start_paused = true)]
async fn an_idle_tunnel_closes_after_the_larger_timeout_and_traffic_keeps_it_open() {
    let net = Arc::new(MemoryNet::default());
    let tasks = backend(&net, BACKEND, switching_echo);
    let h = proxy(
        &net,
        &format!("Timeout 1\nProxyTimeout 2\nProxyPass /ws ws://{BACKEND}/\n"),
    );
    let (mut c, head) = tunnel(&h).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1900)).await;
        c.write_all(b"k").await.unwrap();
        let mut k = [0u8; 1];
        c.read_exact(&mut k).await.expect("still open");
    }
    let last = Instant::now();
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "");
    assert_after(last, closed, Duration::from_secs(2), "the idle close");
    tasks.join(Duration::from_secs(1)).await;
}

/// S62: legacy mod_proxy_wstunnel tunnels have no idle timeout.
#[tokio::test(start_paused = true)]
async fn a_legacy_tunnel_has_no_idle_timeout() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, switching_echo);
    let h = proxy(
        &net,
        &format!(
            "Timeout 1\nProxyWebsocketFallbackToProxyHttp Off\nProxyPass /ws ws://{BACKEND}/\n"
        ),
    );
    let (mut c, head) = tunnel(&h).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    c.write_all(b"x").await.unwrap();
    let mut x = [0u8; 1];
    c.read_exact(&mut x).await.expect("open after an idle hour");
}

/// KeepAliveTimeout: how long a connection waits for its next request.
#[tokio::test(start_paused = true)]
async fn a_keep_alive_connection_closes_after_keepalivetimeout_and_not_before() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, ok_backend);
    let h = proxy(
        &net,
        &format!("KeepAliveTimeout 3\nProxyPass / http://{BACKEND}/\n"),
    );
    let mut c = client(&h);
    let request = b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n";
    for _ in 0..2 {
        c.write_all(request).await.unwrap();
        let head = read_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let mut body = [0u8; 2];
        c.read_exact(&mut body).await.unwrap();
        // Just inside the timeout: the next request is still served.
        tokio::time::sleep(Duration::from_millis(2990)).await;
    }
    c.write_all(request).await.unwrap();
    let _ = read_head(&mut c).await;
    let mut body = [0u8; 2];
    c.read_exact(&mut body).await.unwrap();
    let served = Instant::now();
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "", "closed without a word");
    assert_after(
        served,
        closed,
        Duration::from_secs(3),
        "the keep-alive close",
    );
}

/// Timeout: a client that sends nothing is closed, with no answer.
#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_after_timeout() {
    let h = proxy(&Arc::new(MemoryNet::default()), "Timeout 7\n");
    let opened = Instant::now();
    let mut c = client(&h);
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "");
    assert_after(
        opened,
        closed,
        Duration::from_secs(7),
        "the first-byte timeout",
    );
}

/// mod_reqtimeout's defaults (`header=20-40,MinRate=500`): a head whose
/// request line came but not its end gets a 408 20 s after the
/// connection's first read, plus 2 ms for each of its 34 bytes.
#[tokio::test(start_paused = true)]
async fn a_head_that_stops_halfway_gets_408_after_20_seconds_and_its_bytes_worth() {
    let h = proxy(&Arc::new(MemoryNet::default()), "");
    let mut c = client(&h);
    send_then_expect(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: proxy.test\r\n",
        "HTTP/1.1 408 Request Timeout\r\n",
        Duration::from_millis(20_000 + 34 * 2),
    )
    .await;
}

/// A slowloris that keeps above MinRate (1000 bytes, 2 s of credit, every
/// 1.9 s) is still cut at the stage's maximum, 40 s after its first read;
/// without a whole request line it gets no answer, as from Apache.
#[tokio::test(start_paused = true)]
async fn a_head_that_keeps_up_the_rate_is_cut_at_the_maximum_without_an_answer() {
    let h = proxy(&Arc::new(MemoryNet::default()), "");
    let mut c = client(&h);
    let opened = Instant::now();
    c.write_all(b"GET /").await.unwrap();
    let drip = async {
        loop {
            tokio::time::sleep(Duration::from_millis(1900)).await;
            if c.write_all(&[b'a'; 1000]).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), drip).await;
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "", "no answer without a request line");
    // Closed at 40 s: the first write after it failed, at most 1.9 s on.
    let took = closed - opened;
    assert!(
        took >= Duration::from_secs(40) && took <= Duration::from_millis(41_900),
        "closed after {took:?}"
    );
}

/// The header stage counts from the connection's first read: a client
/// that sends nothing is closed unanswered after 20 s (Timeout is 60 s).
#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_at_the_header_stage() {
    let h = proxy(&Arc::new(MemoryNet::default()), "");
    let opened = Instant::now();
    let mut c = client(&h);
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "");
    assert_after(opened, closed, Duration::from_secs(20), "the header stage");
}

/// `header=0`: no stage; only each read is bounded by Timeout, so a head
/// that comes a byte every 5 s for a minute is still served.
#[tokio::test(start_paused = true)]
async fn header_zero_leaves_a_slow_head_to_timeout_per_read() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, ok_backend);
    let h = proxy(
        &net,
        &format!("Timeout 7\nRequestReadTimeout header=0\nProxyPass / http://{BACKEND}/\n"),
    );
    let mut c = client(&h);
    for b in b"GET / HTTP/1.1\r\nHost: p\r\n" {
        c.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    c.write_all(b"\r\n").await.unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

/// The body stage (`body=20,MinRate=500` by default) counts from the
/// body's first read, which takes the 10 bytes that came with the head.
#[tokio::test(start_paused = true)]
async fn a_body_too_slow_gets_408_from_its_first_read() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, ok_backend);
    let h = proxy(&net, &format!("ProxyPass / http://{BACKEND}/\n"));
    let mut c = client(&h);
    send_then_expect(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n0123456789",
        "HTTP/1.1 408 Request Timeout\r\n",
        Duration::from_millis(20_000 + 10 * 2),
    )
    .await;
}

/// A vhost's own stage holds for requests to it (the body stage is the
/// request's server's, as `r->server` in mod_reqtimeout).
#[tokio::test(start_paused = true)]
async fn a_vhosts_body_stage_holds_for_its_requests() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, ok_backend);
    let h = proxy(
        &net,
        &format!("<VirtualHost *:80>\nServerName proxy.test\nRequestReadTimeout body=3\nProxyPass / http://{BACKEND}/\n</VirtualHost>\n"),
    );
    let mut c = client(&h);
    send_then_expect(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n0123456789",
        "HTTP/1.1 408 Request Timeout\r\n",
        Duration::from_secs(3),
    )
    .await;
}

/// A backend that never answers: 502 once the worker's timeout= passes.
#[tokio::test(start_paused = true)]
async fn a_backend_that_never_answers_gives_502_after_its_timeout() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, |mut pipe| async move {
        let _ = read_head(&mut pipe).await;
        let mut rest = Vec::new();
        let _ = pipe.read_to_end(&mut rest).await;
    });
    let h = proxy(&net, &format!("ProxyPass / http://{BACKEND}/ timeout=5\n"));
    let mut c = client(&h);
    send_then_expect(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        "HTTP/1.1 502 Proxy Error\r\n",
        Duration::from_secs(5),
    )
    .await;
}

/// A pooled connection keeps its read timer for the next request: the
/// deadline follows that request, after an idle wait longer than the timeout
/// too (the timer fired while the connection waited in the pool).
#[tokio::test(start_paused = true)]
async fn a_reused_backend_connection_times_out_from_its_own_request() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, |mut pipe| async move {
        let _ = read_head(&mut pipe).await;
        pipe.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        // The next request on this connection is read and never answered.
        let second = read_head(&mut pipe).await;
        assert!(second.starts_with("GET /second "), "{second}");
        let mut rest = Vec::new();
        let _ = pipe.read_to_end(&mut rest).await;
    });
    let h = proxy(&net, &format!("ProxyPass / http://{BACKEND}/ timeout=5\n"));
    let mut c = client(&h);
    c.write_all(b"GET /first HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let mut body = [0u8; 2];
    c.read_exact(&mut body).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut c = client(&h);
    send_then_expect(
        &mut c,
        b"GET /second HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        "HTTP/1.1 502 Proxy Error\r\n",
        Duration::from_secs(5),
    )
    .await;
}

/// max= reached: a new connection waits up to acquire= for a free one, then
/// gets a 503.
#[tokio::test(start_paused = true)]
async fn acquire_bounds_the_wait_for_a_free_backend_connection() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, switching_echo);
    let h = proxy(
        &net,
        &format!("ProxyPass /ws ws://{BACKEND}/ max=1 acquire=300\n"),
    );
    let (_first, head) = tunnel(&h).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let asked = Instant::now();
    let (mut second, head) = tunnel(&h).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert_after(asked, Instant::now(), Duration::from_millis(300), "the 503");
    let _ = until_closed(&mut second).await;
}

/// A graceful stop waits for tunnels, up to GracefulShutdownTimeout.
#[tokio::test(start_paused = true)]
async fn a_graceful_stop_waits_for_tunnels_up_to_its_timeout() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, switching_echo);
    let h = proxy(
        &net,
        &format!("GracefulShutdownTimeout 5\nProxyPass /ws ws://{BACKEND}/\n"),
    );
    let (mut ending, _) = tunnel(&h).await;
    let (_staying, _) = tunnel(&h).await;
    let stopping = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ending.shutdown().await.unwrap();
        let _ = ending.read_to_end(&mut Vec::new()).await;
    });
    let left = h.shutdown(Some(Duration::from_secs(5))).await;
    assert_eq!(left, 1, "the tunnel that ended is not counted");
    assert_after(
        stopping,
        Instant::now(),
        Duration::from_secs(5),
        "the end of the grace",
    );
}

/// Timeout 1 bounds the rest of a head too (min(20 s, Timeout)).
#[tokio::test(start_paused = true)]
async fn a_short_timeout_bounds_the_rest_of_a_head() {
    let h = proxy(&Arc::new(MemoryNet::default()), "Timeout 1\n");
    let mut c = client(&h);
    c.write_all(b"GET / HTTP/1.1\r\nHost: f\r\nX-Slow: ")
        .await
        .unwrap();
    let began = Instant::now();
    let (answer, closed) = until_closed(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_after(began, closed, Duration::from_secs(1), "the 408");
}

/// The connection's one read deadline moves earlier after the first
/// request (Timeout 30, then KeepAliveTimeout 1) and later after each one
/// after it: all are served, and the close comes 1 s after the last.
#[tokio::test(start_paused = true)]
async fn the_keep_alive_deadline_follows_each_request() {
    let net = Arc::new(MemoryNet::default());
    let _tasks = backend(&net, BACKEND, ok_backend);
    let h = proxy(
        &net,
        &format!("Timeout 30\nKeepAliveTimeout 1\nProxyPass / http://{BACKEND}/\n"),
    );
    let mut c = client(&h);
    for i in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: f\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "request {i}: {head}");
        let mut body = [0u8; 2];
        c.read_exact(&mut body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let idle = Instant::now() - Duration::from_millis(400);
    let (rest, closed) = until_closed(&mut c).await;
    assert_eq!(rest, "");
    assert_after(idle, closed, Duration::from_secs(1), "the keep-alive close");
}
