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
    """Finds stop strings in streamed text, holding back any tail that may begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._buffer = ""
        self.matched: str | None = None  # the stop string that ended the text, once one did

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self._buffer += text
        hit = min(
            (i for i in (self._buffer.find(s) for s in self.stops) if i >= 0),
            default=-1,
        )
        if hit >= 0:
            self.matched = min((s for s in self.stops if self._buffer.find(s) == hit), key=len)
            out, self._buffer = self._buffer[:hit], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self._buffer)), 0, -1):
                if self._buffer.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self._buffer) - hold
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return out
