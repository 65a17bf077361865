"""One training step's matrix products in NumPy, in torch's BLAS (MKL) and in oneDNN: same shapes, same loop.

`python bench/matmul.py [--batch 64] [--threads 2]`: how much of the torch backend's distance from
bench/train.py's floor is the matrix library rather than autograd or the optimizer, and why the
torch backend sends its CPU products to oneDNN (service/ml/torch_onednn.py). Prints ms per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch

import workers  # noqa: F401 - first: OpenBLAS's thread timeout as in the worker, so NumPy's spinning threads do not slow the next library's rounds

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


def onednn_step(weights_out_in, X):
    """The same products through torch's oneDNN linear kernel, with nn.Linear's (out, in) weights."""
    lp = torch.ops.mkldnn._linear_pointwise.default
    acts, h = [X], X
    for W in weights_out_in:
        h = lp(h, W, None, "none", [], "")
        acts.append(h)
    delta = h
    for layer in range(len(weights_out_in) - 1, -1, -1):
        _ = lp(delta.T, acts[layer].T, None, "none", [], "")  # dW = delta.T @ a, in (out, in)
        if layer > 0:
            delta = lp(delta, weights_out_in[layer].T, None, "none", [], "")  # delta @ W


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
    weights = [
        rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]
    X = rng.random((args.batch, SIZES[0]), dtype=np.float32)
    t_weights, t_X = [torch.from_numpy(W) for W in weights], torch.from_numpy(X)
    t_weights_out_in = [W.T.contiguous() for W in t_weights]
    rows = []
    for _ in range(2):  # interleaved, so a drifting machine shows as disagreement between rounds
        rows.append(
            (
                timed(lambda: step(weights, X), args.repeats),
                timed(lambda: step(t_weights, t_X), args.repeats),
                timed(lambda: onednn_step(t_weights_out_in, t_X), args.repeats),
            )
        )
    print(f"batch {args.batch}, {args.threads} threads; torch {torch.__version__}, numpy {np.__version__}")
    print("round  numpy ms/step  torch MKL ms/step  oneDNN ms/step  MKL / numpy  oneDNN / numpy")
    for i, (n, t, d) in enumerate(rows, 1):
        print(f"{i:>5}  {n:>13.3f}  {t:>17.3f}  {d:>14.3f}  {t / n:>11.2f}  {d / n:>14.2f}")


if __name__ == "__main__":
    main()
