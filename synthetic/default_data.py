"""The default data directory, generated on first use: a command pointed at ``data.default_dir`` that finds it
missing gets the synthetic stand-in there (``data.synthetic`` sets its size); a user's own directory is never
generated."""

from __future__ import annotations

import logging
from pathlib import Path

from configs.config import DataConfig
from synthetic.writer import generate

log = logging.getLogger("synthetic")


def ensure_default_data(data: DataConfig) -> Path:
    """``data.dir``, generated first when it is missing and is the default directory."""
    data_dir = Path(data.dir)
    if not data_dir.exists() and data_dir.resolve() == Path(data.default_dir).resolve():
        s = data.synthetic
        log.info(
            "data directory %s does not exist: generating the synthetic stand-in there "
            "(%d train people, %d eval people, %dx%d)",
            data_dir,
            s.people,
            s.eval_people,
            s.width,
            s.height,
        )
        generate(data_dir, people=s.people, eval_people=s.eval_people, size=(s.width, s.height), seed=s.seed)
    return data_dir
