"""A sequence's reasoning, followed token by token: how many tokens it spent thinking, and an
end to its thinking at a budget. Pure.

Reasoning is the ``<think>...</think>`` block an answer starts with (or that the prompt
opened: a template that ends its generation prompt with ``<think>``; the answer's text then
gets that marker in front, as if the model had written it, so it splits the same way). Tokens between the
markers count as reasoning tokens. With a budget, once the sequence has thought that many
tokens without closing the block, the close marker (``</think>`` and a blank line) is
forced as its next tokens, one per step in place of what the sampler drew, and the model
goes on to answer. The forced tokens are the sequence's own from then on (its KV cache and
what it feeds back); the sampler's repetition penalties never saw them.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
CLOSING_TEXT = CLOSE + "\n\n"
TAIL = 32  # characters of thinking text kept to find the close marker across token pieces


class Reasoning:
    def __init__(self, budget: int | None, close: list[int], opened: bool) -> None:
        self.budget = budget  # most reasoning tokens, or None: only counted
        self.close = close  # the close marker's token ids
        self.state = "thinking" if opened else "start"  # start -> thinking -> closing -> answer
        self.count = 0  # reasoning tokens so far
        self.forced: list[int] = []  # close-marker tokens still to put in place of samples
        self.unannounced = opened  # the prompt opened the block: the answer's text gets OPEN first
        self._text = ""
        if opened and budget == 0 and close:  # no thinking at all: close before the first token
            self.state, self.forced = "closing", list(close)

    def next_forced(self) -> int | None:
        """The token to put in place of this step's sample, if the budget is closing."""
        if not self.forced:
            return None
        token = self.forced.pop(0)
        if not self.forced:
            self.state = "answer"
        return token

    def announce(self, text: str) -> str:
        """The step's text as the answer shows it: when the prompt opened the block, OPEN goes
        before the first piece, so whoever splits the answer (answer/reasoning.py) sees it."""
        if not self.unannounced or not text:
            return text
        self.unannounced = False
        return OPEN + text

    def feed(self, n_tokens: int, text: str) -> None:
        """A step's new tokens (how many) and their text."""
        if self.state == "start":
            self._text += text
            head = self._text.lstrip()
            if not head or (OPEN.startswith(head) and head != OPEN):
                return  # undecided: whitespace, or the open marker still coming
            if not head.startswith(OPEN):
                self.state = "answer"  # the answer did not begin with reasoning
                return
            self.state, self._text = "thinking", head[len(OPEN) :]
            n_tokens = 1 if self._text else 0  # the marker's own tokens do not count
        elif self.state == "thinking":
            self._text = (self._text + text)[-TAIL:]
        else:
            return
        self.count += n_tokens
        if CLOSE in self._text:
            self.state = "answer"
        elif self.budget is not None and self.count >= self.budget and self.close:
            self.state, self.forced = "closing", list(self.close)
