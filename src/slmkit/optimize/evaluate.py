"""`slm eval`: measure what quality a model keeps.

- Perplexity over a text, chunked like llama.cpp's llama-perplexity: the tokens are cut into
  windows of ``n_ctx``, each evaluated from an empty cache, and only the second half of each
  window is scored (every scored token then sees at least ``n_ctx/2`` tokens of context).
  The error is the standard error of the mean negative log-likelihood, carried to
  perplexity (PPL x SE).
- KL divergence and top-1 agreement against a reference model on the same windows: the
  mean over scored positions of KL(P_ref || P_model), with its standard error.
- A multiple-choice set scored by log-likelihood (which choice is most likely after the
  question), and golden tests (prompt -> contains / not_contains / regex / json_schema,
  answered greedily) with a pass rate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slmkit import progress
from slmkit.errors import InvalidRequest, first_problem


class LogitSource(Protocol):
    """What scoring needs from a model (engine/backends/llama_offline.py's Scorer; tests pass fakes)."""

    n_ctx: int
    n_vocab: int
    add_bos: bool
    bos: int

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]: ...

    def logits(self, tokens: Sequence[int]) -> np.ndarray: ...


class TokenScorer(Protocol):
    """Scoring from token log-probabilities alone: what a served model gives through
    completions ``echo`` (optimize/endpoint.py), and what a LogitSource gives (LogitScorer).
    Perplexity and multiple choice need no more than this; KL divergence needs full logits."""

    n_ctx: int

    @property
    def add_bos(self) -> bool: ...

    @property
    def bos(self) -> int: ...

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]: ...

    def score(self, tokens: Sequence[int]) -> np.ndarray:
        """The log-probability of each of ``tokens[1:]`` given the tokens before it."""
        ...


class LogitScorer:
    """A LogitSource as a TokenScorer."""

    def __init__(self, source: LogitSource) -> None:
        self.source = source
        self.n_ctx, self.add_bos, self.bos = source.n_ctx, source.add_bos, source.bos

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        return self.source.tokenize(text, add_bos=add_bos)

    def score(self, tokens: Sequence[int]) -> np.ndarray:
        logp = log_softmax(self.source.logits(tokens))
        scored: np.ndarray = logp[np.arange(len(tokens) - 1), np.asarray(tokens[1:])]
        return scored


def builtin_text(name: str) -> str:
    return resources.files("slmkit.optimize").joinpath(f"data/{name}").read_text("utf-8")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    out: np.ndarray = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return out


def windows(tokens: Sequence[int], n_ctx: int, bos: int | None, max_chunks: int = 0) -> list[list[int]]:
    """llama-perplexity's chunks: consecutive windows of ``n_ctx`` tokens, the first token of
    each replaced by BOS when the model uses one."""
    if n_ctx < 16:
        raise InvalidRequest("ctx: perplexity needs a context of at least 16 tokens")
    count = len(tokens) // n_ctx
    if max_chunks:
        count = min(count, max_chunks)
    if count < 1:
        raise InvalidRequest(
            f"text: {len(tokens)} tokens is less than one window of {n_ctx} (use a smaller --ctx)"
        )
    out = []
    for i in range(count):
        window = list(tokens[i * n_ctx : (i + 1) * n_ctx])
        if bos is not None:
            window[0] = bos
        out.append(window)
    return out


@dataclass
class Perplexity:
    ppl: float
    ppl_error: float  # standard error, carried to perplexity
    nll_mean: float
    tokens: int  # scored tokens
    chunks: int
    n_ctx: int
    kld: float | None = None  # mean KL(P_ref || P_model), nats
    kld_error: float | None = None
    top1_agreement: float | None = None  # share of positions where both pick the same token
    ref_ppl: float | None = None  # the reference's perplexity on the same windows
    ppl_ratio: float | None = None  # this model's perplexity over the reference's (paired)
    ppl_ratio_error: float | None = None  # standard error of the ratio, from per-token differences

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    mean = float(values.mean())
    return mean, float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def perplexity(
    model: LogitSource,
    text: str,
    *,
    max_chunks: int = 0,
    reference: LogitSource | None = None,
    label: str = "",
) -> Perplexity:
    """Perplexity of ``model`` on ``text``; with ``reference``, also KLD and top-1 agreement
    on the same windows (both models must share a vocabulary)."""
    n_ctx = model.n_ctx
    if reference is not None and (reference.n_vocab != model.n_vocab or reference.n_ctx != n_ctx):
        raise InvalidRequest(
            f"reference: vocabularies differ ({reference.n_vocab} vs {model.n_vocab} tokens); "
            "KL divergence needs the same tokenizer"
        )
    tokens = model.tokenize(text, add_bos=False)
    chunks = windows(tokens, n_ctx, model.bos if model.add_bos and model.bos >= 0 else None, max_chunks)
    first = n_ctx // 2
    nll, ref_nll, kld, agree = [], [], [], []
    shown = progress.current()
    shown.task(f"{label or 'model'}: perplexity" + (" and KL divergence" if reference else ""), len(chunks))
    for window in chunks:
        shown.advance()
        logp = log_softmax(model.logits(window))[first:-1]
        targets = np.asarray(window[first + 1 :])
        rows = np.arange(len(targets))
        nll.append(-logp[rows, targets])
        if reference is not None:
            ref = log_softmax(reference.logits(window))[first:-1]
            ref_nll.append(-ref[rows, targets])
            kld.append((np.exp(ref) * (ref - logp)).sum(axis=-1))
            agree.append(ref.argmax(axis=-1) == logp.argmax(axis=-1))
    ref_values = np.concatenate(ref_nll) if ref_nll else None
    return _perplexity(np.concatenate(nll), len(chunks), n_ctx, ref_values, kld, agree)


def scored_perplexity(model: TokenScorer, text: str, *, max_chunks: int = 0, label: str = "") -> Perplexity:
    """Perplexity from token log-probabilities alone (a served model): the same windows and
    scored halves as :func:`perplexity`, so both give the same value for the same model."""
    n_ctx = model.n_ctx
    tokens = model.tokenize(text, add_bos=False)
    chunks = windows(tokens, n_ctx, model.bos if model.add_bos and model.bos >= 0 else None, max_chunks)
    first = n_ctx // 2
    shown = progress.current()
    shown.task(f"{label or 'model'}: perplexity", len(chunks))
    nll = []
    for window in chunks:
        shown.advance()
        nll.append(-model.score(window)[first:])
    return _perplexity(np.concatenate(nll), len(chunks), n_ctx, None, [], [])


def _perplexity(
    values: np.ndarray,
    chunks: int,
    n_ctx: int,
    ref_values: np.ndarray | None,
    kld: list[np.ndarray],
    agree: list[np.ndarray],
) -> Perplexity:
    mean, error = _mean_and_error(values)
    ppl = math.exp(mean)
    result = Perplexity(ppl, ppl * error, mean, len(values), chunks, n_ctx)
    if ref_values is not None:
        diff, diff_error = _mean_and_error(values - ref_values)
        result.ref_ppl = math.exp(float(ref_values.mean()))
        result.ppl_ratio = math.exp(diff)
        result.ppl_ratio_error = result.ppl_ratio * diff_error
        result.kld, result.kld_error = _mean_and_error(np.concatenate(kld))
        result.top1_agreement = float(np.concatenate(agree).mean())
    return result


# -- multiple choice ---------------------------------------------------------------------------


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(min_length=1)
    choices: list[str] = Field(min_length=2)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer_in_range(self) -> Question:
        if self.answer >= len(self.choices):
            raise ValueError(f"answer {self.answer} is not one of the {len(self.choices)} choices")
        return self


class QuestionSet(BaseModel):
    questions: list[Question] = Field(min_length=1)


@dataclass
class ChoiceResult:
    accuracy: float  # by summed log-likelihood of the choice
    accuracy_norm: float  # by log-likelihood per token (less biased to short choices)
    questions: int


def multiple_choice(model: LogitSource | TokenScorer, questions: QuestionSet) -> ChoiceResult:
    """Which choice is likeliest after "Question: ...\nAnswer:", by summed and by per-token
    log-likelihood; a LogitSource (local) or a TokenScorer (served) scores the same."""
    scorer = model if hasattr(model, "score") else LogitScorer(model)  # type: ignore[arg-type]
    right = right_norm = 0
    shown = progress.current()
    shown.task("multiple choice", len(questions.questions))
    for item in questions.questions:
        shown.advance()
        context = scorer.tokenize(f"Question: {item.q}\nAnswer:")
        scores, norms = [], []
        for choice in item.choices:
            cont = scorer.tokenize(" " + choice, add_bos=False)
            tokens = (context + cont)[-scorer.n_ctx :]
            total = float(scorer.score(tokens)[-len(cont) :].sum())
            scores.append(total)
            norms.append(total / len(cont))
        right += int(np.argmax(scores)) == item.answer
        right_norm += int(np.argmax(norms)) == item.answer
    n = len(questions.questions)
    return ChoiceResult(right / n, right_norm / n, n)


# -- golden tests ------------------------------------------------------------------------------


def _strings(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


class GoldenTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    prompt: str = Field(min_length=1)
    system: str | None = None
    contains: str | list[str] | None = None  # every string must appear (case-insensitive)
    not_contains: str | list[str] | None = None  # none may appear (case-insensitive)
    regex: str | None = None  # must match somewhere
    json_schema: dict[str, Any] | None = None  # the answer (or its first {...}/[...]) must validate
    max_tokens: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _has_a_check(self) -> GoldenTest:
        if not (self.contains or self.not_contains or self.regex or self.json_schema is not None):
            raise ValueError("each test needs contains, not_contains, regex or json_schema")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r}: {exc}") from exc
        if self.json_schema is not None:
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(self.json_schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"json_schema: {exc.message}") from exc
        return self

    def failures(self, answer: str) -> list[str]:
        low = answer.lower()
        why = [f"missing {s!r}" for s in _strings(self.contains) if s.lower() not in low]
        why += [f"contains {s!r}" for s in _strings(self.not_contains) if s.lower() in low]
        if self.regex is not None and not re.search(self.regex, answer):
            why.append(f"no match for /{self.regex}/")
        if self.json_schema is not None:
            why += _schema_failures(answer, self.json_schema)
        return why


def _schema_failures(answer: str, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    text = answer.strip()
    match = re.search(r"[\[{].*[\]}]", text, re.DOTALL)
    candidates = [text] + ([match.group(0)] if match else [])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=str)
        return [f"schema: {errors[0].message}"] if errors else []
    return ["not JSON"]


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=128, ge=1, le=4096)
    tests: list[GoldenTest] = Field(min_length=1)


def load_yaml_model(text: str, kind: type[BaseModel], what: str) -> Any:
    import yaml

    try:
        return kind.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{what}: not valid YAML ({exc})") from exc
    except ValidationError as exc:
        raise InvalidRequest(f"{what}: {first_problem(exc.errors())[0]}") from exc


@dataclass
class GoldenResult:
    passed: int
    total: int
    cases: list[dict[str, Any]] = field(default_factory=list)  # name, passed, failures, answer

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


Chat = Callable[[list[dict[str, str]], int], str]  # messages, max_tokens -> greedy answer


def run_suite(chat: Chat, suite: Suite) -> GoldenResult:
    result = GoldenResult(0, len(suite.tests))
    shown = progress.current()
    shown.task("golden tests", len(suite.tests))
    for i, test in enumerate(suite.tests):
        shown.advance()
        messages = ([{"role": "system", "content": test.system}] if test.system else []) + [
            {"role": "user", "content": test.prompt}
        ]
        answer = chat(messages, test.max_tokens or suite.max_tokens)
        why = test.failures(answer)
        result.passed += not why
        result.cases.append(
            {"name": test.name or f"test {i + 1}", "passed": not why, "failures": why, "answer": answer}
        )
    return result


def read_text_file(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"--file: cannot read {path.name}: {exc}") from exc


class JsonCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=4000)
    schema_: dict[str, Any] = Field(alias="schema")


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict[str, Any]


class ToolCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=4000)
    expect: str
    tools: list[ToolSpec] = Field(min_length=1, max_length=16)


class Conformance(BaseModel):
    """``slm eval --conformance``: output programs can use (data/conformance.yaml)."""

    model_config = ConfigDict(extra="forbid")
    json_cases: list[JsonCase] = Field(default_factory=list, alias="json")
    tools: list[ToolCase] = Field(default_factory=list)


class ToolChat(Protocol):
    def __call__(
        self, messages: list[dict[str, str]], max_tokens: int, tools: list[dict[str, Any]] | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """(the answer's text, its tool calls as {"name", "arguments"})"""
        ...


def run_conformance(chat: ToolChat, cases: Conformance, max_tokens: int = 96) -> dict[str, Any]:
    """JSON-schema validity rate and tool-call conformance rate, greedy, each case alone."""
    import jsonschema

    shown = progress.current()
    shown.task("JSON and tool-call conformance", len(cases.json_cases) + len(cases.tools))
    valid = 0
    for case in cases.json_cases:
        shown.advance()
        schema = json.dumps(case.schema_)
        ask = f"{case.prompt}\nAnswer with only a JSON object matching this JSON schema: {schema}"
        text, _ = chat([{"role": "user", "content": ask}], max_tokens)
        valid += not _schema_failures(text, case.schema_)
    conforming = 0
    for tcase in cases.tools:
        shown.advance()
        specs = [{"type": "function", "function": t.model_dump()} for t in tcase.tools]
        _, calls = chat([{"role": "user", "content": tcase.prompt}], max_tokens, specs)
        wanted = next(t for t in tcase.tools if t.name == tcase.expect)
        conforming += any(
            c["name"] == tcase.expect
            and not list(jsonschema.Draft202012Validator(wanted.parameters).iter_errors(c["arguments"]))
            for c in calls
        )
    out: dict[str, Any] = {}
    if cases.json_cases:
        out["json_schema"] = {"valid_rate": valid / len(cases.json_cases), "cases": len(cases.json_cases)}
    if cases.tools:
        out["tool_calls"] = {"conformance_rate": conforming / len(cases.tools), "cases": len(cases.tools)}
    return out
