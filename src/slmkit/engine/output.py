"""Turning sampled tokens into caller-visible text: UTF-8 reassembly and stop strings."""

from __future__ import annotations


class IncrementalDecoder:
    """Bytes of token pieces in, complete UTF-8 text out; holds back split characters."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> str:
        self._pending += data
        try:
            text = self._pending.decode("utf-8")
            self._pending = b""
            return text
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and len(self._pending) - exc.start < 4:
                text = self._pending[: exc.start].decode("utf-8", errors="replace")
                self._pending = self._pending[exc.start :]
                return text
            text = self._pending.decode("utf-8", errors="replace")
            self._pending = b""
            return text

    def flush(self) -> str:
        text = self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        return text


class StopMatcher:
    """Finds stop strings in streamed text, holding back any tail that may begin one.

    Linear time: each stop string has a KMP automaton whose state (the length of its prefix
    the text now ends with) advances once per character, so a long answer with long stop
    strings costs O(characters x stops), never the quadratic rescans of a naive search.
    The first stop string to complete ends the text (the longest one, when several complete
    at the same character)."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._fail = [_failure(s) for s in self.stops]
        self._state = [0] * len(self.stops)
        self._buffer = ""  # held back: the longest partial match, at most a stop's length - 1
        self.matched: str | None = None  # the stop string that ended the text, once one did

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        for i, ch in enumerate(text):
            done: str | None = None
            for k, stop in enumerate(self.stops):
                state, fail = self._state[k], self._fail[k]
                while state and stop[state] != ch:
                    state = fail[state - 1]
                if stop[state] == ch:
                    state += 1
                if state == len(stop):
                    done = stop if done is None or len(stop) > len(done) else done
                    state = fail[state - 1]
                self._state[k] = state
            if done is not None:
                seen = self._buffer + text[: i + 1]
                self.matched, self._buffer = done, ""
                return seen[: len(seen) - len(done)], True
        seen = self._buffer + text
        cut = len(seen) - max(self._state)
        out, self._buffer = seen[:cut], seen[cut:]
        return out, False

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return out


def _failure(pattern: str) -> list[int]:
    """KMP's table: for each prefix, the length of its longest proper border."""
    table = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = table[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        table[i] = k
    return table
