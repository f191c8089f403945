"""Loading flows from entrypoints by running their files (Prefect's load_flow_from_entrypoint and
Flow.from_source), Prefect 2's removed `Deployment`, and the engine not importing this layer."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import nbflow
from nbflow import Flow
from nbflow.errors import MissingFlowError, NbflowError, ScriptError

FLOWS = textwrap.dedent("""
    from nbflow import flow

    @flow(name="etl-flow")
    def etl(n: int = 1) -> int:
        return n * 2

    def plain(n: int = 1) -> int:
        return n

    if __name__ == "__main__":
        raise SystemExit("the __main__ block must not run when the flow is loaded")
""")


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("NBFLOW_API_URL", "NBFLOW_API_TOKEN", "NBFLOW_SERVER"):
        monkeypatch.delenv(name, raising=False)  # deployments go to the embedded store
    path = tmp_path / "code" / "flows.py"
    path.parent.mkdir()
    path.write_text(FLOWS)
    return path


def test_load_flow_from_entrypoint_runs_the_file_and_returns_its_flow(flow_file: Path) -> None:
    loaded = nbflow.load_flow_from_entrypoint(f"{flow_file}:etl")
    assert isinstance(loaded, Flow) and loaded.name == "etl-flow"
    assert loaded(n="4") == 8  # a working flow: its run is recorded
    assert nbflow.runs(flow_name="etl-flow")["state"].tolist() == ["Completed"]
    from nbflow.deployments import load_flow_from_entrypoint

    assert load_flow_from_entrypoint(f"{flow_file}:etl").name == "etl-flow"


@pytest.mark.parametrize(("name", "words"), [
    ("plain", "Function with name 'plain' is not a flow. Make sure that it is decorated with '@flow'."),
    ("nope", "Flow function with name 'nope' not found in"),
])
def test_an_entrypoint_that_names_no_flow(flow_file: Path, name: str, words: str) -> None:
    with pytest.raises(MissingFlowError, match=words.replace("(", r"\(").replace(".", r"\.")):
        nbflow.load_flow_from_entrypoint(f"{flow_file}:{name}")


def test_a_file_that_raises_while_loading_is_a_script_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(ScriptError, match="ModuleNotFoundError") as info:
        nbflow.load_flow_from_entrypoint(f"{broken}:etl")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_flow_from_source_loads_from_a_local_directory_and_deploys(flow_file: Path) -> None:
    loaded = Flow.from_source(flow_file.parent, "flows.py:etl")
    assert loaded.name == "etl-flow" and loaded(2) == 4
    deployment = loaded.deploy("nightly")  # through the hook the deployment layer registers
    assert deployment["entrypoint"] == f"{flow_file.resolve()}:etl" and deployment["flow_name"] == "etl-flow"


@pytest.mark.parametrize("source", ["https://github.com/org/repo.git", "git@github.com:org/repo.git"])
def test_flow_from_source_refuses_remote_code_and_points_at_deploy(source: str) -> None:
    with pytest.raises(NbflowError, match=r"local directory.*\.deploy\('name'\)"):
        Flow.from_source(source, "flows.py:etl")


def test_prefect_2s_deployment_class_is_refused_with_what_to_use_instead() -> None:
    with pytest.raises(ImportError, match=r"flow\.serve\(\)`, `flow\.deploy\(\)`"):
        from nbflow.deployments import Deployment  # noqa: F401


def test_the_engine_does_not_import_the_deployment_layer() -> None:
    engine = Path(nbflow.__file__).parent / "engine"
    for path in engine.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("nbflow.deployments") for n in names), path.name
