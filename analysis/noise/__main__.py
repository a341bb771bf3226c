"""``python -m analysis.noise``: the noise finder's command line (see :mod:`analysis.noise`)."""

import sys

from analysis.noise.finder import main

sys.exit(main())
