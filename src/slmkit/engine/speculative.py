"""Prompt lookup (n-gram) drafting for speculative decoding: no draft model needed.

A sequence's history (prompt, then every generated token) is indexed by its n-grams as it
grows. To draft, the last n tokens are looked up (longest n first); if they occurred before,
the tokens that followed that occurrence are proposed. The target model checks every draft
token in the same batch as the sequence's next token (engine/backends/llama.py samples each
position in turn and keeps the draft while the sampled token equals it), so the answer is
exactly what plain decoding would sample; the gain is several tokens per step when the
output repeats its input (code edits, quoting, extraction, JSON with repeated keys).

Pure: no I/O, no inference library. Each appended token costs one dict write per n-gram
size; a lookup costs one dict read per size.
"""

from __future__ import annotations

NGRAM_SIZES = (4, 3, 2)  # tried longest first: a longer match predicts better


class PromptLookup:
    """The n-gram index of one sequence's history."""

    def __init__(self, tokens: list[int], sizes: tuple[int, ...] = NGRAM_SIZES) -> None:
        self.sizes = sizes
        self.history: list[int] = []
        # n-gram -> index of the token that followed its latest occurrence. The n-gram that
        # ends the history is indexed only once a token follows it, so a lookup of the
        # history's own suffix finds an earlier occurrence.
        self._index: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        h, index = self.history, self._index
        for token in tokens:
            end = len(h)  # the n-grams ending just before ``token`` are followed by it
            for n in self.sizes:
                if end >= n:
                    index[tuple(h[end - n : end])] = end
            h.append(token)

    def draft(self, k: int) -> list[int]:
        """``k`` tokens that followed the latest earlier occurrence of the history's longest
        matching suffix ([] when no suffix occurred before). A match that runs into the end
        of the history continues the repetition it found (period = its distance back)."""
        if k <= 0:
            return []
        h = self.history
        for n in self.sizes:
            if len(h) <= n:
                continue
            follow = self._index.get(tuple(h[-n:]))
            if follow is not None:
                out: list[int] = []
                for j in range(follow, follow + k):
                    out.append(h[j] if j < len(h) else out[j - len(h)])
                return out
        return []
