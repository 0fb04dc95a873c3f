"""Command line: ``python -m cobot_lib.sweep SWEEP.yaml``: run a papermill grid of notebook 04.

The code lives in ``cobot_lib.experiments.sweep``; this module is only the entry point. torch's
thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS`` overrides
it).
"""

import sys

from .experiments.sweep import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
