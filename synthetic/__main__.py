"""The synthetic generator's command line: write a data set, a contact sheet of one, or both.

python -m synthetic --out data/synthetic --people 300 --eval-people 100 --size 96x128
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from synthetic.writer import DEFAULTS, generate, write_preview

DESCRIPTION = "Synthetic stand-in for the private mask-status data, in exactly the competition layout."


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        example = f"{DEFAULTS.width}x{DEFAULTS.height}"
        raise argparse.ArgumentTypeError(f"--size must look like {example} (WIDTHxHEIGHT), got {text!r}") from None
    return w, h


def main(argv: Sequence[str] | None = None) -> int:
    d = DEFAULTS
    ap = argparse.ArgumentParser(prog="python -m synthetic", description=DESCRIPTION)
    ap.add_argument("--out", required=True, type=Path, help="folder to create train/, eval/ and truth/ in")
    ap.add_argument("--people", type=int, help=f"train people (folders), default {d.people}")
    ap.add_argument("--eval-people", type=int, help=f"eval people (7 photos each), default {d.eval_people}")
    ap.add_argument("--size", type=_parse_size, help=f"WIDTHxHEIGHT, default {d.width}x{d.height}")
    ap.add_argument("--seed", type=int, help=f"default {d.seed}")
    ap.add_argument("--workers", type=int, default=None, help="processes, default all cores")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing train/ and eval/")
    ap.add_argument(
        "--preview", type=Path, help="also write a contact sheet PNG; alone with an existing --out, only that"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    gen_args = (args.people, args.eval_people, args.size, args.seed)
    exists = (args.out / "train" / "train.csv").exists()
    preview_only = args.preview and exists and not args.overwrite and all(a is None for a in gen_args)
    if not preview_only:
        start = time.perf_counter()
        try:
            generate(
                args.out,
                people=d.people if args.people is None else args.people,
                eval_people=d.eval_people if args.eval_people is None else args.eval_people,
                size=args.size or (d.width, d.height),
                seed=d.seed if args.seed is None else args.seed,
                workers=args.workers,
                progress=not args.quiet,
                overwrite=args.overwrite,
            )
        except ValueError as err:
            ap.error(str(err))
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    if args.preview:
        print(f"wrote {write_preview(args.out, args.preview)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
