//! The example systemd unit, contrib/systemd/wsgate-apache2.service, is
//! one systemd accepts (`systemd-analyze verify`), and its commands work
//! on Debian's installed `/etc/apache2` as written: the `ExecStartPre`
//! check, run through the same shell line with the built binary in place
//! of /usr/local/bin/wsgate, says `Syntax OK`; the `ExecStart` line starts
//! a server that listens and stops at SIGTERM, as `systemctl stop` sends.
//! Without systemd-analyze or apache2: SKIP (a failure under `CI=true`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/systemd/wsgate-apache2.service"
);

/// The shell command of the unit's `KEY=/bin/sh -c '…'` line, with the
/// built binary in place of the installed one.
fn shell_line(unit: &str, key: &str) -> String {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line"));
    let command = line
        .strip_prefix("/bin/sh -c '")
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{key} is not a /bin/sh -c line: {line}"));
    assert!(command.contains("/usr/local/bin/wsgate"), "{command}");
    command.replace("/usr/local/bin/wsgate", common::WSGATE)
}

#[test]
fn systemd_accepts_the_example_unit() {
    if !common::require_program("systemd-analyze", "systemd") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_units_commands_work_on_debians_installed_tree() {
    if !common::require_program("apache2", "apache2") {
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // RuntimeDirectory=apache2 makes envvars' APACHE_RUN_DIR (the
    // PidFile's folder) before the unit's commands run; so does the test.
    let run_dir = Path::new("/run/apache2");
    let made = !run_dir.exists();
    if made {
        if let Err(e) = std::fs::create_dir(run_dir) {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot make {}: {e}",
                run_dir.display()
            );
            eprintln!("SKIP: cannot make {} ({e}); run as root", run_dir.display());
            return;
        }
    }
    let check = Command::new("/bin/sh")
        .args(["-c", &shell_line(&unit, "ExecStartPre")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    let started = check.status.success().then(|| {
        // The server itself, stopped as systemd stops it.
        let mut server = Command::new("/bin/sh")
            .args(["-c", &shell_line(&unit, "ExecStart")])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid_file = run_dir.join("apache2.pid");
        let listening = loop {
            // Debian's tree listens on port 80; the PidFile says it started.
            if pid_file.exists() && std::net::TcpStream::connect("127.0.0.1:80").is_ok() {
                break true;
            }
            if Instant::now() > deadline || matches!(server.try_wait(), Ok(Some(_))) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stopped = loop {
            if let Ok(Some(status)) = server.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = server.kill();
                let _ = server.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (listening, stopped, pid_file.exists())
    });
    if made {
        let _ = std::fs::remove_dir_all(run_dir);
    }
    assert!(check.status.success(), "ExecStartPre failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&check.stdout), "Syntax OK\n");
    let (listening, stopped, pid_left) = started.expect("checked");
    assert!(listening, "ExecStart's wsgate did not listen on port 80");
    assert!(
        stopped.is_some_and(|s| s.success()),
        "SIGTERM did not stop it cleanly: {stopped:?}"
    );
    assert!(!pid_left, "the PidFile is left after the stop");
}
