"""The one exception tree of slmkit.

Every error slmkit raises on purpose derives from :class:`SlmError`. Third-party errors
(llama_cpp, httpx, OSError in the store, jinja2) are translated into these at the adapter
that sees them, with ``raise ... from exc``. HTTP status codes are chosen in exactly one
place: :func:`slmkit.server.errors.status_for`.

    SlmError
    ├── InvalidRequest            the caller sent something we refuse (HTTP 400)
    │   ├── InvalidName           a model name breaks the name grammar (names.py)
    │   ├── InvalidDigest         a digest is not ``sha256:<64 hex>``
    │   ├── InvalidModelFile      a file is not a well-formed GGUF (or ONNX folder) we accept
    │   ├── TemplateError         a chat template failed, or hit a time/size limit
    │   ├── ModelfileError        a Modelfile does not parse (the message names the line)
    │   ├── InvalidText           a request string is not valid Unicode (a lone surrogate)
    │   └── LimitExceeded         a request exceeds a configured bound (prompt too long ...)
    │       ├── BodyTooLarge      a request body is over SLM_MAX_BODY_BYTES (HTTP 413)
    │       └── BodyTooSlow       a request body did not arrive within SLM_BODY_TIMEOUT (HTTP 408)
    ├── AuthError                 the front door refuses the caller
    │   ├── Unauthenticated       no API key, or not a valid one (HTTP 401)
    │   ├── Forbidden             the key's scope does not allow this route (HTTP 403)
    │   │   ├── HostNotAllowed    the Host header is not a local name on a loopback server (403)
    │   │   └── OriginNotAllowed  a web page of another origin (not loopback, not SLM_ORIGINS) (403)
    │   └── RateLimited           the key is over its requests or tokens per minute (HTTP 429)
    ├── NotFound                  something named does not exist (HTTP 404)
    │   ├── ModelNotFound         no manifest for that model name
    │   ├── FileNotFound          no file of that id for this key (/v1/files)
    │   └── BatchNotFound         no batch job of that id for this key (/v1/batches)
    ├── StoreError                the model store could not be read or written (HTTP 500)
    │   ├── IntegrityError        a blob's bytes do not match its digest
    │   └── DiskFull              a write would leave the disk nearly full (HTTP 507)
    ├── SharedStateUnavailable    Redis (SLM_RESPONSES_STORE, SLM_BATCH_LEASES) did not answer (503)
    ├── PullError                 a registry or hub refused, failed or sent what we reject (HTTP 502)
    │   └── PullCancelled         the client went away; partial downloads stay for a resume (499)
    ├── QualityGateFailed         a quantized model lost more quality than allowed; nothing stored (422)
    ├── ConversionFailed          a converter (the ONNX model builder) refused or crashed; nothing kept
    ├── EngineError               inference failed (HTTP 500 unless said otherwise)
    │   ├── ModelLoadError        a worker could not load a model (bad file, out of memory)
    │   ├── WorkerCrashed         a worker process died; its requests fail, others go on (503)
    │   ├── RequestFailed         one request's own path raised in the engine; it alone ends (500)
    │   ├── ServerBusy            the request queue is full (HTTP 503)
    │   │   └── Draining          the server is shutting down and takes no new work (HTTP 503)
    │   ├── DeadlineExceeded      a request ran past SLM_REQUEST_TIMEOUT (HTTP 504)
    │   └── InsufficientMemory    a model cannot fit the memory budget (HTTP 507)
    └── ClientError               the HTTP client got an error answer (carries the status)
        └── ServerUnavailable     no slmkit server answers at that address
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any


class SlmError(Exception):
    """Base of every slmkit error. ``str(err)`` is safe to show to a remote user."""

    code: str | None = None  # OpenAI's machine-readable error code, where it has one
    param: str | None = None  # the request field at fault, where one is


class InvalidRequest(SlmError):
    """The caller sent a value we refuse; the message names the field or limit."""


class InvalidName(InvalidRequest):
    """A model name does not match the grammar documented in :mod:`slmkit.names`."""


class InvalidDigest(InvalidRequest):
    """A digest string is not ``sha256:`` followed by 64 lowercase hex digits."""


class InvalidModelFile(InvalidRequest):
    """A file offered as a model is not a GGUF we can accept (bad magic, truncated ...)."""


class TemplateError(InvalidRequest):
    """A chat template raised, touched something the sandbox forbids, or ran too long."""


class ModelfileError(InvalidRequest):
    """A Modelfile does not parse; the message starts with the line number."""


class InvalidText(InvalidRequest):
    """A string of the request cannot be encoded as UTF-8 (a lone UTF-16 surrogate, which
    JSON allows); the message and ``param`` name the field (security/text.py)."""

    code = "invalid_text"


class LimitExceeded(InvalidRequest):
    """A request is larger than a configured bound (prompt tokens, body size, stop count)."""


class BodyTooLarge(LimitExceeded):
    """A request body is larger than SLM_MAX_BODY_BYTES."""


class BodyTooSlow(LimitExceeded):
    """A request body did not arrive completely within SLM_BODY_TIMEOUT."""


class AuthError(SlmError):
    """The front door (server/guard.py) refuses the caller before any route runs."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, for a Retry-After header


class Unauthenticated(AuthError):
    """No API key was sent, or it is not a valid one."""


class Forbidden(AuthError):
    """The key's scope does not allow the route."""


class HostNotAllowed(Forbidden):
    """A loopback server got a Host header that is not a local name (DNS rebinding)."""


class OriginNotAllowed(Forbidden):
    """A browser sent the request from a page whose origin is neither local nor in SLM_ORIGINS,
    or sent a state-changing body a page could post without a CORS preflight."""


class RateLimited(AuthError):
    """The key is over its requests-per-minute or tokens-per-minute limit."""


class NotFound(SlmError):
    """Something named by the caller does not exist."""


class ResponseNotFound(NotFound):
    """No stored response of that id for this API key (server/responses/store.py)."""

    def __init__(self, rid: str) -> None:
        super().__init__(f"Response with id '{rid}' not found.")


class FileNotFound(NotFound):
    """No uploaded or produced file of that id for this API key (batch/files.py)."""


class BatchNotFound(NotFound):
    """No batch job of that id for this API key (batch/jobs.py)."""


class PreviousResponseNotFound(InvalidRequest):
    """``previous_response_id`` names no stored response of this API key: 400, as OpenAI answers."""

    code = "previous_response_not_found"
    param = "previous_response_id"

    def __init__(self, rid: str) -> None:
        super().__init__(f"Previous response with id '{rid}' not found.")


class ModelNotFound(NotFound):
    """No model of that name is in the store."""

    def __init__(self, name: str, nearby: Sequence[str] = ()) -> None:
        hint = f"; did you mean {' or '.join(nearby)}?" if nearby else ", try pulling it first"
        super().__init__(f"model '{name}' not found{hint}")
        self.name = name


class StoreError(SlmError):
    """The model store could not be read or written (disk full, permissions)."""


class IntegrityError(StoreError):
    """Bytes on disk or on the wire do not hash to the digest that names them."""


class DiskFull(StoreError):
    """Writing more would leave less than the reserve free on the store's disk."""


class PullError(SlmError):
    """A pull failed: the source is unreachable, refused, or sent something we reject."""


class PullCancelled(PullError):
    """The client of a pull went away; partial downloads are kept for a later resume."""


class QualityGateFailed(SlmError):
    """`slm quantize --max-ppl-increase`: the result's perplexity rose past the budget."""


class ConversionFailed(SlmError):
    """`slm convert --to onnx`: the model builder failed (the message has its last line)."""


class EngineError(SlmError):
    """Inference failed inside the engine."""


class ModelLoadError(EngineError):
    """A worker could not load its model; the model is unusable until fixed."""


class WorkerCrashed(EngineError):
    """The worker process that owned a model died; its in-flight requests fail."""

    code = "worker_crashed"


class RequestFailed(EngineError):
    """Something on one request's own path in the engine (tokenizing, rendering, setting up
    its sampler or grammar, decoding its output, embedding its text) raised an error that is
    not one of ours: that request alone ends with this; the worker and the other requests
    go on. The message names the stage and the error's type, never its text (which may
    quote the request or a path)."""


def contain(exc: Exception, stage: str) -> SlmError:
    """``exc`` as the error one request ends with: ours as it is, anything else logged with
    its traceback and wrapped in :class:`RequestFailed` (the engine's boundary for one
    request, as server/errors.py is the HTTP one)."""
    if isinstance(exc, SlmError):
        return exc
    logging.getLogger("slmkit.engine").error("one request failed while %s", stage, exc_info=exc)
    return RequestFailed(f"the model could not process this request ({stage}: {type(exc).__name__})")


class SharedStateUnavailable(SlmError):
    """The state replicas share (stored responses, batch leases: Redis) could not be read or
    written; the message never names the server's address or password."""


class ServerBusy(EngineError):
    """Too many requests are waiting; try again later."""


class Draining(ServerBusy):
    """The server is shutting down: it finishes what it runs and takes nothing new."""


class DeadlineExceeded(EngineError):
    """A request ran longer than SLM_REQUEST_TIMEOUT; it was aborted."""


class InsufficientMemory(EngineError):
    """A model's estimated memory does not fit the budget, even after unloading idle models."""


class ClientError(SlmError):
    """An slmkit server answered with an error status."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServerUnavailable(ClientError):
    """Nothing answers at the configured server address."""


def first_problem(
    problems: Sequence[Mapping[str, Any]], skip: tuple[str, ...] = ()
) -> tuple[str, str | None]:
    """'where: what' for the first problem pydantic found (``ValidationError.errors()``), and
    the field's dotted name; pydantic's "Value error, " prefix is dropped."""
    first = problems[0] if problems else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in skip) or None
    what = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{where}: {what}" if where else what), where
