"""The answer pipeline's parser: raw text in, Text / Thinking / ToolCalls out (no model)."""

from __future__ import annotations

from slmkit.answer.generation import AnswerParser, Text, Thinking, ToolCalls
from slmkit.pipe import Choice, TokenLogprob, Tool

WEATHER = Tool("weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})


def lp(token: str) -> TokenLogprob:
    return TokenLogprob(token, tuple(token.encode()), -0.5)


def run(parser: AnswerParser, pieces: list[str]) -> list[object]:
    out: list[object] = []
    for piece in pieces:
        out += parser.feed(piece, (lp(piece),))
    return out + parser.finish()


def test_plain_text_streams_as_it_comes() -> None:
    events = run(AnswerParser(reasoning_split=True), ["Hel", "lo"])
    assert events == [Text("Hel", (lp("Hel"),)), Text("lo", (lp("lo"),))]


def test_reasoning_is_split_off() -> None:
    events = run(AnswerParser(reasoning_split=True), ["<think>", "step one", "</think>", "\n\nAnswer"])
    assert "".join(e.text for e in events if isinstance(e, Thinking)) == "step one"
    assert "".join(e.text for e in events if isinstance(e, Text)) == "Answer"


def test_without_the_split_the_block_stays_text() -> None:
    events = run(AnswerParser(reasoning_split=False), ["<think>x</think>y"])
    assert events == [Text("<think>x</think>y", (lp("<think>x</think>y"),))]


def test_tool_calls_are_held_back_and_parsed_once() -> None:
    parser = AnswerParser(reasoning_split=True, tools=[WEATHER], choice=Choice("auto"))
    events = run(
        parser,
        [
            "<think>need weather</think>",
            '{"tool_calls": [{"name": "weather", ',
            '"arguments": {"city": "Oslo"}}]}',
        ],
    )
    assert [type(e) for e in events] == [Thinking, ToolCalls]
    (call,) = events[1].calls  # type: ignore[attr-defined]
    assert (call.name, call.arguments) == ("weather", {"city": "Oslo"}) and parser.called


def test_text_that_only_looks_like_a_call_is_sent_at_the_end_with_its_logprobs() -> None:
    parser = AnswerParser(reasoning_split=False, tools=[WEATHER], choice=Choice("auto"))
    events = run(parser, ["{not", " json}"])
    assert events == [Text("{not json}", (lp("{not"), lp(" json}")))]
    assert not parser.called


def test_a_call_cut_off_by_the_token_limit_is_never_sent_as_text() -> None:
    def cut(choice: Choice, pieces: list[str]) -> list[object]:
        parser = AnswerParser(reasoning_split=False, tools=[WEATHER], choice=choice)
        out: list[object] = []
        for piece in pieces:
            out += parser.feed(piece)
        return out + parser.finish(truncated=True)

    forced = cut(Choice("required"), ['{"tool_calls": [{"name": "wea'])
    assert forced == []  # no text, no calls: the dialects report finish "length" alone
    for started in (
        '{"tool_calls": [{"na',
        ' <tool_call>{"name"',
        '[TOOL_CALLS] [{"name',
        '{"name": "weather"',
    ):
        assert cut(Choice("auto"), [started]) == [], started
    # a JSON answer that is not a call keeps its text, cut or not
    assert cut(Choice("auto"), ['{"answer": 4']) == [Text('{"answer": 4')]
    parser = AnswerParser(reasoning_split=False, tools=[WEATHER], choice=Choice("required"))
    parser.feed('{"tool_calls": [{"name": "weather", "arguments": {"city": "Rome"}}]}')
    (done,) = parser.finish(truncated=True)  # complete before the limit: still a call
    assert isinstance(done, ToolCalls) and done.calls[0].arguments == {"city": "Rome"}
