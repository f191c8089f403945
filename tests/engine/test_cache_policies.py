"""Cache policies: what each keys on, how they combine, and that keys see code changes."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
import timeit
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from nbflow.engine.cache_policies import (
    DEFAULT, FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE, CacheKeyFnPolicy, CachePolicy,
    CompoundCachePolicy, Inputs, task_input_hash,
)
from nbflow.errors import FingerprintError


def ctx_for(fn: Callable[..., Any], *, flow_run_id: str | None = "flow-1", task_run_id: str = "task-1",
            **extra: Any) -> SimpleNamespace:
    """A stand-in for the engine's TaskRunContext: .task, .task_run, .flow_run_id."""
    task = SimpleNamespace(fn=fn, name=fn.__name__, task_key=f"{fn.__module__}.{fn.__qualname__}")
    run = SimpleNamespace(id=task_run_id, flow_run_id=flow_run_id)
    return SimpleNamespace(task=task, task_run=run, flow_run_id=flow_run_id, **extra)


def add(x: int, y: int) -> int:
    return x + y


def key(policy: CachePolicy, fn: Callable[..., Any] = add, inputs: dict | None = None,
        flow_parameters: dict | None = None, **ctx: Any) -> str | None:
    return policy.compute_key(ctx_for(fn, **ctx), {"x": 1, "y": 2} if inputs is None else inputs,
                              flow_parameters or {})


class Constant(CachePolicy):
    """A test policy that returns a fixed key."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def compute_key(self, task_ctx: Any, inputs: dict, flow_parameters: dict) -> str | None:
        return self.value


# -- what each policy keys on ------------------------------------------------------------

SAME = [
    ("INPUTS: argument order", INPUTS, {}, {"inputs": {"y": 2, "x": 1}}),
    ("INPUTS: other flow run", INPUTS, {}, {"flow_run_id": "flow-2"}),
    ("INPUTS - y: y changes", INPUTS - "y", {}, {"inputs": {"x": 1, "y": 99}}),
    ("TASK_SOURCE: other inputs", TASK_SOURCE, {}, {"inputs": {"x": 5, "y": 6}}),
    ("RUN_ID: other inputs", RUN_ID, {}, {"inputs": {"x": 5, "y": 6}}),
    ("FLOW_PARAMETERS: order", FLOW_PARAMETERS, {"flow_parameters": {"a": 1, "b": 2}},
     {"flow_parameters": {"b": 2, "a": 1}}),
    ("compound: same everything", INPUTS + TASK_SOURCE, {}, {}),
]


@pytest.mark.parametrize("policy, a, b", [c[1:] for c in SAME], ids=[c[0] for c in SAME])
def test_policies_give_the_same_key_when_what_they_see_is_the_same(policy, a, b) -> None:
    assert key(policy, **a) == key(policy, **b) is not None


DIFFERENT = [
    ("INPUTS: value", INPUTS, {}, {"inputs": {"x": 1, "y": 3}}),
    ("INPUTS: 1 vs 1.0", INPUTS, {}, {"inputs": {"x": 1.0, "y": 2}}),
    ("INPUTS: argument name", INPUTS, {}, {"inputs": {"x": 1, "z": 2}}),
    ("INPUTS - y: x changes", INPUTS - "y", {}, {"inputs": {"x": 2, "y": 2}}),
    ("RUN_ID: flow run", RUN_ID, {}, {"flow_run_id": "flow-2"}),
    ("FLOW_PARAMETERS: value", FLOW_PARAMETERS, {"flow_parameters": {"a": 1}}, {"flow_parameters": {"a": 2}}),
    ("DEFAULT: flow run", DEFAULT, {}, {"flow_run_id": "flow-2"}),
    ("DEFAULT: inputs", DEFAULT, {}, {"inputs": {"x": 2, "y": 2}}),
    ("INPUTS + TASK_SOURCE: task", INPUTS + TASK_SOURCE, {}, {"fn": lambda x, y: x - y}),
]


@pytest.mark.parametrize("policy, a, b", [c[1:] for c in DIFFERENT], ids=[c[0] for c in DIFFERENT])
def test_policies_give_a_different_key_when_what_they_see_differs(policy, a, b) -> None:
    assert key(policy, **a) != key(policy, **b)


def test_keys_are_hex_digests() -> None:
    for policy in (INPUTS, TASK_SOURCE, RUN_ID, DEFAULT, CacheKeyFnPolicy(lambda c, p: "my key")):
        k = key(policy)
        assert len(k) == 64 and all(ch in "0123456789abcdef" for ch in k), (policy, k)


# -- combining ---------------------------------------------------------------------------

def test_no_cache_adds_nothing_as_in_prefect() -> None:
    assert key(NO_CACHE) is None
    assert NO_CACHE + INPUTS is INPUTS
    assert INPUTS + NO_CACHE is INPUTS
    compound = INPUTS + TASK_SOURCE
    assert compound + NO_CACHE is compound
    assert NO_CACHE + NO_CACHE == NO_CACHE


def test_compound_policies_flatten_and_read_like_their_expression() -> None:
    assert repr(DEFAULT) == "INPUTS + TASK_SOURCE + RUN_ID"
    assert DEFAULT == INPUTS + (TASK_SOURCE + RUN_ID)
    assert isinstance(DEFAULT, CompoundCachePolicy) and len(DEFAULT.policies) == 3
    assert repr((INPUTS + TASK_SOURCE) - "y") == "INPUTS - 'y' + TASK_SOURCE"


def test_compound_skips_none_parts_and_is_none_when_all_are() -> None:
    assert key(Constant(None) + Constant(None)) is None
    assert key(FLOW_PARAMETERS + Constant(None)) is None  # no flow parameters -> None
    assert key(INPUTS + Constant(None)) == key(INPUTS + Constant(None))
    assert key(INPUTS + Constant(None)) is not None
    # parts that give None leave no trace, wherever they stand (Prefect: DEFAULT - "y" keys as
    # RUN_ID + INPUTS - "y" outside a run)
    assert key(Constant("k") + Constant(None)) == key(Constant(None) + Constant("k"))
    assert (DEFAULT - "y").compute_key(None, {"x": 1, "y": 2}, {}) == \
        (RUN_ID + (INPUTS - "y")).compute_key(None, {"x": 1, "y": 3}, {})
    # each part's key is labelled with its kind: one kind's key never passes for another's
    assert key(INPUTS) != key(INPUTS + FLOW_PARAMETERS)


def test_compound_key_depends_on_every_part() -> None:
    base = key(INPUTS + TASK_SOURCE)
    assert key(INPUTS + TASK_SOURCE, inputs={"x": 9, "y": 2}) != base
    assert key(INPUTS + TASK_SOURCE, fn=lambda x, y: x * y) != base
    assert key(INPUTS + TASK_SOURCE) == base


def test_excluding_an_input() -> None:
    policy = INPUTS - "y" - "z"
    assert isinstance(policy, Inputs) and policy.exclude == ["y", "z"] and INPUTS.exclude == []
    assert key((INPUTS + TASK_SOURCE) - "y", inputs={"x": 1, "y": 1}) == \
        key((INPUTS + TASK_SOURCE) - "y", inputs={"x": 1, "y": 2})
    assert TASK_SOURCE - "y" is TASK_SOURCE  # no arguments in its key: nothing to leave out
    merged = CompoundCachePolicy([INPUTS - "x", TASK_SOURCE, INPUTS - "y"]) - "z"
    assert [p for p in merged.policies if isinstance(p, Inputs)] == [Inputs(exclude=["x", "y", "z"])]
    with pytest.raises(TypeError, match="argument name"):
        INPUTS - 3  # type: ignore[operator]


# -- errors and fallbacks ------------------------------------------------------------------

def test_inputs_without_content_raise_fingerprint_error_naming_the_argument() -> None:
    with pytest.raises(FingerprintError, match=r"(?s)conn = .*_thread\.lock.*cache_policy=NO_CACHE.*"
                                               r"DEFAULT - 'conn'"):
        key(INPUTS, inputs={"x": 1, "conn": threading.Lock()})
    assert key(INPUTS - "conn", inputs={"x": 1, "conn": threading.Lock()}) is not None


def test_an_unfingerprintable_upstream_result_uses_the_upstream_cache_key() -> None:
    lock = threading.Lock()
    k1 = key(INPUTS, inputs={"conn": lock}, upstream_cache_keys={"conn": "a" * 64})
    k2 = key(INPUTS, inputs={"conn": lock}, upstream_cache_keys={"conn": "b" * 64})
    assert k1 is not None and k1 != k2


def test_cache_key_fn_policy() -> None:
    seen = []

    def by_x(context: Any, parameters: dict) -> str | None:
        seen.append((context.task.name, parameters))
        return None if parameters["x"] < 0 else f"x={parameters['x']}"

    policy = CacheKeyFnPolicy(by_x)
    assert key(policy) == key(policy, inputs={"x": 1, "y": 99})
    assert key(policy) != key(policy, inputs={"x": 2, "y": 2})
    assert key(policy, inputs={"x": -1, "y": 0}) is None
    assert seen[0] == ("add", {"x": 1, "y": 2})
    with pytest.raises(FingerprintError, match="make it return a str"):
        key(CacheKeyFnPolicy(lambda context, parameters: threading.Lock()))


def test_task_input_hash_is_prefects_and_returns_none_for_unhashable_arguments() -> None:
    context = ctx_for(add)
    assert task_input_hash(context, {"x": 1, "y": 2}) == task_input_hash(context, {"y": 2, "x": 1})
    assert task_input_hash(context, {"x": 1, "y": 2}) != task_input_hash(context, {"x": 1, "y": 3})
    assert task_input_hash(ctx_for(lambda x, y: x), {"x": 1, "y": 2}) != task_input_hash(context, {"x": 1, "y": 2})
    assert task_input_hash(context, {"x": (i for i in range(3))}) is None


# -- TASK_SOURCE sees code ----------------------------------------------------------------

def _define(source: str, path: Path, namespace: dict | None = None) -> dict:
    """Define functions as a notebook cell would: the source is in a file getsource can read."""
    path.write_text(textwrap.dedent(source))
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def _source_key(fn: Callable[..., Any]) -> str | None:
    return TASK_SOURCE.compute_key(ctx_for(fn), {}, {})


SOURCE_SAME = [
    ("comment", "return x + 1", "return x + 1  # add one"),
    ("blank lines and docstring", "return x + 1", '"""Add one."""\n\n    return x + 1'),
]


@pytest.mark.parametrize("body_a, body_b", [c[1:] for c in SOURCE_SAME], ids=[c[0] for c in SOURCE_SAME])
def test_task_source_ignores_comments_docstrings_and_blank_lines(tmp_path: Path, body_a: str, body_b: str) -> None:
    template = "def step(x):\n    {body}\n"
    a = _define(template.format(body=body_a), tmp_path / "a.py")["step"]
    b = _define(template.format(body=body_b), tmp_path / "b.py")["step"]
    assert _source_key(a) == _source_key(b)


def test_task_source_ignores_the_task_decorator_but_not_the_body(tmp_path: Path) -> None:
    common = "def deco(**options):\n    return lambda fn: fn\n"
    a = _define(common + "@deco(retries=1)\ndef step(x):\n    return x + 1\n", tmp_path / "a.py")["step"]
    b = _define(common + "@deco(retries=3)\ndef step(x):\n    return x + 1\n", tmp_path / "b.py")["step"]
    c = _define(common + "@deco(retries=3)\ndef step(x):\n    return x + 2\n", tmp_path / "c.py")["step"]
    assert _source_key(a) == _source_key(b) != _source_key(c)


def _import_pair(tmp_path: Path, name: str, helper_body: str) -> Any:
    """Write a tasks module and the helpers module it imports into their own folder; import them."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "cp_helpers.py").write_text(f"def scale(x):\n    return {helper_body}\n")
    (folder / "cp_tasks.py").write_text(textwrap.dedent("""
        from cp_helpers import scale
        import cp_helpers

        def direct(x):
            return scale(x) + 1

        def via_module(x):
            return cp_helpers.scale(x) + 1
    """))
    sys.path.insert(0, str(folder))
    try:
        for module in ("cp_helpers", "cp_tasks"):
            sys.modules.pop(module, None)
        return importlib.import_module("cp_tasks")
    finally:
        sys.path.remove(str(folder))
        for module in ("cp_helpers", "cp_tasks"):
            sys.modules.pop(module, None)


def test_task_source_changes_when_a_called_helper_in_another_module_changes(tmp_path: Path) -> None:
    v1 = _import_pair(tmp_path, "v1", "x * 2")
    v1_again = _import_pair(tmp_path, "v1_again", "x * 2")
    v2 = _import_pair(tmp_path, "v2", "x * 3")
    for name in ("direct", "via_module"):
        assert _source_key(getattr(v1, name)) == _source_key(getattr(v1_again, name))
        assert _source_key(getattr(v1, name)) != _source_key(getattr(v2, name)), name


def test_task_source_notices_a_helper_module_reloaded_with_new_code(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    helper = folder / "cp_reload_helpers.py"
    helper.write_text("def scale(x):\n    return x * 2\n")
    (folder / "cp_reload_tasks.py").write_text(
        "import cp_reload_helpers\n\ndef step(x):\n    return cp_reload_helpers.scale(x)\n")
    sys.path.insert(0, str(folder))
    try:
        tasks = importlib.import_module("cp_reload_tasks")
        before = _source_key(tasks.step)
        assert _source_key(tasks.step) == before  # memoised
        helper.write_text("def scale(x):\n    return x * 20\n")
        importlib.reload(sys.modules["cp_reload_helpers"])
        assert _source_key(tasks.step) != before
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("cp_reload_helpers", None)
        sys.modules.pop("cp_reload_tasks", None)


def test_task_source_notices_a_helper_redefined_in_a_notebook_namespace(tmp_path: Path) -> None:
    namespace = _define("def helper(x):\n    return x + 1\n\ndef step(x):\n    return helper(x)\n",
                        tmp_path / "cell1.py")
    step = namespace["step"]
    before = _source_key(step)
    _define("def helper(x):\n    return x - 1\n", tmp_path / "cell2.py", namespace)  # same name, new code
    assert _source_key(step) != before
    _define("def helper(x):\n    return x + 1\n", tmp_path / "cell3.py", namespace)  # back to the first
    assert _source_key(step) == before


def test_task_source_sees_constants_classes_and_closures(tmp_path: Path) -> None:
    namespace = _define(textwrap.dedent("""
        THRESHOLD = 0.5

        class Model:
            def predict(self, x):
                return x > THRESHOLD

        def step(x):
            return Model().predict(x)
    """), tmp_path / "cell.py")
    step = namespace["step"]
    before = _source_key(step)
    namespace["THRESHOLD"] = 0.7
    assert _source_key(step) != before
    namespace["THRESHOLD"] = 0.5
    assert _source_key(step) == before
    _define("class Model:\n    def predict(self, x):\n        return x >= THRESHOLD\n", tmp_path / "c2.py", namespace)
    assert _source_key(step) != before

    def make(n: int) -> Callable[[int], int]:
        def scaled(x: int) -> int:
            return x * n
        return scaled

    assert _source_key(make(2)) == _source_key(make(2)) != _source_key(make(3))


def test_task_source_follows_decorated_helpers_to_their_code(tmp_path: Path) -> None:
    def step_with(body: str, name: str) -> Callable[..., Any]:
        source = ("import functools\n\n@functools.lru_cache\ndef helper(x):\n    return " + body +
                  "\n\ndef step(x):\n    return helper(x)\n")
        return _define(source, tmp_path / name)["step"]

    assert _source_key(step_with("x + 1", "a.py")) == _source_key(step_with("x + 1", "b.py"))
    assert _source_key(step_with("x + 1", "c.py")) != _source_key(step_with("x * 2", "d.py"))


def test_task_source_of_library_callees_is_by_name_only() -> None:
    import json

    def dumps_it(x: Any) -> str:
        return json.dumps(x)

    assert _source_key(dumps_it) == _source_key(dumps_it)


# -- speed --------------------------------------------------------------------------------

def test_computing_a_key_is_cheap() -> None:
    policy = INPUTS + TASK_SOURCE
    context, inputs = ctx_for(add), {"x": 1, "y": 2}
    policy.compute_key(context, inputs, {})
    n = 2000
    best = min(timeit.repeat(lambda: policy.compute_key(context, inputs, {}), number=n, repeat=5)) / n
    assert best < 20e-6, f"compute_key(INPUTS + TASK_SOURCE) took {best * 1e6:.1f} us (target < 10 us)"
