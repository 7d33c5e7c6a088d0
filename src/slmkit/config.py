"""Every ``SLM_*`` setting, declared once: name, type, default and meaning.

Nothing else in slmkit reads ``os.environ``. ``slm config`` prints this table.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
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


def _host(value: str, name: str = "SLM_HOST") -> tuple[str, int]:
    """Split ``SLM_HOST`` (``host``, ``host:port``, ``[::1]:port``, optional scheme); a port
    that is not a number from 0 to 65535 is an InvalidRequest naming ``name``."""
    text = value.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # a name, or an IPv6 address without brackets (no port then)
        host, port = text, ""
    if port and not (port.isdigit() and 0 <= int(port) < 65536):  # 0: any free port (serve prints it)
        raise InvalidRequest(
            f"{name}: {port[:32]!r} is not a port; use HOST:PORT with a port from 1 to 65535 "
            "(0 for any free one)"
        )
    return host or "127.0.0.1", int(port) if port else DEFAULT_PORT


def _memory(value: str, name: str) -> int:
    from slmkit.units import parse_size

    return parse_size(value, field=name) if value.strip() else 0


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
    """One environment setting: its name, default and meaning, its type and bounds. The
    Config field it fills is declared with it (``setting()``), and parsed from it."""

    name: str
    default: str
    doc: str
    kind: str = "text"  # text, int, float, bool, duration, size, or custom (``convert``)
    lo: float | None = None  # smallest value accepted (numbers, durations, sizes)
    hi: float | None = None  # largest value accepted
    choices: Mapping[str, str] | None = None  # accepted spellings -> value
    convert: Callable[[str], Any] | None = None  # kind "custom": text -> value
    secret: bool = False  # `slm config` shows it only as set; NAME_FILE may hold it

    def parse(self, raw: str) -> Any:
        """The setting's value from its text, or InvalidRequest naming the setting."""
        if self.choices is not None:
            return _choice(raw, self.name, self.choices)
        if self.kind == "custom":
            assert self.convert is not None
            return self.convert(raw)
        if self.kind == "text":
            return raw
        if self.kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        value = self._number(raw)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            low = "" if self.lo is None else f"at least {self.lo:g}"
            high = "" if self.hi is None else f"at most {self.hi:g}"
            raise InvalidRequest(
                f"{self.name}: {raw.strip()!r} must be {' and '.join(filter(None, (low, high)))}"
            )
        return value

    def _number(self, raw: str) -> Any:
        if self.kind == "duration":
            return parse_duration(raw, field=self.name)
        if self.kind == "size":
            return _memory(raw, self.name)
        try:
            value = int(raw) if self.kind == "int" else float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InvalidRequest(f"{self.name}: {raw.strip()!r} is not a number")
        return value


def setting(name: str, default: str, doc: str, kind: str = "text", **rules: Any) -> Any:
    """A Config field filled from the environment setting ``name`` (see Setting)."""
    return field(metadata={"setting": Setting(name, default, doc, kind, **rules)})


def part_of(name: str, convert: Callable[[str], Any]) -> Any:
    """A Config field derived from another field's setting (``port`` from SLM_HOST)."""
    return field(metadata={"part_of": name, "convert": convert})


FLASH_ATTENTION = {
    "auto": "auto", "on": "on", "1": "on", "true": "on", "off": "off", "0": "off", "false": "off",
}  # fmt: skip
MAX_DRAFT_TOKENS = 32  # a step checks at most this many guesses per sequence
KV_CACHE_TYPES = {"f16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}
LOG_FORMATS = {"text": "text", "json": "json"}
HTTP_IMPLS = {"httptools": "httptools", "h11": "h11"}


def _choice(value: str, name: str, choices: Mapping[str, str]) -> str:
    try:
        return choices[value.strip().lower()]
    except KeyError:
        raise InvalidRequest(
            f"{name}: {value!r} is not one of {', '.join(dict.fromkeys(choices.values()))}"
        ) from None


def _shared_store(value: str, name: str) -> str:
    """``memory`` or a Redis URL (checked here, so a typo fails at startup, not at the first
    request); the URL may hold a password, so errors never repeat it."""
    text = value.strip()
    if text.lower() in ("", "memory"):
        return "memory"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("redis", "rediss", "unix") or not rest:
        raise InvalidRequest(f"{name}: expected memory or a redis://, rediss:// or unix:// URL")
    return text


IMAGE_FORMATS = ("png", "jpeg", "webp", "gif")


def _formats(value: str) -> tuple[str, ...]:
    names = tuple(v.lower() for v in _list(value))
    unknown = [n for n in names if n not in IMAGE_FORMATS]
    if unknown:
        raise InvalidRequest(f"SLM_IMAGE_FORMATS: {unknown[0]!r} is not one of {', '.join(IMAGE_FORMATS)}")
    return names


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _url_host(value: str) -> str:
    return value.strip().removeprefix("https://").removeprefix("http://").rstrip("/")


@dataclass(frozen=True)
class Config:
    """Resolved settings. Build with :meth:`from_env`; pass around, never re-read the env.
    Each field is declared with its environment setting: `slm config` and the README's
    settings table list them in this order."""

    host: str = setting(
        "SLM_HOST", f"127.0.0.1:{DEFAULT_PORT}", "address the server binds and clients call",
        "custom", convert=lambda v: _host(v)[0],
    )  # fmt: skip
    port: int = part_of("SLM_HOST", lambda v: _host(v)[1])  # 0: any free port (serve prints it)
    scheme: str = part_of(
        "SLM_HOST", lambda v: "https" if v.strip().lower().startswith("https://") else "http"
    )
    models: Path = setting(
        "SLM_MODELS", str(Path.home() / ".slmkit" / "models"), "model store directory",
        "custom", convert=lambda v: Path(v).expanduser(),
    )  # fmt: skip
    cache: Path = setting(
        "SLM_CACHE", str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slmkit"),
        "cache directory (llama.cpp's converters, unpacked once per llama-cpp-python version)",
        "custom", convert=lambda v: Path(v).expanduser(),
    )  # fmt: skip
    llama_cpp: str = setting(
        "SLM_LLAMA_CPP", "",
        "llama.cpp tree whose converters `slm convert` runs (default: the pinned llama-cpp-python's)",
    )  # fmt: skip
    default_model: str = setting(
        "SLM_DEFAULT_MODEL", "smollm2:135m", "model /ready checks and first start imports"
    )
    keep_alive: float = setting(
        "SLM_KEEP_ALIVE", "5m", "how long an idle model stays loaded (-1 = forever)", "duration"
    )  # seconds; negative means forever
    max_loaded_models: int = setting(
        "SLM_MAX_LOADED_MODELS", "3", "models loaded at once; the least recently used goes", "int", lo=1
    )
    max_memory: int = setting(
        "SLM_MAX_MEMORY",
        "",
        "memory models may use, e.g. 8GiB (empty = available memory - 1 GiB)",
        "size",
        lo=0,
    )  # bytes; 0 means automatic
    max_queue: int = setting(
        "SLM_MAX_QUEUE", "512", "requests waiting per model before 503 busy", "int", lo=1
    )
    num_parallel: int = setting(
        "SLM_NUM_PARALLEL", "0", "sequences decoded together per model (0 = auto, up to 4)", "int", lo=0
    )
    num_threads: int = setting(
        "SLM_NUM_THREADS", "0",
        "CPU threads per model (0 = automatic: the cores this process may use, minus those others keep busy)",
        "int", lo=0,
    )  # fmt: skip
    context_length: int = setting(
        "SLM_CONTEXT_LENGTH", "4096", "context window per sequence (capped by the model's)", "int", lo=16
    )
    flash_attention: str = setting(
        "SLM_FLASH_ATTENTION", "auto", "llama.cpp flash attention: auto, on or off", choices=FLASH_ATTENTION
    )
    kv_cache_type: str = setting(
        "SLM_KV_CACHE_TYPE", "f16",
        "KV cache precision: f16, q8_0 (half the memory) or q4_0 (a quarter); both need flash attention",
        choices=KV_CACHE_TYPES,
    )  # fmt: skip
    kv_unified: bool = setting(
        "SLM_KV_UNIFIED", "0",
        "one KV cell pool shared by a model's slots (llama.cpp's unified KV cache) instead of one per slot",
        "bool",
    )  # fmt: skip
    kv_pool: int = setting(
        "SLM_KV_POOL", "0",
        "KV cells shared by a model's slots (0 = slots x context): fewer let more short "
        "conversations share the memory; when answers outgrow it, the latest is preempted and "
        "resumed by re-prefill, never failed",
        "int", lo=0,
    )  # fmt: skip
    swa_full: bool = setting(
        "SLM_SWA_FULL", "0",
        "keep a full-size cache for sliding-window attention layers (Gemma 2/3) instead of the "
        "window only; costs memory, lets any cached prefix be reused",
        "bool",
    )  # fmt: skip
    draft_tokens: int = setting(
        "SLM_DRAFT_TOKENS", "0",
        "speculative decoding by prompt lookup: most tokens guessed per step from the sequence's "
        "own n-grams, checked in the same batch (0 = off)",
        "int", lo=0, hi=MAX_DRAFT_TOKENS,
    )  # fmt: skip
    load_timeout: float = setting(
        "SLM_LOAD_TIMEOUT", "5m", "longest a model load may take before it fails", "duration", lo=1
    )
    request_timeout: float = setting(
        "SLM_REQUEST_TIMEOUT", "10m", "longest one request may run before it is aborted (0 = no limit)",
        "duration", lo=0,
    )  # fmt: skip
    shutdown_timeout: float = setting(
        "SLM_SHUTDOWN_TIMEOUT", "30s", "on SIGTERM, how long in-flight requests may finish", "duration", lo=0
    )
    drain_delay: float = setting(
        "SLM_DRAIN_DELAY", "0s",
        "on SIGTERM, how long to keep serving new requests while /ready answers 503, so a load "
        "balancer or router polling it stops sending work before the server refuses any",
        "duration", lo=0, hi=300,
    )  # fmt: skip
    header_timeout: float = setting(
        "SLM_HEADER_TIMEOUT", "10s", "longest a client may take to send a request's headers",
        "duration", lo=0.1,
    )  # fmt: skip
    body_timeout: float = setting(
        "SLM_BODY_TIMEOUT", "60s", "longest a client may take to send a request body (not blob uploads)",
        "duration", lo=0.1,
    )  # fmt: skip
    template_timeout: float = setting(
        "SLM_TEMPLATE_TIMEOUT", "1.0", "seconds a chat template may take to render", "float", lo=0.001
    )
    max_body_bytes: int = setting(
        "SLM_MAX_BODY_BYTES", str(8 * 1024 * 1024), "largest request body accepted", "int", lo=1024
    )
    max_tokens: int = setting("SLM_MAX_TOKENS", "8192", "most tokens one request may generate", "int", lo=1)
    default_max_tokens: int = setting(
        "SLM_DEFAULT_MAX_TOKENS", "2048",
        "tokens generated when neither the request nor the model (num_predict) sets a limit", "int", lo=1,
    )  # fmt: skip
    max_stop: int = setting("SLM_MAX_STOP", "16", "most stop sequences per request", "int", lo=0)
    max_images: int = setting(
        "SLM_MAX_IMAGES", "8", "most images in one request (0: images refused)", "int", lo=0, hi=1000
    )
    max_image_bytes: int = setting(
        "SLM_MAX_IMAGE_BYTES", str(5 * 1024 * 1024), "largest image file accepted (bytes, before decoding)",
        "int", lo=1024,
    )  # fmt: skip
    max_image_pixels: int = setting(
        "SLM_MAX_IMAGE_PIXELS", "12000000", "most pixels an image may declare; checked before it is decoded",
        "int", lo=1, hi=1 << 30,
    )  # fmt: skip
    image_formats: tuple[str, ...] = setting(
        "SLM_IMAGE_FORMATS", "png,jpeg,webp,gif", "image formats accepted (gif: its first frame)",
        "custom", convert=lambda v: _formats(v),
    )  # fmt: skip
    max_embed_inputs: int = setting(
        "SLM_MAX_EMBED_INPUTS", "256", "most inputs in one embedding request", "int", lo=1
    )  # each is at most 1024 tokens
    max_json_depth: int = setting(
        "SLM_MAX_JSON_DEPTH", "32", "deepest JSON nesting accepted in a request body", "int", lo=2
    )
    responses_store: str = setting(
        "SLM_RESPONSES_STORE", "memory",
        "where stored Responses API responses live: memory (this process; a restart forgets) or "
        "a Redis URL (redis://[:password@]host:port/db, rediss:// for TLS) that replicas share",
        "custom", convert=lambda v: _shared_store(v, "SLM_RESPONSES_STORE"),
    )  # fmt: skip
    responses_per_key: int = setting(
        "SLM_RESPONSES_PER_KEY", "1000",
        "stored Responses API responses kept per API key, oldest dropped first (0 = store nothing)",
        "int", lo=0,
    )  # fmt: skip
    responses_ttl: float = setting(
        "SLM_RESPONSES_TTL", "24h", "how long a stored response may be read or continued", "duration", lo=0
    )
    responses_memory: int = setting(
        "SLM_RESPONSES_MEMORY", "256MiB",
        "memory all stored responses may use; over it, the key holding the most loses its oldest",
        "size", lo=0,
    )  # fmt: skip
    file_max_bytes: int = setting(
        "SLM_FILE_MAX_BYTES", "100MiB", "largest file /v1/files accepts (a batch's input)", "size", lo=1
    )
    files_per_key: int = setting(
        "SLM_FILES_PER_KEY", "100", "uploaded files one API key may keep (outputs not counted)", "int", lo=1
    )
    batch_max_lines: int = setting(
        "SLM_BATCH_MAX_LINES", "50000", "most requests in one batch input file", "int", lo=1
    )
    batches_per_key: int = setting(
        "SLM_BATCHES_PER_KEY", "10", "unfinished batch jobs one API key may have", "int", lo=1
    )
    batch_concurrency: int = setting(
        "SLM_BATCH_CONCURRENCY", "8",
        "batch requests in flight, all jobs together (background priority: interactive work first)",
        "int", lo=1,
    )  # fmt: skip
    batch_max_crashes: int = setting(
        "SLM_BATCH_MAX_CRASHES", "3",
        "lines of one batch job that may crash a model's worker twice before the job stops and fails",
        "int", lo=1,
    )  # fmt: skip
    batch_leases: str = setting(
        "SLM_BATCH_LEASES", "",
        "replicas sharing one SLM_MODELS: a Redis URL where each batch job is leased to one replica "
        "(another takes it over when the holder dies); empty: this server runs every job in its store",
        "custom", convert=lambda v: "" if not v.strip() else _shared_store(v, "SLM_BATCH_LEASES"),
    )  # fmt: skip
    registry: str = setting(
        "SLM_REGISTRY", "registry.ollama.ai", "registry that names without a host are pulled from",
        "custom", convert=_url_host,
    )  # fmt: skip  # host[:port]
    hf_endpoint: str = setting(
        "HF_ENDPOINT", "https://huggingface.co", "Hugging Face Hub address for hf.co/... pulls"
    )
    hf_token: str = setting(
        "HF_TOKEN", "", "Hugging Face token for gated or private repositories", secret=True
    )  # never logged
    allowed_hosts: tuple[str, ...] = setting(
        "SLM_ALLOWED_HOSTS", "", "hosts pulls may contact, comma separated (empty = any public host)",
        "custom", convert=_list,
    )  # fmt: skip
    pull_private: bool = setting(
        "SLM_PULL_PRIVATE", "0",
        "let pulls connect to private, loopback and link-local addresses (a registry on your network)",
        "bool",
    )  # fmt: skip
    keys_file: Path = setting(
        "SLM_KEYS_FILE", "", "API keys file (empty = keys.json in SLM_MODELS)",
        "custom", convert=lambda v: Path(v).expanduser() if v else None,
    )  # fmt: skip
    api_key: str = setting(
        "SLM_API_KEY", "", "key the CLI and slmkit.Client send to the server", secret=True
    )  # sent by clients; never logged
    require_keys: bool = setting(
        "SLM_REQUIRE_KEYS", "0",
        "require an API key even when the keys file is empty (then every request is refused)", "bool",
    )  # fmt: skip
    upstreams: tuple[Upstream, ...] = setting(
        "SLM_UPSTREAMS", "",
        "models served by remote OpenAI-compatible servers: NAME=URL#REMOTE_MODEL, comma separated",
        "custom", convert=lambda v: parse_upstreams(v),
    )  # fmt: skip
    upstream_api_key: str = setting(
        "SLM_UPSTREAM_API_KEY", "", "bearer key slmkit sends to upstream servers", secret=True
    )  # never logged
    origins: tuple[str, ...] = setting(
        "SLM_ORIGINS", "", "web page origins allowed besides loopback pages (CORS and the Origin check)",
        "custom", convert=lambda v: tuple(o.rstrip("/") for o in _list(v)),
    )  # fmt: skip
    local_hosts: tuple[str, ...] = setting(
        "SLM_LOCAL_HOSTS", "",
        "more Host names a loopback server answers to, comma separated: exact names or *.suffix "
        "(e.g. *.local); each one lets pages of that name reach the server (DNS rebinding)",
        "custom", convert=lambda v: tuple(h.lower() for h in _list(v)),
    )  # fmt: skip
    tls_cert: str = setting("SLM_TLS_CERT", "", "TLS certificate file (PEM); with SLM_TLS_KEY serves https")
    tls_key: str = setting("SLM_TLS_KEY", "", "TLS private key file (PEM)")
    http: str = setting(
        "SLM_HTTP", "httptools",
        "HTTP/1.1 parser and event loop: httptools (llhttp in C, with uvloop) or h11 (pure Python, asyncio)",
        choices=HTTP_IMPLS,
    )  # fmt: skip
    log_format: str = setting(
        "SLM_LOG_FORMAT", "text", "log format: text, or json (one object per line)", choices=LOG_FORMATS
    )
    log_prompts: bool = setting(
        "SLM_LOG_PROMPTS", "0", "log prompt text (off: prompts and keys are never logged)", "bool"
    )
    debug: bool = setting("SLM_DEBUG", "0", "log at debug level (prompts are still not logged)", "bool")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Every field parsed from its setting (``env``, else the process environment);
        ``overrides`` set fields by name, as already-parsed values."""
        source = os.environ if env is None else env
        raw = {s.name: _secret_file(source, s) or source.get(s.name, "") or s.default for s in SETTINGS}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if "setting" in f.metadata:
                values[f.name] = f.metadata["setting"].parse(raw[f.metadata["setting"].name])
            else:
                values[f.name] = f.metadata["convert"](raw[f.metadata["part_of"]])
        values.update(overrides)
        if values["keys_file"] is None:  # the one default that depends on another setting
            values["keys_file"] = Path(values["models"]) / "keys.json"
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
        scheme = "https" if self.tls_cert or self.scheme == "https" else "http"
        return f"{scheme}://{host}:{self.port}"


SETTINGS: tuple[Setting, ...] = tuple(
    f.metadata["setting"] for f in fields(Config) if "setting" in f.metadata
)
SECRETS = {s.name for s in SETTINGS if s.secret}  # shown by `slm config` only as set or not


def describe(env: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(name, effective value, meaning) for every setting; used by ``slm config``."""
    source = os.environ if env is None else env
    rows = []
    for s in SETTINGS:
        value = source.get(s.name, "") or s.default
        if s.secret and value:
            value = "(set, hidden)"
        rows.append((s.name, value, s.doc))
    return rows


def _secret_file(env: Mapping[str, str], s: Setting) -> str:
    """For a secret setting NAME, the contents of the file NAME_FILE names (Docker and
    Kubernetes secrets are mounted as files), stripped; "" when NAME_FILE is not set."""
    path = env.get(f"{s.name}_FILE", "") if s.secret else ""
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidRequest(f"{s.name}_FILE: cannot read the secret file ({exc.strerror})") from exc


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
