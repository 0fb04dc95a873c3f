"""Command line: ``python -m cobot_lib.train CONFIG.yaml [key=value ...]``: fine-tune SAM.

The code lives in ``cobot_lib.engine.trainer``; this module is only the entry point. torch's
thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS`` overrides
it).
"""

import sys

from .engine.trainer import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
