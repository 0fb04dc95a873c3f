"""Command line: ``python -m cobot_lib.evaluate CONFIG.yaml [--adapter DIR]``: score a run.

The code lives in ``cobot_lib.engine.evaluation``; this module is only the entry point. torch's
thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS`` overrides
it).
"""

import sys

from .engine.evaluation import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
