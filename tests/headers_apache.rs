//! mod_headers, mod_setenvif and mod_env against Apache's own answers.
//!
//! Expected results in tests/header-cases/apache-2.4.71.txt were produced by
//! tests/header-cases/generate.py against the real Apache httpd 2.4.71
//! (Debian package apache2, /usr/sbin/apache2, modules from
//! /usr/lib/apache2/modules). Each case got a private Apache: its own
//! ServerRoot/PidFile/ErrorLog/runtime dir and an empty DocumentRoot,
//! ServerName proxy.test, LoadModule for mpm_event, authz_core, proxy,
//! proxy_http, proxy_wstunnel, headers, setenvif, env and rewrite (plus
//! slotmem_shm, proxy_balancer and lbmethod_byrequests for the balancer
//! cases). Apache was started with `apache2 -f FILE -DFOREGROUND`, sent one
//! raw-socket HTTP/1.1 request, then stopped by PID. Two recording backends
//! on 127.0.0.1 logged the exact request head they received and answered
//! with the response head given in the case (body "ok" when
//! Content-Length: 2; 101 answers keep the socket open). Status, the headers
//! the backend received and the headers the client received were recorded
//! as observed; only the notes were written by hand. Re-record with
//! `python3 tests/header-cases/generate.py` (as root, apache2 installed).
//!
//! Here every case runs through the real wsgate binary with the same
//! configuration, request and backends, and must give the same result,
//! except the deliberate differences listed in `DELIBERATE` with reasons.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Cases where wsgate differs from Apache on purpose: the reason, and the
/// exact difference it excuses (what the case reports); any other
/// difference, or none, fails the case.
const DELIBERATE: &[(&str, &str, &str)] = &[
    ("resp-edit-star-empty-match", "edit* with a pattern that matches the empty string crashes Apache's child (no response); wsgate edits", "status 200, Apache none; client got X-B"),
    ("resp-edit-star-anchor", "edit* with ^ crashes Apache's child (no response); wsgate edits", "status 200, Apache none; client got X-B"),
    ("fmt-ssl-var-without-mod-ssl", "%{VAR}s is a configuration error until wsgate has SSL variables; Apache prints (null)", "refused: Header: %{HTTPS}s needs SSL variables, which wsgate does not provide"),
    ("fmt-percent-i-is-idle-workers-not-header", "%{X}i (Apache's idle-worker count, not a header) is a configuration error", "refused: Header: unknown format %{X-A}i"),
    ("ctx-proxy-section", "<Proxy> is supported for balancer:// urls only", "refused: <Proxy http://BACKEND/*>: wsgate supports <Proxy> for balancer:// urls only"),
    ("early-in-location", "'early' in a <Location> is a configuration error; Apache accepts and ignores it", "refused: RequestHeader: 'early' is allowed only in the server config or a <VirtualHost>"),
    ("inj-crlf-in-request-uri-to-response", "a value with CR/LF skips the rule (the response goes out without it); Apache answers 500", "status 200, Apache 500"),
    ("inj-crlf-in-request-uri-to-request", "a value with CR/LF skips the rule; Apache forwards the raw CR LF, and its backend sees a header the client made up", r#"backend saw [("host", ["BACKEND"]), ("x-forwarded-for", ["127.0.0.1"]), ("x-forwarded-host", ["proxy.test"]), ("x-forwarded-server", ["proxy.test"])], Apache's backend [("host", ["BACKEND"]), ("x-forwarded-for", ["127.0.0.1"]), ("x-forwarded-host", ["proxy.test"]), ("x-forwarded-server", ["proxy.test"]), ("x-injected", ["yes"]), ("x-u", ["/a"])]"#),
    ("inj-edit-replacement-literal-backslash-n", "\\n in an edit replacement is a literal n; Apache makes it a line break and then answers 500", "status 200, Apache 500; client got X-B"),
];

#[derive(Default, Debug)]
struct Case {
    name: String,
    config: Vec<String>,
    backend_response: Vec<String>,
    request: String,
    headers: Vec<String>,
    status: String,
    backend: Vec<(String, String)>,
    backend_absent: Vec<String>,
    client: Vec<(String, String)>,
    client_absent: Vec<String>,
    client_present: Vec<String>,
    compared_backend: Vec<String>,
    compared_client: Vec<String>,
}

fn split_header(h: &str) -> (String, String) {
    let (n, v) = h.split_once(':').unwrap_or((h, ""));
    (n.trim().to_string(), v.trim().to_string())
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").map(|b| b.trim_start_matches("=== ")) {
        let mut lines = block.lines();
        let Some(name) = lines.next() else { continue };
        let mut c = Case {
            name: name.trim().to_string(),
            ..Case::default()
        };
        let mut section = "";
        for line in lines {
            if let Some(rest) = line
                .strip_prefix("  ")
                .filter(|_| matches!(section, "config" | "backend"))
            {
                if section == "config" {
                    c.config.push(rest.to_string());
                } else {
                    c.backend_response.push(rest.to_string());
                }
                continue;
            }
            section = "";
            if line == "config:" {
                section = "config";
            } else if line == "backend-response:" {
                section = "backend";
            } else if let Some(r) = line.strip_prefix("request: ") {
                c.request = r.to_string();
            } else if let Some(h) = line.strip_prefix("header: ") {
                c.headers.push(h.to_string());
            } else if let Some(s) = line.strip_prefix("expect-status: ") {
                c.status = s.to_string();
            } else if let Some(h) = line.strip_prefix("expect-backend-header: ") {
                c.backend.push(split_header(h));
            } else if let Some(h) = line.strip_prefix("expect-backend-absent: ") {
                c.backend_absent.push(h.trim().to_string());
            } else if let Some(h) = line.strip_prefix("expect-client-header: ") {
                c.client.push(split_header(h));
            } else if let Some(h) = line.strip_prefix("expect-client-absent: ") {
                c.client_absent.push(h.trim().to_string());
            } else if let Some(h) = line.strip_prefix("expect-client-present: ") {
                c.client_present.push(h.trim().to_string());
            } else if let Some(n) = line
                .strip_prefix("note: ")
                .and_then(|note| note.split_once("compared: "))
                .map(|(_, n)| n)
            {
                // The comparison's scope may follow other remarks in the
                // note; a case without one would compare nothing.
                let n = n.split(';').next().unwrap_or("");
                let (b, cl) = n.split_once(" client ").unwrap_or((n, ""));
                let list = |s: &str| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>()
                };
                c.compared_backend = list(
                    b.trim_start_matches("backend")
                        .trim_end_matches(';')
                        .trim_end_matches(',')
                        .trim(),
                );
                c.compared_client = list(cl);
            }
        }
        if !c.request.is_empty() {
            cases.push(c);
        }
    }
    cases
}

fn compared(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        }
        None => name.eq_ignore_ascii_case(p),
    })
}

/// Header lines of a head, without the status or request line.
fn fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(split_header)
        .collect()
}

/// Values per compared name, each name's values in order, names sorted.
fn by_name(
    list: &[(String, String)],
    patterns: &[String],
    addrs: &[(String, String)],
) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (n, v) in list.iter().filter(|(n, _)| compared(n, patterns)) {
        let mut v = v.clone();
        for (from, to) in addrs {
            v = v.replace(from, to);
        }
        match out.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(n)) {
            Some((_, vs)) => vs.push(v),
            None => out.push((n.to_ascii_lowercase(), vec![v])),
        }
    }
    out.sort();
    out
}

/// Raw bytes for a `header:` line (`\r`, `\xNN` escapes).
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'r') {
            out.push(b'\r');
            i += 2;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A recording backend, what it saw, and the response head it gives now.
type Recorder = (SocketAddr, Seen, Arc<Mutex<Vec<String>>>);

/// A backend answering with whatever response the current case gives, and
/// recording each request head.
async fn backend(current: Arc<Mutex<Vec<String>>>) -> Backend {
    raw_backend(move |_, mut stream| {
        let lines = current.lock().unwrap().clone();
        async move {
            let lines = if lines.is_empty() {
                vec![
                    "HTTP/1.1 200 OK".to_string(),
                    "Content-Length: 2".to_string(),
                ]
            } else {
                lines
            };
            let mut head = lines.join("\r\n");
            head.push_str("\r\n\r\n");
            let switching = lines[0].contains(" 101 ");
            if lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("content-length: 2"))
            {
                head.push_str("ok");
            }
            let _ = stream.write_all(head.as_bytes()).await;
            if switching {
                // A tunnel: held until wsgate closes it.
                let _ = read_until_close(&mut stream, Duration::from_secs(5)).await;
            }
        }
    })
    .await
}

async fn run_case(c: &Case, backends: &[Recorder; 2]) -> Result<(), String> {
    let (b1, b2) = (backends[0].0.to_string(), backends[1].0.to_string());
    for (_, _, current) in backends {
        *current.lock().unwrap() = c.backend_response.clone();
    }
    let config: String = c
        .config
        .iter()
        .map(|l| l.replace("BACKEND2", &b2).replace("BACKEND", &b1) + "\n")
        .collect();
    config_check(&config).map_err(|m| {
        format!(
            "refused: {}",
            m.replace(&b2, "BACKEND2").replace(&b1, "BACKEND")
        )
    })?;
    let gate = Wsgate::start(&config);
    let has = |n: &str| {
        c.headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with(&format!("{n}:")))
    };
    let mut request = format!("{} HTTP/1.1\r\n", c.request).into_bytes();
    if !has("host") {
        request.extend_from_slice(b"Host: proxy.test\r\n");
    }
    for h in &c.headers {
        request.extend_from_slice(&unescape(h));
        request.extend_from_slice(b"\r\n");
    }
    if !has("connection") {
        request.extend_from_slice(b"Connection: close\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let before: Vec<usize> = backends.iter().map(|(_, s, _)| s.all().len()).collect();
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(&request).await.unwrap();
    let answer = read_response(&mut s).await;
    let mut problems = Vec::new();
    let status = if answer.is_empty() {
        "none".to_string()
    } else {
        status_of(&answer).to_string()
    };
    if status != c.status {
        problems.push(format!("status {status}, Apache {}", c.status));
    }
    let addrs = [
        (b2.clone(), "BACKEND2".to_string()),
        (b1.clone(), "BACKEND".to_string()),
    ];
    let reached: Option<String> = backends
        .iter()
        .zip(&before)
        .find_map(|((_, seen, _), n)| seen.all().get(*n).cloned());
    let got_backend = reached.as_deref().map(fields).unwrap_or_default();
    let want_backend = by_name(&c.backend, &c.compared_backend, &[]);
    let have_backend = by_name(&got_backend, &c.compared_backend, &addrs);
    if (reached.is_some() || !c.backend.is_empty()) && want_backend != have_backend {
        problems.push(format!(
            "backend saw {have_backend:?}, Apache's backend {want_backend:?}"
        ));
    }
    for n in &c.backend_absent {
        if got_backend.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) {
            problems.push(format!("backend got {n}"));
        }
    }
    let head_end = answer.find("\r\n\r\n").unwrap_or(answer.len());
    let got_client = fields(&answer[..head_end]);
    // Whatever Apache does, and whatever a case excuses: a header a
    // client smuggled in through CR, LF or NUL never reaches the backend
    // or the client.
    let smuggled = |fields: &[(String, String)]| {
        fields
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().contains("injected"))
    };
    if smuggled(&got_backend) || smuggled(&got_client) {
        return Err(format!(
            "INJECTION: backend {got_backend:?}, client {got_client:?}"
        ));
    }
    let want_client = by_name(&c.client, &c.compared_client, &[]);
    let present: Vec<String> = c
        .client_present
        .iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let have_client: Vec<(String, Vec<String>)> = by_name(&got_client, &c.compared_client, &addrs)
        .into_iter()
        .filter(|(n, _)| !present.contains(n))
        .collect();
    if want_client != have_client {
        problems.push(format!(
            "client got {have_client:?}, Apache's client {want_client:?}"
        ));
    }
    for n in &c.client_absent {
        if got_client.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) {
            problems.push(format!("client got {n}"));
        }
    }
    for n in &c.client_present {
        if !got_client.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) {
            problems.push(format!("client lacks {n}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn header_cases_give_apaches_answers() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/header-cases/apache-2.4.71.txt"
    ))
    .unwrap();
    let cases = parse_cases(&text);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let one = Arc::new(Mutex::new(Vec::new()));
    let two = Arc::new(Mutex::new(Vec::new()));
    let first = backend(one.clone()).await;
    let second = backend(two.clone()).await;
    let backends = [
        (first.addr, first.seen.clone(), one),
        (second.addr, second.seen.clone(), two),
    ];
    let (mut passed, mut failed, mut deliberate) = (0, Vec::new(), 0);
    for c in &cases {
        match run_case(c, &backends).await {
            Ok(()) if DELIBERATE.iter().any(|(n, _, _)| *n == c.name) => {
                println!(
                    "FAILED   {}: identical to Apache now: remove it from DELIBERATE",
                    c.name
                );
                failed.push(c.name.clone());
            }
            Ok(()) => {
                passed += 1;
                println!("ok       {}", c.name);
            }
            Err(why) => match DELIBERATE.iter().find(|(n, _, _)| *n == c.name) {
                Some((_, reason, excused)) if why == *excused => {
                    deliberate += 1;
                    println!("differs  {} ({why}) — {reason}", c.name);
                }
                Some((_, _, excused)) => {
                    println!("FAILED   {}: the deliberate difference changed: {why} (excused: {excused})", c.name);
                    failed.push(c.name.clone());
                }
                None => {
                    println!("FAILED   {}: {why}", c.name);
                    failed.push(c.name.clone());
                }
            },
        }
    }
    println!("{deliberate} of the passing cases differ from Apache on purpose (listed above)");
    println!(
        "headers: {} passed, {} failed",
        passed + deliberate,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "cases that differ from Apache: {failed:?}"
    );
}
