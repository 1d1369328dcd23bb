//! The benchmark's load generator. One scenario per run; prints one JSON line.
//!
//! loadgen SCENARIO --addr HOST:PORT [options]
//!   echo64 | echo16k   --conns N --inflight N --size BYTES --duration S --warmup S
//!   connect            --conns N (workers) --duration S --warmup S
//!   http               --conns N --duration S --warmup S   (keep-alive GETs)
//!   hold               --n N --hold S --concurrency N
//!   burst              --n N
//!   wss64 | wss16k | tlsconnect | https | tlshold: echo64, echo16k, connect,
//!                      http and hold with --tls (their options as those)
//! common: --path /ws  --http-path /  --pid PROXY_PID  --backend-pid PID
//!         --tls --sni NAME --ca FILE   (TLS 1.3, TLS13_AES_128_GCM_SHA256,
//!              X25519 only, no resumption; the server's certificate is
//!              verified for NAME against the CA(s) in FILE; the JSON line
//!              gets "tls": the negotiated version, suite and group)
//!         --host NAME   (the Host header; NAME:PORT of --sni under --tls,
//!              else the address)
//!         --sources K (spread client sockets over 127.0.0.1..K)
//!         --proxy NAME --run-id ID --run N   (copied into the JSON)
//! loadgen wait --addr HOST:PORT [--timeout S]     wait until it accepts
//! loadgen settle --pid PID [--timeout S]         wait until its threads and RSS are stable
//! loadgen report --results FILE [--run-id ID]     markdown tables (medians over runs)
//!
//! The client side is written so that it is not the bottleneck: frames are
//! pre-built and pre-masked (only an 8-byte timestamp is patched in), every
//! connection reuses one read and one write buffer, and all echoes parsed
//! from one read are answered with one write.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use wsgate_loadgen::hist::Hist;
use wsgate_loadgen::procstat::{self, Sample};
use wsgate_loadgen::rbuf::RBuf;
use wsgate_loadgen::stream::{Stream, Tls};
use wsgate_loadgen::ws;

// ---------------------------------------------------------------- options

#[derive(Clone)]
struct Opts {
    /// The scenario that runs (`echo64` for `wss64`, ...).
    scenario: String,
    /// The name reported (`wss64`).
    name: String,
    /// `--tls`: the client side speaks TLS.
    tls: Option<Arc<Tls>>,
    /// The Host header.
    host: String,
    addr: SocketAddr,
    path: String,
    http_path: String,
    conns: usize,
    inflight: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    n: usize,
    hold: f64,
    concurrency: usize,
    sources: u32,
    pid: Option<i32>,
    backend_pid: Option<i32>,
    timeout: f64,
    extra: BTreeMap<String, String>,
}

fn parse_args() -> (String, HashMap<String, String>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("usage: loadgen SCENARIO --addr HOST:PORT [options] (see the source's header)");
        std::process::exit(2);
    };
    let mut m = HashMap::new();
    let mut i = 1;
    while i < args.len() {
        let k = args[i].trim_start_matches("--").to_string();
        if k == "tls" {
            // The one flag without a value.
            m.insert(k, String::new());
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_default();
        m.insert(k, v);
        i += 2;
    }
    (cmd, m)
}

/// The TLS scenarios: a plain one over TLS.
fn tls_base(name: &str) -> Option<&'static str> {
    Some(match name {
        "wss64" => "echo64",
        "wss16k" => "echo16k",
        "tlsconnect" => "connect",
        "https" => "http",
        "tlshold" => "hold",
        _ => return None,
    })
}

fn opts(name: &str, m: &HashMap<String, String>) -> Opts {
    let scenario = tls_base(name).unwrap_or(name);
    let get = |k: &str, d: &str| m.get(k).cloned().unwrap_or_else(|| d.to_string());
    let num = |k: &str, d: &str| -> f64 {
        get(k, d)
            .parse()
            .unwrap_or_else(|_| panic!("--{k}: a number"))
    };
    let (conns, inflight, size) = match scenario {
        "echo64" => (100, 8, 64),
        "echo16k" => (10, 4, 16384),
        "soak" => (100, 4, 16384),
        "connect" | "http" => (50, 1, 64),
        _ => (1, 1, 64),
    };
    let mut extra = BTreeMap::new();
    for k in ["proxy", "run-id", "run", "mode"] {
        if let Some(v) = m.get(k) {
            extra.insert(k.replace('-', "_"), v.clone());
        }
    }
    let addr: SocketAddr = get("addr", "127.0.0.1:8080")
        .parse()
        .expect("--addr HOST:PORT");
    let want_tls = tls_base(name).is_some() || m.contains_key("tls");
    let sni = get("sni", "bench.test");
    let tls = want_tls.then(|| {
        let ca = m.get("ca").unwrap_or_else(|| {
            eprintln!("--tls needs --ca FILE (the CA that signed the proxy's certificate)");
            std::process::exit(2);
        });
        Arc::new(Tls::new(&sni, ca).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        }))
    });
    let host = m.get("host").cloned().unwrap_or_else(|| {
        if tls.is_some() {
            format!("{sni}:{}", addr.port())
        } else {
            addr.to_string()
        }
    });
    Opts {
        scenario: scenario.to_string(),
        name: name.to_string(),
        tls,
        host,
        addr,
        path: get("path", "/ws"),
        http_path: get("http-path", "/"),
        conns: num("conns", &conns.to_string()) as usize,
        inflight: num("inflight", &inflight.to_string()) as usize,
        size: (num("size", &size.to_string()) as usize).max(8),
        duration: num("duration", "10"),
        warmup: num("warmup", "1"),
        n: num("n", "9000") as usize,
        hold: num("hold", "10"),
        concurrency: num("concurrency", "200") as usize,
        sources: num("sources", "16") as u32,
        pid: m
            .get("pid")
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().expect("--pid")),
        backend_pid: m
            .get("backend-pid")
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().expect("--backend-pid")),
        timeout: num("timeout", "30"),
        extra,
    }
}

// ---------------------------------------------------------------- shared state

/// 0 warm-up, 1 measuring, 2 stopping.
static PHASE: AtomicU8 = AtomicU8::new(0);
static CONNECTED: AtomicUsize = AtomicUsize::new(0);
static NEXT_SRC: AtomicUsize = AtomicUsize::new(0);
static BASE: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Default)]
struct Agg {
    hist: Hist,
    hist2: Hist,
    count: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Agg {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
    fn merge(&mut self, o: Agg) {
        self.hist.merge(&o.hist);
        self.hist2.merge(&o.hist2);
        self.count += o.count;
        self.bytes += o.bytes;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// ---------------------------------------------------------------- connections

/// Connects from 127.0.0.(1 + i % sources) so that hundreds of thousands of
/// short connections (and 9,000 held ones) never run out of source ports;
/// the port itself is chosen at connect time (IP_BIND_ADDRESS_NO_PORT).
async fn tcp_connect(o: &Opts) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if o.sources > 1 && o.addr.ip().is_loopback() {
        let i = NEXT_SRC.fetch_add(1, Relaxed) as u32 % o.sources;
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(127, 0, 0, 1 + i as u8),
            0,
        )))?;
    }
    let s = sock.connect(o.addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// TCP connect, then the TLS handshake under --tls.
async fn connect(o: &Opts) -> io::Result<Stream> {
    let s = tcp_connect(o).await?;
    match &o.tls {
        None => Ok(Stream::Plain(s)),
        Some(tls) => tls.connect(s).await,
    }
}

/// Connect (and TLS) plus the WebSocket handshake; checks the 101 and the
/// accept value. Returns the stream; whatever followed the response head
/// stays in `rb`.
async fn ws_connect(o: &Opts, rb: &mut RBuf) -> io::Result<Stream> {
    let mut s = connect(o).await?;
    s.write_all(&ws::handshake_request(&o.host, &o.path))
        .await?;
    loop {
        if let Some(end) = ws::head_end(rb.avail()) {
            let head = &rb.avail()[..end];
            if !head.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&head[..head.len().min(60)])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                return Err(err(format!("handshake answered {line:?}")));
            }
            if !head
                .windows(28)
                .any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            {
                return Err(err("handshake: wrong or missing Sec-WebSocket-Accept"));
            }
            rb.consume(end);
            return Ok(s);
        }
        if rb.len() > 16384 {
            return Err(err("handshake: response head too long"));
        }
        if rb.fill(&mut s, 0).await? == 0 {
            return Err(err("handshake: connection closed"));
        }
    }
}

/// Reads one server frame into `rb` (already partly there); returns its header.
async fn read_frame(s: &mut Stream, rb: &mut RBuf) -> io::Result<ws::Header> {
    loop {
        let mut need = 0;
        if let Some(h) = ws::parse_header(rb.avail()) {
            if rb.len() >= h.total() {
                return Ok(h);
            }
            need = h.total();
        }
        if rb.fill(s, need).await? == 0 {
            return Err(err("connection closed before a frame"));
        }
    }
}

/// Sends one 64-byte message and checks its echo.
async fn echo_once(s: &mut Stream, rb: &mut RBuf, frame: &[u8], payload: &[u8]) -> io::Result<()> {
    s.write_all(frame).await?;
    let h = read_frame(s, rb).await?;
    let ok = h.opcode() == ws::OP_BINARY
        && h.mask.is_none()
        && &rb.avail()[h.hlen..h.total()] == payload;
    rb.consume(h.total());
    if ok {
        Ok(())
    } else {
        Err(err("echo: wrong frame back"))
    }
}

fn small_payload() -> Vec<u8> {
    (0..64u8).map(|i| b'a' + i % 26).collect()
}

// ---------------------------------------------------------------- echo64 / echo16k

fn stamp(buf: &mut [u8], flen: usize, hlen: usize, count: usize, t: u64) {
    let tb = t.to_le_bytes();
    for k in 0..count {
        let at = k * flen + hlen;
        for (i, b) in tb.iter().enumerate() {
            buf[at + i] = b ^ ws::MASK[i % 4];
        }
    }
}

async fn echo_conn(o: Arc<Opts>) -> Agg {
    let mut a = Agg::default();
    let mut rb = RBuf::new((o.size + 16) * o.inflight * 2 + 65536);
    let res = ws_connect(&o, &mut rb).await;
    CONNECTED.fetch_add(1, Relaxed);
    let mut s = match res {
        Ok(s) => s,
        Err(e) => {
            a.error(e);
            return a;
        }
    };
    let payload: Vec<u8> = (0..o.size).map(|i| (i % 251) as u8).collect();
    let frame = ws::client_frame(ws::OP_BINARY, &payload);
    let flen = frame.len();
    let hlen = frame.len() - o.size;
    let mut sendbuf = frame.repeat(o.inflight);
    stamp(&mut sendbuf, flen, hlen, o.inflight, now_ns());
    if let Err(e) = s.write_all(&sendbuf).await {
        a.error(e);
        return a;
    }
    loop {
        let mut need = 0;
        let mut got = 0;
        let t = now_ns();
        let measuring = PHASE.load(Relaxed) == 1;
        while let Some(h) = ws::parse_header(rb.avail()) {
            if rb.len() < h.total() {
                need = h.total();
                break;
            }
            if h.byte0 != 0x80 | ws::OP_BINARY || h.plen != o.size {
                a.error(format!(
                    "unexpected frame: byte0 {:#x}, {} bytes",
                    h.byte0, h.plen
                ));
                return a;
            }
            let p = &rb.avail()[h.hlen..h.hlen + 8];
            let sent = u64::from_le_bytes(p.try_into().unwrap());
            if measuring {
                a.hist.record(t.saturating_sub(sent));
                a.count += 1;
                a.bytes += h.plen as u64;
            }
            rb.consume(h.total());
            got += 1;
        }
        if got > 0 {
            if PHASE.load(Relaxed) == 2 {
                return a;
            }
            stamp(&mut sendbuf, flen, hlen, got, now_ns());
            if let Err(e) = s.write_all(&sendbuf[..got * flen]).await {
                a.error(e);
                return a;
            }
        }
        match rb.fill(&mut s, need).await {
            Ok(0) => {
                a.error("connection closed by the proxy");
                return a;
            }
            Ok(_) => {}
            Err(e) => {
                a.error(e);
                return a;
            }
        }
    }
}

// ---------------------------------------------------------------- connect

async fn connect_cycle(
    o: &Opts,
    rb: &mut RBuf,
    frame: &[u8],
    close: &[u8],
    payload: &[u8],
) -> io::Result<u64> {
    let t0 = Instant::now();
    let mut s = ws_connect(o, rb).await?;
    let hs = t0.elapsed().as_nanos() as u64;
    echo_once(&mut s, rb, frame, payload).await?;
    s.write_all(close).await?;
    let h = read_frame(&mut s, rb).await?;
    if h.opcode() != ws::OP_CLOSE {
        return Err(err("expected a close frame"));
    }
    rb.consume(h.total());
    // The server closes first; wait for its FIN so TIME_WAIT stays on that side.
    let mut b = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
    Ok(hs)
}

async fn connect_worker(o: Arc<Opts>) -> Agg {
    let mut a = Agg::default();
    let payload = small_payload();
    let frame = ws::client_frame(ws::OP_BINARY, &payload);
    let close = ws::client_frame(ws::OP_CLOSE, &1000u16.to_be_bytes());
    let mut rb = RBuf::new(4096);
    CONNECTED.fetch_add(1, Relaxed);
    while PHASE.load(Relaxed) != 2 {
        let t0 = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            connect_cycle(&o, &mut rb, &frame, &close, &payload),
        )
        .await;
        rb = if rb.is_empty() { rb } else { RBuf::new(4096) };
        let measuring = PHASE.load(Relaxed) == 1;
        match r {
            Ok(Ok(hs)) if measuring => {
                a.hist.record(hs);
                a.hist2.record(t0.elapsed().as_nanos() as u64);
                a.count += 1;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if measuring => a.error(e),
            Err(_) if measuring => a.error("cycle timed out (10 s)"),
            _ => {}
        }
    }
    a
}

// ---------------------------------------------------------------- http

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    for line in text.split("\r\n") {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                return v.trim().parse().ok();
            }
        }
    }
    None
}

async fn http_conn(o: Arc<Opts>) -> Agg {
    let mut a = Agg::default();
    let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", o.http_path, o.host).into_bytes();
    let mut rb = RBuf::new(16384);
    let mut s: Option<Stream> = None;
    let mut counted = false;
    while PHASE.load(Relaxed) != 2 {
        if s.is_none() {
            match connect(&o).await {
                Ok(c) => s = Some(c),
                Err(e) => {
                    a.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
            rb = RBuf::new(16384);
        }
        if !counted {
            CONNECTED.fetch_add(1, Relaxed);
            counted = true;
        }
        let c = s.as_mut().unwrap();
        let t0 = now_ns();
        let r: io::Result<()> = async {
            c.write_all(&req).await?;
            loop {
                if let Some(end) = ws::head_end(rb.avail()) {
                    let head = &rb.avail()[..end];
                    if !head.starts_with(b"HTTP/1.1 200") {
                        return Err(err(format!(
                            "answered {:?}",
                            String::from_utf8_lossy(&head[..head.len().min(40)])
                        )));
                    }
                    let cl = content_length(head)
                        .ok_or_else(|| err("response without Content-Length"))?;
                    while rb.len() < end + cl {
                        if rb.fill(c, end + cl).await? == 0 {
                            return Err(err("closed in the body"));
                        }
                    }
                    rb.consume(end + cl);
                    return Ok(());
                }
                if rb.fill(c, 0).await? == 0 {
                    return Err(err("closed before a response"));
                }
            }
        }
        .await;
        let measuring = PHASE.load(Relaxed) == 1;
        match r {
            Ok(()) if measuring => {
                a.hist.record(now_ns() - t0);
                a.count += 1;
            }
            Ok(()) => {}
            Err(e) => {
                if measuring {
                    a.error(e);
                }
                s = None; // reconnect
            }
        }
    }
    a
}

// ---------------------------------------------------------------- timed scenarios

fn sample(pid: Option<i32>) -> Option<Sample> {
    pid.and_then(procstat::sample)
}

async fn timed<F, Fut>(o: Arc<Opts>, workers: usize, f: F) -> Value
where
    F: Fn(Arc<Opts>) -> Fut,
    Fut: std::future::Future<Output = Agg> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..workers {
        set.spawn(f(o.clone()));
    }
    let t_setup = Instant::now();
    while CONNECTED.load(Relaxed) < workers
        && t_setup.elapsed() < Duration::from_secs_f64(o.timeout)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    let (p0, b0, c0) = (sample(o.pid), sample(o.backend_pid), procstat::self_cpu_s());
    let t0 = Instant::now();
    PHASE.store(1, Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(o.duration)).await;
    PHASE.store(2, Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let (p1, b1, c1) = (sample(o.pid), sample(o.backend_pid), procstat::self_cpu_s());
    let mut agg = Agg::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(a))) => agg.merge(a),
            Ok(Some(Err(e))) => agg.error(e),
            Ok(None) => break,
            Err(_) => {
                agg.error(format!("{} workers did not stop within 5 s", set.len()));
                set.abort_all();
                break;
            }
        }
    }
    let cpu = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) => json!((b.cpu_s - a.cpu_s).max(0.0)),
        _ => Value::Null,
    };
    let proxy_cpu = cpu(p0, p1);
    let rate = agg.count as f64 / window;
    let mb_s = agg.bytes as f64 / 1e6 / window;
    let per_cpu = |x: f64| match proxy_cpu.as_f64() {
        Some(c) if c > 0.0 => json!(x * window / c),
        _ => Value::Null,
    };
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let mut r = json!({
        "window_s": window,
        "setup_s": setup_s,
        "workers": workers,
        "count": agg.count,
        "rate": rate,
        "per_cpu": per_cpu(rate),
        "p50_us": us(agg.hist.quantile(0.5)),
        "p99_us": us(agg.hist.quantile(0.99)),
        "max_us": us(agg.hist.max()),
        "proxy_cpu_s": proxy_cpu,
        "proxy_cpu_util": proxy_cpu.as_f64().map(|c| c / window),
        "backend_cpu_s": cpu(b0, b1),
        "client_cpu_s": c1 - c0,
        "proxy_rss_kib": p1.map(|s| s.rss_kib),
        "proxy_threads": p1.map(|s| s.threads),
        "proxy_procs": p1.map(|s| s.procs),
        "errors": agg.errors,
        "first_error": agg.first_error,
        "ok": agg.errors == 0 && agg.count > 0,
    });
    if o.scenario == "soak" {
        // Memory must not grow with traffic: the proxy's RSS at the start
        // of the window against its RSS at the end.
        r["gib_moved"] = json!(agg.bytes as f64 / (1u64 << 30) as f64);
        r["rss_start_kib"] = json!(p0.map(|s| s.rss_kib));
        r["rss_end_kib"] = json!(p1.map(|s| s.rss_kib));
        if let (Some(a), Some(b)) = (p0, p1) {
            r["rss_growth_pct"] =
                json!((b.rss_kib as f64 - a.rss_kib as f64) * 100.0 / a.rss_kib.max(1) as f64);
        }
    }
    if o.scenario.starts_with("echo") || o.scenario == "soak" {
        r["mb_per_s"] = json!(mb_s);
        r["mb_per_cpu"] = per_cpu(mb_s);
        r["inflight"] = json!(o.inflight);
        r["size"] = json!(o.size);
    }
    if o.scenario == "connect" {
        r["cycle_p50_us"] = json!(us(agg.hist2.quantile(0.5)));
        r["cycle_p99_us"] = json!(us(agg.hist2.quantile(0.99)));
    }
    r
}

// ---------------------------------------------------------------- hold

async fn open_verified(o: Arc<Opts>) -> io::Result<Stream> {
    let payload = small_payload();
    let frame = ws::client_frame(ws::OP_BINARY, &payload);
    let mut rb = RBuf::new(512);
    let mut s = ws_connect(&o, &mut rb).await?;
    echo_once(&mut s, &mut rb, &frame, &payload).await?;
    Ok(s)
}

async fn verify(mut s: Stream) -> io::Result<Stream> {
    let payload = small_payload();
    let frame = ws::client_frame(ws::OP_BINARY, &payload);
    let mut rb = RBuf::new(512);
    echo_once(&mut s, &mut rb, &frame, &payload).await?;
    Ok(s)
}

/// Runs `f` over `items` with at most `conc` at once; keeps the order.
async fn bounded<T, R, F, Fut>(items: Vec<T>, conc: usize, timeout: f64, f: F) -> Vec<io::Result<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = io::Result<R>> + Send + 'static,
{
    let n = items.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(conc.max(1)));
    let mut set = JoinSet::new();
    for (i, it) in items.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let fut = f(it);
        set.spawn(async move {
            let r = match tokio::time::timeout(Duration::from_secs_f64(timeout), fut).await {
                Ok(r) => r,
                Err(_) => Err(err("timed out")),
            };
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<Option<io::Result<R>>> = (0..n).map(|_| None).collect();
    while let Some(j) = set.join_next().await {
        let (i, r) = j.expect("task");
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.unwrap()).collect()
}

fn first_err<R>(rs: &[io::Result<R>]) -> Option<String> {
    rs.iter()
        .find_map(|r| r.as_ref().err().map(|e| e.to_string()))
}

async fn hold(o: Arc<Opts>) -> Value {
    let n = o.n;
    let settle = Duration::from_millis(500);
    let base = sample(o.pid);
    let t0 = Instant::now();
    let half = n / 2;
    let oo = o.clone();
    let first = bounded(vec![(); half], o.concurrency, o.timeout, move |_| {
        open_verified(oo.clone())
    })
    .await;
    let mut open_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let mid = sample(o.pid);
    let oo = o.clone();
    let t1 = Instant::now();
    let second = bounded(vec![(); n - half], o.concurrency, o.timeout, move |_| {
        open_verified(oo.clone())
    })
    .await;
    open_s += t1.elapsed().as_secs_f64();
    let mut open_errors = first_err(&first).or_else(|| first_err(&second));
    let streams: Vec<Stream> = first
        .into_iter()
        .chain(second)
        .filter_map(|r| r.ok())
        .collect();
    let opened = streams.len();
    tokio::time::sleep(settle).await;
    let full = sample(o.pid);
    tokio::time::sleep(Duration::from_secs_f64(o.hold)).await;
    let held = sample(o.pid);
    let after = bounded(streams, o.concurrency, o.timeout, verify).await;
    if open_errors.is_none() {
        open_errors = first_err(&after);
    }
    let verified_after = after.iter().filter(|r| r.is_ok()).count();
    drop(after);
    let kib = |a: Option<Sample>, b: Option<Sample>, k: usize| match (a, b) {
        (Some(a), Some(b)) if k > 0 => json!((b.rss_kib as f64 - a.rss_kib as f64) / k as f64),
        _ => Value::Null,
    };
    json!({
        "n": n,
        "opened": opened,
        "verified_after": verified_after,
        "lost": n - verified_after,
        "open_s": open_s,
        "hold_s": o.hold,
        "kib_per_tunnel": kib(base, full, n),
        "kib_per_tunnel_second_half": kib(mid, full, n - half),
        "kib_per_tunnel_after_hold": kib(base, held, n),
        "rss_idle_kib": base.map(|s| s.rss_kib),
        "rss_held_kib": full.map(|s| s.rss_kib),
        "threads_idle": base.map(|s| s.threads),
        "threads": full.map(|s| s.threads),
        "fds_idle": base.map(|s| s.fds),
        "fds": full.map(|s| s.fds),
        "proxy_procs": full.map(|s| s.procs),
        "errors": n - verified_after,
        "first_error": open_errors,
        "ok": verified_after == n,
    })
}

// ---------------------------------------------------------------- burst

async fn burst(o: Arc<Opts>) -> Value {
    let n = o.n;
    let p0 = sample(o.pid);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        let o = o.clone();
        set.spawn(async move {
            let r =
                tokio::time::timeout(Duration::from_secs_f64(o.timeout), open_verified(o.clone()))
                    .await;
            let dt = t0.elapsed();
            (
                dt,
                match r {
                    Ok(r) => r,
                    Err(_) => Err(err("timed out")),
                },
            )
        });
    }
    let mut hist = Hist::new();
    let mut agg = Agg::default();
    let mut last = Duration::ZERO;
    let mut keep = Vec::with_capacity(n);
    while let Some(j) = set.join_next().await {
        match j {
            Ok((dt, Ok(s))) => {
                hist.record(dt.as_nanos() as u64);
                last = last.max(dt);
                keep.push(s);
            }
            Ok((_, Err(e))) => agg.error(e),
            Err(e) => agg.error(e),
        }
    }
    let p1 = sample(o.pid);
    let ok = keep.len();
    drop(keep);
    let ms = |ns: u64| (ns as f64 / 1e4).round() / 100.0;
    json!({
        "n": n,
        "echoing": ok,
        "errors": agg.errors,
        "first_error": agg.first_error,
        "time_all_s": last.as_secs_f64(),
        "p50_ms": ms(hist.quantile(0.5)),
        "p99_ms": ms(hist.quantile(0.99)),
        "proxy_cpu_s": match (p0, p1) { (Some(a), Some(b)) => json!(b.cpu_s - a.cpu_s), _ => Value::Null },
        "proxy_rss_kib": p1.map(|s| s.rss_kib),
        "ok": agg.errors == 0 && ok == n,
    })
}

// ---------------------------------------------------------------- wait

async fn wait(o: Arc<Opts>) -> bool {
    let t0 = Instant::now();
    loop {
        if TcpStream::connect(o.addr).await.is_ok() {
            return true;
        }
        if t0.elapsed() >= Duration::from_secs_f64(o.timeout) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the proxy's thread count and RSS are the same in three
/// samples 100 ms apart (a process that has finished starting).
async fn settle(o: Arc<Opts>) {
    let t0 = Instant::now();
    let mut last = (0, 0);
    let mut same = 0;
    while t0.elapsed() < Duration::from_secs_f64(o.timeout) {
        let Some(s) = sample(o.pid) else { return };
        let now = (s.threads, s.rss_kib / 64);
        same = if now == last { same + 1 } else { 0 };
        if same >= 2 {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- report

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 100_000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100_000.0 => format!("{:.0}k", x / 1000.0),
        Some(x) if x.abs() >= 10_000.0 => format!("{:.1}k", x / 1000.0),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

struct Col {
    title: &'static str,
    key: &'static str,
    /// Ratio columns: against which proxy ("nginx" or "direct"; "peer": the
    /// best of nginx, HAProxy and Apache, the highest figure or, for KiB,
    /// the lowest).
    ratio_to: Option<&'static str>,
    scale: f64,
}

const fn c(title: &'static str, key: &'static str) -> Col {
    Col {
        title,
        key,
        ratio_to: None,
        scale: 1.0,
    }
}
const fn r(title: &'static str, key: &'static str, to: &'static str) -> Col {
    Col {
        title,
        key,
        ratio_to: Some(to),
        scale: 1.0,
    }
}
const fn s(title: &'static str, key: &'static str, scale: f64) -> Col {
    Col {
        title,
        key,
        ratio_to: None,
        scale,
    }
}

/// The peers a "× best peer" ratio compares against.
const PEERS: [&str; 3] = ["nginx", "haproxy", "apache"];

/// A TLS scenario's table: its plain scenario's columns without "× direct"
/// (no TLS there), with "× best peer" after each "× nginx".
fn columns(scenario: &str) -> Vec<Col> {
    let Some(base) = tls_base(scenario) else {
        return columns_plain(scenario);
    };
    let mut out = Vec::new();
    for col in columns_plain(base) {
        if col.ratio_to == Some("direct") {
            continue;
        }
        let peer = (col.ratio_to == Some("nginx")).then(|| r("× best peer", col.key, "peer"));
        out.push(col);
        out.extend(peer);
    }
    out
}

fn columns_plain(scenario: &str) -> Vec<Col> {
    match scenario {
        "echo64" => vec![
            c("msgs/s", "rate"),
            r("× direct", "rate", "direct"),
            c("p50 µs", "p50_us"),
            c("p99 µs", "p99_us"),
            c("proxy CPU", "proxy_cpu_util"),
            c("msgs per proxy CPU-s", "per_cpu"),
            r("× nginx (per CPU-s)", "per_cpu", "nginx"),
            c("errors", "errors"),
        ],
        "soak" => vec![
            c("GiB moved", "gib_moved"),
            c("MB/s", "mb_per_s"),
            s("RSS at start MiB", "rss_start_kib", 1.0 / 1024.0),
            s("RSS at end MiB", "rss_end_kib", 1.0 / 1024.0),
            c("RSS growth %", "rss_growth_pct"),
            c("errors", "errors"),
        ],
        "echo16k" => vec![
            c("MB/s", "mb_per_s"),
            r("× direct", "mb_per_s", "direct"),
            c("p99 µs", "p99_us"),
            c("proxy CPU", "proxy_cpu_util"),
            c("MB per proxy CPU-s", "mb_per_cpu"),
            r("× nginx (per CPU-s)", "mb_per_cpu", "nginx"),
            c("errors", "errors"),
        ],
        "connect" => vec![
            c("handshakes/s", "rate"),
            r("× direct", "rate", "direct"),
            s("handshake p50 ms", "p50_us", 0.001),
            s("handshake p99 ms", "p99_us", 0.001),
            s("cycle p99 ms", "cycle_p99_us", 0.001),
            c("proxy CPU", "proxy_cpu_util"),
            c("handshakes per proxy CPU-s", "per_cpu"),
            r("× nginx (per CPU-s)", "per_cpu", "nginx"),
            c("errors", "errors"),
        ],
        "http" => vec![
            c("req/s", "rate"),
            r("× direct", "rate", "direct"),
            c("p50 µs", "p50_us"),
            c("p99 µs", "p99_us"),
            c("proxy CPU", "proxy_cpu_util"),
            c("req per proxy CPU-s", "per_cpu"),
            r("× nginx (per CPU-s)", "per_cpu", "nginx"),
            c("errors", "errors"),
        ],
        "hold" => vec![
            c("tunnels", "n"),
            c("lost", "lost"),
            c("KiB RSS per tunnel, just opened", "kib_per_tunnel"),
            c("KiB per tunnel, 2nd half", "kib_per_tunnel_second_half"),
            c(
                "KiB per tunnel after the idle hold",
                "kib_per_tunnel_after_hold",
            ),
            r("× nginx (after hold)", "kib_per_tunnel_after_hold", "nginx"),
            s("RSS idle MiB", "rss_idle_kib", 1.0 / 1024.0),
            s("RSS held MiB", "rss_held_kib", 1.0 / 1024.0),
            c("threads", "threads"),
            c("fds", "fds"),
            c("open s", "open_s"),
        ],
        "burst" => vec![
            c("clients", "n"),
            c("echoing", "echoing"),
            c("errors", "errors"),
            c("time to all echoing s", "time_all_s"),
            c("p50 ms", "p50_ms"),
            c("p99 ms", "p99_ms"),
            c("proxy CPU-s", "proxy_cpu_s"),
        ],
        _ => vec![c("ok", "ok")],
    }
}

fn report(m: &HashMap<String, String>) {
    let path = m
        .get("results")
        .cloned()
        .unwrap_or_else(|| "results.jsonl".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run_id = m
        .get("run-id")
        .cloned()
        .or_else(|| {
            lines
                .last()
                .and_then(|l| l["run_id"].as_str().map(String::from))
        })
        .unwrap_or_default();
    let rows: Vec<&Value> = lines
        .iter()
        .filter(|l| l["run_id"].as_str() == Some(&run_id))
        .collect();
    let mut scenarios: Vec<String> = Vec::new();
    let mut proxies: Vec<String> = Vec::new();
    for l in &rows {
        let sc = l["scenario"].as_str().unwrap_or("?").to_string();
        let px = l["proxy"].as_str().unwrap_or("?").to_string();
        if !scenarios.contains(&sc) {
            scenarios.push(sc);
        }
        if !proxies.contains(&px) {
            proxies.push(px);
        }
    }
    let runs = rows
        .iter()
        .filter_map(|l| l["run"].as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "Run `{run_id}` ({} run{} per cell, medians).\n",
        runs.max(1),
        if runs > 1 { "s" } else { "" }
    );
    for sc in &scenarios {
        let cols = columns(sc);
        let med = |px: &str, key: &str| -> Option<f64> {
            median(
                rows.iter()
                    .filter(|l| l["scenario"] == sc.as_str() && l["proxy"] == px)
                    .filter_map(|l| {
                        l.get(key)
                            .and_then(|v| v.as_f64().or(v.as_bool().map(|b| b as u8 as f64)))
                    })
                    .collect(),
            )
        };
        let desc = rows
            .iter()
            .find(|l| l["scenario"] == sc.as_str())
            .and_then(|l| l["params"].as_str())
            .unwrap_or("");
        let mut negotiated: Vec<String> = Vec::new();
        for l in rows.iter().filter(|l| l["scenario"] == sc.as_str()) {
            if let Some(t) = l["tls"].as_str() {
                let t = format!("{t}: {}", l["proxy"].as_str().unwrap_or("?"));
                if !negotiated.contains(&t) {
                    negotiated.push(t);
                }
            }
        }
        // One line when every proxy negotiated the same.
        let tls_note = {
            let kinds: std::collections::BTreeSet<&str> = negotiated
                .iter()
                .map(|t| t.split(": ").next().unwrap())
                .collect();
            match kinds.len() {
                0 => String::new(),
                1 => format!("; negotiated {}", kinds.iter().next().unwrap()),
                _ => format!("; negotiated {}", negotiated.join(", ")),
            }
        };
        println!("### {sc} ({desc}{tls_note})\n");
        print!("| proxy |");
        for col in &cols {
            print!(" {} |", col.title);
        }
        println!();
        print!("|---|");
        for _ in &cols {
            print!("---:|");
        }
        println!();
        for px in &proxies {
            if !rows
                .iter()
                .any(|l| l["scenario"] == sc.as_str() && l["proxy"] == px.as_str())
            {
                continue;
            }
            print!("| {px} |");
            for col in &cols {
                let v = med(px, col.key).map(|x| x * col.scale);
                let cell = match col.ratio_to {
                    Some("peer") => {
                        let lower_better = col.key.contains("kib");
                        // Peers whose runs failed (most of them) are left out.
                        let best = PEERS
                            .iter()
                            .filter(|p| med(p, "ok").is_some_and(|ok| ok >= 0.5))
                            .filter_map(|p| med(p, col.key).map(|x| x * col.scale))
                            .filter(|x| *x > 0.0)
                            .reduce(|a, b| if (a < b) == lower_better { a } else { b });
                        fmt_ratio(v, best)
                    }
                    Some(to) => {
                        if px == to {
                            "1.00×".to_string()
                        } else {
                            fmt_ratio(v, med(to, col.key).map(|x| x * col.scale))
                        }
                    }
                    None if col.key == "proxy_cpu_util" => v
                        .map(|x| format!("{:.0}%", x * 100.0))
                        .unwrap_or_else(|| "–".into()),
                    None => fmt_num(v),
                };
                print!(" {cell} |");
            }
            println!();
        }
        println!();
    }
}

// ---------------------------------------------------------------- main

fn params(o: &Opts) -> String {
    let p = params_plain(o);
    if o.tls.is_some() {
        format!("{p}, client side over TLS")
    } else {
        p
    }
}

fn params_plain(o: &Opts) -> String {
    match o.scenario.as_str() {
        "echo64" | "echo16k" | "soak" => format!(
            "{} connections × {} in flight × {} B, {} s",
            o.conns, o.inflight, o.size, o.duration
        ),
        "connect" => format!("{} workers, {} s", o.conns, o.duration),
        "http" => format!("{} keep-alive connections, {} s", o.conns, o.duration),
        "hold" => format!("{} idle tunnels held {} s", o.n, o.hold),
        "burst" => format!("{} clients at once", o.n),
        _ => String::new(),
    }
}

fn main() {
    let (cmd, m) = parse_args();
    if cmd == "report" {
        report(&m);
        return;
    }
    if cmd == "-h" || cmd == "--help" {
        println!(
            "{}",
            include_str!("loadgen.rs")
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//! ").trim_start_matches("//!"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }
    let o = Arc::new(opts(&cmd, &m));
    BASE.get_or_init(Instant::now);
    let threads: usize = m.get("threads").and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = wsgate_loadgen::runtime(threads).expect("runtime");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let result = rt.block_on(async {
        match o.scenario.as_str() {
            "settle" => {
                settle(o.clone()).await;
                std::process::exit(0);
            }
            "wait" => {
                let ok = wait(o.clone()).await;
                std::process::exit(if ok { 0 } else { 1 });
            }
            "echo64" | "echo16k" | "soak" => timed(o.clone(), o.conns, echo_conn).await,
            "connect" => timed(o.clone(), o.conns, connect_worker).await,
            "http" => timed(o.clone(), o.conns, http_conn).await,
            "hold" => hold(o.clone()).await,
            "burst" => burst(o.clone()).await,
            other => {
                eprintln!("unknown scenario {other}");
                std::process::exit(2);
            }
        }
    });
    let mut line = json!({
        "scenario": o.name,
        "params": params(&o),
        "time": started,
    });
    for (k, v) in &o.extra {
        line[k] = json!(v);
    }
    if let (Value::Object(l), Value::Object(r)) = (&mut line, result) {
        l.extend(r);
    }
    if let Some(tls) = &o.tls {
        // What was negotiated, and that every handshake was a full one with
        // the same version, suite and group: otherwise the run is not ok.
        let st = tls.stats();
        line["tls"] = json!(st.negotiated);
        line["tls_full_handshakes"] = json!(st.full);
        line["tls_hello_retry"] = json!(st.hello_retry);
        line["tls_resumed"] = json!(st.resumed);
        line["tls_mismatched"] = json!(st.mismatched);
        let expected = "TLSv1_3 TLS13_AES_128_GCM_SHA256 X25519";
        let bad = if st.full == 0 && st.hello_retry == 0 && st.resumed == 0 {
            None // no handshake completed: the scenario's own errors say why
        } else if st.negotiated.as_deref() != Some(expected) || st.mismatched > 0 {
            Some(format!(
                "negotiated {:?}, expected {expected}",
                st.negotiated
            ))
        } else if st.resumed > 0 || st.hello_retry > 0 {
            Some(format!(
                "{} resumed and {} hello-retry handshakes (expected only full ones)",
                st.resumed, st.hello_retry
            ))
        } else {
            None
        };
        if let Some(b) = bad {
            line["ok"] = json!(false);
            if line["first_error"].is_null() {
                line["first_error"] = json!(b);
            }
        }
    }
    println!("{line}");
    // Do not wait for the runtime to drop thousands of sockets one by one.
    std::process::exit(0);
}
