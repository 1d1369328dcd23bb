//! The command line and signals as the contract in DESIGN.md states them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn version_and_help() {
    let out = Command::new(WSGATE).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wsgate {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(WSGATE).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["-f <FILE>", "-t", "demo", "SIGHUP"] {
        assert!(help.contains(word), "help names {word}: {help}");
    }
}

/// `-L`, like `httpd -L`: each directive with its module, syntax, what
/// wsgate does with it and where it may be written, from the same table
/// that reads the files.
#[test]
fn dash_capital_l_lists_the_directives_with_syntax_and_places() {
    let out = Command::new(WSGATE).arg("-L").output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    let entry = |name: &str| -> String {
        let start = list
            .find(&format!("\n{name} ("))
            .unwrap_or_else(|| panic!("{name} is listed: {list}"));
        list[start + 1..]
            .lines()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        entry("ProxyPass"),
        "ProxyPass (mod_proxy.c)\n\tProxyPass [PATH] !|URL [key=value ...] [nocanon] [noquery]\n\t\
         maps a path prefix to a backend url (ws, wss, http, https, balancer)\n\t\
         Allowed in the server config, <VirtualHost>, <Location>, <LocationMatch>"
    );
    assert!(entry("<VirtualHost").ends_with("\tAllowed in the server config"));
    assert!(entry("Include").ends_with("\tAllowed anywhere"));
    assert!(list.contains("\nH2Push\n\tnot yet, mod_http2 (server push)"));
}

#[test]
fn no_configuration_is_a_usage_error() {
    let out = Command::new(WSGATE).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wsgate -f FILE"));
}

#[test]
fn a_port_in_use_is_reported_with_exit_2() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, format!("Listen {}\n", busy.local_addr().unwrap())).unwrap();
    let out = Command::new(WSGATE).arg("-f").arg(&conf).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not bind"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn defines_select_ifdefine_sections() {
    let text = "Listen 127.0.0.1:1\n<IfDefine !STAGING>\nBogusDirective\n</IfDefine>\n";
    let out = check_file(text, |cmd| {
        cmd.args(["-D", "STAGING"]);
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check_file(text, |_| {});
    assert_eq!(out.status.code(), Some(1));
}

async fn open_tunnel(
    gate: &Wsgate,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(gate.url(path)),
    )
    .await
    .expect("handshake in time")
    .expect("handshake")
    .0
}

async fn echo(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    text: &str,
) -> String {
    ws.send(Message::Text(text.into())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("no error")
        .into_text()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_to_new_requests_and_leaves_tunnels_alone() {
    let a = ws_echo_backend().await;
    let a_seen = a.seen.clone();
    let b = ws_echo_backend().await;
    let b_seen = b.seen.clone();
    let gate = Wsgate::start(&format!("ProxyPass /ws/ ws://{a}/\n"));
    let mut old = open_tunnel(&gate, "/ws/").await;
    assert_eq!(a_seen.all().len(), 1);

    let conf = std::fs::read_to_string(&gate.conf)
        .unwrap()
        .replace(&a.to_string(), &b.to_string());
    gate.reload(&conf).await;
    let mut new = open_tunnel(&gate, "/ws/").await;
    assert_eq!(
        b_seen.all().len(),
        1,
        "new tunnels use the new configuration"
    );
    assert_eq!(
        echo(&mut old, "old").await,
        "old",
        "the old tunnel is untouched"
    );
    assert_eq!(echo(&mut new, "new").await, "new");

    // A broken configuration is reported and the running one stays.
    std::fs::write(&gate.conf, format!("{LISTEN}\nProxyPas /ws/ ws://{a}/\n")).unwrap();
    gate.signal("USR1");
    gate.wait_log("reload failed", 1).await;
    assert!(
        gate.stderr()
            .contains("wsgate.conf:2: Invalid command 'ProxyPas'"),
        "{}",
        gate.stderr()
    );
    let mut third = open_tunnel(&gate, "/ws/").await;
    assert_eq!(echo(&mut third, "still").await, "still");
    assert_eq!(b_seen.all().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_lets_tunnels_finish_and_refuses_new_connections() {
    let a = ws_echo_backend().await;
    let mut gate = Wsgate::start(&format!(
        "GracefulShutdownTimeout 30\nPidFile wsgate.pid\nProxyPass /ws/ ws://{a}/\n"
    ));
    let pid_file = gate.dir.path().join("wsgate.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        gate.pid().to_string()
    );
    let mut live = open_tunnel(&gate, "/ws/").await;
    gate.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(gate.addr).await.is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        TcpStream::connect(gate.addr).await.is_err(),
        "no longer accepting"
    );
    assert_eq!(echo(&mut live, "during drain").await, "during drain");
    let _ = live.close(None).await;
    drop(live);
    let status = gate
        .wait_exit(Duration::from_secs(5))
        .expect("exits once the last tunnel ended");
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the PidFile is removed at exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_closes_what_is_left_after_the_timeout_and_a_second_signal_is_immediate() {
    let a = ws_echo_backend().await;
    let mut gate = Wsgate::start(&format!(
        "GracefulShutdownTimeout 1\nProxyPass /ws/ ws://{a}/\n"
    ));
    let mut live = open_tunnel(&gate, "/ws/").await;
    let started = Instant::now();
    gate.signal("WINCH");
    let status = gate
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    assert!(status.success());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(2), live.next())
        .await
        .expect("the tunnel is closed");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))));

    let mut gate = Wsgate::start(&format!(
        "LogLevel info\nGracefulShutdownTimeout 60\nProxyPass /ws/ ws://{a}/\n"
    ));
    let _live = open_tunnel(&gate, "/ws/").await;
    gate.signal("TERM");
    gate.wait_log("stopping: waiting up to 60 s", 1).await;
    let started = Instant::now();
    gate.signal("TERM");
    assert!(
        gate.wait_exit(Duration::from_secs(3)).is_some(),
        "a second SIGTERM stops at once"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_request_workers_caps_concurrent_connections() {
    let a = ws_echo_backend().await;
    let gate = Wsgate::start(&format!("MaxRequestWorkers 2\nProxyPass /ws/ ws://{a}/\n"));
    let mut one = open_tunnel(&gate, "/ws/").await;
    let two = open_tunnel(&gate, "/ws/").await;
    let waiting = tokio::spawn({
        let url = gate.url("/ws/");
        async move {
            tokio_tungstenite::connect_async(url)
                .await
                .map(|(ws, _)| ws)
        }
    });
    // Logged when the third connection is left waiting.
    gate.wait_log("server reached MaxRequestWorkers setting", 1)
        .await;
    assert!(
        !waiting.is_finished(),
        "a third connection waits while two are open"
    );
    drop(two);
    let mut third = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot frees")
        .unwrap()
        .unwrap();
    assert_eq!(echo(&mut third, "3").await, "3");
    assert_eq!(echo(&mut one, "1").await, "1");
}

/// Waits until `path` holds `text`, at most 5 s.
async fn wait_for_in(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got.contains(text) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reopens_the_error_log_and_takes_a_new_level() {
    let dead = DeadPort::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("error.log");
    let body = |log: &std::path::Path, level: &str| {
        format!(
            "ErrorLog {}\nLogLevel {level}\nProxyPass /dead/ ws://{dead}/\n",
            log.display()
        )
    };
    let gate = Wsgate::start(&body(&log, "error"));
    let conf_head = format!("{LISTEN}\nServerName proxy.test\n");
    let refused = || async {
        let request = ws_request("/dead/", "websocket");
        let got = raw_exchange(gate.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&got), 503, "{got}");
    };
    refused().await;
    assert!(wait_for_in(&log, "connect failed")
        .await
        .contains("connect failed"));

    // What logrotate does: move the file away, then ask for a reload.
    let rotated = dir.path().join("error.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // At LogLevel warn, so that the reload's own line is written.
    std::fs::write(&gate.conf, format!("{conf_head}{}", body(&log, "warn"))).unwrap();
    gate.signal("HUP");
    let fresh = wait_for_in(&log, "configuration reloaded").await;
    assert!(fresh.contains("configuration reloaded"), "{fresh}");
    refused().await;
    assert!(wait_for_in(&log, "connect failed")
        .await
        .contains("connect failed"));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(
        old.matches("connect failed").count(),
        1,
        "nothing more in the rotated file: {old}"
    );

    // A new ErrorLog, and a level that leaves warnings out.
    let other = dir.path().join("other.log");
    std::fs::write(&gate.conf, format!("{conf_head}{}", body(&other, "error"))).unwrap();
    gate.signal("HUP");
    let moved = wait_for_in(&log, "the log moves").await;
    assert!(
        moved.contains(&format!("to {}", other.display())),
        "{moved}"
    );
    refused().await;
    let new = wait_for_in(&other, "connect failed").await;
    assert!(new.contains("connect failed"), "{new}");
    assert!(
        !new.contains("configuration reloaded"),
        "the reload's warning is below LogLevel error: {new}"
    );
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("connect failed")
            .count(),
        1
    );
}

#[test]
fn a_variable_not_defined_comes_from_the_environment_or_is_an_error() {
    let text = "Define APP_HOST 127.0.0.1\nListen ${APP_HOST}:${WSGATE_TEST_PORT}\n";
    let check = |env: Option<&str>| {
        check_file(text, |cmd| {
            cmd.env_remove("WSGATE_TEST_PORT");
            if let Some(port) = env {
                cmd.env("WSGATE_TEST_PORT", port);
            }
        })
    };
    let out = check(Some("8443"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.conf:2: variable ${WSGATE_TEST_PORT} is not defined"),
        "{err}"
    );
}

/// The status a WebSocket handshake for `path` gets.
async fn handshake_status(gate: &Wsgate, path: &str) -> u16 {
    let request = ws_request(path, "websocket");
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    status_of(&read_response(&mut s).await)
}

/// Issue 15: a worker's max= counts the tunnels a configuration opened
/// before a reload (each configuration used to get a fresh semaphore, so
/// every reload let max= more connections through), and a reload that
/// changes max= applies the new limit to them.
#[tokio::test(flavor = "multi_thread")]
async fn max_holds_across_a_reload_and_follows_a_new_value() {
    let a = ws_echo_backend().await;
    let gate = Wsgate::start(&format!("ProxyPass /ws/ ws://{a}/ max=2 acquire=100\n"));
    let conf = std::fs::read_to_string(&gate.conf).unwrap();
    let mut one = open_tunnel(&gate, "/ws/").await;
    let two = open_tunnel(&gate, "/ws/").await;
    assert_eq!(handshake_status(&gate, "/ws/").await, 503, "max=2 reached");

    // The same worker after a reload: its two tunnels still count.
    gate.reload(&format!("{conf}ProxyPass /other/ ws://{a}/\n"))
        .await;
    assert_eq!(
        handshake_status(&gate, "/ws/").await,
        503,
        "the two tunnels opened before the reload still count"
    );
    drop(two);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match tokio_tungstenite::connect_async(gate.url("/ws/")).await {
            Ok((ws, _)) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "no slot came free: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(echo(&mut third, "3").await, "3");
    assert_eq!(handshake_status(&gate, "/ws/").await, 503, "two open again");

    // A larger max= lets one more in at once; the tunnels stay up.
    gate.reload(&conf.replace("max=2", "max=3")).await;
    let mut fourth = open_tunnel(&gate, "/ws/").await;
    assert_eq!(handshake_status(&gate, "/ws/").await, 503, "max=3 reached");
    assert_eq!(echo(&mut one, "1").await, "1");
    assert_eq!(echo(&mut fourth, "4").await, "4");
}

/// Under systemd (`Type=notify-reload`): READY=1 with the main PID once it
/// listens, RELOADING=1 with MONOTONIC_USEC and READY=1 again around a
/// reload (also one that fails, saying why), across a binary upgrade the
/// successor's READY and its MAINPID, STOPPING=1 on a graceful stop (of the
/// successor) — on the datagram socket `NOTIFY_SOCKET` names, as systemd's.
#[tokio::test]
async fn systemd_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let backend = ws_echo_backend().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / ws://{backend}/\n");
    let mut w = Wsgate::start_with(&conf, &[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    let ready = next();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains(&format!("MAINPID={}\n", w.pid())), "{ready}");
    assert!(
        ready.contains(&format!("STATUS=listening on {}", w.addr)),
        "{ready}"
    );
    w.signal("HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(usec > 0);
    let again = next();
    assert!(
        again.starts_with("READY=1\n") && again.contains("STATUS=configuration reloaded"),
        "{again}"
    );
    // A broken configuration: READY again, saying it failed.
    std::fs::write(&w.conf, "Listen 127.0.0.1:0\nNoSuchDirective\n").unwrap();
    w.signal("HUP");
    assert!(next().starts_with("RELOADING=1\n"));
    let failed = next();
    assert!(
        failed.starts_with("READY=1\n") && failed.contains("STATUS=reload failed"),
        "{failed}"
    );
    // A binary upgrade: the successor's READY reaches systemd too, and the
    // old process names the successor as the main process; the successor
    // then speaks for the service (its STOPPING), the old one not at all.
    std::fs::write(&w.conf, &conf).unwrap();
    w.signal("USR2");
    let (mut successor, mut main_pid) = (None, None);
    while successor.is_none() || main_pid.is_none() {
        let m = next();
        let pid = m
            .lines()
            .find_map(|l| l.strip_prefix("MAINPID="))
            .and_then(|p| p.parse::<u32>().ok());
        if m.starts_with("READY=1\n") {
            successor = pid;
        } else if m.starts_with("MAINPID=") {
            main_pid = pid;
        } else {
            panic!("unexpected during the hand-over: {m}");
        }
    }
    let new = successor.expect("the successor's pid");
    assert_ne!(new, w.pid());
    assert_eq!(main_pid, Some(new), "systemd follows the successor");
    let successor = StopPid(new);
    assert!(
        w.wait_exit(Duration::from_secs(15)).is_some(),
        "the old process ends"
    );
    drop(successor);
    let stopping = next();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
}

/// systemd socket activation (`sd_listen_fds`): a listening socket passed
/// as descriptor 3 with `LISTEN_FDS=1` and this process's `LISTEN_PID` is
/// the one its `Listen` line serves — wsgate does not bind the address
/// again (which would fail: the passed socket holds it).
#[test]
fn a_listening_socket_systemd_passes_is_served() {
    use std::io::{BufRead, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("wsgate.conf");
    std::fs::write(
        &conf,
        format!("Listen {addr}\nServerName proxy.test\nLogLevel info\n"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 exec {WSGATE} --print-listen -f {}",
            conf.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: between fork and exec only dup2/fcntl, which are
    // async-signal-safe, on a descriptor the parent keeps open.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if ok < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    // Whatever happens below, wsgate does not outlive the test.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(child);
    // Only wsgate holds the socket now.
    drop(listener);
    let mut first = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(first.trim(), format!("listening on {addr}"), "{stderr}");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /nothing HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stderr.contains("using the socket passed to wsgate"),
        "{stderr}"
    );
}

/// SIGUSR2 (binary upgrade): the running wsgate starts its program again on
/// the same listening sockets and, once the new one says it is ready,
/// stops accepting and finishes its own tunnels by GracefulShutdownTimeout.
/// Four clients connecting all along (over 1,000 connections, a third of
/// them before the hand-over) are never refused nor left unanswered; a
/// tunnel opened before keeps echoing through the old process; the PidFile
/// names the new process, which serves new tunnels.
#[tokio::test(flavor = "multi_thread")]
async fn sigusr2_hands_the_listening_sockets_to_a_new_binary() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let echo = ws_echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("wsgate.pid");
    let conf = format!(
        "Listen 127.0.0.1:0\nServerName proxy.test\nPidFile {}\nGracefulShutdownTimeout 3\nProxyPass /ws ws://{echo}/\n",
        pid_file.display()
    );
    let mut w = Wsgate::start_file(&conf);
    let old = w.pid();
    let (mut live, _) = tokio_tungstenite::connect_async(w.url("/ws"))
        .await
        .unwrap();
    live.send(Message::Text("before".into())).await.unwrap();
    assert_eq!(
        live.next().await.unwrap().unwrap(),
        Message::Text("before".into())
    );

    // Four clients connecting over and over, through the hand-over: over
    // 1,000 connections in all, a third of them before it.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (addr, until, count) = (w.addr, stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..20_000 {
                if until.load(Ordering::Relaxed) {
                    break;
                }
                let answer = raw_exchange(
                    addr,
                    b"GET /nothing HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
                    Duration::from_secs(5),
                )
                .await;
                if status_of(&answer) == 404 {
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.push(answer);
                }
            }
            failed
        }));
    }
    eventually(Duration::from_secs(30), "350 connections before", || {
        served.load(Ordering::Relaxed) >= 350
    })
    .await;
    w.signal("USR2");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    eventually(Duration::from_secs(30), "the new process's PidFile", || {
        read_pid().is_some_and(|p| p != old)
    })
    .await;
    let new = read_pid().unwrap();
    // Whatever happens below, the new process does not outlive the test.
    let successor = StopPid(new);
    w.wait_log("handed to the new wsgate", 1).await;
    // The old process still carries the tunnel it had.
    live.send(Message::Text("during".into())).await.unwrap();
    assert_eq!(
        live.next().await.unwrap().unwrap(),
        Message::Text("during".into())
    );
    // ... until GracefulShutdownTimeout, then exits.
    let status = w.wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "the old process exited");
    eventually(Duration::from_secs(60), "1,050 connections in all", || {
        served.load(Ordering::Relaxed) >= 1050
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for c in clients {
        failed.extend(c.await.unwrap());
    }
    let served = served.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        served + failed.len(),
        &failed[..failed.len().min(3)]
    );
    // The new one serves tunnels, and is stopped here by its PID.
    assert_eq!(ws_roundtrip(&w.url("/ws"), "after").await, "after");
    assert_eq!(
        read_pid(),
        Some(new),
        "the PidFile still names the new process"
    );
    drop(successor);
    eventually(Duration::from_secs(15), "the new process stopped", || {
        !std::path::Path::new(&format!("/proc/{new}")).exists()
            || std::fs::read_to_string(format!("/proc/{new}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .await;
}

/// A process this test started indirectly (a successor after a binary
/// upgrade), stopped by its PID however the test ends.
struct StopPid(u32);

impl Drop for StopPid {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}
