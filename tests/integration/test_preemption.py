"""Interactive requests never wait behind batch work, with the real model: an interactive
request takes a background sequence's slot, and the background answer resumes by prefilling
what it held and ends as it would have, never failed. In this process (one slot, the KV
cells checked after every step) and through a real server's batch job."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai

from slmkit.config import Config
from slmkit.local import LocalModel
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams, TextDelta
from tests.integration.conftest import MODEL, start_server, stop_server, wait_until


def background(max_tokens: int) -> EngineRequest:
    messages = ({"role": "user", "content": "Tell me a long story about a lighthouse keeper."},)
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    return EngineRequest("bg", sampling, messages=messages, priority=1)


def test_a_preempted_answer_resumes_where_it_was_and_ends_as_it_would_have(models_dir: Path) -> None:
    config = Config.from_env(models=models_dir, num_threads=1)
    with LocalModel.open("smollm2:135m", config=config) as model:
        core, backend = model.core, model.backend  # one slot, number 0
        alone = "".join(e.text for e in core.stream(background(60)) if isinstance(e, TextDelta))

        core.add_request(background(60))
        texts: dict[str, str] = {"bg": "", "chat": ""}
        order: list[str] = []
        steps = 0
        while core.has_work:
            if steps == 20:  # the background answer is under way
                chat = ({"role": "user", "content": "Say hi."},)
                core.add_request(
                    EngineRequest("chat", SamplingParams(temperature=0, max_tokens=8), messages=chat)
                )
            for request_id, event in core.step():
                assert not isinstance(event, Failed), event
                if isinstance(event, TextDelta):
                    texts[request_id] += event.text
                elif isinstance(event, Finished):
                    order.append(request_id)
                    if request_id == "bg":
                        assert event.reason == "length" and event.stats.completion_tokens == 60
            steps += 1
            slot = core.scheduler.slots[0]
            assert backend.kv_span(0) == ((0, len(slot.tokens) - 1) if slot.tokens else (-1, -1))
        assert order == ["chat", "bg"]  # the chat did not wait for the background answer
        assert texts["chat"]
        assert texts["bg"] == alone  # the same greedy answer, though its slot was taken mid-way


def test_a_chat_is_answered_while_the_batch_line_holding_the_only_slot_still_runs(
    tmp_path: Path, models_dir: Path
) -> None:
    server = start_server(models_dir, tmp_path / "server.log", SLM_NUM_PARALLEL="1")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 1500,
            "temperature": 0,
            "ignore_eos": True,
        }
        line = {"custom_id": "long", "method": "POST", "url": "/v1/chat/completions", "body": body}
        upload = client.files.create(file=("in.jsonl", json.dumps(line).encode() + b"\n"), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

        def running() -> bool:
            text = httpx.get(f"{server.url}/metrics/load", timeout=10).text
            return f'vllm:num_requests_running{{model_name="{MODEL}"}} 1.0' in text

        wait_until(running, 300, "the batch line never started")
        chat = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
        )
        assert chat.choices[0].message.content
        assert client.batches.retrieve(batch.id).status == "in_progress"  # the line still runs

        def finished() -> object:
            job = client.batches.retrieve(batch.id)
            return job if job.status in ("completed", "failed", "cancelled", "expired") else None

        job = wait_until(finished, 600, "the batch never finished", every=0.5)
        assert job.status == "completed" and job.output_file_id
        (answer,) = [json.loads(x) for x in client.files.content(job.output_file_id).content.splitlines()]
        assert answer["response"]["status_code"] == 200
        assert answer["response"]["body"]["usage"]["completion_tokens"] == 1500  # preempted, not failed
    finally:
        stop_server(server)
