"""Streamed text wrapped at word boundaries, as it arrives (`slm run` in a terminal).

A word is held until the space or newline after it shows where it ends; a word that would
cross the right edge starts the next line; one longer than a whole line is cut at the edge.
"""

from __future__ import annotations

from typing import TextIO


class WordWrap:
    def __init__(self, out: TextIO, width: int) -> None:
        self.out = out
        self.width = max(width, 8)
        self.column = 0
        self.word = ""

    def write(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                self._put_word()
                self.out.write("\n")
                self.column = 0
            elif ch == " ":
                self._put_word()
                if self.column < self.width:  # a space at the edge becomes the line break
                    self.out.write(" ")
                    self.column += 1
            else:
                self.word += ch
        self.out.flush()

    def flush(self) -> None:
        """The held word, at the end of the answer."""
        self._put_word()
        self.out.flush()

    def _put_word(self) -> None:
        word, self.word = self.word, ""
        if self.column + len(word) > self.width and self.column > 0:
            self.out.write("\n")
            self.column = 0
        while len(word) > self.width:  # longer than a line: cut at the edge
            self.out.write(word[: self.width] + "\n")
            word = word[self.width :]
        self.out.write(word)
        self.column += len(word)


class NoWrap:
    """The same interface, text as it comes (--nowordwrap, or not a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def flush(self) -> None:
        self.out.flush()
