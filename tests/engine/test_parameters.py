"""Flow parameters as Prefect 3 treats them: validated and coerced by pydantic v2 (flows only, not
tasks), Prefect's errors and log lines, and the parameter schema from hints and docstrings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import pydantic
import pytest

import nbflow
from nbflow import flow, task
from nbflow.errors import ParameterBindError, ParameterTypeError
from nbflow.utilities.callables import get_call_parameters, parameter_schema


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@dataclasses.dataclass
class Window:
    days: int
    label: str = "w"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@flow
def typed(n: int, ratio: float, on: bool, day: dt.date, path: Path, point: Point, window: Window,
          color: Color, mode: Literal["fast", "slow"], ids: list[int], limit: Optional[int] = None) -> dict:
    return dict(locals())


GOOD = dict(n="3", ratio="0.5", on="true", day="2026-01-02", path="data/in.csv", point={"x": "1"},
            window={"days": 7}, color="blue", mode="slow", ids=["1", 2])


def test_values_are_coerced_to_their_hints_as_pydantic_does() -> None:
    got = typed(**GOOD)
    assert got == dict(n=3, ratio=0.5, on=True, day=dt.date(2026, 1, 2), path=Path("data/in.csv"),
                       point=Point(x=1), window=Window(days=7), color=Color.BLUE, mode="slow", ids=[1, 2],
                       limit=None)
    run = nbflow.runs(flow_name="typed").iloc[0]
    assert run["parameters"]["n"] == 3 and run["parameters"]["ids"] == [1, 2]  # the coerced values


def test_json_text_from_a_command_line_or_form_becomes_a_list_model_or_dict() -> None:
    got = typed(**{**GOOD, "ids": "[4, 5]", "point": '{"x": 2, "y": 3}', "window": '{"days": 1}'})
    assert got["ids"] == [4, 5] and got["point"] == Point(x=2, y=3) and got["window"] == Window(days=1)


def test_a_model_instance_passes_through_unchanged_and_defaults_are_not_validated() -> None:
    point = Point(x=1)

    @flow
    def keep(p: Point, count: int = None) -> object:  # type: ignore[assignment]  # a default None, as users write
        return p, count

    assert keep(point) == (point, None) and keep(point)[0] is point


def test_a_bad_value_fails_the_run_with_prefects_message_and_log_line(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    @flow(on_failure=[lambda f, run, state: calls.append(state.name)])
    def strict(n: int, point: Point) -> int:
        return n

    with caplog.at_level(logging.ERROR):
        state = strict(n="many", point={"x": "nope"}, return_state=True)
    assert state.is_failed() and calls == ["Failed"]
    assert state.message.startswith("Validation of flow parameters failed with error: ParameterTypeError: "
                                    "Flow run received invalid parameters:\n - n: Input should be a valid integer")
    assert " - point.x: Input should be a valid integer" in state.message and "(got str 'many')" in state.message
    with pytest.raises(ParameterTypeError, match="invalid parameters") as info:
        state.result()
    assert isinstance(info.value, TypeError) and info.value.parameter == "n"
    assert any(r.getMessage().startswith("Validation of flow parameters failed with error: Flow run received")
               for r in caplog.records)
    assert nbflow.runs(flow_name="strict")["state"].tolist() == ["Failed"]
    with pytest.raises(ParameterTypeError):
        strict(n="x", point={"x": 1})  # without return_state the call raises


def test_validate_parameters_false_passes_values_unchanged() -> None:
    @flow(validate_parameters=False)
    def loose(n: int) -> object:
        return n

    assert loose("four") == "four" and loose.should_validate_parameters is False


def test_a_call_that_does_not_fit_the_signature_raises_at_once_and_records_no_run() -> None:
    @flow
    def two(a: int, b: int = 1) -> int:
        return a + b

    with pytest.raises(ParameterBindError, match="missing a required argument: 'a'") as info:
        two(b=2)
    assert isinstance(info.value, TypeError)
    assert "Function 'two' has signature 'a: int, b: int = 1' but received args: () and kwargs: ['b']" \
        in str(info.value)
    with pytest.raises(ParameterBindError, match="unexpected keyword argument 'c'"):
        two(1, c=3)
    assert nbflow.runs(flow_name="two").empty
    with pytest.raises(ParameterBindError):
        get_call_parameters(two.fn, (), {"b": 2})
    assert get_call_parameters(two.fn, (1,), {}) == {"a": 1, "b": 1}


def test_tasks_do_not_validate_their_parameters() -> None:
    @task
    def echo(n: int) -> object:
        return n

    @flow
    def calls_echo() -> object:
        return echo("not a number")

    assert calls_echo() == "not a number"


def test_a_subflow_with_bad_parameters_fails_and_so_does_its_parent() -> None:
    @flow
    def child(x: int) -> int:
        return x

    @flow
    def parent() -> tuple:
        return child("foo", return_state=True), child(1, return_state=True)

    state = parent(return_state=True)
    assert state.is_failed()
    with pytest.raises(ParameterTypeError):
        state.result()


async def _async_call() -> int:
    @flow
    async def adds(a: int, b: int) -> int:
        return a + b

    return await adds("2", b="3")


def test_async_flows_are_coerced_too() -> None:
    import asyncio

    assert asyncio.run(_async_call()) == 5


def test_flow_validate_parameters_returns_a_new_coerced_dict() -> None:
    given = {"n": "7", "ratio": 1, "on": "no", "day": "2026-03-04", "path": "p", "point": {"x": 1},
             "window": {"days": 2}, "color": "red", "mode": "fast", "ids": []}
    checked = typed.validate_parameters(given)
    assert checked["n"] == 7 and checked["on"] is False and checked["color"] is Color.RED and given["n"] == "7"
    with pytest.raises(ParameterTypeError, match="mode: Input should be 'fast' or 'slow'"):
        typed.validate_parameters({**given, "mode": "medium"})
    with pytest.raises(ParameterTypeError, match="nope"):
        typed.validate_parameters({**given, "nope": 1})


def test_parameter_schema_from_hints_and_google_docstrings() -> None:
    def report(region: str, days: int = 7, color: Color = Color.RED, scale: Optional[float] = None) -> None:
        """Build the report.

        Args:
            region: where to look
            days (int): how far back,
                in days
        """

    schema = parameter_schema(report).model_dump_for_openapi()
    assert schema["title"] == "Parameters" and schema["type"] == "object" and schema["required"] == ["region"]
    props = schema["properties"]
    assert props["region"] == {"title": "region", "type": "string", "position": 0, "description": "where to look"}
    assert props["days"] == {"title": "days", "type": "integer", "default": 7, "position": 1,
                             "description": "how far back,\nin days"}
    assert props["color"]["$ref"] == "#/definitions/Color" and schema["definitions"]["Color"]["enum"] == ["red", "blue"]
    assert props["scale"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert flow(report).parameters.properties["region"]["description"] == "where to look"


def test_pydantic_loads_only_when_a_value_needs_it() -> None:
    code = ("import sys, json, nbflow\n"
            "@nbflow.flow\ndef plain(x):\n    return x\n"
            "@nbflow.flow\ndef hinted(x: int, y: str = 'a'):\n    return x\n"
            "plain(1); hinted(1, 'b'); before = 'pydantic' in sys.modules\n"  # exactly the hinted types
            "assert hinted('2') == 2\n"
            "print(json.dumps([before, 'pydantic' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True]
