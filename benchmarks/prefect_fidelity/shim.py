"""The import mapping `prefect.*` -> `nbflow.*` used by `benchmarks/prefect_fidelity.py`.

`install()` puts a finder first on `sys.meta_path` that answers every `import prefect...`
with a module whose attributes are looked up, at access time, in the nbflow modules listed
in MODULE_MAP (so names the engine grows later are picked up without editing this file).

Nothing Prefect has and nbflow lacks is faked: such a name resolves to a `Missing`
placeholder. Importing it works (so a test file is still collected); any real use of it in a
test (calling it, reading an attribute, `isinstance`, iterating, `with`, awaiting,
instantiating a subclass) raises `NbflowLacks("nbflow lacks prefect.states.Paused")`, which
the report groups by name. While pytest is collecting (module level of a test file: decorators,
`skipif` conditions, base classes) uses are lenient and give more placeholders instead.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
import types
from typing import Any

# prefect module -> nbflow modules searched in order. A module missing from this table maps
# to nothing (every name in it is a Missing placeholder).
MODULE_MAP: dict[str, tuple[str, ...]] = {
    "prefect": ("nbflow", "nbflow.engine.context", "nbflow.states", "nbflow.transactions"),
    "prefect.flows": ("nbflow.engine.flows", "nbflow", "nbflow.deployments.entrypoints"),
    "prefect.tasks": ("nbflow.tasks", "nbflow.engine.tasks"),
    "prefect.states": ("nbflow.states", "nbflow.engine.states"),
    "prefect.client.schemas.objects": ("nbflow.states",),  # only StateType (see ONLY)
    "prefect.futures": ("nbflow.futures", "nbflow.engine.futures"),
    "prefect.task_runners": ("nbflow.task_runners", "nbflow.engine.task_runners"),
    "prefect.cache_policies": ("nbflow.cache_policies", "nbflow.engine.cache_policies"),
    "prefect.exceptions": ("nbflow.exceptions", "nbflow.errors"),
    "prefect.context": ("nbflow.context", "nbflow.engine.context"),
    "prefect.runtime": ("nbflow.runtime",),
    "prefect.runtime.flow_run": ("nbflow.runtime.flow_run",),
    "prefect.runtime.task_run": ("nbflow.runtime.task_run",),
    "prefect.runtime.deployment": ("nbflow.runtime.deployment",),
    "prefect.utilities.annotations": ("nbflow.utilities.annotations",),
    "prefect.utilities.collections": ("nbflow.utilities.annotations",),  # only quote (see ONLY)
    "prefect.logging": ("nbflow.logging", "nbflow.engine.run_logging"),
    "prefect.transactions": ("nbflow.transactions",),
    "prefect.flow_engine": ("nbflow.engine.flow_engine",),
    "prefect.task_engine": ("nbflow.engine.task_engine",),
}

# Where Prefect re-exports only some names of the nbflow module we point at.
ONLY: dict[str, frozenset[str]] = {
    "prefect.client.schemas.objects": frozenset({"StateType"}),
    "prefect.utilities.collections": frozenset({"quote"}),
    "prefect.logging": frozenset({"get_run_logger"}),
    "prefect": frozenset({
        "flow", "task", "Flow", "Task", "State", "tags", "get_run_logger", "unmapped", "allow_failure",
        "get_run_context", "runtime", "Transaction", "transaction", "pause_flow_run", "resume_flow_run",
        "suspend_flow_run", "__version__", "serve", "deploy", "aserve", "get_client",
    }),
}

# Prefect's name -> nbflow's name for the same thing (tried after the exact name).
ALIASES: dict[str, dict[str, str]] = {
    "prefect.futures": {"PrefectFuture": "TaskRunFuture", "PrefectConcurrentFuture": "TaskRunFuture",
                        "PrefectFutureList": "FutureList"},
    "prefect.exceptions": {"MissingResult": "MissingResultError", "CancelledRun": "CancelledRunError",
                           "CrashedRun": "CrashedRunError", "UpstreamTaskError": "UpstreamFailedError",
                           "PrefectException": "NbflowError"},
}


def _exceptions_equal(a: Any, b: Any) -> bool:
    """Test helper of Prefect's test suite (prefect.testing.utilities): same type, same text."""
    if a == b:
        return True
    return type(a) is type(b) and getattr(a, "args", None) == getattr(b, "args", None)


# Generic test helpers of Prefect's test suite that involve no Prefect behaviour: our own code.
HELPERS: dict[str, dict[str, Any]] = {
    "prefect.testing.utilities": {"exceptions_equal": _exceptions_equal},
}

COLLECTING = [False]  # set by the conftest while pytest imports the test files


class NbflowLacks(AttributeError):
    """A test used a Prefect name that has no nbflow counterpart."""


def _lacks(path: str) -> NbflowLacks:
    return NbflowLacks(f"nbflow lacks {path}")


class Missing:
    """Stands for `prefect.X.Y` that nbflow does not have: any use in a test raises NbflowLacks."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        object.__setattr__(self, "_path", path)

    def __repr__(self) -> str:
        return f"<nbflow lacks {object.__getattribute__(self, '_path')}>"

    def _use(self, child: str | None = None) -> Any:
        path = object.__getattribute__(self, "_path")
        if COLLECTING[0]:
            return Missing(f"{path}.{child}" if child else path)
        raise _lacks(path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # keeps pytest/inspect/copy probing quiet
        return self._use(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if COLLECTING[0] and len(args) == 1 and callable(args[0]) and not kwargs:
            # used as a decorator at module level: keep the decorated function, marked so
            # that running it fails with the missing name
            return _failing_wrapper(args[0], object.__getattribute__(self, "_path"))
        return self._use()

    def __mro_entries__(self, bases: tuple) -> tuple:
        path = object.__getattribute__(self, "_path")

        def __init__(self: Any, *a: Any, **k: Any) -> None:
            raise _lacks(path)

        return (type("Missing_" + path.rsplit(".", 1)[-1], (), {"__init__": __init__,
                                                                "_nbflow_missing": path}),)

    def __instancecheck__(self, obj: Any) -> bool:
        raise _lacks(object.__getattribute__(self, "_path"))

    def __subclasscheck__(self, cls: Any) -> bool:
        raise _lacks(object.__getattribute__(self, "_path"))

    def __iter__(self) -> Any:
        if COLLECTING[0]:
            return iter(())
        raise _lacks(object.__getattribute__(self, "_path"))

    def __bool__(self) -> bool:
        if COLLECTING[0]:
            return False
        raise _lacks(object.__getattribute__(self, "_path"))

    def __getitem__(self, key: Any) -> Any:
        return self._use()

    def __enter__(self) -> Any:
        raise _lacks(object.__getattribute__(self, "_path"))

    def __exit__(self, *a: Any) -> None:
        return None

    async def __aenter__(self) -> Any:
        raise _lacks(object.__getattribute__(self, "_path"))

    async def __aexit__(self, *a: Any) -> None:
        return None

    def __await__(self) -> Any:
        raise _lacks(object.__getattribute__(self, "_path"))

    def __or__(self, other: Any) -> Any:  # type hints such as `Missing | None` at module level
        return self._use()

    __ror__ = __or__


def _failing_wrapper(fn: Any, path: str) -> Any:
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*a: Any, **k: Any) -> Any:
            raise _lacks(path)
    else:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            raise _lacks(path)
    return wrapper


class ShimModule(types.ModuleType):
    """`prefect.X`: attributes come from the mapped nbflow modules, else are Missing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _resolve(self.__name__, name)
        return value


def _target_modules(prefect_name: str) -> list[types.ModuleType]:
    found = []
    for target in MODULE_MAP.get(prefect_name, ()):
        try:
            found.append(importlib.import_module(target))
        except ImportError:
            continue
    return found


def _resolve(module: str, name: str) -> Any:
    helper = HELPERS.get(module, {})
    if name in helper:
        return helper[name]
    sub = f"{module}.{name}"
    if sub in MODULE_MAP or any(key.startswith(sub + ".") for key in MODULE_MAP):
        return importlib.import_module(sub)
    only = ONLY.get(module)
    if only is None or name in only:
        candidates = [name]
        alias = ALIASES.get(module, {}).get(name)
        if alias:
            candidates.append(alias)
        for target in _target_modules(module):
            for candidate in candidates:
                if candidate in getattr(target, "__dict__", {}) or hasattr(target, candidate):
                    try:
                        return getattr(target, candidate)
                    except AttributeError:
                        continue
    if name.islower() and "_" not in name[:1] and module.startswith("prefect") and name.isidentifier() \
            and sub.count(".") <= 4 and _looks_like_module(sub):
        return importlib.import_module(sub)
    if module == "prefect.exceptions" or re.search(r"(Error|Exception|Run)$", name):
        return _missing_exception(sub)
    return Missing(sub)


_MISSING_EXCEPTIONS: dict[str, type] = {}


def _missing_exception(path: str) -> type:
    """A missing exception class: a class nbflow never raises, so `pytest.raises(X)` shows what
    nbflow raised instead (or "DID NOT RAISE <class 'NbflowLacks[prefect.exceptions.X]'>")."""
    if path not in _MISSING_EXCEPTIONS:
        _MISSING_EXCEPTIONS[path] = type(f"NbflowLacks[{path}]", (Exception,), {"_nbflow_missing": path})
    return _MISSING_EXCEPTIONS[path]


_KNOWN_PREFECT_PACKAGES = {
    "prefect.client", "prefect.client.schemas", "prefect.server", "prefect.server.schemas",
    "prefect.server.events", "prefect.settings", "prefect.blocks", "prefect.utilities", "prefect.testing",
    "prefect.events", "prefect.deployments", "prefect.results", "prefect.serializers", "prefect._internal",
    "prefect.filesystems", "prefect.locking", "prefect.types", "prefect.concurrency", "prefect.workers",
}


def _looks_like_module(name: str) -> bool:
    return name in _KNOWN_PREFECT_PACKAGES


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = ShimModule(spec.name)
        module.__path__ = []  # a package, so `import prefect.a.b` works at any depth
        module.__doc__ = f"nbflow fidelity shim for {spec.name}"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == "prefect" or fullname.startswith("prefect."):
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        for name in [n for n in sys.modules if n == "prefect" or n.startswith("prefect.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _Finder())
