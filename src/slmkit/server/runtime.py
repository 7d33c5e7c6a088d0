"""Running the app under uvicorn with a graceful drain on SIGTERM.

On SIGTERM (or Ctrl-C) ``/ready`` turns 503 at once, and the server keeps taking new work
for SLM_DRAIN_DELAY (0 by default) so a load balancer or router polling ``/ready`` stops
sending before anything is refused. Then it drains: new requests get 503 with Retry-After,
and requests in flight may finish for up to SLM_SHUTDOWN_TIMEOUT. Then every worker is
stopped (requests still running end with a terminal error event, never a hang) and uvicorn
closes its sockets.

Connections are bounded too: a request's headers must arrive within SLM_HEADER_TIMEOUT of
its first byte (or of the connection, for the first request), so a client that trickles
them, or connects and sends nothing, is disconnected instead of holding a slot; an idle
keep-alive connection closes after 5 s (uvicorn's default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from slmkit.config import Config
from slmkit.logs import FIELDS
from slmkit.server.state import ServerState

log = logging.getLogger("slmkit.server")


class HeaderTimer:
    """A deadline on a request's headers, shared by both protocols: armed when a connection
    opens and when a request's first byte arrives, disarmed once its headers are complete;
    on expiry the connection is closed (if the headers are still pending)."""

    header_timeout = 10.0  # seconds, set on the class by :func:`protocol`
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_pending(self) -> bool:
        return True  # the timer is disarmed as soon as they are complete

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._headers_pending() and not self.transport.is_closing():
            self.transport.close()


class HeaderDeadline(HeaderTimer, H11Protocol):
    """uvicorn's h11 protocol with the header deadline."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request's headers are not complete yet
            if self._header_timer is None and data:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_pending(self) -> bool:
        return self.conn.their_state is h11.IDLE


MAX_HEADER_BYTES = 64 * 1024  # request line and headers together


def fast_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools (llhttp, in C) protocol with the same two bounds as the h11 one:
    a request's headers must arrive within ``timeout`` seconds of its first byte (or of the
    connection), and be at most MAX_HEADER_BYTES (431 past it; llhttp sets no limit)."""
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class FastHeaderDeadline(HeaderTimer, HttpToolsProtocol):
        header_timeout = timeout
        _header_bytes = 0
        _too_big = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            if self._header_timer is None:
                self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._too_big:
                super().send_400_response(msg)
                return
            body = f"request headers are larger than {MAX_HEADER_BYTES // 1024} KiB".encode()
            self.transport.write(
                STATUS_LINE[431] + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
            self.transport.close()

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > MAX_HEADER_BYTES:
                self._too_big = True
                raise httptools.HttpParserError("request headers too large")  # answered with 431

    return FastHeaderDeadline


def http_options(header_timeout: float, impl: str) -> dict[str, Any]:
    """uvicorn's HTTP settings for SLM_HTTP (``httptools`` or ``h11``): the protocol with its
    header bounds, and the event loop that goes with it."""
    fast = impl == "httptools"
    return {
        "http": protocol(header_timeout, fast=fast),
        "loop": "uvloop" if fast else "asyncio",
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


def protocol(header_timeout: float, fast: bool = False) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn, with this server's header deadline: llhttp (C) when
    ``fast`` (SLM_HTTP=httptools), else h11 (pure Python)."""
    if fast:
        return fast_protocol(header_timeout)
    return type("SlmHttpProtocol", (HeaderDeadline,), {"header_timeout": header_timeout})


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    signalled_twice = False  # a second SIGTERM or Ctrl-C ends SLM_DRAIN_DELAY early

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.signalled_twice = self.should_exit
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        """Bind, then say where: with port 0 the system chose the port, and this line (on
        stdout) is how a supervisor or a test learns it."""
        await super().startup(sockets)
        bound = [s.getsockname() for server in self.servers for s in server.sockets or ()]
        if bound:
            config = self.state.config
            scheme = "https" if config.tls_cert else "http"
            host = f"[{config.host}]" if ":" in config.host else config.host
            url = f"{scheme}://{host}:{bound[0][1]}"
            if config.log_format == "json":  # every line one JSON object; the message as in text
                log.info("slmkit listening on %s", url, extra={FIELDS: {"url": url}})
            else:
                print(
                    f"slmkit listening on {url}\n"
                    f"  OpenAI API {url}/v1 · Ollama API {url}/api · chat page {url}/ui/ · "
                    f"API docs {url}/docs\n  models in {config.models}; Ctrl-C stops",
                    flush=True,
                )

    async def shutdown(self, sockets: Any = None) -> None:
        state = self.state
        state.leaving = True  # /ready: 503, so whoever routes here stops sending new work
        if state.config.drain_delay > 0:
            log.info("leaving: serving %.0f s more while routers notice", state.config.drain_delay)
            end = time.monotonic() + state.config.drain_delay
            while time.monotonic() < end and not self.signalled_twice:
                await asyncio.sleep(0.05)
        state.draining = True
        deadline = time.monotonic() + state.config.shutdown_timeout
        while state.manager.active_requests() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await state.batches.stop()  # batch lines in flight are redone after a restart
        await state.manager.close("the server is shutting down")
        await asyncio.sleep(0.1)  # let the streams write their last event
        await super().shutdown(sockets)


def run(app: Any, config: Config) -> None:
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,  # uvicorn's loggers propagate to ours (logs.setup: text or JSON)
        log_level="debug" if config.debug else "warning",
        **http_options(config.header_timeout, config.http),
        timeout_graceful_shutdown=5,
        ssl_certfile=config.tls_cert or None,
        ssl_keyfile=config.tls_key or None,
        access_log=False,  # slmkit.access logs every request, with its id and token counts
    )
    DrainingServer(uv_config, app.state.slm).run()
