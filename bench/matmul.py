"""One training step's matrix products in NumPy and in torch, same shapes, same loop.

`python bench/matmul.py [--batch 64] [--threads 2]`: how much of the torch backend's distance from
bench/train.py's floor is its BLAS (MKL) rather than autograd or the optimizer. Prints ms per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

SIZES = [784, 500, 250, 100, 10]


def step(lib_weights, X):
    """Forward a @ W for every layer; backward a.T @ delta for every layer, delta @ W.T for all but the first."""
    acts, h = [X], X
    for W in lib_weights:
        h = h @ W
        acts.append(h)
    delta = h
    for layer in range(len(lib_weights) - 1, -1, -1):
        _ = acts[layer].T @ delta
        if layer > 0:
            delta = delta @ lib_weights[layer].T


def timed(fn, repeats: int, inner: int = 200) -> float:
    for _ in range(50):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(SIZES[:-1], SIZES[1:])]
    X = rng.random((args.batch, SIZES[0]), dtype=np.float32)
    t_weights, t_X = [torch.from_numpy(W) for W in weights], torch.from_numpy(X)
    rows = []
    for _ in range(2):  # interleaved, so a drifting machine shows as disagreement between rounds
        rows.append((timed(lambda: step(weights, X), args.repeats), timed(lambda: step(t_weights, t_X), args.repeats)))
    print(f"batch {args.batch}, {args.threads} threads; torch {torch.__version__}, numpy {np.__version__}")
    print("round  numpy ms/step  torch ms/step  torch / numpy")
    for i, (n, t) in enumerate(rows, 1):
        print(f"{i:>5}  {n:>13.3f}  {t:>13.3f}  {t / n:>13.2f}")


if __name__ == "__main__":
    main()
