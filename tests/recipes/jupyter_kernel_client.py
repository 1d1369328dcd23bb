"""The client side of the JupyterHub/Jupyter recipe test (tests/recipes.rs).

Run with the recipes venv's python (tests/recipes/setup.sh makes it):
    python jupyter_kernel_client.py GATE TOKEN [CAFILE]

GATE is wsgate's host:port; with CAFILE, over https:// and wss://, the
server's certificate checked against it. Through it, as JupyterLab in a browser does:
logs in with the token on /login (the server answers with its login cookie,
whose name carries the Host the server saw), starts a kernel with the REST
API (POST /api/kernels, cookie plus X-XSRFToken), opens the kernel's
channels WebSocket with the cookie and an Origin of http://GATE (so the
server's cross-origin check runs: it compares Origin with the Host it
receives, which is why the recipe has ProxyPreserveHost on)
(/api/kernels/ID/channels, the request that the recipe's RewriteRule sends to
ws://), sends an execute_request for print(6*7) on the shell channel, waits
for the iopub stream output and the execute_reply, then deletes the kernel.
Prints one line per fact for the Rust test:
    HEADER name: value     response headers of the REST calls (from wsgate)
    LOGIN status cookie-names
    KERNEL id
    STREAM name text       each stream output, text with \\n escaped
    REPLY status
    DONE
Any failure is printed as "ERROR ..." and the exit status is 1. Every wait
has a deadline (HTTP 30 s, the kernel's answer 60 s).
"""

import json
import sys
import time
import uuid

import requests
import websocket

gate, token = sys.argv[1], sys.argv[2]
ca_file = sys.argv[3] if len(sys.argv) > 3 else None
scheme = "https" if ca_file else "http"
base = f"{scheme}://{gate}"
http = requests.Session()
if ca_file:
    http.verify = ca_file
    # REQUESTS_CA_BUNDLE in the environment would override it.
    http.trust_env = False


def show_headers(resp):
    for name in ("Strict-Transport-Security", "Location", "Server"):
        if name in resp.headers:
            print(f"HEADER {name.lower()}: {resp.headers[name]}", flush=True)


def message(msg_type, content, session):
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "wsgate-test",
            "session": session,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


kernel_id = None
status = 1
try:
    r = http.get(f"{base}/login", timeout=30)
    r.raise_for_status()
    show_headers(r)
    xsrf = http.cookies.get("_xsrf")
    if not xsrf:
        raise RuntimeError(f"GET /login set no _xsrf cookie: {dict(r.headers)}")
    r = http.post(f"{base}/login?next=%2F", data={"password": token, "_xsrf": xsrf},
                  allow_redirects=False, timeout=30)
    print(f"LOGIN {r.status_code} {','.join(sorted(c.name for c in http.cookies))}", flush=True)
    if r.status_code != 302:
        raise RuntimeError(f"POST /login: {r.status_code} {r.text[:200]}")
    xhr = {"X-XSRFToken": xsrf}
    r = http.get(f"{base}/api/status", headers=xhr, timeout=30)
    r.raise_for_status()
    show_headers(r)
    r = http.post(f"{base}/api/kernels", headers=xhr, json={"name": "python3"}, timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/kernels: {r.status_code} {r.text[:200]}")
    kernel_id = r.json()["id"]
    print(f"KERNEL {kernel_id}", flush=True)

    session = uuid.uuid4().hex
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    ws = websocket.create_connection(
        f"{'wss' if ca_file else 'ws'}://{gate}/api/kernels/{kernel_id}/channels?session_id={session}",
        header=[f"Cookie: {cookie}"],
        origin=base,
        timeout=30,
        sslopt={"ca_certs": ca_file} if ca_file else None,
    )
    request = message(
        "execute_request",
        {"code": "print(6*7)", "silent": False, "store_history": False,
         "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        session,
    )
    msg_id = request["header"]["msg_id"]
    ws.send(json.dumps(request))
    deadline = time.monotonic() + 60
    got_stream = got_reply = False
    while not (got_stream and got_reply):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no stream output and execute_reply within 60 s")
        ws.settimeout(left)
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            text = msg["content"]["text"]
            print(f"STREAM {msg['content']['name']} {text.encode('unicode_escape').decode()}", flush=True)
            got_stream = True
        elif kind == "execute_reply":
            print(f"REPLY {msg['content']['status']}", flush=True)
            got_reply = True
        elif kind == "error":
            print(f"STREAM error {msg['content'].get('evalue', '')}", flush=True)
    ws.close()
    status = 0
    print("DONE", flush=True)
except Exception as e:  # noqa: BLE001 - any failure is the test's evidence
    print(f"ERROR {type(e).__name__}: {e}", flush=True)
finally:
    if kernel_id:
        try:
            http.delete(f"{base}/api/kernels/{kernel_id}", headers=xhr, timeout=30)
        except Exception:  # noqa: BLE001
            pass
sys.exit(status)
