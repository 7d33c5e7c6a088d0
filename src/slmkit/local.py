"""The in-process engine: the same store, backend and EngineCore a worker uses, without a
server. For scripts and notebooks:

    model = slmkit.load("smollm2:135m")
    print(model.chat([{"role": "user", "content": "Hi"}], max_tokens=50).text)
    for piece in model.chat([{"role": "user", "content": "Hi"}], stream=True):
        print(piece.text, end="")
    vectors = model.embed(["hello", "world"])
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from slmkit.config import Config
from slmkit.defaults import with_model_context
from slmkit.engine.core import EngineCore
from slmkit.engine.llama import LlamaBackend, LoadSpec
from slmkit.engine.types import EngineRequest, Failed, Finished, SamplingParams, TextDelta
from slmkit.errors import InvalidRequest
from slmkit.results import Chunk, Completion
from slmkit.store import ModelRecord, ModelStore


class LocalModel:
    def __init__(self, record: ModelRecord, backend: LlamaBackend, config: Config) -> None:
        self.record = record
        self.name = record.name.display
        self.backend = backend
        self.core = EngineCore(backend, record.template, template_timeout=config.template_timeout)

    @classmethod
    def open(cls, name: str, *, config: Config | None = None, store: ModelStore | None = None) -> LocalModel:
        from slmkit.store.default import DEFAULT_NAME, ensure_default_model

        config = config or Config.from_env()
        store = store or ModelStore(config.models)
        record = ensure_default_model(store, name) if name == DEFAULT_NAME else store.get(name)
        spec = LoadSpec(str(record.model_path), n_ctx=config.context_length, n_threads=config.num_threads)
        return cls(record, LlamaBackend(spec), config)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sampling(self, options: dict[str, Any]) -> SamplingParams:
        unknown = sorted(set(options) - set(SamplingParams.__dataclass_fields__))
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: not a sampling option")
        params = {
            **{k: v for k, v in self.record.params.items() if k in SamplingParams.__dataclass_fields__},
            **options,
        }
        if "stop" in params:
            stop = params["stop"]
            params["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        return SamplingParams(**params)

    def _run(self, request: EngineRequest, stream: bool) -> Completion | Iterator[Chunk]:
        chunks = self._chunks(request)
        if stream:
            return chunks
        done = None
        for chunk in chunks:
            done = chunk.done or done
        assert done is not None
        return done

    def _chunks(self, request: EngineRequest) -> Iterator[Chunk]:
        started = time.perf_counter()
        parts: list[str] = []
        events = self.core.stream(request)
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    if event.text:
                        parts.append(event.text)
                        yield Chunk(event.text)
                elif isinstance(event, Finished):
                    s = event.stats
                    yield Chunk(
                        "",
                        Completion(
                            text="".join(parts),
                            finish_reason=event.reason,
                            model=self.name,
                            prompt_tokens=s.prompt_tokens,
                            completion_tokens=s.completion_tokens,
                            prompt_eval_seconds=s.prompt_eval_seconds,
                            eval_seconds=s.eval_seconds,
                            total_seconds=time.perf_counter() - started,
                        ),
                    )
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            events.close()

    def chat(self, messages: list[dict[str, str]], *, stream: bool = False, **options: Any) -> Any:
        """Chat with the model's template. Options are SamplingParams fields
        (temperature, top_k, top_p, min_p, seed, stop, max_tokens, ...)."""
        request = EngineRequest(uuid.uuid4().hex, self._sampling(options), messages=tuple(messages))
        request = with_model_context(request, self.record)
        return self._run(request, stream)

    def generate(self, prompt: str, *, stream: bool = False, **options: Any) -> Any:
        """Continue raw text (no chat template)."""
        request = EngineRequest(uuid.uuid4().hex, self._sampling(options), prompt=prompt)
        return self._run(request, stream)

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        vectors, _ = self.backend.embed([texts] if isinstance(texts, str) else list(texts))
        return vectors
