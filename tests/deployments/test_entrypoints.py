"""Flow entrypoints read from source without running it: parsing, signatures, names, parameters."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from nbflow.deployments.entrypoints import (
    EntrypointError,
    check_flow_parameters,
    flow_name_of,
    flow_signature,
    parse_entrypoint,
)

FLOWS = '''
    import datetime
    import nbflow
    from nbflow import flow

    open("PWNED", "w").write("the module ran")  # a side effect that must never happen here

    @flow(name="nightly-etl", retries=2)
    def etl(source: str, n_rows: int = 10, rate: "float" = 0.5, dry_run: bool = False,
            tags: list[str] | None = None, options: dict = {}, *, since=datetime.date.today()) -> int:
        return n_rows

    @nbflow.flow
    async def load_data(path, limit: Optional[int] = None):
        pass

    def _report_body(day: str = "mon", count=3):
        pass

    report = flow(_report_body)
    weekly = flow(name="weekly-report")(_report_body)
    fast_etl = etl.with_options(retries=0)
    renamed = etl.with_options(name="etl-v2")

    def anything(a: int = 1, **extra):
        pass

    def positional(a=0, /, b=1):
        pass

    made_at_runtime = make_flow()
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(textwrap.dedent(FLOWS))
    return path


def test_parse_entrypoint_resolves_relative_paths(flows: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_entrypoint(f"{flows}:etl") == (flows, "etl")
    assert parse_entrypoint("flows.py:etl", base_dir=tmp_path) == (flows, "etl")
    monkeypatch.chdir(tmp_path)
    assert parse_entrypoint(" ./flows.py : etl ") == (flows, "etl")


@pytest.mark.parametrize(("entrypoint", "message"), [
    ("flows.py", "has no ':'"),
    ("flows.py:", "is not a Python function name"),
    ("flows.py:etl()", "is not a Python function name"),
    ("flows.py:class", "is not a Python function name"),
    ("flows.txt:etl", "does not name a .py file"),
    ("missing.py:etl", "there is no file"),
])
def test_parse_entrypoint_refuses_bad_entrypoints(flows: Path, entrypoint: str, message: str) -> None:
    with pytest.raises(EntrypointError, match=message) as info:
        parse_entrypoint(entrypoint, base_dir=flows.parent)
    assert info.value.field == "entrypoint" and isinstance(info.value, ValueError)


def test_flow_signature_reads_names_annotations_and_literal_defaults(flows: Path) -> None:
    assert flow_signature(flows, "etl") == {
        "source": {"required": True, "annotation": "str", "default": None},
        "n_rows": {"required": False, "annotation": "int", "default": 10},
        "rate": {"required": False, "annotation": "float", "default": 0.5},
        "dry_run": {"required": False, "annotation": "bool", "default": False},
        "tags": {"required": False, "annotation": "list[str] | None", "default": None},
        "options": {"required": False, "annotation": "dict", "default": {}},
        "since": {"required": False, "annotation": None, "default": None},  # not a literal
    }


@pytest.mark.parametrize(("name", "params"), [
    ("load_data", {"path": True, "limit": False}),
    ("report", {"day": False, "count": False}),
    ("weekly", {"day": False, "count": False}),
    ("fast_etl", {"source": True, "n_rows": False, "rate": False, "dry_run": False, "tags": False,
                  "options": False, "since": False}),
    ("anything", {"a": False}),
    ("positional", {"b": False}),
])
def test_flow_signature_follows_decorators_and_assignments(flows: Path, name: str, params: dict) -> None:
    assert {k: v["required"] for k, v in flow_signature(flows, name).items()} == params


@pytest.mark.parametrize(("name", "expected"), [
    ("etl", "nightly-etl"),          # @flow(name=...)
    ("load_data", "load-data"),      # @nbflow.flow: the function name with _ -> -, as Flow does
    ("report", "-report-body"),      # flow(fn): Flow names it after fn, not the variable
    ("weekly", "weekly-report"),
    ("fast_etl", "nightly-etl"),     # with_options keeps the name unless it sets one
    ("renamed", "etl-v2"),
    ("anything", "anything"),
])
def test_flow_name_of_matches_what_flow_would_name_it(flows: Path, name: str, expected: str) -> None:
    assert flow_name_of(flows, name) == expected


@pytest.mark.parametrize(("name", "message"), [
    ("nope", "has no module-level function or flow named 'nope'; its top-level functions are: etl, "
             "load_data, _report_body, anything, positional"),
    ("made_at_runtime", "cannot read without running the file"),
])
def test_flow_signature_says_what_it_cannot_find(flows: Path, name: str, message: str) -> None:
    with pytest.raises(EntrypointError, match=message.replace("(", r"\(")):
        flow_signature(flows, name)


def test_positional_only_parameters_without_defaults_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pos.py"
    path.write_text("def f(a, /):\n    pass\n")
    with pytest.raises(EntrypointError, match="positional-only parameter"):
        flow_signature(path, "f")


def test_unreadable_flow_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def f(:\n")
    with pytest.raises(EntrypointError, match="not valid Python \\(line 1"):
        flow_signature(path, "f")


@pytest.mark.parametrize(("values", "expected"), [
    ({"source": "s3://x"}, {"source": "s3://x"}),
    ({"source": "s", "n_rows": "25", "rate": "2", "dry_run": "true"},
     {"source": "s", "n_rows": 25, "rate": 2.0, "dry_run": True}),
    ({"source": "s", "tags": '["a", "b"]', "options": "{'k': 1}"},
     {"source": "s", "tags": ["a", "b"], "options": {"k": 1}}),
    ({"source": "s", "n_rows": 7, "since": "2024-01-01"},
     {"source": "s", "n_rows": 7, "since": "2024-01-01"}),
])
def test_check_flow_parameters_converts_text_by_annotation(flows: Path, values: dict, expected: dict) -> None:
    assert check_flow_parameters(flows, "etl", values) == expected


def test_check_flow_parameters_uses_the_default_type_without_annotation(flows: Path) -> None:
    assert check_flow_parameters(flows, "report", {"count": "4", "day": "tue"}) == {"count": 4, "day": "tue"}
    assert check_flow_parameters(flows, "anything", {"a": "2", "free": "x"}) == {"a": 2, "free": "x"}


@pytest.mark.parametrize(("name", "values", "parameter", "message"), [
    ("etl", {"source": "s", "n_rowz": 1}, "n_rowz",
     "does not take parameter\\(s\\) n_rowz; it takes: source, n_rows, rate, dry_run, tags, options, since"),
    ("etl", {"n_rows": 1}, "source", "needs parameter\\(s\\) source, which have no default"),
    ("etl", {"source": "s", "x=1;import os": 1}, "x=1;import os", "is not a Python identifier"),
    ("anything", {"class": 1}, "class", "is not a Python identifier"),
    ("etl", {"source": "s", "n_rows": "many"}, "n_rows", "expects parameter 'n_rows' to be a int"),
    ("etl", {"source": "s", "dry_run": "maybe"}, "dry_run", "to be a bool"),
    ("etl", {"source": "s", "tags": "a,b"}, "tags", "to be a list"),
])
def test_check_flow_parameters_refuses_bad_values(flows: Path, name: str, values: dict, parameter: str,
                                                  message: str) -> None:
    with pytest.raises(EntrypointError, match=message) as info:
        check_flow_parameters(flows, name, values)
    assert (info.value.field, info.value.parameter) == ("parameters", parameter)


def test_nothing_here_runs_the_flow_file(flows: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, name = parse_entrypoint("flows.py:etl")
    flow_signature(path, name)
    flow_name_of(path, name)
    check_flow_parameters(path, name, {"source": "s"})
    with pytest.raises(EntrypointError):
        check_flow_parameters(path, name, {"nope": 1})
    assert not (tmp_path / "PWNED").exists() and "PWNED" not in os.listdir(tmp_path)


def test_flow_parameter_schema_is_read_from_the_source_without_running_it(tmp_path: Path) -> None:
    from nbflow.deployments.entrypoints import flow_parameter_schema

    path = tmp_path / "typed.py"
    path.write_text(textwrap.dedent('''
        from __future__ import annotations
        import datetime as dt
        from enum import Enum
        from typing import Literal, Optional
        from mylib import Config  # not installed: the file is never run
        open("PWNED", "w")

        class Color(Enum):
            RED = "red"
            BLUE = "blue"

        @flow
        def typed(rows: int, day: dt.date, color: Color = Color.RED, mode: Literal["a", "b"] = "a",
                  limit: Optional[int] = None, tags: list[str] = [], config: Config = None, **extra) -> None:
            """Load rows.

            Args:
                rows: how many rows to load
            """
    '''))
    schema = flow_parameter_schema(path, "typed")
    props = schema["properties"]
    assert list(props) == ["rows", "day", "color", "mode", "limit", "tags", "config"]  # **extra: no field
    assert props["rows"] == {"title": "rows", "type": "integer", "position": 0, "description": "how many rows to load"}
    assert props["day"]["format"] == "date" and schema["required"] == ["rows", "day"]
    assert schema["definitions"]["Color"]["enum"] == ["red", "blue"] and props["color"]["default"] is None
    assert props["mode"]["enum"] == ["a", "b"] and props["tags"]["items"] == {"type": "string"}
    assert props["limit"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["config"] == {"title": "config", "default": None, "position": 6}  # unknown here: any value
    assert not (tmp_path / "PWNED").exists()
