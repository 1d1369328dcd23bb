"""The real python-socketio client for the Socket.IO recipe test (tests/recipes.rs).

Run with the recipes venv's python (tests/recipes/setup.sh makes it):
    python socketio_client.py URL MODE COUNT [COOKIE]

MODE "upgrade": the client's defaults, long-polling first and then the
upgrade to WebSocket; MODE "polling": long-polling only. Connects to URL
(wsgate), emits COUNT "ping" events, each with call() so that it waits for
the acknowledgement, and prints one line per fact for the Rust test:
    COOKIE name=value          each cookie the HTTP session holds (from wsgate)
    TRANSPORT polling|websocket
    ACK i member pid transport
    DONE
With COOKIE (e.g. "SERVERID=sticky.app02") the client starts with that
cookie, as a browser returning to the site would. Any failure is printed as "ERROR ..." and the exit status is 1. Every wait
has a deadline (connect 15 s, each acknowledgement 10 s).
"""

import os
import sys
import threading

import requests
import socketio

url, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
preset = sys.argv[4] if len(sys.argv) > 4 else None
transports = ["polling"] if mode == "polling" else ["polling", "websocket"]

# The HTTP session whose cookie jar keeps what wsgate's Set-Cookie gives
# (python-engineio sends these cookies on every polling request and on the
# WebSocket handshake); a preset cookie goes into the same jar.
http = requests.Session()
if preset:
    cname, _, cvalue = preset.partition("=")
    http.cookies.set(cname, cvalue, path="/")
sio = socketio.Client(reconnection=False, request_timeout=10, http_session=http)
status = 1
try:
    sio.connect(url, transports=transports, wait_timeout=15)
    for cookie in sio.eio.http.cookies:
        print(f"COOKIE {cookie.name}={cookie.value}", flush=True)
    print(f"TRANSPORT {sio.transport()}", flush=True)
    for i in range(count):
        ack = sio.call("ping", i, timeout=10)
        if ack.get("echo") != i:
            raise RuntimeError(f"ack {i} echoes {ack!r}")
        print(f"ACK {i} {ack['member']} {ack['pid']} {ack['transport']}", flush=True)
    print(f"TRANSPORT {sio.transport()}", flush=True)
    print("DONE", flush=True)
except Exception as e:  # noqa: BLE001 - any failure is the test's evidence
    print(f"ERROR {type(e).__name__}: {e}", flush=True)
    status = 1
else:
    status = 0
# A polling client's disconnect() can wait for its pending long-poll (up to
# the ping interval): give it 2 s, then leave without waiting longer.
closer = threading.Thread(target=sio.disconnect, daemon=True)
closer.start()
closer.join(2)
sys.stdout.flush()
os._exit(status)
