//! Micro-benchmarks of the per-request hot path and of configuration
//! parsing, so that a regression shows in isolation: `cargo bench`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use wsgate::config::{from_str, Limits};
use wsgate::http::h1::parse_request;
use wsgate::route::{decide, normalize, select_server, Request};

/// A configuration of about a thousand lines, like a large real one.
fn big_config() -> String {
    let mut lines = vec![
        "Listen 127.0.0.1:8080".to_string(),
        "ServerName bench.test".into(),
        "RewriteEngine On".into(),
    ];
    for i in 0..200 {
        lines.push(format!(
            "ProxyPass /app{i}/ws/ ws://127.0.0.1:{}/ws/ timeout=30",
            9000 + i
        ));
        lines.push(format!(
            "ProxyPass /app{i}/ http://127.0.0.1:{}/ keepalive=On",
            9000 + i
        ));
        lines.push(format!(
            "ProxyPassReverse /app{i}/ http://127.0.0.1:{}/",
            9000 + i
        ));
    }
    for i in 0..100 {
        lines.push("RewriteCond %{HTTP:Upgrade} websocket [NC]".into());
        lines.push(format!(
            "RewriteRule ^/r{i}/(.*) ws://127.0.0.1:{}/$1 [P,L]",
            9500 + i
        ));
    }
    for i in 0..50 {
        lines.push(format!("<Location /loc{i}/>"));
        lines.push(format!("  ProxyPass http://127.0.0.1:{}/", 9700 + i));
        lines.push("</Location>".into());
    }
    lines.join("\n") + "\n"
}

fn benches(c: &mut Criterion) {
    let text = big_config();
    c.bench_function("config: parse and validate ~1,000 lines", |b| {
        b.iter(|| from_str(black_box(&text), "bench.conf").expect("valid"))
    });

    let config = from_str(&text, "bench.conf").expect("valid");
    let head = &bytes::Bytes::from_static(b"GET /app150/ws/chat?room=1 HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: bench\r\n\r\n");
    c.bench_function("request head: parse", |b| {
        b.iter(|| parse_request(black_box(head), &Limits::default()).expect("valid"))
    });
    let target = wsgate::http::Text::from("/app150/ws/%7echat/../chat?room=1");
    c.bench_function("path: normalise", |b| {
        b.iter(|| normalize(black_box(&target)).expect("valid"))
    });

    let parsed = parse_request(head, &Limits::default()).expect("valid");
    let path = normalize(&parsed.target).expect("valid");
    let local = "127.0.0.1:8080".parse().expect("literal");
    c.bench_function("route: rewrite rules, then 400 ProxyPass lines", |b| {
        b.iter(|| {
            let server = select_server(&config, local, Some("bench.test"));
            let req = Request {
                method: &parsed.method,
                target: &parsed.target,
                version: "HTTP/1.1",
                headers: &parsed.headers.fields,
                path: &path,
                remote: "127.0.0.1:40000".parse().expect("literal"),
                local,
                https: false,
                access: Default::default(),
            };
            black_box(matches!(
                decide(&config, server, &req),
                wsgate::route::Decision::Proxy(_)
            ))
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
