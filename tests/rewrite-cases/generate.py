#!/usr/bin/python3
"""Ground-truth generator for wsgate's mod_rewrite subset.

Runs every case below against the real Apache httpd installed on this machine
(/usr/sbin/apache2, Debian package apache2) and writes the observed results in
the wsgate rewrite-case format.

Usage (as root, Debian apache2 installed):
    python3 tests/rewrite-cases/generate.py [--out FILE] [--only NAME[,NAME...]] [--keep]
Default --out is /work/main/tests/rewrite-cases/apache-2.4.71.txt; --only prints the
selected cases instead of writing; --keep leaves the per-case Apache dirs in
$REWRITE_TRUTH_TMP (default /tmp/rewrite-truth/runs).

Per case: a private temp dir with its own config (ServerRoot, PidFile, ErrorLog,
DefaultRuntimeDir, Mutex all inside it), Apache started in the foreground with
`apache2 -f FILE -DFOREGROUND`, one raw-socket request, Apache stopped by PID.
Two recording backends (standard library only) answer every request with 200
and log the exact request head they received; BACKEND in the config is the
first one, OTHER the second (only used to detect stray connections).
Standard library only.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

APACHE = "/usr/sbin/apache2"
MODDIR = "/usr/lib/apache2/modules"
RUNS = os.environ.get("REWRITE_TRUTH_TMP", "/tmp/rewrite-truth/runs")  # per-case Apache dirs
DEFAULT_OUT = "/work/main/tests/rewrite-cases/apache-2.4.71.txt"

MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_http_module", "mod_proxy_http.so"),
    ("proxy_wstunnel_module", "mod_proxy_wstunnel.so"),
    ("rewrite_module", "mod_rewrite.so"),
]

# ---------------------------------------------------------------- backends


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (request_line, [header lines])

    def add(self, line, headers):
        with self.lock:
            self.requests.append((line, headers))

    def take(self):
        with self.lock:
            r, self.requests = self.requests, []
            return r


def make_backend():
    rec = Recorder()

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
            rec.add(lines[0], lines[1:])
            body = b"ok"
            try:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 2\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    srv = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, rec


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

# ---------------------------------------------------------------- apache


def skeleton(d, port):
    lines = [
        "ServerRoot %s" % d,
        "PidFile %s/httpd.pid" % d,
        "ErrorLog %s/error.log" % d,
        "DefaultRuntimeDir %s" % d,
        "Mutex file:%s default" % d,
    ]
    for mod, so in MODULES:
        lines.append("LoadModule %s %s/%s" % (mod, MODDIR, so))
    lines += [
        "ServerLimit 1",
        "ThreadsPerChild 16",
        "MaxRequestWorkers 16",
        "User nobody",
        "Group nogroup",
        "ServerName proxy.test",
        "Listen 127.0.0.1:%d" % port,
        "LogLevel debug rewrite:trace3",
    ]
    return lines


class Apache:
    def __init__(self, config_lines, keep=False, tag="case"):
        self.dir = tempfile.mkdtemp(prefix="ap-%s-" % tag, dir=RUNS)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.keep = keep
        conf = skeleton(self.dir, self.port) + config_lines
        self.conf = os.path.join(self.dir, "httpd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([APACHE, "-f", self.conf, "-DFOREGROUND"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError("apache exited: %s\n%s" % (out, self.errorlog()))
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
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs

# ---------------------------------------------------------------- cases

CASES = []
NOTES = {'p-literal-escape-in-substitution': '%2 in a substitution is a RewriteCond back-reference (empty here), so x%20y becomes x0y',
    'p-literal-escape-in-substitution-ne': 'same with NE: %2 is a (empty) cond back-reference',
    'lexicographic-less-than-string-order': "without NC Apache compares by length first, then bytes: '10' is not < '2'",
    'lexicographic-greater-than-string-order': "length first: '3' (1 char) is not > '20' (2 chars)",
    'lexicographic-greater-than-nc': 'with NC the comparison is strcasecmp (plain case-insensitive order)',
    'absolute-url-to-own-host-becomes-local': "not reduced to a local path: ServerName has no port, so the URL's port 80 does not match; implicit 302",
    'dash-with-qsd-then-proxypass': "QSD has no effect with '-' as substitution",
    'dash-substitution-with-p': "'-' with [P] proxies nothing itself; ProxyPass handles the unchanged URL",
    'the-request-query-backref-is-403': "AH10508: a '?' inserted by a back-reference is refused even though it was the real query delimiter",
    'r-b-flag-in-query': 'B escapes & to %26 and the redirect escapes it again to %2526',
    'server-port-without-port-in-host': 'SERVER_PORT is 80 (default port), not the Listen port, when Host has no port',
    'flag-r-non-3xx-with-dash': "R=404 with '-' returns 404",
    'userinfo-injection-at-host': 'Apache connected to 127.0.0.1:1 (the part after @ is the host; BACKEND became userinfo), refused: 503',
    'concatenation-after-merged-slashes': 'MergeSlashes turns /c//ok into /c/ok, so the target is http://BACKENDok: DNS lookup failure, 500',
    'concatenation-without-slash-bad-port': "target http://BACKENDx: Apache treats '127.0.0.1:PORTx' as a host name, DNS lookup failure AH00898, 500",
    'dot-matches-newline-in-redirect': 'the newline is escaped as lower-case %0a in the Location',
    'rules-not-applied-to-asterisk-target': 'answered by Apache core (OPTIONS *), no rewrite, no backend request',
    'query-string-is-raw': 'QUERY_STRING is raw; inserted into a [P] path its % signs are re-encoded',
    'main-rules-unreachable-when-vhost-catches-address': 'the only <VirtualHost *> is the default for every Host, so main-server rules never run',
    'qmark-backref-in-redirect': 'AH10508 applies to redirects as well',
    'lexicographic-greater-than-missing-header': "missing header = empty string, shorter than '20'",
    'lexicographic-length-first-greater': "length first: '10' > '2'",
    'lexicographic-nc-plain-order': "with NC strcasecmp order: '10' < '2'",
    'lexicographic-nc-ignores-length': "with NC strcasecmp order: 'abc' is not > 'b'",
    'lexicographic-length-first-without-nc': "length first: 'abc' > 'b'",
    'p-escaped-percent-in-substitution': 'backslash makes the % literal; the [P] canonicalisation then encodes it as %25',
    'seed-ws-with-upgrade-headers': 'the plain-HTTP backend answered 200 to the upgrade request and Apache relayed the 200'}


def case(name, config, request, headers=(), note=None):
    """config: string, one directive per line (BACKEND placeholder)."""
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name
    assert name not in [c["name"] for c in CASES], name
    method, target = request.split(" ", 1)
    lines = [l.strip() for l in config.strip().splitlines() if l.strip()]
    CASES.append(dict(name=name, config=lines, method=method, target=target,
                      headers=list(headers), note=note or NOTES.get(name)))


ON = "RewriteEngine on\n"
PP = "ProxyPass / http://BACKEND/pp/\n"   # visible fallback when no rule fires

# --- the seed example (WebSocket recipe) -------------------------------------
SEED = """
ProxyPass / http://BACKEND/
RewriteEngine on
RewriteCond %{HTTP:Upgrade} websocket [NC]
RewriteCond %{HTTP:Connection} upgrade [NC]
RewriteRule ^/?(.*) "ws://BACKEND/$1" [P,L]
"""
WSH = ["Upgrade: websocket", "Connection: Upgrade",
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
case("seed-ws-with-upgrade-headers", SEED, "GET /chat?room=1", WSH)
case("seed-ws-without-upgrade-headers", SEED, "GET /chat?room=1")
SEEDX = """
ProxyPass / http://BACKEND/plain/
RewriteEngine on
RewriteCond %{HTTP:Upgrade} websocket [NC]
RewriteCond %{HTTP:Connection} upgrade [NC]
RewriteRule ^/?(.*) "ws://BACKEND/ws/$1" [P,L]
"""
case("ws-variant-upgrade-goes-to-rule", SEEDX, "GET /chat", WSH)
case("ws-variant-plain-goes-to-proxypass", SEEDX, "GET /chat")
case("ws-variant-upgrade-without-connection", SEEDX, "GET /chat",
     ["Upgrade: websocket"])
case("ws-variant-mixed-case-and-token-list", SEEDX, "GET /chat",
     ["Upgrade: WebSocket", "Connection: keep-alive, Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"])
case("ws-variant-other-upgrade-protocol", SEEDX, "GET /chat",
     ["Upgrade: h2c", "Connection: Upgrade"])

# --- prefixes / patterns ------------------------------------------------------
case("prefix-optional-slash", ON + "RewriteRule ^/?api/(.*) http://BACKEND/v1/$1 [P]",
     "GET /api/users")
case("prefix-without-slash-never-matches-in-server-context",
     ON + "RewriteRule ^api/(.*) http://BACKEND/v1/$1 [P]", "GET /api/users")
case("prefix-with-slash", ON + "RewriteRule ^/api/(.*) http://BACKEND/v1/$1 [P]",
     "GET /api/users")
case("unanchored-pattern-matches-inside",
     ON + "RewriteRule api/(.*) http://BACKEND/v1/$1 [P]", "GET /x/api/y")
case("pattern-does-not-match-no-proxypass",
     ON + "RewriteRule ^/api/(.*) http://BACKEND/v1/$1 [P]", "GET /other")
case("pattern-does-not-match-falls-to-proxypass",
     PP + ON + "RewriteRule ^/api/(.*) http://BACKEND/v1/$1 [P]", "GET /other?a=1")
case("rule-wins-over-proxypass",
     PP + ON + "RewriteRule ^/api/(.*) http://BACKEND/v1/$1 [P]", "GET /api/x?a=1")
case("negated-rule-pattern",
     PP + ON + "RewriteRule !^/public/ http://BACKEND/private%{REQUEST_URI} [P]",
     "GET /secret")
case("negated-rule-pattern-not-taken",
     PP + ON + "RewriteRule !^/public/ http://BACKEND/private%{REQUEST_URI} [P]",
     "GET /public/x")
case("path-is-normalised-before-matching",
     ON + "RewriteRule ^/api/(.*) http://BACKEND/v1/$1 [P]", "GET /x/../api/./a//b")

# --- back-references ----------------------------------------------------------
case("p-dollar-backref",
     ON + "RewriteRule ^/u/([^/]+)/(.*)$ http://BACKEND/users/$2/$1 [P]", "GET /u/bob/profile")
case("p-dollar-zero", ON + "RewriteRule ^/zero/.* http://BACKEND/got$0 [P]", "GET /zero/x")
case("p-percent-backref-from-host",
     ON + r"""RewriteCond %{HTTP_HOST} ^([a-z]+)\.proxy\.test$
RewriteRule ^/(.*) http://BACKEND/%1/$1 [P]""", "GET /a", ["Host: tenant.proxy.test"])
case("nc-capture-keeps-original-case",
     ON + r"""RewriteCond %{HTTP_HOST} ^(www)\.(.*)$ [NC]
RewriteRule ^/(.*) http://BACKEND/%1/%2/$1 [P]""", "GET /a", ["Host: WWW.Example.com"])
case("percent-backref-from-last-matching-cond",
     ON + """RewriteCond %{HTTP:X-A} (.+)
RewriteCond %{HTTP:X-B} (.+)
RewriteRule ^/two http://BACKEND/last-%1 [P]""", "GET /two", ["X-A: first", "X-B: second"])
case("cond-test-string-uses-rule-backref",
     PP + ON + """RewriteCond $1 ^admin
RewriteRule ^/(.*) - [F]""", "GET /admin/x")
case("cond-test-string-uses-rule-backref-no-match",
     PP + ON + """RewriteCond $1 ^admin
RewriteRule ^/(.*) - [F]""", "GET /user/x")
case("unset-optional-group-is-empty",
     ON + "RewriteRule ^/opt(/x)?/(.*) http://BACKEND/o/$1/$2 [P]", "GET /opt/y")
case("negated-cond-has-no-captures",
     ON + """RewriteCond %{HTTP:X-A} !^(z)$
RewriteRule ^/neg http://BACKEND/n-%1-end [P]""", "GET /neg", ["X-A: a"])
case("request-uri-in-p-target",
     ON + "RewriteRule ^/uri/ http://BACKEND/uri%{REQUEST_URI} [P]", "GET /uri/a%20b/?q=1")

# --- query strings ------------------------------------------------------------
case("query-kept-without-question-mark",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P]", "GET /keep/abc?orig=1")
case("query-in-substitution-replaces-original",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P]", "GET /q/abc?orig=1")
case("qsa-appends-original",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P,QSA]", "GET /q/abc?orig=1")
case("qsa-without-original-query",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P,QSA]", "GET /q/abc")
case("qsa-substitution-without-query",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P,QSA]", "GET /keep/abc?orig=1")
case("qsd-discards-original",
     ON + "RewriteRule ^/qsd/(.*)$ http://BACKEND/qsd/$1 [P,QSD]", "GET /qsd/abc?orig=1")
case("qsd-with-query-in-substitution",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P,QSD]", "GET /q/abc?orig=1")
case("trailing-question-mark-discards-query",
     ON + "RewriteRule ^/qm/(.*)$ http://BACKEND/qm/$1? [P]", "GET /qm/abc?orig=1")
case("query-string-variable-in-substitution",
     ON + "RewriteRule ^/qv$ http://BACKEND/qv?x=1&%{QUERY_STRING} [P]", "GET /qv?orig=2")
case("qsa-and-qsd-together",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P,QSA,QSD]", "GET /q/abc?orig=1")
case("dash-with-qsd-then-proxypass",
     PP + ON + "RewriteRule ^/dq - [QSD]", "GET /dq?orig=1")

# --- NC -----------------------------------------------------------------------
case("rule-nc-matches",
     PP + ON + "RewriteRule ^/API/(.*) http://BACKEND/v1/$1 [P,NC]", "GET /api/x")
case("rule-without-nc-is-case-sensitive",
     PP + ON + "RewriteRule ^/API/(.*) http://BACKEND/v1/$1 [P]", "GET /api/x")
case("rule-nocase-long-form",
     PP + ON + "RewriteRule ^/API/(.*) http://BACKEND/v1/$1 [P,nocase]", "GET /Api/x")
case("cond-nc-matches",
     PP + ON + """RewriteCond %{HTTP:X-Mode} ^beta$ [NC]
RewriteRule ^/(.*) http://BACKEND/beta/$1 [P]""", "GET /x", ["X-Mode: BETA"])
case("cond-without-nc-is-case-sensitive",
     PP + ON + """RewriteCond %{HTTP:X-Mode} ^beta$
RewriteRule ^/(.*) http://BACKEND/beta/$1 [P]""", "GET /x", ["X-Mode: BETA"])
case("header-name-in-cond-is-case-insensitive",
     PP + ON + """RewriteCond %{HTTP:x-mode} ^beta$
RewriteRule ^/(.*) http://BACKEND/beta/$1 [P]""", "GET /x", ["X-MODE: beta"])

# --- OR chains ----------------------------------------------------------------
ORC = PP + ON + """RewriteCond %{HTTP:X-A} ^1$ [OR]
RewriteCond %{HTTP:X-B} ^1$
RewriteRule ^/(.*) http://BACKEND/or/$1 [P]"""
case("or-first-true", ORC, "GET /x", ["X-A: 1"])
case("or-second-true", ORC, "GET /x", ["X-B: 1"])
case("or-none-true", ORC, "GET /x", ["X-A: 2", "X-B: 2"])
ORAND = PP + ON + """RewriteCond %{HTTP:X-A} ^1$ [OR]
RewriteCond %{HTTP:X-B} ^1$
RewriteCond %{HTTP:X-C} ^1$
RewriteRule ^/(.*) http://BACKEND/orand/$1 [P]"""
case("or-then-and-first-true-last-false", ORAND, "GET /x", ["X-A: 1"])
case("or-then-and-second-and-last-true", ORAND, "GET /x", ["X-B: 1", "X-C: 1"])
case("ornext-long-form-with-nc",
     PP + ON + """RewriteCond %{HTTP:X-A} ^yes$ [NC,ornext]
RewriteCond %{HTTP:X-B} ^yes$
RewriteRule ^/(.*) http://BACKEND/or/$1 [P]""", "GET /x", ["X-A: YES"])

# --- negated conditions -------------------------------------------------------
NEG = PP + ON + """RewriteCond %{HTTP:X-Internal} !^yes$
RewriteRule ^/admin - [F]"""
case("negated-cond-true-forbids", NEG, "GET /admin/panel")
case("negated-cond-false-falls-through", NEG, "GET /admin/panel", ["X-Internal: yes"])

# --- lexicographic / string comparisons ---------------------------------------
LT = PP + ON + """RewriteCond %{HTTP:X-Ver} <2
RewriteRule ^/(.*) http://BACKEND/old/$1 [P]"""
case("lexicographic-less-than-string-order", LT, "GET /x", ["X-Ver: 10"])
case("lexicographic-less-than-false", LT, "GET /x", ["X-Ver: 3"])
GT = PP + ON + """RewriteCond %{HTTP:X-Ver} >20
RewriteRule ^/(.*) http://BACKEND/new/$1 [P]"""
case("lexicographic-greater-than-string-order", GT, "GET /x", ["X-Ver: 3"])
case("lexicographic-greater-than-missing-header", GT, "GET /x")
case("lexicographic-greater-than-nc",
     PP + ON + """RewriteCond %{HTTP:X-Name} >m [NC]
RewriteRule ^/(.*) http://BACKEND/gt/$1 [P]""", "GET /x", ["X-Name: Z"])
case("lexicographic-greater-than-case-sensitive",
     PP + ON + """RewriteCond %{HTTP:X-Name} >m
RewriteRule ^/(.*) http://BACKEND/gt/$1 [P]""", "GET /x", ["X-Name: Z"])
case("lexicographic-greater-or-equal",
     PP + ON + """RewriteCond %{HTTP:X-Ver} >=ab
RewriteRule ^/(.*) http://BACKEND/ge/$1 [P]""", "GET /x", ["X-Ver: ab"])
case("exact-equal-match",
     PP + ON + """RewriteCond %{REQUEST_METHOD} =POST
RewriteRule ^/(.*) http://BACKEND/post/$1 [P]""", "POST /x", ["Content-Length: 0"])
case("exact-equal-no-partial-match",
     PP + ON + """RewriteCond %{HTTP:X-Mode} =beta
RewriteRule ^/(.*) http://BACKEND/beta/$1 [P]""", "GET /x", ["X-Mode: beta2"])
case("exact-equal-nc",
     PP + ON + """RewriteCond %{HTTP:X-Mode} =beta [NC]
RewriteRule ^/(.*) http://BACKEND/beta/$1 [P]""", "GET /x", ["X-Mode: BeTa"])
case("exact-equal-empty-matches-missing-header",
     PP + ON + """RewriteCond %{HTTP:X-Token} =""
RewriteRule ^/ - [F]""", "GET /x")
case("negated-exact-equal",
     PP + ON + """RewriteCond %{HTTP:X-Token} !=secret
RewriteRule ^/ - [F]""", "GET /x", ["X-Token: secret"])

# --- server variables ---------------------------------------------------------
HOSTC = PP + ON + r"""RewriteCond %{HTTP_HOST} ^api\.
RewriteRule ^/(.*) http://BACKEND/api/$1 [P]"""
case("http-host-cond-match", HOSTC, "GET /x", ["Host: api.proxy.test"])
case("http-host-cond-no-match", HOSTC, "GET /x")
case("http-host-includes-port",
     ON + r"""RewriteCond %{HTTP_HOST} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/h/%1/$1 [P]""", "GET /x", ["Host: proxy.test:8080"])
METH = PP + ON + """RewriteCond %{REQUEST_METHOD} ^(PUT|DELETE)$
RewriteRule ^/ - [F]"""
case("request-method-cond-match", METH, "DELETE /x")
case("request-method-cond-no-match", METH, "GET /x")
case("query-string-cond-capture",
     PP + ON + """RewriteCond %{QUERY_STRING} (^|&)id=([0-9]+)(&|$)
RewriteRule ^/item$ http://BACKEND/items/%2? [P]""", "GET /item?x=1&id=42&y=2")
case("query-string-cond-no-query",
     PP + ON + """RewriteCond %{QUERY_STRING} (^|&)id=([0-9]+)(&|$)
RewriteRule ^/item$ http://BACKEND/items/%2? [P]""", "GET /item")
case("query-string-is-raw",
     ON + """RewriteCond %{QUERY_STRING} ^(.*)$
RewriteRule ^/rawq$ http://BACKEND/rawq/%1? [P]""", "GET /rawq?a%20b=c%2Fd")
case("remote-addr-cond",
     PP + ON + r"""RewriteCond %{REMOTE_ADDR} ^127\.0\.0\.1$
RewriteRule ^/(.*) http://BACKEND/local/$1 [P]""", "GET /x")
case("remote-addr-negated-cond",
     PP + ON + r"""RewriteCond %{REMOTE_ADDR} !^10\.
RewriteRule ^/(.*) - [F]""", "GET /x")
case("server-port-from-host-header",
     ON + r"""RewriteCond %{SERVER_PORT} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/port-%1/$1 [P]""", "GET /x", ["Host: proxy.test:8080"])
case("server-port-without-port-in-host",
     ON + r"""RewriteCond %{SERVER_PORT} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/port-%1/$1 [P]""", "GET /x")
case("server-name-cond",
     ON + r"""RewriteCond %{SERVER_NAME} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/sn-%1/$1 [P]""", "GET /x", ["Host: other.test"])
HTTPS = PP + ON + """RewriteCond %{HTTPS} =off
RewriteRule ^/(.*) http://BACKEND/plain/$1 [P]"""
case("https-off-on-plain-listener", HTTPS, "GET /x")
case("https-on-does-not-match-plain-listener",
     PP + ON + """RewriteCond %{HTTPS} on
RewriteRule ^/(.*) http://BACKEND/tls/$1 [P]""", "GET /x")
case("the-request-cond-forbids",
     PP + ON + r"""RewriteCond %{THE_REQUEST} "^GET\ /tr/[^ ]*\?debug"
RewriteRule ^/tr/ - [F]""", "GET /tr/x?debug=1")
case("the-request-cond-not-matching",
     PP + ON + r"""RewriteCond %{THE_REQUEST} "^GET\ /tr/[^ ]*\?debug"
RewriteRule ^/tr/ - [F]""", "GET /tr/x?nodebug=1")
case("the-request-is-raw-request-line",
     ON + r"""RewriteCond %{THE_REQUEST} "^(\S+)\ /enc/(\S*)\ (HTTP/1\.1)$"
RewriteRule ^/enc/ http://BACKEND/tr-%1-%3/%2 [P]""", "GET /enc/a%41b")
case("the-request-query-backref-is-403",
     ON + r"""RewriteCond %{THE_REQUEST} "^GET\ (\S*)\ HTTP"
RewriteRule ^/trq/ http://BACKEND/raw%1 [P]""", "GET /trq/x?y=1")
case("unknown-variable-is-empty",
     ON + r"""RewriteCond %{NO_SUCH_VAR}x ^x$
RewriteRule ^/(.*) http://BACKEND/unknown/$1 [P]""", "GET /x")

# --- missing headers ----------------------------------------------------------
case("missing-header-matches-empty-regex",
     PP + ON + """RewriteCond %{HTTP:X-Missing} ^$
RewriteRule ^/ - [F]""", "GET /x")
case("missing-header-does-not-match-nonempty",
     PP + ON + """RewriteCond %{HTTP:X-Missing} .+
RewriteRule ^/(.*) http://BACKEND/has/$1 [P]""", "GET /x")
case("missing-header-capture-is-empty",
     ON + """RewriteCond %{HTTP:X-Missing} ^(.*)$
RewriteRule ^/m http://BACKEND/m/%1x [P]""", "GET /m")
case("repeated-header-is-merged",
     ON + """RewriteCond %{HTTP:X-Multi} ^(.*)$
RewriteRule ^/multi http://BACKEND/multi/%1 [P]""", "GET /multi", ["X-Multi: a", "X-Multi: b"])

# --- F / G / R ----------------------------------------------------------------
case("flag-f-403", PP + ON + "RewriteRule ^/forbidden - [F]", "GET /forbidden")
case("flag-g-410", PP + ON + "RewriteRule ^/gone - [G]", "GET /gone")
case("flag-r-302", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R]", "GET /old/x")
case("flag-r-301", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R=301]", "GET /old/x")
case("flag-r-303", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R=303,L]", "GET /old/x")
case("flag-r-permanent", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R=permanent]", "GET /old/x")
case("flag-r-keeps-query", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R]", "GET /old/x?a=1&b=2")
case("flag-r-reencodes-path", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R]", "GET /old/a%20b")
case("flag-r-with-port-in-host", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R]", "GET /old/x",
     ["Host: proxy.test:8080"])
case("flag-r-external-url",
     PP + ON + "RewriteRule ^/ext/(.*) https://example.com/$1 [R=301,L]", "GET /ext/a?b=1")
case("implicit-redirect-absolute-url-without-p",
     PP + ON + "RewriteRule ^/redir2/(.*) http://example.com/$1", "GET /redir2/a?b=1")
case("absolute-url-to-own-host-becomes-local",
     PP + ON + "RewriteRule ^/self/(.*) http://proxy.test/pp-local/$1", "GET /self/a")
case("flag-r-non-3xx-with-dash",
     PP + ON + "RewriteRule ^/teapot - [R=404]", "GET /teapot")
case("flag-r-hash-escaped-without-ne",
     PP + ON + "RewriteRule ^/anchor/(.+) /page#$1 [R]", "GET /anchor/sec")
case("flag-r-hash-kept-with-ne",
     PP + ON + "RewriteRule ^/anchor/(.+) /page#$1 [R,NE]", "GET /anchor/sec")
case("flag-r-ne-percent-escape",
     PP + ON + "RewriteRule ^/rne/(.*) /t/$1 [R,NE]", "GET /rne/a%2541")
case("flag-r-without-ne-percent-escape",
     PP + ON + "RewriteRule ^/rne/(.*) /t/$1 [R]", "GET /rne/a%2541")

# --- L / chaining / END -------------------------------------------------------
LSTOP = PP + ON + """RewriteRule ^/l/(.*) /m/$1 [L]
RewriteRule ^/m/(.*) http://BACKEND/second/$1 [P]"""
case("l-stops-later-rules", LSTOP, "GET /l/x")
case("l-long-form-last",
     PP + ON + """RewriteRule ^/l/(.*) /m/$1 [last]
RewriteRule ^/m/(.*) http://BACKEND/second/$1 [P]""", "GET /l/x")
case("rules-chain-without-l",
     PP + ON + """RewriteRule ^/l/(.*) /m/$1
RewriteRule ^/m/(.*) http://BACKEND/second/$1 [P]""", "GET /l/x")
case("three-rules-chain",
     ON + """RewriteRule ^/c1/(.*) /c2/$1
RewriteRule ^/c2/(.*) /c3/$1
RewriteRule ^/c3/(.*) http://BACKEND/c3/$1 [P]""", "GET /c1/x?q=1")
case("p-stops-later-rules",
     ON + """RewriteRule ^/(.*) http://BACKEND/first/$1 [P]
RewriteRule ^/(.*) http://BACKEND/second/$1 [P]""", "GET /x")
case("end-stops-later-rules",
     PP + ON + """RewriteRule ^/e/(.*) /f/$1 [END]
RewriteRule ^/f/(.*) http://BACKEND/f/$1 [P]""", "GET /e/x")
case("p-with-end",
     ON + "RewriteRule ^/e/(.*) http://BACKEND/end/$1 [P,END]", "GET /e/x")
case("f-stops-later-rules",
     ON + """RewriteRule ^/x - [F]
RewriteRule ^/(.*) http://BACKEND/after/$1 [P]""", "GET /x")

# --- interaction with ProxyPass ----------------------------------------------
case("local-rewrite-hides-request-from-proxypass",
     "ProxyPass /new/ http://BACKEND/new/\n" + ON + "RewriteRule ^/old/(.*) /new/$1",
     "GET /old/x")
case("proxypass-still-works-for-unrewritten-path",
     "ProxyPass /new/ http://BACKEND/new/\n" + ON + "RewriteRule ^/old/(.*) /new/$1",
     "GET /new/x")
case("pt-passes-rewritten-path-to-proxypass",
     "ProxyPass /new/ http://BACKEND/new/\n" + ON + "RewriteRule ^/old/(.*) /new/$1 [PT]",
     "GET /old/x?q=1")
case("dash-substitution-leaves-url-for-proxypass",
     PP + ON + """RewriteCond %{HTTP:X-A} ^1$
RewriteRule ^/dash - [L]""", "GET /dash/x?q=1", ["X-A: 1"])
case("dash-substitution-with-p",
     PP + ON + "RewriteRule ^/dashp - [P]", "GET /dashp")
EXCL = """ProxyPass /static/ !
ProxyPass / http://BACKEND/pp/
""" + ON
case("p-rule-overrides-proxypass-exclusion",
     EXCL + "RewriteRule ^/static/(.*) http://BACKEND/s/$1 [P]", "GET /static/x")
case("proxypass-exclusion-without-rule",
     EXCL + "RewriteRule ^/other/(.*) http://BACKEND/o/$1 [P]", "GET /static/x")
case("pt-into-excluded-path",
     EXCL + "RewriteRule ^/a/(.*) /static/$1 [PT]", "GET /a/x")
case("p-target-matching-proxypass-worker",
     "ProxyPass /api/ http://BACKEND/api/\n" + ON
     + "RewriteRule ^/v2/(.*) http://BACKEND/api/$1 [P]", "GET /v2/x")

# --- virtual hosts ------------------------------------------------------------
def vh(name, body):
    return "<VirtualHost *>\nServerName %s\n%s\n</VirtualHost>\n" % (name, body.strip())


MAIN = ON + "RewriteRule ^/(.*) http://BACKEND/main/$1 [P]\n"
VRULE = "RewriteRule ^/v/(.*) http://BACKEND/vh/$1 [P]"
case("vhost-own-rules", vh("v.test", ON + VRULE), "GET /v/x", ["Host: v.test"])
case("vhost-without-inherit-ignores-main-rules",
     MAIN + vh("v.test", ON + VRULE), "GET /x", ["Host: v.test"])
case("vhost-with-inherit-runs-main-rules",
     MAIN + vh("v.test", ON + "RewriteOptions Inherit\n" + VRULE), "GET /x", ["Host: v.test"])
case("vhost-inherit-own-rules-first",
     MAIN + vh("v.test", ON + "RewriteOptions Inherit\n" + VRULE), "GET /v/x", ["Host: v.test"])
case("vhost-inherit-before-main-rules-first",
     MAIN + vh("v.test", ON + "RewriteOptions InheritBefore\n" + VRULE), "GET /v/x",
     ["Host: v.test"])
case("vhost-inherit-without-own-rewriteengine",
     MAIN + vh("v.test", "RewriteOptions Inherit"), "GET /x", ["Host: v.test"])
case("vhost-engine-off-with-inherit",
     MAIN + vh("v.test", "RewriteEngine off\nRewriteOptions Inherit"), "GET /x",
     ["Host: v.test"])
case("main-rules-unreachable-when-vhost-catches-address",
     MAIN + vh("v.test", ON + VRULE), "GET /x")
case("vhost-rules-do-not-leak-to-other-vhost",
     vh("a.test", ON + "RewriteRule ^/(.*) http://BACKEND/a/$1 [P]")
     + vh("b.test", "ProxyPass / http://BACKEND/b/"), "GET /x", ["Host: b.test"])
case("vhost-selected-by-host",
     vh("a.test", ON + "RewriteRule ^/(.*) http://BACKEND/a/$1 [P]")
     + vh("b.test", ON + "RewriteRule ^/(.*) http://BACKEND/b/$1 [P]"), "GET /x",
     ["Host: b.test"])
case("main-proxypass-inherited-by-vhost",
     PP + vh("v.test", ON + VRULE), "GET /x", ["Host: v.test"])
case("main-rules-without-vhosts",
     MAIN, "GET /x", ["Host: anything.test"])

# --- RewriteEngine Off --------------------------------------------------------
case("rewriteengine-off-ignores-rules",
     PP + "RewriteEngine off\nRewriteRule ^/(.*) http://BACKEND/rw/$1 [P]", "GET /x")
case("no-rewriteengine-directive-ignores-rules",
     PP + "RewriteRule ^/(.*) http://BACKEND/rw/$1 [P]", "GET /x")
case("rewriteengine-later-off-wins",
     PP + ON + "RewriteRule ^/(.*) http://BACKEND/rw/$1 [P]\nRewriteEngine off", "GET /x")

# --- NE / B / encoding of [P] targets -----------------------------------------
case("p-backref-reencoded",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P]",
     "GET /keep/a%20b%22c%3Cd%25e")
case("p-backref-percent-literal-without-ne",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P]", "GET /keep/a%2541")
case("p-ne-sends-decoded-backref-raw",
     ON + "RewriteRule ^/ne/(.*)$ http://BACKEND/ne/$1 [P,NE]", "GET /ne/a%2541")
case("p-ne-space-is-403",
     ON + "RewriteRule ^/ne/(.*)$ http://BACKEND/ne/$1 [P,NE]", "GET /ne/a%20b")
case("p-literal-escape-in-substitution",
     ON + "RewriteRule ^/lit$ http://BACKEND/x%20y [P]", "GET /lit")
case("p-literal-escape-in-substitution-ne",
     ON + "RewriteRule ^/lit$ http://BACKEND/x%20y [P,NE]", "GET /lit")
case("p-b-flag-double-encodes-path",
     ON + "RewriteRule ^/b/(.*)$ http://BACKEND/b/$1 [P,B]", "GET /b/a%20b&c")
case("p-b-flag-in-query",
     ON + "RewriteRule ^/bq/(.*)$ http://BACKEND/bq?x=$1 [P,B]", "GET /bq/a%20b&c")
case("r-b-flag-in-query",
     PP + ON + "RewriteRule ^/br/(.*)$ /search?q=$1 [B,R]", "GET /br/a%20b&c")
case("r-without-b-flag-in-query",
     PP + ON + "RewriteRule ^/br/(.*)$ /search?q=$1 [R]", "GET /br/a&c")
case("p-encoded-slash-rejected-before-rewrite",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P]", "GET /keep/a%2Fb")

# --- security (APACHE-SPEC section 17) ----------------------------------------
HERE = ON + "RewriteRule ^/here/(.*) http://BACKEND/elsewhere?$1 [P]"
case("cve-2023-25690-crlf-in-query-403", HERE,
     "GET /here/x%20HTTP/1.1%0d%0aHost:%20evil%0d%0a%0d%0aGET%20/smuggled")
case("cve-2023-25690-space-in-query-403", HERE, "GET /here/a%20b")
case("cve-2023-25690-clean-query-proxied", HERE, "GET /here/abc")
case("crlf-in-p-path-reencoded",
     ON + "RewriteRule ^/p/(.*) http://BACKEND/p/$1 [P]", "GET /p/a%0d%0ab")
case("cve-2024-38474-qmark-backref-403",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P]", "GET /keep/a%3fb")
case("qmark-backref-after-literal-qmark-is-data",
     ON + "RewriteRule ^/q/(.*)$ http://BACKEND/q?arg=$1 [P]", "GET /q/a%3fb")
case("qmark-backref-unsafeallow3f",
     ON + "RewriteRule ^/keep/(.*)$ http://BACKEND/keep/$1 [P,UnsafeAllow3F]",
     "GET /keep/a%3fb")
case("qmark-backref-in-redirect",
     PP + ON + "RewriteRule ^/r3/(.*)$ /t/$1 [R]", "GET /r3/a%3fb")
case("cve-2024-39573-proxy-prefix-not-proxied",
     ON + "RewriteRule ^/r/(.*) $1", "GET /r/proxy:http://evil/")
case("cve-2024-38477-target-without-host-400",
     ON + "RewriteRule ^/nohost http:///x [P]", "GET /nohost")
case("target-with-empty-host-and-port-400",
     ON + "RewriteRule ^/nohost http://:8080/x [P]", "GET /nohost")
CAT = ON + "RewriteRule ^/c/(.*) http://BACKEND$1 [P]"
case("userinfo-injection-at-host", CAT, "GET /c/@127.0.0.1:1/evil")
case("concatenation-after-merged-slashes", CAT, "GET /c//ok")
case("concatenation-without-slash-bad-port", CAT, "GET /c/x")
case("at-sign-request-target-400", CAT, "GET @127.0.0.1:1/x")
case("cve-2019-10098-dot-matches-newline",
     ON + "RewriteRule ^/dot/(.*)$ http://BACKEND/d/$1 [P]", "GET /dot/a%0ab")
case("dot-matches-newline-in-redirect",
     PP + ON + "RewriteRule ^/dotr/(.*)$ /t/$1 [R]", "GET /dotr/a%0ab")
case("rules-not-applied-to-asterisk-target",
     ON + "RewriteRule ^(.*)$ http://BACKEND/star/$1 [P]", "OPTIONS *")

case("lexicographic-length-first-greater",
     PP + ON + """RewriteCond %{HTTP:X-Ver} >2
RewriteRule ^/(.*) http://BACKEND/new/$1 [P]""", "GET /x", ["X-Ver: 10"])
case("lexicographic-nc-plain-order",
     PP + ON + """RewriteCond %{HTTP:X-Ver} <2 [NC]
RewriteRule ^/(.*) http://BACKEND/old/$1 [P]""", "GET /x", ["X-Ver: 10"])
case("lexicographic-nc-ignores-length",
     PP + ON + """RewriteCond %{HTTP:X-Name} >b [NC]
RewriteRule ^/(.*) http://BACKEND/gt/$1 [P]""", "GET /x", ["X-Name: abc"])
case("lexicographic-length-first-without-nc",
     PP + ON + """RewriteCond %{HTTP:X-Name} >b
RewriteRule ^/(.*) http://BACKEND/gt/$1 [P]""", "GET /x", ["X-Name: abc"])
case("lexicographic-less-or-equal",
     PP + ON + """RewriteCond %{HTTP:X-Name} <=ab
RewriteRule ^/(.*) http://BACKEND/le/$1 [P]""", "GET /x", ["X-Name: aa"])
case("integer-less-than-false",
     PP + ON + """RewriteCond %{HTTP:X-Ver} -lt5
RewriteRule ^/(.*) http://BACKEND/lt/$1 [P]""", "GET /x", ["X-Ver: 10"])
case("integer-less-than-true",
     PP + ON + """RewriteCond %{HTTP:X-Ver} -lt5
RewriteRule ^/(.*) http://BACKEND/lt/$1 [P]""", "GET /x", ["X-Ver: 3"])
case("https-value-captured",
     ON + """RewriteCond %{HTTPS} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/https-%1/$1 [P]""", "GET /x")
case("remote-addr-captured",
     ON + """RewriteCond %{REMOTE_ADDR} ^(.*)$
RewriteRule ^/(.*) http://BACKEND/ra-%1/$1 [P]""", "GET /x")
case("p-escaped-percent-in-substitution",
     ON + r"RewriteRule ^/lit$ http://BACKEND/x\%20y [P]", "GET /lit")
case("flag-r-307", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R=307]", "POST /old/x",
     ["Content-Length: 0"])
case("flag-r-308", PP + ON + "RewriteRule ^/old/(.*) /new/$1 [R=308]", "GET /old/x")
case("flag-g-with-condition",
     PP + ON + """RewriteCond %{QUERY_STRING} legacy
RewriteRule ^/api/ - [G]""", "GET /api/x?legacy=1")

# probes: results are printed, not written (the target names OTHER's random port)
PROBES = [("probe-userinfo-reaches-other-host", CAT, "GET /c/@OTHER/evil")]

# ---------------------------------------------------------------- running


def fmt_backend(reqs, addr):
    line = reqs[0][0]
    if line.endswith(" HTTP/1.1"):
        line = line[: -len(" HTTP/1.1")]
    return line.replace(addr, "BACKEND")


def run_case(c, be_addr, be_rec, other_rec, keep):
    cfg = [l.replace("BACKEND", be_addr) for l in c["config"]]
    ap = Apache(cfg, keep=keep, tag=c["name"][:20])
    try:
        be_rec.take()
        other_rec.take()
        status, hdrs = send(ap.port, c["method"], c["target"], c["headers"])
        time.sleep(0.05)
        reqs = be_rec.take()
        others = other_rec.take()
        log = ap.errorlog()
    finally:
        ap.stop()
    res = dict(status=status, hdrs=hdrs, reqs=reqs, others=others, log=log, port=ap.port)
    auto = []
    if others:
        auto.append("OTHER backend was contacted: %r" % [r[0] for r in others])
    if reqs:
        if len(reqs) > 1:
            auto.append("backend received %d requests" % len(reqs))
        if status != 200:
            auto.append("client got %s although the backend answered 200" % status)
        up = [h for h in reqs[0][1] if h.lower().startswith(("upgrade:", "connection:"))]
        if any(h.lower().startswith("upgrade:") for h in up):
            auto.append("backend also received " + "; ".join(up))
        res["expect"] = "backend " + fmt_backend(reqs, be_addr)
    elif status is not None and 300 <= status < 400 and "location" in hdrs:
        loc = hdrs["location"].replace(be_addr, "BACKEND")
        if str(ap.port) in loc:
            auto.append("Location contains Apache's listen port")
        res["expect"] = "redirect %d %s" % (status, loc)
    else:
        res["expect"] = "status %s" % status
    for code in ("AH10410", "AH10508", "AH10415", "AH01083", "AH00898"):
        if code in log:
            auto.append("error log: %s" % code)
    res["auto"] = auto
    return res


def render(c, res):
    out = ["=== " + c["name"], "config:"]
    out += ["  " + l for l in c["config"]]
    out.append("request: %s %s" % (c["method"], c["target"]))
    for h in c["headers"]:
        out.append("header: " + h)
    out.append("expect: " + res["expect"])
    notes = ([c["note"]] if c["note"] else []) + res["auto"]
    if notes:
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
    be, be_rec = make_backend()
    other, other_rec = make_backend()
    be_addr = "127.0.0.1:%d" % be.server_address[1]
    only = set(x for x in a.only.split(",") if x)
    blocks = []
    try:
        for c in CASES:
            if only and c["name"] not in only:
                continue
            res = run_case(c, be_addr, be_rec, other_rec, a.keep)
            blocks.append(render(c, res))
            print("%-60s %s%s" % (c["name"], res["expect"],
                                  ("   [" + "; ".join(res["auto"]) + "]") if res["auto"] else ""),
                  flush=True)
            if a.verbose:
                print(res["log"])
        if not only:
            other_addr = "127.0.0.1:%d" % other.server_address[1]
            for name, cfg, req in PROBES:
                method, target = req.split(" ", 1)
                c = dict(name=name, config=[l.strip() for l in cfg.strip().splitlines()],
                         method=method, target=target.replace("OTHER", other_addr),
                         headers=[], note=None)
                res = run_case(c, be_addr, be_rec, other_rec, a.keep)
                print("%-60s %s %s [%s]" % (name, c["target"], res["expect"], "; ".join(res["auto"])))
    finally:
        be.shutdown()
        other.shutdown()
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
