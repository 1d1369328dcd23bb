//! HTTP/2 attacks on wsgate (issue 16), each sent frame by frame over a
//! real TLS connection (ALPN h2) to the real binary, while an honest client
//! (the `h2` crate's) on another connection must still get its answers:
//!
//! - CONTINUATION flood (CVE-2024-27316): HEADERS without END_HEADERS, then
//!   up to 64 MiB of CONTINUATION frames → GOAWAY `ENHANCE_YOUR_CALM`
//!   (`too_many_continuations`) after about 1 MiB, the connection closed.
//! - HPACK bomb: one 4 KB field put in the dynamic table, then referenced
//!   by one-byte indexed fields twelve thousand times (50 MB decoded) →
//!   GOAWAY `ENHANCE_YOUR_CALM` (`header_list_way_too_large`), nothing
//!   forwarded.
//! - SETTINGS flood (CVE-2019-9515) and PING flood (CVE-2019-9512): up to
//!   64 MiB of frames, their ACKs never read → wsgate stops reading once
//!   its ACKs back up, and closes the connection when its socket has not
//!   become writable for `Timeout`.
//! - Header limits: a field over `LimitRequestFieldSize` (a repeated name
//!   counted joined, as mod_http2 does), more fields than
//!   `LimitRequestFields` → wsgate's `431`; a header list over the HTTP/1
//!   head those allow → the h2 crate's `431`; the connection's other
//!   streams go on.
//! - Stream limit: more streams at once than `H2MaxSessionStreams` →
//!   `RST_STREAM REFUSED_STREAM` for the excess, the others answered.
//!
//! Where an attack could make wsgate hold memory, its peak resident size
//! (`VmHWM`, reset before the attack) is bounded too.

mod common;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::*;
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The longest any single wait may take.
const LIMIT: Duration = Duration::from_secs(10);

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const ENHANCE_YOUR_CALM: u32 = 0xb;
const REFUSED_STREAM: u32 = 0x7;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// One frame read back from wsgate.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's error code and debug data.
    fn goaway(&self) -> (u32, String) {
        assert_eq!(self.kind, GOAWAY, "{self:?}");
        let code = u32::from_be_bytes(self.payload[4..8].try_into().expect("4 bytes"));
        (
            code,
            String::from_utf8_lossy(&self.payload[8..]).into_owned(),
        )
    }

    fn rst_code(&self) -> u32 {
        assert_eq!(self.kind, RST_STREAM, "{self:?}");
        u32::from_be_bytes(self.payload[..4].try_into().expect("4 bytes"))
    }
}

/// A frame's bytes: the 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff,
        payload,
    })
}

/// Reads frames until one that `wanted` accepts, within `LIMIT`; the
/// frames before it are returned too.
async fn read_until<R: AsyncRead + Unpin>(
    r: &mut R,
    what: &str,
    wanted: impl Fn(&Frame) -> bool,
) -> (Frame, Vec<Frame>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let frame = match tokio::time::timeout_at(deadline, read_frame(r)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => panic!("the connection ended ({e}) before {what}; read {before:?}"),
            Err(_) => panic!("no {what} within {LIMIT:?}; read {before:?}"),
        };
        if wanted(&frame) {
            return (frame, before);
        }
        before.push(frame);
    }
}

/// Reads until wsgate closes the connection, which must come within
/// `LIMIT`; the frames read meanwhile.
async fn read_to_close<R: AsyncRead + Unpin>(r: &mut R) -> Vec<Frame> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, read_frame(r)).await {
            Ok(Ok(frame)) => frames.push(frame),
            Ok(Err(_)) => return frames,
            Err(_) => panic!("the connection stayed open {LIMIT:?}; read {frames:?}"),
        }
    }
}

// HPACK (RFC 7541), as much as the attacks need: integers, literal
// strings without Huffman coding, and the first field of an answer.

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// A literal field with a new name, not indexed (§6.2.2).
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value);
}

/// `GET https://a.test{path}`: `:method GET` and `:scheme https` from the
/// static table, `:path` and `:authority` as literals on static names.
fn request_fields(path: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0x87];
    hpack_int(&mut out, 0x00, 4, 4);
    hpack_string(&mut out, path.as_bytes());
    hpack_int(&mut out, 0x00, 4, 1);
    hpack_string(&mut out, b"a.test");
    out
}

/// The `:status` of an answer's header block, when the static table has
/// it (200, 204, 206, 304, 400, 404, 500). The client announced a dynamic
/// table of 0 bytes, so wsgate's encoder says so first and indexes
/// nothing of its own.
fn status(block: &[u8]) -> Option<u16> {
    // Dynamic table size updates (§6.3) of 0 come first.
    let first = *block.iter().find(|&&b| b != 0x20)?;
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    if first & 0x80 == 0 {
        return None;
    }
    STATIC
        .get(usize::from(first & 0x7f).checked_sub(8)?)
        .copied()
}

#[test]
fn the_status_reader_reads_static_statuses() {
    assert_eq!(status(&[0x88]), Some(200));
    assert_eq!(status(&[0x20, 0x8d]), Some(404));
    assert_eq!(status(&[0x87]), None, ":scheme https");
    let mut literal_status = vec![0x08];
    hpack_string(&mut literal_status, b"431");
    assert_eq!(status(&literal_status), None);
}

// Connections.

/// A TLS connection offering only h2, which wsgate must choose;
/// `recv_buffer` shrinks the client's socket receive buffer (a client that
/// reads slowly, or not at all, fills it at once).
async fn tls(w: &Wsgate, ca: &Ca, recv_buffer: Option<u32>) -> Tls {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let socket = TcpSocket::new_v4().expect("a socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let tcp = socket.connect(w.addr).await.expect("connect to wsgate");
    let stream = tokio::time::timeout(
        LIMIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("a.test").expect("a name"), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
}

/// An HTTP/2 connection spoken by hand: the preface, SETTINGS asking for
/// no dynamic table in wsgate's answers (so that [`status`] can read them)
/// and no push, then wsgate's SETTINGS acknowledged.
async fn raw_h2(w: &Wsgate, ca: &Ca, recv_buffer: Option<u32>) -> Tls {
    let mut conn = tls(w, ca, recv_buffer).await;
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_HEADER_TABLE_SIZE 0, SETTINGS_ENABLE_PUSH 0.
    preface.extend(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]));
    conn.write_all(&preface).await.expect("write the preface");
    read_until(&mut conn, "wsgate's SETTINGS", |f| {
        f.kind == SETTINGS && f.flags & ACK == 0
    })
    .await;
    conn.write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .expect("acknowledge wsgate's SETTINGS");
    conn
}

/// The honest client: `count` GETs on a connection of its own, each of
/// which must be answered 200 by the backend.
async fn honest_client(w: &Wsgate, ca: &Ca, count: usize) {
    let (mut client, conn) = h2::client::handshake(tls(w, ca, None).await)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    for i in 0..count {
        let request = http::Request::get(format!("https://a.test/honest/{i}"))
            .body(())
            .expect("a request");
        client = tokio::time::timeout(LIMIT, client.ready())
            .await
            .expect("ready in time")
            .expect("the honest connection open");
        let (response, _) = client.send_request(request, true).expect("send");
        let response = tokio::time::timeout(LIMIT, response)
            .await
            .expect("the honest client answered in time")
            .expect("a response");
        assert_eq!(response.status(), 200);
        assert_eq!(
            read_body(response.into_body()).await,
            format!("h1 /honest/{i} body=0").into_bytes()
        );
    }
}

async fn read_body(mut body: h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(piece) = tokio::time::timeout(LIMIT, body.data())
        .await
        .expect("the body in time")
    {
        let piece = piece.expect("a DATA frame");
        let _ = body.flow_control().release_capacity(piece.len());
        out.extend_from_slice(&piece);
    }
    out
}

/// wsgate on a TLS virtual host `a.test` offering h2, with `more`
/// directives inside it and `top` before it.
fn config(ca: &Ca, top: &str, more: &str) -> String {
    let a = ca.issue("a.test");
    format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\n{top}{}",
        tls_vhost("a.test", &a, &format!("Protocols h2 http/1.1\n{more}"))
    )
}

/// How much wsgate's resident memory grew at its peak since [`Peak::start`].
struct Peak {
    pid: u32,
    before_kib: u64,
}

impl Peak {
    /// Resets the process's peak resident size to its current one
    /// (`clear_refs` 5).
    fn start(w: &Wsgate) -> Peak {
        let pid = w.pid();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
        Peak {
            pid,
            before_kib: status_kib(pid, "VmRSS:"),
        }
    }

    fn growth_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:").saturating_sub(self.before_kib)
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

// The attacks.

/// CVE-2024-27316: a header block that never ends. The h2 crate allows a
/// block as many CONTINUATION frames as the largest header list wsgate
/// accepts needs (a quarter more for loose packing): 63 for the default
/// limits, about 1 MiB. The attacker would send 64 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_flood_loses_its_connection() {
    let ca = Ca::new();
    let backend = http_backend("h1").await;
    let w = Wsgate::start_file(&config(
        &ca,
        "",
        &format!("ProxyPass / http://{backend}/\n"),
    ));
    honest_client(&w, &ca, 1).await;
    let peak = Peak::start(&w);

    let (mut reader, mut writer) = tokio::io::split(raw_h2(&w, &ca, None).await);
    const FRAMES: usize = 4096;
    let flood = tokio::spawn(async move {
        let head = frame(HEADERS, END_STREAM, 1, &request_fields("/flood"));
        writer.write_all(&head).await.expect("the HEADERS frame");
        // Fifteen fields of 1 KB a frame, each whole, so that every frame
        // decodes on its own and nothing waits for more bytes.
        let mut fields = Vec::new();
        for _ in 0..15 {
            literal(&mut fields, "x-flood", &[b'f'; 1024]);
        }
        let continuation = frame(CONTINUATION, 0, 1, &fields);
        for sent in 0..FRAMES {
            if writer.write_all(&continuation).await.is_err() {
                return sent;
            }
        }
        FRAMES
    });
    let honest = honest_client(&w, &ca, 5);
    let ((goaway, before), ()) = tokio::join!(
        read_until(&mut reader, "GOAWAY", |f| f.kind == GOAWAY),
        honest
    );
    assert_eq!(
        goaway.goaway(),
        (ENHANCE_YOUR_CALM, "too_many_continuations".into()),
        "after {before:?}"
    );
    assert!(
        before.iter().all(|f| f.kind != HEADERS),
        "no answer to the endless block: {before:?}"
    );
    read_to_close(&mut reader).await;
    let sent = tokio::time::timeout(LIMIT, flood)
        .await
        .expect("the flood stops when its connection is closed")
        .expect("the flooding task");
    assert!(
        sent < FRAMES,
        "wsgate took all {FRAMES} CONTINUATION frames"
    );
    honest_client(&w, &ca, 1).await;
    let growth = peak.growth_kib();
    assert!(growth < 16 * 1024, "wsgate grew by {growth} KiB");
    assert!(
        backend.seen.all().iter().all(|h| h.contains("/honest/")),
        "nothing of the flood reached the backend"
    );
}

/// An HPACK bomb: a 4 KB field inserted in the dynamic table, then one
/// indexed field (a single byte, `0xbe`: the newest entry) repeated to fill
/// the 16 KB frame — 12 thousand copies, about 50 MB once decoded. The h2
/// crate stops decoding at four times the header list limit (3.3 MB) and
/// closes the connection, before any stream exists: nothing reaches the
/// backend. Four attackers one after another.
#[tokio::test(flavor = "multi_thread")]
async fn an_hpack_bomb_is_not_expanded() {
    let ca = Ca::new();
    let backend = http_backend("h1").await;
    let w = Wsgate::start_file(&config(
        &ca,
        "",
        &format!("ProxyPass / http://{backend}/\n"),
    ));
    honest_client(&w, &ca, 1).await;
    let peak = Peak::start(&w);

    let mut block = request_fields("/bomb");
    // A literal with incremental indexing (§6.2.1): 6 + 4000 + 32 bytes
    // of the 4096 the table holds.
    block.push(0x40);
    hpack_string(&mut block, b"x-bomb");
    hpack_string(&mut block, &[b'b'; 4000]);
    let references = 16384 - block.len();
    block.resize(16384, 0xbe);
    let bomb = frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
    for _ in 0..4 {
        let mut attacker = raw_h2(&w, &ca, None).await;
        attacker.write_all(&bomb).await.expect("send the bomb");
        let ((goaway, before), ()) = tokio::join!(
            read_until(&mut attacker, "GOAWAY", |f| f.kind == GOAWAY),
            honest_client(&w, &ca, 2)
        );
        assert_eq!(
            goaway.goaway(),
            (ENHANCE_YOUR_CALM, "header_list_way_too_large".into()),
            "{references} references; after {before:?}"
        );
        assert_eq!(
            u32::from_be_bytes(goaway.payload[..4].try_into().expect("4 bytes")),
            0,
            "no stream was opened"
        );
        read_to_close(&mut attacker).await;
    }
    let growth = peak.growth_kib();
    assert!(growth < 16 * 1024, "wsgate grew by {growth} KiB");
    assert!(
        backend.seen.all().iter().all(|h| h.contains("/honest/")),
        "nothing of the bombs reached the backend"
    );
}

/// Sends copies of `unit` (a frame) without reading anything back, up to
/// `total` bytes, counting in `sent` those written; the error that
/// stopped it (none if all went).
async fn flood_without_reading(
    conn: Tls,
    unit: &[u8],
    total: usize,
    sent: &AtomicUsize,
) -> Option<io::Error> {
    let chunk: Vec<u8> = unit.repeat(65536 / unit.len());
    let (_unread, mut writer) = tokio::io::split(conn);
    while sent.load(Ordering::Relaxed) < total {
        if let Err(e) = writer.write_all(&chunk).await {
            return Some(e);
        }
        sent.fetch_add(chunk.len(), Ordering::Relaxed);
    }
    None
}

/// A flood of frames each of which wsgate must acknowledge, from a client
/// that reads nothing (its receive buffer 4 KB): the h2 crate reads no
/// frame before the previous one's ACK is written, so once wsgate's
/// socket buffer is full it reads nothing more, and when the socket has
/// not become writable for `Timeout` (2 s) it closes the connection. The
/// attacker's writes then fail, well short of the 64 MiB it meant to send.
async fn flood_is_throttled_then_closed(unit: Vec<u8>) {
    let ca = Ca::new();
    let backend = http_backend("h1").await;
    let w = Wsgate::start_file(&config(
        &ca,
        "Timeout 2\nLogLevel info\n",
        &format!("ProxyPass / http://{backend}/\n"),
    ));
    honest_client(&w, &ca, 1).await;
    let peak = Peak::start(&w);
    let attacker = raw_h2(&w, &ca, Some(4096)).await;
    let started = Instant::now();
    const TOTAL: usize = 64 << 20;
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let sent = sent.clone();
        async move { flood_without_reading(attacker, &unit, TOTAL, &sent).await }
    });
    honest_client(&w, &ca, 5).await;
    let error = match tokio::time::timeout(Duration::from_secs(2) + LIMIT, flood).await {
        Ok(ended) => ended.expect("the flooding task"),
        Err(_) => panic!(
            "the flooding connection still open after Timeout and {LIMIT:?}; wsgate took {} bytes",
            sent.load(Ordering::Relaxed)
        ),
    };
    let elapsed = started.elapsed();
    let sent = sent.load(Ordering::Relaxed);
    let error = error.unwrap_or_else(|| panic!("wsgate took all {sent} bytes"));
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert!(sent < TOTAL / 2, "wsgate took {sent} bytes");
    assert!(
        elapsed >= Duration::from_secs(2),
        "closed after {elapsed:?}, before Timeout"
    );
    w.wait_log("HTTP/2 client took nothing for 2s: connection closed", 1)
        .await;
    honest_client(&w, &ca, 1).await;
    let growth = peak.growth_kib();
    assert!(growth < 16 * 1024, "wsgate grew by {growth} KiB");
}

/// CVE-2019-9515: SETTINGS frames (one setting each) without reading
/// their ACKs.
#[tokio::test(flavor = "multi_thread")]
async fn a_settings_flood_is_throttled_then_closed() {
    // SETTINGS_ENABLE_PUSH 0: changes nothing, and must still be ACKed.
    flood_is_throttled_then_closed(frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0])).await;
}

/// CVE-2019-9512: PING frames without reading their ACKs.
#[tokio::test(flavor = "multi_thread")]
async fn a_ping_flood_is_throttled_then_closed() {
    flood_is_throttled_then_closed(frame(PING, 0, 0, b"pingpong")).await;
}

/// mod_http2's request limits (its `test_200_header_invalid.py`): a field
/// is `name: value` within `LimitRequestFieldSize`, a name sent several
/// times counted as the one field it becomes (values joined by `, `); at
/// most `LimitRequestFields` fields; beyond either, `431`. A header list
/// larger than the HTTP/1 head those limits allow is refused by the h2
/// crate before it becomes a request, with a `431` too. The stream is
/// refused, not the connection.
#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_header_limits_get_431_and_the_connection_goes_on() {
    let ca = Ca::new();
    let backend = http_backend("h1").await;
    let w = Wsgate::start_file(&config(
        &ca,
        "LimitRequestFieldSize 2000\nLimitRequestFields 20\n",
        &format!("ProxyPass / http://{backend}/\n"),
    ));
    let (client, conn) = h2::client::handshake(tls(&w, &ca, None).await)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The status, and the `Server` field: wsgate's own answers carry it,
    // the h2 crate's 431 and the backend's answers do not.
    let send = |path: &str, fields: Vec<(String, String)>| {
        let mut request = http::Request::get(format!("https://a.test{path}"));
        for (name, value) in fields {
            request = request.header(name, value);
        }
        let request = request.body(()).expect("a request");
        let client = client.clone();
        async move {
            let mut client = tokio::time::timeout(LIMIT, client.ready())
                .await
                .expect("ready in time")
                .expect("the connection open");
            let (response, _) = client.send_request(request, true).expect("send");
            let response = tokio::time::timeout(LIMIT, response)
                .await
                .expect("an answer in time")
                .expect("a response");
            let server = response.headers().get("server").cloned();
            (response.status().as_u16(), server)
        }
    };
    let field = |name: &str, len: usize| (name.to_string(), "v".repeat(len));
    // The backend's answers carry no Server field: they get wsgate's, as
    // Apache adds its own; the 431s are wsgate's own answers.
    let banner = format!("wsgate/{} (Unix)", env!("CARGO_PKG_VERSION"));
    let ours = Some(http::HeaderValue::from_str(&banner).expect("a field value"));
    let ok = (200, ours.clone());
    let wsgate_431 = (431, ours);
    // "x-big: " and 1993 bytes: 2000.
    assert_eq!(send("/size/fits", vec![field("x-big", 1993)]).await, ok);
    let over = send("/size/over", vec![field("x-big", 1994)]).await;
    assert_eq!(over, wsgate_431);
    // Joined: 7 + 995 + 2 + 996 = 2000, then one more.
    let twice = |second| vec![field("x-big", 995), field("x-big", second)];
    assert_eq!(send("/joined/fits", twice(996)).await, ok);
    assert_eq!(send("/joined/over", twice(997)).await, wsgate_431);
    let many = |n: usize| (0..n).map(|i| field(&format!("x-{i}"), 1)).collect();
    assert_eq!(send("/count/fits", many(20)).await, ok);
    assert_eq!(send("/count/over", many(21)).await, wsgate_431);
    // 2000 + 2 + 21 × 2002 + 2 = 44,046 bytes at most (the h2 crate counts
    // 32 more a field): 60 fields of 1 KB.
    let huge = (0..60).map(|i| field(&format!("x-{i}"), 1000)).collect();
    assert_eq!(send("/list/over", huge).await, (431, None));
    assert_eq!(send("/after", vec![]).await, ok);
    honest_client(&w, &ca, 1).await;
    let targets: Vec<String> = backend
        .seen
        .all()
        .iter()
        .filter_map(|h| h.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        targets,
        [
            "/size/fits",
            "/joined/fits",
            "/count/fits",
            "/after",
            "/honest/0"
        ]
    );
}

/// `H2MaxSessionStreams 4`, and six requests at once to a backend that
/// holds its answers: the h2 crate refuses the fifth and sixth streams
/// (`RST_STREAM REFUSED_STREAM`, which tells the client it may retry them);
/// the four it took are answered once the backend lets go, and then a new
/// stream is taken again.
#[tokio::test(flavor = "multi_thread")]
async fn streams_beyond_h2maxsessionstreams_are_refused() {
    let ca = Ca::new();
    let backend = http_backend("h1").await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = {
        let gate = gate.clone();
        raw_backend(move |_, mut stream| {
            let gate = gate.clone();
            async move {
                let permit = gate.acquire().await.expect("the gate open");
                permit.forget();
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld";
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        })
        .await
    };
    let w = Wsgate::start_file(&config(
        &ca,
        "",
        &format!(
            "H2MaxSessionStreams 4\nProxyPass /held http://{held}/held\nProxyPass / http://{backend}/\n"
        ),
    ));
    let mut attacker = raw_h2(&w, &ca, None).await;
    let mut six = Vec::new();
    for id in [1, 3, 5, 7, 9, 11] {
        six.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_fields(&format!("/held/{id}")),
        ));
    }
    attacker.write_all(&six).await.expect("six requests");

    // Two refusals, and nothing else for any stream while the backend
    // holds the four it got.
    let mut resets = Vec::new();
    let mut others = Vec::new();
    while resets.len() < 2 {
        let (frame, before) =
            read_until(&mut attacker, "RST_STREAM", |f| f.kind == RST_STREAM).await;
        others.extend(before);
        resets.push((frame.stream, frame.rst_code()));
    }
    assert_eq!(resets, [(9, REFUSED_STREAM), (11, REFUSED_STREAM)]);
    assert!(
        others.iter().all(|f| f.stream == 0),
        "only connection frames before the answers: {others:?}"
    );
    eventually(LIMIT, "the backend holding four requests", || {
        held.seen.all().len() == 4
    })
    .await;
    honest_client(&w, &ca, 2).await;

    // The backend lets go: the four are answered; a new stream is taken.
    gate.add_permits(5);
    let mut answered = Vec::new();
    while answered.len() < 4 {
        let (headers, before) = read_until(&mut attacker, "HEADERS", |f| f.kind == HEADERS).await;
        assert!(before.iter().all(|f| f.kind != RST_STREAM), "{before:?}");
        assert_eq!(status(&headers.payload), Some(200), "{headers:?}");
        answered.push(headers.stream);
    }
    answered.sort_unstable();
    assert_eq!(answered, [1, 3, 5, 7]);
    attacker
        .write_all(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            13,
            &request_fields("/held/13"),
        ))
        .await
        .expect("a seventh request");
    let (headers, before) = read_until(&mut attacker, "an answer on stream 13", |f| {
        f.kind == HEADERS && f.stream == 13
    })
    .await;
    assert_eq!(status(&headers.payload), Some(200), "{headers:?}");
    assert!(before.iter().all(|f| f.kind != RST_STREAM), "{before:?}");
    let targets: Vec<String> = held
        .seen
        .all()
        .iter()
        .filter_map(|h| h.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(targets.len(), 5, "{targets:?}");
    assert!(
        !targets
            .iter()
            .any(|t| t.ends_with("/9") || t.ends_with("/11")),
        "refused streams reached the backend: {targets:?}"
    );
}
