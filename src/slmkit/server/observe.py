"""The outermost middleware: request ids, the access log, request metrics, token charges.

Every request gets an id (a well-formed ``X-Request-Id`` from the caller, or a new one),
echoed in the response. When the response is done, one access-log record is written with
the id, route, status, model, token counts, durations and refusal reason as fields (one JSON
object per line with ``SLM_LOG_FORMAT=json``, key=value text otherwise: logs.py): never
prompt text and never a key (only its public id).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from slmkit.logs import FIELDS
from slmkit.server import context
from slmkit.server.state import ServerState

log = logging.getLogger("slmkit.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Observe:
    def __init__(self, app: Any, state: ServerState, routes: set[str]) -> None:
        self.app = app
        self.state = state
        self.routes = routes  # route templates known to the app (bounded metric labels)

    def route(self, path: str) -> str:
        if path in self.routes:
            return path
        if path.startswith("/v1/models/"):
            return "/v1/models/{model_id}"
        return "other"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        ctx = context.RequestContext(request_id, scope["method"], scope["path"])
        token = context.current.set(ctx)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ctx.status = int(message["status"])
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode()),
                                *fact_headers(ctx.facts)],
                }  # fmt: skip
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.current.reset(token)
            self._finish(ctx)

    def _finish(self, ctx: context.RequestContext) -> None:
        seconds = time.perf_counter() - ctx.started
        route = self.route(ctx.path)
        if route == "/metrics" and ctx.status == 200:
            return  # scrapes are not traffic
        self.state.metrics.observe(ctx, route, seconds)
        if ctx.key is not None:
            self.state.limiter.charge(ctx.key, ctx.prompt_tokens + ctx.completion_tokens)
        fields = {
            "request_id": ctx.request_id,
            "method": ctx.method,
            "path": ctx.path,
            "route": route,
            "status": ctx.status,
            "duration_ms": round(seconds * 1000, 1),
            "model": ctx.model,
            "prompt_tokens": ctx.prompt_tokens,
            "cached_tokens": ctx.cached_tokens,
            "completion_tokens": ctx.completion_tokens,
            "ttft_ms": round(ctx.ttft * 1000, 1) if ctx.ttft is not None else None,
            "key": ctx.key.id if ctx.key else None,
            "rejected": ctx.rejection,
        }
        # the fields go out as JSON keys (SLM_LOG_FORMAT=json) or key=value (logs.py)
        if self.state.config.log_format != "json":
            fields = {k: v for k, v in fields.items() if k not in {"method", "path"}}
        log.info("%s %s", escape(ctx.method), escape(ctx.path), extra={FIELDS: fields})


def fact_headers(facts: dict[str, Any] | None) -> list[tuple[bytes, bytes]]:
    """A whole answer's facts (answer/generation.facts) as ``X-Slm-*`` headers: known before
    the response starts only when the answer is complete (a stream says them in its last
    event instead)."""
    if not facts:
        return []
    return [
        (b"x-slm-" + k.replace("_", "-").encode(), str(v).encode("latin-1", "replace"))
        for k, v in facts.items()
    ]


def escape(text: str) -> str:
    """Control characters (CR, LF, ESC ...) as \\xNN: a request path cannot forge log lines."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
