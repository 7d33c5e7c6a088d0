"""Running the app under uvicorn with a graceful drain on SIGTERM.

On SIGTERM (or Ctrl-C) the server first drains: new requests get 503 with Retry-After,
``/ready`` turns 503 so a load balancer stops sending traffic, and requests in flight may
finish for up to SLM_SHUTDOWN_TIMEOUT. Then every worker is stopped (requests still running
end with a terminal error event, never a hang) and uvicorn closes its sockets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvicorn

from slmkit.config import Config
from slmkit.server.state import ServerState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    async def shutdown(self, sockets: Any = None) -> None:
        state = self.state
        state.draining = True
        deadline = time.monotonic() + state.config.shutdown_timeout
        while state.manager.active_requests() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await state.manager.close("the server is shutting down")
        await asyncio.sleep(0.1)  # let the streams write their last event
        await super().shutdown(sockets)


def run(app: Any, config: Config) -> None:
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="debug" if config.debug else "warning",
        h11_max_incomplete_event_size=64 * 1024,
        timeout_graceful_shutdown=5,
        ssl_certfile=config.tls_cert or None,
        ssl_keyfile=config.tls_key or None,
        access_log=False,  # slmkit.access logs every request, with its id and token counts
    )
    DrainingServer(uv_config, app.state.slm).run()
