"""User-facing data errors: one message naming the file, the row and what is wrong."""

from __future__ import annotations

import errno
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


DISK_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
}


def disk_problem(exc: BaseException) -> str | None:
    """A one-line explanation when ``exc`` is a failed write (full disk, quota, permissions), else None."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return f"{DISK_ERRORS[exc.errno]}{where}"
    if isinstance(exc, RuntimeError) and "file write failed" in str(exc):  # torch.save's zip writer
        return f"a checkpoint could not be written, most likely because the disk is full ({str(exc)[:200]})"
    return None


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
    except (OSError, RuntimeError) as exc:
        problem = disk_problem(exc)
        if debug or problem is None:
            raise
        print(
            f"error: {problem}. Free some space (or choose another runs_dir / data.cache_dir) and run the same "
            "command again with --resume: every file is written under a temporary name and renamed when "
            "complete, so no half-written file was left under a real name.",
            file=sys.stderr,
        )
        return 3
    return 0
