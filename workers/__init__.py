"""The training worker: `python -m workers [--once]` (or `mlplab worker`)."""

import os

# OpenBLAS (NumPy's BLAS) keeps its threads spinning for 2^28 cycles (~0.1 s) after each call.
# A worker follows each epoch's NumPy evaluation with torch steps, whose OpenMP threads then
# find both cores taken: one step in six stalled 4-5 ms (bench/train.py --quick). 2^20 cycles
# (~0.3 ms) still spans the gaps between a NumPy training step's products. OpenBLAS reads this
# once, as NumPy loads: hence here, before the imports below.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from workers.worker import main, run_worker

__all__ = ["main", "run_worker"]
