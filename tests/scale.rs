//! Many tunnels at once, and a large transfer to a slow reader: what the
//! tunnel's bounded buffers and backpressure promise, checked on the real
//! process (file descriptors and resident memory from /proc).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_tunnels_echo_and_close_without_leaks() {
    const N: usize = 1000;
    let backend = ws_echo_backend().await;
    let gate = Wsgate::start(&format!("ProxyPass /ws/ ws://{backend}/\n"));
    let fds_before = open_fds(gate.pid());
    let rss_before = gate.rss_kib();

    let mut clients = Vec::with_capacity(N);
    for batch in 0..N / 100 {
        let mut handshakes = Vec::new();
        for _ in 0..100 {
            handshakes.push(tokio_tungstenite::connect_async(gate.url("/ws/")));
        }
        for (i, h) in futures_util::future::join_all(handshakes)
            .await
            .into_iter()
            .enumerate()
        {
            let (ws, resp) =
                h.unwrap_or_else(|e| panic!("handshake {} failed: {e}", batch * 100 + i));
            assert_eq!(resp.status(), 101);
            clients.push(ws);
        }
    }
    assert!(
        open_fds(gate.pid()) >= fds_before + 2 * N,
        "each tunnel holds two sockets: {} before, {} now",
        fds_before,
        open_fds(gate.pid())
    );
    let rss_open = gate.rss_kib();

    // Every tunnel echoes its own message while all are open.
    let echoes = clients.iter_mut().enumerate().map(|(i, ws)| async move {
        ws.send(Message::Text(format!("tunnel {i}").into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("tunnel {i}"));
    });
    futures_util::future::join_all(echoes).await;
    eprintln!(
        "{N} open tunnels: wsgate RSS {rss_before} KiB idle -> {rss_open} KiB ({:.2} KiB per tunnel)",
        (rss_open.saturating_sub(rss_before)) as f64 / N as f64
    );

    for mut ws in clients {
        let _ = ws.close(None).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(gate.pid()) > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open_fds(gate.pid()),
        fds_before,
        "every socket of every tunnel was closed"
    );
}

/// Byte `i` of the test stream: position-dependent, so loss, duplication
/// and reordering all show.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

fn check(offset: u64, buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .all(|(i, &b)| b == ((offset + i as u64) % 251) as u8)
}

#[tokio::test(flavor = "multi_thread")]
async fn quarter_gigabyte_each_way_to_a_slow_reader_stays_within_64_mib() {
    const TOTAL: u64 = 256 << 20;
    // The backend switches protocols, then sends TOTAL bytes as fast as it
    // can while reading and checking TOTAL bytes from the client.
    let backend = raw_backend(|_, stream| async move {
        let (mut rd, mut wr) = stream.into_split();
        if wr
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: bulk\r\nConnection: Upgrade\r\n\r\n",
            )
            .await
            .is_err()
        {
            return;
        }
        let sender = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < TOTAL {
                pattern(sent, &mut buf);
                wr.write_all(&buf).await.unwrap();
                sent += buf.len() as u64;
            }
            wr.shutdown().await.unwrap();
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(
                check(got, &buf[..n]),
                "backend got corrupted bytes at {got}"
            );
            got += n as u64;
        }
        assert_eq!(got, TOTAL, "backend received everything");
        sender.await.unwrap();
    })
    .await;
    let gate = Wsgate::start(&format!("ProxyPass / http://{backend}/ upgrade=bulk\n"));
    let pid = gate.pid();

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pipes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = {
        let peak = peak.clone();
        let pipes = pipes.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                pipes.fetch_max(open_pipes(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let stream = TcpStream::connect(gate.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(
        b"GET / HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: bulk\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        rd.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let uploader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < TOTAL {
            pattern(sent, &mut buf);
            wr.write_all(&buf).await.unwrap();
            sent += buf.len() as u64;
        }
        wr.shutdown().await.unwrap();
    });
    // The slow reader: 4 KiB at a time with pauses for the first 8 MiB, so
    // the backend is far ahead of it, then at full speed.
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let want = if got < (8 << 20) { 4096 } else { buf.len() };
        let n = rd.read(&mut buf[..want]).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(check(got, &buf[..n]), "client got corrupted bytes at {got}");
        got += n as u64;
        if got < (8 << 20) && got % (256 * 1024) < 4096 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    uploader.await.unwrap();
    sampling.abort();
    assert_eq!(got, TOTAL, "client received everything");
    // The backend checked every byte of the upload: its verdict.
    backend.finish().await;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "512 MiB through one tunnel in {:?}; wsgate peak RSS {peak} KiB",
        started.elapsed()
    );
    assert!(
        peak > 0 && peak < 64 * 1024,
        "wsgate peak RSS {peak} KiB is over 64 MiB"
    );
    // Plain TCP both sides and bulk data: the bytes went through pipes
    // (splice); one per direction in use, a few pooled per thread.
    let pipes = pipes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        pipes >= 2,
        "{pipes} pipe descriptors seen: the bulk path did not splice"
    );
    assert!(pipes <= 64, "{pipes} pipe descriptors for one tunnel");
}

/// How many of a process's open descriptors are pipes.
fn open_pipes(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("pipe:"))
                .count() as u64
        })
        .unwrap_or(0)
}
