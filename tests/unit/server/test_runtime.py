"""The HTTP protocol's header deadline, on a real uvicorn server over a real socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from slmkit.server.runtime import http_options


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    options = http_options(0.3, request.param)  # what `slm serve` runs with, a 0.3 s deadline
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield int(server.servers[0].sockets[0].getsockname()[1])  # port 0: the one the system chose
    server.should_exit = True
    thread.join(timeout=30)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (recv sees EOF) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_trickled_headers_are_cut_off(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # never finishes its headers
        assert closed_within(sock, 15)  # generous: the deadline is 0.3 s


def test_a_silent_connection_is_cut_off(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        assert closed_within(sock, 15)


def test_whole_requests_are_served_and_kept_alive(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):
                chunk = sock.recv(1024)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK")


def test_headers_over_64_kib_are_refused(request: pytest.FixtureRequest, port: int) -> None:
    if "h11" in request.node.name:  # h11 bounds only what it holds unparsed: 64 KiB arriving fast passes
        pytest.skip("h11 (SLM_HTTP=h11) bounds an incomplete event, not a request's headers")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 ") and b"larger than 64 KiB" in answer, answer[:200]
