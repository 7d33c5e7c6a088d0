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


# -- the stop matcher against a plain reference, and its cost on adversarial input ----------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _reference(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """The text up to the first stop string to complete (the longest, on a tie), by brute force."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if s and text[:end].endswith(s)]
        if done:
            stop = max(done, key=len)
            return text[: end - len(stop)], stop
    return text, None


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab c", max_size=40),
    st.lists(st.text(alphabet="ab c", min_size=1, max_size=5), max_size=4),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
)
def test_stop_matcher_matches_the_reference_however_text_is_split(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    matcher = StopMatcher(tuple(stops))
    out, hit, at = [], False, 0
    for n in cuts * 40:
        if at >= len(text) or hit:
            break
        piece, hit = matcher.feed(text[at : at + n])
        out.append(piece)
        at += n
    if not hit:
        piece, hit = matcher.feed(text[at:])
        out.append(piece)
        out.append(matcher.flush()) if not hit else None
    assert ("".join(out), matcher.matched) == _reference(text, tuple(stops))


class _Counting(str):
    """A stop string that counts how often the matcher looks at one of its characters."""

    looks = 0

    def __getitem__(self, index: object) -> str:
        _Counting.looks += 1
        return str.__getitem__(self, index)  # type: ignore[index]


@pytest.mark.parametrize("pattern", ["a" * 999 + "b", "ab" * 499 + "c", "aab" * 333])
def test_stop_matching_is_linear_on_adversarial_input(pattern: str) -> None:
    """16 long stop strings that almost match at every character: the work per character
    stays bounded (counted in characters looked at, not seconds: no timing assertion)."""
    stops = tuple(_Counting(pattern[:-1] + chr(ord("d") + i)) for i in range(16))
    matcher = StopMatcher(stops)  # type: ignore[arg-type]
    _Counting.looks = 0
    chars = 0
    for _ in range(3000):
        piece = pattern[chars % len(pattern) : chars % len(pattern) + 4] or pattern[:4]
        matcher.feed(piece)
        chars += len(piece)
    assert _Counting.looks <= 3 * chars * len(stops)  # a naive rescan looks ~1000x as often
    assert len(matcher.flush()) < len(pattern)  # only a partial match is ever held back
