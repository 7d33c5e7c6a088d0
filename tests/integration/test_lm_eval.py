"""Model quality through the standard harness and an independent scorer: echo logprobs equal
the model's own log-softmax, and EleutherAI's lm-evaluation-harness evaluates a served model
through its completions mode (remote tokenizer, batched requests), with local task files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
TASKS = Path(__file__).parent / "lm_eval_tasks"


def test_echo_logprobs_equal_an_independent_scorer(server: Server, smollm2_gguf: Path) -> None:
    from slmkit.engine.backends.llama_offline import Scorer

    text = "The quick brown fox jumps over the lazy dog, and the dog sleeps on."
    ids = httpx.post(f"{server.url}/tokenize", json={"prompt": text, "add_special_tokens": False}).json()[
        "tokens"
    ]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.completions.create(model=MODEL, prompt=[ids], echo=True, logprobs=2, max_tokens=0)
    (choice,) = r.choices
    assert choice.text == text and choice.logprobs is not None
    served = choice.logprobs.token_logprobs
    assert served is not None and len(served) == len(ids) and served[0] is None
    with Scorer(smollm2_gguf, n_ctx=512, threads=1) as scorer:
        logits = scorer.logits(ids).astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    log_softmax = logits - (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))
    expected = [float(log_softmax[i - 1, ids[i]]) for i in range(1, len(ids))]
    gaps = [abs(a - b) for a, b in zip(served[1:], expected, strict=True)]  # type: ignore[operator]
    print(f"echo logprobs vs scorer: {len(gaps)} tokens, largest gap {max(gaps):.4f} nats")
    assert max(gaps) < 0.05


def _tasks(tmp_path: Path) -> Path:
    """The local task files, with their data paths made absolute (no dataset download)."""
    common: dict[str, Any] = {"dataset_path": "json", "test_split": "test", "metadata": {"version": 1.0}}
    choice = common | {
        "task": "slm_choice",
        "dataset_kwargs": {"data_files": {"test": str(TASKS / "choice.jsonl")}},
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    gen = common | {
        "task": "slm_gen",
        "dataset_kwargs": {"data_files": {"test": str(TASKS / "gen.jsonl")}},
        "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": " {{answer}}",
        "generation_kwargs": {"until": ["\n", "."], "max_gen_toks": 12, "temperature": 0},
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": True,
            }
        ],
    }
    builtin = tmp_path / "mc.jsonl"  # slm eval's built-in set, in slm eval's prompt format
    builtin.write_text("".join(json.dumps(q) + "\n" for q in _builtin_questions()))
    mc = common | {
        "task": "slm_mc",
        "dataset_kwargs": {"data_files": {"test": str(builtin)}},
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{q}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    for spec in (choice, gen, mc):
        (tmp_path / f"{spec['task']}.yaml").write_text(json.dumps(spec))  # JSON is YAML
    return tmp_path


def _builtin_questions() -> list[dict[str, Any]]:
    import yaml

    from slmkit.optimize.evaluate import builtin_text

    return list(yaml.safe_load(builtin_text("mc.yaml"))["questions"])


def test_lm_eval_runs_a_generation_and_a_loglikelihood_task(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_gguf: Path
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = (
        f"base_url={server.url}/v1/completions,model={MODEL},tokenizer_backend=remote,"
        "tokenized_requests=True,num_concurrent=2,max_retries=1,batch_size=4"
    )
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=model_args,
        tasks=["slm_choice", "slm_gen", "slm_mc"],
        task_manager=TaskManager(include_path=str(_tasks(tmp_path))),
        limit=None,
        log_samples=False,
    )
    assert results is not None
    scores = results["results"]
    print(f"lm-eval: {json.dumps(scores)}")
    assert 0.0 <= scores["slm_choice"]["acc,none"] <= 1.0 and "exact_match,none" in scores["slm_gen"]
    assert (
        results["n-samples"]["slm_choice"]["effective"] == 6
        and results["n-samples"]["slm_gen"]["effective"] == 4
    )
    # the built-in set through lm-eval scores exactly as `slm eval --mc` on the same weights
    from slmkit.engine.backends.llama_offline import Scorer
    from slmkit.optimize.evaluate import QuestionSet, multiple_choice

    with Scorer(smollm2_gguf, n_ctx=512, threads=1) as scorer:
        local = multiple_choice(scorer, QuestionSet.model_validate({"questions": _builtin_questions()}))
    print(f"built-in set: lm-eval {scores['slm_mc']['acc,none']:.3f}, slm eval {local.accuracy:.3f}")
    assert scores["slm_mc"]["acc,none"] == pytest.approx(local.accuracy)


def test_slm_eval_endpoint_gives_the_local_scores(server: Server, tmp_path: Path) -> None:
    """`slm eval --endpoint` on the served model and `--compare slm://` on the same weights in
    this process: one table, the same perplexity and multiple-choice accuracy."""
    import subprocess
    import sys

    questions = [json.loads(line) for line in (TASKS / "choice.jsonl").read_text().splitlines()]
    mc = tmp_path / "mc.yaml"  # JSON is YAML
    mc.write_text(json.dumps({"questions": [{"q": q["question"], "choices": [c.strip() for c in q["choices"]],
                                             "answer": q["answer"]} for q in questions]}))  # fmt: skip
    command = [
        sys.executable, "-m", "slmkit", "eval", "--endpoint", server.url, "--model", MODEL,
        "--compare", f"slm://{MODEL}", "--mc", str(mc), "--suite", "builtin", "--chunks", "2",
        "--threads", "1", "--max-ppl-increase", "0.01", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    shown = subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=600)
    print(shown.stdout)
    assert shown.returncode == 0, shown.stderr
    assert "TARGET" in shown.stdout and f"{MODEL} @ {server.url}" in shown.stdout
    served, local = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert served["perplexity"]["tokens"] == local["perplexity"]["tokens"] == 2 * 255
    assert served["perplexity"]["ppl"] == pytest.approx(local["perplexity"]["ppl"], rel=1e-3)
    assert served["multiple_choice"] == local["multiple_choice"]
    assert served["golden"]["total"] == local["golden"]["total"] == 4


def test_slm_eval_compares_two_servers_of_the_same_model(
    server: Server, models_dir: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.integration.conftest import start_server, stop_server

    second = start_server(models_dir, tmp_path / "second.log")
    try:
        command = [
            sys.executable, "-m", "slmkit", "eval", "--endpoint", server.url, "--model", MODEL,
            "--compare", second.url, "--chunks", "1", "--max-ppl-increase", "0.001", "--json",
        ]  # fmt: skip
        done = subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=600)
    finally:
        stop_server(second)
    assert done.returncode == 0, done.stderr
    first, other = json.loads(done.stdout)
    assert first["perplexity"]["ppl"] == pytest.approx(other["perplexity"]["ppl"], rel=1e-4)
    assert first["ppl_vs_compare"] == pytest.approx(1.0, abs=1e-4) and second.url in other["model"]
