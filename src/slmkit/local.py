"""The in-process engine: the same store, profile, backend, EngineCore and answer pipeline a
server uses, without a server. For scripts and notebooks:

    model = slmkit.load("smollm2:135m")
    print(model.chat([{"role": "user", "content": "Hi"}], max_tokens=50).text)
    for piece in model.chat([{"role": "user", "content": "Hi"}], stream=True):
        print(piece.text, end="")
    vectors = model.embed(["hello", "world"])

Options are the parameter table's names (answer/parameters.py: temperature, top_k, top_p,
min_p, repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, seed, stop,
num_predict), with ``max_tokens`` accepted for num_predict; the model's PARAMETERs and the
defaults fill in the rest, exactly as on every server route.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slmkit.answer import media, parameters
from slmkit.answer import tools as tools_api
from slmkit.answer.generation import Answering, Done, Text, Thinking, ToolCalls
from slmkit.answer.profile import ModelProfile, load_profile, load_spec
from slmkit.config import Config
from slmkit.engine.core import EngineCore
from slmkit.errors import InvalidRequest
from slmkit.pipe import EngineRequest, SamplingParams
from slmkit.results import Chunk, Completion
from slmkit.security.text import check_text
from slmkit.store import ModelStore


class LocalModel:
    def __init__(self, profile: ModelProfile, backend: Any, config: Config) -> None:
        from slmkit.engine.threads import ThreadGovernor

        self.profile = profile
        self.name = profile.name
        self.backend = backend
        self.config = config
        # SLM_NUM_THREADS=0: a thread fewer while other processes keep a core busy, as in a worker
        self.governor = ThreadGovernor.for_backend(config.num_threads, backend)
        self.core = EngineCore(
            backend,
            profile.template,
            template_timeout=config.template_timeout,
            draft_tokens=config.draft_tokens,
        )

    @classmethod
    def open(cls, name: str, *, config: Config | None = None, store: ModelStore | None = None) -> LocalModel:
        from slmkit.engine.backends import open_backend
        from slmkit.store.default import DEFAULT_NAME, ensure_default_model

        config = config or Config.from_env()
        store = store or ModelStore(config.models)
        record = ensure_default_model(store, name) if name == DEFAULT_NAME else store.get(name)
        profile = load_profile(record)
        profile.format.prepare(store, record)
        spec = load_spec(profile, config)  # every load setting the server honours
        return cls(profile, open_backend(spec), config)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, options: dict[str, Any], **fields: Any) -> EngineRequest:
        if "max_tokens" in options:  # the OpenAI name, as slmkit.Client takes it
            options = {k: v for k, v in options.items() if k != "max_tokens"} | {
                "num_predict": options["max_tokens"]
            }
        check_text({**fields, "options": options})  # as the server checks a body (server/wire.py)
        values = parameters.request_options(options, "")
        request = EngineRequest(uuid.uuid4().hex, SamplingParams(), options=tuple(values.items()), **fields)
        return self.profile.resolve(request, self.config)

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
        """The server's answer pipeline (answer/generation.py Answering), driven in-process."""
        answering = Answering(self.profile, request, time.perf_counter())
        text: list[str] = []
        thought: list[str] = []
        calls: list[dict[str, Any]] = []
        events = self.core.stream(request, self.governor)
        try:
            for event in events:
                for part in answering.on(event, time.perf_counter()):
                    if isinstance(part, Text) and part.text:
                        text.append(part.text)
                        yield Chunk(part.text)
                    elif isinstance(part, Thinking):
                        thought.append(part.text)
                        yield Chunk("", thinking=part.text)
                    elif isinstance(part, ToolCalls):
                        calls += [{"name": c.name, "arguments": c.arguments} for c in part.calls]
                    elif isinstance(part, Done):
                        s = part.stats
                        done = Completion(
                            text="".join(text),
                            finish_reason=part.finish_reason,
                            model=self.name,
                            prompt_tokens=s.prompt_tokens,
                            completion_tokens=s.completion_tokens,
                            prompt_eval_seconds=s.prompt_eval_seconds,
                            eval_seconds=s.eval_seconds,
                            total_seconds=part.total_seconds,
                            thinking="".join(thought).strip(),
                            tool_calls=tuple(calls),
                        )
                        yield Chunk("", done=done)
                        return
                if answering.end_now:
                    events.end()
        finally:
            events.close()

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        stream: bool = False,
        think: bool | str | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = "auto",
        **options: Any,
    ) -> Any:
        """Chat with the model's template, SYSTEM and MESSAGE history. ``think`` turns
        reasoning on or off for models that can think (their answer's thinking comes apart).
        A message's ``images`` (file paths or the files' bytes, as the ollama client takes
        them) go to a vision model, before its text."""
        turns, images = [], []
        for i, message in enumerate(messages):
            turn = dict(message)
            mine = [
                media.from_bytes(_read(x), f"messages.{i}.images.{j}")
                for j, x in enumerate(turn.pop("images", ()))
            ]
            if mine:
                turn["content"] = media.placed(str(turn.get("content", "")), len(mine))
            turns.append(turn)
            images += mine
        pixels = media.decode_many(tuple(images), self.config)
        calling: dict[str, Any] = {}
        if tools:  # OpenAI-shaped function tools; the answer's calls are Completion.tool_calls
            specs, choice = tools_api.function_tools(tools, tool_choice)
            calling = {"tools": tuple(specs), "tool_choice": choice}
        request = self._request(options, messages=tuple(turns), think=think, images=pixels, **calling)
        return self._run(request, stream)

    def generate(self, prompt: str, *, stream: bool = False, **options: Any) -> Any:
        """Continue raw text (no chat template)."""
        return self._run(self._request(options, prompt=prompt), stream)

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        inputs = [texts] if isinstance(texts, str) else list(texts)
        check_text(inputs, "texts")
        vectors, _ = self.backend.embed(inputs)
        return list(vectors)


def _read(image: Any) -> bytes:
    """An image given as bytes, or a file path."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    path = Path(str(image)).expanduser()
    if not path.is_file():
        raise InvalidRequest(f"images: {image!r} is not a file")
    return path.read_bytes()
