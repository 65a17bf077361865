"""The training worker: `python -m workers [--once]` (or `mlplab worker`)."""

from workers.worker import main, run_worker

__all__ = ["main", "run_worker"]
