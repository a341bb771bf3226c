"""User-facing data errors: one message naming the file, the row and what is wrong."""

from __future__ import annotations

import sys
from collections.abc import Callable

MAX_LISTED = 20


class DataError(ValueError):
    """A mistake in the user's data. Command-line tools print it without a traceback."""


def raise_collected(problems: list[str], what: str) -> None:
    """Raise one :class:`DataError` listing ``problems`` (the first ``MAX_LISTED``), if there are any."""
    if not problems:
        return
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(f"{what} ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  {shown}{more}")


def run_cli(work: Callable[[], object], debug: bool = False) -> int:
    """Run a command's work: a config or data mistake prints one ``error:`` line and returns 2 (with
    ``debug``, the traceback instead); success returns 0."""
    from configs.config import ConfigError

    try:
        work()
    except (ConfigError, DataError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
