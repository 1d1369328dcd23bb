#!/usr/bin/python3
"""Startup and configuration-check times (issue 8's targets: listening in
under 50 ms, `-t` on a 1,000-line configuration in under 100 ms).

Usage: /usr/bin/python3 bench/startup.py [path/to/wsgate]   (default:
target/release/wsgate). Writes a 1,000-line configuration (ProxyPass,
ProxyPassReverse, rewrite rules, Locations) to a temporary folder, then
reports the median of 10 runs of `wsgate -t -f FILE` and of the time from
starting `wsgate -f FILE` to its port accepting a connection.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

wsgate = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "release", "wsgate")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
lines = [f"Listen 127.0.0.1:{port}", "ServerName big.test", "RewriteEngine On"]
for i in range(200):
    lines.append(f"ProxyPass /app{i}/ws/ ws://127.0.0.1:{9000 + i}/ws/ timeout=30")
    lines.append(f"ProxyPass /app{i}/ http://127.0.0.1:{9000 + i}/ keepalive=On")
    lines.append(f"ProxyPassReverse /app{i}/ http://127.0.0.1:{9000 + i}/")
for i in range(100):
    lines.append("RewriteCond %{HTTP:Upgrade} websocket [NC]")
    lines.append(f"RewriteRule ^/r{i}/(.*) ws://127.0.0.1:{9500 + i}/$1 [P,L]")
for i in range(50):
    lines += [f"<Location /loc{i}/>", f"  ProxyPass http://127.0.0.1:{9700 + i}/", "  ProxyPreserveHost On", "</Location>"]
while len(lines) < 1000:
    lines.append("# filler")
folder = tempfile.mkdtemp()
conf = os.path.join(folder, "big.conf")
with open(conf, "w") as f:
    f.write("\n".join(lines) + "\n")

checks = []
for _ in range(10):
    t = time.perf_counter()
    subprocess.run([wsgate, "-t", "-f", conf], capture_output=True, check=True)
    checks.append(time.perf_counter() - t)
starts = []
for _ in range(10):
    t = time.perf_counter()
    p = subprocess.Popen([wsgate, "-f", conf], stderr=subprocess.DEVNULL)
    try:
        deadline = t + 5
        while time.perf_counter() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                break
            except OSError:
                time.sleep(0.0005)
        starts.append(time.perf_counter() - t)
    finally:
        p.terminate()
        p.wait()
checks.sort()
starts.sort()
print(f"wsgate -t on a {len(lines)}-line configuration: median {checks[5] * 1000:.1f} ms (target < 100 ms)")
print(f"start to listening with it: median {starts[5] * 1000:.1f} ms (target < 50 ms)")
