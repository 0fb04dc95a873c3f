"""Command line: ``python -m cobot_lib.ablations [--out CSV]``: run the ablation grid.

The code lives in ``cobot_lib.experiments.ablation_report``; this module is only the entry point.
"""

import sys

from .experiments.ablation_report import main

if __name__ == "__main__":
    sys.exit(main())
