"""Prompt lookup (n-gram) drafting for speculative decoding: no draft model needed.

A sequence's history (prompt, then every generated token) is indexed by its n-grams as it
grows. To draft, the last n tokens are looked up (longest n first); if they occurred before,
the tokens that followed that occurrence are proposed. The target model checks every draft
token in the same batch as the sequence's next token (engine/backends/llama.py samples each
position in turn and keeps the draft while the sampled token equals it), so each token is
drawn from the distribution plain decoding draws it from; the gain is several tokens per
step when the output repeats its input (code edits, quoting, extraction, JSON keys).

Checking a guess is not free: on a CPU a batch of k + 1 tokens of one sequence costs
nearly k + 1 times the arithmetic of one (SmolLM2 on 2 cores: a 3-token step ~1.9x a
1-token step; on Gemma 3 each guess also pays for a 262k-token output row). So the draft
length adapts per sequence: it grows while guesses are confirmed, shrinks to what was
confirmed, and after a draft that was wholly wrong drafting pauses for a number of steps
that doubles with each such miss (up to MAX_PAUSE) and resets on a confirmed guess.

Pure: no I/O, no inference library. Each appended token costs one dict write per n-gram
size; a lookup costs one dict read per size.
"""

from __future__ import annotations

NGRAM_SIZES = (4, 3)  # tried longest first; a 2-gram match in prose is mostly chance
START_LENGTH = 4  # first draft length, then adapted
MAX_PAUSE = 32  # most steps without drafting after repeated misses


class PromptLookup:
    """The n-gram index of one sequence's history, and its adaptive draft length."""

    def __init__(self, tokens: list[int], sizes: tuple[int, ...] = NGRAM_SIZES) -> None:
        self.sizes = sizes
        self.history: list[int] = []
        # n-gram -> index of the token that followed its latest occurrence. The n-gram that
        # ends the history is indexed only once a token follows it, so a lookup of the
        # history's own suffix finds an earlier occurrence.
        self._index: dict[tuple[int, ...], int] = {}
        self.length = START_LENGTH  # tokens to draft next time (capped by the caller's limit)
        self._pause = 0  # steps left without drafting
        self._misses = 0  # wholly wrong drafts in a row
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        h, index = self.history, self._index
        for token in tokens:
            end = len(h)  # the n-grams ending just before ``token`` are followed by it
            for n in self.sizes:
                if end >= n:
                    index[tuple(h[end - n : end])] = end
            h.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` (and the adaptive length) tokens that followed the latest earlier
        occurrence of the history's longest matching suffix; [] when none occurred before
        or drafting is paused. A match that runs into the end of the history continues the
        repetition it found (period = its distance back)."""
        if self._pause > 0:
            self._pause -= 1
            return []
        k = min(limit, self.length)
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

    def feedback(self, drafted: int, accepted: int, most: int) -> None:
        """Adapt to how many of ``drafted`` guesses the model confirmed (``most``: the
        longest draft allowed)."""
        if drafted <= 0:
            return
        if accepted == drafted:
            self.length = min(most, self.length + 2)
        else:
            self.length = max(1, accepted)
        if accepted:
            self._misses = 0
        else:
            self._misses += 1
            self._pause = min(MAX_PAUSE, 2 ** (self._misses - 1))
