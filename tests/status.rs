//! The status page (`SetHandler server-status`) and the metrics
//! (`SetHandler wsgate-metrics`) against real tunnels: real WebSocket
//! clients (tokio-tungstenite) through the wsgate binary to a real echo
//! backend, then the page's tunnel table, its `?auto` totals and the
//! metrics compared with the tunnels the test opened; the HTML page is
//! also loaded in headless Chromium and its screenshot kept under target/.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn config(backend: &Backend) -> String {
    format!(
        "ProxyPass /server-status !
ProxyPass /metrics !
ProxyPass /chat/ ws://{backend}/chat/
ProxyPass /pool/ balancer://pool/
<Proxy balancer://pool>
    BalancerMember ws://{backend}/m1
</Proxy>
<Location /server-status>
    SetHandler server-status
    Require local
</Location>
<IfModule wsgate_module>
    <Location /metrics>
        SetHandler wsgate-metrics
        Require ip 127.0.0.0/8
    </Location>
</IfModule>
"
    )
}

/// Opens a WebSocket through the proxy and checks that it echoes; returns
/// it with its client port.
async fn open(gate: &Wsgate, path: &str) -> (Ws, u16) {
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(gate.url(path)))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let port = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap().port(),
        _ => unreachable!("plain ws://"),
    };
    ws.send(Message::text("hello")).await.unwrap();
    let echo = tokio::time::timeout(T, ws.next())
        .await
        .expect("echo in time");
    assert_eq!(echo.unwrap().unwrap(), Message::text("hello"));
    (ws, port)
}

/// A GET on its own connection; the whole response.
async fn get(gate: &Wsgate, target: &str) -> String {
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_until_close(&mut s, T).await
}

/// The tunnel table's rows: (client port, vhost, route, backend, bytes in,
/// bytes out).
fn rows(page: &str) -> Vec<(u16, String, String, String, u64, u64)> {
    let re = regex::Regex::new(
        r#"<tr><td>127\.0\.0\.1:(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td class="n">[^<]*</td><td class="n">(\d+)</td><td class="n">(\d+)</td></tr>"#,
    )
    .unwrap();
    re.captures_iter(page)
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].to_string(),
                c[3].to_string(),
                c[4].to_string(),
                c[5].parse().unwrap(),
                c[6].parse().unwrap(),
            )
        })
        .collect()
}

fn field<'a>(auto: &'a str, name: &str) -> &'a str {
    auto.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {auto}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_lists_exactly_the_open_tunnels() {
    let backend = ws_echo_backend().await;
    let gate = Wsgate::start(&config(&backend));
    let mut chat = Vec::new();
    for _ in 0..3 {
        chat.push(open(&gate, "/chat/room").await);
    }
    let mut pool = Vec::new();
    for _ in 0..2 {
        pool.push(open(&gate, "/pool/x").await);
    }
    let direct = format!("ws://{backend}/chat/");
    let member = format!("ws://{backend}/m1");
    let mut expected: BTreeSet<(u16, String, String, String)> = BTreeSet::new();
    for (_, port) in &chat {
        expected.insert((*port, "proxy.test".into(), direct.clone(), direct.clone()));
    }
    for (_, port) in &pool {
        expected.insert((
            *port,
            "proxy.test".into(),
            "balancer://pool".into(),
            member.clone(),
        ));
    }

    // mod_status's machine format: the five handshakes and this request.
    let auto = get(&gate, "/server-status?auto").await;
    assert!(auto.starts_with("HTTP/1.1 200 OK\r\n"), "{auto}");
    assert!(
        auto.contains("Content-Type: text/plain; charset=ISO-8859-1\r\n"),
        "{auto}"
    );
    let body = auto.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body.lines().next(), Some("proxy.test"), "{body}");
    for name in [
        "ServerVersion",
        "ServerMPM",
        "Server Built",
        "CurrentTime",
        "RestartTime",
        "ParentServerConfigGeneration",
        "ParentServerMPMGeneration",
        "ServerUptimeSeconds",
        "Load1",
        "Load5",
        "Load15",
        "Total kBytes",
        "Total Duration",
        "CPUUser",
        "CPUSystem",
        "CPUChildrenUser",
        "CPUChildrenSystem",
        "Uptime",
        "GracefulWorkers",
        "IdleWorkers",
        "Processes",
        "Stopping",
        "ConnsAsyncWaitIO",
        "ConnsAsyncWriting",
        "ConnsAsyncKeepAlive",
        "ConnsAsyncClosing",
    ] {
        field(body, name);
    }
    assert!(field(body, "ServerVersion").starts_with("wsgate/"));
    assert_eq!(field(body, "Total Accesses"), "6", "{body}");
    // Five tunnels and the connection asking.
    assert_eq!(field(body, "BusyWorkers"), "6", "{body}");
    assert_eq!(field(body, "ConnsTotal"), "6", "{body}");
    assert_eq!(field(body, "ParentServerConfigGeneration"), "1");

    // The HTML page's table: exactly the five tunnels.
    let page = get(&gate, "/server-status").await;
    assert!(
        page.contains("Content-Type: text/html; charset=ISO-8859-1\r\n"),
        "{page}"
    );
    assert!(page.contains("<dt>5 tunnels open</dt>"), "{page}");
    let listed: BTreeSet<_> = rows(&page)
        .into_iter()
        .map(|(p, v, r, b, _, _)| (p, v, r, b))
        .collect();
    assert_eq!(listed, expected, "{page}");

    // Two end: they leave the table.
    for (mut ws, _) in pool.drain(..) {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    expected.retain(|(_, _, route, _)| route != "balancer://pool");
    let deadline = std::time::Instant::now() + T;
    loop {
        let page = get(&gate, "/server-status").await;
        let listed: BTreeSet<_> = rows(&page)
            .into_iter()
            .map(|(p, v, r, b, _, _)| (p, v, r, b))
            .collect();
        if listed == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still listed: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A quiet tunnel is set aside after a few seconds; its counts as of then
    // show (5 bytes each way: the text frame, masked from the client with
    // a 6-byte header, unmasked from the backend with a 2-byte one).
    let (first_port, ..) = (chat[0].1,);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(&gate, "/server-status").await;
        let counted = rows(&page)
            .into_iter()
            .find(|r| r.0 == first_port)
            .map(|r| (r.4, r.5));
        if counted == Some((11, 7)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bytes not noted: {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The page in a browser: the table is there; the screenshot is kept.
    if require_program("chromium", "chromium") {
        let url = gate.url("/server-status").replace("ws://", "http://");
        let want = format!("127.0.0.1:{first_port}");
        let dom = chromium_dom_until(&url, &[], &want);
        assert!(dom.is_ok(), "Chromium did not show the tunnel: {dom:?}");
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-status.png");
        let _ = std::fs::remove_file(&shot);
        let profile = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("timeout")
            .args([
                "60",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(&url)
            .output()
            .unwrap();
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "no screenshot: {status:?}");
        eprintln!("status page screenshot: {}", shot.display());
    }

    for (mut ws, _) in chat {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_refuses_who_require_refuses_and_keeps_no_table_without_it() {
    let backend = ws_echo_backend().await;
    // No server-status handler: tunnels are not entered anywhere, and the
    // metrics still count them.
    let gate = Wsgate::start(&format!(
        "ProxyPass /chat/ ws://{backend}/chat/\n<Location /server-status>\n    Require all denied\n</Location>\n"
    ));
    let (mut ws, _) = open(&gate, "/chat/").await;
    let denied = get(&gate, "/server-status").await;
    assert!(denied.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{denied}");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    backend.finish().await;
}

/// A scrape, parsed by a Prometheus text-format parser (`prometheus-parse`).
fn scrape(text: &str) -> prometheus_parse::Scrape {
    let body = text.split("\r\n\r\n").nth(1).expect("a body");
    // Every series once: a duplicate would be refused by Prometheus.
    let mut seen = BTreeSet::new();
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let series = l.rsplit_once(' ').expect("NAME VALUE").0;
        assert!(seen.insert(series.to_string()), "duplicate series {series}");
    }
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    let found = s
        .samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    match &found.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(b) => b.iter().map(|h| h.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("no summaries here"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_tunnels_and_upgrades_the_test_made() {
    let backend = ws_echo_backend().await;
    let plain = http_backend("plain").await;
    let dead = DeadPort::new();
    let conf = format!(
        "{}ProxyPass /refuses/ ws://{plain}/\nProxyPass /dead/ ws://{dead}/\n",
        config(&backend)
    );
    let gate = Wsgate::start(&conf);
    let mut chat = Vec::new();
    for _ in 0..3 {
        chat.push(open(&gate, "/chat/").await);
    }
    let mut pool = Vec::new();
    for _ in 0..2 {
        pool.push(open(&gate, "/pool/").await);
    }
    // Three upgrades that do not switch: the backend answers 200, the
    // backend is down, no route.
    for (path, status) in [("/refuses/", 200), ("/dead/", 503), ("/nowhere/", 404)] {
        let answer = raw_exchange(gate.addr, ws_request(path, "websocket").as_bytes(), T).await;
        assert_eq!(status_of(&answer), status, "{path}: {answer}");
    }
    // One chat tunnel ends.
    let (mut ws, _) = chat.pop().unwrap();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);

    let mut scrapes = 0;
    let deadline = std::time::Instant::now() + T;
    let m = loop {
        scrapes += 1;
        let text = get(&gate, "/metrics").await;
        let m = scrape(&text);
        // Counted at its end, then given up: both must be seen.
        if value(&m, "wsgate_tunnel_duration_seconds_count", &[]) == 1.0
            && value(&m, "wsgate_tunnels_open", &[]) == 4.0
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed tunnel is not counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let direct = format!("ws://{backend}/chat/");
    let member = format!("ws://{backend}/m1");
    let chat_labels = [("route", direct.as_str()), ("member", direct.as_str())];
    let pool_labels = [("route", "balancer://pool"), ("member", member.as_str())];
    assert_eq!(value(&m, "wsgate_tunnels_open", &[]), 4.0);
    assert_eq!(value(&m, "wsgate_tunnels_total", &[]), 5.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_open", &chat_labels), 2.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_total", &chat_labels), 3.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_open", &pool_labels), 2.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_total", &pool_labels), 2.0);
    // The ended tunnel: "hello" each way (11 and 7 bytes framed), then the
    // close frames (client's masked 6 bytes, the backend's 2).
    let bytes_in = [chat_labels[0], chat_labels[1], ("direction", "in")];
    let bytes_out = [chat_labels[0], chat_labels[1], ("direction", "out")];
    assert_eq!(
        value(&m, "wsgate_route_tunnel_bytes_total", &bytes_in),
        17.0
    );
    assert_eq!(
        value(&m, "wsgate_route_tunnel_bytes_total", &bytes_out),
        9.0
    );
    assert_eq!(
        value(&m, "wsgate_tunnel_bytes_total", &[("direction", "in")]),
        17.0
    );
    for (outcome, n) in [
        ("switched", 5.0),
        ("refused", 1.0),
        ("connect_error", 1.0),
        ("not_proxied", 1.0),
        ("timeout", 0.0),
    ] {
        assert_eq!(
            value(&m, "wsgate_upgrades_total", &[("outcome", outcome)]),
            n,
            "{outcome}"
        );
    }
    assert_eq!(value(&m, "wsgate_upgrade_duration_seconds_count", &[]), 5.0);
    assert_eq!(
        value(&m, "wsgate_upgrade_duration_seconds", &[]),
        5.0,
        "the +Inf bucket"
    );
    assert_eq!(
        value(&m, "wsgate_requests_total", &[]),
        8.0 + f64::from(scrapes)
    );
    assert_eq!(
        value(&m, "wsgate_connections_open", &[]),
        5.0,
        "four tunnels and the scrape"
    );
    assert_eq!(value(&m, "wsgate_reloads_total", &[]), 0.0);
    assert_eq!(value(&m, "wsgate_config_generation", &[]), 1.0);

    // A reload: counted, and the routes' counts go on (the runtime keeps
    // each worker's state by its identity).
    gate.reload(&format!("{LISTEN}\nServerName proxy.test\n{conf}"))
        .await;
    let m = scrape(&get(&gate, "/metrics").await);
    assert_eq!(value(&m, "wsgate_reloads_total", &[]), 1.0);
    assert_eq!(value(&m, "wsgate_config_generation", &[]), 2.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_total", &chat_labels), 3.0);
    assert_eq!(value(&m, "wsgate_route_tunnels_open", &pool_labels), 2.0);
    let auto = get(&gate, "/server-status?auto").await;
    assert!(
        auto.contains("\nParentServerConfigGeneration: 2\n"),
        "{auto}"
    );

    for (mut ws, _) in chat.into_iter().chain(pool) {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    backend.finish().await;
}

/// `ProxyStatus On` adds mod_proxy's table per balancer (each member's
/// scheme, host, status, route, factor, set, uses) and its `?auto` lines;
/// `ServerSignature On` signs the page; the `Server` field follows
/// `ServerTokens`. Off (the default) shows none of the balancers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_status_shows_the_balancers_and_the_page_is_signed() {
    let backend = http_backend("m").await;
    let conf = format!(
        "ServerTokens Prod\nServerSignature On\nProxyStatus On\n<Proxy balancer://app>\n    BalancerMember http://127.0.0.1:{port}/m1 route=r1\n    BalancerMember http://127.0.0.1:{port}/m2 loadfactor=2\n    ProxySet stickysession=ROUTEID\n</Proxy>\nProxyPass /app/ balancer://app/\n<Location /server-status>\n    SetHandler server-status\n</Location>\n",
        port = backend.port()
    );
    let gate = Wsgate::start(&conf);
    for _ in 0..2 {
        assert_eq!(status_of(&get(&gate, "/app/x").await), 200);
    }
    let page = get(&gate, "/server-status").await;
    assert!(page.contains("\r\nServer: wsgate\r\n"), "{page}");
    assert!(
        page.contains("<h1>Proxy LoadBalancer Status for balancer://app</h1>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>ROUTEID</td><td>0</td><td>byrequests</td>"),
        "{page}"
    );
    let member = regex::Regex::new(
        r"<td>http</td><td>127\.0\.0\.1</td><td>Init Ok </td><td>r1</td><td></td><td>1\.00</td><td>0</td><td>1</td><td>0</td>",
    )
    .unwrap();
    assert!(member.is_match(&page), "{page}");
    assert!(
        page.contains("<td></td><td></td><td>2.00</td><td>0</td><td>1</td>"),
        "{page}"
    );
    assert!(page.ends_with(
        "</table><hr />\n<address>wsgate Server at proxy.test Port 80</address>\n</body></html>\n"
    ));
    let auto = get(&gate, "/server-status?auto").await;
    assert!(
        auto.contains("\nProxyBalancer[0]Name: balancer://app\n"),
        "{auto}"
    );
    assert_eq!(
        field(&auto, "ProxyBalancer[0]Worker[1]Name"),
        format!("http://127.0.0.1:{}/m2", backend.port())
    );
    assert_eq!(field(&auto, "ProxyBalancer[0]Worker[0]Elected"), "1");

    // Off: nothing of the balancers.
    gate.reload(&format!(
        "{LISTEN}\nServerName proxy.test\n{}",
        conf.replace("ProxyStatus On", "ProxyStatus Off")
    ))
    .await;
    let page = get(&gate, "/server-status").await;
    assert!(!page.contains("Proxy LoadBalancer"), "{page}");
    assert!(!get(&gate, "/server-status?auto")
        .await
        .contains("ProxyBalancer"));
    backend.finish().await;
}
