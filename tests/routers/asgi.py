"""Starlette router served by uvicorn, as an application would mount an
admin area: Mount('/admin', ...) plus a catch-all Route('/{p:path}').

Each answer names the handler that dispatched the request ("admin" or
"root"), the decoded path Starlette routed on (`path`) and the request
target uvicorn received from Envoy (`raw`), so tests/path_differential.rs
can tell whether a request reached the admin code. Binds 127.0.0.1:<free port>, prints
{"port": N} as its first stdout line, exits when stdin closes (the test's
ChildGuard holds it open).
"""

import json
import os
import socket
import sys
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route


def answer(handler):
    async def endpoint(request):
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        return JSONResponse({"handler": handler, "path": request.scope["path"], "raw": raw})

    return endpoint


app = Starlette(
    routes=[
        Mount("/admin", routes=[Route("/{p:path}", answer("admin"))]),
        Route("/{p:path}", answer("root")),
    ]
)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(json.dumps({"port": port}), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
