"""SLM_KV_POOL with the real model: more slots than the pool holds at full length, answers that
outgrow it preempted (their cells freed, resumed by re-prefill), never failed. In this process
(each slot's KV cells checked after every step against the scheduler) and through a real
server with the official openai client and /metrics."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import openai

from slmkit.answer.profile import load_profile, load_spec
from slmkit.config import Config
from slmkit.engine.backends import open_backend
from slmkit.local import LocalModel
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams
from slmkit.store import ModelStore
from tests.integration.conftest import MODEL, start_server, stop_server

TOPICS = ("a lighthouse", "the sea", "a mountain village", "a clockmaker")


def story(i: int, max_tokens: int) -> EngineRequest:
    messages = ({"role": "user", "content": f"Tell me a long story about {TOPICS[i % len(TOPICS)]}."},)
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    return EngineRequest(f"s{i}", sampling, messages=messages)


def test_answers_that_outgrow_the_pool_are_preempted_and_all_complete(models_dir: Path) -> None:
    config = Config.from_env(models=models_dir, num_threads=1, kv_pool=512)
    profile = load_profile(ModelStore(models_dir).get(MODEL))
    with LocalModel(profile, open_backend(load_spec(profile, config, n_parallel=4)), config) as model:
        core, backend = model.core, model.backend
        assert backend.info.kv_cells == 512 and core.scheduler.pool_capacity == 512
        for i in range(4):  # 4 x (~45 prompt + 120 answer) cells > 512
            core.add_request(story(i, 120))
        done: dict[str, int] = {}
        while core.has_work:
            for request_id, event in core.step():
                assert not isinstance(event, Failed), event
                if isinstance(event, Finished):
                    assert event.reason == "length"
                    done[request_id] = event.stats.completion_tokens
            held = 0
            for slot in core.scheduler.slots:
                assert backend.kv_span(slot.index) == ((0, len(slot.tokens) - 1) if slot.tokens else (-1, -1))
                held += len(slot.tokens)
            assert held <= 512
        assert done == {f"s{i}": 120 for i in range(4)}
        assert core.scheduler.preemptions > 0


def test_a_server_with_a_small_pool_answers_every_client(tmp_path: Path, models_dir: Path) -> None:
    server = start_server(
        models_dir, tmp_path / "server.log", SLM_NUM_PARALLEL="6", SLM_KV_POOL="768", SLM_NUM_THREADS="1"
    )
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)

        def ask(i: int) -> int:
            answer = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Tell me a long story about {TOPICS[i % 4]}."}],
                max_tokens=150,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            assert answer.usage is not None
            return answer.usage.completion_tokens

        with concurrent.futures.ThreadPoolExecutor(6) as pool:  # 6 x ~195 cells > 768
            assert list(pool.map(ask, range(6))) == [150] * 6
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        (line,) = [
            x for x in metrics.splitlines() if x.startswith(f'slm_preemptions_total{{model="{MODEL}"}}')
        ]
        assert float(line.split()[-1]) > 0
        (usage,) = [
            x for x in metrics.splitlines() if x.startswith(f'slm_kv_cache_usage_ratio{{model="{MODEL}"}}')
        ]
        assert 0 < float(usage.split()[-1]) <= 1
    finally:
        stop_server(server)
