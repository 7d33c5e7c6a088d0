"""slm create from Modelfiles against a real server; blobs upload; observable effects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from tests.integration.conftest import MODEL, Server

QUESTION = {
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "stream": False,
    "options": {"temperature": 0, "num_predict": 20},
}


def chat(server: Server, model: str, **extra: object) -> dict[str, object]:
    r = httpx.post(f"{server.url}/api/chat", json={"model": model, **QUESTION, **extra}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_system_parameter_and_messages_change_generation(server: Server, tmp_path: Path) -> None:
    base = chat(server, MODEL)
    (tmp_path / "Modelfile").write_text(
        f"FROM {MODEL}\n"
        'SYSTEM """You are a pirate. Always answer like a pirate."""\n'
        "PARAMETER num_predict 5\n"
        "MESSAGE user What is the capital of Spain?\n"
        "MESSAGE assistant Arr, Madrid it be.\n"
    )
    server.cli("create", "pirate:1", "-f", str(tmp_path / "Modelfile"))
    pirate = httpx.post(
        f"{server.url}/api/chat",
        json={"model": "pirate:1", **{**QUESTION, "options": {"temperature": 0}}},
        timeout=60,
    ).json()
    assert pirate["eval_count"] == 5  # PARAMETER num_predict
    assert pirate["prompt_eval_count"] > base["prompt_eval_count"]  # SYSTEM + MESSAGE are in the prompt
    assert pirate["message"]["content"] != base["message"]["content"]
    modelfile = server.cli("show", "pirate:1", "--modelfile").stdout
    assert "You are a pirate" in modelfile and "PARAMETER num_predict 5" in modelfile
    assert 'MESSAGE assistant """Arr, Madrid it be."""' in modelfile
    server.cli("rm", "pirate:1")


def test_create_from_a_local_gguf_uploads_a_blob(server: Server, tmp_path: Path) -> None:
    gguf = server.store.get(MODEL).model_path
    local = tmp_path / "weights.gguf"
    local.write_bytes(gguf.read_bytes())
    (tmp_path / "Modelfile").write_text("FROM ./weights.gguf\nPARAMETER temperature 0\n")
    server.cli("create", "local:1", "-f", str(tmp_path / "Modelfile"))
    assert chat(server, "local:1")["message"]  # type: ignore[index]
    server.cli("rm", "local:1")


def test_blob_endpoints(server: Server) -> None:
    data = b"hello blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{server.url}/api/blobs/{digest}").status_code == 404
    wrong = httpx.post(f"{server.url}/api/blobs/{digest}", content=b"other bytes")
    assert wrong.status_code == 400 and "mismatch" in wrong.json()["error"]
    assert httpx.post(f"{server.url}/api/blobs/{digest}", content=data).status_code == 201
    assert httpx.head(f"{server.url}/api/blobs/{digest}").status_code == 200
    assert httpx.post(f"{server.url}/api/blobs/sha256:../../x", content=data).status_code in (400, 404)
    r = httpx.post(
        f"{server.url}/api/create", json={"model": "bad:1", "files": {"x.gguf": digest}, "stream": False}
    )
    assert r.status_code == 400 and "GGUF" in r.json()["error"]


def test_create_refusals(server: Server) -> None:
    for body, needle in [
        ({"model": "x:1", "from": MODEL, "adapters": {"a.gguf": "sha256:" + "0" * 64}}, "adapters"),
        ({"model": "x:1", "from": MODEL, "parameters": {"wibble": 1}}, "wibble"),
        ({"model": "x:1", "from": MODEL, "quantize": "q4_K_M"}, "quantize"),
        ({"model": "x:1"}, "from"),
    ]:
        r = httpx.post(f"{server.url}/api/create", json={**body, "stream": False}, timeout=30)
        assert r.status_code == 400 and needle in r.json()["error"], (body, r.text)
    r = httpx.post(f"{server.url}/api/create", json={"model": "x:1", "from": "nope:1", "stream": False})
    assert r.status_code == 404


def test_go_template_in_a_modelfile_drives_the_prompt(server: Server, tmp_path: Path) -> None:
    chatml = (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    )
    (tmp_path / "Modelfile").write_text(f'FROM {MODEL}\nTEMPLATE """{chatml}"""\n')
    server.cli("create", "gotmpl:1", "-f", str(tmp_path / "Modelfile"))

    def prompt_tokens(model: str) -> tuple[int, str]:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": model, "messages": QUESTION["messages"], "max_tokens": 8, "temperature": 0},
            timeout=60,
        ).json()
        return r["usage"]["prompt_tokens"], r["choices"][0]["message"]["content"]

    go_tokens, go_text = prompt_tokens("gotmpl:1")
    base_tokens, _ = prompt_tokens(MODEL)
    # SmolLM2's own template adds a default system prompt; this one does not.
    assert go_tokens < base_tokens and go_text
    assert "{{- range .Messages }}" in server.cli("show", "gotmpl:1", "--template").stdout
    server.cli("rm", "gotmpl:1")


def test_adapter_lora_changes_generation(server: Server, tmp_path: Path) -> None:
    from tests.ggufs import write_lora, write_tiny_gguf

    write_lora(tmp_path / "lora.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nADAPTER ./lora.gguf\n")
    server.cli("create", "lora:1", "-f", str(tmp_path / "Modelfile"))
    body = {
        "prompt": "The capital of France is",
        "raw": True,
        "stream": False,
        "options": {"temperature": 0, "num_predict": 12},
    }
    base = httpx.post(f"{server.url}/api/generate", json={"model": MODEL, **body}, timeout=60).json()
    tuned = httpx.post(f"{server.url}/api/generate", json={"model": "lora:1", **body}, timeout=60).json()
    assert tuned["response"] != base["response"]
    server.cli("rm", "lora:1")
    # a file that is not a LoRA adapter is refused
    write_tiny_gguf(tmp_path / "not-an-adapter.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nADAPTER ./not-an-adapter.gguf\n")
    result = server.cli("create", "bad:1", "-f", str(tmp_path / "Modelfile"), check=False)
    assert result.returncode == 1 and "not a LoRA adapter" in result.stderr


def test_a_reasoning_budget_on_the_real_model(server: Server, tmp_path: Path) -> None:
    """SmolLM2 made to think by its template (the generation prompt opens a <think> block):
    with a budget of 8 it thinks at most 8 tokens, then the close marker is forced and it
    answers; without one it is only counted."""
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n{% if enable_thinking %}<think>\n{% endif %}"
    )
    (tmp_path / "Modelfile").write_text(f'FROM {MODEL}\nTEMPLATE """{chatml}"""\n')
    server.cli("create", "thinks:1", "-f", str(tmp_path / "Modelfile"))
    try:
        question = "Explain step by step why the sky is blue."
        body = {"model": "thinks:1", "messages": [{"role": "user", "content": question}],
                "max_tokens": 64, "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": True}}  # fmt: skip
        r = httpx.post(
            f"{server.url}/v1/chat/completions", json={**body, "thinking_token_budget": 8}, timeout=120
        )
        assert r.status_code == 200, r.text
        out = r.json()
        message, details = out["choices"][0]["message"], out["usage"]["completion_tokens_details"]
        assert 0 < details["reasoning_tokens"] <= 8 and message["reasoning_content"]
        assert message["content"].strip()  # a final answer after the forced close
        free = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
        assert free["usage"]["completion_tokens_details"]["reasoning_tokens"] > 8  # unbounded: it thinks on
    finally:
        server.cli("rm", "thinks:1")
