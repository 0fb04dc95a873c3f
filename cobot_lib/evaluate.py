"""Command line: ``python -m cobot_lib.evaluate CONFIG.yaml [--adapter DIR]``: score a run.

The code lives in ``cobot_lib.engine.evaluation``; this module is only the entry point.
"""

import sys

from .engine.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
