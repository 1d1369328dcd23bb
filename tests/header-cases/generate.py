#!/usr/bin/python3
"""Ground-truth generator for wsgate's mod_headers / mod_setenvif / mod_env subset.

Runs every case below against the real Apache httpd installed on this machine
(/usr/sbin/apache2, Debian package apache2, modules in /usr/lib/apache2/modules)
and writes the observed results in the wsgate header-case format.

Usage (as root, Debian apache2 installed):
    python3 tests/header-cases/generate.py [--out FILE] [--only NAME[,NAME...]] [--keep] [--verbose]
Default --out is /work/main/tests/header-cases/apache-2.4.71.txt; --only prints the
selected cases instead of writing; --keep leaves the per-case Apache dirs in
$HEADERS_TRUTH_TMP (default /tmp/headers-truth/runs).

Per case: a private temp dir with its own config (ServerRoot, PidFile, ErrorLog,
DefaultRuntimeDir, Mutex, an empty DocumentRoot, all inside it), Apache started in
the foreground with `apache2 -f FILE -DFOREGROUND`, one raw-socket request, Apache
stopped by PID (SIGTERM to the foreground parent).
Two recording backends (standard library only) on 127.0.0.1 log the exact request
head they received and answer with the case's configured response head (body "ok"
when Content-Length: 2; a 101 response keeps the socket open until the peer closes).
BACKEND in a config is the first backend, BACKEND2 the second.
Two lines beyond the brief's format: `expect-client-present: NAME` (value varies per
run: %t, %D, %i; the note says its shape) and `expect-status: none` (Apache sent no
response head: its child crashed, see the note).  Header lines of a case are written
with backslash-r / backslash-xNN escapes for control bytes other than tab; send the raw byte.
Configuration errors (CONFIG_ERRORS) are checked with `apache2 -t` and printed only.
Every expectation written is what Apache did; nothing is filled in by hand except
the optional per-case note text.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

APACHE = "/usr/sbin/apache2"
MODDIR = "/usr/lib/apache2/modules"
RUNS = os.environ.get("HEADERS_TRUTH_TMP", "/tmp/headers-truth/runs")
DEFAULT_OUT = "/work/main/tests/header-cases/apache-2.4.71.txt"

MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_http_module", "mod_proxy_http.so"),
    ("proxy_wstunnel_module", "mod_proxy_wstunnel.so"),
    ("headers_module", "mod_headers.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("env_module", "mod_env.so"),
    ("rewrite_module", "mod_rewrite.so"),
]
BALANCER_MODULES = [
    ("slotmem_shm_module", "mod_slotmem_shm.so"),
    ("proxy_balancer_module", "mod_proxy_balancer.so"),
    ("lbmethod_byrequests_module", "mod_lbmethod_byrequests.so"),
]

DEFAULT_RESPONSE = ["HTTP/1.1 200 OK", "Content-Length: 2"]

# names compared
BACKEND_NAMES = re.compile(r"(?i)^(x-.*|host)$")
BACKEND_OPTIONAL = ("via", "cookie", "user-agent")  # compared when the case mentions them
CLIENT_NAMES = re.compile(r"(?i)^(x-.*|set-cookie|cache-control|vary|location|access-control-.*)$")

# ---------------------------------------------------------------- backends


class Backend:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (request_line, [(name, value)])
        self.response = DEFAULT_RESPONSE
        me = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                s.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = s.recv(65536)
                        if not d:
                            break
                        buf += d
                except OSError:
                    pass
                if not buf:
                    return
                head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                lines = head.split("\r\n")
                hdrs = []
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    hdrs.append((k, v.strip(" \t")))
                with me.lock:
                    me.requests.append((lines[0], hdrs))
                    resp = list(me.response)
                out = "\r\n".join(resp) + "\r\n\r\n"
                data = out.encode("latin-1")
                if any(re.fullmatch(r"(?i)content-length:\s*2", l) for l in resp):
                    data += b"ok"
                try:
                    s.sendall(data)
                    if resp[0].split()[1] == "101":
                        s.settimeout(3)
                        while s.recv(65536):
                            pass
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.addr = "127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def take(self):
        with self.lock:
            r, self.requests = self.requests, []
            return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

# ---------------------------------------------------------------- apache


def skeleton(d, port, extra_modules):
    lines = [
        "ServerRoot %s" % d,
        "PidFile %s/httpd.pid" % d,
        "ErrorLog %s/error.log" % d,
        "DefaultRuntimeDir %s" % d,
        "Mutex file:%s default" % d,
        "DocumentRoot %s/htdocs" % d,
    ]
    for mod, so in MODULES + extra_modules:
        lines.append("LoadModule %s %s/%s" % (mod, MODDIR, so))
    lines += [
        "ServerLimit 1",
        "ThreadsPerChild 16",
        "MaxRequestWorkers 16",
        "User nobody",
        "Group nogroup",
        "ServerName proxy.test",
        "Listen 127.0.0.1:%d" % port,
        "LogLevel debug headers:trace2 setenvif:trace2",
    ]
    return lines


class ConfigError(Exception):
    pass


class Apache:
    def __init__(self, config_lines, extra_modules=(), keep=False, tag="case"):
        self.dir = tempfile.mkdtemp(prefix="ap-%s-" % tag, dir=RUNS)
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, "htdocs"))
        os.chmod(os.path.join(self.dir, "htdocs"), 0o755)
        self.port = free_port()
        self.keep = keep
        conf = skeleton(self.dir, self.port, list(extra_modules)) + config_lines
        self.conf = os.path.join(self.dir, "httpd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([APACHE, "-f", self.conf, "-DFOREGROUND"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                log = self.errorlog()
                self.stop()
                raise ConfigError(out.strip() + "\n" + log)
            try:
                c = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
                c.close()
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("apache did not start")
                time.sleep(0.05)

    def errorlog(self):
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # the foreground parent, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

# ---------------------------------------------------------------- client


def send(port, method, target, headers):
    names = [h.split(":", 1)[0].strip().lower() for h in headers]
    req = "%s %s HTTP/1.1\r\n" % (method, target)
    if "host" not in names:
        req += "Host: proxy.test\r\n"
    for h in headers:
        req += h + "\r\n"
    if "connection" not in names:
        req += "Connection: close\r\n"
    req += "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(req.encode("latin-1"))
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m:
            n = int(m.group(1))
            s.settimeout(2)
            while len(rest) < n:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
    except socket.timeout:
        pass
    s.close()
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    hdrs = []
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs.append((k.strip(), v.strip(" \t")))
    return status, hdrs

# ---------------------------------------------------------------- cases

CASES = []

NOTES = {
    "resp-merge-vary": "Vary values are joined with ',' (no space) on output, whatever produced them",
    "setenvif-cors-origin-recipe": "Vary values are joined with ',' (no space) on output",
    "resp-edit-star-empty-match": "edit* with a pattern that can match the empty string: the Apache child crashed and the connection closed with no response; wsgate should not copy this",
    "resp-edit-star-anchor": "edit* with a pattern that can match the empty string: the Apache child crashed and the connection closed with no response; wsgate should not copy this",
    "resp-echo-replaces-backend-value": "echo adds the client's value after the backend's; it does not replace it",
    "cond-same-name-in-both-tables": "always (err_headers_out) value is sent before the onsuccess value",
    "cond-always-unset-keeps-backend-header": "backend headers are in the onsuccess table, so 'always unset' does not remove them",
    "cond-onsuccess-unset-on-backend-404": "a proxied error response still goes through the onsuccess table",
    "early-in-location": "accepted in <Location> by the config check, but the early rule has no effect there",
    "cond-websocket-101": "neither onsuccess nor always rules touch the 101 response",
    "cond-websocket-101-unset-and-edit": "neither onsuccess nor always rules touch the 101 response",
    "cond-websocket-101-http-upgrade-param": "neither onsuccess nor always rules touch the 101 response",
    "early-response-header": "an early Header rule acts before the proxy builds the response; the backend's headers replace the table, so nothing is left",
    "early-and-late-order": "early rules run at post-read-request, the others at fixups",
    "late-not-seen-by-setenvif": "server-context SetEnvIf runs at post-read-request, before non-early RequestHeader",
    "setenvif-bang-cannot-unset-setenv": "SetEnv runs at fixups, after server-context SetEnvIf",
    "setenvif-request-uri-decoded": "in server context SetEnvIf runs before the URI is decoded: Request_URI is /a%20b",
    "setenvif-request-uri-raw-in-server-context": "in server context SetEnvIf runs before the URI is decoded",
    "setenvif-request-uri-decoded-in-location": "in <Location> context SetEnvIf runs at header-parser time, on the decoded URI",
    "setenvif-missing-header-empty-regex": "a missing header is matched as the empty string",
    "expr-http-equals-true": "%{HTTP:X} in an expr condition adds the header name to Vary",
    "expr-regex-uri-match": "ap_expr /regex/ cannot contain an escaped slash (\\/ is a config error); use m#...#",
    "req-xff-unset": "the unset removes the client's value; mod_proxy_http then adds its own",
    "req-host-set": "without ProxyPreserveHost the backend Host is the worker's; X-Forwarded-Host carries the rewritten Host",
    "inj-crlf-in-request-uri-to-request": "APACHE FORWARDS THE RAW CR LF: the decoded REQUEST_URI put CR LF into X-U and the backend saw a separate X-Injected header; wsgate must not reproduce this (issue 7: never emit CR/LF/NUL) -- treat this case as a known Apache flaw, not as the target",
    "inj-crlf-in-request-uri-to-response": "response side: Apache's header check refuses the value and answers 500",
    "inj-edit-replacement-literal-backslash-n": "the config parser keeps \\r\\n in the replacement literally; mod_headers' edit turns them into CR LF and the response check (AH02430) answers 500",
    "inj-lf-in-setenvif-capture-to-response": "server-context SetEnvIf sees the raw (still percent-encoded) URI, so no LF reaches the value",
    "inj-lf-in-setenvif-capture-to-request": "server-context SetEnvIf sees the raw (still percent-encoded) URI, so no LF reaches the value",
    "inj-bare-cr-in-header": "the header line is written with the escape \\r: send the raw CR byte",
    "inj-control-chars-echo": "the header line is written with the escape \\x01: send the raw byte (the tab is a raw tab)",
    "inj-nul-in-request-uri": "%00 in the path: Apache answers 404 itself",
    "inj-obs-fold-echo": "the second header line is an obs-fold continuation (starts with a space): send it raw",
    "sio-route-in-query-parameter": "the sticky session name is also looked up in the query string",
    "sio-balancer-env-in-requestheader": "BALANCER_* variables are set after RequestHeader has run (fixups), so the condition is false for the request",
    "sio-full-recipe-websocket-no-cookie": "the route cookie is not added to the 101 (no Header rule touches a 101)",
    "fmt-http-var-is-not-env": "HTTP_* are not in the environment table for mod_headers",
    "ctx-two-locations-in-file-order": "Location sections merge in file order, not by length",
}


def case(name, config, request, headers=(), response=None, note=None, balancer=False,
         varying=(), watch_backend=(), watch_client=()):
    """config: string, one directive per line (BACKEND / BACKEND2 placeholders).
    varying: client header names whose value changes per run (%t, %D): only presence
    is written.  watch_*: extra names for which an absent line is written when missing."""
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name
    assert name not in [c["name"] for c in CASES], name
    method, target = request.split(" ", 1)
    lines = [l.strip() for l in config.strip().splitlines() if l.strip()]
    CASES.append(dict(name=name, config=lines, method=method, target=target,
                      headers=list(headers), response=response, note=note or NOTES.get(name),
                      balancer=balancer, varying=list(varying),
                      watch_backend=list(watch_backend), watch_client=list(watch_client)))


def directive_names(lines):
    """Header names that Header / RequestHeader directives of the config act on."""
    req, resp = set(), set()
    for l in lines:
        try:
            t = shlex.split(l, posix=True)
        except ValueError:
            t = l.split()
        if not t or t[0].lower() not in ("header", "requestheader"):
            continue
        i = 1
        if t[0].lower() == "header" and len(t) > 1 and t[1].lower() in ("always", "onsuccess"):
            i = 2
        if len(t) <= i + 1:
            continue
        action, hname = t[i].lower(), t[i + 1]
        if action == "echo":
            continue
        (req if t[0].lower() == "requestheader" else resp).add(hname)
    return req, resp


PP = "ProxyPass / http://BACKEND/\n"
R200 = lambda *h: ["HTTP/1.1 200 OK", "Content-Length: 2"] + list(h)
WSH = ["Upgrade: websocket", "Connection: Upgrade",
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
R101 = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "X-B: backend"]

# --- Header actions on a proxied 200 ------------------------------------------
case("resp-set-new", PP + "Header set X-A hello", "GET /x")
case("resp-set-replaces-all-backend-values", PP + "Header set X-B new", "GET /x",
     response=R200("X-B: one", "X-B: two"))
case("resp-append-to-backend-value", PP + "Header append X-B three", "GET /x",
     response=R200("X-B: one", "X-B: two"))
case("resp-append-when-absent", PP + "Header append X-A first", "GET /x")
case("resp-add-keeps-separate-lines", PP + "Header add X-B two", "GET /x",
     response=R200("X-B: one"))
case("resp-merge-token-present", PP + "Header merge X-B b", "GET /x",
     response=R200("X-B: a, b"))
case("resp-merge-token-new", PP + "Header merge X-B c", "GET /x",
     response=R200("X-B: a, b"))
case("resp-merge-is-case-sensitive", PP + "Header merge X-B B", "GET /x",
     response=R200("X-B: a, b"))
case("resp-merge-when-absent", PP + "Header merge X-A c", "GET /x")
case("resp-merge-quoted-token", PP + 'Header merge X-B "\\"b\\""', "GET /x",
     response=R200('X-B: a, "b"'))
case("resp-setifempty-present", PP + "Header setifempty X-B new", "GET /x",
     response=R200("X-B: one"))
case("resp-setifempty-absent", PP + "Header setifempty X-A new", "GET /x")
case("resp-setifempty-empty-value", PP + "Header setifempty X-B new", "GET /x",
     response=R200("X-B:"))
case("resp-unset-backend-header", PP + "Header unset X-B", "GET /x",
     response=R200("X-B: one", "X-B: two", "X-C: keep"))
case("resp-unset-set-cookie", PP + "Header unset Set-Cookie", "GET /x",
     response=R200("Set-Cookie: a=1", "Set-Cookie: b=2"))
case("resp-add-set-cookie-after-backend", PP + 'Header add Set-Cookie "c=3; path=/"', "GET /x",
     response=R200("Set-Cookie: a=1"))
case("resp-set-cache-control", PP + 'Header set Cache-Control "no-store"', "GET /x",
     response=R200("Cache-Control: max-age=60"))
case("resp-merge-vary", PP + "Header merge Vary Origin", "GET /x",
     response=R200("Vary: Accept-Encoding"))
case("resp-directives-apply-in-order", PP + "Header set X-A one\nHeader append X-A two\n"
     "Header unset X-A\nHeader add X-A three", "GET /x")
case("resp-header-name-case-insensitive", PP + "Header set x-b lower", "GET /x",
     response=R200("X-B: upper"))

# --- edit / edit* ---------------------------------------------------------------
case("resp-edit-first-match", PP + "Header edit X-B foo baz", "GET /x",
     response=R200("X-B: foo-bar-foo"))
case("resp-edit-star-all-matches", PP + "Header edit* X-B foo baz", "GET /x",
     response=R200("X-B: foo-bar-foo"))
case("resp-edit-location-capture",
     PP + r"Header edit Location ^http://internal\.test/(.*)$ https://public.test/app/$1",
     "GET /x", response=["HTTP/1.1 302 Found", "Location: http://internal.test/next?a=1",
                         "Content-Length: 2"])
case("resp-edit-absent-header-noop", PP + "Header edit X-A foo baz", "GET /x")
case("resp-edit-each-instance", PP + "Header edit X-B ^a A", "GET /x",
     response=R200("X-B: a1", "X-B: b2", "X-B: a3"))
case("resp-edit-no-match-unchanged", PP + "Header edit X-B zzz y", "GET /x",
     response=R200("X-B: foo"))
case("resp-edit-to-empty-value", PP + "Header edit X-B ^.*$ \"\"", "GET /x",
     response=R200("X-B: foo"))
case("resp-edit-star-empty-match", PP + "Header edit* X-B x* -", "GET /x",
     response=R200("X-B: abc"))
case("resp-edit-star-anchor", PP + 'Header edit* X-B "^" ">"', "GET /x",
     response=R200("X-B: abc"))
case("resp-edit-whole-match-backref", PP + "Header edit X-B (b+) [$0|$1]", "GET /x",
     response=R200("X-B: abbbc"))
case("resp-edit-is-case-sensitive", PP + "Header edit X-B FOO baz", "GET /x",
     response=R200("X-B: foo"))

# --- echo ------------------------------------------------------------------------
case("resp-echo-regex", PP + "Header echo ^X-E", "GET /x",
     ["X-E1: a", "X-E2: b", "X-Other: c"])
case("resp-echo-unanchored", PP + "Header echo Other", "GET /x",
     ["X-E1: a", "X-Other: c"])
case("resp-echo-replaces-backend-value", PP + "Header echo ^X-B$", "GET /x",
     ["X-B: from-client"], response=R200("X-B: from-backend"))

# --- onsuccess / always on various responses --------------------------------------
BOTH = "Header set X-S onsuccess-rule\nHeader always set X-Al always-rule\n"
case("cond-200-onsuccess-and-always", PP + BOTH, "GET /x")
case("cond-same-name-in-both-tables", PP + "Header set X-A one\nHeader always set X-A two",
     "GET /x")
case("cond-always-unset-keeps-backend-header", PP + "Header always unset X-B", "GET /x",
     response=R200("X-B: one"))
case("cond-onsuccess-unset-on-backend-404", PP + "Header unset X-B", "GET /x",
     response=["HTTP/1.1 404 Not Found", "Content-Length: 2", "X-B: one"])
case("cond-backend-404", PP + BOTH, "GET /x",
     response=["HTTP/1.1 404 Not Found", "Content-Length: 2", "X-B: one"])
case("cond-backend-500", PP + BOTH, "GET /x",
     response=["HTTP/1.1 500 Internal Server Error", "Content-Length: 2", "X-B: one"])
case("cond-backend-302", PP + BOTH, "GET /x",
     response=["HTTP/1.1 302 Found", "Location: http://BACKEND/y", "Content-Length: 2"])
case("cond-backend-204", PP + BOTH, "GET /x", response=["HTTP/1.1 204 No Content"])
case("cond-backend-down-503", "ProxyPass / http://127.0.0.1:1/\n" + BOTH, "GET /x",
     note="127.0.0.1:1 refuses connections: proxy-generated 503")
case("cond-unmapped-path-404", "ProxyPass /app/ http://BACKEND/\n" + BOTH, "GET /other",
     note="no ProxyPass for /other; Apache's own 404 (empty DocumentRoot)")
case("cond-websocket-101", "ProxyPass /ws ws://BACKEND/ws\n" + BOTH, "GET /ws", WSH,
     response=R101)
case("cond-websocket-101-unset-and-edit",
     "ProxyPass /ws ws://BACKEND/ws\nHeader unset X-B\nHeader always edit X-B back front",
     "GET /ws", WSH, response=R101)
case("cond-cors-always-on-backend-error",
     PP + 'Header always set Access-Control-Allow-Origin "*"\n'
     'Header set Access-Control-Allow-Credentials "true"', "GET /x",
     response=["HTTP/1.1 500 Internal Server Error", "Content-Length: 2"])

# --- RequestHeader --------------------------------------------------------------
case("req-set-new", PP + "RequestHeader set X-R v", "GET /x")
case("req-set-replaces-client", PP + "RequestHeader set X-R v", "GET /x",
     ["X-R: a", "X-R: b"])
case("req-append", PP + "RequestHeader append X-R v", "GET /x", ["X-R: a"])
case("req-add", PP + "RequestHeader add X-R v", "GET /x", ["X-R: a"])
case("req-merge-present", PP + "RequestHeader merge X-R a", "GET /x", ["X-R: a, b"])
case("req-merge-new", PP + "RequestHeader merge X-R c", "GET /x", ["X-R: a, b"])
case("req-setifempty-present", PP + "RequestHeader setifempty X-R v", "GET /x", ["X-R: a"])
case("req-setifempty-absent", PP + "RequestHeader setifempty X-R v", "GET /x")
case("req-unset", PP + "RequestHeader unset X-R", "GET /x", ["X-R: a", "X-Keep: k"])
case("req-edit", PP + "RequestHeader edit X-R (\\d+) <$1>", "GET /x", ["X-R: a1b22c"])
case("req-edit-star", PP + "RequestHeader edit* X-R (\\d+) <$1>", "GET /x", ["X-R: a1b22c"])
case("req-unset-user-agent", PP + "RequestHeader unset User-Agent", "GET /x",
     ["User-Agent: curl/8"])
case("req-set-cookie-header", PP + 'RequestHeader edit Cookie "(^|; )secret=[^;]*" ""',
     "GET /x", ["Cookie: a=1; secret=xyz; b=2"])
case("req-xff-set", PP + "RequestHeader set X-Forwarded-For 9.9.9.9", "GET /x",
     ["X-Forwarded-For: 1.1.1.1"])
case("req-xff-unset", PP + "RequestHeader unset X-Forwarded-For", "GET /x",
     ["X-Forwarded-For: 1.1.1.1"])
case("req-xff-append", PP + "RequestHeader append X-Forwarded-For 2.2.2.2", "GET /x",
     ["X-Forwarded-For: 1.1.1.1"])
case("req-xff-edit", PP + r"RequestHeader edit X-Forwarded-For ^1\.1\.1\.1$ hidden", "GET /x",
     ["X-Forwarded-For: 1.1.1.1"])
case("req-xfh-unset", PP + "RequestHeader unset X-Forwarded-Host\n"
     "RequestHeader unset X-Forwarded-Server", "GET /x")
case("req-host-set", PP + "RequestHeader set Host other.test", "GET /x")
case("req-host-set-preservehost", PP + "ProxyPreserveHost On\nRequestHeader set Host other.test",
     "GET /x")
case("req-host-edit-preservehost", PP + r"ProxyPreserveHost On" + "\n"
     r"RequestHeader edit Host ^proxy\.test$ internal.test", "GET /x")
case("req-forwarded-proto-jupyter",
     '<Location "/">\nProxyPreserveHost on\nProxyPass http://BACKEND/\n'
     'ProxyPassReverse http://BACKEND/\nRequestHeader set "X-Forwarded-Proto" expr=%{REQUEST_SCHEME}\n'
     '</Location>', "GET /api/kernels")
case("req-forwarded-proto-replaces-client",
     PP + 'RequestHeader set "X-Forwarded-Proto" expr=%{REQUEST_SCHEME}', "GET /x",
     ["X-Forwarded-Proto: https"])
case("req-header-on-websocket-upgrade",
     "ProxyPass /ws ws://BACKEND/ws\nRequestHeader set X-R ws-v\nRequestHeader unset X-Drop",
     "GET /ws", WSH + ["X-Drop: d"], response=R101)

# --- early -------------------------------------------------------------------------
case("early-seen-by-setenvif",
     PP + "RequestHeader set X-R early-v early\nSetEnvIf X-R ^early-v SAW=yes\n"
     "RequestHeader set X-Saw %{SAW}e", "GET /x")
case("late-not-seen-by-setenvif",
     PP + "RequestHeader set X-R late-v\nSetEnvIf X-R ^late-v SAW=yes\n"
     "RequestHeader set X-Saw %{SAW}e", "GET /x")
case("early-and-late-order",
     PP + "RequestHeader append X-R late\nRequestHeader append X-R early early", "GET /x",
     ["X-R: client"])
case("early-response-header", PP + "Header set X-A early-resp early", "GET /x")

# --- env= with SetEnv / SetEnvIf -----------------------------------------------------
case("env-setenv-true", PP + "SetEnv FOO bar\nHeader set X-A yes env=FOO\n"
     "RequestHeader set X-R yes env=FOO", "GET /x")
case("env-negated-with-setenv", PP + "SetEnv FOO bar\nHeader set X-A yes env=!FOO\n"
     "RequestHeader set X-R yes env=!FOO", "GET /x")
case("env-negated-unset", PP + "Header set X-A yes env=!FOO\nRequestHeader set X-R yes env=!FOO",
     "GET /x")
case("env-value-format", PP + "SetEnv FOO bar\nHeader set X-A \"v=%{FOO}e\"\n"
     "RequestHeader set X-R \"v=%{FOO}e\"", "GET /x")
case("env-empty-value-counts-as-set", PP + 'SetEnv FOO ""\nHeader set X-A yes env=FOO', "GET /x")
case("setenvif-header-capture",
     PP + r"SetEnvIf X-Client ^(\w+)-(\d+)$ CL=$2-$1" + "\nRequestHeader set X-CL %{CL}e",
     "GET /x", ["X-Client: abc-42"])
case("setenvif-header-no-match",
     PP + r"SetEnvIf X-Client ^(\w+)-(\d+)$ CL=$2-$1" + "\nRequestHeader set X-CL %{CL}e env=CL",
     "GET /x", ["X-Client: abc"])
case("setenvif-request-uri",
     PP + "SetEnvIf Request_URI ^/api/ IS_API\nHeader set X-Api %{IS_API}e env=IS_API",
     "GET /api/v1?q=1")
case("setenvif-request-uri-excludes-query",
     PP + r"SetEnvIf Request_URI q=1 HASQ" + "\nHeader set X-Q %{HASQ}e env=HASQ",
     "GET /api/v1?q=1")
case("setenvif-request-uri-decoded",
     PP + r"SetEnvIf Request_URI ^/a\sb$ SP" + "\nHeader set X-Sp %{SP}e env=SP",
     "GET /a%20b")
case("setenvif-remote-addr",
     PP + r"SetEnvIf Remote_Addr ^127\.0\.0\.1$ LOCAL=local" + "\nRequestHeader set X-L %{LOCAL}e",
     "GET /x")
case("setenvif-request-method",
     PP + "SetEnvIf Request_Method ^POST$ IS_POST\nHeader set X-Post %{IS_POST}e env=IS_POST",
     "POST /x", ["Content-Length: 0"])
case("setenvif-request-method-no-match",
     PP + "SetEnvIf Request_Method ^POST$ IS_POST\nHeader set X-Post %{IS_POST}e env=IS_POST",
     "GET /x")
case("setenvif-unset-with-bang",
     PP + "SetEnvIf X-A . FOO=1\nSetEnvIf X-B . !FOO\nHeader set X-Foo %{FOO}e", "GET /x",
     ["X-A: a", "X-B: b"])
case("setenvif-bang-cannot-unset-setenv",
     PP + "SetEnv FOO fromsetenv\nSetEnvIf X-B . !FOO\nHeader set X-Foo %{FOO}e", "GET /x",
     ["X-B: b"])
case("setenvif-multiple-vars-and-last-wins",
     PP + "SetEnvIf X-A . V1=first V2\nSetEnvIf X-A a V1=second\n"
     "RequestHeader set X-V \"%{V1}e/%{V2}e\"", "GET /x", ["X-A: a"])
case("setenvif-case-sensitive",
     PP + "SetEnvIf X-Client ^abc M=1\nHeader set X-M %{M}e env=M", "GET /x", ["X-Client: ABC"])
case("setenvifnocase-match",
     PP + "SetEnvIfNoCase X-Client ^abc M=1\nHeader set X-M %{M}e env=M", "GET /x",
     ["X-Client: ABC"])
case("setenvifnocase-capture-keeps-case",
     PP + "SetEnvIfNoCase X-Client ^(abc)$ M=$1\nHeader set X-M %{M}e", "GET /x",
     ["X-Client: AbC"])
case("setenvif-header-name-regex",
     PP + "SetEnvIf ^X-Cust.*$ ^yes$ CUST\nHeader set X-Cust-Seen %{CUST}e env=CUST", "GET /x",
     ["X-Custom-Flag: yes"])
case("setenvif-missing-header-empty-regex",
     PP + "SetEnvIf X-Missing ^$ EMPTY\nHeader set X-E %{EMPTY}e env=EMPTY", "GET /x")
case("setenvif-header-name-case-insensitive",
     PP + "SetEnvIf x-client abc M=1\nHeader set X-M %{M}e env=M", "GET /x", ["X-Client: abc"])
case("setenvif-in-location",
     PP + '<Location /api>\nSetEnvIf Request_URI ^/api/(.*)$ REST=$1\n</Location>\n'
     'RequestHeader set X-Rest %{REST}e env=REST', "GET /api/users/7")
case("setenvif-cors-origin-recipe",
     PP + r'SetEnvIf Origin "^https?://([a-z]+\.)?example\.com$" ORIGIN_OK=$0' + "\n"
     'Header set Access-Control-Allow-Origin %{ORIGIN_OK}e env=ORIGIN_OK\n'
     'Header merge Vary Origin', "GET /x", ["Origin: https://app.example.com"],
     response=R200("Vary: Accept-Encoding"))
case("setenvif-cors-origin-recipe-rejected",
     PP + r'SetEnvIf Origin "^https?://([a-z]+\.)?example\.com$" ORIGIN_OK=$0' + "\n"
     'Header set Access-Control-Allow-Origin %{ORIGIN_OK}e env=ORIGIN_OK\n'
     'Header merge Vary Origin', "GET /x", ["Origin: https://example.com.evil.test"],
     response=R200("Vary: Accept-Encoding"))

# --- expr= conditions -----------------------------------------------------------------
case("expr-regex-uri-match", PP + 'Header set X-E yes "expr=%{REQUEST_URI} =~ m#^/api/#"',
     "GET /api/x")
case("expr-regex-uri-no-match", PP + 'Header set X-E yes "expr=%{REQUEST_URI} =~ m#^/api/#"',
     "GET /other")
case("expr-request-uri-excludes-query",
     PP + 'Header set X-E yes "expr=%{REQUEST_URI} =~ /q=1/"', "GET /api?q=1")
case("expr-http-equals-true", PP + "Header set X-E yes \"expr=%{HTTP:X-A} == 'v'\"", "GET /x",
     ["X-A: v"])
case("expr-http-equals-false", PP + "Header set X-E yes \"expr=%{HTTP:X-A} == 'v'\"", "GET /x",
     ["X-A: V"])
case("expr-not-equals", PP + "Header set X-E yes \"expr=%{HTTP:X-A} != 'v'\"", "GET /x")
case("expr-n-true", PP + 'Header set X-E yes "expr=-n %{HTTP:X-A}"', "GET /x", ["X-A: v"])
case("expr-n-false", PP + 'Header set X-E yes "expr=-n %{HTTP:X-A}"', "GET /x")
case("expr-z-true", PP + 'Header set X-E yes "expr=-z %{HTTP:X-A}"', "GET /x")
case("expr-not", PP + 'Header set X-E yes "expr=! -z %{HTTP:X-A}"', "GET /x", ["X-A: v"])
case("expr-and", PP + "Header set X-E yes \"expr=-n %{HTTP:X-A} && %{HTTP:X-B} == 'b'\"",
     "GET /x", ["X-A: a", "X-B: b"])
case("expr-and-false", PP + "Header set X-E yes \"expr=-n %{HTTP:X-A} && %{HTTP:X-B} == 'b'\"",
     "GET /x", ["X-A: a"])
case("expr-or", PP + "Header set X-E yes \"expr=%{HTTP:X-A} == 'a' || %{HTTP:X-B} == 'b'\"",
     "GET /x", ["X-B: b"])
case("expr-ipmatch-true", PP + "Header set X-E yes \"expr=%{REMOTE_ADDR} -ipmatch '127.0.0.0/8'\"",
     "GET /x")
case("expr-ipmatch-false", PP + "Header set X-E yes \"expr=%{REMOTE_ADDR} -ipmatch '10.0.0.0/8'\"",
     "GET /x")
case("expr-not-regex", PP + 'Header set X-E yes "expr=%{HTTP_HOST} !~ /^proxy\\./"', "GET /x")
case("expr-http-host-var", PP + "Header set X-E yes \"expr=%{HTTP_HOST} == 'proxy.test'\"",
     "GET /x")
case("expr-condition-on-requestheader",
     PP + "RequestHeader set X-R internal \"expr=%{REMOTE_ADDR} -ipmatch '127.0.0.0/8'\"\n"
     "RequestHeader unset X-Drop \"expr=%{REQUEST_URI} =~ m#^/keep#\"", "GET /x",
     ["X-Drop: d"])
case("expr-regex-nocase-flag", PP + 'Header set X-E yes "expr=%{HTTP:X-A} =~ /^ABC$/i"', "GET /x",
     ["X-A: abc"])
case("expr-header-multiple-values",
     PP + "Header set X-E yes \"expr=%{HTTP:X-A} == 'a, b'\"", "GET /x", ["X-A: a", "X-A: b"])

# --- value formats and expr values -------------------------------------------------
case("fmt-env-unset-is-null", PP + 'Header set X-A "v=%{NOPE}e"', "GET /x")
case("fmt-percent-percent", PP + 'Header set X-A "100%% sure"', "GET /x")
case("fmt-time-and-duration", PP + 'Header set X-T "%t"\nHeader set X-D "%D"', "GET /x",
     varying=["X-T", "X-D"],
     note="X-T is t= then the request time in microseconds since the epoch; X-D is D= then microseconds since the request started; only presence is compared")
case("fmt-ssl-var-without-mod-ssl", PP + 'Header set X-A "https=%{HTTPS}s"', "GET /x")
case("fmt-http-var-is-not-env", PP + 'Header set X-A "%{HTTP_HOST}e|%{HTTP_X_A}e"', "GET /x",
     ["X-A: v"])
case("fmt-literal-text-and-env", PP + 'SetEnv U alice\nRequestHeader set X-User "user=%{U}e;ok"',
     "GET /x")
case("expr-value-request-scheme", PP + "Header set X-A expr=%{REQUEST_SCHEME}", "GET /x")
case("expr-value-concatenation", PP + 'Header set X-A "expr=%{REQUEST_SCHEME}://%{HTTP_HOST}%{REQUEST_URI}"',
     "GET /p?q=1")
case("expr-value-http-header", PP + 'RequestHeader set X-Copy "expr=%{HTTP:X-A}"', "GET /x",
     ["X-A: copied"])
case("expr-value-env", PP + 'SetEnvIf X-A (.*) V=$1\nHeader set X-A "expr=%{ENV:V}-x"', "GET /x",
     ["X-A: aa"])
case("expr-value-remote-addr", PP + "RequestHeader set X-Real-IP expr=%{REMOTE_ADDR}", "GET /x")

# --- contexts and merging ------------------------------------------------------------------
VH = lambda name, body: "<VirtualHost *>\nServerName %s\n%s\n</VirtualHost>\n" % (name, body.strip())
case("ctx-location-after-server",
     PP + "Header set X-A server\n<Location /a>\nHeader set X-A location\n</Location>", "GET /a/x")
case("ctx-location-not-matching",
     PP + "Header set X-A server\n<Location /a>\nHeader set X-A location\n</Location>", "GET /b")
case("ctx-location-append-after-server",
     PP + "Header set X-A server\n<Location /a>\nHeader append X-A location\n</Location>", "GET /a")
case("ctx-location-unset-server-rule",
     PP + "<Location />\nRequestHeader unset X-R\n</Location>\nRequestHeader set X-R server",
     "GET /x", note="server-context rule written after the Location section still runs first")
case("ctx-two-locations-in-file-order",
     PP + "<Location /a/b>\nHeader append X-A ab\n</Location>\n<Location /a>\nHeader append X-A a\n</Location>",
     "GET /a/b/c")
case("ctx-locationmatch",
     PP + "<LocationMatch \"^/v[0-9]+/\">\nHeader set X-A versioned\n</LocationMatch>", "GET /v2/x")
case("ctx-vhost-inherits-server-rules",
     PP + "Header set X-Srv server\n" + VH("v.test", "Header set X-V vhost"), "GET /x",
     ["Host: v.test"])
case("ctx-vhost-rule-after-server-rule",
     PP + "Header set X-A server\n" + VH("v.test", "Header append X-A vhost"), "GET /x",
     ["Host: v.test"])
case("ctx-vhost-rules-not-in-other-vhost",
     PP + VH("v.test", "Header set X-V vhost") + VH("w.test", "Header set X-W w"), "GET /x",
     ["Host: w.test"])
case("ctx-proxy-section",
     PP + "<Proxy \"http://BACKEND/*\">\nRequestHeader set X-R proxy-section\nHeader set X-A proxy-section\n</Proxy>",
     "GET /x")
case("ctx-location-request-and-env",
     PP + "<Location /a>\nSetEnv LOC a\n</Location>\nRequestHeader set X-R %{LOC}e env=LOC", "GET /a")

# --- injection / odd values -----------------------------------------------------------------
case("inj-crlf-in-request-uri-to-response",
     PP + "Header set X-U expr=%{REQUEST_URI}", "GET /a%0d%0aX-Injected:%20yes")
case("inj-crlf-in-request-uri-to-request",
     PP + "RequestHeader set X-U expr=%{REQUEST_URI}", "GET /a%0d%0aX-Injected:%20yes",
     watch_backend=["X-Injected"])
case("inj-lf-in-setenvif-capture-to-response",
     PP + "SetEnvIf Request_URI ^/c/(.*)$ C=$1\nHeader set X-C %{C}e", "GET /c/x%0aX-Injected:%20yes",
     watch_client=["X-Injected"])
case("inj-lf-in-setenvif-capture-to-request",
     PP + "SetEnvIf Request_URI ^/c/(.*)$ C=$1\nRequestHeader set X-C %{C}e",
     "GET /c/x%0aX-Injected:%20yes", watch_backend=["X-Injected"])
case("inj-nul-in-request-uri", PP + "Header set X-U expr=%{REQUEST_URI}", "GET /a%00b")
case("inj-obs-fold-echo", PP + "Header echo ^X-A$\nRequestHeader set X-Copy expr=%{HTTP:X-A}", "GET /x",
     ["X-A: line1", " line2"])
case("inj-bare-cr-in-header", PP + "Header echo ^X-A$", "GET /x", ["X-A: a\rX-Injected: yes"],
     watch_client=["X-Injected"])
case("inj-control-chars-echo", PP + "Header echo ^X-A$", "GET /x", ["X-A: a\tb\x01c"])
case("inj-edit-replacement-literal-backslash-n", PP + r'Header edit X-B ^(.*)$ "$1\r\nX-Injected: yes"',
     "GET /x", response=R200("X-B: v"), watch_client=["X-Injected"])
case("inj-edit-doubling", PP + "Header edit* X-B (.) $1$1", "GET /x", response=R200("X-B: ab"))


# --- additions: Request_URI raw vs decoded, explicit onsuccess, http upgrade= ----------
case("setenvif-request-uri-raw-in-server-context",
     PP + "SetEnvIf Request_URI %20 RAW\nHeader set X-Raw %{RAW}e env=RAW", "GET /a%20b")
case("setenvif-request-uri-decoded-in-location",
     PP + "<Location />\nSetEnvIf Request_URI ^/a\\sb$ SP\n</Location>\nHeader set X-Sp %{SP}e env=SP",
     "GET /a%20b")
case("cond-explicit-onsuccess-keyword", PP + "Header onsuccess set X-O v", "GET /x")
case("cond-always-env-on-backend-down",
     "ProxyPass / http://127.0.0.1:1/\nSetEnv DOWN 1\nHeader always set X-Al yes env=DOWN\n"
     "Header always set X-Not yes env=!DOWN", "GET /x")
case("cond-always-expr-on-unmapped-404",
     "ProxyPass /app/ http://BACKEND/\nHeader always set X-Al yes \"expr=%{REQUEST_STATUS} == 404\"",
     "GET /other")
case("cond-websocket-101-http-upgrade-param",
     "ProxyPass /ws http://BACKEND/ws upgrade=websocket\n" + BOTH, "GET /ws", WSH, response=R101)
case("inj-tab-in-header-echo", PP + "Header echo ^X-A$", "GET /x", ["X-A: a\tb"])
case("early-in-location", PP + "<Location /a>\nRequestHeader set X-R loc-early early\n</Location>",
     "GET /a")
case("fmt-percent-i-is-idle-workers-not-header", PP + 'Header set X-I "%{X-A}i"', "GET /x",
     ["X-A: v"], varying=["X-I"],
     note="%{...}i is not a request header: mod_headers' %i is the idle-worker count (value like i=15); only presence is compared")

# --- balancer / Socket.IO recipe ----------------------------------------------------------
SIO = """<Proxy balancer://nodes>
BalancerMember http://BACKEND route=app01
BalancerMember http://BACKEND2 route=app02
ProxySet stickysession=SERVERID
</Proxy>
ProxyPass / balancer://nodes/
Header add Set-Cookie "SERVERID=sticky.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
"""
case("sio-no-cookie-sets-route-cookie", SIO, "GET /socket.io/?EIO=4&transport=polling",
     balancer=True)
case("sio-sticky-cookie-app02", SIO, "GET /socket.io/?EIO=4&transport=polling",
     ["Cookie: SERVERID=sticky.app02"], balancer=True)
case("sio-sticky-cookie-app01", SIO, "GET /socket.io/?EIO=4&transport=polling",
     ["Cookie: io=abc; SERVERID=sticky.app01"], balancer=True)
case("sio-unknown-route-cookie", SIO, "GET /socket.io/?EIO=4&transport=polling",
     ["Cookie: SERVERID=sticky.app99"], balancer=True)
case("sio-route-in-query-parameter", SIO, "GET /socket.io/?EIO=4&SERVERID=sticky.app02",
     balancer=True)
case("sio-balancer-env-vars",
     SIO + 'Header set X-Env "name=%{BALANCER_NAME}e worker=%{BALANCER_WORKER_NAME}e '
     'route=%{BALANCER_WORKER_ROUTE}e changed=%{BALANCER_ROUTE_CHANGED}e '
     'sticky=%{BALANCER_SESSION_STICKY}e sroute=%{BALANCER_SESSION_ROUTE}e"',
     "GET /x", ["Cookie: SERVERID=sticky.app02"], balancer=True)
case("sio-balancer-env-vars-no-cookie",
     SIO + 'Header set X-Env "name=%{BALANCER_NAME}e worker=%{BALANCER_WORKER_NAME}e '
     'route=%{BALANCER_WORKER_ROUTE}e changed=%{BALANCER_ROUTE_CHANGED}e '
     'sticky=%{BALANCER_SESSION_STICKY}e sroute=%{BALANCER_SESSION_ROUTE}e"',
     "GET /x", balancer=True)
case("sio-balancer-env-in-requestheader",
     SIO + 'RequestHeader set X-Route "%{BALANCER_WORKER_ROUTE}e" env=BALANCER_ROUTE_CHANGED',
     "GET /x", balancer=True)
SIO_WS = """<Proxy balancer://http>
BalancerMember http://BACKEND route=app01
BalancerMember http://BACKEND2 route=app02
ProxySet stickysession=SERVERID
</Proxy>
<Proxy balancer://ws>
BalancerMember ws://BACKEND route=app01
BalancerMember ws://BACKEND2 route=app02
ProxySet stickysession=SERVERID
</Proxy>
RewriteEngine On
RewriteCond %{HTTP:Upgrade} =websocket [NC]
RewriteRule /(.*) balancer://ws/$1 [P,L]
RewriteCond %{HTTP:Upgrade} !=websocket [NC]
RewriteRule /(.*) balancer://http/$1 [P,L]
Header add Set-Cookie "SERVERID=sticky.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
"""
case("sio-full-recipe-websocket-sticky", SIO_WS, "GET /socket.io/?EIO=4&transport=websocket",
     WSH + ["Cookie: SERVERID=sticky.app02"], response=R101, balancer=True)
case("sio-full-recipe-websocket-no-cookie", SIO_WS, "GET /socket.io/?EIO=4&transport=websocket",
     WSH, response=R101, balancer=True)
case("sio-full-recipe-polling-no-cookie", SIO_WS, "GET /socket.io/?EIO=4&transport=polling",
     balancer=True)

# configuration errors: checked with `apache2 -t`, printed by the run, not written to the table
CONFIG_ERRORS = [
    'Header set X-E yes "expr=%{REQUEST_URI} =~ /^\\/api/"',
    'Header set X-A v early env=FOO',
    'Header set X-A "%q"',
    'RequestHeader echo ^X-A',
    'RequestHeader always set X-A v',
    'Header edit X-A',
    'Header edit X-A ( x',
    'Header set X-A v "expr=%{FOO_BAR} == 1"',
    'SetEnvIf X-A (a',
    'Header set X-A',
    'Header set X-A v env=',
]


def check_config_errors():
    d = tempfile.mkdtemp(prefix="ap-cfgerr-", dir=RUNS)
    os.mkdir(os.path.join(d, "htdocs"))
    try:
        for directive in CONFIG_ERRORS:
            conf = os.path.join(d, "t.conf")
            with open(conf, "w") as f:
                f.write("\n".join(skeleton(d, 1, []) + [directive]) + "\n")
            r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True)
            msg = (r.stdout + r.stderr).strip().splitlines()
            print("config-error %-55s -> %s" % (directive, msg[-1] if msg else ""))
    finally:
        shutil.rmtree(d, ignore_errors=True)

# ---------------------------------------------------------------- running


def mentioned(c, name):
    low = name.lower()
    pat = re.compile(r"(?<![\w-])%s(?![\w-])" % re.escape(low))
    return any(pat.search(l.lower()) for l in c["config"]) or \
        any(h.split(":", 1)[0].strip().lower() == low for h in c["headers"])


def run_case(c, backends, keep):
    b1, b2 = backends
    subst = lambda s: s.replace("BACKEND2", b2.addr).replace("BACKEND", b1.addr)
    unsubst = lambda s: s.replace(b2.addr, "BACKEND2").replace(b1.addr, "BACKEND")
    cfg = [subst(l) for l in c["config"]]
    resp = [subst(l) for l in (c["response"] or DEFAULT_RESPONSE)]
    for b in backends:
        b.response = resp
        b.take()
    try:
        ap = Apache(cfg, BALANCER_MODULES if c["balancer"] else (), keep=keep, tag=c["name"][:20])
    except ConfigError as e:
        return dict(config_error=str(e))
    try:
        status, hdrs = send(ap.port, c["method"], c["target"], c["headers"])
        time.sleep(0.1 if status is not None else 2.0)  # let the parent log a crashed child
        r1, r2 = b1.take(), b2.take()
        log = ap.errorlog()
    finally:
        ap.stop()
    return dict(status=status, hdrs=hdrs, r1=r1, r2=r2, log=log, port=ap.port, unsubst=unsubst)


def esc(h):
    return "".join(ch if ch == "\t" or ord(ch) >= 32 else
                   ("\\r" if ch == "\r" else "\\x%02x" % ord(ch)) for ch in h)


def render(c, res):
    out = ["=== " + c["name"], "config:"]
    out += ["  " + l for l in c["config"]]
    if c["response"]:
        out.append("backend-response:")
        out += ["  " + l for l in c["response"]]
    out.append("request: %s %s" % (c["method"], c["target"]))
    for h in c["headers"]:
        out.append("header: " + esc(h))
    notes = [c["note"]] if c["note"] else []
    if "config_error" in res:
        raise RuntimeError("%s: config error\n%s" % (c["name"], res["config_error"]))
    un = res["unsubst"]
    out.append("expect-status: %s" % (res["status"] if res["status"] is not None else "none"))
    req_names, resp_names = directive_names(c["config"])
    # backend side
    reqs = [("BACKEND", r) for r in res["r1"]] + [("BACKEND2", r) for r in res["r2"]]
    if len(reqs) > 1:
        notes.append("backend received %d requests" % len(reqs))
    b_names = ["X-*", "Host"] + [n.title() for n in BACKEND_OPTIONAL if mentioned(c, n)]
    if reqs:
        which, (line, hdrs) = reqs[0]
        if which == "BACKEND2":
            notes.append("request reached BACKEND2")
        seen = set()
        for k, v in hdrs:
            if BACKEND_NAMES.match(k) or (k.lower() in BACKEND_OPTIONAL and mentioned(c, k)):
                out.append("expect-backend-header: %s: %s" % (k, un(v)))
                seen.add(k.lower())
        for n in sorted(set(req_names) | set(c["watch_backend"]), key=str.lower):
            if n.lower() not in seen and (BACKEND_NAMES.match(n) or n.lower() in BACKEND_OPTIONAL):
                out.append("expect-backend-absent: %s" % n)
        if not line.startswith(c["method"] + " "):
            notes.append("backend request line: %s" % un(line))
    else:
        notes.append("the backend received no request")
    # client side
    seen = set()
    for k, v in res["hdrs"]:
        if CLIENT_NAMES.match(k):
            if k in c["varying"]:
                out.append("expect-client-present: %s" % k)
            else:
                out.append("expect-client-header: %s: %s" % (k, un(v)))
            seen.add(k.lower())
    for n in sorted(set(resp_names) | set(c["watch_client"]), key=str.lower):
        if n.lower() not in seen and CLIENT_NAMES.match(n):
            out.append("expect-client-absent: %s" % n)
    for code in re.findall(r"AH0\d{4}|AH1\d{4}", res["log"]):
        if code in ("AH00052", "AH02430", "AH01144", "AH00957", "AH00959", "AH01114", "AH00898", "AH10038"):
            m = re.search(r"\] (%s: [^\n]*)" % code, res["log"])
            msg = un(m.group(1)) if m else code
            msg = re.sub(r"\s+", " ", msg)[:160]
            msg = re.sub(r"pid \d+", "pid N", msg)
            if msg not in notes:
                notes.append("error log: " + msg)
    notes.append("compared: backend %s; client X-*, Set-Cookie, Cache-Control, Vary, Location, "
                 "Access-Control-*" % ", ".join(b_names))
    if c["balancer"]:
        notes.append("needs LoadModule slotmem_shm, proxy_balancer, lbmethod_byrequests in addition")
    out.append("note: " + "; ".join(notes))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true", help="keep per-case Apache dirs")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    os.makedirs(RUNS, exist_ok=True)
    for d in (RUNS, os.path.dirname(RUNS)):
        os.chmod(d, 0o755)  # Apache children run as nobody
    version = subprocess.run([APACHE, "-v"], capture_output=True, text=True).stdout
    version = version.splitlines()[0].split(":", 1)[1].strip()
    backends = (Backend(), Backend())
    only = set(x for x in a.only.split(",") if x)
    blocks = []
    try:
        for c in CASES:
            if only and c["name"] not in only:
                continue
            res = run_case(c, backends, a.keep)
            if "config_error" in res:
                print("%-50s CONFIG ERROR: %s" % (c["name"], res["config_error"][:300]), flush=True)
                continue
            blocks.append(render(c, res))
            print("%-50s %s" % (c["name"], res["status"]), flush=True)
            if a.verbose:
                print(blocks[-1])
                print(res["log"])
    finally:
        for b in backends:
            b.srv.shutdown()
            b.srv.server_close()
    if not only:
        check_config_errors()
    text = "\n\n".join(blocks) + "\n"
    print("source:", version)
    if only:
        print(text)
        return
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print("wrote %d cases to %s" % (len(blocks), a.out))


if __name__ == "__main__":
    main()
