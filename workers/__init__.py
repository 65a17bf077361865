"""The training worker: `python -m workers [--once]` (or `mlplab worker`)."""

import os

# OpenBLAS's idle threads spin long enough to starve the torch steps after a NumPy evaluation
# (docs/performance.md); it reads this once, as NumPy loads: hence here, before the imports.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from workers.worker import main, run_worker

__all__ = ["main", "run_worker"]
