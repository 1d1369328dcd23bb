//! Arbitrary rewrite rules, conditions and request targets: configuration
//! errors are fine, panics are not, and no rule may put a space or control
//! character into a backend request line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::http::{FieldValue, Text};
use wsgate::route::{decide, normalize, Decision, Request};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // First line: the request target; the rest: configuration lines.
    let (target, rules) = text.split_once('\n').unwrap_or((&text, ""));
    let config = format!("Listen 127.0.0.1:80\nServerName proxy.test\nProxyPass /pp/ http://pp/\nRewriteEngine On\n{rules}\n");
    let Ok(config) = wsgate::config::from_str(&config, "fuzz.conf") else {
        return;
    };
    let Ok(path) = normalize(&target.into()) else {
        return;
    };
    let headers = vec![
        (Text::from("Host"), FieldValue::from_static(b"proxy.test")),
        (Text::from("Upgrade"), FieldValue::from_static(b"websocket")),
    ];
    let req = Request {
        method: "GET",
        target,
        version: "HTTP/1.1",
        headers: &headers,
        path: &path,
        remote: "127.0.0.1:1".parse().expect("a literal address"),
        local: "127.0.0.1:80".parse().expect("a literal address"),
        https: false,
        access: Default::default(),
    };
    if let Decision::Proxy(m) = decide(&config, &config.main, &req) {
        assert!(
            !m.path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f),
            "unsafe backend target {:?}",
            m.path_and_query
        );
    }
});
