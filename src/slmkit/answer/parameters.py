"""Every model parameter, declared once: name, type, default, meaning, and the sampling field
it sets. Ollama's names (``PARAMETER`` lines, ``options``), since Modelfiles use them; the
defaults are llama.cpp's (the engine's own), the same for every API dialect.

Everything that reads a parameter reads this table: the Modelfile parser, Ollama's
``options``, ``/api/create``'s ``parameters``, ``slm import --parameter``, ``slmkit.load``,
and :func:`resolve`, which turns a model's PARAMETERs and one request's values into the
``SamplingParams`` the engine runs with. Precedence, the same for every API dialect:

    request value  >  model PARAMETER  >  this table's default
    (max_tokens: request  >  num_predict PARAMETER  >  SLM_DEFAULT_MAX_TOKENS; SLM_MAX_TOKENS caps all)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from slmkit.errors import InvalidRequest, LimitExceeded
from slmkit.pipe import SamplingParams

Kind = Literal["int", "float", "bool", "strings", "duration"]
# sampling: sets a SamplingParams field; load: shapes the model's load (a model PARAMETER only);
# ignored: a runner knob that changes nothing here (accepted, as Ollama's clients send them);
# neutral: accepted only at its neutral value (the feature is not implemented).
Use = Literal["sampling", "load", "ignored", "neutral"]


@dataclass(frozen=True)
class Parameter:
    name: str  # Ollama's name, as in `PARAMETER name value` and `options.name`
    kind: Kind
    default: Any  # when neither the request nor the model sets it
    doc: str
    use: Use = "sampling"
    field: str | None = None  # the SamplingParams field it sets (sampling parameters)
    check: Callable[[Any], bool] | None = None  # valid values (after type conversion)
    rule: str = ""  # the check in words, for the error message


def _p(name: str, kind: Kind, default: Any, doc: str, **kw: Any) -> Parameter:
    if kw.get("use", "sampling") == "sampling":
        kw.setdefault("field", name)
    return Parameter(name, kind, default, doc, **kw)


PARAMETERS: tuple[Parameter, ...] = (
    _p("temperature", "float", 0.8, "randomness; 0 = greedy",
       check=lambda v: 0 <= v <= 100, rule="in [0, 100]"),
    _p("top_k", "int", 40, "sample among the k likeliest tokens (0 = off)",
       check=lambda v: 0 <= v <= 1_000_000, rule="in [0, 1000000]"),
    _p("top_p", "float", 0.95, "nucleus sampling (1 = off)", check=lambda v: 0 < v <= 1, rule="in (0, 1]"),
    _p("min_p", "float", 0.05, "drop tokens below min_p x the top one (0 = off)",
       check=lambda v: 0 <= v <= 1, rule="in [0, 1]"),
    _p("repeat_penalty", "float", 1.0, "penalty for repeated tokens (1 = off)",
       check=lambda v: 0 < v <= 10, rule="in (0, 10]"),
    _p("repeat_last_n", "int", 64, "tokens the penalties look back over (0 = off)",
       check=lambda v: 0 <= v <= 1_000_000, rule="in [0, 1000000]"),
    _p("presence_penalty", "float", 0.0, "penalty for tokens already present",
       check=lambda v: -2 <= v <= 2, rule="in [-2, 2]"),
    _p("frequency_penalty", "float", 0.0, "penalty growing with each repetition",
       check=lambda v: -2 <= v <= 2, rule="in [-2, 2]"),
    _p("seed", "int", None, "random seed (unset or -1 = a fresh one per request)"),
    _p("stop", "strings", (), "generation ends before any of these strings"),
    _p("num_predict", "int", None, "most tokens to generate (-1: SLM_DEFAULT_MAX_TOKENS, -2: SLM_MAX_TOKENS)",
       field="max_tokens", check=lambda v: v >= 1 or v in (-1, -2), rule="positive, -1 or -2"),
    _p("num_ctx", "int", None, "context window per sequence (overrides SLM_CONTEXT_LENGTH)", use="load",
       check=lambda v: 16 <= v <= 1 << 20, rule="in [16, 1048576]"),
    _p("num_parallel", "int", None, "sequences decoded together (overrides SLM_NUM_PARALLEL)", use="load",
       check=lambda v: 1 <= v <= 64, rule="in [1, 64]"),
    _p("typical_p", "float", 1.0, "locally typical sampling (only 1 = off is supported)", use="neutral"),
    _p("tfs_z", "float", 1.0, "tail-free sampling (only 1 = off is supported)", use="neutral"),
    _p("mirostat", "int", 0, "mirostat sampling (only 0 = off is supported)", use="neutral"),
    _p("mirostat_tau", "float", 5.0, "mirostat target entropy (unused while mirostat is off)", use="ignored"),
    _p("mirostat_eta", "float", 0.1, "mirostat learning rate (unused while mirostat is off)", use="ignored"),
    _p("num_keep", "int", None, "runner option, no effect here", use="ignored"),
    _p("num_batch", "int", None, "runner option, no effect here", use="ignored"),
    _p("keep_alive", "duration", None,
       "how long the model stays loaded when idle (5m, 1h, -1: forever); a request's keep_alive wins",
       use="load"),
    _p("pin", "bool", False, "never unloaded to make room for another model, nor when idle", use="load"),
    _p("num_thread", "int", None, "runner option (SLM_NUM_THREADS sets threads)", use="ignored"),
    _p("num_gpu", "int", None, "runner option, no effect here", use="ignored"),
    _p("main_gpu", "int", None, "runner option, no effect here", use="ignored"),
    _p("use_mmap", "bool", None, "runner option, no effect here", use="ignored"),
    _p("use_mlock", "bool", None, "runner option, no effect here", use="ignored"),
    _p("numa", "bool", None, "runner option, no effect here", use="ignored"),
    _p("low_vram", "bool", None, "runner option, no effect here", use="ignored"),
    _p("f16_kv", "bool", None, "runner option, no effect here", use="ignored"),
    _p("vocab_only", "bool", None, "runner option, no effect here", use="ignored"),
    _p("penalize_newline", "bool", None, "runner option, no effect here", use="ignored"),
)  # fmt: skip
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
SAMPLING: tuple[Parameter, ...] = tuple(p for p in PARAMETERS if p.use == "sampling")
MAX_STOP_LENGTH = 1000  # characters in one stop sequence


def lookup(name: str, where: str) -> Parameter:
    found = BY_NAME.get(name.lower())
    if found is None:
        raise InvalidRequest(f"{where}{name}: unknown parameter")
    return found


def convert(name: str, value: Any, where: str = "parameter ") -> Any:
    """``value`` (typed JSON, or the text of a PARAMETER line) in its parameter's type, checked;
    InvalidRequest naming ``where + name`` otherwise. Returns None for an unset value."""
    p = lookup(name, where)
    label = f"{where}{p.name}"
    if value is None:
        return None
    if p.kind == "strings":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(s, str) for s in items):
            raise InvalidRequest(f"{label}: expected a string or a list of strings")
        if any(len(s) > MAX_STOP_LENGTH for s in items):
            raise InvalidRequest(f"{label}: each string may be at most {MAX_STOP_LENGTH} characters")
        return tuple(s for s in items if s)
    if p.kind == "duration":
        from slmkit.config import parse_duration

        seconds = parse_duration(value, field=label)
        return -1.0 if seconds < 0 else seconds
    if isinstance(value, str):
        value = _from_text(p, value.strip(), label)
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidRequest(f"{label}: expected true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{label}: expected a number")
    if p.kind == "int":
        if value != int(value):
            raise InvalidRequest(f"{label}: expected an integer")
        value = int(value)
        if p.name == "seed" and value == -1:
            return None  # Ollama's "random"
        if p.name == "seed" and not -(2**63) <= value < 2**64:
            raise InvalidRequest(f"{label}: out of range")
    else:
        value = float(value)
    if p.use == "neutral" and value != p.default:
        raise InvalidRequest(f"{label}: only {p.default} is supported yet")
    if p.check is not None and not p.check(value):
        raise InvalidRequest(f"{label}: must be {p.rule}")
    return value


def _from_text(p: Parameter, text: str, label: str) -> Any:
    try:
        if p.kind == "int":
            return int(text)
        if p.kind == "float":
            return float(text)
    except ValueError:
        raise InvalidRequest(f"{label}: {text!r} is not a valid value") from None
    if text.lower() not in {"true", "false"}:
        raise InvalidRequest(f"{label}: {text!r} is not a valid value")
    return text.lower() == "true"


def request_options(options: Mapping[str, Any], where: str = "options.") -> dict[str, Any]:
    """A request's own values (Ollama ``options`` or a dialect's fields by table name),
    converted and checked; unset (None) values are dropped. A request's ``num_ctx`` becomes
    its own context window (capped by the model's: resolving one request never reloads a
    model others are using); ``num_parallel`` is ignored (it shapes a model's load)."""
    values: dict[str, Any] = {}
    for name, value in options.items():
        converted = convert(name, value, where)
        if converted is not None:
            values[lookup(name, where).name] = converted
    for load_only in ("num_parallel", "keep_alive", "pin"):  # a model's PARAMETERs, not a request's
        values.pop(load_only, None)
    return values


def resolve(
    model: Mapping[str, Any],
    request: Mapping[str, Any],
    *,
    base: SamplingParams,
    default_max_tokens: int,
    max_tokens: int,
    max_stop: int,
) -> SamplingParams:
    """The SamplingParams the engine gets: request value > model PARAMETER > default, for
    every sampling parameter; ``base`` carries the request-only fields (schema, logprobs,
    logit bias). A request asking for more than ``max_tokens`` (SLM_MAX_TOKENS) is refused;
    a model's own num_predict is capped at it."""
    values: dict[str, Any] = {}
    for p in SAMPLING:
        assert p.field is not None
        if p.name in request:
            values[p.field] = request[p.name]
        elif model.get(p.name) is not None:
            values[p.field] = model[p.name]
        else:
            values[p.field] = p.default
    stop = values["stop"]
    if len(stop) > max_stop:
        raise LimitExceeded(
            f"stop: {len(stop)} stop sequences, more than the limit of {max_stop} (SLM_MAX_STOP)"
        )
    asked = request.get("num_predict")
    if asked is not None and asked > max_tokens:
        raise LimitExceeded(
            f"max_tokens (num_predict): {asked} is more than the limit of {max_tokens} (SLM_MAX_TOKENS)"
        )
    wanted = values["max_tokens"]
    if wanted is None or wanted == -1:
        wanted = default_max_tokens
    elif wanted == -2:  # Ollama's "fill the context": as far as the cap (and the context) allow
        wanted = max_tokens
    values["max_tokens"] = min(max_tokens, wanted)
    values["context_window"] = request.get("num_ctx")  # a model's num_ctx shaped its load
    return dataclasses.replace(base, **values)


def describe() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) for every parameter (docs and `slm show`)."""
    return [(p.name, p.kind, "" if p.default in (None, ()) else str(p.default), p.doc) for p in PARAMETERS]


def add_line(params: dict[str, Any], name: str, raw: str, where: str = "parameter ") -> None:
    """One ``PARAMETER name value`` line (or ``--parameter name value``) into a params layer:
    checked against the table; ``stop`` may repeat and accumulates."""
    p = lookup(name, where)
    value = convert(p.name, raw, where)
    if p.kind == "strings":
        params.setdefault(p.name, []).extend(value)
    elif value is not None:
        params[p.name] = value


def layer(values: Mapping[str, Any], where: str = "parameters.") -> dict[str, Any]:
    """A params layer (what the store keeps, JSON) from typed values, checked: /api/create's
    ``parameters`` and ``slmkit.load``'s options."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        p = lookup(name, where)
        converted = convert(p.name, value, where)
        if converted is not None:
            out[p.name] = list(converted) if p.kind == "strings" else converted
    return out
