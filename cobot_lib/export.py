"""Command line: ``python -m cobot_lib.export OUT --model-type M [--adapter DIR]``: a merged SAM
as ONNX, checked with onnxruntime.

The code lives in ``cobot_lib.engine.export``; this module is only the entry point. torch's
thread count follows ``cobot_lib.machine`` (the CPUs free at start; ``$COBOT_THREADS`` overrides
it).
"""

import sys

from .engine.export import main
from .machine import set_threads

if __name__ == "__main__":
    set_threads()
    sys.exit(main())
