"""The README a newcomer reads: its options tables list exactly the options train.py and predict.py take, every results
file it cites is in benchmarks/results/, and its set-up command is the one benchmarked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import predict
import train
from benchmarks.quick_demo import COMMAND

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
RESULTS = re.compile(r"benchmarks/results/[\w.<>-]+\.json")


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line), up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def table_options(text: str) -> set[str]:
    """The ``--options`` named in the first column of each table row of ``text``."""
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {option for cell in rows for option in OPTION.findall(cell)}


def parser_options(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


COMMANDS = [("train.py", train.build_parser), ("predict.py", predict.build_parser)]


@pytest.mark.parametrize(("command", "parser"), COMMANDS)
def test_options_tables_match_the_commands(command, parser):
    documented = table_options(section(README.read_text(), f"Options of `{command}`"))
    taken = parser_options(parser())
    assert not taken - documented, f"README.md: add {sorted(taken - documented)} to the options of {command}"
    assert not documented - taken, f"README.md: {command} takes no {sorted(documented - taken)}"


def test_every_cited_results_file_exists():
    cited = set(RESULTS.findall(README.read_text()))
    assert cited, "README.md cites no results file"
    for name in cited:
        pattern = re.sub(r"<[^>]+>", "*", name)
        assert list(ROOT.glob(pattern)), f"README.md cites {name}: no such file"


def test_the_set_up_command_is_the_one_benchmarked():
    """The set-up command's figures (benchmarks/quick_demo.py) time exactly the command the README gives."""
    setup = section(README.read_text(), "Set-up on a fresh machine")
    timed = " ".join(Path(a).relative_to(ROOT).as_posix() if a.startswith(str(ROOT)) else a for a in COMMAND[1:])
    assert f'pip install -e ".[dev]" && python {timed} --predict' in setup
    assert "python -m pytest -q" in setup
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("python -m pytest -q")


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_link_to_a_project_file_leads_to_one(page: Path):
    """A reader following the README or a doc to another page never meets a dead link (pages move between them)."""
    targets = [t for t in LINK.findall(page.read_text()) if "://" not in t]
    dead = [t for t in targets if not (page.parent / t).exists()]
    assert not dead, f"{page.name} links to missing files: {dead}"
