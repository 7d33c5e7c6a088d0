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


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers (``header_timeout``
    seconds, set on the class by :func:`protocol`)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

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

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout: float) -> type[HeaderDeadline]:
    """The protocol class for uvicorn, with this server's header deadline."""
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
        http=protocol(config.header_timeout),
        h11_max_incomplete_event_size=64 * 1024,
        timeout_graceful_shutdown=5,
        ssl_certfile=config.tls_cert or None,
        ssl_keyfile=config.tls_key or None,
        access_log=False,  # slmkit.access logs every request, with its id and token counts
    )
    DrainingServer(uv_config, app.state.slm).run()
