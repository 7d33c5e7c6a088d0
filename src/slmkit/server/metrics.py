"""Prometheus metrics, all named ``slm_*``, with a ``model`` label where it applies.

Counters and histograms are fed from each finished request's RequestContext; gauges
(loaded models, memory, running/waiting requests, KV usage) are read from the model
manager at scrape time. Labels only ever carry route templates, status codes, model
names and fixed reasons: never prompt text, keys or user ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slmkit.models.manager import ModelManager
from slmkit.server.context import RequestContext
from slmkit.server.state import KeptResponses

LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
REASONS = (
    "queue_full",
    "rate_limited",
    "unauthorized",
    "forbidden",
    "too_large",
    "too_slow",
    "bad_host",
    "bad_origin",
    "draining",
)


class _ModelState(Collector):
    def __init__(self, manager: ModelManager, responses: KeptResponses) -> None:
        self.manager = manager
        self.responses = responses

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("slm_model_loaded", "1 for each loaded model", labels=["model"])
        memory = GaugeMetricFamily(
            "slm_model_memory_bytes", "memory counted for a loaded model", labels=["model"]
        )
        load = GaugeMetricFamily(
            "slm_model_load_seconds", "how long the model took to load", labels=["model"]
        )
        running = GaugeMetricFamily(
            "slm_requests_running",
            "requests in the worker (generations and embedding jobs), up to its slots",
            labels=["model"],
        )
        waiting = GaugeMetricFamily("slm_requests_waiting", "requests waiting for a slot", labels=["model"])
        kv = GaugeMetricFamily(
            "slm_kv_cache_usage_ratio", "KV cells holding tokens / all KV cells", labels=["model"]
        )
        for m in self.manager.loaded():
            now = load_of(m)
            loaded.add_metric([m.name], 1)
            memory.add_metric([m.name], m.memory)
            load.add_metric([m.name], m.load_seconds)
            running.add_metric([m.name], now["vllm:num_requests_running"])
            waiting.add_metric([m.name], now["vllm:num_requests_waiting"])
            kv.add_metric([m.name], now["vllm:kv_cache_usage_perc"])
        preempted = CounterMetricFamily(
            "slm_preemptions",
            "sequences that gave their slot or KV cells to another and resumed by re-prefill "
            "(vllm:num_preemptions)",
            labels=["model"],
        )
        for m in self.manager.loaded():
            preempted.add_metric([m.name], m.worker.preemptions)
        restarts = CounterMetricFamily("slm_worker_restarts", "model workers that died", labels=["model"])
        counts = {m.name: 0 for m in self.manager.loaded()} | self.manager.restarts
        for name, count in sorted(counts.items()):  # 0 from the load on: increase() sees the first
            restarts.add_metric([name], count)
        budget = GaugeMetricFamily("slm_memory_budget_bytes", "memory the models may use (SLM_MAX_MEMORY)")
        budget.add_metric([], self.manager.budget)
        queue = GaugeMetricFamily("slm_queue_limit", "requests that may wait per model (SLM_MAX_QUEUE)")
        queue.add_metric([], self.manager.config.max_queue)
        stored = GaugeMetricFamily("slm_responses_stored", "Responses API responses kept (store: true)")
        stored.add_metric([], len(self.responses))
        stored_bytes = GaugeMetricFamily(
            "slm_responses_stored_bytes", "memory charged to stored responses (SLM_RESPONSES_MEMORY)"
        )
        stored_bytes.add_metric([], self.responses.total_bytes)
        yield from (
            loaded,
            memory,
            load,
            running,
            waiting,
            kv,
            preempted,
            restarts,
            budget,
            queue,
            stored,
            stored_bytes,
        )


def load_of(m: Any) -> dict[str, float]:
    """A loaded model's load now, under vLLM's names."""
    slots = m.info.n_parallel
    inflight = m.worker.in_flight
    return {
        "vllm:num_requests_running": min(inflight, slots),
        "vllm:num_requests_waiting": max(0, inflight - slots),
        "vllm:kv_cache_usage_perc": m.worker.kv_tokens / max(1, m.info.kv_cells or slots * m.info.n_ctx),
    }


class Load(Collector):
    """The three gauges the Gateway API Inference Extension's endpoint picker (and llm-d,
    KServe) read from a model server, under vLLM's names: TotalQueuedRequests,
    TotalRunningRequests, KVCacheUtilization (docs/deploy.md). Part of /metrics, and alone
    at /metrics/load, which needs no key (the picker cannot send one)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        picker = {
            name: GaugeMetricFamily(name, text, labels=["model_name"])
            for name, text in (
                ("vllm:num_requests_waiting", "requests waiting for a slot (slm_requests_waiting)"),
                ("vllm:num_requests_running", "requests running (slm_requests_running)"),
                ("vllm:kv_cache_usage_perc", "KV cache usage, 0 to 1 (slm_kv_cache_usage_ratio)"),
            )
        }
        for m in self.manager.loaded():
            for name, value in load_of(m).items():
                picker[name].add_metric([m.name], value)
        yield from picker.values()


class Metrics:
    def __init__(self, manager: ModelManager, responses: KeptResponses) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("slm_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "slm_request_duration_seconds", "end-to-end request time", ["route"], buckets=LATENCY, registry=r
        )
        self.ttft = Histogram(
            "slm_time_to_first_token_seconds",
            "receipt to first token",
            ["model"],
            buckets=LATENCY,
            registry=r,
        )
        self.token_gap = Histogram(
            "slm_inter_token_latency_seconds", "time between tokens", ["model"], buckets=TOKEN_GAP, registry=r
        )
        self.queue = Histogram(
            "slm_queue_wait_seconds",
            "waiting for a slot in the worker",
            ["model"],
            buckets=LATENCY,
            registry=r,
        )
        self.prompt_tokens = Counter("slm_prompt_tokens", "prompt tokens", ["model"], registry=r)
        self.cached_tokens = Counter(
            "slm_prompt_cached_tokens", "prompt tokens reused from the prefix cache", ["model"], registry=r
        )
        self.generated_tokens = Counter("slm_generation_tokens", "generated tokens", ["model"], registry=r)
        self.draft_tokens = Counter(
            "slm_spec_decode_draft_tokens",
            "tokens guessed by prompt-lookup speculative decoding (SLM_DRAFT_TOKENS)",
            ["model"],
            registry=r,
        )
        self.accepted_tokens = Counter(
            "slm_spec_decode_accepted_tokens",
            "guessed tokens the model confirmed (acceptance rate = accepted / draft)",
            ["model"],
            registry=r,
        )
        self.batch_requests = Counter(
            "slm_batch_requests", "batch job requests answered, by result", ["result"], registry=r
        )
        for result in ("completed", "failed"):
            self.batch_requests.labels(result)
        self.rejections = Counter("slm_rejections", "requests refused at the door", ["reason"], registry=r)
        for reason in REASONS:
            self.rejections.labels(reason)
        r.register(_ModelState(manager, responses))
        r.register(Load(manager))
        self.load_registry = CollectorRegistry(auto_describe=True)  # /metrics/load
        self.load_registry.register(Load(manager))

    def batch_line(self, ok: bool) -> None:
        self.batch_requests.labels("completed" if ok else "failed").inc()

    def observe(self, ctx: RequestContext, route: str, seconds: float) -> None:
        self.requests.labels(route, str(ctx.status)).inc()
        self.latency.labels(route).observe(seconds)
        if ctx.rejection:
            self.rejections.labels(ctx.rejection).inc()
        self.observe_model(ctx)

    def observe_model(self, ctx: RequestContext) -> None:
        """The per-model counters and histograms of one answered request (an HTTP request's,
        or a batch job line's: batch work counts in the token totals too)."""
        if ctx.model is None:
            return
        model = ctx.model
        self.prompt_tokens.labels(model).inc(ctx.prompt_tokens)
        self.cached_tokens.labels(model).inc(ctx.cached_tokens)
        self.generated_tokens.labels(model).inc(ctx.completion_tokens)
        self.draft_tokens.labels(model).inc(ctx.draft_tokens)
        self.accepted_tokens.labels(model).inc(ctx.accepted_tokens)
        if ctx.ttft is not None:
            self.ttft.labels(model).observe(ctx.ttft)
        if ctx.queue_seconds is not None:
            self.queue.labels(model).observe(ctx.queue_seconds)
        gap = self.token_gap.labels(model)
        for value in ctx.token_gaps:
            gap.observe(value)
