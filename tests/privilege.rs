//! `User`/`Group` (mod_unixd): started as root, wsgate binds its ports,
//! opens its logs and reads its keys, then serves as the user; a privileged
//! opener process it forked before the change hands over what a reload
//! needs and the user may not open (a port below 1024, a log in root's
//! directory after logrotate moved it, a key only root reads, a piped log
//! program run as root, the PidFile in root's directory).
//!
//! Everything root-owned here is in folders of mode 700 (the test's own
//! temporary folders, where the configuration also lives: reloading reads
//! it through the opener too). The user is `nobody`/`nogroup`, which every
//! Debian system has. These tests need root; run by hand without it they
//! say SKIP, under `CI=true` they fail.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::pki::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NOBODY: u32 = 65534;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "the privilege tests need root under CI=true"
        );
        eprintln!("SKIP: not root; `User`/`Group` apply only to a wsgate started as root");
    }
    root
}

/// `(uid, gid, supplementary groups)` of a process's every thread, from
/// /proc.
fn ids_of_threads(pid: u32) -> Vec<(String, String, String)> {
    let mut ids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        ids.push((field("Uid:"), field("Gid:"), field("Groups:")));
    }
    ids
}

/// The opener: the child of `pid` named wsgate-opener.
fn opener_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            stat.contains("(wsgate-opener)")
                && after.split_whitespace().nth(1) == Some(pid.to_string().as_str())
        })
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listening_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")).then(|| f[9].to_string())
    })
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

/// A folder only root may enter.
fn root_only(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A free port below 1024 on 127.0.0.1 (bound by this root test and let go).
fn privileged_port() -> u16 {
    (900..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 900..1000")
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    raw_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await
}

/// Serving as nobody: every thread changed, the opener alone keeps root and
/// holds no listening socket or log; a file only root may read is 403 as it
/// is for Apache's children; a piped log program runs as root. A reload
/// after logrotate moved the access log, which also adds a `Listen` below
/// 1024 and must read the configuration from a folder only root may enter,
/// gets all three from the opener. Stopping removes the PidFile from root's
/// folder, and the opener ends with the server.
#[tokio::test(flavor = "multi_thread")]
async fn started_as_root_it_serves_as_user_and_reloads_what_only_root_may_open() {
    if !root() {
        return;
    }
    let echo = ws_echo_backend().await;
    let base = tempfile::tempdir().unwrap();
    let logs = root_only(base.path(), "logs");
    let run = root_only(base.path(), "run");
    let docs = base.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(docs.join("public.txt"), "for all\n").unwrap();
    std::fs::write(docs.join("secret.txt"), "root only\n").unwrap();
    std::fs::set_permissions(
        docs.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let body = |extra: &str| {
        format!(
            "{LISTEN}\nServerName proxy.test\n{extra}User nobody\nGroup nogroup\nLogLevel info\n\
             PidFile {run}/wsgate.pid\nDocumentRoot {docs}\n\
             CustomLog {logs}/access.log \"%>s %U\"\n\
             CustomLog \"|$id -u > {logs}/pipe-uid; exec cat >> {logs}/piped.log\" \"%>s %U\"\n\
             ProxyPass /ws ws://{echo}/\n",
            run = run.display(),
            docs = docs.display(),
            logs = logs.display(),
        )
    };
    let mut w = Wsgate::start_file(&body(""));
    w.wait_log("serving as user nobody (uid 65534), group 65534", 1)
        .await;
    let pid = w.pid();
    for (uid, gid, groups) in ids_of_threads(pid) {
        assert_eq!(uid, format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}"));
        assert_eq!(gid, format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}"));
        assert_eq!(
            groups,
            NOBODY.to_string(),
            "initgroups: nobody's groups, root's gone"
        );
    }
    eventually(Duration::from_secs(10), "the opener", || {
        opener_of(pid).is_some()
    })
    .await;
    let opener = opener_of(pid).expect("the opener runs");
    assert_eq!(
        ids_of_threads(opener)[0].0,
        "0 0 0 0",
        "the opener keeps root"
    );
    let opener_fds: Vec<String> = std::fs::read_dir(format!("/proc/{opener}/fd"))
        .unwrap()
        .filter_map(|e| {
            Some(
                std::fs::read_link(e.ok()?.path())
                    .ok()?
                    .display()
                    .to_string(),
            )
        })
        .collect();
    let listener = listening_inode(w.addr.port()).expect("wsgate's listening socket");
    assert!(
        !opener_fds
            .iter()
            .any(|f| f.contains(&format!("[{listener}]")) || f.contains("access.log")),
        "the opener holds neither the listening socket nor a log: {opener_fds:?}"
    );

    assert_eq!(ws_roundtrip(&w.url("/ws"), "as nobody").await, "as nobody");
    assert_eq!(status_of(&get(w.addr, "/public.txt").await), 200);
    assert_eq!(
        status_of(&get(w.addr, "/secret.txt").await),
        403,
        "read as nobody"
    );
    let pid_file = run.join("wsgate.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{pid}\n")
    );
    file_with_lines(&logs.join("access.log"), 3).await;
    file_with_lines(&logs.join("piped.log"), 3).await;
    assert_eq!(
        std::fs::read_to_string(logs.join("pipe-uid")).unwrap(),
        "0\n",
        "piped log programs run as root, as Apache's parent runs them"
    );

    // logrotate: the access log moved away; the reload adds a port below
    // 1024. The configuration's folder is root's (mode 700).
    std::fs::rename(logs.join("access.log"), logs.join("access.log.1")).unwrap();
    let low = privileged_port();
    w.reload(&body(&format!("Listen 127.0.0.1:{low}\n"))).await;
    let low_addr = std::net::SocketAddr::from(([127, 0, 0, 1], low));
    assert_eq!(status_of(&get(low_addr, "/public.txt").await), 200);
    assert_eq!(status_of(&get(w.addr, "/after-reload").await), 404);
    let fresh = file_with_lines(&logs.join("access.log"), 2).await;
    assert_eq!(fresh, "200 /public.txt\n404 /after-reload\n");
    let log = w.stderr();
    assert!(!log.contains("cannot open"), "{log}");
    assert!(!log.contains("reload failed"), "{log}");

    w.signal("TERM");
    assert!(
        w.wait_exit(Duration::from_secs(20)).is_some(),
        "wsgate stopped"
    );
    eventually(Duration::from_secs(10), "the opener ended", || gone(opener)).await;
    assert!(
        !pid_file.exists(),
        "the PidFile in root's folder was removed"
    );
    echo.finish().await;
}

/// A TLS key only root may read (mode 600 in a folder of mode 700) is read
/// at the start as root, and — renewed in place, as certbot or an
/// operator's script does — again at a reload, through the opener.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_only_root_may_read_is_renewed_by_a_reload() {
    if !root() {
        return;
    }
    let ca = Ca::new();
    let keys = root_only(ca.dir.path(), "private");
    let issue = || {
        let issued = ca.issue("proxy.test");
        for (from, name) in [(&issued.cert, "proxy.crt"), (&issued.key, "proxy.key")] {
            let to = keys.join(name);
            std::fs::rename(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        issued.der
    };
    let first = issue();
    let conf = format!(
        "Listen 127.0.0.1:0 https\nServerName proxy.test\nUser nobody\nLogLevel info\n\
         SSLEngine on\nSSLCertificateFile {k}/proxy.crt\nSSLCertificateKeyFile {k}/proxy.key\n",
        k = keys.display()
    );
    let w = Wsgate::start_file(&conf);
    w.wait_log("serving as user nobody", 1).await;
    assert_eq!(presented(w.addr, &ca).await, first);
    let second = issue();
    assert_ne!(first, second);
    w.reload(&conf).await;
    assert_eq!(presented(w.addr, &ca).await, second, "{}", w.stderr());
}

/// The certificate a verified TLS connection to `addr` got, after one
/// request answered over it.
async fn presented(
    addr: std::net::SocketAddr,
    ca: &Ca,
) -> rustls::pki_types::CertificateDer<'static> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("proxy.test").unwrap();
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// A binary upgrade (SIGUSR2) while serving as nobody: the successor, also
/// nobody, is handed the opener with the sockets, writes the PidFile in
/// root's folder through it, and after its predecessor has gone reloads a
/// rotated log through it; stopping it removes the PidFile and ends the
/// opener.
#[tokio::test(flavor = "multi_thread")]
async fn a_binary_upgrade_hands_the_opener_to_the_successor() {
    if !root() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let logs = root_only(base.path(), "logs");
    let conf = format!(
        "{LISTEN}\nServerName proxy.test\nUser nobody\nLogLevel info\nGracefulShutdownTimeout 2\n\
         PidFile {l}/wsgate.pid\nCustomLog {l}/access.log \"%>s %U\"\n",
        l = logs.display()
    );
    let mut w = Wsgate::start_file(&conf);
    w.wait_log("serving as user nobody", 1).await;
    let (old, pid_file) = (w.pid(), logs.join("wsgate.pid"));
    eventually(Duration::from_secs(10), "the opener", || {
        opener_of(old).is_some()
    })
    .await;
    let opener = opener_of(old).expect("the opener runs");
    w.signal("USR2");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    eventually(Duration::from_secs(30), "the successor's PidFile", || {
        read_pid().is_some_and(|p| p != old)
    })
    .await;
    let new = read_pid().unwrap();
    let _stop = StopPid(new);
    assert!(
        w.wait_exit(Duration::from_secs(20)).is_some(),
        "the old process exited"
    );
    assert!(!gone(opener), "the opener stays for the successor");
    for (uid, _, groups) in ids_of_threads(new) {
        assert_eq!(uid, format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}"));
        assert_eq!(groups, NOBODY.to_string());
    }
    assert_eq!(status_of(&get(w.addr, "/one").await), 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(logs.join("access.log")).is_ok_and(|t| t.contains("/one")) {
        assert!(
            std::time::Instant::now() < deadline,
            "/one never logged: {}",
            w.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::rename(logs.join("access.log"), logs.join("access.log.1")).unwrap();
    let kill = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &new.to_string()])
            .status()
            .unwrap()
            .success())
    };
    kill("-HUP");
    eventually(Duration::from_secs(10), "the reopened log", || {
        std::fs::read_to_string(logs.join("access.log")).is_ok()
    })
    .await;
    assert_eq!(status_of(&get(w.addr, "/two").await), 404);
    let log = logs.join("access.log");
    eventually(Duration::from_secs(10), "/two in the reopened log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 1)
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "404 /two\n",
        "{}\n{}",
        w.stderr(),
        std::fs::read_to_string(logs.join("access.log.1")).unwrap()
    );
    kill("-TERM");
    eventually(Duration::from_secs(20), "the successor stopped", || {
        gone(new)
    })
    .await;
    eventually(Duration::from_secs(10), "the opener ended", || gone(opener)).await;
    assert!(!pid_file.exists(), "the successor removed the PidFile");
}

/// A process this test started indirectly, stopped however the test ends.
struct StopPid(u32);

impl Drop for StopPid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}

/// A wildcard `Include` of a folder the user may not list is an error
/// naming the folder, for `IncludeOptional` too, never "nothing matched":
/// a reload as the user would otherwise drop every site in it. Run as
/// nobody (`setpriv`), as a reload after the change of user reads.
#[test]
fn a_folder_the_user_may_not_list_is_an_error_not_an_empty_match() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sites = root_only(dir.path(), "sites-enabled");
    std::fs::write(
        sites.join("chat.conf"),
        "ProxyPass /ws ws://127.0.0.1:9/ws\n",
    )
    .unwrap();
    for include in ["Include", "IncludeOptional"] {
        let conf = dir.path().join(format!("{include}.conf"));
        std::fs::write(
            &conf,
            format!("Listen 127.0.0.1:0\n{include} {}/*.conf\n", sites.display()),
        )
        .unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                WSGATE,
                "-t",
                "-f",
            ])
            .arg(&conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{include}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{}:2: Include: cannot list '{}' for the wildcard pattern: Permission denied",
                conf.display(),
                sites.display()
            )),
            "{include}: {stderr}"
        );
    }
}
