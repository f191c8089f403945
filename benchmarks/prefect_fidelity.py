"""How much of Prefect 3's own test suite passes against nbflow (GitHub issue 10, "Prefect 3 fidelity").

    .venv/bin/python benchmarks/prefect_fidelity.py [--prefect-repo PATH] [--files test_tasks.py ...]
        [-k EXPR] [--list-failures FILE] [--jobs 2] [--timeout 20] [-v]

1. Copies Prefect's test files (default: tasks, flows, futures, states, cache policies, task
   runners and the two engines) from a Prefect checkout (a bare mirror or a clone) into a
   temporary directory, with `benchmarks/prefect_fidelity/conftest.py` and `shim.py`: an
   import mapping `prefect.*` -> `nbflow.*`. Names nbflow lacks become placeholders that fail
   the test using them with "nbflow lacks prefect.X.Y" (nothing is faked).
2. Decides statically (AST), per test, whether it is *applicable*: a test is left out when its
   body, its decorators, the module-level helpers it uses or the fixtures it requests
   (transitively, including Prefect's conftest fixtures, which we do not provide) match a rule
   of EXCLUSION_RULES below: it needs Prefect's server, API client, blocks, settings, events,
   deployments/workers or internals. Failing is never a reason to leave a test out.
3. Runs pytest once per file (`-p no:cacheprovider`, pytest-timeout per test, warnings not
   errors, async tests on asyncio through anyio's plugin, a fresh NBFLOW_HOME per file).
4. Prints passed / applicable overall and per file, the excluded counts by reason and the
   biggest failure buckets; writes everything to benchmarks/results/prefect_fidelity-<UTC>.json.

No Prefect code is stored in this repository: it is copied at run time.
"""

from __future__ import annotations

import argparse
import ast
import collections
import concurrent.futures
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUPPORT = HERE / "prefect_fidelity"
DEFAULT_MIRROR = Path("/work/.mirror/PrefectHQ+prefect/repo")
DEFAULT_FILES = ["test_tasks.py", "test_flows.py", "test_futures.py", "test_states.py",
                 "test_cache_policies.py", "test_task_runners.py", "test_task_engine.py",
                 "test_flow_engine.py"]
# Prefect's test-suite fixture modules: parsed (never run) to follow fixture dependencies.
PREFECT_FIXTURE_FILES = ["tests/conftest.py", "tests/fixtures/api.py", "tests/fixtures/client.py",
                         "tests/fixtures/collections_registry.py", "tests/fixtures/database.py",
                         "tests/fixtures/deprecation.py", "tests/fixtures/docker.py",
                         "tests/fixtures/events.py", "tests/fixtures/logging.py",
                         "tests/fixtures/storage.py", "tests/fixtures/telemetry.py",
                         "tests/fixtures/time.py", "src/prefect/testing/fixtures.py"]
# Fixtures our conftest provides (generic, no server) or pytest/anyio builtins.
PROVIDED_FIXTURES = {"caplog", "ignore_prefect_deprecation_warnings", "tests_dir", "tmp_path", "tmpdir",
                     "monkeypatch", "capsys", "capfd", "request", "recwarn", "tmp_path_factory",
                     "anyio_backend", "pytestconfig", "capsysbinary"}

# ---------------------------------------------------------------------------------------------
# EXCLUSION_RULES: (category, kind, pattern, reason). The first matching rule names the reason.
#   kind "module":  a referenced name resolves (through the file's imports) to this Prefect module
#                   or below it, e.g. `temporary_settings` -> prefect.settings.temporary_settings
#   kind "name":    a referenced fully-qualified Prefect name equals the pattern
#   kind "qregex":  a referenced fully-qualified Prefect name matches this regex
#   kind "ident":   a bare identifier or attribute name used anywhere (regex, full match)
#   kind "pattr":   a private attribute (`runner._executor`, not on self/cls) (regex, full match)
#   kind "attr":    an attribute name (`x.delay(...)`, `flow.serve`) (regex, full match)
#   kind "fixture": a requested Prefect conftest fixture (directly or through other fixtures) (regex)
#   kind "fixmod":  a requested Prefect conftest fixture defined in this Prefect file
#   kind "patch":   monkeypatch.setattr / mock.patch(.object) / patch.dict aimed at a Prefect path
#   kind "mark":    a pytest mark with this name on the test / class / module
# ---------------------------------------------------------------------------------------------
EXCLUSION_RULES: list[tuple[str, str, str, str]] = [
    ("server", "module", "prefect.server", "uses Prefect's server (models, schemas, API, database)"),
    ("server", "fixmod", "tests/fixtures/database.py", "requests a server-database fixture"),
    ("server", "fixmod", "tests/fixtures/api.py", "requests the server's ASGI app / HTTP client"),
    ("server", "fixture", r"use_hosted_api_server|hosted_api_server|app|test_client|client|sync_client|"
     r"hosted_api_client", "needs a running Prefect API server"),
    ("server", "mark", "clear_db", "marked as needing Prefect's database"),
    ("server", "mark", "enable_api_log_handler", "sends logs to Prefect's API"),
    ("api-client", "fixture", r"prefect_client|sync_prefect_client|in_memory_prefect_client|cloud_client",
     "reads or writes runs through Prefect's API client"),
    ("api-client", "fixmod", "tests/fixtures/client.py", "requests a Prefect API-client fixture"),
    ("api-client", "module", "prefect.client", "uses Prefect's API client or its schemas"),
    ("api-client", "ident", r"get_client|PrefectClient|SyncPrefectClient", "uses Prefect's API client"),
    ("api-client", "name", "prefect.testing.utilities.get_most_recent_flow_run", "reads runs from the API"),
    ("api-client", "ident", r"read_flow_run|read_task_run|read_flow_runs|read_task_runs|read_logs|"
     r"create_flow_run|set_flow_run_state|set_task_run_state|create_task_run|read_deployment",
     "calls Prefect API-client methods"),
    ("blocks", "module", "prefect.blocks", "uses Prefect blocks"),
    ("blocks", "module", "prefect.filesystems", "uses storage blocks (LocalFileSystem, ...)"),
    ("blocks", "fixmod", "tests/fixtures/storage.py", "requests a storage-block fixture"),
    ("settings", "module", "prefect.settings", "reads or sets Prefect settings (temporary_settings, PREFECT_*)"),
    ("settings", "ident", r"PREFECT_[A-Z0-9_]+|temporary_settings", "reads or sets Prefect settings"),
    ("events", "module", "prefect.events", "emits or asserts Prefect events"),
    ("events", "fixture", r"events_pipeline|emitting_events_pipeline|asserting_events_worker|"
     r"asserting_and_emitting_events_worker|reset_worker_events|events_server|events_api_url|"
     r"mock_should_emit_events|workspace_events_client|clean_asserting_events_client",
     "asserts on Prefect events (events worker / pipeline)"),
    ("events", "fixmod", "tests/fixtures/events.py", "requests an events fixture"),
    ("deployments", "module", "prefect.deployments", "deploys to a Prefect server (deployments)"),
    ("deployments", "module", "prefect.runner", "serves flows through Prefect's runner"),
    ("deployments", "module", "prefect.workers", "uses Prefect workers"),
    ("deployments", "module", "prefect.docker", "builds Docker images for deployments"),
    ("deployments", "module", "prefect.schedules", "deployment schedules"),
    ("deployments", "module", "prefect.task_worker", "background tasks served by a task worker"),
    ("deployments", "fixmod", "tests/fixtures/docker.py", "requests a Docker fixture"),
    ("deployments", "fixmod", "tests/fixtures/collections_registry.py", "requests a worker-registry fixture"),
    ("deployments", "fixture", r"work_pool.*|work_queue.*|deployment.*|.*work_pool|concurrency_limit_v2",
     "requests a work pool / deployment made on the server"),
    ("deployments", "attr", r"to_deployment|ato_deployment|deploy|serve|aserve|from_source|afrom_source|"
     r"apply_async|delay|run_deployment|load_flow_from_flow_run",
     "deploys/serves flows or submits background tasks (needs the server)"),
    ("deployments", "name", "prefect.flows.safe_load_flow_from_entrypoint",
     "deployment tooling: reads a flow's metadata from source for `prefect deploy`"),
    ("deployments", "name", "prefect.flows.load_flow_arguments_from_entrypoint",
     "deployment tooling: reads a flow's metadata from source for `prefect deploy`"),
    ("deployments", "name", "prefect.flows.load_function_and_convert_to_flow",
     "deployment tooling: reads a flow's metadata from source for `prefect deploy`"),
    ("deployments", "name", "prefect.flows.load_placeholder_flow", "deployment tooling"),
    ("deployments", "name", "prefect.futures.PrefectDistributedFuture", "futures of server-side task runs"),
    ("deployments", "name", "prefect.futures.PrefectFlowRunFuture", "futures of server-side flow runs"),
    ("deployments", "name", "prefect.task_runners.PrefectTaskRunner", "runs tasks through task workers"),
    ("internals", "module", "prefect._internal", "uses Prefect internals (prefect._internal)"),
    ("internals", "qregex", r"prefect(\.\w+)*\._(?!_)\w*(\..*)?", "uses a private Prefect name (leading underscore)"),
    ("internals", "module", "prefect._experimental", "uses Prefect's experimental internals"),
    ("internals", "module", "prefect.experimental", "uses Prefect's experimental internals"),
    ("internals", "module", "prefect.task_engine", "calls the task engine's entry points "
     "(run_task_sync, SyncTaskRunEngine...): users call the task itself"),
    ("internals", "module", "prefect.flow_engine", "calls the flow engine's entry points "
     "(run_flow_sync, FlowRunEngine...): users call the flow itself"),
    ("internals", "module", "prefect.engine", "uses Prefect's engine module"),
    ("internals", "module", "prefect.results", "uses Prefect's result-store internals (ResultStore, ResultRecord)"),
    ("internals", "module", "prefect.serializers", "uses Prefect's serializer classes"),
    ("internals", "module", "prefect.locking", "uses Prefect's lock managers"),
    ("internals", "module", "prefect.concurrency", "uses Prefect's concurrency-limit service"),
    ("internals", "module", "prefect.telemetry", "uses Prefect's telemetry"),
    ("internals", "module", "prefect.types", "uses Prefect's internal types"),
    ("internals", "module", "prefect.logging", "uses Prefect's logging internals (handlers, loggers)"),
    ("internals", "module", "prefect.utilities.engine", "uses Prefect's engine utilities"),
    ("internals", "module", "prefect.utilities.asyncutils", "uses Prefect's async utilities"),
    ("internals", "module", "prefect.utilities.callables", "uses Prefect's callables utilities"),
    ("internals", "module", "prefect.utilities.hashing", "uses Prefect's hashing utilities"),
    ("internals", "module", "prefect.utilities.importtools", "uses Prefect's import utilities"),
    ("internals", "module", "prefect.utilities.processutils", "uses Prefect's process utilities"),
    ("internals", "module", "prefect.utilities.collections", "uses Prefect's collection utilities"),
    ("internals", "module", "prefect.testing", "uses Prefect's test-suite helpers"),
    ("internals", "fixmod", "tests/fixtures/time.py", "patches Prefect's clock (advance_time/frozen_time)"),
    ("internals", "fixmod", "tests/fixtures/telemetry.py", "requests a telemetry fixture"),
    ("internals", "fixmod", "tests/fixtures/logging.py", "requests Prefect's API-log-handler fixture"),
    ("internals", "fixmod", "src/prefect/testing/fixtures.py", "requests a Prefect testing fixture"),
    ("internals", "fixmod", "tests/conftest.py", "requests a Prefect test-suite fixture we do not provide"),
    ("internals", "ident", r"_experimental.*|experimental_.*", "uses experimental internals"),
    ("mocks-internals", "patch", "prefect", "patches/mocks Prefect internals (monkeypatch/mock.patch)"),
    ("internals", "pattr", r"_(?!_)\w*", "reads or sets a private attribute of an object (runner._executor, ...)"),
]
# Identifiers after which a `monkeypatch.setattr(...)`-style call aims at its first argument.
PATCH_CALLS = {"setattr", "patch", "object", "dict", "delattr", "setitem", "create_autospec"}
# Public names living in modules the "module" rules exclude: using them is fine.
PUBLIC_MODULES = {"prefect.logging", "prefect.utilities", "prefect.utilities.collections", "prefect.testing",
                  "prefect.testing.utilities"}
PUBLIC_NAMES = {"prefect.logging.get_run_logger", "prefect.utilities.collections.quote",
                "prefect.testing.utilities.exceptions_equal", "prefect.client.schemas.objects.StateType"}

# Autouse fixtures that only set up Prefect's environment (not what the tests check): the copied
# file gets `yield` as their body. (file, class, fixture) -> why.
NEUTRALIZED_FIXTURES = {
    ("test_task_runners.py", "TestThreadPoolTaskRunner", "default_storage_setting"):
        "points Prefect's default result storage at a LocalFileSystem block (nbflow stores results itself)",
    ("test_task_runners.py", "TestProcessPoolTaskRunner", "default_storage_setting"):
        "points Prefect's default result storage at a LocalFileSystem block (nbflow stores results itself)",
}


def neutralize(text: str, file: str) -> str:
    """Replace the body of each NEUTRALIZED_FIXTURES fixture of this file by `yield`."""
    wanted = {(c, f) for (fl, c, f) in NEUTRALIZED_FIXTURES if fl == file}
    if not wanted:
        return text
    lines = text.splitlines(keepends=True)
    spans = []
    for cls in ast.parse(text).body:
        if isinstance(cls, ast.ClassDef):
            for fn in cls.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and (cls.name, fn.name) in wanted:
                    first = fn.body[0]
                    indent = " " * first.col_offset
                    spans.append((first.lineno - 1, fn.end_lineno, f"{indent}yield  # neutralized by nbflow's harness\n"))
    for start, end, new in sorted(spans, reverse=True):
        lines[start:end] = [new]
    return "".join(lines)


@dataclass
class Scope:
    """A test file or a test class: its fixtures and helpers by name."""
    fixtures: dict[str, "Fn"] = field(default_factory=dict)
    helpers: dict[str, "Fn"] = field(default_factory=dict)
    autouse: list[str] = field(default_factory=list)
    marks: set[str] = field(default_factory=set)
    usefixtures: list[str] = field(default_factory=list)
    parent: "Scope | None" = None


@dataclass
class Fn:
    name: str
    params: list[str]
    refs: set[str]          # identifiers / dotted names / "patch:<target>" / "ident:<name>"
    marks: set[str]
    usefixtures: list[str]
    scope: Scope
    origin: str = ""        # for Prefect conftest fixtures: the file


# ----------------------------------------------------------------------------- static analysis
def _imports(tree: ast.Module) -> dict[str, str]:
    """local name -> fully-qualified name, for every import in the file (any depth)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    names[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _refs(nodes: list[ast.AST], imports: dict[str, str]) -> set[str]:
    refs: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name):
                refs.add("ident:" + node.id)
                if node.id in imports:
                    refs.add("q:" + imports[node.id])
            elif isinstance(node, ast.Attribute):
                refs.add("ident:" + node.attr)
                refs.add("attr:" + node.attr)
                if re.match(r"_(?!_)", node.attr) and not (isinstance(node.value, ast.Name)
                                                          and node.value.id in ("self", "cls")):
                    refs.add("pattr:" + node.attr)
                dotted = _dotted(node)
                if dotted:
                    head, _, rest = dotted.partition(".")
                    if head in imports:
                        refs.add("q:" + imports[head] + ("." + rest if rest else ""))
                    if head in ("self", "cls") and rest:
                        refs.add("self:" + rest.split(".")[0])
            elif isinstance(node, ast.Call):
                func = _dotted(node.func) or ""
                last = func.rsplit(".", 1)[-1]
                if last in PATCH_CALLS and ("monkeypatch" in func or "patch" in func or "mock" in func
                                            or last == "create_autospec") and node.args:
                    target = node.args[0]
                    if isinstance(target, ast.Constant) and isinstance(target.value, str):
                        refs.add("patch:" + target.value)
                    else:
                        dotted = _dotted(target)
                        if dotted and dotted.split(".")[0] in imports:
                            head, _, rest = dotted.partition(".")
                            refs.add("patch:" + imports[head] + ("." + rest if rest else ""))
                if func.endswith("usefixtures"):
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            refs.add("fixture:" + arg.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"prefect(\.[A-Za-z_]\w*)+", node.value):
                refs.add("patch:" + node.value)  # e.g. mock.patch("prefect.x.y") via a variable
    return refs


def _marks(decorators: list[ast.expr]) -> tuple[set[str], list[str]]:
    marks, use = set(), []
    for dec in decorators:
        text = ast.unparse(dec)
        m = re.match(r"pytest\.mark\.(\w+)", text)
        if m:
            marks.add(m.group(1))
            if m.group(1) == "usefixtures" and isinstance(dec, ast.Call):
                use += [a.value for a in dec.args if isinstance(a, ast.Constant)]
    return marks, use


def _is_fixture(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[bool, bool, str]:
    for dec in fn.decorator_list:
        text = ast.unparse(dec)
        if "fixture" in text:
            name = fn.name
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        name = kw.value.value
            return True, "autouse=True" in text, name
    return False, False, fn.name


def _fn(node: ast.FunctionDef | ast.AsyncFunctionDef, imports: dict[str, str], scope: Scope) -> Fn:
    marks, use = _marks(node.decorator_list)
    params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
    return Fn(node.name, params, _refs([node], imports), marks, use, scope)


def _scan_scope(body: list[ast.stmt], imports: dict[str, str], scope: Scope,
                tests: list[tuple[str, Fn]], prefix: str) -> None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            is_fx, auto, name = _is_fixture(node)
            fn = _fn(node, imports, scope)
            if is_fx:
                scope.fixtures[name] = fn
                if auto:
                    scope.autouse.append(name)
            elif node.name.startswith("test"):
                tests.append((prefix + node.name, fn))
            else:
                scope.helpers[node.name] = fn
        elif isinstance(node, ast.ClassDef):
            marks, use = _marks(node.decorator_list)
            if node.name.startswith("Test"):
                inner = Scope(marks=marks, usefixtures=use, parent=scope)
                _scan_scope(node.body, imports, inner, tests, prefix + node.name + "::")
            else:
                scope.helpers[node.name] = Fn(node.name, [], _refs([node], imports), set(), [], scope)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    if target.id == "pytestmark":
                        marks, use = _marks(list(node.value.elts) if isinstance(node.value, (ast.List, ast.Tuple))
                                            else [node.value])
                        scope.marks |= marks
                        scope.usefixtures += use
                    else:
                        scope.helpers[target.id] = Fn(target.id, [], _refs([node], imports), set(), [], scope)


def parse_conftest_fixtures(sources: dict[str, str]) -> dict[str, Fn]:
    fixtures: dict[str, Fn] = {}
    for origin, text in sources.items():
        tree = ast.parse(text)
        imports = _imports(tree)
        scope = Scope()
        _scan_scope(tree.body, imports, scope, [], "")
        for name, fn in scope.fixtures.items():
            fn.origin = origin
            fixtures.setdefault(name, fn)
    return fixtures


def _match(rule: tuple[str, str, str, str], refs: set[str], fixtures: list[tuple[str, str]],
           marks: set[str]) -> str | None:
    category, kind, pattern, reason = rule
    if kind == "module":
        for ref in refs:
            q = ref[2:]
            if ref.startswith("q:") and q not in PUBLIC_MODULES \
                    and not any(q == n or q.startswith(n + ".") for n in PUBLIC_NAMES):
                if q == pattern or q.startswith(pattern + "."):
                    return q
    elif kind == "qregex":
        for ref in refs:
            if ref.startswith("q:") and re.fullmatch(pattern, ref[2:]):
                return ref[2:]
    elif kind == "name":
        for ref in refs:
            if ref.startswith("q:") and (ref[2:] == pattern or ref[2:].startswith(pattern + ".")):
                return ref[2:]
    elif kind == "ident":
        for ref in refs:
            if ref.startswith("ident:") and re.fullmatch(pattern, ref[6:]):
                return ref[6:]
    elif kind == "attr":
        for ref in refs:
            if ref.startswith("attr:") and re.fullmatch(pattern, ref[5:]):
                return ref[5:]
    elif kind == "pattr":
        for ref in refs:
            if ref.startswith("pattr:") and re.fullmatch(pattern, ref[6:]):
                return ref[6:]
    elif kind == "fixture":
        for name, origin in fixtures:
            if origin and re.fullmatch(pattern, name):
                return name
    elif kind == "fixmod":
        for name, origin in fixtures:
            if origin == pattern:
                return name
    elif kind == "patch":
        for ref in refs:
            if ref.startswith("patch:") and (ref[6:] == pattern or ref[6:].startswith(pattern + ".")):
                return ref[6:]
    elif kind == "mark":
        if pattern in marks:
            return pattern
    return None


def classify_file(text: str, file: str, conftest: dict[str, Fn]) -> dict[str, str | None]:
    """test key (`file::Class::test`) -> exclusion reason (`category: reason [evidence]`) or None."""
    tree = ast.parse(text)
    imports = _imports(tree)
    module = Scope()
    tests: list[tuple[str, Fn]] = []
    _scan_scope(tree.body, imports, module, tests, f"{file}::")
    out: dict[str, str | None] = {}
    for key, test in tests:
        refs: set[str] = set()
        marks: set[str] = set(test.marks)
        fixtures: list[tuple[str, str]] = []   # (name, origin): origin "" for fixtures of the file
        seen_fx: set[str] = set()
        seen_helpers: set[int] = set()
        pending_fx = [p for p in test.params if p not in ("self", "cls")] + list(test.usefixtures)
        scope: Scope | None = test.scope
        while scope is not None:
            pending_fx += scope.autouse + scope.usefixtures
            marks |= scope.marks
            scope = scope.parent
        work_fns = [test]
        while work_fns or pending_fx:
            while pending_fx:
                name = pending_fx.pop()
                if name in seen_fx:
                    continue
                seen_fx.add(name)
                scope, fn = test.scope, None
                while scope is not None and fn is None:
                    fn = scope.fixtures.get(name)
                    scope = scope.parent
                if fn is not None:
                    fixtures.append((name, ""))
                    work_fns.append(fn)
                elif name in PROVIDED_FIXTURES:
                    continue
                elif name in conftest:
                    fixtures.append((name, conftest[name].origin))
                    work_fns.append(conftest[name])
            while work_fns:
                fn = work_fns.pop()
                if id(fn) in seen_helpers:
                    continue
                seen_helpers.add(id(fn))
                refs |= fn.refs
                marks |= fn.marks
                pending_fx += [p for p in fn.params if p not in ("self", "cls", "request")] + fn.usefixtures
                pending_fx += [r[8:] for r in fn.refs if r.startswith("fixture:")]
                for ref in fn.refs:
                    if ref.startswith("ident:") or ref.startswith("self:"):
                        name = ref.split(":", 1)[1]
                        scope = fn.scope if ref.startswith("self:") or fn.origin == "" else None
                        while scope is not None:
                            helper = scope.helpers.get(name)
                            if helper is not None and not fn.origin:
                                work_fns.append(helper)
                                break
                            scope = scope.parent
        reason = None
        # a requested fixture or a mark names the reason first (a fixture such as events_pipeline
        # also references the server in its body; "events" is the better label)
        for rule in sorted(EXCLUSION_RULES, key=lambda r: r[1] not in ("fixture", "fixmod", "mark")):
            evidence = _match(rule, refs, fixtures, marks)
            if evidence:
                reason = f"{rule[0]}: {rule[3]} [{evidence}]"
                break
        out[key] = reason
    return out


# ----------------------------------------------------------------------------- running
def git_show(repo: Path, path: str) -> str:
    if (repo / ".git").exists() or not (repo / "HEAD").exists():
        file = repo / path
        if file.exists():
            return file.read_text()
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def prefect_version(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %cs"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def run_file(file: str, work: Path, args: argparse.Namespace, exclude: dict[str, str]) -> dict:
    """Run one test file; if a test kills the pytest process (a signal, os._exit), record it as
    failed ("crashed the test process") and run the rest of the file again, up to --max-restarts."""
    results = work / f"results-{file}.jsonl"
    exclude_path = work / f"exclude-{file}.json"
    exclude_path.write_text(json.dumps(exclude))
    done_path = work / f"done-{file}.json"
    done_path.write_text("[]")
    started = time.monotonic()
    killed = False
    tails: list[str] = []
    abnormal: list[dict] = []
    restarts = 0
    done_before = 0
    seen_records = 0
    while True:
        home = tempfile.mkdtemp(prefix="nbflow-fidelity-home-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_"))}
        env.update({"PYTHONPATH": f"{work / 'tests'}:{work}:{REPO}", "NBFLOW_HOME": home,
                    "FIDELITY_EXCLUDE": str(exclude_path), "FIDELITY_RESULTS": str(results),
                    "FIDELITY_DONE": str(done_path),
                    "NBFLOW_LOGGING_LEVEL": "INFO", "PYTHONDONTWRITEBYTECODE": "1"})
        cmd = [args.python, "-m", "pytest", f"tests/{file}", "-p", "no:cacheprovider", "-q", "-rN",
               "--no-header", "-c", str(work / "pytest.ini"), "--rootdir", str(work),
               f"--timeout={args.timeout}", "-o", "timeout_method=signal", "-W", "default",
               "-p", "no:randomly", "-p", "no:xdist"]
        if args.k:
            cmd += ["-k", args.k]
        remaining = args.file_timeout - (time.monotonic() - started)
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=max(remaining, 1), stdin=subprocess.DEVNULL)
            tails.append((proc.stdout + proc.stderr)[-3000:])
            code = proc.returncode
        except subprocess.TimeoutExpired as exc:
            killed = True
            out = exc.stdout or ""
            tails.append((out.decode(errors="replace") if isinstance(out, bytes) else out)[-3000:])
            code = None
        finally:
            shutil.rmtree(home, ignore_errors=True)
        records = _read_records(results)
        ended = [r for r in records[seen_records:] if r["outcome"] == "session-finished"]
        seen_records = len(records)
        # a clean end: pytest's exit status 0 (all passed), 1 (some failed) or 5 (none collected);
        # 2/3/4 (interrupted, internal error, usage error) or a dead process: resume the rest
        if killed or (ended and ended[-1].get("exitstatus") in (0, 1, 5)) or restarts >= args.max_restarts:
            break
        # the process died: the test that started last and has no result killed it; run the rest
        abnormal.append({"returncode": code, "tail": tails[-1][-1500:]})
        finished = {r["nodeid"] for r in records if r["outcome"] in ("passed", "failed", "skipped", "xfailed")}
        started_ids = [r["nodeid"] for r in records if r["outcome"] == "started"]
        crashed = [n for n in started_ids if n not in finished]
        if crashed:
            with open(results, "a") as fh:
                fh.write(json.dumps({"nodeid": crashed[-1], "outcome": "failed", "when": "call",
                                     "error": f"crashed the test process (exit code {code})"}) + "\n")
        done = finished | set(crashed)
        if len(done) <= done_before:  # no progress: give up (the rest count as "no result recorded")
            break
        done_before = len(done)
        done_path.write_text(json.dumps(sorted(done)))
        restarts += 1
    records = [r for r in _read_records(results) if r["outcome"] not in ("started", "session-finished")]
    return {"file": file, "records": records, "seconds": round(time.monotonic() - started, 1),
            "returncode": code, "killed": killed, "restarts": restarts, "abnormal_exits": abnormal, "tail": "\n".join(tails)[-4000:]}


def _read_records(path: Path) -> list[dict]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def prepare(work: Path, texts: dict[str, str], generic: str) -> None:
    """work/tests: the Prefect test files, our conftest and shim, a `regex` stand-in; work/pytest.ini."""
    tests = work / "tests"
    tests.mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    shutil.copy(SUPPORT / "conftest.py", tests / "conftest.py")
    shutil.copy(SUPPORT / "shim.py", tests / "shim.py")
    # `regex` (a third-party superset of `re` that Prefect's tests import as `re`): the standard
    # module is enough for their patterns when it is not installed.
    (tests / "regex.py").write_text("from re import *  # noqa\nfrom re import escape, compile  # noqa\n")
    (work / "pytest.ini").write_text("[pytest]\nanyio_mode = auto\nfilterwarnings =\n    default\n")
    if generic:
        (tests / "generic_tasks.py").write_text(generic)
    for file, text in texts.items():
        (tests / file).write_text(text)


def postpone_annotations(text: str) -> str:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    at = 0
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None),
                                                                         ast.Constant):
        at = tree.body[0].end_lineno
    return "".join(lines[:at] + ["from __future__ import annotations\n"] + lines[at:])


def run_files(files: list[str], work: Path, args: argparse.Namespace,
              analysis: dict[str, dict[str, str | None]]) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    order = sorted(files, key=lambda f: -len(analysis[f]))  # the biggest first: parallel runs end together
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        jobs = [pool.submit(run_file, f, work, args, {k: v for k, v in analysis[f].items() if v}) for f in order]
        for job in concurrent.futures.as_completed(jobs):
            run = job.result()
            runs[run["file"]] = run
            print(f"  ran {run['file']} in {run['seconds']} s", file=sys.stderr, flush=True)
            if args.verbose:
                print(run["tail"], file=sys.stderr)
    return runs


# ----------------------------------------------------------------------------- report
def bucket_of(error: str) -> str:
    m = re.search(r"nbflow lacks (prefect[\w.]*)", error) or re.search(r"NbflowLacks\[(prefect[\w.]*)\]", error)
    if m:
        return f"nbflow lacks {m.group(1)}"
    text = error.strip()
    text = re.sub(r"0x[0-9a-f]+", "0x…", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>", text)
    text = re.sub(r"\b[0-9a-f]{16,}\b", "<hex>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    text = re.sub(r"/tmp/\S+", "<tmp>", text)
    if text.startswith("Failed: Timeout"):
        return "Failed: Timeout (per-test timeout)"
    if "Regex pattern did not match" in text:
        return text[:200]
    if text.startswith("AssertionError") or text.startswith("assert "):
        return text[:110]
    return text[:140]


def _outcomes(run: dict, static: dict[str, str | None], filtered: bool = False) -> dict:
    """Per pytest item of one file run: outcome and first error line; excluded items; collection errors."""
    outcome: dict[str, str] = {}
    error: dict[str, str] = {}
    collected: set[str] = set()
    excluded: dict[str, str] = {}
    collect_errors: list[str] = []
    for rec in run["records"]:
        node = rec["nodeid"].replace("tests/", "", 1)
        kind = rec["outcome"]
        if kind == "collected":
            collected.add(node)
        elif kind == "excluded":
            excluded[node] = rec["reason"]
        elif kind == "collect-error":
            collect_errors.append(rec.get("error", ""))
        elif kind == "failed":
            if outcome.get(node) != "failed":
                outcome[node] = "failed"
                when = rec.get("when")
                error[node] = (f"[{when}] " if when != "call" else "") + rec.get("error", "")
        elif node not in outcome:
            outcome[node] = kind
            if kind != "passed":
                error[node] = rec.get("error", "")
    # statically applicable tests pytest never collected (a module-level use of a missing name, a
    # collection error): applicable and failing
    seen = {n.split("[", 1)[0] for n in collected | set(excluded)}
    for key, reason in static.items() if (collect_errors or not filtered) else ():
        if reason is None and key not in seen:
            collected.add(key)
            outcome[key] = "failed"
            error[key] = ("not collected: " + collect_errors[0]) if collect_errors else \
                "not collected (module-level use of a name nbflow lacks?)"
    for node in collected:
        if node not in outcome:
            outcome[node] = "failed"
            error[node] = ("no result (the file's run was killed by --file-timeout)" if run["killed"]
                           else "no result recorded")
    return {"outcome": outcome, "error": error, "collected": collected, "excluded": excluded,
            "collect_errors": collect_errors}


def summarize(files: list[str], analysis: dict[str, dict[str, str | None]], runs: dict[str, dict],
              meta: dict, diagnostic: dict[str, dict] | None = None) -> dict:
    diagnostic = diagnostic or {}
    per_file = {}
    excluded_by_cat: collections.Counter = collections.Counter()
    excluded_by_reason: collections.Counter = collections.Counter()
    failures: list[dict] = []
    diag_failures: list[dict] = []
    tot = collections.Counter()
    for file in files:
        run = runs[file]
        filtered = bool(meta.get("k"))
        main = _outcomes(run, analysis[file], filtered)
        diag = _outcomes(diagnostic[file], analysis[file], filtered) if file in diagnostic else None
        if diag is not None and diag["collected"] and main["collect_errors"]:
            # the file did not import: count its items as the diagnostic run collected them
            for node in diag["collected"]:
                main["outcome"][node] = "failed"
                main["error"][node] = "not collected: " + main["collect_errors"][0]
            main["collected"] = set(diag["collected"])
            main["excluded"] = diag["excluded"]
        counts = collections.Counter(main["outcome"][n] for n in main["collected"])
        skipped = counts["skipped"] + counts["xfailed"]
        applicable = len(main["collected"]) - skipped
        passed = counts["passed"]
        for reason in main["excluded"].values():
            excluded_by_cat[reason.split(":", 1)[0]] += 1
            excluded_by_reason[re.sub(r" \[.*\]$", "", reason)] += 1
        for node in sorted(main["collected"]):
            if main["outcome"][node] == "failed":
                failures.append({"test": node, "error": main["error"][node], "bucket": bucket_of(main["error"][node])})
        info = {"passed": passed, "applicable": applicable, "failed": applicable - passed,
                "skipped_by_test": skipped, "excluded": len(main["excluded"]),
                "pass_rate": round(100 * passed / applicable, 1) if applicable else None,
                "static_tests": len(analysis[file]),
                "static_excluded": sum(1 for r in analysis[file].values() if r),
                "seconds": run["seconds"], "killed": run["killed"], "restarts": run.get("restarts", 0),
                "returncode": run.get("returncode"), "abnormal_exits": run.get("abnormal_exits", []),
                "collect_errors": main["collect_errors"][:3]}
        if diag is not None:
            dcounts = collections.Counter(diag["outcome"][n] for n in diag["collected"])
            dapplicable = len(diag["collected"]) - dcounts["skipped"] - dcounts["xfailed"]
            info["diagnostic"] = {"passed": dcounts["passed"], "applicable": dapplicable,
                                  "collect_errors": diag["collect_errors"][:3]}
            tot.update(diag_passed=dcounts["passed"], diag_applicable=dapplicable)
            for node in sorted(diag["collected"]):
                if diag["outcome"][node] == "failed":
                    diag_failures.append({"test": node, "error": diag["error"][node],
                                          "bucket": bucket_of(diag["error"][node])})
        else:
            tot.update(diag_passed=passed, diag_applicable=applicable)
            diag_failures += [f for f in failures if f["test"].startswith(file + "::")]
        per_file[file] = info
        tot.update(passed=passed, applicable=applicable, excluded=len(main["excluded"]), skipped=skipped)

    def buckets_of(items: list[dict]) -> list[dict]:
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for f in items:
            groups[f["bucket"]].append(f["test"])
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [{"bucket": b, "count": len(t), "examples": t[:2]} for b, t in ordered]

    overall = {"passed": tot["passed"], "applicable": tot["applicable"],
               "pass_rate": round(100 * tot["passed"] / tot["applicable"], 1) if tot["applicable"] else None,
               "excluded": tot["excluded"], "skipped_by_test": tot["skipped"]}
    if diagnostic:
        overall["if_collection_errors_fixed"] = {
            "passed": tot["diag_passed"], "applicable": tot["diag_applicable"],
            "pass_rate": round(100 * tot["diag_passed"] / tot["diag_applicable"], 1) if tot["diag_applicable"] else None}
    return {
        "meta": meta,
        "overall": overall,
        "per_file": per_file,
        "excluded_by_category": dict(excluded_by_cat.most_common()),
        "excluded_by_reason": dict(excluded_by_reason.most_common()),
        "failure_buckets": buckets_of(failures),
        # the same with the files that failed to import replaced by their diagnostic run: what
        # the tests fail with once they are collected
        "failure_buckets_behind_collection_errors": buckets_of(diag_failures) if diagnostic else None,
        "failures": failures,
        "failures_behind_collection_errors": diag_failures if diagnostic else None,
        "exclusions": {f: {k: v for k, v in analysis[f].items() if v} for f in files},
    }


def print_report(report: dict, top: int) -> None:
    o = report["overall"]
    print(f"Prefect fidelity ({report['meta']['prefect']}, {report['meta']['utc']}): "
          f"{o['passed']}/{o['applicable']} applicable tests pass = {o['pass_rate']}% "
          f"(excluded {o['excluded']}, skipped by the tests {o['skipped_by_test']})")
    fixed = o.get("if_collection_errors_fixed")
    if fixed:
        print(f"  diagnostic, with the files that failed to import collected (postponed annotations): "
              f"{fixed['passed']}/{fixed['applicable']} = {fixed['pass_rate']}%")
    print(f"{'file':<26}{'passed':>8}{'applic.':>9}{'rate':>8}{'excl.':>7}{'skip':>6}{'secs':>7}")
    for file, f in report["per_file"].items():
        rate = f"{f['pass_rate']}%" if f["pass_rate"] is not None else "-"
        flag = ("  KILLED" if f["killed"] else "") + (f"  (pytest died {f['restarts']}x; resumed)"
                                                       if f.get("restarts") else "")
        print(f"{file:<26}{f['passed']:>8}{f['applicable']:>9}{rate:>8}{f['excluded']:>7}"
              f"{f['skipped_by_test']:>6}{f['seconds']:>7}{flag}")
        for err in f["collect_errors"][:1]:
            print(f"    collection error: {err}")
        if "diagnostic" in f:
            d = f["diagnostic"]
            print(f"    diagnostic (postponed annotations): {d['passed']}/{d['applicable']} pass"
                  + (f"; still: {d['collect_errors'][0]}" if d["collect_errors"] else ""))
    print("excluded by category: " + ", ".join(f"{k} {v}" for k, v in report["excluded_by_category"].items()))
    buckets = report["failure_buckets"]
    if report.get("failure_buckets_behind_collection_errors"):
        print("collection errors: " + "; ".join(f"{b['count']} {b['bucket']}" for b in buckets
                                                if b["bucket"].startswith("not collected")))
        buckets = report["failure_buckets_behind_collection_errors"]
        print(f"top failure buckets ({len(buckets)} buckets; files that failed to import counted from "
              f"their diagnostic run):")
    else:
        print(f"top failure buckets ({len(buckets)} buckets):")
    for b in buckets[:top]:
        print(f"  {b['count']:>4}  {b['bucket']}")
        print(f"        e.g. {' | '.join(b['examples'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefect-repo", type=Path, default=DEFAULT_MIRROR,
                        help="a Prefect checkout or bare mirror (default: %(default)s)")
    parser.add_argument("--files", nargs="+", default=DEFAULT_FILES, help="Prefect test files (under tests/)")
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--list-failures", type=Path, default=None,
                        help="write every failing test id with its error line to this file")
    parser.add_argument("--jobs", type=int, default=2, help="files run in parallel (default 2)")
    parser.add_argument("--timeout", type=int, default=20, help="per-test timeout, seconds")
    parser.add_argument("--file-timeout", type=int, default=900, help="per-file run timeout, seconds")
    parser.add_argument("--max-restarts", type=int, default=20,
                        help="re-runs of a file after tests that kill the pytest process")
    parser.add_argument("--top", type=int, default=40, help="failure buckets printed")
    parser.add_argument("--python", default=str(REPO / ".venv/bin/python"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-diagnostic", action="store_true",
                        help="do not re-run files that fail to import with postponed annotations")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each file's pytest tail")
    args = parser.parse_args()
    args.files = [f if f.startswith("test") else f.split("/")[-1] for f in args.files]
    args.files = [f if f.endswith(".py") else f + ".py" for f in args.files]

    repo = args.prefect_repo
    if not repo.exists():
        print(f"No Prefect checkout at {repo}. Get one with:\n"
              f"  git clone --depth 1 https://github.com/PrefectHQ/prefect /tmp/prefect\n"
              f"and pass --prefect-repo /tmp/prefect", file=sys.stderr)
        return 2
    if not Path(args.python).exists():
        args.python = sys.executable

    work = Path(tempfile.mkdtemp(prefix="prefect-fidelity-"))
    try:
        conftest_sources = {}
        for path in PREFECT_FIXTURE_FILES:
            try:
                conftest_sources[path] = git_show(repo, path)
            except (subprocess.CalledProcessError, FileNotFoundError):
                pass
        conftest = parse_conftest_fixtures(conftest_sources)
        texts: dict[str, str] = {}
        analysis: dict[str, dict[str, str | None]] = {}
        for file in args.files:
            try:
                text = git_show(repo, f"tests/{file}")
            except (subprocess.CalledProcessError, FileNotFoundError):
                print(f"{file}: not found in {repo}", file=sys.stderr)
                return 2
            texts[file] = neutralize(text, file)
            analysis[file] = classify_file(texts[file], file, conftest)
        generic = ""
        try:
            generic = git_show(repo, "tests/generic_tasks.py")
        except (subprocess.CalledProcessError, FileNotFoundError):
            pass
        prepare(work, texts, generic)

        started = time.monotonic()
        runs = run_files(args.files, work, args, analysis)
        # A file that fails to import (e.g. a def-time annotation `Task[Any, Any]` on a class that is
        # not generic) counts every applicable test as failed. To show what lies behind, such files
        # run once more with `from __future__ import annotations` (annotations left unevaluated):
        # a diagnostic only, reported apart from the headline figure.
        broken = [f for f in args.files if not any(r["outcome"] in ("collected", "excluded")
                                                    for r in runs[f]["records"])]
        diagnostic: dict[str, dict] = {}
        if broken and not args.no_diagnostic:
            diag = work / "diagnostic"
            prepare(diag, {f: postpone_annotations(texts[f]) for f in broken}, generic)
            print(f"  diagnostic re-run (postponed annotations) of {', '.join(broken)}", file=sys.stderr)
            diagnostic = run_files(broken, diag, args, analysis)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
        except Exception:  # noqa: BLE001
            commit = "?"
        meta = {"utc": stamp, "prefect": f"Prefect tests at {prefect_version(repo)}", "nbflow_commit": commit,
                "files": args.files, "k": args.k, "timeout": args.timeout,
                "wall_seconds": round(time.monotonic() - started, 1),
                "rules": [{"category": c, "kind": k, "pattern": p, "reason": r} for c, k, p, r in EXCLUSION_RULES]}
        report = summarize(args.files, analysis, runs, meta, diagnostic)
        print_report(report, args.top)
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"prefect_fidelity-{stamp}.json"
        out.write_text(json.dumps(report, indent=1))
        print(f"full results: {out.relative_to(REPO)} (run took {meta['wall_seconds']} s)")
        if args.list_failures:
            listed = report["failures_behind_collection_errors"] or report["failures"]
            args.list_failures.write_text("".join(f"{f['test']}\t{f['error']}\n" for f in listed))
            print(f"failures listed in {args.list_failures}")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
