"""What every route needs, built once per app: config, store, model manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from slmkit.config import Config
from slmkit.models.manager import ModelManager
from slmkit.security.keys import KeyStore
from slmkit.security.ratelimit import RateLimiter
from slmkit.server.openai.response_store import ResponseStore
from slmkit.store import ModelStore

if TYPE_CHECKING:
    from slmkit.batch.runner import BatchRunner
    from slmkit.server.metrics import Metrics


@dataclass
class ServerState:
    config: Config
    store: ModelStore
    manager: ModelManager
    keys: KeyStore
    limiter: RateLimiter
    metrics: Metrics
    responses: ResponseStore  # the Responses API's stored responses, per key
    draining: bool = False  # set on SIGTERM: refuse new work, let running requests finish
    batches: BatchRunner = field(init=False)  # batch jobs and files (server/batches.py), set by the app


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.slm
    return state


StateDep = Annotated[ServerState, Depends(get_state)]
