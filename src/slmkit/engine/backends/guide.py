"""Structured output for backends without llama.cpp's grammar sampler (ONNX Runtime):
llguidance turns the checked JSON schema (answer/schema.py) into a token mask each step.

The schema means the same as on llama.cpp: its converter closes objects that list
``properties`` and say nothing of ``additionalProperties``, and treats ``oneOf`` as ``anyOf``;
so do we. JSON comes out as ``json.dumps`` writes it (", " and ": ", no other whitespace),
so a model cannot spend its budget on blank space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import InvalidRequest

# How llguidance writes JSON: json.dumps' separators, no free whitespace, oneOf as anyOf.
_JSON_OPTIONS = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "coerce_one_of": True,
}
_CACHED_GRAMMARS = 64
UNUSABLE = "the JSON schema cannot be turned into a grammar"


class Guides:
    """One model's grammar compiler: its tokenizer as llguidance sees it (built on first
    use, about half a second), and compiled grammars cached by schema text."""

    def __init__(self, tokenizer_json: Path, n_vocab: int, eos: list[int]) -> None:
        self._source, self._n_vocab, self._eos = tokenizer_json, n_vocab, eos
        self._tokenizer: Any = None
        self._grammars: dict[str, str] = {}

    def start(self, schema: str) -> Guide:
        """A fresh matcher for one request; InvalidRequest when the schema cannot be enforced."""
        llg = _llguidance()
        if not self._eos:
            raise InvalidRequest("structured output needs an end-of-generation token; this model names none")
        if self._tokenizer is None:
            self._tokenizer = llg.LLTokenizer(str(self._source), n_vocab=self._n_vocab, eos_token=self._eos)
        grammar = self._grammars.get(schema)
        if grammar is None:
            try:
                grammar = llg.LLMatcher.grammar_from_json_schema(
                    closed(json.loads(schema)), overrides=_JSON_OPTIONS
                )
            except ValueError as exc:
                raise InvalidRequest(f"{UNUSABLE}: {exc}") from exc
            if len(self._grammars) >= _CACHED_GRAMMARS:
                self._grammars.clear()
            self._grammars[schema] = grammar
        limits = llg.LLParserLimits(verbose_errors=False)
        matcher = llg.LLMatcher(self._tokenizer, grammar, log_level=0, limits=limits)
        if matcher.is_error():
            raise InvalidRequest(f"{UNUSABLE}: {matcher.get_error()[:300]}")
        return Guide(matcher, self._n_vocab, self._eos[0])


class Guide:
    """One request's grammar state: masks logits before sampling, follows each token."""

    def __init__(self, matcher: Any, n_vocab: int, eos: int) -> None:
        import llguidance.numpy as lln

        self._lln, self._matcher, self._eos = lln, matcher, eos
        self._mask = lln.allocate_token_bitmask(1, n_vocab)

    def mask(self, logits: np.ndarray) -> None:
        """Forbidden tokens to -inf, in place (``logits``: one row, float32 or float64).
        A matcher in error (it should not happen) allows only end-of-generation."""
        if self._matcher.is_error():
            logits[:] = -np.inf
            logits[self._eos] = 0.0
            return
        self._lln.fill_next_token_bitmask(self._matcher, self._mask, 0)
        allowed = np.unpackbits(self._mask[0].view(np.uint8), bitorder="little")[: logits.shape[-1]]
        logits[allowed == 0] = -np.inf

    def accept(self, token: int) -> None:
        self._matcher.consume_token(token)


def closed(node: Any) -> Any:
    """``additionalProperties: false`` on every object schema that lists properties and says
    nothing of others, as llama.cpp's converter reads it (a copy; ``node`` is left alone)."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: closed(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = closed(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.numpy  # Guide's masks
    except ImportError as exc:
        raise InvalidRequest(
            "structured output on ONNX models needs llguidance: pip install 'slmkit[onnx]'"
        ) from exc
    return llguidance
