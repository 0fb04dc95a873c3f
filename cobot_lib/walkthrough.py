"""Command line: ``python -m cobot_lib.walkthrough [--only NN]``: run the notebooks in order.

The code lives in ``cobot_lib.notebook.walkthrough``; this module is only the entry point.
"""

import sys

from .notebook.walkthrough import main

if __name__ == "__main__":
    sys.exit(main())
