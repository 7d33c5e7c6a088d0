"""Batch jobs inside the server: the stores, the runner, and how one batch line is answered.

A line is answered by the same serving code as the HTTP route for its endpoint (same
validation, same errors, same answer), with background priority for generation, so the
scheduler puts interactive requests first. Lines count against their key's rate limits: a
batch over its key's requests or tokens per minute waits instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from slmkit.batch.files import FileStore
from slmkit.batch.jobs import JobStore
from slmkit.batch.lease import open_leases
from slmkit.batch.lines import BatchLine, Limits
from slmkit.batch.runner import BatchRunner, Execute
from slmkit.errors import Unauthenticated
from slmkit.server import context, errors
from slmkit.server.openai import protocol as p
from slmkit.server.openai import serving
from slmkit.server.state import ServerState

log = logging.getLogger("slmkit.batch")
BACKGROUND = 1  # engine priority of batch work (engine/scheduler.py)
REQUESTS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": p.ChatCompletionRequest,
    "/v1/completions": p.CompletionRequest,
    "/v1/embeddings": p.EmbeddingRequest,
}


def limits(state: ServerState) -> Limits:
    c = state.config
    return Limits(c.batch_max_lines, c.max_body_bytes, c.max_json_depth)


def build(state: ServerState) -> BatchRunner:
    """The stores (under SLM_MODELS) and the runner, wired to this server's serving code."""
    c = state.config
    files = FileStore(c.models / "files", c.file_max_bytes, c.files_per_key)
    leases = open_leases(c.batch_leases)
    jobs = JobStore(c.models / "batches", c.batches_per_key, shared=leases.shared)
    return BatchRunner(
        jobs,
        files,
        executor(state),
        limits(state),
        c.batch_concurrency,
        on_result=state.metrics.batch_line,
        max_crashes=c.batch_max_crashes,
        leases=leases,
    )


def executor(state: ServerState) -> Execute:
    async def execute(owner: str, line: BatchLine) -> tuple[int, dict[str, Any]]:
        try:
            keys = state.keys.keys() if owner else []
            key = next((k for k in keys if k.id == owner), None)
            if owner and key is None:
                raise Unauthenticated("the API key that created this batch no longer exists")
            while key is not None and (wait := state.limiter.admit(key)) > 0:
                await asyncio.sleep(min(wait, 60.0))
            ctx = context.RequestContext(uuid.uuid4().hex, "POST", line.url, key=key)
            token = context.current.set(ctx)  # the generation path meters the line, as an HTTP request
            try:
                status, body = await answer(state, line)
            finally:
                context.current.reset(token)
            state.metrics.observe_model(ctx)
            usage = body.get("usage") if status == 200 else None
            tokens = ctx.prompt_tokens + ctx.completion_tokens
            if not tokens and isinstance(usage, dict):  # embeddings: counted in the answer only
                tokens = int(usage.get("total_tokens") or 0)
            if key is not None:
                state.limiter.charge(key, tokens)
            return status, body
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the boundary of one request, as the HTTP handlers are
            response = errors.response_for(line.url, exc)
            return response.status_code, json.loads(bytes(response.body))

    return execute


async def answer(state: ServerState, line: BatchLine) -> tuple[int, dict[str, Any]]:
    """The line's request through its endpoint's serving code."""
    try:
        req = REQUESTS[line.url].model_validate(line.body)
    except ValidationError as exc:
        message, field = errors.validation_message(RequestValidationError(exc.errors()))
        return 400, p.openai_body(message, 400, field)
    result: Any
    if isinstance(req, p.ChatCompletionRequest):
        result = await serving.chat(state, req, priority=BACKGROUND)
    elif isinstance(req, p.CompletionRequest):
        result = await serving.completion(state, req, priority=BACKGROUND)
    else:
        assert isinstance(req, p.EmbeddingRequest)
        result = await serving.embeddings(state, req, priority=BACKGROUND)
    assert isinstance(result, dict)  # batch lines never stream (batch/lines.py)
    return 200, result
