"""``python -m analysis.noise``: the noise finder's command line (see :mod:`analysis.noise`)."""

import sys

from analysis.noise.command import main

sys.exit(main())
