from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slmkit.engine.output import IncrementalDecoder, StopMatcher


def test_decoder_joins_split_characters() -> None:
    data = "héllo 🌍".encode()
    d = IncrementalDecoder()
    out = "".join(d.feed(data[i : i + 1]) for i in range(len(data))) + d.flush()
    assert out == "héllo 🌍"


@given(st.text(), st.lists(st.integers(min_value=1, max_value=5), max_size=50))
def test_decoder_any_split(text: str, cuts: list[int]) -> None:
    data, d, out, i = text.encode(), IncrementalDecoder(), "", 0
    for n in cuts:
        out += d.feed(data[i : i + n])
        i += n
    out += d.feed(data[i:]) + d.flush()
    assert out == text


def test_decoder_replaces_invalid_bytes() -> None:
    d = IncrementalDecoder()
    assert d.feed(b"a\xffb") == "a\ufffdb"


@pytest.mark.parametrize(
    ("pieces", "stops", "text", "hit"),
    [
        (["Hello", " wor", "ld"], ("world",), "Hello ", True),
        (["a", "b", "c"], ("x",), "abc", False),
        (["ab", "cSTO", "P more"], ("STOP",), "abc", True),
        (["x<", "|end", "|>y"], ("<|end|>", "zz"), "x", True),
        (["aS", "Tb"], ("STOP",), "aSTb", False),
    ],
)
def test_stop_matcher(pieces: list[str], stops: tuple[str, ...], text: str, hit: bool) -> None:
    m = StopMatcher(stops)
    out, was_hit = "", False
    for piece in pieces:
        got, was_hit = m.feed(piece)
        out += got
        if was_hit:
            break
    if not was_hit:
        out += m.flush()
    assert (out, was_hit) == (text, hit)


@given(st.text(alphabet="abST", max_size=40), st.text(alphabet="abST", min_size=1, max_size=4))
def test_stop_matcher_never_emits_stop(text: str, stop: str) -> None:
    m = StopMatcher((stop,))
    out = ""
    for ch in text:
        got, hit = m.feed(ch)
        out += got
        if hit:
            break
    else:
        out += m.flush()
    assert stop not in out
    assert text.startswith(out)
