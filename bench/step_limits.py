"""One training step's time and the worker's peak memory at the edge of the per-job limits.

`python bench/step_limits.py [--quick] [--threads 2] [--backend numpy|torch]`: for each shape (hidden
layers, images in one step) and backend, a fresh process builds the real network (service/ml,
make_network) over a synthetic training split as large as MNIST's (60,000 + 10,000 float32 images, as a
worker holds them), takes one small warm-up step (numba's kernels, torch's first call), then times ONE
step of the shape's batch and reads its peak RSS (VmHWM). A cancel or SIGTERM waits out one step, and
MLPLAB_MAX_BATCH_PARAMETERS and MLPLAB_MAX_BATCH_UNITS (docs/settings.md) bound the two figures. Run on a quiet machine; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._table import table  # noqa: E402

# (hidden layers, images in one step): the default network at full batch, the e2e tests' full batch
# (55,000: validation_size's 5,000 held out), then the costliest shapes the defaults of
# MLPLAB_MAX_BATCH_PARAMETERS (100,000,000,000) and MLPLAB_MAX_BATCH_UNITS (90,000,000) let through:
# the widest and the deepest networks MLPLAB_MAX_PARAMETERS allows, one layer and eight as wide as they go.
SHAPES: list[tuple[list[int], int]] = [
    ([500, 250, 100], 60_000),
    ([1024, 512], 55_000),
    ([4090, 4090], 5_004),
    ([1580] * 8, 5_335),
    ([2048, 2048], 17_168),
    ([4096], 21_972),
    ([512] * 8, 21_972),
]
QUICK: list[tuple[list[int], int]] = [([500, 250, 100], 60_000), ([4090, 4090], 5_004)]


def batch_costs(hidden: list[int], batch: int) -> tuple[int, int]:
    """(images x parameters, images x hidden units): what the two limits count."""
    from service.ml.spec import TrainSpec

    spec = TrainSpec(backend="numpy", hidden_layers=hidden)
    return batch * spec.n_parameters, batch * sum(hidden)


def one(backend: str, hidden: list[int], batch: int, threads: int) -> dict[str, float]:
    """The child: one warm-up step of 2 images, then one timed step of `batch`; seconds and peak RSS."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    import workers  # noqa: F401 - OpenBLAS's thread timeout, as in the worker
    from service.ml.data import Split
    from service.ml.network import make_network
    from service.ml.spec import TrainSpec

    threadpool_limits(threads)
    rng = np.random.default_rng(0)
    train = Split(rng.random((60_000, 784), dtype=np.float32), rng.integers(0, 10, 60_000))
    test = rng.random((10_000, 784), dtype=np.float32)  # held, as a worker's dataset holds it
    spec = TrainSpec(backend=backend, hidden_layers=hidden, batch_size=batch, validation_size=0)  # type: ignore[arg-type]
    options = {"device": "cpu", "threads": threads} if backend == "torch" else {}
    net = make_network(spec, train, **options)  # type: ignore[arg-type]
    net.step(np.arange(2), 0.1)
    idx = rng.permutation(60_000)[:batch]
    started = time.perf_counter()
    net.step(idx, 0.1)
    seconds = time.perf_counter() - started
    del test
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {"seconds": seconds, "peak_mb": hwm / 1024}


HEADERS = ["hidden", "images", "x parameters", "x hidden units", "backend", "s/step", "peak MB"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two shapes, NumPy only")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS and torch threads")
    p.add_argument("--backend", choices=["numpy", "torch"], help="one backend only")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child: JSON [backend, hidden, batch]
    args = p.parse_args()
    if args.one:
        backend, hidden, batch = json.loads(args.one)
        print(json.dumps(one(backend, hidden, batch, args.threads)))
        return
    backends = [args.backend] if args.backend else ["numpy"] if args.quick else ["numpy", "torch"]
    rows = []
    for hidden, batch in QUICK if args.quick else SHAPES:
        for backend in backends:
            child = [sys.executable, __file__, "--threads", str(args.threads), "--one"]
            out = subprocess.run(
                [*child, json.dumps([backend, hidden, batch])], capture_output=True, text=True, check=True
            )
            got = json.loads(out.stdout.strip().splitlines()[-1])
            layers = "-".join(map(str, hidden)) if len(set(hidden)) > 1 else f"{len(hidden)}x{hidden[0]}"
            params, units = batch_costs(hidden, batch)
            rows.append(
                [layers, batch, params, units, backend, round(got["seconds"], 2), round(got["peak_mb"])]
            )
            print(table(HEADERS, rows[-1:]), file=sys.stderr, flush=True)
    print(f"{args.threads} thread(s); one step after a warm-up, in a fresh process each")
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
