"""A run directory's state: who holds it (one process at a time), whether it may be started, resumed or replaced,
and the earlier results an ``--overwrite`` keeps until the new run has a checkpoint of its own."""
