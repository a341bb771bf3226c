"""The layering written down in docs/architecture.md, checked on the source: every project import points down
(or within its own package), the import graph has no circle, project imports sit at the top of a file, nothing
below the entry layer reads the command line, and the shared vocabulary and the run layout are each spelled
in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# from the ground up; a module may import its own package or a lower layer's, never a higher or a sideways one
LAYERS = [
    {"core"},  # vocabulary and plumbing
    {"configs"},
    {"datamodules"},  # the data pipeline
    {"lightning_modules"},  # the models
    {"rundir"},  # the run layout, and claiming, locking and resuming a run directory
    {"callbacks"},  # what a training run leaves behind
    {"synthetic"},  # tools beside the pipeline, none imported by it
    {"analysis"},
    {"inference"},  # prediction with trained models
    {"jobs"},  # the entry layer: the job runner, then the two commands
    {"train", "predict"},
    {"benchmarks"},
]
LAYER = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def project_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project (tests aside)."""
    files = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in LAYER:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for each import of a project module in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYER:
                found.append((name, node.lineno, id(node) in top))
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (``pkg.mod.func`` -> ``pkg.mod``), if any."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    modules = project_files()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name, _, _ in project_imports(path):
            target = resolve(name, modules)
            if target and target != module and not module.startswith(target + "."):  # a package's own __init__
                edges[module].add(target)
    return edges


def test_every_import_points_down_or_within_its_own_package():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            mine, theirs = module.split(".")[0], target.split(".")[0]
            if mine != theirs and LAYER[theirs] >= LAYER[mine]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports up or sideways a layer:\n  " + "\n  ".join(sorted(wrong))


def test_the_import_graph_has_no_circle():
    edges, state, circles = graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n  " + "\n  ".join(circles)


def test_project_imports_sit_at_the_top_of_their_file():
    # a project import inside a function hides an arrow of the layering; one is allowed only with a comment on
    # its line or the line above saying why (start-up time, an optional dependency)
    hidden = []
    for path in project_files().values():
        lines = path.read_text().splitlines()
        for name, line, at_top in project_imports(path):
            if not at_top and "#" not in lines[line - 1] + lines[line - 2]:
                hidden.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not hidden, "function-level project imports without a reason:\n  " + "\n  ".join(sorted(set(hidden)))


def test_only_the_entries_and_the_tools_have_a_command_line():
    # train.py, predict.py and jobs.py, and the tools' own commands (python -m synthetic, python -m analysis.noise);
    # the pipeline, the models, the run layout, the callbacks and the prediction library read no command line
    first_tool = LAYER["synthetic"]
    readers = [
        str(path.relative_to(ROOT))
        for module, path in project_files().items()
        if LAYER[module.split(".")[0]] < first_tool or module.startswith("inference")
        if re.search(r"sys\.argv|import argparse", path.read_text())
    ]
    assert not readers


def _spelled(pattern: str) -> list[str]:
    """The project files (tests aside) whose code matches ``pattern``."""
    return sorted(
        str(path.relative_to(ROOT)) for path in project_files().values() if re.search(pattern, path.read_text())
    )


def test_the_vocabulary_and_the_run_layout_are_each_spelled_once():
    # the 18-class formula, the task list and the run layout's folder names: one definition each
    assert _spelled(r"\* ?6 ?\+|\* ?\(?n_gender \* n_age") == ["core/tasks.py"]
    assert _spelled(r"[(\[]\s*\"mask\",\s*\"gender\",\s*\"age\"\s*[,)\]]") == ["core/tasks.py"]
    # a run folder's path: rundir.layout.run_dir / fold_name / fold_dirs / run_place
    assert _spelled(r"/ ?f?\"fold|glob\([^)]*fold|removeprefix\(\"fold\"\)") == []
    assert _spelled(r"FOLD_PREFIX = ") == ["rundir/layout.py"]
    for name in ("best.ckpt", "last.ckpt", "oof.csv", "done.json", "metrics.csv", "config.yaml", "submission.csv"):
        in_code = [f for f in _spelled(rf"[\"']{re.escape(name)}[\"']") if f != "rundir/layout.py"]
        assert not in_code, f"{name} spelled outside rundir/layout.py: {in_code}"
