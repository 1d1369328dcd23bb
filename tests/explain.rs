//! `wsgate -t --explain METHOD URL [Header: value…]`: the real binary
//! explains requests against configurations with several virtual hosts,
//! rewrite rules, ws:// and http:// routes, a sticky balancer, exclusions
//! and `Require`; and, against a running wsgate with real backends, the
//! backend an explanation names is the one the same request reaches.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

/// A configuration in a temporary folder, explained.
struct Conf {
    _dir: tempfile::TempDir,
    path: PathBuf,
    text: String,
}

impl Conf {
    fn new(text: &str) -> Conf {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.conf");
        std::fs::write(&path, text).unwrap();
        Conf {
            _dir: dir,
            path,
            text: text.to_string(),
        }
    }

    /// `FILE:LINE` of the first line holding `needle`.
    fn at(&self, needle: &str) -> String {
        at(&self.path, &self.text, needle)
    }

    fn explain(&self, args: &[&str]) -> Explained {
        explain_file(&self.path, args)
    }
}

fn at(path: &Path, text: &str, needle: &str) -> String {
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line holds {needle:?}"));
    format!("{}:{}", path.display(), line + 1)
}

/// What `wsgate -t -f FILE --explain ARGS…` printed.
struct Explained {
    code: i32,
    out: String,
    err: String,
}

impl Explained {
    /// The lines starting `key: `, without the key.
    fn lines(&self, key: &str) -> Vec<&str> {
        let prefix = format!("{key}: ");
        self.out
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    /// The one line starting `key: `.
    fn line(&self, key: &str) -> &str {
        match self.lines(key).as_slice() {
            [one] => one,
            other => panic!("{key}: expected one line, got {other:?} in\n{}", self.out),
        }
    }

    fn has(&self, key: &str, text: &str) {
        assert!(
            self.lines(key).iter().any(|l| l.contains(text)),
            "no {key} line holds {text:?} in\n{}",
            self.out
        );
    }
}

fn explain_file(path: &Path, args: &[&str]) -> Explained {
    let out = Command::new(WSGATE)
        .arg("-t")
        .arg("-f")
        .arg(path)
        .arg("--explain")
        .args(args)
        .output()
        .unwrap();
    Explained {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const VHOSTS: &str = "\
Listen 127.0.0.1:8080
ServerName main.test
<VirtualHost *:8080>
    ServerName chat.example
    ServerAlias *.chat.example
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
<VirtualHost *:8080>
    ServerName api.example
    ProxyPass / http://127.0.0.1:9002/
</VirtualHost>
";

#[test]
fn the_virtual_host_is_chosen_by_servername_alias_or_as_the_first() {
    let c = Conf::new(VHOSTS);
    let e = c.explain(&["GET", "http://api.example:8080/x"]);
    assert_eq!(e.code, 0, "{}", e.err);
    let vhost = e.line("vhost");
    let second = format!("{}:8", c.path.display());
    assert!(
        vhost.starts_with(&format!("api.example (<VirtualHost> at {second})")),
        "{vhost}"
    );
    assert!(
        vhost.contains("Host \"api.example\" matches its ServerName"),
        "{vhost}"
    );
    assert_eq!(e.line("backend"), "http://127.0.0.1:9002/x");
    assert!(e.line("route").starts_with(&c.at("http://127.0.0.1:9002/")));

    let e = c.explain(&["GET", "http://room.chat.example:8080/x"]);
    assert!(
        e.line("vhost")
            .contains("matches its ServerAlias *.chat.example"),
        "{}",
        e.out
    );
    assert_eq!(e.line("backend"), "http://127.0.0.1:9001/x");

    // A bare path: Host from the header, here one no vhost names.
    let e = c.explain(&["GET", "/x", "Host: unknown.example"]);
    assert!(e
        .line("vhost")
        .starts_with("chat.example (<VirtualHost> at "));
    assert!(
        e.line("vhost")
            .contains("the first <VirtualHost> for 127.0.0.1:8080"),
        "{}",
        e.out
    );
    assert_eq!(e.line("listener"), "127.0.0.1:8080 (Listen 127.0.0.1:8080)");
}

const REWRITE: &str = "\
Listen 127.0.0.1:8080
ServerName proxy.test
ProxyPass / http://127.0.0.1:9001/
RewriteEngine on
RewriteCond %{HTTP:Upgrade} websocket [NC]
RewriteCond %{HTTP:Connection} upgrade [NC]
RewriteRule ^/live/(.*)$ ws://127.0.0.1:9003/$1 [P,L]
RewriteRule ^/gone - [G]
RewriteRule ^/old/(.*)$ /new/$1 [R=301,L]
";

#[test]
fn a_rewrite_rule_proxying_to_ws_names_its_line_its_conditions_and_the_tunnel() {
    let c = Conf::new(REWRITE);
    let e = c.explain(&["GET", "ws://proxy.test:8080/live/room?x=1"]);
    assert_eq!(e.code, 0, "{}", e.err);
    let rule = c.at("RewriteRule ^/live/");
    e.has(
        "rule",
        &format!("{rule}: RewriteRule ^/live/(.*)$ ws://127.0.0.1:9003/$1 [P,L]: applies: ws://127.0.0.1:9003/room?x=1"),
    );
    e.has(
        "cond",
        &format!(
            "{}: RewriteCond %{{HTTP:Upgrade}} websocket [NC]: tested \"websocket\": holds",
            c.at("HTTP:Upgrade")
        ),
    );
    e.has("cond", &format!("{}: ", c.at("HTTP:Connection")));
    e.has("rule", "RewriteRule ^/gone - [G]: not reached");
    assert_eq!(e.line("decision"), format!("proxy ({rule})"));
    assert_eq!(e.line("backend"), "ws://127.0.0.1:9003/room?x=1");
    assert!(
        e.line("upgrade")
            .starts_with("tunnelled: sent with Upgrade: websocket"),
        "{}",
        e.out
    );
    // Without the Upgrade the conditions fail and ProxyPass maps it.
    let without = e.line("without upgrade");
    assert!(
        without.contains(&format!("decision proxy ({})", c.at("ProxyPass /")))
            && without.contains("backend http://127.0.0.1:9001/live/room?x=1"),
        "{without}"
    );

    let e = c.explain(&["GET", "http://proxy.test:8080/old/page"]);
    e.has(
        "rule",
        "RewriteRule ^/live/(.*)$ ws://127.0.0.1:9003/$1 [P,L]: the pattern does not match",
    );
    assert_eq!(
        e.line("decision"),
        "redirect 301 Moved Permanently: http://proxy.test:8080/new/page"
    );
    let e = c.explain(&["GET", "http://proxy.test:8080/gone"]);
    assert_eq!(e.line("decision"), "410 Gone (a rewrite rule)");

    let c = Conf::new(
        "Listen 127.0.0.1:8080\nRewriteEngine on\nRewriteRule ^/a/(.*)$ /b/$1\n\
         RewriteRule ^/pt/(.*)$ /app/$1 [PT]\nProxyPass /app/ http://127.0.0.1:9001/\n",
    );
    let e = c.explain(&["GET", "/a/x"]);
    assert_eq!(
        e.line("decision"),
        "404 Not Found: rewritten to a local path, which wsgate does not map to a file (/a/x)"
    );
    let e = c.explain(&["GET", "/pt/x"]);
    assert_eq!(
        e.line("rewritten"),
        "/app/x (a [PT] rule hands it to ProxyPass)"
    );
    assert_eq!(e.line("backend"), "http://127.0.0.1:9001/x");
}

const ROUTES: &str = "\
Listen 127.0.0.1:8080
ServerName proxy.test
ProxyTimeout 30
ProxyPass /static !
ProxyPass /ws ws://127.0.0.1:9003/ws
ProxyPass /app http://127.0.0.1:9002/app upgrade=websocket timeout=7 connectiontimeout=2 retry=5
ProxyPass /plain http://127.0.0.1:9004/plain
<Location /admin>
    Require ip 10.0.0.0/8
    SetHandler server-status
</Location>
";

#[test]
fn ws_and_http_with_upgrade_websocket_tunnel_and_plain_http_does_not() {
    let c = Conf::new(ROUTES);
    let e = c.explain(&["GET", "ws://proxy.test:8080/ws/chat"]);
    assert_eq!(e.line("backend"), "ws://127.0.0.1:9003/ws/chat");
    assert_eq!(
        e.line("upgrade"),
        "tunnelled: sent with Upgrade: websocket; a 101 naming it opens a tunnel (half-closes passed on, closed after 60 s idle); any other answer is relayed as a response"
    );
    e.has(
        "worker",
        &format!(
            "({}: ProxyPass /ws ws://127.0.0.1:9003/ws)",
            c.at("ProxyPass /ws")
        ),
    );
    assert!(e
        .line("without upgrade")
        .contains("upgrade none asked: proxied as plain HTTP"));

    let e = c.explain(&[
        "GET",
        "/app/socket",
        "Host: proxy.test",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]);
    assert_eq!(e.line("backend"), "http://127.0.0.1:9002/app/socket");
    assert!(e
        .line("upgrade")
        .starts_with("tunnelled: sent with Upgrade: websocket"));
    e.has("worker", "upgrade: upgrade=websocket");

    let e = c.explain(&["GET", "ws://proxy.test:8080/plain/x"]);
    assert_eq!(
        e.line("upgrade"),
        "not tunnelled: the worker does not take \"websocket\"; the Upgrade header is dropped and the request goes as plain HTTP"
    );
    assert_eq!(e.line("timeout tunnel idle"), "not a tunnel");
}

#[test]
fn every_timeout_names_its_line_or_default() {
    let c = Conf::new(ROUTES);
    let e = c.explain(&["GET", "ws://proxy.test:8080/app/x"]);
    let worker = c.at("ProxyPass /app");
    assert_eq!(
        e.line("timeout backend"),
        format!("7 s (timeout=, {worker}): each read and write toward the backend, and the wait for its answer")
    );
    assert_eq!(
        e.line("timeout connect"),
        format!("2 s (connectiontimeout=, {worker}): connecting to the backend")
    );
    assert!(e
        .line("timeout retry")
        .starts_with(&format!("5 s (retry=, {worker})")));
    assert!(e
        .line("timeout tunnel idle")
        .starts_with("60 s (the larger of the client and backend timeouts)"));
    assert!(e.line("timeout Timeout").starts_with("60 s (default)"));
    assert!(e
        .line("timeout KeepAliveTimeout")
        .starts_with("5 s (default)"));
    assert!(e
        .line("timeout GracefulShutdownTimeout")
        .starts_with("10 s (default)"));
    assert_eq!(
        e.line("timeout RequestReadTimeout header"),
        "20 s from the first read, 500 bytes a second more, up to 40 s (default)"
    );
    assert_eq!(
        e.line("timeout RequestReadTimeout body"),
        "20 s from the first read, 500 bytes a second more, without end (default)"
    );
    assert_eq!(
        e.line("timeout RequestReadTimeout handshake"),
        "off, each read within Timeout (default)"
    );
    assert_eq!(e.line("timeout TCP keepalive client"), "off (default)");
    assert_eq!(e.line("timeout TCP_USER_TIMEOUT backend"), "off (default)");

    // ProxyTimeout when the worker sets none.
    let e = c.explain(&["GET", "http://proxy.test:8080/plain/x"]);
    assert!(
        e.line("timeout backend")
            .starts_with(&format!("30 s (ProxyTimeout, {})", c.at("ProxyTimeout"))),
        "{}",
        e.out
    );
    assert!(e
        .line("timeout connect")
        .starts_with("30 s (the backend timeout)"));
}

const LEGACY: &str = "\
Listen 127.0.0.1:8080
ServerName proxy.test
Timeout 20
GracefulShutdownTimeout 30
<IfModule wsgate_module>
    WsgateTCPKeepAlive client 60 10 5
    WsgateTCPUserTimeout backend 15
</IfModule>
ProxyWebsocketFallbackToProxyHttp Off
ProxyPass /chat ws://127.0.0.1:9003/chat
ProxyPass /chat http://127.0.0.1:9002/chat
";

#[test]
fn legacy_mode_picks_routes_by_upgrade_refuses_other_protocols_and_has_no_idle_timeout() {
    let c = Conf::new(LEGACY);
    let e = c.explain(&["GET", "ws://proxy.test:8080/chat"]);
    assert_eq!(e.line("backend"), "ws://127.0.0.1:9003/chat");
    assert!(e
        .line("upgrade")
        .contains("the first side to close closes both, no idle timeout"));
    assert_eq!(
        e.line("timeout tunnel idle"),
        format!(
            "none (ProxyWebsocketFallbackToProxyHttp Off, {}: legacy mod_proxy_wstunnel has no idle timeout)",
            c.at("ProxyWebsocketFallbackToProxyHttp")
        )
    );
    assert!(e
        .line("timeout Timeout")
        .starts_with(&format!("20 s ({})", c.at("Timeout 20"))));
    assert!(e
        .line("timeout GracefulShutdownTimeout")
        .starts_with(&format!("30 s ({})", c.at("GracefulShutdownTimeout"))));
    assert_eq!(
        e.line("timeout TCP keepalive client"),
        format!(
            "idle 60 s, then every 10 s, closed after 5 unanswered probes ({})",
            c.at("WsgateTCPKeepAlive")
        )
    );
    assert_eq!(
        e.line("timeout TCP_USER_TIMEOUT backend"),
        format!("15 s ({})", c.at("WsgateTCPUserTimeout"))
    );

    // Without Upgrade the ws:// line is passed over (S58).
    let e = c.explain(&["GET", "http://proxy.test:8080/chat"]);
    e.has(
        "route",
        &format!(
            "{}: ProxyPass /chat ws://127.0.0.1:9003/chat: passed over",
            c.at("ws://127.0.0.1:9003/chat")
        ),
    );
    assert_eq!(e.line("backend"), "http://127.0.0.1:9002/chat");

    let e = c.explain(&[
        "GET",
        "/chat",
        "Host: proxy.test",
        "Upgrade: h2c",
        "Connection: Upgrade",
    ]);
    assert!(e
        .line("upgrade")
        .starts_with("refused: 426 Upgrade Required with Upgrade: WebSocket"));
}

const STICKY: &str = "\
Listen 127.0.0.1:8080
ServerName proxy.test
<Proxy balancer://app>
    BalancerMember http://127.0.0.1:9101 route=a
    BalancerMember http://127.0.0.1:9102 route=b
    BalancerMember http://127.0.0.1:9103 route=c status=+D
    ProxySet stickysession=ROUTEID
</Proxy>
ProxyPass /app balancer://app/app
";

#[test]
fn a_sticky_balancer_follows_the_cookie_and_otherwise_lists_the_usable_members() {
    let c = Conf::new(STICKY);
    let e = c.explain(&[
        "GET",
        "http://proxy.test:8080/app/x",
        "Cookie: ROUTEID=s1.b",
    ]);
    assert!(e.line("balancer").starts_with(&format!(
        "balancer://app ({}): lbmethod=byrequests stickysession=ROUTEID",
        c.at("<Proxy")
    )));
    e.has(
        "member",
        &format!(
            "2 http://127.0.0.1:9102 ({}): route=b loadfactor=1 lbset=0: usable",
            c.at(":9102")
        ),
    );
    e.has("member", "3 http://127.0.0.1:9103");
    e.has("member", "not usable, disabled (+D)");
    assert_eq!(
        e.line("choice"),
        "sticky: route \"b\" from the cookie ROUTEID names member 2"
    );
    assert_eq!(e.line("backend"), "http://127.0.0.1:9102/app/x (member 2)");

    // The url parameter too.
    let e = c.explain(&["GET", "http://proxy.test:8080/app/x?ROUTEID=s.a"]);
    assert!(e
        .line("choice")
        .contains("route \"a\" from the url parameter ROUTEID"));

    let e = c.explain(&["GET", "http://proxy.test:8080/app/x"]);
    assert_eq!(
        e.line("choice"),
        "by load (the request carries no sticky route): the choice depends on the traffic; usable members 1, 2; a freshly started wsgate picks member 1 first"
    );
    // A route whose member is disabled is balanced instead.
    let e = c.explain(&["GET", "http://proxy.test:8080/app/x", "Cookie: ROUTEID=x.c"]);
    assert!(e
        .line("choice")
        .contains("names no usable member: balanced instead"));
}

#[test]
fn an_exclusion_and_a_require_denial_are_named_and_a_granted_client_gets_the_handler() {
    let c = Conf::new(ROUTES);
    let e = c.explain(&["GET", "http://proxy.test:8080/static/a.css"]);
    assert_eq!(
        e.line("route"),
        format!(
            "{}: ProxyPass /static !: excludes the path: not proxied",
            c.at("/static !")
        )
    );
    assert_eq!(
        e.line("decision"),
        "404 Not Found: ProxyPass ! excludes it (/static/a.css)"
    );

    let e = c.explain(&["GET", "http://proxy.test:8080/admin"]);
    e.has(
        "location",
        &format!(
            "{}: <Location /admin>: matches (has Require, SetHandler server-status)",
            c.at("<Location /admin>")
        ),
    );
    assert_eq!(
        e.line("require"),
        format!(
            "{}: Require ip 10.0.0.0/8: denied for client 192.0.2.1",
            c.at("Require ip")
        )
    );
    assert_eq!(
        e.line("decision"),
        "403 Forbidden: Require denies the client"
    );

    let out = Command::new(WSGATE)
        .args(["-t", "-f"])
        .arg(&c.path)
        .args([
            "--explain-client",
            "10.1.2.3",
            "--explain",
            "GET",
            "http://proxy.test:8080/admin",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("require: ") && text.contains(": granted for client 10.1.2.3"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "decision: handler server-status ({})",
            c.at("<Location /admin>")
        )),
        "{text}"
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message_and_a_bad_configuration_exits_1() {
    let c = Conf::new(ROUTES);
    for (args, says) in [
        (&["GET", "example.com/x"][..], "neither a url"),
        (&["GET", "/", "Host example"][..], "not a header line"),
        (&["G(T", "/"][..], "not a method"),
    ] {
        let e = c.explain(args);
        assert_eq!(e.code, 2, "{args:?}: {}", e.err);
        assert!(e.err.contains(says), "{args:?}: {}", e.err);
        assert!(e.out.is_empty());
    }
    let e = c.explain(&["GET"]);
    assert_eq!(e.code, 2, "clap refuses a missing URL: {}", e.err);
    let bad = Conf::new("Listen 127.0.0.1:8080\nProxyPass /x nowhere\n");
    let e = bad.explain(&["GET", "/x"]);
    assert_eq!(e.code, 1, "{}", e.err);
    assert!(e.err.contains("e.conf:2:"), "{}", e.err);
    // --explain needs -t.
    let out = Command::new(WSGATE)
        .arg("-f")
        .arg(&c.path)
        .args(["--explain", "GET", "/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // No Listen takes the url's port: explained, not an error.
    let e = c.explain(&["GET", "http://proxy.test:9999/"]);
    assert_eq!(e.code, 0);
    assert_eq!(e.line("listener"), "none: no Listen line takes port 9999");
}

/// The url an explanation names (`backend:` without a member note).
fn named_backend(e: &Explained) -> String {
    let line = e.line("backend");
    line.split(" (member").next().unwrap_or(line).to_string()
}

#[tokio::test]
async fn explain_names_the_backend_a_real_request_reaches() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let m1 = http_backend("m1").await;
    let m2 = http_backend("m2").await;
    let f1 = http_backend("f1").await;
    let f2 = http_backend("f2").await;
    let item = http_backend("item").await;
    let ws = ws_echo_backend().await;
    let conf = format!(
        "{LISTEN}
ServerName proxy.test
<Proxy balancer://sticky>
    BalancerMember http://{m1} route=m1
    BalancerMember http://{m2} route=m2
    ProxySet stickysession=ROUTEID
</Proxy>
<Proxy balancer://fresh>
    BalancerMember http://{f1} loadfactor=1
    BalancerMember http://{f2} loadfactor=3
</Proxy>
<VirtualHost *:*>
    ServerName a.test
    RewriteEngine on
    RewriteCond %{{HTTP:Upgrade}} websocket [NC]
    RewriteRule ^/live/(.*)$ ws://{ws}/echo/$1 [P,L]
    ProxyPassMatch ^/item/(\\d+)$ http://{item}/items/$1
    ProxyPass /sticky balancer://sticky/s
    ProxyPass /fresh balancer://fresh/f
    ProxyPass /api http://{a}/a-api
</VirtualHost>
<VirtualHost *:*>
    ServerName b.test
    ServerAlias *.b.test
    ProxyPass /api http://{b}/b-api
</VirtualHost>
"
    );
    let w = Wsgate::start_file(&conf);
    let port = w.addr.port();
    let requests: &[(&str, &[&str])] = &[
        ("/api/x?q=1", &["Host: a.test"]),
        ("/api/x", &["Host: eu.b.test"]),
        ("/api/x", &["Host: unknown.test"]),
        ("/item/42", &["Host: a.test"]),
        ("/sticky/p", &["Host: a.test", "Cookie: ROUTEID=s.m2"]),
        ("/sticky/p", &["Host: a.test", "Cookie: ROUTEID=s.m1"]),
        ("/fresh/p", &["Host: a.test"]),
    ];
    let backends = [&a, &b, &m1, &m2, &f1, &f2, &item];
    for (path, headers) in requests {
        let url = format!("http://127.0.0.1:{port}{path}");
        let mut args = vec!["GET", url.as_str()];
        args.extend_from_slice(headers);
        let e = explain_file(&w.conf, &args);
        assert_eq!(e.code, 0, "{}", e.err);
        let named = named_backend(&e);
        let before: Vec<usize> = backends.iter().map(|b| b.seen.all().len()).collect();
        let mut request = format!("GET {path} HTTP/1.1\r\n");
        for h in *headers {
            request.push_str(&format!("{h}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        let answer = raw_exchange(w.addr, request.as_bytes(), T).await;
        assert_eq!(status_of(&answer), 200, "{path} {headers:?}: {answer}");
        let reached: Vec<String> = backends
            .iter()
            .zip(&before)
            .filter(|(b, n)| b.seen.all().len() > **n)
            .map(|(b, _)| {
                let head = b.seen.last();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                format!("http://{}{target}", b.addr)
            })
            .collect();
        assert_eq!(
            reached,
            std::slice::from_ref(&named),
            "{path} {headers:?}: explain named {named}\n{}",
            e.out
        );
    }

    // A WebSocket through the [P] rule: the handshake reaches the echo
    // backend at the path explain names, and the tunnel echoes.
    let url = format!("ws://127.0.0.1:{port}/live/room");
    let e = explain_file(&w.conf, &["GET", &url, "Host: a.test"]);
    assert_eq!(named_backend(&e), format!("ws://{ws}/echo/room"));
    assert!(e.line("upgrade").starts_with("tunnelled"), "{}", e.out);
    let (mut socket, _) = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("Host", "a.test".parse().unwrap());
        tokio::time::timeout(T, tokio_tungstenite::connect_async(req))
            .await
            .expect("the handshake within 5 s")
            .expect("a 101")
    };
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        socket.send(Message::text("hi")).await.unwrap();
        let echo = tokio::time::timeout(T, socket.next()).await.unwrap();
        assert_eq!(echo.unwrap().unwrap(), Message::text("hi"));
        let _ = socket.close(None).await;
    }
    let head = ws.seen.last();
    assert!(head.starts_with("GET /echo/room"), "{head}");
    drop(w);
    for backend in [a, b, m1, m2, f1, f2, item, ws] {
        backend.finish().await;
    }
}

#[test]
fn a_tls_address_names_the_vhost_by_host_and_a_host_the_handshake_does_not_cover_gets_421() {
    let ca = pki::Ca::new();
    let (a, b) = (ca.issue("a.test"), ca.issue("b.test"));
    let c = Conf::new(&format!(
        "Listen 127.0.0.1:8443 https\n{}{}",
        pki::tls_vhost("a.test", &a, "ProxyPass / http://127.0.0.1:9001/\n"),
        pki::tls_vhost("b.test", &b, "ProxyPass / ws://127.0.0.1:9002/\n"),
    ));
    let e = c.explain(&["GET", "wss://b.test:8443/chat"]);
    assert_eq!(e.code, 0, "{}", e.err);
    assert_eq!(
        e.line("listener"),
        "127.0.0.1:8443 (Listen 127.0.0.1:8443), TLS"
    );
    assert!(e.line("vhost").starts_with("b.test (<VirtualHost> at "));
    assert_eq!(e.line("backend"), "ws://127.0.0.1:9002/chat");
    // SNI a.test (from the url), Host b.test: two certificates, so the
    // default SSLVHostSNIPolicy refuses.
    let e = c.explain(&["GET", "https://a.test:8443/", "Host: b.test:8443"]);
    assert_eq!(
        e.line("decision"),
        "421 Misdirected Request: answered before routing"
    );
    let e = c.explain(&["GET", "http://a.test:8443/"]);
    assert!(e.lines("note")[0].contains("this address speaks TLS"));
}

/// The frame tracker and WebSocket Pings of the request's settings, with
/// the line that set each (a `<Location>`'s over the server's).
#[test]
fn websocket_pings_and_the_frame_tracker_name_their_lines() {
    let c = Conf::new(
        "Listen 127.0.0.1:8080\n\
         ServerName proxy.test\n\
         ProxyPass /quiet ws://127.0.0.1:9001/quiet\n\
         ProxyPass /chat ws://127.0.0.1:9002/chat\n\
         <IfModule wsgate_module>\n\
         WsgateWebSocketFrames On\n\
         </IfModule>\n\
         <Location /chat>\n\
         <IfModule wsgate_module>\n\
         WsgateWebSocketPing 25 5\n\
         </IfModule>\n\
         </Location>\n",
    );
    let e = c.explain(&["GET", "ws://proxy.test:8080/chat/x"]);
    assert_eq!(
        e.line("timeout WebSocket ping"),
        format!(
            "a side silent for 25 s gets a Ping; closed as dead without an answer within 5 s ({})",
            c.at("WsgateWebSocketPing")
        )
    );
    assert!(
        e.line("websocket frames").starts_with("on: ")
            && e.line("websocket frames")
                .ends_with(&format!("({})", c.at("WsgateWebSocketFrames")))
    );
    let e = c.explain(&["GET", "ws://proxy.test:8080/quiet"]);
    assert_eq!(e.line("timeout WebSocket ping"), "off (default)");
}
