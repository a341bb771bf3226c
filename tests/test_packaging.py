"""pyproject.toml tells the truth: every third-party module the code imports is a declared dependency (the
packaged code's in ``dependencies``; the tests' and benchmarks' there or in the ``dev`` extra), and the floors
cover the APIs used."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "pytorch_lightning": "pytorch-lightning",
    "huggingface_hub": "huggingface-hub",
}
OPTIONAL = ("ImportError", "ModuleNotFoundError")  # an import guarded by these is optional


def normalise(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> dict[str, str]:
    """The declared distributions (``dependencies`` and the named extras): normalised name -> requirement."""
    specs = PYPROJECT["project"]["dependencies"] + [
        spec for extra in extras for spec in PYPROJECT["project"]["optional-dependencies"][extra]
    ]
    return {normalise(re.match(r"[A-Za-z0-9_.\-]+", spec).group()): spec for spec in specs}


def guarded(node: ast.Try) -> bool:
    names = [h.type for h in node.handlers if h.type is not None]
    names = [n for h in names for n in (h.elts if isinstance(h, ast.Tuple) else [h])]
    return any(isinstance(n, ast.Name) and n.id in OPTIONAL for n in names)


def imports(tree: ast.AST) -> set[str]:
    """The top-level names of the absolute imports in ``tree``, except those in a ``try`` that catches
    ImportError (optional ones)."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Try) and guarded(node):
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                found |= imports(child)
        else:
            found |= imports(node)
    return found


def third_party(files: list[Path]) -> dict[str, list[str]]:
    """The third-party modules ``files`` import -> the files importing each (not the standard library, not the
    project's own packages and modules, nor a module beside the importing file)."""
    own = {p.name for p in ROOT.iterdir() if p.is_dir()} | {p.stem for p in ROOT.glob("*.py")}
    found: dict[str, list[str]] = {}
    for path in files:
        beside = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
        for name in imports(ast.parse(path.read_text(), str(path))):
            if name not in sys.stdlib_module_names and name not in own and name not in beside:
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def packaged_files() -> list[Path]:
    setup = PYPROJECT["tool"]["setuptools"]
    files = [ROOT / f"{module}.py" for module in setup["py-modules"]]
    for package in setup["packages"]:
        files += sorted((ROOT / package.replace(".", "/")).glob("*.py"))
    return files


def undeclared(found: dict[str, list[str]], allowed: dict[str, str]) -> list[str]:
    return [
        f"{name} (imported by {', '.join(sorted(found[name])[:3])}): declare {DISTRIBUTIONS.get(name, name)}"
        for name in sorted(found)
        if normalise(DISTRIBUTIONS.get(name, name)) not in allowed
    ]


def test_every_module_the_packaged_code_imports_is_a_declared_dependency():
    files = packaged_files()
    assert len(files) > 40 and ROOT / "train.py" in files
    found = third_party(files)
    assert {"torch", "pytorch_lightning", "cv2"} <= set(found)  # the walk sees the imports
    problems = undeclared(found, declared())
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_every_module_the_tests_and_benchmarks_import_is_declared_with_the_dev_extra():
    files = sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    found = third_party(files)
    assert "pytest" in found and "conftest" not in found and "speed_baselines" not in found  # beside the file
    assert "sweeps" not in found  # wandb's optional sweep engine, imported under try/except ImportError
    problems = undeclared(found, declared("dev"))
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_the_import_names_map_to_the_distributions_that_provide_them():
    """The table above agrees with the installed packages' own records (what pip installed them as)."""
    installed = packages_distributions()
    used = set(third_party(packaged_files())) | set(DISTRIBUTIONS)
    for name in sorted(used):
        if name in installed:  # an optional module may be missing here
            provides = {normalise(d) for d in installed[name]}
            assert normalise(DISTRIBUTIONS.get(name, name)) in provides, (name, provides)


def floor(distribution: str) -> tuple[int, ...]:
    spec = declared()[normalise(distribution)]
    match = re.search(r"(?:>=|==)\s*([\d.]+)", spec)
    assert match, f"{spec!r} has no lower bound"
    return tuple(int(part) for part in match.group(1).split("."))


def test_the_floors_have_the_apis_the_code_uses():
    # WeightAveraging, EMAWeightAveraging and Trainer.fit/predict(weights_only=...) came in Lightning 2.6
    assert floor("pytorch-lightning") >= (2, 6)
    # torch.load(mmap=...) and the AveragedModel helpers Lightning 2.6 imports (2.1); nn.Module.compile (2.2)
    assert floor("torch") >= (2, 2)
    assert floor("huggingface-hub") >= (0, 9, 1)  # huggingface_hub.try_to_load_from_cache
