"""Perplexity, KLD, multiple choice, golden suites and quantize checks on fakes (no weights)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from slmkit.errors import InvalidRequest, QualityGateFailed
from slmkit.names import ModelName
from slmkit.optimize.evaluate import (
    GoldenTest,
    QuestionSet,
    Suite,
    builtin_text,
    load_yaml_model,
    multiple_choice,
    perplexity,
    run_suite,
    windows,
)
from slmkit.optimize.quantize import check_target, gate, load_imatrix, parse_budget, target_name
from slmkit.store.gguf_info import GGUFInfo

VOCAB = 16


class FakeModel:
    """Tokens are characters mod VOCAB; logits come from a rule given per instance."""

    n_ctx = 32
    n_vocab = VOCAB
    add_bos = False
    bos = -1

    def __init__(self, rule: str = "uniform", noise: float = 0.0) -> None:
        self.rule, self.noise = rule, noise

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        return [ord(c) % VOCAB for c in text]

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        out = np.zeros((len(tokens), VOCAB), dtype=np.float32)
        if self.rule == "next":  # confident that token t is followed by t+1
            for i, t in enumerate(tokens):
                out[i, (t + 1) % VOCAB] = 5.0
        out += self.noise * np.sin(np.arange(len(tokens) * VOCAB)).reshape(len(tokens), VOCAB).astype(
            np.float32
        )
        return out


def test_uniform_model_has_perplexity_equal_to_vocab_size() -> None:
    result = perplexity(FakeModel("uniform"), "abcdefgh" * 20)
    assert result.ppl == pytest.approx(VOCAB, rel=1e-6)
    assert result.ppl_error == pytest.approx(0, abs=1e-9)
    assert result.chunks == 160 // 32 and result.tokens == result.chunks * (32 // 2 - 1)


def test_a_model_that_predicts_the_text_beats_uniform_and_kld_measures_the_gap() -> None:
    text = "".join(chr(65 + i % VOCAB) for i in range(200))  # each char followed by the next
    good = perplexity(FakeModel("next"), text)
    p_right = math.exp(5) / (math.exp(5) + VOCAB - 1)
    assert good.ppl == pytest.approx(1 / p_right, rel=1e-5) and good.ppl < 2
    same = perplexity(FakeModel("next"), text, reference=FakeModel("next"))
    assert same.kld == pytest.approx(0, abs=1e-9) and same.top1_agreement == 1.0 and same.ppl_ratio == 1.0
    worse = perplexity(FakeModel("next", noise=1.0), text, reference=FakeModel("next"))
    worst = perplexity(FakeModel("next", noise=3.0), text, reference=FakeModel("next"))
    assert 0 < worse.kld < worst.kld  # type: ignore[operator]
    assert 1 < worse.ppl_ratio < worst.ppl_ratio  # type: ignore[operator]
    assert worst.top1_agreement < 1.0  # type: ignore[operator]


def test_windows_follow_llama_perplexity_and_refuse_short_texts() -> None:
    chunks = windows(list(range(100)), 32, bos=7)
    assert len(chunks) == 3 and all(len(c) == 32 and c[0] == 7 for c in chunks)
    assert chunks[1][1:] == list(range(33, 64))
    assert len(windows(list(range(100)), 32, None, max_chunks=2)) == 2
    with pytest.raises(InvalidRequest, match="less than one window"):
        windows(list(range(10)), 32, None)


def test_kld_needs_the_same_vocabulary() -> None:
    other = FakeModel()
    other.n_vocab = 99
    with pytest.raises(InvalidRequest, match="vocabularies differ"):
        perplexity(FakeModel(), "a" * 100, reference=other)


def test_multiple_choice_picks_the_likeliest_continuation() -> None:
    questions = QuestionSet.model_validate(
        {
            "questions": [
                {"q": "x", "choices": ["BCD", "QQQ"], "answer": 0},
                {"q": "y", "choices": ["ZZ", "AB"], "answer": 1},
            ]
        }
    )
    result = multiple_choice(FakeModel("next"), questions)  # after ":" (58 % 16 = 10) comes " ", ...
    assert result.questions == 2 and 0 <= result.accuracy <= 1
    shipped = load_yaml_model(builtin_text("mc.yaml"), QuestionSet, "mc")
    assert len(shipped.questions) >= 20


def test_golden_checks_and_pass_rate() -> None:
    suite = Suite.model_validate(
        {
            "tests": [
                {"name": "c", "prompt": "p", "contains": ["paris"]},
                {"name": "n", "prompt": "p", "not_contains": "sorry"},
                {"name": "r", "prompt": "p", "regex": r"\b4\b"},
                {"name": "j", "prompt": "p", "json_schema": {"type": "object", "required": ["a"]}},
            ]
        }
    )
    answers = {"c": "It is Paris.", "n": "Sorry, no.", "r": "2+2 = 4", "j": 'Here: {"a": 1}'}
    seen: list[int] = []

    def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
        seen.append(max_tokens)
        return answers["cnrj"[len(seen) - 1]]

    result = run_suite(chat, suite)
    assert [c["passed"] for c in result.cases] == [True, False, True, True]
    assert result.pass_rate == 0.75 and seen == [128] * 4
    assert GoldenTest(prompt="p", json_schema={"type": "array"}).failures("nope") == ["not JSON"]
    assert "schema" in GoldenTest(prompt="p", json_schema={"type": "array"}).failures('{"a": 1}')[0]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("tests: []", "tests"),
        ("tests: [{prompt: p}]", "needs contains"),
        ("tests: [{prompt: p, regex: '('}]", "regex"),
        ("tests: [{prompt: p, json_schema: {type: 12}}]", "json_schema"),
        ("tests: [{prompt: p, contains: a, colour: red}]", "colour"),
        ("tests: [unclosed", "not valid YAML"),
    ],
)
def test_bad_suites_are_refused_naming_the_field(yaml_text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        load_yaml_model(yaml_text, Suite, "--suite")


def info(file_type: str, tensor_bytes: int = 60, params: int = 100) -> GGUFInfo:
    return GGUFInfo("llama", "m", file_type, params, "100", 0, 0, None, tensor_bytes={"X": tensor_bytes})


def test_quantize_targets_must_lower_precision_and_requantizing_is_explicit() -> None:
    check_target(info("F16"), "Q4_K_M", allow_requantize=False)
    with pytest.raises(InvalidRequest, match="already Q4_1"):
        check_target(info("Q4_1"), "Q8_0", allow_requantize=True)
    with pytest.raises(InvalidRequest, match="already Q4_K_M"):
        check_target(info("Q4_K_M"), "Q4_K_M", allow_requantize=True)
    with pytest.raises(InvalidRequest, match="allow-requantize"):
        check_target(info("Q8_0"), "Q4_K_M", allow_requantize=False)
    check_target(info("Q8_0"), "Q4_K_M", allow_requantize=True)
    with pytest.raises(InvalidRequest, match="not a supported type"):
        check_target(info("F16"), "Q9_K", allow_requantize=False)
    with pytest.raises(InvalidRequest, match="ternary"):
        check_target(info("F16"), "TQ2_0", allow_requantize=False)
    bitnet = GGUFInfo("bitnet", "b", "F16", 100, "2B", 0, 0, None, tensor_bytes={"X": 200})
    check_target(bitnet, "TQ2_0", allow_requantize=False)


def test_quality_gate_budget_and_names() -> None:
    assert parse_budget("5%") == pytest.approx(0.05) and parse_budget("0.1") == pytest.approx(0.1)
    for bad in ("five", "-1%", "5000%"):
        with pytest.raises(InvalidRequest, match="max-ppl-increase"):
            parse_budget(bad)
    gate(1.04, 0.05, "Q4_K_M")
    gate(9.0, None, "Q2_K")
    with pytest.raises(QualityGateFailed, match=r"\+6\.0%.*nothing was stored"):
        gate(1.06, 0.05, "Q4_K_M")
    assert target_name(ModelName.parse("smollm2:135m"), "Q4_K_M").display == "smollm2:135m-q4_k_m"


def test_imatrix_files_in_legacy_and_gguf_formats(tmp_path: Path) -> None:
    legacy = tmp_path / "m.dat"
    values = np.array([2.0, 4.0, 6.0], dtype="<f4")
    name = b"blk.0.ffn_up.weight"
    legacy.write_bytes(
        struct.pack("<i", 1)
        + struct.pack("<i", len(name))
        + name
        + struct.pack("<ii", 2, 3)
        + values.tobytes()
    )
    matrix, digest = load_imatrix(legacy)
    assert digest.startswith("sha256:") and np.allclose(matrix["blk.0.ffn_up.weight"], [1, 2, 3])

    import gguf

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "imatrix")
    writer.add_tensor("blk.0.attn_q.weight.in_sum2", np.array([[4.0, 8.0]], dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.counts", np.array([[2.0]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    matrix, _ = load_imatrix(path)
    assert np.allclose(matrix["blk.0.attn_q.weight"], [2, 4])
    for junk in (b"\x05\x00\x00\x00", b"GGUFjunk", b""):
        bad = tmp_path / "bad"
        bad.write_bytes(junk)
        with pytest.raises(InvalidRequest, match="imatrix"):
            load_imatrix(bad)


def test_long_work_reports_its_steps_to_whoever_watches() -> None:
    from slmkit import progress

    class Recorder:
        def __init__(self) -> None:
            self.steps: list[list[object]] = []

        def task(self, description: str, total: int | None = None) -> None:
            self.steps.append([description, total, 0])

        def advance(self, steps: int = 1) -> None:
            self.steps[-1][2] = int(str(self.steps[-1][2])) + steps

    seen = Recorder()
    with progress.watching(seen):
        result = perplexity(FakeModel("next"), "abcdefgh" * 40, label="tiny", reference=FakeModel("next"))
    assert seen.steps == [["tiny: perplexity and KL divergence", result.chunks, result.chunks]]
    assert progress.current() is progress.SILENT  # nobody watches outside the block


def test_progress_shows_on_a_terminal_only(capsys: pytest.CaptureFixture[str]) -> None:
    from slmkit import progress
    from slmkit.cli.progress import on_terminal

    with on_terminal():  # captured stderr is not a terminal: nothing is drawn
        progress.current().task("quantizing", None)
        progress.current().advance()
    assert capsys.readouterr().err == ""
