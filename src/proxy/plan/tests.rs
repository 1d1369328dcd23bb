//! The request and response plans, rule by rule (each case is named for the
//! Apache behaviour or RFC rule it checks), and the invariants that keep
//! smuggling and splitting out, as properties over generated heads.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::WorkerParams;
use crate::http::h1::{parse_request, parse_response};
use crate::http::Limits;

fn req(text: &str) -> RequestHead {
    parse_request(&Bytes::copy_from_slice(text.as_bytes()), &Limits::default())
        .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

fn resp(text: &str) -> ResponseHead {
    parse_response(&Bytes::copy_from_slice(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

/// A route to `scheme://backend:9000` with `upgrade=` as given.
struct R {
    scheme: Scheme,
    policy: UpgradePolicy,
    fallback: bool,
    preserve_host: bool,
    reuse: bool,
}

impl R {
    fn to(scheme: Scheme) -> R {
        R {
            scheme,
            policy: WorkerParams::default().upgrade_policy(scheme),
            fallback: true,
            preserve_host: false,
            reuse: true,
        }
    }

    fn route(&self) -> Route<'_> {
        Route {
            scheme: self.scheme,
            authority: "backend:9000",
            host: "backend",
            policy: &self.policy,
            fallback_to_http: self.fallback,
            preserve_host: self.preserve_host,
            reuse: self.reuse,
            server_name: "proxy.test",
        }
    }
}

fn plan_of<'a>(head: &'a RequestHead, r: &'a R) -> RequestPlan<'a> {
    let framing = body::request_framing(&head.headers, 0).unwrap_or(Framing::Empty);
    RequestPlan::new(head, framing, &r.route())
}

const WS: &str = "GET /chat HTTP/1.1\r\nHost: front.test:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[test]
fn http11_without_host_is_400_and_http10_without_host_is_admitted() {
    let mut h = req("GET / HTTP/1.1\r\nX: 1\r\n\r\n");
    assert_eq!(admit(&mut h), Err(Local::BAD_REQUEST));
    let mut h = req("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(admit(&mut h), Ok(false));
}

#[test]
fn an_absolute_form_authority_replaces_host_rfc9112_3_2_2() {
    let mut h = req("GET http://Other.Test:81/x HTTP/1.1\r\nHost: front.test\r\n\r\n");
    assert_eq!(admit(&mut h), Ok(false));
    assert_eq!(h.headers.get_str("host"), Some("other.test:81"));
    let mut h = req("GET http://other.test/x HTTP/1.0\r\n\r\n");
    assert_eq!(admit(&mut h), Ok(false));
    assert_eq!(h.headers.get_str("host"), Some("other.test"));
}

#[test]
fn a_host_apache_refuses_is_400_before_anything_reads_it() {
    for bad in ["a b", "evil/x", "a@b", "%41", "a:99999"] {
        let mut h = req(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n"));
        assert_eq!(admit(&mut h), Err(Local::BAD_REQUEST), "{bad}");
    }
}

#[test]
fn content_length_with_transfer_encoding_is_answered_then_closed_rfc9112_6_1() {
    let mut h = req(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(admit(&mut h), Ok(true));
}

#[test]
fn answers_before_routing_s5_s8_s134() {
    type Case = (&'static str, Result<Option<u64>, (u16, &'static str, bool)>);
    let cases: &[Case] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(None)),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Err((500, "Internal Server Error", true)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Err((400, "Bad Request", true)),
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n",
            Err((413, "Content Too Large", true)),
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            Err((200, "OK", false)),
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
            Err((200, "OK", true)),
        ),
        (
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            Err((400, "Bad Request", true)),
        ),
        (
            "CONNECT h:1 HTTP/1.1\r\nHost: a\r\n\r\n",
            Err((405, "Method Not Allowed", true)),
        ),
        (
            "OPTIONS / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n",
            Err((200, "OK", false)),
        ),
        (
            "TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n",
            Err((200, "OK", false)),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n",
            Err((400, "Proxy Error", true)),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 5\r\n\r\n",
            Ok(Some(4)),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nMax-Forwards: x\r\n\r\n",
            Err((400, "Bad Request", true)),
        ),
    ];
    for (text, want) in cases {
        let got = before_routing(&req(text), 1000)
            .map(|(_, mf)| mf)
            .map_err(|l| (l.status, l.reason, l.close));
        assert_eq!(got, *want, "{text:?}");
    }
    let connect = before_routing(&req("CONNECT h:1 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_eq!(
        connect.unwrap_err().extra,
        Some(("Allow", "GET, HEAD, POST, OPTIONS"))
    );
}

#[test]
fn a_websocket_handshake_to_ws_upgrades_with_the_clients_spelling_and_is_not_pooled_s45() {
    let (h, r) = (req(WS), R::to(Scheme::Ws));
    let p = plan_of(&h, &r);
    assert_eq!(p.sent_upgrade(), Some("websocket"));
    assert!(!p.reusable);
    assert_eq!(p.connection(), ConnectionHeader::Upgrade("websocket"));
    assert!(!p.legacy);
}

#[test]
fn http_targets_tunnel_only_with_upgrade_param_s46() {
    let h = req(WS);
    let r = R::to(Scheme::Http);
    assert_eq!(
        plan_of(&h, &r).upgrade,
        Plan::Plain,
        "http:// without upgrade="
    );
    assert_eq!(plan_of(&h, &r).connection(), ConnectionHeader::KeepAlive);
    let r = R {
        policy: UpgradePolicy::List {
            raw: "websocket".into(),
            tokens: vec!["websocket".into()],
        },
        ..R::to(Scheme::Http)
    };
    assert_eq!(plan_of(&h, &r).sent_upgrade(), Some("websocket"));
}

#[test]
fn legacy_mode_sends_the_configured_spelling_upgrade_first_and_refuses_others_s59_s60() {
    let h = req(WS);
    let r = R {
        fallback: false,
        ..R::to(Scheme::Ws)
    };
    let p = plan_of(&h, &r);
    assert!(p.legacy);
    assert_eq!(p.connection(), ConnectionHeader::UpgradeLegacy("WebSocket"));
    let h = req(&WS.replace("websocket", "h2c"));
    assert_eq!(plan_of(&h, &r).upgrade, Plan::Refuse { offer: "WebSocket" });
}

#[test]
fn http10_requests_never_upgrade_rfc9110_7_8() {
    let h = req(&WS.replace("HTTP/1.1", "HTTP/1.0"));
    let r = R::to(Scheme::Ws);
    assert_eq!(plan_of(&h, &r).upgrade, Plan::Plain);
}

#[test]
fn reuse_needs_the_mapping_and_no_content_length_with_transfer_encoding_s22_s144() {
    let h = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = R {
        reuse: false,
        ..R::to(Scheme::Http)
    };
    assert_eq!(plan_of(&h, &r).connection(), ConnectionHeader::Close);
    let h = req(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let r = R::to(Scheme::Http);
    assert!(!plan_of(&h, &r).reusable);
}

#[test]
fn host_and_sni_follow_proxy_preserve_host_s38_s123() {
    let h = req("GET / HTTP/1.1\r\nHost: Front.Test:8443\r\n\r\n");
    let r = R::to(Scheme::Wss);
    let p = plan_of(&h, &r);
    assert_eq!(
        (p.host, p.sni.as_deref()),
        ("backend:9000", Some("backend"))
    );
    let r = R {
        preserve_host: true,
        ..R::to(Scheme::Wss)
    };
    let p = plan_of(&h, &r);
    assert_eq!(
        (p.host, p.sni.as_deref()),
        ("Front.Test:8443", Some("front.test"))
    );
    let h6 = req("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
    assert_eq!(plan_of(&h6, &r).sni.as_deref(), Some("::1"));
    assert_eq!(
        plan_of(&h, &R::to(Scheme::Ws)).sni,
        None,
        "no SNI without TLS"
    );
    let h10 = req("GET / HTTP/1.0\r\n\r\n");
    let r = R {
        preserve_host: true,
        ..R::to(Scheme::Http)
    };
    assert_eq!(plan_of(&h10, &r).host, "proxy.test", "the server name");
}

#[test]
fn bodies_read_ahead_go_with_a_content_length_s41() {
    let r = R::to(Scheme::Http);
    let chunked = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let p = plan_of(&chunked, &r);
    assert_eq!(p.body(Framing::Chunked, 5, true), BodyHeader::Length(5));
    assert_eq!(p.body(Framing::Chunked, 16384, false), BodyHeader::Chunked);
    assert_eq!(p.body(Framing::Length(9), 3, false), BodyHeader::Length(9));
    assert_eq!(p.body(Framing::Empty, 0, true), BodyHeader::None);
    assert!(p.fully_buffered(Framing::Chunked, true));
    assert!(!p.fully_buffered(Framing::Chunked, false));
    // Expect: 100-continue with a body: streamed after the backend's 100.
    let expect =
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let p = plan_of(&expect, &r);
    assert!(p.stream_body && p.expect_continue);
    assert_eq!(p.body(Framing::Length(4), 0, true), BodyHeader::Length(4));
    assert!(!p.fully_buffered(Framing::Length(4), true));
    let no_body = req("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    let p = plan_of(&no_body, &r);
    assert!(p.expect_continue && !p.stream_body);
}

#[test]
fn interim_answers_go_to_http11_clients_and_a_100_only_to_one_that_asked_s55() {
    let r = R::to(Scheme::Http);
    let plain = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let p = plan_of(&plain, &r);
    assert!(relay_interim(&plain, &p, 103));
    assert!(!relay_interim(&plain, &p, 100));
    let old = req("GET / HTTP/1.0\r\n\r\n");
    assert!(!relay_interim(&old, &plan_of(&old, &r), 103));
    let asked = req("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    assert!(relay_interim(&asked, &plan_of(&asked, &r), 100));
    let streamed =
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert!(
        !relay_interim(&streamed, &plan_of(&streamed, &r), 100),
        "the streamed body's 100 was the client's own"
    );
}

fn exchange<'a>(head: &'a RequestHead, plan: &'a RequestPlan<'a>, r: &'a R) -> Exchange<'a> {
    Exchange {
        head,
        plan,
        framing: body::request_framing(&head.headers, 0).unwrap_or(Framing::Empty),
        body_left: false,
        keepalive: true,
        policy: &r.policy,
        idle: Duration::from_secs(60),
    }
}

fn relay_of(request: &str, response: &str) -> Relay {
    let (h, r) = (req(request), R::to(Scheme::Http));
    let p = plan_of(&h, &r);
    match response_plan(&exchange(&h, &p, &r), &resp(response)) {
        Ok(ResponsePlan::Relay(relay)) => relay,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_101_naming_the_protocol_asked_for_opens_a_tunnel_s51() {
    let (h, r) = (req(WS), R::to(Scheme::Ws));
    let p = plan_of(&h, &r);
    let x = exchange(&h, &p, &r);
    let switching = resp("HTTP/1.1 101 Switching\r\nUpgrade: WebSocket\r\n\r\n");
    let got = response_plan(&x, &switching);
    assert_eq!(
        got,
        Ok(ResponsePlan::Tunnel {
            upgrade: "WebSocket",
            mode: tunnel::Mode::HalfClose(Some(Duration::from_secs(60)))
        })
    );
    let h2c = resp("HTTP/1.1 101 S\r\nUpgrade: h2c\r\n\r\n");
    let other = response_plan(&x, &h2c);
    assert_eq!(
        other,
        Err(Unusable::OtherProtocol {
            answered: Some("h2c".into())
        })
    );
    let bare = resp("HTTP/1.1 101 S\r\n\r\n");
    let none = response_plan(&x, &bare);
    assert_eq!(none, Err(Unusable::OtherProtocol { answered: None }));
    let r = R {
        fallback: false,
        ..R::to(Scheme::Ws)
    };
    let p = plan_of(&h, &r);
    let lower = resp("HTTP/1.1 101 S\r\nUpgrade: websocket\r\n\r\n");
    let legacy = response_plan(&exchange(&h, &p, &r), &lower);
    assert!(matches!(
        legacy,
        Ok(ResponsePlan::Tunnel {
            mode: tunnel::Mode::CloseBoth,
            ..
        })
    ));
}

#[test]
fn a_101_to_a_request_that_asked_for_nothing_is_refused_s51() {
    let (h, r) = (
        req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        R::to(Scheme::Http),
    );
    let p = plan_of(&h, &r);
    let switching = resp("HTTP/1.1 101 S\r\nUpgrade: websocket\r\n\r\n");
    let got = response_plan(&exchange(&h, &p, &r), &switching);
    assert_eq!(got, Err(Unusable::NotAsked));
}

#[test]
fn response_framing_toward_the_client_rfc9112_6_3() {
    const GET11: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const GET10: &str = "GET / HTTP/1.0\r\n\r\n";
    type Case = (&'static str, &'static str, BodyHeader, Encoding, bool);
    let cases: &[Case] = &[
        (
            GET11,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            BodyHeader::Length(5),
            Encoding::Length,
            false,
        ),
        (
            GET11,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyHeader::Chunked,
            Encoding::Chunked,
            false,
        ),
        (
            GET11,
            "HTTP/1.1 200 OK\r\n\r\n",
            BodyHeader::Chunked,
            Encoding::Chunked,
            false,
        ),
        (
            GET10,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyHeader::None,
            Encoding::Raw,
            true,
        ),
        (
            GET10,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            BodyHeader::Length(5),
            Encoding::Length,
            true,
        ),
        (
            GET11,
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            BodyHeader::None,
            Encoding::None,
            false,
        ),
        (
            GET11,
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            BodyHeader::None,
            Encoding::None,
            false,
        ),
        (
            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            BodyHeader::Length(5),
            Encoding::None,
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            BodyHeader::Length(0),
            Encoding::Length,
            true,
        ),
        (
            GET11,
            "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            BodyHeader::Length(0),
            Encoding::Length,
            true,
        ),
        (
            GET11,
            "HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n",
            BodyHeader::Length(0),
            Encoding::Length,
            false,
        ),
    ];
    for (request, response, client, encoding, close) in cases {
        let relay = relay_of(request, response);
        assert_eq!(
            (relay.client, relay.encoding, relay.close),
            (*client, *encoding, *close),
            "{request:?} -> {response:?}"
        );
    }
}

#[test]
fn a_malformed_content_length_is_a_502_unless_transfer_encoding_wins() {
    let (h, r) = (
        req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        R::to(Scheme::Http),
    );
    let p = plan_of(&h, &r);
    let x = exchange(&h, &p, &r);
    let bad = resp("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n");
    assert_eq!(response_plan(&x, &bad), Err(Unusable::BadContentLength));
    let te = resp("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(response_plan(&x, &te).is_ok());
}

#[test]
fn the_client_connection_closes_after_an_early_answer_or_a_bodiless_100_continue_s157() {
    let (h, r) = (
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n"),
        R::to(Scheme::Http),
    );
    let p = plan_of(&h, &r);
    let x = Exchange {
        body_left: true,
        ..exchange(&h, &p, &r)
    };
    let ok = resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let Ok(ResponsePlan::Relay(relay)) = response_plan(&x, &ok) else {
        panic!()
    };
    assert!(relay.close);
    let relay = relay_of(
        "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(relay.close);
    let (h, r) = (
        req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        R::to(Scheme::Http),
    );
    let p = plan_of(&h, &r);
    let x = Exchange {
        keepalive: false,
        ..exchange(&h, &p, &r)
    };
    let Ok(ResponsePlan::Relay(relay)) = response_plan(&x, &ok) else {
        panic!()
    };
    assert!(relay.close, "KeepAlive Off");
}

#[test]
fn the_backend_connection_is_pooled_only_after_a_well_framed_http11_answer() {
    const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (response, reusable) in [
        ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        ),
        ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", false),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        ),
    ] {
        assert_eq!(
            relay_of(GET, response).backend_reusable,
            reusable,
            "{response:?}"
        );
    }
}

#[test]
fn an_upgrade_offer_is_passed_on_only_when_the_worker_would_tunnel_it() {
    let (h, r) = (req(WS), R::to(Scheme::Ws));
    let p = plan_of(&h, &r);
    let x = exchange(&h, &p, &r);
    let offer = |u: &str| {
        let upgrade_required = resp(&format!(
            "HTTP/1.1 426 Up\r\nUpgrade: {u}\r\nContent-Length: 0\r\n\r\n"
        ));
        match response_plan(&x, &upgrade_required) {
            Ok(ResponsePlan::Relay(r)) => r.upgrade_offer,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(offer("websocket").as_deref(), Some("websocket"));
    assert_eq!(offer("h2c"), None);
}

/// Request heads made of the parts that decide framing, reuse and upgrade.
fn some_request() -> impl Strategy<Value = String> {
    let field = prop::sample::select(
        &[
            "Content-Length: 0",
            "Content-Length: 7",
            "Transfer-Encoding: chunked",
            "Connection: close",
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Upgrade: h2c",
            "Expect: 100-continue",
            "Host: front.test",
        ][..],
    );
    (
        prop::sample::select(&["GET", "HEAD", "POST", "OPTIONS"][..]),
        prop::sample::select(&["HTTP/1.1", "HTTP/1.0"][..]),
        prop::collection::vec(field, 0..5),
    )
        .prop_map(|(method, version, fields)| {
            let mut head = format!("{method} /x {version}\r\nHost: a\r\n");
            for f in fields {
                if !f.starts_with("Host") {
                    head.push_str(f);
                    head.push_str("\r\n");
                }
            }
            head.push_str("\r\n");
            head
        })
}

fn some_response() -> impl Strategy<Value = String> {
    let field = prop::sample::select(
        &[
            "Content-Length: 0",
            "Content-Length: 12",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip",
            "Connection: close",
            "Connection: keep-alive",
            "Upgrade: websocket",
        ][..],
    );
    (
        prop::sample::select(&["HTTP/1.1", "HTTP/1.0"][..]),
        prop::sample::select(&[101u16, 103, 200, 204, 304, 400, 404, 500, 503][..]),
        prop::collection::vec(field, 0..4),
    )
        .prop_map(|(version, status, fields)| {
            let mut head = format!("{version} {status} X\r\n");
            for f in fields {
                head.push_str(f);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            head
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever the heads, what goes toward the backend and the client is
    /// framed one way only, and a connection whose framing is uncertain is
    /// never reused.
    #[test]
    fn plans_never_frame_one_message_two_ways(
        request in some_request(),
        response in some_response(),
        scheme in prop::sample::select(&[Scheme::Http, Scheme::Ws][..]),
        reuse in any::<bool>(),
        keepalive in any::<bool>(),
    ) {
        let h = req(&request);
        let r = R { reuse, ..R::to(scheme) };
        let framing = match body::request_framing(&h.headers, 0) {
            Ok(f) => f,
            Err(_) => return Ok(()),
        };
        let p = RequestPlan::new(&h, framing, &r.route());
        let cl_and_te = h.headers.contains("content-length") && h.headers.contains("transfer-encoding");
        // Toward the backend.
        prop_assert!(!(p.reusable && (cl_and_te || p.sent_upgrade().is_some() || !reuse)));
        prop_assert_eq!(p.connection() == ConnectionHeader::KeepAlive, p.reusable);
        if h.version < Version::HTTP_11 {
            prop_assert_eq!(&p.upgrade, &Plan::Plain, "HTTP/1.0 never upgrades");
        }
        // Toward the client.
        let x = Exchange { keepalive, framing, ..exchange(&h, &p, &r) };
        let rh = resp(&response);
        match response_plan(&x, &rh) {
            Ok(ResponsePlan::Relay(relay)) => {
                match relay.client {
                    BodyHeader::Chunked => {
                        prop_assert_eq!(relay.encoding, Encoding::Chunked);
                        prop_assert!(h.version >= Version::HTTP_11, "no chunks to HTTP/1.0");
                    }
                    BodyHeader::Length(_) => prop_assert!(matches!(relay.encoding, Encoding::Length | Encoding::None)),
                    BodyHeader::None => prop_assert!(matches!(relay.encoding, Encoding::None | Encoding::Raw)),
                }
                if relay.encoding == Encoding::Raw {
                    prop_assert!(relay.close, "a body ended by close ends the connection");
                }
                if relay.backend_reusable {
                    prop_assert!(p.reusable);
                    prop_assert!(rh.version >= Version::HTTP_11);
                    prop_assert!(relay.backend != Framing::Close);
                    prop_assert!(!rh.headers.has_token("connection", "close"));
                    prop_assert!(!(rh.headers.contains("content-length") && rh.headers.contains("transfer-encoding")));
                }
                if !keepalive || h.version < Version::HTTP_11 {
                    prop_assert!(relay.close);
                }
            }
            Ok(ResponsePlan::Tunnel { upgrade, .. }) => {
                prop_assert_eq!(rh.status, 101);
                prop_assert!(p.sent_upgrade().is_some());
                prop_assert!(upgrade.eq_ignore_ascii_case(rh.headers.get_str("upgrade").unwrap_or("").trim()));
            }
            Err(Unusable::NotAsked) => prop_assert!(rh.status == 101 && p.sent_upgrade().is_none()),
            Err(Unusable::OtherProtocol { .. }) => prop_assert_eq!(rh.status, 101),
            Err(Unusable::BadContentLength) => prop_assert!(false, "no malformed length generated"),
        }
    }
}
