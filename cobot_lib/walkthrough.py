"""Command line: ``python -m cobot_lib.walkthrough [--only NN]``: run the notebooks in order.

The code lives in ``cobot_lib.notebook.walkthrough``; this module is only the entry point.
torch's thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS``
overrides it).
"""

import sys

from .machine import set_threads
from .notebook.walkthrough import main

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
