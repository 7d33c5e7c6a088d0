"""`slm run`'s interactive session (cli/repl.py) with a fake client: commands, \"\"\" blocks,
Ctrl-C during an answer, what is sent. The real terminal is tests/integration/test_run_terminal.py."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from slmkit.cli.repl import Session, Settings, interactive, read_message
from slmkit.cli.wordwrap import WordWrap
from slmkit.errors import ClientError
from slmkit.results import Chunk, Completion

MODEL = "smollm2:135m"


def _done(text: str) -> Completion:
    return Completion(text, "stop", MODEL, 3, 2, 0.1, 0.1)


class FakeClient:
    def __init__(self, answer: str = "Hello there.", interrupt_after: int | None = None) -> None:
        self.answer = answer
        self.interrupt_after = interrupt_after
        self.sent: list[dict[str, Any]] = []
        self.closed = 0
        self.created: list[dict[str, Any]] = []
        self.loaded: list[str] = []

    def chat(self, model: str, messages: list[dict[str, Any]], **kw: Any) -> Iterator[Chunk]:
        self.sent.append({"model": model, "messages": [dict(m) for m in messages], **kw})
        return self._chunks()

    def _chunks(self) -> Iterator[Chunk]:
        try:
            yield Chunk("", thinking="Let me see. ")
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                if self.interrupt_after is not None and i == self.interrupt_after:
                    raise KeyboardInterrupt  # what Ctrl-C does in the middle of the stream
                yield Chunk(word + (" " if i < len(words) - 1 else ""))
            yield Chunk("", _done(self.answer))
        finally:
            self.closed += 1

    def show(self, model: str) -> dict[str, Any]:
        if model != MODEL:
            raise ClientError(f"model '{model}' not found", 404)
        return {"modelfile": f"FROM {MODEL}\n", "parameters": "stop <|im_end|>", "template": "{{ .Prompt }}",
                "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q4_1"},
                "model_info": {"general.architecture": "llama", "llama.context_length": 8192}}  # fmt: skip

    def load(self, model: str, keep_alive: str | None = None) -> None:
        self.loaded.append(model)

    def create(self, model: str, **fields: Any) -> dict[str, Any]:
        self.created.append({"model": model, **fields})
        return {"status": "success"}


def session(client: FakeClient, **settings: Any) -> tuple[Session, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Session(client, Settings(model=MODEL, **settings), out, err), out, err  # type: ignore[arg-type]


def lines(*typed: str | type[BaseException]) -> Any:
    """A line reader that returns ``typed`` in turn (an exception class is raised), then EOF."""
    queue = list(typed)

    def read(label: str) -> str:
        if not queue:
            raise EOFError
        item = queue.pop(0)
        if isinstance(item, type):
            raise item()
        return item

    return read


def test_a_triple_quoted_block_is_one_message() -> None:
    assert read_message(lines('"""first line', "second line", 'third"""')) == "first line\nsecond line\nthird"
    assert read_message(lines('"""one line"""')) == "one line"
    assert read_message(lines("plain")) == "plain"
    assert read_message(lines('/set system """You are terse.', 'Answer in one word."""')) == (
        "/set system You are terse.\nAnswer in one word."
    )


def test_a_conversation_keeps_its_turns_and_the_system_prompt() -> None:
    client = FakeClient()
    s, out, _ = session(client, system="Be brief.")
    assert interactive(s, lines("Hi", "And again?")) == 0
    first, second = client.sent
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "And again?"},
    ]
    assert "Thinking...\nLet me see. \n...done thinking.\n\nHello there.\n" in out.getvalue()


def test_ctrl_c_stops_the_answer_closes_the_stream_and_forgets_the_message() -> None:
    client = FakeClient("one two three four", interrupt_after=2)
    s, out, _ = session(client)
    assert interactive(s, lines("count", "/show system")) == 0  # the session goes on after Ctrl-C
    assert client.closed == 1  # the stream was closed: the server sees the client leave
    assert s.messages == []  # the unanswered message is not sent again
    assert "one two " in out.getvalue() and "three" not in out.getvalue()
    assert "No system message" in out.getvalue()


def test_ctrl_c_at_the_prompt_says_how_to_leave() -> None:
    s, _, err = session(FakeClient())
    assert interactive(s, lines(KeyboardInterrupt, "/bye", "never read")) == 0
    assert "Use Ctrl + d or /bye to exit." in err.getvalue()


def test_help_and_unknown_commands_never_reach_the_model() -> None:
    client = FakeClient()
    s, out, err = session(client)
    interactive(s, lines("/?", "/help", "/? shortcuts", "/xyzzy"))
    assert client.sent == []
    assert "/save MODEL" in out.getvalue() and "Ctrl-R" in out.getvalue()
    assert "Unknown command '/xyzzy'. Type /? for help" in err.getvalue()


def test_set_parameter_checks_the_value_and_is_sent_as_options() -> None:
    client = FakeClient()
    s, out, err = session(client)
    interactive(s, lines("/set parameter temperature 0", "/set parameter top_k many",
                         "/set parameter nonsense 1", "/set parameter stop END", "hi"))  # fmt: skip
    assert "Set parameter 'temperature' to '0'" in out.getvalue()
    assert "top_k" in err.getvalue() and "nonsense: unknown parameter" in err.getvalue()
    assert client.sent[0]["options"] == {"temperature": 0.0, "stop": ["END"]}


def test_set_format_think_and_modes() -> None:
    client = FakeClient()
    s, out, err = session(client)
    interactive(s, lines("/set format json", "/set think low", "/set hidethinking", "/set format yaml", "hi"))
    assert client.sent[0]["format"] == "json" and client.sent[0]["think"] == "low"
    assert "Thinking" not in out.getvalue()  # hidden
    assert "only json" in err.getvalue()
    interactive(s, lines("/unset format", "/set nothink", "/set nohistory", "again"))
    assert s.settings.history is False
    assert client.sent[1]["format"] is None and client.sent[1]["think"] is False


def test_clear_confirms_and_keeps_the_system_prompt() -> None:
    client = FakeClient()
    s, out, _ = session(client)
    interactive(s, lines("/set system Be brief.", "hi", "/clear", "again"))
    assert "Set system message." in out.getvalue() and "Cleared session context" in out.getvalue()
    assert client.sent[1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "again"},
    ]


def test_show_reports_the_model_and_the_sessions_settings() -> None:
    s, out, _ = session(FakeClient())
    interactive(s, lines("/show info", "/show template", "/set parameter seed 7", "/show parameters",
                         "/set system Be brief.", "/show modelfile"))  # fmt: skip
    text = out.getvalue()
    assert "135M" in text and "Q4_1" in text and "{{ .Prompt }}" in text
    assert "stop <|im_end|>" in text and "seed" in text
    assert f"FROM {MODEL}\nPARAMETER seed 7\nSYSTEM " in text


def test_load_switches_model_and_an_unknown_one_changes_nothing() -> None:
    client = FakeClient()
    s, out, err = session(client)
    interactive(s, lines("hi", "/load no-such-model", "/load"))
    assert "not found" in err.getvalue() and "give a model name" in err.getvalue()
    assert s.settings.model == MODEL and len(s.messages) == 2
    interactive(s, lines(f"/load {MODEL}"))
    assert client.loaded == [MODEL] and s.messages == [] and f"Loading model '{MODEL}'" in out.getvalue()


def test_save_creates_a_model_from_the_session() -> None:
    client = FakeClient()
    s, out, _ = session(client)
    interactive(s, lines("/set system Be brief.", "/set parameter temperature 0", "hi", "/save brief"))
    assert client.created == [{
        "model": "brief", "from": MODEL, "system": "Be brief.", "parameters": {"temperature": 0.0},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}],
    }]  # fmt: skip
    assert "Created new model 'brief'" in out.getvalue()


def test_a_server_error_ends_the_answer_not_the_session() -> None:
    class Failing(FakeClient):
        def chat(self, model: str, messages: list[dict[str, Any]], **kw: Any) -> Iterator[Chunk]:
            raise ClientError("prompt is too long", 400)

    s, _, err = session(Failing())
    assert interactive(s, lines("hi", "/bye")) == 0
    assert "Error: prompt is too long" in err.getvalue() and s.messages == []


@pytest.mark.parametrize(
    ("pieces", "width", "expected"),
    [
        (["The quick brown ", "fox jumps over"], 10, "The quick \nbrown fox \njumps over"),
        (["a ", "verylongwordindeed"], 8, "a \nverylong\nwordinde\ned"),
        (["line one\nline ", "two"], 20, "line one\nline two"),
    ],
)
def test_word_wrap_breaks_between_words_as_text_streams(pieces: list[str], width: int, expected: str) -> None:
    out = io.StringIO()
    wrap = WordWrap(out, width)
    for piece in pieces:
        wrap.write(piece)
    wrap.flush()
    assert out.getvalue() == expected


def test_a_double_slash_sends_a_message_that_starts_with_a_slash() -> None:
    client = FakeClient()
    s, _, _ = session(client)
    interactive(s, lines("//etc/hosts is a file"))
    assert client.sent[0]["messages"] == [{"role": "user", "content": "/etc/hosts is a file"}]
