"""One Socket.IO member for the Socket.IO recipe test (tests/recipes.rs).

Run with the recipes venv's python (tests/recipes/setup.sh makes it):
    python socketio_server.py NAME PORT

A python-socketio AsyncServer on aiohttp, listening on 127.0.0.1:PORT at the
default path /socket.io/. Every "ping" event is acknowledged with this
member's NAME, its pid and the engine.io transport the session uses at that
moment, so that the client can tell which member answered and over what.
Prints "READY NAME PORT" on standard output once it listens.
"""

import asyncio
import os
import sys

import socketio
from aiohttp import web

name, port = sys.argv[1], int(sys.argv[2])



@web.middleware
async def log_requests(request, handler):
    """One line per HTTP request (polling or WebSocket handshake) this member gets."""
    q = request.query
    print(
        f"REQUEST {name} {request.method} transport={q.get('transport', '')} sid={q.get('sid', '')} "
        f"cookie={request.headers.get('Cookie', '')}",
        flush=True,
    )
    return await handler(request)


sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
app = web.Application(middlewares=[log_requests])
sio.attach(app)


@sio.event
async def connect(sid, environ, auth=None):
    print(f"CONNECT {name} sid={sid} cookie={environ.get('HTTP_COOKIE', '')}", flush=True)


@sio.on("ping")
async def ping(sid, data):
    return {"member": name, "pid": os.getpid(), "transport": sio.transport(sid), "echo": data}


@sio.event
async def disconnect(sid, *args):
    print(f"DISCONNECT {name} sid={sid}", flush=True)


async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"READY {name} {port}", flush=True)
    while True:
        await asyncio.sleep(3600)


asyncio.run(main())
