"""Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread, for real HTTP in tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve(app: Any, *, timeout: float = 15.0) -> Iterator[str]:
    """Run `app` until the block ends; yields its base URL (http://127.0.0.1:<port>)."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on such sockets; without it every kept-alive response waits
    # ~40 ms for the client's delayed ACK, and the stand-ins' latency is that, not theirs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, loop="asyncio")
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as error:  # surfaced to the test below
            failure.append(error)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"server on port {port} failed to start") from (failure[0] if failure else None)
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on port {port} did not start in {timeout} s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
