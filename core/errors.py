"""User-facing errors: one message naming the file, the row and what is wrong, and the exit codes of the
command-line tools (2: a mistake in the data, the settings or the run's state; 3: a write that failed part-way;
130: stopped with Ctrl-C)."""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable

MAX_LISTED = 20
EXIT_USER = 2  # a data, config or run mistake, found before any result was touched
EXIT_WRITE = 3  # a file could not be written (full disk, no permission) after work had started
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's code for "stopped by SIGINT"
RESUME = "run the same command again with --resume"


class DataError(ValueError):
    """A mistake in the user's data. Command-line tools print it without a traceback."""


class ConfigError(ValueError):
    """A configuration mistake: an unknown key, a bad value or a missing file."""


class RunError(RuntimeError):
    """A run that cannot go ahead or did not finish as asked (another process holds it, its checkpoint does not
    fit the asked settings, its directory cannot be written, a job failed). Command-line tools print it without
    a traceback."""


def raise_collected(problems: list[str], what: str) -> None:
    """Raise one :class:`DataError` listing ``problems`` (the first ``MAX_LISTED``), if there are any."""
    if not problems:
        return
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(f"{what} ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  {shown}{more}")


NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
NO_PERMISSION = {
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EROFS: "the file system is read-only",
}
# torch.save's own writer reports a failed write as a RuntimeError without an errno
TORCH_WRITE = (
    (re.compile(r"strerror: (Permission denied|Read-only file system|Operation not permitted)"), NO_PERMISSION),
    (re.compile(r"strerror: (No space left on device|Disk quota exceeded)|file write failed"), NO_SPACE),
)


def write_problem(exc: BaseException) -> tuple[str, bool] | None:
    """``(explanation, is_space)`` when ``exc`` is a failed write: a full disk or quota (``is_space``), or a
    permission problem (an unwritable or read-only place); else None."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE | NO_PERMISSION:
        space = exc.errno in NO_SPACE  # only a write runs out of space; a permission may be missing for a read
        where = (f" while writing {exc.filename}" if space else f" for {exc.filename}") if exc.filename else ""
        return f"{(NO_SPACE if space else NO_PERMISSION)[exc.errno]}{where}", space
    if isinstance(exc, RuntimeError):
        for pattern, kind in TORCH_WRITE:
            if pattern.search(str(exc)):
                space = kind is NO_SPACE
                what = "the disk is full" if space else "permission denied"
                return f"a checkpoint could not be written: {what} ({str(exc).splitlines()[0][:200]})", space
    return None


def describe(exc: BaseException) -> str:
    """``Type: the first line of its message`` (at most 200 characters), or the type alone when the message is
    empty (an empty file makes torch raise a bare ``EOFError``): the cause inside a one-line error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def user_message(exc: BaseException) -> str:
    """The message of a user error, without the worker traceback a DataLoader adds when it re-raises an error
    from one of its worker processes (``Caught DataError in DataLoader worker process 0. Original Traceback
    ...``): the error's own last line."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    for line in reversed(text.strip().splitlines()):
        name, sep, message = line.partition(": ")
        if sep and name.rsplit(".", 1)[-1] == type(exc).__name__:
            return message
    return text.strip().splitlines()[-1]


def run_cli(work: Callable[[], object], debug: bool = False, rerun: str = RESUME) -> int:
    """Run a command's work: a config, data or run mistake prints one ``error:`` line and returns 2 (with
    ``debug``, the traceback instead); a write that fails part-way (full disk, no permission) returns 3 with
    what to do, ``rerun`` saying how to continue afterwards; Ctrl-C returns 130; success returns 0."""
    try:
        work()
    except (ConfigError, DataError, RunError) as exc:
        if debug:
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return EXIT_USER
    except (OSError, RuntimeError) as exc:
        found = write_problem(exc)
        if debug or found is None:
            raise
        problem, space = found
        fix = (
            "Free some space (or choose another runs_dir / data.cache_dir)"
            if space
            else "Fix its permissions, making it writable (or choose another runs_dir / data.cache_dir)"
        )
        print(
            f"error: {problem}. {fix}, then {rerun}: every file is written under a temporary name and renamed "
            "when complete, so no half-written file was left under a real name.",
            file=sys.stderr,
        )
        return EXIT_WRITE
    except KeyboardInterrupt:
        if debug:
            raise
        print("\nerror: interrupted (Ctrl-C); nothing half-written was left under a real name", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
