"""The one place where errors become HTTP answers.

``status_for`` maps the exception tree (errors.py) to status codes; each API family
registers its body (``ErrorShape``), and ``body_for`` picks it by route. Anything that is
not an SlmError is a bug: it is logged with its traceback and answered with a bare 500,
never with the trace or a path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmkit import errors
from slmkit.security.redact import redact_urls
from slmkit.server import context

log = logging.getLogger("slmkit.server")

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (errors.BodyTooLarge, 413),
    (errors.BodyTooSlow, 408),
    (errors.LimitExceeded, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.RateLimited, 429),
    (errors.PullCancelled, 499),
    (errors.PullError, 502),
    (errors.QualityGateFailed, 422),
    (errors.InvalidRequest, 400),
    (errors.NotFound, 404),
    (errors.ServerBusy, 503),
    (errors.SharedStateUnavailable, 503),
    (errors.DeadlineExceeded, 504),
    (errors.InsufficientMemory, 507),
    (errors.DiskFull, 507),
    (errors.WorkerCrashed, 503),
    (errors.ModelLoadError, 500),
    (errors.IntegrityError, 500),
    (errors.SlmError, 500),
)
# Why the front door (server/guard.py) refused a request: the rejections metric's label.
_REJECTIONS: tuple[tuple[type[Exception], str], ...] = (
    (errors.Draining, "draining"),
    (errors.HostNotAllowed, "bad_host"),
    (errors.OriginNotAllowed, "bad_origin"),
    (errors.Unauthenticated, "unauthorized"),
    (errors.Forbidden, "forbidden"),
    (errors.RateLimited, "rate_limited"),
    (errors.BodyTooSlow, "too_slow"),
    (errors.LimitExceeded, "too_large"),
)
_PATH = re.compile(r"(?:/[\w.+@-]+){2,}")


def status_for(exc: Exception) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def public_message(exc: Exception) -> str:
    """The message a remote caller may see: ours, scrubbed of filesystem paths."""
    if not isinstance(exc, errors.SlmError):
        return "internal server error"
    return _PATH.sub("<path>", redact_urls(str(exc)))


BodyFn = Callable[[str, int, "str | None", "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class ErrorShape:
    """An API family's error body for the paths it serves: ``prefix`` (every path under it,
    or only that path when ``exact``). The family declares it (its ``family()``), the app
    registers it, and the longest matching prefix decides; so this module imports no dialect."""

    prefix: str
    body: BodyFn  # (message, status, param, code) -> the JSON body
    exact: bool = False

    def matches(self, path: str) -> bool:
        return path == self.prefix if self.exact else path.startswith(self.prefix)


_SHAPES: dict[tuple[str, bool], ErrorShape] = {}


def register(shape: ErrorShape) -> None:
    """Answer errors on ``shape``'s paths in its family's body (idempotent)."""
    _SHAPES[(shape.prefix, shape.exact)] = shape


def body_for(
    path: str, message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The error in the caller's dialect, by route: the family with the longest matching
    prefix (an exact path first); ``{"error": message}`` where none matches."""
    found = [s for s in _SHAPES.values() if s.matches(path)]
    if not found:
        return {"error": message}
    best = max(found, key=lambda s: (s.exact, len(s.prefix)))
    return best.body(message, status, param, code)


def error_response(request: Request, exc: Exception, param: str | None = None) -> JSONResponse:
    return response_for(request.url.path, exc, param)


def response_for(path: str, exc: Exception, param: str | None = None, *, door: bool = False) -> JSONResponse:
    """Any error as the HTTP answer for ``path``: status, dialect body, Retry-After and
    WWW-Authenticate headers; a refusal at the front door (``door``) or a full queue is
    noted for the rejections metric."""
    status = status_for(exc)
    ctx = context.current.get()
    if ctx is not None and isinstance(exc, errors.ServerBusy) and not door:
        ctx.rejection = "queue_full"
    if ctx is not None and door:
        ctx.rejection = next((label for cls, label in _REJECTIONS if isinstance(exc, cls)), "too_large")
    if not isinstance(exc, errors.SlmError):
        log.error("unhandled error on %s", path, exc_info=exc)
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = "1"
    if isinstance(exc, errors.AuthError) and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    code = exc.code if isinstance(exc, errors.SlmError) else None
    param = param or (exc.param if isinstance(exc, errors.SlmError) else None)
    body = body_for(path, public_message(exc), status, param, code)
    return JSONResponse(body, status_code=status, headers=headers or None)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """'field: problem' for the first error pydantic found, and the field's name."""
    problems = exc.errors()
    message, field = errors.first_problem(problems, skip=("body",))
    kind = problems[0].get("type") if problems else None
    if kind == "json_invalid":
        return "request body is not valid JSON", None
    if kind == "extra_forbidden" and field:
        return f"{field}: this field is not supported", field
    return message, field


async def guard_stream(
    lines: AsyncIterator[str], on_error: Callable[[Exception], str], tail: str = ""
) -> AsyncIterator[str]:
    """The HTTP boundary of a stream already under way: the status line is sent, so an
    error becomes one last line in the dialect's shape (``on_error``), then ``tail``."""
    try:
        async for line in lines:
            yield line
    except Exception as exc:  # the one boundary for streams: nothing may escape
        if not isinstance(exc, errors.SlmError):
            log.error("unhandled error in a stream", exc_info=exc)
        yield on_error(exc)
    if tail:
        yield tail


def install(app: Any) -> None:
    """Register the handlers on a FastAPI app."""

    async def on_slm_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, field = validation_message(exc)
        return JSONResponse(body_for(request.url.path, message, 400, field), status_code=400)

    async def on_http(request: Request, exc: Exception) -> Response:
        """The framework's own refusals (an unknown route, a wrong method, a malformed
        multipart form) in the caller's dialect, not ``{"detail": ...}``."""
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code < 400:
            return Response(status_code=exc.status_code, headers=exc.headers)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path[:200]}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path[:200]}"
        body = body_for(request.url.path, message, exc.status_code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    app.add_exception_handler(errors.SlmError, on_slm_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
