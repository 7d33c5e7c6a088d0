"""Results files and --json output are strict JSON: no bare NaN or Infinity, written whole."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from slmkit import jsonout


def _strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null() -> None:
    data = {"p50": math.nan, "rate": math.inf, "levels": [{"ttft": -math.inf, "ok": 1.5}],
            "pair": (1, math.nan)}  # fmt: skip
    assert _strict(jsonout.dumps(data)) == {"p50": None, "rate": None, "levels": [{"ttft": None, "ok": 1.5}],
                                            "pair": [1, None]}  # fmt: skip


def test_a_file_is_written_whole_or_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    jsonout.write(path, {"a": math.nan})
    assert _strict(path.read_text()) == {"a": None}
    with pytest.raises(TypeError):
        jsonout.write(path, {"a": object()})  # cannot be serialised: the old file stays
    assert _strict(path.read_text()) == {"a": None}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left behind


def test_bench_results_are_strict_json(tmp_path: Path) -> None:
    from slmkit.bench import report

    result = {"targets": [], "plan": {}, "levels": [], "nan": math.nan}
    try:
        report.write(result, tmp_path)
    except (KeyError, TypeError, ValueError):
        pass  # the charts may want more fields; results.json is written first
    assert _strict((tmp_path / "results.json").read_text())["nan"] is None
