//! Every `tests/bad-configs/NAME.conf` must be refused by `wsgate -t` with
//! exit code 1 and, as the first line on standard error, exactly the line in
//! `NAME.expected`, where `{dir}` stands for the folder of the files. A
//! `NAME.hint` file, if present, must appear in the output too.

use std::path::Path;
use std::process::Command;

mod common;

const WSGATE: &str = env!("CARGO_BIN_EXE_wsgate");

#[test]
fn each_bad_configuration_is_refused_with_file_line_and_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-configs");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "conf") && !p.to_string_lossy().contains(".inc.")
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 25,
        "expected at least 25 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for conf in &cases {
        let expected_path = conf.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .expected file", conf.display()))
            .trim_end()
            .replace("{dir}", &dir.display().to_string());
        let out = Command::new(WSGATE)
            .arg("-t")
            .arg("-f")
            .arg(conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, stderr {stderr}",
                conf.display(),
                out.status.code()
            ));
        } else if first != expected {
            failures.push(format!(
                "{}:\n  expected: {expected}\n  got:      {first}",
                conf.display()
            ));
        } else if let Ok(hint) = std::fs::read_to_string(conf.with_extension("hint")) {
            if !stderr.contains(hint.trim()) {
                failures.push(format!(
                    "{}: hint '{}' missing from {stderr}",
                    conf.display(),
                    hint.trim()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_good_configuration_says_syntax_ok() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ok.conf");
    std::fs::write(
        &conf,
        "Listen 127.0.0.1:8080\n<IfModule mod_rewrite.c>\nRewriteEngine On\n</IfModule>\nProxyPass /ws/ ws://127.0.0.1:9000/ upgrade=websocket timeout=30\n",
    )
    .unwrap();
    let out = Command::new(WSGATE)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Syntax OK");
}

/// `-t` accepts, but warns about, routes that trip operators: a ProxyPass
/// an earlier, shorter one takes every path of (Apache uses the first
/// that matches), in the server itself and through the main server's
/// lines a virtual host inherits first; a Socket.IO path on a balancer of
/// several members without stickysession; WebSocket tunnels closed when
/// idle for less than common heartbeat intervals. The right order says
/// nothing.
#[test]
fn t_warns_about_routes_no_request_reaches_and_unsticky_socket_io() {
    let out = check_file(
        "Listen 127.0.0.1:0\nProxyPass / http://127.0.0.1:9000/\nProxyPass /ws ws://127.0.0.1:9001\n<Proxy balancer://io>\nBalancerMember http://127.0.0.1:9003\nBalancerMember http://127.0.0.1:9004\n</Proxy>\n<VirtualHost *>\nServerName v.test\nProxyPass /socket.io/ balancer://io/socket.io/\n</VirtualHost>\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("c.conf:3: ProxyPass /ws is never used: the ProxyPass / at ")
            && err.contains("c.conf:2 comes first"),
        "{err}"
    );
    assert!(
        err.contains("c.conf:10: ProxyPass /socket.io/ is never used"),
        "{err}"
    );
    assert!(
        err.contains("c.conf:10: ProxyPass /socket.io/ sends Socket.IO to balancer://io, whose 2 members are not sticky"),
        "{err}"
    );
    let out = check_file(
        "Listen 127.0.0.1:0\nProxyPass /ws/ ws://127.0.0.1:9001/\nProxyPass /ws http://127.0.0.1:9001\nProxyPass /wsx http://127.0.0.1:9002\n<Proxy balancer://io>\nBalancerMember http://127.0.0.1:9003\nBalancerMember http://127.0.0.1:9004\nProxySet stickysession=ROUTEID\n</Proxy>\nProxyPass /socket.io/ balancer://io/socket.io/\nProxyPass / http://127.0.0.1:9000/\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("never used") && !err.contains("not sticky"),
        "{err}"
    );
    assert!(
        !err.contains("without a byte"),
        "the default Timeout is 60 s: {err}"
    );
    // An idle timeout shorter than common heartbeats; timeout= raises it.
    let out = check_file(
        "Listen 127.0.0.1:0\nTimeout 10\nProxyPass /ws/ ws://127.0.0.1:9001/\nProxyPass /slow/ ws://127.0.0.1:9002/ timeout=60\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "c.conf:3: WebSocket tunnels of ProxyPass /ws/ are closed after 10 s without a byte"
        ),
        "{err}"
    );
    assert_eq!(err.matches("without a byte").count(), 1, "{err}");
}

/// `wsgate -t` on `text` written to a file named `c.conf`.
fn check_file(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, text).unwrap();
    Command::new(WSGATE)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap()
}

/// `-t` reports every error of the files in one run, in the order of the
/// lines, each with its file and line (an included file's too), like a
/// compiler; what is around them is still read and checked.
#[test]
fn every_error_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let inc = dir.path().join("site.conf");
    std::fs::write(&inc, "<VirtualHost *:8080>\n  ServerName a.test\n  Timout 5\n  ProxyPass /a http://127.0.0.1:1/ retry=soon\n</VirtualHost>\n").unwrap();
    let main = dir.path().join("main.conf");
    std::fs::write(
        &main,
        format!(
            "Listen 127.0.0.1:8080\nUser ${{APACHE_RUN_USER}}\nInclude {}\nKeepAliveTimeout later\nTimeout 30\n",
            inc.display()
        ),
    )
    .unwrap();
    let (code, stderr) = common::check_path(&main, &[]);
    assert_eq!(code, 1, "{stderr}");
    let places: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("  hint:"))
        .filter_map(|l| l.split_once(": ").map(|(place, _)| place))
        .collect();
    let (m, s) = (main.display(), inc.display());
    assert_eq!(
        places,
        [
            format!("{m}:2"),
            format!("{s}:3"),
            format!("{s}:4"),
            format!("{m}:4"),
        ],
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("\n4 errors"), "{stderr}");
    assert!(stderr.contains("did you mean 'Timeout'?"), "{stderr}");
}

/// A file with more errors than anyone reads stops at 50, and says so.
#[test]
fn the_errors_reported_stop_at_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    let mut text = String::from("Listen 127.0.0.1:8080\n");
    for i in 0..80 {
        text.push_str(&format!("NoSuchDirective{i} x\n"));
    }
    std::fs::write(&main, text).unwrap();
    let (code, stderr) = common::check_path(&main, &[]);
    assert_eq!(code, 1, "{stderr}");
    let errors = stderr
        .lines()
        .filter(|l| l.contains("NoSuchDirective"))
        .count();
    assert_eq!(errors, 50, "{stderr}");
    assert!(
        stderr
            .trim_end()
            .ends_with("50 errors; reading stopped there"),
        "{stderr}"
    );
}
