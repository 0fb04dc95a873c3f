"""Command line: ``python -m cobot_lib.sweep SWEEP.yaml``: run a papermill grid of notebook 04.

The code lives in ``cobot_lib.experiments.sweep``; this module is only the entry point.
"""

import sys

from .experiments.sweep import main

if __name__ == "__main__":
    sys.exit(main())
