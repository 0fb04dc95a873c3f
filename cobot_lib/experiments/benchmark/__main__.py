"""``python -m cobot_lib.experiments.benchmark run|report ...`` (``cli.main``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
