"""Every ``SLM_*`` setting, declared once: name, type, default and meaning.

Nothing else in slmkit reads ``os.environ``. ``slm config`` prints this table.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidRequest

DEFAULT_PORT = 11435


MAX_DURATION = 365 * 24 * 3600.0  # seconds: a longer duration is clamped to this


def parse_duration(value: str | float | int | None, *, field: str = "keep_alive") -> float:
    """Turn an Ollama-style duration into seconds; negative means "forever".

    Accepts numbers (seconds), and strings like ``"300"``, ``"5m"``, ``"1h30m"``, ``"-1"``,
    ``"250ms"``. Not a number (``"inf"``, ``"nan"``, ``1e400``) is refused; a positive
    duration longer than a year (:data:`MAX_DURATION`) counts as a year, so every deadline
    stays a date that can be computed and shown (``/api/ps``).
    """
    from slmkit.errors import InvalidRequest

    if value is None:
        raise InvalidRequest(f"{field}: a duration is required")
    if isinstance(value, bool):
        raise InvalidRequest(f"{field}: expected a duration, got a boolean")
    seconds = float(value) if isinstance(value, int | float) else _duration_text(value, field)
    if not math.isfinite(seconds):
        raise InvalidRequest(f"{field}: must be a finite duration (use -1 to keep it forever)")
    return min(seconds, MAX_DURATION)


def _duration_text(value: str, field: str) -> float:
    text = value.strip().lower()
    if len(text) > 64:
        raise InvalidRequest(f"{field}: a duration is at most 64 characters")
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, sign, i = 0.0, "", 1.0, 0
    if text.startswith("-"):
        sign, text = -1.0, text[1:]
    if not text:
        raise InvalidRequest(f"{field}: invalid duration {value!r}")
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not number:
            raise InvalidRequest(f"{field}: invalid duration {value!r} (use e.g. 30s, 5m, 1h)")
        try:
            total += float(number) * units[unit]
        except ValueError as exc:
            raise InvalidRequest(f"{field}: invalid duration {value!r}") from exc
        number = ""
        i += len(unit)
    if number:
        raise InvalidRequest(f"{field}: invalid duration {value!r} (missing unit)")
    return sign * total


def _host(value: str) -> tuple[str, int]:
    """Split ``SLM_HOST`` (``host``, ``host:port``, ``[::1]:port``, optional scheme)."""
    text = value.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            host, port = text, ""
    if port and not (port.isdigit() and 0 <= int(port) < 65536):  # 0: any free port (serve prints it)
        raise ValueError(f"SLM_HOST: invalid port {port!r}")
    return host or "127.0.0.1", int(port) if port else DEFAULT_PORT


def _memory(value: str) -> int:
    from slmkit.units import parse_size

    return parse_size(value) if value.strip() else 0


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Setting:
    """One environment setting: its name, how to parse it, its default and its meaning."""

    name: str
    default: str
    doc: str
    parse: Callable[[str], Any] = str


FLASH_ATTENTION = {
    "auto": "auto", "on": "on", "1": "on", "true": "on", "off": "off", "0": "off", "false": "off",
}  # fmt: skip
MAX_DRAFT_TOKENS = 32  # a step checks at most this many guesses per sequence
KV_CACHE_TYPES = {"f16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}


def _choice(value: str, name: str, choices: Mapping[str, str]) -> str:
    try:
        return choices[value.strip().lower()]
    except KeyError:
        raise InvalidRequest(
            f"{name}: {value!r} is not one of {', '.join(dict.fromkeys(choices.values()))}"
        ) from None


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


SETTINGS: tuple[Setting, ...] = (
    Setting("SLM_HOST", f"127.0.0.1:{DEFAULT_PORT}", "address the server binds and clients call"),
    Setting("SLM_MODELS", str(Path.home() / ".slmkit" / "models"), "model store directory"),
    Setting("SLM_DEFAULT_MODEL", "smollm2:135m", "model /ready checks and first start imports"),
    Setting("SLM_KEEP_ALIVE", "5m", "how long an idle model stays loaded (-1 = forever)"),
    Setting("SLM_MAX_LOADED_MODELS", "3", "models loaded at once; the least recently used goes", int),
    Setting("SLM_MAX_MEMORY", "", "memory models may use, e.g. 8GiB (empty = available memory - 1 GiB)"),
    Setting("SLM_MAX_QUEUE", "512", "requests waiting per model before 503 busy", int),
    Setting("SLM_NUM_PARALLEL", "0", "sequences decoded together per model (0 = auto, up to 4)", int),
    Setting(
        "SLM_NUM_THREADS",
        "0",
        "CPU threads per model (0 = automatic: the cores this process may use, minus those others keep busy)",
        int,
    ),
    Setting("SLM_CONTEXT_LENGTH", "4096", "context window per sequence (capped by the model's)", int),
    Setting("SLM_FLASH_ATTENTION", "auto", "llama.cpp flash attention: auto, on or off"),
    Setting(
        "SLM_KV_CACHE_TYPE",
        "f16",
        "KV cache precision: f16, q8_0 (half the memory) or q4_0 (a quarter); both need flash attention",
    ),
    Setting(
        "SLM_KV_UNIFIED",
        "0",
        "one KV cell pool shared by a model's slots (llama.cpp's unified KV cache) instead of one per slot",
        _bool,
    ),
    Setting(
        "SLM_DRAFT_TOKENS",
        "0",
        "speculative decoding by prompt lookup: most tokens guessed per step from the sequence's "
        "own n-grams, checked in the same batch (0 = off)",
        int,
    ),
    Setting("SLM_LOAD_TIMEOUT", "5m", "longest a model load may take before it fails"),
    Setting("SLM_REQUEST_TIMEOUT", "10m", "longest one request may run before it is aborted (0 = no limit)"),
    Setting("SLM_SHUTDOWN_TIMEOUT", "30s", "on SIGTERM, how long in-flight requests may finish"),
    Setting("SLM_HEADER_TIMEOUT", "10s", "longest a client may take to send a request's headers"),
    Setting("SLM_BODY_TIMEOUT", "60s", "longest a client may take to send a request body (not blob uploads)"),
    Setting("SLM_TEMPLATE_TIMEOUT", "1.0", "seconds a chat template may take to render", float),
    Setting("SLM_MAX_BODY_BYTES", str(8 * 1024 * 1024), "largest request body accepted", int),
    Setting("SLM_MAX_TOKENS", "8192", "most tokens one request may generate", int),
    Setting(
        "SLM_DEFAULT_MAX_TOKENS",
        "2048",
        "tokens generated when neither the request nor the model (num_predict) sets a limit",
        int,
    ),
    Setting("SLM_MAX_STOP", "16", "most stop sequences per request", int),
    Setting("SLM_MAX_EMBED_INPUTS", "256", "most inputs in one embedding request", int),
    Setting("SLM_MAX_JSON_DEPTH", "32", "deepest JSON nesting accepted in a request body", int),
    Setting(
        "SLM_RESPONSES_PER_KEY",
        "1000",
        "stored Responses API responses kept per API key, oldest dropped first (0 = store nothing)",
        int,
    ),
    Setting("SLM_RESPONSES_TTL", "24h", "how long a stored response may be read or continued"),
    Setting(
        "SLM_RESPONSES_MEMORY",
        "256MiB",
        "memory all stored responses may use; over it, the key holding the most loses its oldest",
    ),
    Setting("SLM_FILE_MAX_BYTES", "100MiB", "largest file /v1/files accepts (a batch's input)"),
    Setting("SLM_FILES_PER_KEY", "100", "uploaded files one API key may keep (outputs not counted)", int),
    Setting("SLM_BATCH_MAX_LINES", "50000", "most requests in one batch input file", int),
    Setting("SLM_BATCHES_PER_KEY", "10", "unfinished batch jobs one API key may have", int),
    Setting(
        "SLM_BATCH_CONCURRENCY",
        "8",
        "batch requests in flight, all jobs together (background priority: interactive work first)",
        int,
    ),
    Setting(
        "SLM_BATCH_MAX_CRASHES",
        "3",
        "lines of one batch job that may crash a model's worker twice before the job stops and fails",
        int,
    ),
    Setting("SLM_REGISTRY", "registry.ollama.ai", "registry that names without a host are pulled from"),
    Setting("HF_ENDPOINT", "https://huggingface.co", "Hugging Face Hub address for hf.co/... pulls"),
    Setting("HF_TOKEN", "", "Hugging Face token for gated or private repositories"),
    Setting("SLM_ALLOWED_HOSTS", "", "hosts pulls may contact, comma separated (empty = any public host)"),
    Setting(
        "SLM_PULL_PRIVATE",
        "0",
        "let pulls connect to private, loopback and link-local addresses (a registry on your network)",
        _bool,
    ),
    Setting("SLM_KEYS_FILE", "", "API keys file (empty = keys.json in SLM_MODELS)"),
    Setting("SLM_API_KEY", "", "key the CLI and slmkit.Client send to the server"),
    Setting(
        "SLM_REQUIRE_KEYS",
        "0",
        "require an API key even when the keys file is empty (then every request is refused)",
        _bool,
    ),
    Setting(
        "SLM_UPSTREAMS",
        "",
        "models served by remote OpenAI-compatible servers: NAME=URL#REMOTE_MODEL, comma separated",
    ),
    Setting("SLM_UPSTREAM_API_KEY", "", "bearer key slmkit sends to upstream servers"),
    Setting("SLM_ORIGINS", "", "web page origins allowed besides loopback pages (CORS and the Origin check)"),
    Setting(
        "SLM_LOCAL_HOSTS",
        "",
        "more Host names a loopback server answers to, comma separated: exact names or *.suffix "
        "(e.g. *.local); each one lets pages of that name reach the server (DNS rebinding)",
    ),
    Setting("SLM_TLS_CERT", "", "TLS certificate file (PEM); with SLM_TLS_KEY serves https"),
    Setting("SLM_TLS_KEY", "", "TLS private key file (PEM)"),
    Setting("SLM_LOG_FORMAT", "text", "access log format: text or json"),
    Setting("SLM_LOG_PROMPTS", "0", "log prompt text (off: prompts and keys are never logged)", _bool),
    Setting("SLM_DEBUG", "0", "log at debug level (prompts are still not logged)", _bool),
)


@dataclass(frozen=True)
class Config:
    """Resolved settings. Build with :meth:`from_env`; pass around, never re-read the env."""

    host: str
    port: int
    models: Path
    default_model: str
    keep_alive: float  # seconds; negative means forever
    max_loaded_models: int
    max_memory: int  # bytes; 0 means automatic
    max_queue: int
    num_parallel: int  # 0 means auto
    num_threads: int  # 0 means auto
    context_length: int  # tokens
    flash_attention: str  # "auto", "on" or "off"
    kv_cache_type: str  # "f16", "q8_0" or "q4_0"
    draft_tokens: int  # prompt-lookup speculation: draft tokens per step (0 = off)
    kv_unified: bool  # one KV pool for all slots
    load_timeout: float  # seconds
    request_timeout: float  # seconds; 0 = no limit
    shutdown_timeout: float  # seconds
    header_timeout: float  # seconds a request's headers may take to arrive
    body_timeout: float  # seconds a request's body may take to arrive (not blob uploads)
    template_timeout: float  # seconds
    max_body_bytes: int
    max_tokens: int  # cap on generated tokens per request
    default_max_tokens: int  # when neither the request nor the model's num_predict sets one
    max_stop: int  # cap on stop sequences per request
    max_embed_inputs: int  # cap on inputs per embedding request (each is at most 1024 tokens)
    max_json_depth: int
    responses_per_key: int  # stored responses per owner; 0 = store nothing
    responses_ttl: float  # seconds a stored response lives
    responses_memory: int  # bytes all stored responses may take
    file_max_bytes: int  # largest /v1/files upload
    files_per_key: int  # uploaded files per owner
    batch_max_lines: int  # requests per batch input file
    batches_per_key: int  # unfinished batch jobs per owner
    batch_concurrency: int  # a batch job's requests in flight
    batch_max_crashes: int  # a job's lines that may crash a worker twice before it fails
    allowed_hosts: tuple[str, ...]  # pull sources allowed; empty = any
    pull_private: bool  # pulls may connect to private/loopback/link-local addresses
    registry: str  # host[:port] for names without a host
    hf_endpoint: str
    hf_token: str  # never logged
    keys_file: Path
    api_key: str  # sent by clients; never logged
    require_keys: bool  # auth on from the start, whatever the keys file holds
    upstreams: tuple[Upstream, ...]  # models whose engine is a remote OpenAI-compatible server
    upstream_api_key: str  # sent to upstreams; never logged
    origins: tuple[str, ...]  # exact CORS origins; empty = no CORS headers
    local_hosts: tuple[str, ...]  # extra Host names of a loopback server: "name" or "*.suffix"
    tls_cert: str
    tls_key: str
    log_format: str  # "text" or "json"
    log_prompts: bool
    debug: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        source = os.environ if env is None else env
        raw = {s.name: _secret_file(source, s.name) or source.get(s.name, "") or s.default for s in SETTINGS}
        parsed = {s.name: s.parse(raw[s.name]) for s in SETTINGS}
        host, port = _host(parsed["SLM_HOST"])
        values: dict[str, Any] = dict(
            host=host,
            port=port,
            models=Path(parsed["SLM_MODELS"]).expanduser(),
            default_model=parsed["SLM_DEFAULT_MODEL"],
            keep_alive=parse_duration(parsed["SLM_KEEP_ALIVE"], field="SLM_KEEP_ALIVE"),
            max_loaded_models=max(1, parsed["SLM_MAX_LOADED_MODELS"]),
            max_memory=_memory(parsed["SLM_MAX_MEMORY"]),
            max_queue=max(1, parsed["SLM_MAX_QUEUE"]),
            num_parallel=max(0, parsed["SLM_NUM_PARALLEL"]),
            num_threads=parsed["SLM_NUM_THREADS"],
            flash_attention=_choice(parsed["SLM_FLASH_ATTENTION"], "SLM_FLASH_ATTENTION", FLASH_ATTENTION),
            kv_cache_type=_choice(parsed["SLM_KV_CACHE_TYPE"], "SLM_KV_CACHE_TYPE", KV_CACHE_TYPES),
            draft_tokens=parsed["SLM_DRAFT_TOKENS"],
            kv_unified=parsed["SLM_KV_UNIFIED"],
            context_length=parsed["SLM_CONTEXT_LENGTH"],
            load_timeout=parse_duration(parsed["SLM_LOAD_TIMEOUT"], field="SLM_LOAD_TIMEOUT"),
            request_timeout=max(
                0.0, parse_duration(parsed["SLM_REQUEST_TIMEOUT"], field="SLM_REQUEST_TIMEOUT")
            ),
            shutdown_timeout=max(
                0.0, parse_duration(parsed["SLM_SHUTDOWN_TIMEOUT"], field="SLM_SHUTDOWN_TIMEOUT")
            ),
            header_timeout=max(0.1, parse_duration(parsed["SLM_HEADER_TIMEOUT"], field="SLM_HEADER_TIMEOUT")),
            body_timeout=max(0.1, parse_duration(parsed["SLM_BODY_TIMEOUT"], field="SLM_BODY_TIMEOUT")),
            template_timeout=parsed["SLM_TEMPLATE_TIMEOUT"],
            max_body_bytes=parsed["SLM_MAX_BODY_BYTES"],
            max_tokens=max(1, parsed["SLM_MAX_TOKENS"]),
            default_max_tokens=max(1, parsed["SLM_DEFAULT_MAX_TOKENS"]),
            max_stop=max(0, parsed["SLM_MAX_STOP"]),
            max_embed_inputs=max(1, parsed["SLM_MAX_EMBED_INPUTS"]),
            max_json_depth=max(2, parsed["SLM_MAX_JSON_DEPTH"]),
            responses_per_key=max(0, parsed["SLM_RESPONSES_PER_KEY"]),
            responses_ttl=max(0.0, parse_duration(parsed["SLM_RESPONSES_TTL"], field="SLM_RESPONSES_TTL")),
            responses_memory=_memory(parsed["SLM_RESPONSES_MEMORY"]),
            file_max_bytes=max(1, _memory(parsed["SLM_FILE_MAX_BYTES"])),
            files_per_key=max(1, parsed["SLM_FILES_PER_KEY"]),
            batch_max_lines=max(1, parsed["SLM_BATCH_MAX_LINES"]),
            batches_per_key=max(1, parsed["SLM_BATCHES_PER_KEY"]),
            batch_concurrency=max(1, parsed["SLM_BATCH_CONCURRENCY"]),
            batch_max_crashes=max(1, parsed["SLM_BATCH_MAX_CRASHES"]),
            keys_file=Path(parsed["SLM_KEYS_FILE"]).expanduser()
            if parsed["SLM_KEYS_FILE"]
            else Path(parsed["SLM_MODELS"]).expanduser() / "keys.json",
            api_key=parsed["SLM_API_KEY"],
            require_keys=parsed["SLM_REQUIRE_KEYS"],
            upstreams=parse_upstreams(parsed["SLM_UPSTREAMS"]),
            upstream_api_key=parsed["SLM_UPSTREAM_API_KEY"],
            registry=parsed["SLM_REGISTRY"]
            .strip()
            .removeprefix("https://")
            .removeprefix("http://")
            .rstrip("/"),
            hf_endpoint=parsed["HF_ENDPOINT"],
            hf_token=parsed["HF_TOKEN"],
            allowed_hosts=tuple(h.strip() for h in parsed["SLM_ALLOWED_HOSTS"].split(",") if h.strip()),
            pull_private=parsed["SLM_PULL_PRIVATE"],
            origins=tuple(o.strip().rstrip("/") for o in parsed["SLM_ORIGINS"].split(",") if o.strip()),
            local_hosts=tuple(h.strip().lower() for h in parsed["SLM_LOCAL_HOSTS"].split(",") if h.strip()),
            tls_cert=parsed["SLM_TLS_CERT"],
            tls_key=parsed["SLM_TLS_KEY"],
            log_format="json" if parsed["SLM_LOG_FORMAT"].strip().lower() == "json" else "text",
            log_prompts=parsed["SLM_LOG_PROMPTS"],
            debug=parsed["SLM_DEBUG"],
        )
        values.update(overrides)
        if values["kv_cache_type"] != "f16" and values["flash_attention"] == "off":
            raise InvalidRequest(
                f"SLM_KV_CACHE_TYPE: {values['kv_cache_type']} needs flash attention "
                "(SLM_FLASH_ATTENTION auto or on)"
            )
        if not 0 <= values["draft_tokens"] <= MAX_DRAFT_TOKENS:
            raise InvalidRequest(
                f"SLM_DRAFT_TOKENS: {values['draft_tokens']} is not between 0 (off) and {MAX_DRAFT_TOKENS}"
            )
        return cls(**values)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", ""} else self.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"


def describe(env: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(name, effective value, meaning) for every setting; used by ``slm config``."""
    source = os.environ if env is None else env
    rows = []
    for s in SETTINGS:
        value = source.get(s.name, "") or s.default
        if s.name in SECRETS and value:
            value = "(set, hidden)"
        rows.append((s.name, value, s.doc))
    return rows


SECRETS = {"SLM_API_KEY", "HF_TOKEN", "SLM_UPSTREAM_API_KEY"}  # shown by `slm config` only as set or not


def _secret_file(env: Mapping[str, str], name: str) -> str:
    """For a secret NAME, the contents of the file NAME_FILE names (Docker and Kubernetes
    secrets are mounted as files), stripped; "" when NAME_FILE is not set."""
    path = env.get(f"{name}_FILE", "") if name in SECRETS else ""
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidRequest(f"{name}_FILE: cannot read the secret file ({exc.strerror})") from exc


@dataclass(frozen=True)
class Upstream:
    """A model served by a remote OpenAI-compatible server (vLLM, llama.cpp, another slmkit)."""

    name: str  # the model name clients use here, e.g. "phi4-mini:latest"
    url: str  # the upstream's OpenAI base URL, e.g. "http://vllm:8000/v1"
    model: str  # the model name the upstream knows


def parse_upstreams(text: str) -> tuple[Upstream, ...]:
    """``"phi4=http://vllm:8000/v1#microsoft/Phi-4-mini-instruct, b=https://h/v1"`` (the
    remote name defaults to the local one)."""
    from urllib.parse import urlsplit

    from slmkit.names import ModelName

    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("=")
        url, _, remote = rest.partition("#")
        parts = urlsplit(url.strip())
        if not sep or parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InvalidRequest(
                f"SLM_UPSTREAMS: {item!r} is not NAME=http(s)://HOST[:PORT]/v1[#REMOTE_MODEL]"
            )
        local = ModelName.parse(name.strip()).display
        out.append(Upstream(local, url.strip().rstrip("/"), remote.strip() or name.strip()))
    return tuple(out)


_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """While a model worker is spawned, the environment without secrets: a worker uses none,
    and a crash dump or a compromised model library then has none to leak. (The API
    process's own threads never read these from the environment: Config holds them.)"""
    removed = {name: os.environ.pop(name) for name in list(os.environ) if secret_name(name)}
    try:
        yield
    finally:
        os.environ.update(removed)
