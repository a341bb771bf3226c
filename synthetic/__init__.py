"""Synthetic stand-in for the private mask-status data, in exactly the competition layout: drawn people
(consistent identity across their 7 photos) with visible mask state, overlapping gender cues and gradual age
cues, plus the real data's quirks: mixed extensions, macOS `._` files, a duplicated id, suffixed ids and ~1%
planted label noise recorded in `truth/noise.csv`. Like the real data's disputed gender labels, a few people
look neither male nor female; `truth/disputed.csv` lists them. `people` samples who they are, `drawing` draws
their photos, `writer` writes the set; the command line is ``python -m synthetic --out DIR`` (see --help)."""

from synthetic.default_data import ensure_default_data
from synthetic.people import femaleness, sample_people
from synthetic.writer import generate, write_preview

__all__ = ["ensure_default_data", "femaleness", "generate", "sample_people", "write_preview"]
