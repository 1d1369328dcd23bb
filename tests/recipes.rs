//! Two recipes that real projects publish for Apache httpd, run unchanged on
//! wsgate with the real software behind them and the real clients in front
//! (issue 7):
//!
//! - Socket.IO's "Using multiple nodes" → Apache HTTPD configuration
//!   (`tests/recipes/socketio-httpd.conf`): two `balancer://` groups, the
//!   `%{HTTP:Upgrade}` rewrite rules choosing between them, and the
//!   `Header add Set-Cookie "SERVERID=sticky.%{BALANCER_WORKER_ROUTE}e…"
//!   env=BALANCER_ROUTE_CHANGED` line that gives each client its route.
//!   Behind it, a python-socketio server in two processes
//!   (`tests/recipes/socketio_server.py`); in front, the python-socketio
//!   client (`tests/recipes/socketio_client.py`), which starts with
//!   long-polling and upgrades to WebSocket.
//! - JupyterHub's "Using a reverse proxy" → Apache
//!   (`tests/recipes/jupyterhub-httpd.conf`): the WebSocket `RewriteRule …
//!   ws://… [P,L]` beside `<Location "/">` with `ProxyPreserveHost`,
//!   `ProxyPass`, `ProxyPassReverse` and `RequestHeader set
//!   "X-Forwarded-Proto" expr=%{REQUEST_SCHEME}`, in front of a single-user
//!   `jupyter_server` with an ipykernel; the client
//!   (`tests/recipes/jupyter_kernel_client.py`) logs in as a browser does,
//!   starts a kernel over REST and runs `print(6*7)` over the kernel's
//!   WebSocket.
//!
//! The Python side lives in a virtual environment outside the repository,
//! made by `tests/recipes/setup.sh` (pinned versions in
//! `tests/recipes/requirements.txt`). Its interpreter is
//! `$WSGATE_RECIPES_PYTHON`, by default `/tmp/wsgate-recipes-venv/bin/python`;
//! when it is missing the tests print `SKIP` and pass, except under
//! `CI=true`, where they fail.
//!
//! Every process started here has a deadline and is ended by its id when
//! the test ends, however it ends.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEFAULT_PYTHON: &str = "/tmp/wsgate-recipes-venv/bin/python";

/// The recipes' folder in the source tree.
fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes")
}

/// The venv's interpreter, checked to import what the recipes need; `None`
/// (after a loud SKIP) when it is not there, a panic under `CI=true`.
fn venv_python() -> Option<PathBuf> {
    let python = PathBuf::from(
        std::env::var("WSGATE_RECIPES_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.to_string()),
    );
    let imports =
        "import socketio, engineio, aiohttp, requests, websocket, jupyter_server, ipykernel";
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", imports])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why = format!(
        "{} is missing or cannot import the recipes' packages; run tests/recipes/setup.sh \
         (or point WSGATE_RECIPES_PYTHON at a python that has tests/recipes/requirements.txt)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("recipes: {why}");
    }
    eprintln!("\n**********\nSKIP: recipes test not run: {why}\n**********\n");
    None
}

/// A Python server started for a test, in a process group of its own, its
/// output in a log file, ended in `Drop` by its id: SIGTERM (on which
/// jupyter_server shuts its kernels down; a kernel whose server is gone
/// also exits by itself, ipykernel watches its parent), up to 5 s for a
/// clean exit, then SIGKILL to the process group.
struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(
        name: &str,
        python: &Path,
        args: &[String],
        envs: &[(&str, PathBuf)],
        log: PathBuf,
    ) -> Server {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(python);
        cmd.args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Server {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server accepts connections on `port`, at most `limit`.
    fn wait_port(&mut self, port: u16, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening:\n{}",
                    self.name,
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not listen on 127.0.0.1:{port} within {limit:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group: the server if it is still there, and what it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// What a client script printed and how it ended.
struct ClientRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl ClientRun {
    /// The lines whose first word is `key`, without it (`""` for a line
    /// that is only `key`).
    fn lines(&self, key: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| match l.split_once(' ') {
                Some((k, rest)) if k == key => Some(rest.to_string()),
                None if l == key => Some(String::new()),
                _ => None,
            })
            .collect()
    }
}

impl std::fmt::Display for ClientRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs a client script to its end, at most `limit` (then kills it, by its
/// id, and panics).
fn run_client(python: &Path, dir: &Path, tag: &str, args: &[String], limit: Duration) -> ClientRun {
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let mut child = Command::new(python)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start client {tag}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = ClientRun {
        ok: status.is_some_and(|s| s.success()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    if status.is_none() {
        panic!("client {tag} did not finish within {limit:?}\n{run}");
    }
    run
}

fn script(name: &str) -> String {
    recipes_dir().join(name).display().to_string()
}

/// The Socket.IO recipe: every client keeps one member for its whole
/// session — the long-polling handshake, the polling requests and the
/// WebSocket after the upgrade — because of the route cookie that the
/// recipe's `Header add Set-Cookie … env=BALANCER_ROUTE_CHANGED` gives it.
#[test]
fn socketio_recipe_two_members_sticky_polling_then_websocket() {
    let Some(python) = venv_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let members = ["app01", "app02"];
    let ports = [free_port(), free_port()];
    let mut servers: Vec<Server> = members
        .iter()
        .zip(ports)
        .map(|(name, port)| {
            Server::start(
                name,
                &python,
                &[
                    script("socketio_server.py"),
                    name.to_string(),
                    port.to_string(),
                ],
                &[],
                work.path().join(format!("{name}.log")),
            )
        })
        .collect();
    for (s, port) in servers.iter_mut().zip(ports) {
        s.wait_port(port, Duration::from_secs(30));
    }
    let pids: Vec<String> = servers.iter().map(|s| s.child.id().to_string()).collect();

    let recipe = std::fs::read_to_string(recipes_dir().join("socketio-httpd.conf")).unwrap();
    let gate = Wsgate::start(&format!(
        "Define APP01 127.0.0.1:{}\nDefine APP02 127.0.0.1:{}\n{recipe}",
        ports[0], ports[1]
    ));
    let url = format!("http://{}", gate.addr);
    let client = |tag: &str, mode: &str, events: usize, cookie: Option<&str>| {
        let mut args = vec![
            script("socketio_client.py"),
            url.clone(),
            mode.into(),
            events.to_string(),
        ];
        args.extend(cookie.map(str::to_string));
        run_client(&python, work.path(), tag, &args, Duration::from_secs(60))
    };
    let context = |run: &ClientRun| {
        format!(
            "{run}\n--- app01 log:\n{}\n--- app02 log:\n{}\n--- wsgate log:\n{}",
            servers[0].log(),
            servers[1].log(),
            gate.stderr()
        )
    };

    // Every event of a session acknowledged by one member, the one its
    // route cookie names; returns that member's index.
    let check_session = |run: &ClientRun, events: usize, transport: &str| -> usize {
        assert!(
            run.ok && run.lines("DONE").len() == 1,
            "client failed\n{}",
            context(run)
        );
        let cookies = run.lines("COOKIE");
        let route = cookies
            .iter()
            .find_map(|c| c.strip_prefix("SERVERID=sticky."))
            .unwrap_or_else(|| {
                panic!(
                    "no SERVERID=sticky.<route> cookie from wsgate\n{}",
                    context(run)
                )
            });
        let member = members.iter().position(|m| *m == route).unwrap_or_else(|| {
            panic!(
                "route cookie names {route:?}, not a member\n{}",
                context(run)
            )
        });
        let acks = run.lines("ACK");
        assert_eq!(acks.len(), events, "{}", context(run));
        for (i, ack) in acks.iter().enumerate() {
            let expected = format!("{i} {} {} {transport}", members[member], pids[member]);
            assert_eq!(
                ack,
                &expected,
                "event {i} answered elsewhere\n{}",
                context(run)
            );
        }
        assert_eq!(
            run.lines("TRANSPORT").last().map(String::as_str),
            Some(transport),
            "{}",
            context(run)
        );
        member
    };

    // New clients, the library's defaults: long-polling handshake, then the
    // upgrade to WebSocket, which must reach the member the handshake did.
    let mut seen = [0usize; 2];
    for n in 0..4 {
        let run = client(&format!("upgrade-{n}"), "upgrade", 5, None);
        seen[check_session(&run, 5, "websocket")] += 1;
    }
    assert!(
        seen.iter().all(|&c| c > 0),
        "four new clients all went to one member ({seen:?}): the balancer did not balance"
    );

    // Long-polling only: every event is a POST and every answer a GET, all
    // to the member of the handshake.
    let run = client("polling", "polling", 5, None);
    check_session(&run, 5, "polling");

    // A returning client that already holds the cookie of app02 stays there,
    // over polling and over the WebSocket.
    let run = client("returning", "upgrade", 3, Some("SERVERID=sticky.app02"));
    assert_eq!(check_session(&run, 3, "websocket"), 1, "{}", context(&run));

    // The members' own view: each WebSocket handshake carried the cookie of
    // the member that received it, and no request hit a member that did not
    // know its session ("Invalid session" is python-engineio's 400).
    for (s, name) in servers.iter().zip(members) {
        let log = s.log();
        assert!(
            !log.contains("Invalid session"),
            "{name} got a request of another member's session:\n{}",
            context(&run)
        );
        for line in log.lines().filter(|l| l.contains("transport=websocket")) {
            assert!(
                line.contains(&format!("cookie=SERVERID=sticky.{name}")),
                "{name}: WebSocket handshake without its route cookie: {line}\n{}",
                context(&run)
            );
        }
        assert!(
            log.contains("transport=websocket"),
            "{name} got no WebSocket:\n{log}"
        );
    }
}

/// JupyterHub's Apache recipe in front of a Jupyter server: login, REST and
/// the kernel's WebSocket, `print(6*7)` answered with a stream output `42`.
#[test]
fn jupyter_recipe_kernel_executes_code_over_websocket() {
    jupyter_recipe(false);
}

/// The same with the recipe's TLS lines as published (Mozilla's
/// intermediate suites, DH parameters, HTTP/2 offered): https:// and wss://
/// with the certificate checked by the client.
#[test]
fn jupyter_recipe_runs_over_tls_with_its_published_tls_lines() {
    jupyter_recipe(true);
}

fn jupyter_recipe(tls: bool) {
    let Some(python) = venv_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = format!("wsgate-test-{}", std::process::id());
    let home = work.path();
    let envs = [
        ("JUPYTER_RUNTIME_DIR", home.join("runtime")),
        ("JUPYTER_DATA_DIR", home.join("data")),
        ("JUPYTER_CONFIG_DIR", home.join("config")),
        ("IPYTHONDIR", home.join("ipython")),
        ("HOME", home.to_path_buf()),
    ];
    let args: Vec<String> = [
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        &format!("--ServerApp.port={port}"),
        "--ServerApp.port_retries=0",
        &format!("--IdentityProvider.token={token}"),
        "--ServerApp.open_browser=False",
        &format!("--ServerApp.root_dir={}", home.display()),
        // CI runs as root; Jupyter refuses root without this.
        "--allow-root",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut jupyter = Server::start(
        "jupyter_server",
        &python,
        &args,
        &envs,
        home.join("jupyter.log"),
    );
    jupyter.wait_port(port, Duration::from_secs(60));

    let recipe = std::fs::read_to_string(recipes_dir().join("jupyterhub-httpd.conf")).unwrap();
    // Over TLS: a certificate for 127.0.0.1 from a test CA, and the Defines
    // the recipe's TLS lines name.
    let ca = common::pki::Ca::new();
    let defines = if tls {
        let issued = ca.issue("127.0.0.1");
        let dhparam = ca.dir.path().join("dhparam.pem");
        std::fs::write(&dhparam, "not read by wsgate\n").unwrap();
        format!(
            "Define TLS\nDefine CERT {}\nDefine KEY {}\nDefine DHPARAM {}\n",
            issued.cert.display(),
            issued.key.display(),
            dhparam.display()
        )
    } else {
        String::new()
    };
    let gate = Wsgate::start(&format!(
        "{defines}Define JUPYTER 127.0.0.1:{port}\n{recipe}"
    ));
    let mut args = vec![
        script("jupyter_kernel_client.py"),
        gate.addr.to_string(),
        token.clone(),
    ];
    if tls {
        args.push(ca.ca_pem_file().display().to_string());
    }
    let run = run_client(&python, home, "kernel", &args, Duration::from_secs(120));
    let context = format!(
        "{run}\n--- jupyter log:\n{}\n--- wsgate log:\n{}",
        jupyter.log(),
        gate.stderr()
    );
    assert!(
        run.ok && run.lines("DONE").len() == 1,
        "client failed\n{context}"
    );
    // ProxyPreserveHost on: Jupyter names its login cookie after the Host it
    // sees, which must be wsgate's, not its own.
    let login = run.lines("LOGIN");
    let cookie = format!("username-127-0-0-1-{}", gate.addr.port());
    assert!(
        login.len() == 1 && login[0].starts_with("302 ") && login[0].contains(&cookie),
        "login through wsgate: expected a 302 and the cookie {cookie}\n{context}"
    );
    assert_eq!(run.lines("KERNEL").len(), 1, "{context}");
    assert_eq!(
        run.lines("STREAM"),
        vec!["stdout 42\\n".to_string()],
        "{context}"
    );
    assert_eq!(run.lines("REPLY"), vec!["ok".to_string()], "{context}");
    // The recipe's `Header always set Strict-Transport-Security`.
    assert!(
        run.lines("HEADER")
            .contains(&"strict-transport-security: max-age=63072000".to_string()),
        "no HSTS header from the recipe's Header line\n{context}"
    );
}
