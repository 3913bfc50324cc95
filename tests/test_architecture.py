"""The layering rules of docs/architecture.md, checked on the source and on one real tuning call.

- no import circle among the product's modules (function-level imports included; imports for
  type checking only are not);
- lower layers (search spaces, the estimator registry) never import higher ones (rule 20);
- a module imports another package's underscore modules never (package-private stays private);
- no tracker typed ``Any`` and no SDK internals in the tool layer;
- a tuning call reaches its first MLflow write through at most 8 calls from the tool function
  (job dispatch counted once), its request through at most 3 types on the way to the loop.
"""

from __future__ import annotations

import ast
import re
import traceback
from pathlib import Path

import pytest
from mcp import Client

from tests.support import payload, template_db, tool_server, tool_settings  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mcp_server", "tools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in {getattr(test, "id", None), getattr(test, "attr", None)}


def _imports(name: str, path: Path) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = ".".join(base + ([child.module] if child.module else []))
                found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            strong(v)
    return found


def test_no_import_circle():
    assert _cycles() == []


def test_no_module_imports_another_packages_private_module():
    leaks = []
    for name, deps in GRAPH.items():
        for dep in deps:
            parts = dep.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if private is not None:
                owner = ".".join(parts[:private])
                if not (name == owner or name.startswith(owner + ".")):
                    leaks.append(f"{name} -> {dep}")
    assert leaks == []


# Rule 20: lower layers never import higher ones, not even lazily inside a function.
LOWER_LAYERS = {
    "mcp_server.search_space": ("mcp_server.estimators", "mcp_server.hyperparameter_tuning",
                                "mcp_server.training_pipeline", "tools"),
    "mcp_server.estimators": ("mcp_server.hyperparameter_tuning", "mcp_server.training_pipeline", "tools"),
}


def test_lower_layers_never_import_higher_ones():
    upward = [f"{name} -> {dep}" for name, deps in GRAPH.items() for lower, higher in LOWER_LAYERS.items()
              if name == lower or name.startswith(lower + ".")
              for dep in deps if any(dep == h or dep.startswith(h + ".") for h in higher)]
    assert upward == []


def test_trackers_are_typed_and_the_tool_layer_uses_no_sdk_internals():
    untyped = [f"{name}: {line.strip()}" for name, path in MODULES.items() for line in path.read_text().splitlines()
               if re.search(r"\btracker: Any\b", line)]
    internals = [name for name, path in MODULES.items() if name.startswith("tools") and "_tool_manager" in path.read_text()]
    assert untyped == [] and internals == []


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_a_tuning_call_reaches_mlflow_in_few_calls(tool_server, monkeypatch):
    from mcp_server.jobs import JobManager
    from mcp_server.mlflow_integration import MLflowExperimentTracker

    stacks: dict[str, list[traceback.FrameSummary]] = {}
    submit, create_run = JobManager.submit, MLflowExperimentTracker.create_run

    def recording_submit(self, *args, **kwargs):
        stacks.setdefault("submit", traceback.extract_stack())
        return submit(self, *args, **kwargs)

    def recording_create_run(self, *args, **kwargs):
        stacks.setdefault("create_run", traceback.extract_stack())
        return create_run(self, *args, **kwargs)

    monkeypatch.setattr(JobManager, "submit", recording_submit)
    monkeypatch.setattr(MLflowExperimentTracker, "create_run", recording_create_run)
    request = {"dataset": "sklearn:iris", "max_trials": 2, "cv_folds": 2, "experiment_name": "call-depth"}
    async with Client(tool_server) as client:
        result = payload(await client.call_tool("tune_hyperparameters", {"request": request, "wait_seconds": 30}))
    assert result["state"] == "SUCCEEDED"

    def ours(stack):  # the product's frames, without the test's own wrappers
        return [(f.name, f.filename) for f in stack if "/tests/" not in f.filename and f.filename.startswith(str(ROOT))]

    tool_side = [name for name, _ in ours(stacks["submit"])]
    tool_side = tool_side[tool_side.index("tune_hyperparameters"):]  # the last one calls submit
    job_frames = ours(stacks["create_run"])
    entry = max(i for i, (name, path) in enumerate(job_frames) if name == "_run" and "/jobs/" in path)
    job_side = [name for name, _ in job_frames[entry + 1:]]  # the job's own frames; the last calls create_run
    calls = len(tool_side) + 1 + len(job_side)  # each frame calls the next; dispatch counted once
    print(f"\ntool -> first MLflow write: {' -> '.join(tool_side)} -> submit => {' -> '.join(job_side)} "
          f"-> create_run ({calls} calls)")
    assert calls <= 8


def test_the_request_takes_three_types_on_its_way_to_the_loop():
    """TuneRequest (the tool's input) -> SearchPlan (checked) -> SearchRequest (what the loop runs)."""
    from mcp_server.hyperparameter_tuning import SearchPlan, TuneRequest
    from tools import tuning

    source = (ROOT / "tools" / "tuning.py").read_text()
    assert "request: TuneRequest" in source and tuning.TuneRequest is TuneRequest
    assert SearchPlan.__dataclass_fields__["request"].type in ("TuneRequest", TuneRequest)
    loop_source = (ROOT / "mcp_server" / "hyperparameter_tuning" / "_loop.py").read_text()
    assert "config: SearchRequest" in loop_source and "LoopConfig" not in loop_source
