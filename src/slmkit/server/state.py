"""What every route needs, built once per app: config, store, model manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request

from slmkit.config import Config
from slmkit.models.manager import ModelManager
from slmkit.security.keys import KeyStore
from slmkit.security.ratelimit import RateLimiter
from slmkit.server.events import EventHub
from slmkit.store import ModelStore

if TYPE_CHECKING:
    from slmkit.batch.runner import BatchRunner
    from slmkit.server.metrics import Metrics


class KeptResponses(Protocol):
    """The Responses API's stored responses (server/responses/store.py: in memory, or shared
    in Redis), as the root sees them: the family owns the store; metrics and state hold it."""

    @property
    def total_bytes(self) -> int: ...
    def __len__(self) -> int: ...
    async def get(self, owner: str, rid: str) -> Any: ...
    async def put(
        self, owner: str, response: dict[str, Any], context: tuple[Any, ...], inputs: int = 0
    ) -> bool: ...
    async def delete(self, owner: str, rid: str) -> bool: ...
    async def close(self) -> None: ...


class RunningResponses(Protocol):
    """Background responses running in this process (server/responses/background.py), as
    the root sees them: the app makes them, the Responses family runs them."""

    def __len__(self) -> int: ...
    async def close(self) -> None: ...


@dataclass
class ServerState:
    config: Config
    store: ModelStore
    manager: ModelManager
    keys: KeyStore
    limiter: RateLimiter
    metrics: Metrics
    responses: KeptResponses  # the Responses API's stored responses, per key
    leaving: bool = False  # set on SIGTERM: /ready answers 503, work is still taken (SLM_DRAIN_DELAY)
    draining: bool = False  # set after the drain delay: refuse new work, let running requests finish
    batches: BatchRunner = field(
        init=False
    )  # batch jobs and files (server/batches/serving.py), set by the app
    background: RunningResponses = field(init=False)  # background responses, set by the app
    events: EventHub = field(default_factory=EventHub)  # GET /api/events (server/events.py)


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.slm
    return state


StateDep = Annotated[ServerState, Depends(get_state)]
