"""Command line: ``python -m cobot_lib.sweep SWEEP.yaml``: run a papermill grid of notebook 04,
here or as SLURM jobs.

The code lives in ``cobot_lib.experiments.cli`` (the command line), ``.launch`` (executors) and
``cobot_lib.experiments.sweep`` (grids, runs, tables); this module is only the entry point.
"""

import sys

from .experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
