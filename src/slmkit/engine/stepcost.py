"""What a step costs, learned from the steps a model ran: seconds as a linear function of what
the step holds, fitted by least squares over recent steps. Pure: the engine reports each
step's measured seconds (``observe``), the scheduler asks what fits a time budget.

A step's cost on llama.cpp is a fixed part (graph build, threads, logits), a part per token
(the weights' matrix products, shared across a batch: a decoding token and a prompt token
cost alike once the batch is compute-bound) and attention, which grows with the positions a
token attends to (a prompt chunk at position 3000 costs several times one at 0 on a small
model). So the features are: 1, decode tokens, prompt tokens, and the sum of the positions
the step's tokens attend over (in units of 64 Ki token-positions, to keep the fit well
conditioned).

Each kind of step (decode only, with prompt tokens) keeps its own window of recent
observations, so a long run of one kind never forgets the other; until both kinds were seen
``MIN_SEEN`` times the model answers ``None`` and the scheduler plans by tokens alone.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW = 64  # recent steps of each kind in the fit
MIN_SEEN = 4  # steps of each kind before predictions are trusted
POSITION_UNIT = 65536.0  # attended token-positions per unit of the fourth feature
RIDGE = 1e-6  # keeps the normal equations solvable when a feature never varied
RESUM = 4096  # observations between recomputing the sums from the windows
FLOOR = 1e-5  # seconds: the least a prompt token is believed to cost


@dataclass(frozen=True)
class StepShape:
    """What a step holds, as the cost model sees it."""

    decode: int = 0  # tokens decoded (with drafts)
    prefill: int = 0  # prompt tokens read
    attended: int = 0  # sum over the step's tokens of the positions each attends to

    def features(self) -> tuple[float, float, float, float]:
        return (1.0, float(self.decode), float(self.prefill), self.attended / POSITION_UNIT)


def chunk_attended(start: int, length: int) -> int:
    """Positions a prompt chunk of ``length`` tokens starting at ``start`` attends over."""
    return length * start + length * (length + 1) // 2


class StepCosts:
    def __init__(self) -> None:
        self._decode: deque[tuple[tuple[float, ...], float]] = deque(maxlen=WINDOW)
        self._prefill: deque[tuple[tuple[float, ...], float]] = deque(maxlen=WINDOW)
        self._coef: tuple[float, float, float, float] | None = None
        self._stale = False
        # the normal equations' sums over both windows, kept as rows come and go (a refit
        # then solves 4 x 4, not 128 rows: it runs after every step, on the decode path)
        self._xx = [[0.0] * 4 for _ in range(4)]
        self._xy = [0.0] * 4
        self._seen = 0

    def observe(self, shape: StepShape, seconds: float) -> None:
        if seconds <= 0 or (shape.decode == 0 and shape.prefill == 0):
            return
        window = self._prefill if shape.prefill else self._decode
        if len(window) == window.maxlen:
            self._add(*window[0], sign=-1.0)
        row = (shape.features(), seconds)
        window.append(row)
        self._add(*row, sign=1.0)
        self._seen += 1
        if self._seen % RESUM == 0:  # start the sums afresh now and then: no rounding drift
            self._xx, self._xy = [[0.0] * 4 for _ in range(4)], [0.0] * 4
            for x, y in (*self._decode, *self._prefill):
                self._add(x, y, sign=1.0)
        self._stale = True

    def _add(self, x: tuple[float, ...], y: float, sign: float) -> None:
        for i in range(4):
            self._xy[i] += sign * x[i] * y
            for j in range(4):
                self._xx[i][j] += sign * x[i] * x[j]

    @property
    def ready(self) -> bool:
        return len(self._decode) >= MIN_SEEN and len(self._prefill) >= MIN_SEEN

    def coefficients(self) -> tuple[float, float, float, float] | None:
        """Seconds: fixed, per decode token, per prompt token, per POSITION_UNIT attended."""
        if not self.ready:
            return None
        if self._stale or self._coef is None:
            self._coef = _solve(self._xx, self._xy)
            self._stale = False
        return self._coef

    def predict(self, shape: StepShape) -> float | None:
        coef = self.coefficients()
        if coef is None:
            return None
        return max(0.0, sum(c * x for c, x in zip(coef, shape.features(), strict=True)))

    def prompt_tokens_within(self, seconds: float, start: int) -> int | None:
        """How many prompt tokens from position ``start`` fit in ``seconds`` more of a step."""
        coef = self.coefficients()
        if coef is None:
            return None
        per_token, per_position = max(coef[2], FLOOR), max(coef[3], 0.0) / POSITION_UNIT
        # seconds = per_token * n + per_position * chunk_attended(start, n), solved for n
        a = per_position / 2
        b = per_token + per_position * (start + 0.5)
        t = max(0.0, seconds)
        n = t / b if a < 1e-15 else (math.sqrt(b * b + 4 * a * t) - b) / (2 * a)
        return int(n)


def _solve(xx: list[list[float]], xy: list[float]) -> tuple[float, float, float, float]:
    """Least squares from the normal equations' sums, with a small ridge (Gaussian
    elimination with partial pivoting on a copy)."""
    k = 4
    a = [[xx[i][j] + (RIDGE if i == j else 0.0) for j in range(k)] for i in range(k)]
    b = list(xy)
    for col in range(k):  # Gaussian elimination with partial pivoting
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        for r in range(col + 1, k):
            f = a[r][col] / a[col][col]
            for c in range(col, k):
                a[r][c] -= f * a[col][c]
            b[r] -= f * b[col]
    out = [0.0] * k
    for r in range(k - 1, -1, -1):
        out[r] = (b[r] - sum(a[r][c] * out[c] for c in range(r + 1, k))) / a[r][r]
    return (out[0], out[1], out[2], out[3])
