"""Command line: ``python -m cobot_lib.predict INPUT --out DIR [--prompts FILE] ...``: segment
new images or NIfTI volumes with a plain, adapted or merged SAM.

The code lives in ``cobot_lib.engine.predict``; this module is only the entry point.
"""

import sys

from .engine.predict import main

if __name__ == "__main__":
    sys.exit(main())
