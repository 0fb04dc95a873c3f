"""Command line: ``python -m cobot_lib.sweep SWEEP.yaml``: run a papermill grid of notebook 04,
here or as SLURM jobs.

The code lives in ``cobot_lib.experiments.cli`` (the command line), ``.launch`` (executors) and
``cobot_lib.experiments.sweep`` (grids, runs, tables); this module is only the entry point.
torch's thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS``
overrides it).
"""

import sys

from .experiments.cli import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
