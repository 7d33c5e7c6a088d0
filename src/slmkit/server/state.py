"""What every route needs, built once per app: config, store, model manager."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from slmkit.config import Config
from slmkit.engine.manager import ModelManager
from slmkit.store import ModelStore


@dataclass
class ServerState:
    config: Config
    store: ModelStore
    manager: ModelManager
    draining: bool = False  # set on SIGTERM: refuse new work, let running requests finish


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.slm
    return state


StateDep = Annotated[ServerState, Depends(get_state)]
