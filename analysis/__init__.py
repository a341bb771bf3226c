"""Tools that read an experiment's results: out-of-fold scoring and reports, the noise finder. Beside the
pipeline: nothing in datamodules/, lightning_modules/ or callbacks/ imports them."""
