"""Pure logic of the notebook layer: dependency order of cells and %%task option parsing."""

from __future__ import annotations

import datetime as dt

import pytest

from nbflow.notebook.cell_runner import CellOptions, CellRecord
from nbflow.notebook.magics import parse_duration
from nbflow.notebook.rerun import dependency_order


def _cell(name: str, inputs: set[str], outputs: set[str]) -> CellRecord:
    return CellRecord(name, "", CellOptions(), frozenset(inputs), frozenset(outputs))


@pytest.mark.parametrize(("cells", "expected"), [
    ([("a", set(), {"x"}), ("b", {"x"}, {"y"})], ["a", "b"]),
    ([("b", {"x"}, {"y"}), ("a", set(), {"x"})], ["a", "b"]),            # run out of order
    ([("c", {"y"}, set()), ("b", {"x"}, {"y"}), ("a", set(), {"x"})], ["a", "b", "c"]),
    ([("a", set(), {"x"}), ("z", set(), {"q"}), ("b", {"x"}, set())], ["a", "z", "b"]),  # stable
    ([("a", {"y"}, {"x"}), ("b", {"x"}, {"y"})], ["b", "a"]),             # a cycle terminates
    ([("a", {"a_in"}, {"x"})], ["a"]),                                     # input from a plain cell
])
def test_dependency_order(cells: list, expected: list[str]) -> None:
    records = [_cell(*c) for c in cells]
    assert [r.name for r in dependency_order(records)] == expected


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("0.5h", 1800),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "1y", "-5m", "", "h", "load"])
def test_parse_duration_refuses_non_durations(text: str) -> None:
    assert parse_duration(text) is None
