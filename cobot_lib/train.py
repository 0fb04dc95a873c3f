"""Command line: ``python -m cobot_lib.train CONFIG.yaml [key=value ...]``: fine-tune SAM.

The code lives in ``cobot_lib.engine.trainer``; this module is only the entry point.
"""

import sys

from .engine.trainer import main

if __name__ == "__main__":
    sys.exit(main())
