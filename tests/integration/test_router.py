"""Three slmkit replicas behind vLLM's router (vllm-router, its real binary) sharing one
store and a real Redis (redis-server), on loopback.

The router's cache-aware policy renders each request on the workers (the render endpoints)
and sends a conversation back to the replica that holds its prefix: each later turn finds
most of its prompt in that replica's prompt cache. Streaming and completions pass through.
A response stored on one replica is read, continued and deleted on the others; a batch job
whose replica is killed is finished by another; a rolling restart under load loses nothing
(SLM_DRAIN_DELAY, and the router polling /ready).
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.integration.conftest import Server, free_port, start_server, stop_server, third_party_server
from tests.redis_server import redis_server

pytestmark = pytest.mark.integration
ROUTER = Path(sys.executable).parent / "vllm-router"
MODEL = "smollm2:135m"


class Cluster:
    """The replicas (one shared store, read-only for models; one thread, two slots each)
    and how to start one again on its port."""

    def __init__(self, models: Path, logs: Path, redis_url: str) -> None:
        self.models, self.logs = models, logs
        # a long drain delay, ended by a second SIGTERM once the router has seen /ready fail:
        # a restart waits for that event, never for a guess at how long it takes
        self.env = {"SLM_NUM_THREADS": "1", "SLM_NUM_PARALLEL": "2", "SLM_DRAIN_DELAY": "120s",
                    "SLM_RESPONSES_STORE": redis_url, "SLM_BATCH_LEASES": redis_url}  # fmt: skip
        self.servers: list[Server] = []
        self.router = ""

    def start(self, i: int, port: int = 0) -> Server:
        log = self.logs / f"r{i}-{time.monotonic_ns()}.log"
        server = start_server(self.models, log, SLM_HOST=f"127.0.0.1:{port}", **self.env)
        if i < len(self.servers):
            self.servers[i] = server
        else:
            self.servers.append(server)
        return server

    def healthy(self, server: Server) -> bool:
        """Whether the router counts this replica healthy (its /workers)."""
        workers = httpx.get(f"{self.router}/workers", timeout=10).json()["workers"]
        return any(w["url"] == server.url and w["is_healthy"] for w in workers)

    def wait_health(self, server: Server, healthy: bool) -> None:
        wait_for(lambda: self.healthy(server) == healthy, 120, f"router health of {server.url} != {healthy}")

    @staticmethod
    def stop(server: Server) -> None:
        """SIGTERM twice: the second ends the drain delay; requests in flight still finish."""
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            server.process.send_signal(signal.SIGTERM)
        stop_server(server)


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # polling for an event, within the deadline


@pytest.fixture(scope="module")
def cluster(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    with redis_server(tmp / "redis") as url:
        c = Cluster(models_dir, tmp, url)
        try:
            for i in range(3):
                c.start(i)
            yield c
        finally:
            for server in c.servers:
                c.stop(server)


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> list[Server]:
    return cluster.servers


@pytest.fixture(scope="module")
def router(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ROUTER.exists():
        pytest.skip("vllm-router is not installed (make test-setup installs it)")
    urls = [s.url for s in cluster.servers]
    log = tmp_path_factory.mktemp("router") / "router.log"

    def argv(port: int) -> list[str]:
        return [str(ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", "cache_aware",
                "--prometheus-port", str(free_port()),
                "--health-check-endpoint", "/ready", "--health-check-interval-secs", "1",
                "--health-failure-threshold", "1", "--health-success-threshold", "1",
                "--worker-urls", *urls]  # fmt: skip

    with third_party_server(argv, "/health", log) as url:
        cluster.router = url
        yield url


def test_conversations_keep_their_prefix_cache_behind_the_cache_aware_router(router: str) -> None:
    client = openai.OpenAI(base_url=f"{router}/v1", api_key="unused", timeout=120, max_retries=0)
    # two users with long contexts. Idle, the router sends new conversations to its first worker
    # (its load-based fallback): a replica's prompt cache holds one prefix per slot (two here)
    conversations = [
        [{"role": "system", "content": f"{topic.capitalize()} is the only subject here. " * 10}]
        for topic in ("sailing boats", "baking bread")
    ]
    hits: list[tuple[int, int, int]] = []  # (turn, prompt tokens, cached tokens)
    for turn in range(3):
        for messages in conversations:  # interleaved, as users would be
            messages.append({"role": "user", "content": f"Turn {turn}: name a colour."})
            reply = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=8, temperature=0
            )
            usage = reply.usage
            assert usage is not None and usage.prompt_tokens_details is not None
            hits.append((turn, usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0))
            messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    later = [(prompt, cached) for turn, prompt, cached in hits if turn > 0]
    assert all(cached >= prompt // 2 for prompt, cached in later), hits  # the prefix was there
    streamed = client.chat.completions.create(
        model=MODEL, messages=conversations[0][:2], max_tokens=6, stream=True, temperature=0
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    completion = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=4)
    assert completion.choices[0].text and completion.usage is not None
    client.close()


def test_a_response_made_on_one_replica_is_read_continued_and_deleted_on_others(
    replicas: list[Server],
) -> None:
    a, b, c = (openai.OpenAI(base_url=f"{r.url}/v1", api_key="unused", max_retries=0) for r in replicas)
    first = a.responses.create(model=MODEL, input="My name is Ada. Say hello.", max_output_tokens=8)
    assert b.responses.retrieve(first.id).id == first.id
    second = b.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id, max_output_tokens=8
    )
    assert second.previous_response_id == first.id and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]  # the history came along
    c.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(first.id)
    assert c.responses.retrieve(second.id).id == second.id  # its own copy of the conversation


def test_a_background_response_is_followed_on_another_replica(replicas: list[Server]) -> None:
    a, b = (openai.OpenAI(base_url=f"{r.url}/v1", api_key="unused", max_retries=0) for r in replicas[:2])
    made = a.responses.create(model=MODEL, input="Name three colours.", background=True, max_output_tokens=16)
    events = list(b.responses.retrieve(made.id, stream=True, starting_after=0))  # on b, until the end
    assert events[0].sequence_number == 1 and events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == b.responses.retrieve(made.id).output_text == a.responses.retrieve(made.id).output_text


def counted(server: Server) -> float:
    """Batch lines this replica answered (slm_batch_requests_total)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    lines = [ln for ln in text.splitlines() if ln.startswith("slm_batch_requests_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_a_batch_job_whose_replica_is_killed_is_finished_by_another(cluster: Cluster) -> None:
    servers = cluster.servers
    lines = [
        json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "max_tokens": 24, "temperature": 0,
                             "messages": [{"role": "user", "content": f"Count to {i + 3}."}]}})
        for i in range(60)
    ]  # fmt: skip
    client = openai.OpenAI(base_url=f"{servers[0].url}/v1", api_key="unused", max_retries=0)
    upload = client.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    job = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(lambda: any(counted(s) > 0 for s in servers), 300, "no replica took the job")
    (index,) = [i for i, s in enumerate(servers) if counted(s) > 0]  # the lease holder, alone
    holder = servers[index]
    children = psutil.Process(holder.process.pid).children(recursive=True)
    holder.process.send_signal(signal.SIGKILL)  # no chance to give the lease back
    holder.process.wait()
    psutil.wait_procs(children, timeout=30)  # its worker follows it (the pipe closes)
    other = next(s for s in servers if s is not holder)
    reader = openai.OpenAI(base_url=f"{other.url}/v1", api_key="unused", max_retries=0)
    wait_for(lambda: reader.batches.retrieve(job.id).status == "completed", 400, "nobody finished the job")
    done = reader.batches.retrieve(job.id)
    assert done.request_counts is not None and done.request_counts.completed == 60
    assert done.output_file_id is not None
    out = [json.loads(x) for x in reader.files.content(done.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in out) == sorted(f"q{i}" for i in range(60))  # each once
    assert sum(counted(s) for s in servers if s is not holder) > 0  # taken over, not done before
    restarted = cluster.start(index, port=int(holder.url.rsplit(":", 1)[1]))  # back on its port
    if cluster.router:
        cluster.wait_health(restarted, True)


def test_a_rolling_restart_under_load_loses_no_request(cluster: Cluster, router: str) -> None:
    done = threading.Event()
    answered: list[int] = []
    failed: list[str] = []

    def client(i: int) -> None:
        while not done.is_set():
            body = {"model": MODEL, "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Client {i}: one word."}]}  # fmt: skip
            try:
                r = httpx.post(f"{router}/v1/chat/completions", json=body, timeout=120)
                if r.status_code == 200:
                    answered.append(r.status_code)
                else:
                    failed.append(f"{r.status_code} {r.text[:80]}")
            except httpx.HTTPError as exc:
                failed.append(type(exc).__name__)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for i, server in enumerate(list(cluster.servers)):
            before = len(answered)
            wait_for(lambda before=before: len(answered) > before, 120, "the load never ran")  # type: ignore[misc]
            cluster.wait_health(server, True)
            server.process.send_signal(signal.SIGTERM)  # /ready: 503 at once; work is still taken
            cluster.wait_health(server, False)  # the router has stopped sending to it
            server.process.send_signal(signal.SIGTERM)  # so the drain may begin
            assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
            restarted = cluster.start(i, port=int(server.url.rsplit(":", 1)[1]))
            cluster.wait_health(restarted, True)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not failed, f"{len(failed)} of {len(failed) + len(answered)} failed: {failed[:5]}"
    assert len(answered) >= 3
