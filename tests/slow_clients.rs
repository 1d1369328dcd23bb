//! mod_reqtimeout against many slow clients (issue 18; the 2,000-client
//! version with latency figures is issue 19's, in bench/): 250 clients
//! that drip a head and 250 that drip a body hold connections while
//! others come and go; every normal request is still served, and every
//! slow client is cut off with Apache's answer. Completion is asserted,
//! never time: each wait has only a deadline against a hang.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_backend, read_response, status_of, Watched, Wsgate};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SLOW_HEADS: usize = 250;
const SLOW_BODIES: usize = 250;
const NORMAL: usize = 200;

/// Opens a connection, sends `start`, then a byte every 300 ms until the
/// server closes; returns what it answered.
async fn drip(addr: std::net::SocketAddr, start: &'static [u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(start).await.expect("first bytes");
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(b"a").await.is_err() {
            break;
        }
    }
    read_response(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_cut_off_while_other_clients_are_served() {
    let backend = http_backend("b").await;
    let wsgate = Wsgate::start(&format!(
        "RequestReadTimeout header=2-4,MinRate=500 body=2,MinRate=500\nProxyPass / http://127.0.0.1:{}/\n",
        backend.port()
    ));
    let addr = wsgate.addr;
    let tasks = Watched::default();
    let cut_heads = Arc::new(AtomicUsize::new(0));
    let cut_bodies = Arc::new(AtomicUsize::new(0));
    for _ in 0..SLOW_HEADS {
        let cut = cut_heads.clone();
        tasks.spawn(async move {
            let answer = drip(addr, b"GET /slow HTTP/1.1\r\nHost: proxy.test\r\nX-Drip: ").await;
            assert_eq!(status_of(&answer), 408, "{answer}");
            cut.fetch_add(1, Ordering::Relaxed);
        });
    }
    for _ in 0..SLOW_BODIES {
        let cut = cut_bodies.clone();
        tasks.spawn(async move {
            let answer = drip(
                addr,
                b"POST /slow HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100000\r\n\r\n",
            )
            .await;
            assert_eq!(status_of(&answer), 408, "{answer}");
            cut.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Normal clients while the slow ones hold their connections: one
    // request per connection, four at a time.
    let served = Arc::new(AtomicUsize::new(0));
    let normal = Watched::default();
    for worker in 0..4 {
        let served = served.clone();
        normal.spawn(async move {
            for i in 0..NORMAL / 4 {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let request = format!(
                    "GET /n{worker}-{i} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n"
                );
                s.write_all(request.as_bytes()).await.expect("request");
                let answer = read_response(&mut s).await;
                assert_eq!(status_of(&answer), 200, "{answer}");
                assert!(
                    answer.ends_with(&format!("b /n{worker}-{i} body=0")),
                    "{answer}"
                );
                served.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    normal.join(Duration::from_secs(60)).await;
    assert_eq!(served.load(Ordering::Relaxed), NORMAL);
    tasks.join(Duration::from_secs(60)).await;
    assert_eq!(cut_heads.load(Ordering::Relaxed), SLOW_HEADS);
    assert_eq!(cut_bodies.load(Ordering::Relaxed), SLOW_BODIES);
    // None of the slow bodies reached the backend: each was read ahead of
    // connecting, and too slowly.
    assert!(backend.seen.all().iter().all(|h| !h.contains("/slow")));
}
