"""``python -m analysis <command> ...``: the analysis tools' command line, one subcommand each (``compare``:
:mod:`analysis.compare`). A new tool adds its ``main(argv) -> exit code`` and a line of help to ``COMMANDS``.
The noise finder keeps its own command, ``python -m analysis.noise``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from analysis import compare

COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "compare": (compare.main, "paired comparison of experiments' out-of-fold F1, bootstrap over people"),
}
EXIT_USAGE = 2


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items())
    return (
        f"usage: python -m analysis <command> [options]\n\ncommands:\n{listing}\n\n"
        "python -m analysis <command> --help: a command's options. The noise finder: python -m analysis.noise"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        said = f"error: unknown command {argv[0]!r}\n" if argv else ""
        print(f"{said}{usage()}", file=sys.stderr)
        return EXIT_USAGE
    command, *rest = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # e.g. the models each experiment is read from
    return COMMANDS[command][0](rest)


if __name__ == "__main__":
    sys.exit(main())
