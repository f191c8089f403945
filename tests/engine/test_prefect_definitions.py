"""Prefect 3's option checks and definition attributes on @task and @flow: error types and texts,
retry_delay_seconds, version, task_key, source_code, tags, with_options, StateGroup."""

from __future__ import annotations

import hashlib
import inspect
import pickle

import pytest

from nbflow import Flow, Task, flow, task
from nbflow.engine.retries import exponential_backoff
from nbflow.errors import InvalidNameError
from nbflow.states import Cancelled, Completed, Crashed, Failed, Paused, Running, StateGroup


def hook(obj, run, state) -> None:
    pass


@pytest.mark.parametrize("kind", ["task", "flow"])
@pytest.mark.parametrize("option", ["on_completion", "on_failure", "on_running"])
def test_hook_options_take_a_list_of_callables_or_raise_prefects_type_error(kind: str, option: str) -> None:
    decorator = task if kind == "task" else flow
    example = f"@{kind}({option}=[hook1, hook2])\ndef my_{kind}():\n\tpass"
    with pytest.raises(TypeError) as single:
        decorator(**{option: hook})(lambda: None)
    assert str(single.value).startswith(
        f"Expected iterable for '{option}'; got function instead. Please provide a list of hooks to "
        f"'{option}':\n\n{example}")
    with pytest.raises(TypeError) as not_callable:
        decorator(**{option: [hook, "test"]})(lambda: None)
    assert str(not_callable.value).startswith(f"Expected callables in '{option}'; got str instead.")
    assert decorator(**{option: (hook,)})(lambda: None) is not None  # any iterable of callables


def test_retry_options_raise_prefects_errors() -> None:
    with pytest.raises(TypeError, match=r"Invalid `retry_delay_seconds` provided; must be an int, float, list"):
        task(retries=2, retry_delay_seconds={"x": 4})(lambda: None)
    with pytest.raises(TypeError, match="Invalid `retry_delay_seconds`"):
        task(retries=2, retry_delay_seconds=2)(lambda: None).with_options(retry_delay_seconds={"x": 4})
    with pytest.raises(ValueError, match="Can not configure more than 50 retry delays per task"):
        task(retries=60, retry_delay_seconds=list(range(51)))(lambda: None)
    with pytest.raises(ValueError, match="`retry_jitter_factor` must be >= 0"):
        task(retries=1, retry_jitter_factor=-10)(lambda: None)
    with pytest.raises(TypeError, match="Expected `retry_condition_fn` to be callable, got str instead"):
        task(retry_condition_fn="not a callable")(lambda: None)


def test_retry_delay_seconds_is_kept_as_prefect_keeps_it() -> None:
    assert task(lambda: None).retry_delay_seconds == 0
    assert task(retries=2, retry_delay_seconds=1.5)(lambda: None).retry_delay_seconds == 1.5
    assert task(retries=3, retry_delay_seconds=[0.5, 1.1])(lambda: None).retry_delay_seconds == [0.5, 1.1]
    assert task(retries=3, retry_delay_seconds=exponential_backoff(10))(lambda: None).retry_delay_seconds == [
        10, 20, 40]
    slow = flow(retries=1, retry_delay_seconds=3)(lambda: None)
    assert slow.retry_delay_seconds == 3
    assert slow.with_options(retry_delay_seconds=0).retry_delay_seconds == 0
    assert task(retries=None)(lambda: None).retries == 0  # Prefect's "use the default"


@pytest.mark.parametrize("name", ["my/flow", "my%flow", "my<flow", "my>flow", "my&flow"])
def test_flow_names_with_banned_characters_raise_invalid_name_error(name: str) -> None:
    with pytest.raises(InvalidNameError, match="contains an invalid character") as caught:
        Flow(lambda: 1, name=name)
    assert isinstance(caught.value, ValueError)
    assert task(name=name)(lambda: 1).name == name  # Prefect refuses them in flow names only


def test_flow_name_must_be_a_string_and_lambdas_get_a_legal_name() -> None:
    with pytest.raises(TypeError, match="Expected string for flow parameter 'name'; got int instead."):
        Flow(lambda: 1, name=1)

    def get_name() -> str:
        return "x"

    with pytest.raises(TypeError, match="got function instead. Perhaps you meant to call it?"):
        Flow(lambda: 1, name=get_name)
    assert Flow(lambda: 42).name == "unknown-lambda"


def module_level() -> int:
    return 42


def test_version_task_key_source_code_and_isasync() -> None:
    with open(__file__, "rb") as handle:
        assert flow(module_level).version == hashlib.md5(handle.read()).hexdigest()
    assert flow(version="B")(module_level).version == "B"
    assert task(module_level).version is None
    defined = task(module_level)
    assert defined.task_key.startswith("module_level-") and len(defined.task_key) == len("module_level-") + 8
    assert "def module_level" in defined.source_code and "return 42" in defined.source_code

    class Funky:
        def __call__(self, x: int) -> int:
            return x

    funky = Funky()
    assert task(funky).source_code is None
    assert task(funky).task_key.endswith("<locals>.Funky")  # no name of its own: its class's, as Prefect
    funky.__qualname__ = "__main__.Funky"
    assert task(funky).task_key.startswith("Funky-")

    async def coro() -> None:
        pass

    assert task(coro).isasync and flow(coro).isasync and not task(module_level).isasync
    restored = pickle.loads(pickle.dumps(defined))
    assert restored.source_code == defined.source_code


def test_tags_are_a_set_copied_by_with_options() -> None:
    original = task(tags=["a", "b"])(module_level)
    copy = original.with_options(name="other")
    original.tags.add("c")
    assert original.tags == {"a", "b", "c"} and copy.tags == {"a", "b"}


def test_with_options_takes_every_option_of_the_decorator() -> None:
    task_options = set(inspect.signature(task).parameters) - {"__fn", "version"}
    assert task_options == set(inspect.signature(Task.with_options).parameters) - {"self"}
    flow_options = set(inspect.signature(flow).parameters) - {"__fn"}
    assert flow_options == set(inspect.signature(Flow.with_options).parameters) - {"self"}
    with pytest.raises(TypeError, match="unknown option"):
        task(module_level).with_options(version="2")


def test_state_group_counts_states() -> None:
    group = StateGroup([Failed(data=ValueError("1")), Crashed(data=ValueError("2")), Completed(data=1),
                        Cancelled(), Running()])
    assert group.fail_count == 2 and group.any_failed() and group.any_cancelled()
    assert not group.all_completed() and not group.all_final() and not group.any_paused()
    message = group.counts_message()
    assert message.startswith("total=5, not_final=1") and "'FAILED'=1" in message and "'RUNNING'=1" in message
    assert StateGroup([Completed(), Completed()]).all_completed()
    assert StateGroup([Paused()]).any_paused()
    assert repr(StateGroup([Completed()])) == "StateGroup<total=1, 'COMPLETED'=1>"


def test_a_notebook_session_flow_takes_a_legal_name_from_its_file() -> None:
    from nbflow.notebook.session import notebook_flow_name

    name = notebook_flow_name({"JPY_SESSION_NAME": "/work/R&D <draft>.ipynb"})
    assert name == "R-D -draft-" and Flow(lambda: None, name=name).name == name
    assert notebook_flow_name({"NBFLOW_FLOW_NAME": "50%"}) == "50-"


def test_task_key_depends_on_the_code_not_on_the_file_it_came_from() -> None:
    def define(body: str, filename: str) -> Task:
        namespace: dict = {}
        exec(compile(f"def step(x):\n    return {body}\n", filename, "exec"), namespace)  # noqa: S102
        return task(namespace["step"])

    first = define("x in {'a', 'b'}", "/tmp/ipykernel_1/11.py")
    again = define("x in {'a', 'b'}", "/tmp/ipykernel_2/97.py")  # the same cell after a kernel restart
    assert first.task_key == again.task_key
    assert define("x in {'a', 'c'}", "/tmp/ipykernel_1/11.py").task_key != first.task_key
