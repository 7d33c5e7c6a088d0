"""The ONNX Runtime backend with real weights: SmolLM2-135M (the shipped GGUF, dequantized to a
Hugging Face folder) converted by `slm convert --to onnx --precision int4`, imported into the
session server's store next to the GGUF default, and used through the official openai and
ollama clients like any other model.

The conversion is cached between runs (~/.cache/slmkit-tests, keyed by the builder's version
and the source's digest): ~45 s on a cold cache, nothing after."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.integration.conftest import Server

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("transformers")
pytestmark = pytest.mark.integration
MODEL = "smollm2-onnx:int4"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slmkit-tests"


@pytest.fixture(scope="session")
def onnx_folder(server: Server, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M as an ONNX int4 folder, made by `slm convert --to onnx` (cached)."""
    from tests.hf_export import export_hf

    key = f"smollm2-135m-onnx-int4-hs-genai{version('onnxruntime-genai')}-{smollm2_gguf.stat().st_size}"
    cached = _cache_root() / key
    if not (cached / "genai_config.json").is_file():
        work = tmp_path_factory.mktemp("onnx-convert")
        export_hf(smollm2_gguf, work / "hf")
        out = work / "out"
        done = server.cli(
            "convert", str(work / "hf"), "--to", "onnx", "--precision", "int4", "--out", str(out), "--json",
            timeout=600,
        )  # fmt: skip
        assert json.loads(done.stdout)["precision"] == "int4"
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(out, cached.with_name(cached.name + ".partial"), dirs_exist_ok=True)
        os.replace(cached.with_name(cached.name + ".partial"), cached)
    return cached


@pytest.fixture(scope="session")
def onnx_model(server: Server, onnx_folder: Path) -> str:
    server.cli("import", MODEL, str(onnx_folder))
    return MODEL


@pytest.fixture
def olla(server: Server) -> Iterator[ollama.Client]:
    c = ollama.Client(host=server.url)
    yield c
    c._client.close()


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300) as c:
        yield c


def test_stored_as_a_folder_model_and_shown_as_onnx(
    server: Server, onnx_model: str, olla: ollama.Client
) -> None:
    record = server.store.get(onnx_model)
    assert record.config.model_format == "onnx" and record.config.file_type == "int4"
    assert {"genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"} <= set(record.files)
    shown = olla.show(onnx_model)
    assert shown.details is not None and shown.details.format == "onnx"
    assert shown.capabilities == ["completion", "embedding"]  # its template has no tools; no FIM tokens


def test_openai_chat_greedy_is_reproducible_and_counts_usage(client: openai.OpenAI, onnx_model: str) -> None:
    answers = [
        client.chat.completions.create(model=onnx_model, messages=QUESTION, temperature=0, max_tokens=24)  # type: ignore[arg-type]
        for _ in range(2)
    ]
    first = answers[0]
    assert "Paris" in (first.choices[0].message.content or "")
    assert first.choices[0].message.content == answers[1].choices[0].message.content
    assert first.usage is not None and first.usage.prompt_tokens > 10
    assert first.usage.completion_tokens == 24 and first.choices[0].finish_reason == "length"


def test_openai_stream_matches_the_whole_answer_and_stops(client: openai.OpenAI, onnx_model: str) -> None:
    whole = client.chat.completions.create(model=onnx_model, messages=QUESTION, temperature=0, max_tokens=24)  # type: ignore[arg-type]
    text = whole.choices[0].message.content or ""
    stream = client.chat.completions.create(
        model=onnx_model,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == text and len([p for p in pieces if p]) > 3
    stop = "Paris"
    stopped = client.chat.completions.create(
        model=onnx_model,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stop=[stop],  # type: ignore[arg-type]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]


def test_seeded_sampling_repeats_and_logprobs_are_reported(client: openai.OpenAI, onnx_model: str) -> None:
    def ask() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=onnx_model,
            messages=QUESTION,  # type: ignore[arg-type]
            temperature=0.9,
            seed=7,
            max_tokens=16,
            logprobs=True,
            top_logprobs=2,
        )

    a, b = ask(), ask()
    assert a.choices[0].message.content == b.choices[0].message.content
    content = a.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == a.usage.completion_tokens  # type: ignore[union-attr]
    assert all(x.logprob <= 0 and len(x.top_logprobs) == 2 for x in content)


def test_ollama_client_chat_and_generate(olla: ollama.Client, onnx_model: str) -> None:
    c = olla
    answer = c.chat(model=onnx_model, messages=QUESTION, options={"temperature": 0, "num_predict": 16})
    assert "Paris" in answer.message.content and answer.eval_count == 16
    options = {"temperature": 0, "num_predict": 8}
    chunks = list(c.generate(model=onnx_model, prompt="The capital of", stream=True, options=options))
    assert chunks[-1].done and chunks[-1].eval_count == 8
    assert "".join(ch.response for ch in chunks).strip()


def test_four_concurrent_streams_are_decoded_together(client: openai.OpenAI, onnx_model: str) -> None:
    questions = [
        "What is the capital of France?", "Count from one to five.", "Name three colours.", "Say hello."
    ]  # fmt: skip
    solo = {
        q: client.chat.completions.create(
            model=onnx_model, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=40
        )
        .choices[0]
        .message.content
        or ""
        for q in questions
    }
    events: list[tuple[str, str]] = []  # (question, "first" | "done"), in arrival order
    answers: dict[str, str] = {}
    lock, start = threading.Lock(), threading.Barrier(len(questions))

    def stream(q: str) -> None:
        start.wait()
        parts: list[str] = []
        asked = [{"role": "user", "content": q}]
        for chunk in client.chat.completions.create(
            model=onnx_model,
            messages=asked,
            temperature=0,
            max_tokens=40,
            stream=True,  # type: ignore[arg-type]
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                with lock:
                    if not parts:
                        events.append((q, "first"))
                parts.append(chunk.choices[0].delta.content)
        with lock:
            events.append((q, "done"))
            answers[q] = "".join(parts)

    threads = [threading.Thread(target=stream, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(answers) == set(questions)
    first_done = next(i for i, (_, kind) in enumerate(events) if kind == "done")
    assert sum(kind == "first" for _, kind in events[:first_done]) == len(questions)  # all ran at once
    # each got its own answer: ONNX Runtime's int4 MatMul rounds one row (solo decoding)
    # differently from several (batched), so a near-tie may go another way after the first word
    for q in questions:
        assert answers[q].split()[0] == solo[q].split()[0], (q, answers[q], solo[q])
    assert len(set(answers.values())) == len(questions)


def test_structured_output_and_required_tool_calls(
    client: openai.OpenAI, olla: ollama.Client, onnx_model: str
) -> None:
    """JSON schemas, JSON mode and required tool calls through the grammar's mask (llguidance)."""
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "country": {"type": "string", "maxLength": 24},
        },
        "required": ["city", "country"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}
    asked = [{"role": "user", "content": "Name a city and its country."}]
    r = client.chat.completions.create(
        model=onnx_model,
        messages=asked,
        response_format=fmt,
        temperature=0,
        max_tokens=60,  # type: ignore[arg-type]
    )
    place = json.loads(r.choices[0].message.content or "")
    assert set(place) == {"city", "country"} and r.choices[0].finish_reason == "stop"
    sampled = olla.chat(
        model=onnx_model, messages=asked, format="json", options={"seed": 3, "num_predict": 60}
    )
    assert isinstance(json.loads(sampled.message.content or ""), dict)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                           "required": ["city"]},
        },
    }  # fmt: skip
    called = client.chat.completions.create(
        model=onnx_model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
        max_tokens=80,
    )
    calls = called.choices[0].message.tool_calls or []
    assert calls and called.choices[0].finish_reason == "tool_calls"
    assert calls[0].function.name == "get_weather" and "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]


def test_embeddings_pool_the_graphs_hidden_states(
    server: Server, client: openai.OpenAI, olla: ollama.Client, onnx_model: str
) -> None:
    """`slm convert --to onnx` keeps the final hidden states: embeddings through both clients,
    close to the GGUF build's (same model, another runtime and 4-bit scheme)."""
    import numpy as np

    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly tax filing deadlines."]
    r = client.embeddings.create(model=onnx_model, input=texts)
    onnx_vectors = np.array([d.embedding for d in r.data])
    assert onnx_vectors.shape == (3, 576) and np.allclose(
        np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-4
    )
    assert r.usage.prompt_tokens > 10
    similar, unrelated = onnx_vectors[0] @ onnx_vectors[1], onnx_vectors[0] @ onnx_vectors[2]
    gguf = client.embeddings.create(model="smollm2:135m", input=texts)
    gguf_vectors = np.array([d.embedding for d in gguf.data])
    across = [float(a @ b) for a, b in zip(onnx_vectors, gguf_vectors, strict=True)]
    print(f"cos similar {similar:.3f} unrelated {unrelated:.3f}; ONNX vs GGUF {across}")
    assert similar > unrelated and min(across) > 0.85  # measured 0.93-0.97
    native = olla.embed(model=onnx_model, input=texts[0])
    assert np.allclose(native.embeddings[0], onnx_vectors[0], atol=1e-4)
    shown = httpx.post(f"{server.url}/api/show", json={"model": onnx_model}, timeout=60).json()
    assert "embedding" in shown["capabilities"]


def test_unsupported_features_are_400s_naming_them(server: Server, onnx_model: str) -> None:
    r = httpx.post(
        f"{server.url}/api/generate",
        json={"model": onnx_model, "prompt": "def f(", "suffix": "return 1", "stream": False},
        timeout=120,
    )
    assert r.status_code == 400 and "suffix" in r.json()["error"]


def test_broken_folders_are_refused_and_a_bad_graph_fails_alone(
    server: Server, onnx_folder: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-graph"
    shutil.copytree(onnx_folder, missing)
    (missing / "model.onnx").unlink()
    done = server.cli("import", "broken:missing", str(missing), check=False)
    assert done.returncode != 0 and "decoder graph 'model.onnx' is missing" in done.stderr
    assert "Traceback" not in done.stderr and not server.store.exists("broken:missing")

    garbage = tmp_path / "garbage-graph"
    shutil.copytree(onnx_folder, garbage)
    (garbage / "model.onnx").write_bytes(b"\x08\x07not an onnx graph" * 100)
    server.cli("import", "broken:graph", str(garbage))
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "broken:graph", "messages": QUESTION, "max_tokens": 4},
        timeout=120,
    )
    assert r.status_code >= 500 and "ONNX Runtime could not load the model" in r.json()["error"]["message"]
    assert str(tmp_path) not in r.text and "/blobs/" not in r.text
    ok = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "smollm2:135m", "messages": QUESTION, "max_tokens": 4},
        timeout=120,
    )
    assert ok.status_code == 200  # the GGUF default serves on
    server.cli("rm", "broken:graph")


def test_pulled_from_a_hub_onnx_repo_and_served(onnx_folder: Path, tmp_path: Path) -> None:
    """`slm pull hf.co/ORG/REPO` of a Microsoft-style ONNX repository (variant folders) through
    a server, from a fake Hub speaking the real protocol; then a chat with the pulled model."""
    from tests.fakes.hub import FakeHub
    from tests.integration.conftest import start_server, stop_server

    variant = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"
    files = {f"{variant}/{p.name}": p.read_bytes() for p in onnx_folder.iterdir() if p.is_file()}
    files |= {"README.md": b"# SmolLM2 ONNX", "cuda/cuda-fp16/genai_config.json": b"{}"}
    hub = FakeHub(files={"microsoft/SmolLM2-135M-onnx": files})
    hub.start()
    server = start_server(
        tmp_path / "models", tmp_path / "server.log", HF_ENDPOINT=hub.url, SLM_PULL_PRIVATE="1"
    )
    try:
        server.cli("pull", "hf.co/microsoft/SmolLM2-135M-onnx", timeout=300)
        name = "hf.co/microsoft/SmolLM2-135M-onnx:cpu-int4-rtn-block-32-acc-level-4"
        assert server.store.get(name).config.model_format == "onnx"
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300) as c:
            answer = c.chat.completions.create(model=name, messages=QUESTION, temperature=0, max_tokens=12)  # type: ignore[arg-type]
        assert "Paris" in (answer.choices[0].message.content or "")
        assert not [p for _, p, _ in hub.requests if "cuda" in p and "/resolve/" in p]
    finally:
        stop_server(server)
        hub.stop()


def test_a_modelfile_from_an_onnx_model_keeps_its_files(
    server: Server, onnx_model: str, client: openai.OpenAI, tmp_path: Path
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {onnx_model}\nPARAMETER num_predict 5\nSYSTEM Answer in French.\n")
    server.cli("create", "smollm2-onnx:short", "-f", str(modelfile))
    made, base = server.store.get("smollm2-onnx:short"), server.store.get(onnx_model)
    assert (
        made.files == base.files and made.system == "Answer in French." and made.config.model_format == "onnx"
    )
    answer = client.chat.completions.create(model="smollm2-onnx:short", messages=QUESTION, temperature=0)  # type: ignore[arg-type]
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    server.cli("rm", "smollm2-onnx:short")
    assert server.store.get(onnx_model).files == base.files  # the shared blobs stay


def test_eval_and_fit_read_an_onnx_model(server: Server, onnx_model: str) -> None:
    scored = json.loads(server.cli("eval", onnx_model, "--chunks", "1", "--ctx", "128", "--json").stdout)
    assert scored["format"] == "onnx" and scored["type"] == "int4"
    assert 1 < scored["perplexity"]["ppl"] < 1000 and scored["tok_s"] > 0
    fit = json.loads(server.cli("fit", onnx_model, "--ctx", "2048", "--json").stdout)
    assert fit["format"] == "onnx" and fit["kv_type"] == "f32"
    # 30 layers x 3 KV heads x 64 x (K and V) x 4 bytes per position
    assert fit["bytes"]["kv_cache"] == 30 * 3 * 64 * 2 * 4 * 2048


def test_the_same_answer_through_every_api_and_slmkit_load(
    server: Server, onnx_model: str, tmp_path: Path
) -> None:
    from slmkit.config import Config
    from slmkit.local import LocalModel
    from tests.integration.test_profile import QUESTION as ASKED
    from tests.integration.test_profile import ask_all

    (tmp_path / "Modelfile").write_text(
        f"FROM {onnx_model}\nPARAMETER temperature 0\nPARAMETER num_predict 12\n"
    )
    server.cli("create", "smollm2-onnx:every", "-f", str(tmp_path / "Modelfile"))
    try:
        seen = ask_all(server, "smollm2-onnx:every", anthropic_max=12)
        assert {s.tokens for s in seen.values()} == {12}, seen
        assert len({s.text for s in seen.values()}) == 1, seen
        with LocalModel.open(
            "smollm2-onnx:every", config=Config.from_env(server.env), store=server.store
        ) as m:
            local = m.chat([{"role": "user", "content": ASKED}])
        assert local.text == seen["openai"].text and local.completion_tokens == 12
    finally:
        server.cli("rm", "smollm2-onnx:every")


def test_strange_requests_beside_a_stream_leave_it_whole(client: openai.OpenAI, onnx_model: str) -> None:
    """While one user streams, others send an out-of-vocabulary logit bias, a prompt over the
    window, a JSON schema the grammar cannot take (a lookahead), a valid one, an embedding
    input over the limit, four valid 1000-token ones, and a valid long prompt that makes every
    KV row grow mid-stream."""
    asked = [{"role": "user", "content": "Count from one to twenty."}]
    solo = client.chat.completions.create(model=onnx_model, messages=asked, temperature=0, max_tokens=48)  # type: ignore[arg-type]
    parts: list[str] = []

    def victim() -> None:
        stream = client.chat.completions.create(
            model=onnx_model,
            messages=asked,
            temperature=0,
            max_tokens=48,
            stream=True,  # type: ignore[arg-type]
        )
        parts.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    thread = threading.Thread(target=victim)
    thread.start()
    bad = [
        {"logit_bias": {"1000000000": 5}},
        {"messages": [{"role": "user", "content": "word " * 20000}]},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^(?=a)b$"}},
            }
        },
    ]
    for extra in bad:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                **{"model": onnx_model, "messages": asked, "max_tokens": 4, **extra}  # type: ignore[arg-type]
            )
    shaped = client.chat.completions.create(
        model=onnx_model,
        messages=asked,
        response_format={"type": "json_object"},
        max_tokens=24,  # type: ignore[arg-type]
    )
    assert (shaped.choices[0].message.content or "").startswith("{")
    with pytest.raises(openai.BadRequestError, match="embedding limit"):  # over 1024 tokens
        client.embeddings.create(model=onnx_model, input=["apple " * 2000])
    many = client.embeddings.create(model=onnx_model, input=["pear " * 1000] * 4)  # each on its own KV rows
    assert len(many.data) == 4 and many.usage.prompt_tokens > 4000
    long = client.chat.completions.create(
        model=onnx_model,
        messages=[{"role": "user", "content": "apple " * 1500}],
        max_tokens=4,  # type: ignore[arg-type]
    )
    assert long.usage is not None and long.usage.prompt_tokens > 1000
    thread.join(timeout=300)
    text = "".join(parts)
    assert text.split()[:2] == (solo.choices[0].message.content or "").split()[:2] and len(text) > 20
