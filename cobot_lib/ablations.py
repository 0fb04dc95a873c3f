"""Command line: ``python -m cobot_lib.ablations [--out CSV]``: run the ablation grid.

The code lives in ``cobot_lib.experiments.ablation_report``; this module is only the entry
point. torch's thread count follows ``cobot_lib.machine`` (the CPUs free at start;
``$COBOT_THREADS`` overrides it).
"""

import sys

from .experiments.ablation_report import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
