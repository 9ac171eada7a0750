"""The architecture, checked: each dvc.yaml stage's code deps are exactly the modules its `run` imports
(derived from the import graph, as test_integrity does for params keys), the package's import graph has no
circle, the layers below never import a stage, no module passes 450 lines, and each stage reaches its `run`
in two hops (dvc.yaml → module or notebook → `stages.<name>.run`)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "embedtune"
STAGES = ("prepare", "shift", "embed", "probe", "probe_page", "search", "finetune", "compare", "summary")
NOTEBOOK_OF = {"probe_page": "01-linear-probe", "finetune": "02-finetune", "compare": "03-compare", "summary": "04-summary"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _resolve(current: str, node: ast.ImportFrom, *, is_package: bool) -> list[str]:
    """Absolute module names (inside the package) an import-from names, function-level imports included."""
    if node.level == 0:
        if node.module and node.module.startswith("embedtune"):
            base = node.module.removeprefix("embedtune").lstrip(".")
        else:
            return []
    else:
        parts = current.split(".") if current else []
        parent = parts if is_package else parts[:-1]
        parent = parent[:len(parent) - (node.level - 1)]
        base = ".".join([*parent, *(node.module.split(".") if node.module else [])])
    out = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        out.append(candidate if _exists(candidate) else base)
    return [m for m in out if m and _exists(m)]


def _exists(name: str) -> bool:
    path = PKG.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _path(name: str) -> Path:
    path = PKG.joinpath(*name.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PKG.rglob("*.py"):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                deps.update(_resolve(name, node, is_package=path.name == "__init__.py"))
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("embedtune.") for a in node.names
                            if a.name.startswith("embedtune.") and _exists(a.name.removeprefix("embedtune.")))
        deps.discard(name)
        # importing `stages.x` imports its package `stages` first: an empty __init__ adds nothing
        graph[name] = {d for d in deps if d != "" and d != "stages" or d == "stages" and name != "stages"}
    return graph


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
    return seen


def declared_code_deps(stage: str) -> set[str]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    spec = spec.get("do", spec)
    return {d for d in spec["deps"] if d.startswith("src/embedtune/")}


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_declares_exactly_the_code_its_run_imports(stage: str) -> None:
    graph = import_graph()
    names = closure(graph, f"stages.{stage}")
    if stage in NOTEBOOK_OF:  # the notebook renderer and what the notebook's own cells import
        names |= closure(graph, "notebook")
        cells = json.loads((REPO / "notebooks" / f"{NOTEBOOK_OF[stage]}.ipynb").read_text())["cells"]
        tree = ast.parse("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedtune"):
                for m in _resolve("", node, is_package=True):
                    names |= closure(graph, m)
    names.discard("stages")
    needed = {_path(n).relative_to(REPO).as_posix() for n in names}
    if "src/embedtune/metrics.py" in needed:
        needed.add("src/embedtune/metric_modules")  # the shipped evaluate modules metrics.py loads by path
    declared = declared_code_deps(stage)
    assert declared == needed, (f"{stage}: dvc.yaml lists code it does not import: {sorted(declared - needed)}; "
                                f"imports code dvc.yaml does not list: {sorted(needed - declared)}")


def test_the_import_graph_has_no_circle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, [node]):
            break
    assert not cycle, f"import circle: {' → '.join(cycle)}"


def test_no_layer_below_imports_a_stage() -> None:
    graph = import_graph()
    below = {n for n in graph if not n.startswith("stages") and n not in ("cli",)}
    offenders = {n: sorted(d for d in graph[n] if d.startswith("stages")) for n in below}
    assert not {n: d for n, d in offenders.items() if d}, offenders
    for stage in STAGES:  # stages do not call one another
        others = {d for d in graph[f"stages.{stage}"] if d.startswith("stages.")}
        assert not others, f"stages.{stage} imports {others}"


def test_no_module_is_over_450_lines() -> None:
    long = {p.relative_to(REPO).as_posix(): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_reaches_its_run_in_two_hops(stage: str) -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    cmd = spec.get("do", spec)["cmd"]
    if stage in NOTEBOOK_OF:
        assert f"python -m embedtune.notebook {NOTEBOOK_OF[stage]}" in cmd
        cells = [c for c in json.loads((REPO / "notebooks" / f"{NOTEBOOK_OF[stage]}.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", [])]
        first = "".join(cells[0]["source"])
        assert f"{stage}.run(" in first or f"{stage}_stage.run(" in first, f"{stage}: first code cell: {first}"
        later = "".join("".join(c["source"]) for c in cells[1:])
        assert ".run(" not in later and "write_" not in later, f"{stage}: a later cell runs or writes something"
    else:
        assert cmd.startswith(f"python -m embedtune.stages.{stage} "), cmd


def test_dvc_yaml_lists_no_method_path_by_hand() -> None:
    from embedtune.registry import METHOD_ORDER, METHODS

    probe_stage = {m.name for m in METHODS if m.family == "probe"}  # the probe stage's own methods: its outputs
    text = (REPO / "dvc.yaml").read_text()
    paths = [line for line in text.split("\nplots:")[0].splitlines()
             if any(folder in line for folder in ("results/", "metrics/", "reports/"))]
    for method in METHOD_ORDER:
        if method in probe_stage:
            continue
        hits = [p.strip() for p in paths if f"/{method}." in p or f"-{method}-" in p]
        assert not hits, f"dvc.yaml names {method}'s files by hand: {hits}"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_params_key_a_stage_declares_exists_in_every_profile(profile: str) -> None:
    """DVC refuses a stage whose declared params key is missing from params.yaml (a default in params.py is
    not enough), so every profile spells out every section a stage declares."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        for key in spec.get("do", spec).get("params", []):
            if not key.startswith("profiles.${profile}."):
                continue
            node = raw["profiles"][profile]
            for part in key.removeprefix("profiles.${profile}.").split("."):
                assert isinstance(node, dict) and part in node, f"{name}: profiles.{profile}.{part} missing ({key})"
                node = node[part]
