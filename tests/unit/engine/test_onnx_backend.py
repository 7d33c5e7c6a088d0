"""The ONNX Runtime backend's adapter without onnxruntime or weights: a byte-level tokenizer
made with the tokenizers library, and a fake graph whose next token is always the byte after
the last one read. EngineCore and the real scheduler drive it, as in a worker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slmkit.answer.schema import check_schema
from slmkit.config import Config
from slmkit.engine.backends.onnx import GROWTH, OnnxBackend, Sampler
from slmkit.engine.core import EngineCore
from slmkit.engine.scheduler import StepPlan
from slmkit.errors import InvalidRequest, LimitExceeded, ModelLoadError
from slmkit.formats.onnx import OnnxFolder
from slmkit.pipe import EngineRequest, Finished, LoadSpec, SamplingParams, TextDelta
from slmkit.store.onnx_folder import folder_files, read_folder_info

tokenizers = pytest.importorskip("tokenizers")
VOCAB = 258  # 256 bytes, <s>, </s>
BOS, EOS = 256, 257


def _folder(root: Path, specials: tuple[str, ...] = ()) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    table = sorted(alphabet, key=lambda ch: _byte_of(ch))
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(table)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<s>", "</s>", *specials])
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    decoder = {
        "filename": "model.onnx", "num_hidden_layers": 2, "num_key_value_heads": 1, "head_size": 4,
        "hidden_size": 8, "num_attention_heads": 2,
    }  # fmt: skip
    config = {"model": {"type": "llama", "vocab_size": VOCAB + len(specials), "context_length": 1024,
                        "eos_token_id": EOS, "decoder": decoder}}  # fmt: skip
    (root / "genai_config.json").write_text(json.dumps(config))
    (root / "model.onnx").write_bytes(b"not read: the session is a fake")
    return root


def _byte_of(ch: str) -> int:
    from slmkit.engine.backends.onnx import _unicode_to_byte

    return _unicode_to_byte()[ch]


class _Input:
    def __init__(self, name: str) -> None:
        self.name, self.type = name, "tensor(float)"


class _Session:
    def __init__(self, outputs: tuple[str, ...] = ("logits",)) -> None:
        self.outputs = outputs

    def get_inputs(self) -> list[_Input]:
        names = ["input_ids", "attention_mask"]
        names += [f"past_key_values.{i}.{kind}" for i in range(2) for kind in ("key", "value")]
        return [_Input(n) for n in names]

    def get_outputs(self) -> list[_Input]:
        return [_Input(n) for n in self.outputs]


def _spec(folder: Path, n_ctx: int, n_parallel: int, **changes: Any) -> LoadSpec:
    """The spec the server would load ``folder`` with: its facts through the format seam."""
    fmt = OnnxFolder()
    facts = read_folder_info(folder_files(folder))
    spec = fmt.load_spec(folder, facts, Config.from_env({}), n_ctx=n_ctx, n_parallel=n_parallel, adapters=())
    return dataclasses.replace(spec, **changes)


class FakeOnnx(OnnxBackend):
    """The graph: each position's logits favour the byte after the token read there (a
    token after "a" is "b"); every call is recorded as (slots, tokens, starts)."""

    def __init__(self, root: Path, n_parallel: int = 4, specials: tuple[str, ...] = ()) -> None:
        super().__init__(
            _spec(_folder(root, specials), 600, n_parallel), open_session=lambda graph, threads: _Session()
        )
        self.calls: list[tuple[list[int], list[list[int]], list[int]]] = []

    def _run(self, slots: list[int], tokens: list[list[int]], starts: list[int]) -> np.ndarray:
        self.calls.append((slots, [list(t) for t in tokens], list(starts)))
        self._fit(max(s + len(t) for s, t in zip(starts, tokens, strict=True)) + 1)
        logits = np.zeros((len(slots), max(len(t) for t in tokens), self.info.n_vocab), np.float32)
        for row, toks in enumerate(tokens):
            for i, t in enumerate(toks):
                logits[row, i, (t + 1) % 256] = 10.0
        return logits


def _request(rid: str, prompt: str, **sampling: Any) -> EngineRequest:
    values = {"temperature": 0.0, "max_tokens": 6, **sampling}
    return EngineRequest(rid, SamplingParams(**values), prompt=prompt)


def _run(core: EngineCore, until: set[str]) -> dict[str, tuple[str, Finished]]:
    texts: dict[str, str] = {}
    done: dict[str, tuple[str, Finished]] = {}
    for _ in range(200):
        for rid, event in core.step():
            if isinstance(event, TextDelta):
                texts[rid] = texts.get(rid, "") + event.text
            elif isinstance(event, Finished):
                done[rid] = (texts.get(rid, ""), event)
        if until <= set(done):
            return done
    raise AssertionError(f"never finished: {until - set(done)}")


def test_tokens_round_trip_through_bytes_and_bos(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    ids = backend.tokenize("hé<s>", add_bos=True)
    assert ids[0] == BOS and ids[-1] == BOS  # special tokens in text are parsed
    assert b"".join(backend.token_bytes(t) for t in ids[1:-1]).decode() == "hé"
    assert backend.token_bytes(EOS) == b"" and backend.eos_token == "</s>"


def test_greedy_answer_stop_string_across_tokens_and_eos(tmp_path: Path) -> None:
    core = EngineCore(FakeOnnx(tmp_path), None)
    core.add_request(_request("plain", "a"))
    core.add_request(_request("stopped", "a", stop=("de",)))  # "d" and "e" are two tokens
    done = _run(core, {"plain", "stopped"})
    assert done["plain"][0] == "bcdefg" and done["plain"][1].reason == "length"
    assert done["stopped"][0] == "bc" and done["stopped"][1].reason == "stop"
    assert done["stopped"][1].stats.stop_sequence == "de"


def test_new_requests_join_running_ones_between_steps_and_decode_in_one_call(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    core = EngineCore(backend, None)
    core.add_request(_request("first", "a", max_tokens=10))
    early = [e.text for _ in range(2) for _, e in core.step() if isinstance(e, TextDelta)]
    core.add_request(_request("second", "k", max_tokens=3))
    done = _run(core, {"first", "second"})
    assert "".join(early) + done["first"][0] == "bcdefghijk" and done["second"][0] == "lmn"
    batched = [call for call in backend.calls if len(call[0]) == 2 and all(len(t) == 1 for t in call[1])]
    assert batched, "the two requests never decoded in the same graph call"


def test_cancel_one_request_the_other_goes_on(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    core = EngineCore(backend, None)
    core.add_request(_request("gone", "a", max_tokens=50))
    core.add_request(_request("kept", "A", max_tokens=5))
    first = "".join(e.text for rid, e in core.step() if rid == "kept" and isinstance(e, TextDelta))
    events = core.abort("gone")
    assert any(isinstance(e, Finished) and e.reason == "cancelled" for _, e in events)
    assert "gone" not in backend._samplers
    assert first + _run(core, {"kept"})["kept"][0] == "BCDEF"


def test_a_cached_prompts_last_token_is_read_with_the_one_before(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    core = EngineCore(backend, None)
    core.add_request(_request("one", "hello", max_tokens=2))
    _run(core, {"one"})
    backend.calls.clear()
    core.add_request(_request("two", "hello", max_tokens=2))
    _run(core, {"two"})
    _, tokens, starts = backend.calls[0]  # the prompt's last token, with "l" before it again
    assert tokens == [backend.tokenize("lo", add_bos=False)] and starts == [3]


def test_kv_rows_grow_and_shrink_keeping_what_they_hold(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path, n_parallel=2)
    assert backend._keys[0].shape[2] == GROWTH
    backend._keys[0][1, 0, 5] = 7.0
    backend._held[1] = [0] * (GROWTH + 10)
    backend._fit(GROWTH + 11)
    assert backend._keys[0].shape[2] == 2 * GROWTH and backend._keys[0][1, 0, 5, 0] == 7.0
    backend._held[1] = [0] * 6
    backend._fit(7)
    assert backend._keys[0].shape[2] == GROWTH and backend._keys[0][1, 0, 5, 0] == 7.0


def test_unsupported_features_are_refused_by_name(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    with pytest.raises(InvalidRequest, match="logit_bias"):
        backend.start("r", SamplingParams(logit_bias=((VOCAB, 1.0),)))
    with pytest.raises(ModelLoadError, match="LoRA"):
        OnnxBackend(LoadSpec(str(tmp_path), adapters=("a.gguf",), backend="onnx"))


def test_a_graph_with_other_inputs_is_refused(tmp_path: Path) -> None:
    class Paged(_Session):
        def get_inputs(self) -> list[_Input]:
            return [_Input("input_ids"), _Input("block_table")]

    with pytest.raises(ModelLoadError, match="paged-attention"):
        OnnxBackend(LoadSpec(str(_folder(tmp_path)), backend="onnx"), open_session=lambda g, t: Paged())


def test_sampler_greedy_seed_bias_and_penalties() -> None:
    row = np.array([0.0, 3.0, 2.9, 1.0], np.float32)
    assert Sampler(SamplingParams(temperature=0), 4).sample(row) == 1
    assert Sampler(SamplingParams(temperature=0, logit_bias=((3, 5.0),)), 4).sample(row) == 3
    draws = [
        [Sampler(SamplingParams(temperature=1.5, seed=3), 4).sample(row) for _ in range(1)] for _ in range(5)
    ]
    assert len({tuple(d) for d in draws}) == 1  # one seed, one draw
    seeded = Sampler(SamplingParams(temperature=1.5, seed=11, top_k=0, top_p=1.0, min_p=0.0), 4)
    assert len({seeded.sample(row) for _ in range(200)}) > 2  # it does sample
    assert Sampler(SamplingParams(temperature=2.0, top_k=1), 4).sample(row) == 1
    penalized = Sampler(SamplingParams(temperature=0, repeat_penalty=1.5), 4)
    assert penalized.sample(row) == 1 and penalized.sample(row) == 2  # 3.0 / 1.5 < 2.9


def test_no_draft_tokens_are_planned_for_a_backend_that_cannot_check_them(tmp_path: Path) -> None:
    backend = FakeOnnx(tmp_path)
    core = EngineCore(backend, None, draft_tokens=4)  # SLM_DRAFT_TOKENS set for every model
    core.add_request(_request("r", "aaaaaaaaaaaaaaaa", max_tokens=8))
    plans: list[StepPlan] = []
    original = core.scheduler.schedule

    def spy() -> StepPlan:
        plans.append(original())
        return plans[-1]

    core.scheduler.schedule = spy  # type: ignore[method-assign]
    _run(core, {"r"})
    assert plans and all(not d.draft for p in plans for d in p.decode)


def _answer(backend: OnnxBackend, prompt: str, **sampling: Any) -> tuple[str, Finished]:
    core = EngineCore(backend, None)
    core.add_request(_request("r", prompt, **sampling))
    return _run(core, {"r"})["r"]


def test_structured_output_follows_the_schema_whatever_the_graph_prefers(tmp_path: Path) -> None:
    """The fake graph wants the byte after each one; the grammar's mask wins, the object is
    closed as llama.cpp's converter closes it, and generation ends when the JSON does."""
    pytest.importorskip("llguidance")
    schema = {
        "type": "object",
        "properties": {
            "pet": {"enum": ["cat", "dog"]},
            "age": {"type": "integer", "minimum": 0, "maximum": 99},
        },
        "required": ["pet", "age"],
    }
    checked = check_schema(schema, "response_format")  # as the API process sends it
    backend = FakeOnnx(tmp_path)
    text, finished = _answer(backend, "a", max_tokens=80, json_schema=checked)
    value = json.loads(text)
    assert set(value) == {"pet", "age"} and value["pet"] in {"cat", "dog"} and isinstance(value["age"], int)
    assert finished.reason == "stop" and text.startswith('{"pet": "')  # json.dumps' separators
    sampled, _ = _answer(backend, "a", max_tokens=80, temperature=1.5, seed=4, json_schema=checked)
    assert set(json.loads(sampled)) == {"pet", "age"}


def test_a_required_tool_call_is_a_whole_call(tmp_path: Path) -> None:
    pytest.importorskip("llguidance")
    from slmkit.answer.tools import call_schema
    from slmkit.pipe import Choice, Tool

    city = {"type": "string", "maxLength": 8}
    tool = Tool("weather", "", {"type": "object", "properties": {"city": city}, "required": ["city"]})
    schema = call_schema([tool], Choice("required", parallel=False), 200)
    text, _ = _answer(FakeOnnx(tmp_path), "a", max_tokens=200, json_schema=schema)
    call = json.loads(text)["tool_calls"][0]
    assert call["name"] == "weather" and set(call["arguments"]) == {"city"}


def test_the_mask_allows_only_what_the_schema_does(tmp_path: Path) -> None:
    """After '{"pet": "cat"' only '}' may come: no other key (closed), no free whitespace."""
    pytest.importorskip("llguidance")
    backend = FakeOnnx(tmp_path)
    schema = json.dumps({"type": "object", "properties": {"pet": {"enum": ["cat"]}}})
    guide = backend._guides.start(schema)
    for token in backend.tokenize('{"pet": "cat"', add_bos=False):
        guide.mask(np.zeros(VOCAB))
        guide.accept(token)
    logits = np.zeros(VOCAB)
    guide.mask(logits)
    assert [int(t) for t in np.flatnonzero(np.isfinite(logits))] == backend.tokenize("}", add_bos=False)
    guide.accept(ord("}"))
    logits = np.zeros(VOCAB)
    guide.mask(logits)
    assert [int(t) for t in np.flatnonzero(np.isfinite(logits))] == [EOS]  # the JSON is whole


def test_schemas_the_grammar_cannot_take_are_refused_at_start(tmp_path: Path) -> None:
    pytest.importorskip("llguidance")
    backend = FakeOnnx(tmp_path)
    with pytest.raises(InvalidRequest, match="JSON schema cannot be turned into a grammar"):
        backend.start("r", SamplingParams(json_schema=json.dumps({"type": "string", "pattern": "^(?=a)b$"})))
    backend.start("ok", SamplingParams(json_schema='{"type": "object"}'))  # and the backend goes on


def test_closed_adds_what_llama_cpp_assumes_and_keeps_the_rest() -> None:
    from slmkit.engine.backends.guide import closed

    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
        "$defs": {"open": {"properties": {}, "additionalProperties": True}},
        "anyOf": [{"properties": {"c": {"const": 1}}}],
    }
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["a"]["additionalProperties"] is False
    assert out["$defs"]["open"]["additionalProperties"] is True
    assert out["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # a copy


def test_fill_in_the_middle_with_the_tokenizers_fim_tokens(tmp_path: Path) -> None:
    """A tokenizer with StarCoder's FIM tokens: the prompt goes to the graph as prefix-suffix-
    middle; a tokenizer without them refuses a suffix by name."""
    backend = FakeOnnx(tmp_path / "fim", specials=("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert backend.fim == (VOCAB, VOCAB + 1, VOCAB + 2)
    core = EngineCore(backend, None)
    core.add_request(
        EngineRequest("r", SamplingParams(temperature=0.0, max_tokens=3), prompt="ab", suffix="yz")
    )
    text, _ = _run(core, {"r"})["r"]
    pre, suf, mid = backend.fim
    assert backend.calls[0][1][0] == [pre, ord("a"), ord("b"), suf, ord("y"), ord("z"), mid]
    assert len(text) == 3
    plain = EngineCore(FakeOnnx(tmp_path / "plain"), None)
    with pytest.raises(InvalidRequest, match="suffix"):
        plain.add_request(EngineRequest("r", SamplingParams(), prompt="ab", suffix="yz"))


class Embedder(FakeOnnx):
    """A graph that outputs hidden states: token t's is 1 at dimension t % 8."""

    def __init__(self, root: Path) -> None:
        OnnxBackend.__init__(
            self,
            _spec(_folder(root), 2048, 2, embedding_output="hidden_states"),  # the graph below has it
            open_session=lambda graph, threads: _Session(("logits", "hidden_states")),
        )
        self.calls = []
        self.embed_calls: list[tuple[list[int], int, int]] = []

    def _call(self, tokens: Any, starts: Any, kv: Any, output: str) -> np.ndarray:
        assert output == "hidden_states" and len(tokens) == 1
        self.embed_calls.append((list(tokens[0]), starts[0], kv[0][0].shape[2]))
        hidden = np.zeros((1, len(tokens[0]), 8), np.float32)
        for i, t in enumerate(tokens[0]):
            hidden[0, i, t % 8] = 1.0
        return hidden


def test_embeddings_mean_pool_the_hidden_states_on_rows_of_their_own(tmp_path: Path) -> None:
    backend = Embedder(tmp_path)
    held = [list(h) for h in backend._held]
    vectors, count = backend.embed(["ab", "a" * 300])
    assert count == 302 and len(vectors) == 2
    assert np.allclose(vectors[0], [0, 2**-0.5, 2**-0.5, 0, 0, 0, 0, 0])  # "a" = 97 -> 1, "b" -> 2
    assert np.allclose(vectors[1], [0, 1, 0, 0, 0, 0, 0, 0])
    # 300 tokens: two chunks (MAX_BATCH 256) on one scratch KV row of 301 positions
    assert [(len(t), start, size) for t, start, size in backend.embed_calls[1:]] == [
        (256, 0, 301),
        (44, 256, 301),
    ]
    assert backend._held == held and not backend.calls  # no slot was used
    with pytest.raises(LimitExceeded, match="embedding limit of 1024"):
        backend.embed(["a" * 1025])
    with pytest.raises(InvalidRequest, match="input: an input is empty"):
        backend.embed([""])


def test_a_graph_without_hidden_states_refuses_embeddings(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="hidden states"):
        FakeOnnx(tmp_path).embed(["x"])
