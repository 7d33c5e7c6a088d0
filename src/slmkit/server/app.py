"""The app factory: wires config, store and model manager into the API families."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from slmkit import __version__
from slmkit.config import Config
from slmkit.engine.manager import ModelManager, WorkerFactory, display_name
from slmkit.errors import SlmError
from slmkit.server import errors
from slmkit.server.state import ServerState
from slmkit.store import ModelStore

log = logging.getLogger("slmkit.server")


class RequestGuard:
    """ASGI middleware: 503 while draining, 413 for bodies over ``limit`` bytes.

    It also reads every body as JSON whatever its Content-Type, as Ollama does, so that
    ``curl -d '{...}'`` (which says form-urlencoded) works.
    """

    def __init__(self, app: Any, limit: int, state: ServerState) -> None:
        self.app = app
        self.limit = limit
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.state.draining and scope["path"] not in {"/health", "/ready"}:
            await self._respond(scope, send, 503, "the server is shutting down")
            return
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Any, send: Any) -> None:
        message = f"request body is larger than the limit of {self.limit} bytes (SLM_MAX_BODY_BYTES)"
        await self._respond(scope, send, 413, message)

    async def _respond(self, scope: Any, send: Any, status: int, message: str) -> None:
        openai = scope["path"].startswith("/v1")
        body = errors.openai_body(message, status) if openai else errors.ollama_body(message)
        headers = {"Retry-After": "1"} if status == 503 else None
        await JSONResponse(body, status_code=status, headers=headers)({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def create_app(
    config: Config | None = None,
    *,
    store: ModelStore | None = None,
    worker_factory: WorkerFactory | None = None,
    preload: bool = True,
) -> FastAPI:
    config = config or Config.from_env()
    store = store or ModelStore(config.models)
    manager = ModelManager(store, config, worker_factory)
    state = ServerState(config=config, store=store, manager=manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_warm_up(state)) if preload else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await manager.close()

    app = FastAPI(title="slmkit", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.slm = state
    errors.install(app)

    from slmkit.server.ollama.router import router as ollama_router
    from slmkit.server.openai.router import router as openai_router

    app.include_router(openai_router)
    app.include_router(ollama_router)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root() -> PlainTextResponse:
        return PlainTextResponse("slmkit is running")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        name = display_name(config.default_model)
        if state.draining:
            return JSONResponse({"status": "draining", "model": name}, status_code=503)
        if store.exists(name) and manager.can_serve(name):
            return JSONResponse({"status": "ready", "model": name})
        reason = manager.last_error(name) or "loading"
        return JSONResponse({"status": "not ready", "model": name, "reason": reason}, status_code=503)

    app.add_middleware(RequestGuard, limit=config.max_body_bytes, state=state)
    return app


async def _warm_up(state: ServerState) -> None:
    """Import the embedded default model if needed, then load it so /ready turns green."""
    from slmkit.store.default import DEFAULT_NAME, ensure_default_model

    name = state.config.default_model
    try:
        if name == DEFAULT_NAME:
            await asyncio.to_thread(ensure_default_model, state.store, name)
        await state.manager.load(name)
    except SlmError as exc:
        log.warning("default model %s is not ready: %s", name, exc)
