"""The app factory: wires config, store, keys and model manager into the API families.

Middleware, outermost first: Observe (request id, access log, metrics), CORS (only with
SLM_ORIGINS), Guard (drain, Host, keys, rate limits, body limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from slmkit import __version__
from slmkit.config import Config
from slmkit.errors import SlmError
from slmkit.hardware import MemoryProbe
from slmkit.models.manager import ModelManager, WorkerFactory, display_name
from slmkit.security.keys import KeyStore
from slmkit.security.ratelimit import RateLimiter
from slmkit.security.redact import redact_urls
from slmkit.server import errors
from slmkit.server.batches import serving as batch_serving
from slmkit.server.family import Family
from slmkit.server.guard import Guard
from slmkit.server.metrics import Metrics
from slmkit.server.observe import Observe
from slmkit.server.responses.background import BackgroundRuns
from slmkit.server.responses.store import open_responses
from slmkit.server.state import ServerState
from slmkit.store import ModelStore

log = logging.getLogger("slmkit.server")


def create_app(
    config: Config | None = None,
    *,
    store: ModelStore | None = None,
    worker_factory: WorkerFactory | None = None,
    memory: MemoryProbe | None = None,
    preload: bool = True,
    keys: KeyStore | None = None,
) -> FastAPI:
    config = config or Config.from_env()
    store = store or ModelStore(config.models)
    for upstream in config.upstreams:  # SLM_UPSTREAMS: remote engines, listed like local models
        store.register_upstream(upstream.name, upstream.url, upstream.model)
    manager = ModelManager(store, config, worker_factory, memory)
    responses = open_responses(config)
    state = ServerState(
        config=config,
        store=store,
        manager=manager,
        keys=keys or KeyStore(config.keys_file),
        limiter=RateLimiter(),
        metrics=Metrics(manager, responses),
        responses=responses,
    )

    manager.listeners.append(state.events.publish)  # loads, unloads, evictions: GET /api/events
    state.batches = batch_serving.build(state)
    shared = None
    if config.responses_store != "memory":  # replicas share Redis: background events too
        from slmkit.server.responses.shared_events import SharedEvents

        shared = SharedEvents(config.responses_store, config.responses_ttl)
    state.background = BackgroundRuns(
        keep=config.responses_ttl, shared=shared
    )  # events as long as the response

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_warm_up(state)) if preload else None
        state.batches.start()  # resumes the jobs a stop interrupted
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await state.batches.stop()  # before the workers: unfinished lines are redone, not failed
            await state.background.close()  # each run still going records that it failed
            await manager.close()
            await responses.close()

    app = FastAPI(title="slmkit", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.slm = state
    errors.install(app)

    from slmkit.server.ui import router as ui_router

    for family in families():
        for shape in family.errors:
            errors.register(shape)
        for router in family.routers:
            app.include_router(router)
        if family.name == "rerank":  # the chat page before Ollama's routes
            app.include_router(ui_router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        name = display_name(config.default_model)
        if state.leaving or state.draining:
            return JSONResponse({"status": "draining", "model": name}, status_code=503)
        if manager.can_serve(name) and await asyncio.to_thread(store.exists, name):  # store: off the loop
            return JSONResponse({"status": "ready", "model": name})
        reason = redact_urls(manager.last_error(name) or "loading")
        return JSONResponse({"status": "not ready", "model": name, "reason": reason}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/metrics/load", include_in_schema=False)
    async def load_metrics() -> Response:
        """Queue depth, running requests and KV use only, without a key: for the inference
        gateway's endpoint picker, which scrapes every replica and cannot send one."""
        return Response(generate_latest(state.metrics.load_registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Guard, state=state)
    if config.origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.origins),
            allow_methods=["GET", "POST", "DELETE", "HEAD", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Api-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"],
        )
    app.add_middleware(Observe, state=state, routes={path for path, _ in route_table(app)})
    return app


def families() -> list[Family]:
    """The endpoint families, in mounting order (Ollama's last)."""
    from slmkit.server import anthropic, batches, ollama, openai, rerank, responses, tokenizer

    return [m.family() for m in (openai, responses, batches, anthropic, tokenizer, rerank, ollama)]


def route_table(app: FastAPI) -> list[tuple[str, set[str]]]:
    """Every (path template, methods) the app serves, through included routers."""
    out: list[tuple[str, set[str]]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI's included router
            if inner is not None:
                walk(inner.routes)
            elif getattr(route, "path", None):
                out.append((route.path, set(getattr(route, "methods", None) or ())))

    walk(list(app.routes))
    return out


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
