//! mod_rewrite against Apache's own answers.
//!
//! `tests/rewrite-cases/apache-2.4.71.txt` holds cases whose expected results
//! were produced by running the real Apache httpd 2.4.71 (Debian package
//! apache2), not written by hand: for each case `generate.py` (beside it)
//! writes a private Apache configuration (the case's lines after
//! `ServerName proxy.test` and a `Listen` on a free port, BACKEND replaced by
//! a recording backend's address), starts `apache2 -f FILE -DFOREGROUND`,
//! sends one raw HTTP/1.1 request (`Host: proxy.test` unless the case gives
//! another, `Connection: close` unless it gives its own) and records the
//! status, the Location header and the request line the backend received.
//! Re-record with `python3 tests/rewrite-cases/generate.py` (as root, with
//! apache2 installed).
//!
//! Here each case runs through the real wsgate binary with the same
//! configuration, request and recording backend, and must give the same
//! result — except for the few where wsgate deliberately differs, listed in
//! `DELIBERATE` with the reason.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

/// Cases where wsgate's answer differs from Apache's on purpose.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "unknown-variable-is-empty",
        "refused unknown variable %{NO_SUCH_VAR}",
        "an unknown variable is a configuration error, not a silent empty string",
    ),
    (
        "userinfo-injection-at-host",
        "status 403",
        "S142: user information from the request never picks the host (Apache connected to the host after '@')",
    ),
    (
        "concatenation-after-merged-slashes",
        "status 400",
        "the target's port is not a number: a bad target (400), not a failed DNS lookup (500)",
    ),
    (
        "concatenation-without-slash-bad-port",
        "status 400",
        "the target's port is not a number: a bad target (400), not a failed DNS lookup (500)",
    ),
];

struct Case {
    name: String,
    config: Vec<String>,
    request: String,
    headers: Vec<String>,
    expect: String,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").map(|b| b.trim_start_matches("=== ")) {
        let mut lines = block.lines();
        let Some(name) = lines.next() else { continue };
        let mut case = Case {
            name: name.trim().to_string(),
            config: Vec::new(),
            request: String::new(),
            headers: Vec::new(),
            expect: String::new(),
        };
        for line in lines {
            if let Some(c) = line.strip_prefix("  ") {
                case.config.push(c.to_string());
            } else if let Some(r) = line.strip_prefix("request: ") {
                case.request = r.to_string();
            } else if let Some(h) = line.strip_prefix("header: ") {
                case.headers.push(h.to_string());
            } else if let Some(e) = line.strip_prefix("expect: ") {
                case.expect = e.to_string();
            }
        }
        if !case.request.is_empty() {
            cases.push(case);
        }
    }
    cases
}

/// What a client and the recording backend observed, in the file's words.
async fn observe(case: &Case, backend: std::net::SocketAddr, seen: &Seen) -> String {
    let config: String = case
        .config
        .iter()
        .map(|l| l.replace("BACKEND", &backend.to_string()) + "\n")
        .collect();
    // A configuration wsgate refuses is an answer too.
    if let Err(message) = config_check(&config) {
        return format!("refused {message}");
    }
    let gate = Wsgate::start(&config);
    let has = |name: &str| {
        case.headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with(&format!("{name}:")))
    };
    let mut request = format!("{} HTTP/1.1\r\n", case.request);
    if !has("host") {
        request.push_str("Host: proxy.test\r\n");
    }
    for h in &case.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if !has("connection") {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    let before = seen.all().len();
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let answer = read_response(&mut s).await;
    let reached = seen.all().get(before).cloned();
    if let Some(head) = reached {
        let line = head
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches(" HTTP/1.1")
            .to_string();
        return format!("backend {line}");
    }
    let status = status_of(&answer);
    if (300..400).contains(&status) {
        let location = answer
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap_or("")
            .trim()
            .to_string();
        return format!("redirect {status} {location}");
    }
    format!("status {status}")
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrite_cases_give_apaches_answers() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rewrite-cases/apache-2.4.71.txt"
    ))
    .unwrap();
    let cases = parse_cases(&text);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let backend = raw_backend(|_, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await;
    })
    .await;
    let seen = backend.seen.clone();
    let (mut passed, mut failed, mut deliberate) = (0, Vec::new(), 0);
    for case in &cases {
        let got = observe(case, backend.addr, &seen).await;
        let excused = DELIBERATE.iter().find(|(n, _, _)| *n == case.name);
        if got == case.expect {
            assert!(
                excused.is_none(),
                "{}: identical to Apache now: remove it from DELIBERATE",
                case.name
            );
            passed += 1;
            println!("ok       {}", case.name);
        } else if let Some((_, ours, why)) = excused {
            assert_eq!(
                got, *ours,
                "{}: the deliberate difference changed",
                case.name
            );
            deliberate += 1;
            println!(
                "differs  {} (Apache: {}; wsgate: {got}; {why})",
                case.name, case.expect
            );
        } else {
            println!(
                "FAILED   {}: Apache {}, wsgate {got}",
                case.name, case.expect
            );
            failed.push(case.name.clone());
        }
    }
    println!("{deliberate} of the passing cases differ from Apache on purpose (listed above)");
    println!(
        "rewrite: {} passed, {} failed",
        passed + deliberate,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "cases that differ from Apache: {failed:?}"
    );
}
