#!/usr/bin/env python
"""Training benchmarks for the 784-500-250-100-10 MLP on MNIST: speed, the notebook's experiment, the best run.

    python bench/train.py                      # throughput: each backend at batch 64 and 256 vs the matmul floor
    python bench/train.py --notebook           # the notebook's 11 configurations, 15 epochs, correct math
    python bench/train.py --notebook --seeds 5 # ... each with 5 seeds: mean, 95 % CI, ties (docs/performance.md's table)
    python bench/train.py --notebook --validation-size 0   # the notebook's exact setup (no validation)
    python bench/train.py --best               # the best configuration (BEST below), accuracies and time
    python bench/train.py --candidates --seeds 3   # BEST's candidates ranked by validation accuracy: BEST is the first
    python bench/train.py --wall               # claim-to-success wall time over training time, via the worker
    python bench/train.py --wall default       # ... of the default spec alone
    python bench/train.py --quick ...          # any mode on the first 5,000 training images (smoke run)

Tables go to stdout, per-epoch progress to stderr, and everything measured to
bench/results/train-<mode>.json (mode: throughput, notebook, candidates, best or wall; "-quick" appended for
--quick).
Not a test: nothing passes or fails. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from unittest.mock import patch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout even where the package is not installed

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import workers  # noqa: E402, F401 - first: the worker's OpenBLAS setting (workers/__init__.py) must precede NumPy
from bench._table import table  # noqa: E402
from service.ml import network  # noqa: E402
from service.ml.data import DataError, Dataset, load_dataset  # noqa: E402
from service.ml.numpy_mlp import NumpyMLP  # noqa: E402
from service.ml.provenance import dataset_digest  # noqa: E402
from service.ml.spec import VALIDATION_SIZE, TrainSpec  # noqa: E402
from service.ml.train import Callbacks, EpochEnd, TrainingError, train  # noqa: E402
from service.selection import Run, Summary, gap_text, group_runs, how_tested, versus_best  # noqa: E402

# The best configuration found for 784-500-250-100-10 on MNIST (bench/README.md has the search and its
# figures). --best-config '{"key": value}' overrides single keys.
# It must be the first of `--candidates` (ranked on validation accuracy: test accuracy never chooses).
BEST = {
    "backend": "torch",  # 12.7 s of training against NumPy's 19.2 s here (bench/README.md); --backend numpy is bit-reproducible
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": 2e-3,
    "lr_schedule": "cosine",
    "l2": 0.0,
    "epochs": 15,
    "batch_size": 128,
    "seed": 0,
}

# The candidates for BEST (bench/README.md's table), as changes to it.
BEST_CANDIDATES = [
    {},
    {"learning_rate": 1e-3},
    {"learning_rate": 1e-3, "l2": 1e-5},
    {"optimizer": "momentum", "learning_rate": 0.1},
    {"optimizer": "momentum", "learning_rate": 0.05},
]

# The throughput mode's network and optimizer: the service's default spec (sigmoid, glorot, plain SGD).
THROUGHPUT = {"activation": "sigmoid", "init": "glorot", "optimizer": "sgd", "learning_rate": 0.1}
THROUGHPUT_BATCHES = (64, 256)
THROUGHPUT_EPOCHS = 3  # the median epoch: one slow epoch on a shared machine does not make the figure

# The notebook's experiment: batch 64, 15 epochs, L2 0 unless --l2 is given.
NOTEBOOK_NUMPY = [  # NumPy, plain SGD, sigmoid: (init, learning rate)
    ("zeros", 0.01),
    ("random", 0.01),
    ("glorot", 0.01),
    ("random", 0.3),
    ("random", 0.05),
    ("random", 0.1),
    ("glorot", 0.05),
    ("glorot", 0.1),
]
NOTEBOOK_TORCH = [  # PyTorch, Adam lr 0.01, glorot (the spec's default init): (activation, l2 or None for --l2)
    ("tanh", None),
    ("relu", None),
    ("relu", 0.01),
]
NOTEBOOK_BATCH = 64
NOTEBOOK_EPOCHS = 15

QUICK_LIMIT = 5000
LAYERS = [784, 500, 250, 100, 10]


def pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.2f} %"


# --- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_info() -> dict:
    import torch

    parallel = torch.__config__.parallel_info()
    keep = (
        "ATen parallel backend",
        "OpenMP",
        "Intel(R) oneAPI Math Kernel",
        "Intel(R) Math Kernel",
        "MKL-DNN",
        "oneDNN",
    )
    return {
        "version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "parallel": [line.strip() for line in parallel.splitlines() if line.strip().startswith(keep)],
    }


def machine_info() -> dict:
    torch = torch_info()  # imports torch first, so threadpoolctl also sees the libraries torch loads
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threadpools": [
            {
                k: p.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "version",
                    "architecture",
                    "num_threads",
                    "threading_layer",
                )
            }
            | {"library": Path(p.get("filepath", "")).name}
            for p in threadpool_info()
        ],
        "torch": torch,
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
    }


def print_machine(info: dict) -> None:
    print(
        f"CPU: {info['cpu']} ({info['cpus']} logical CPUs, {info['affinity']} usable); "
        f"Python {info['python']}, NumPy {info['numpy']}, torch {info['torch']['version']}"
    )
    if info["env"]:
        print("Environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    print("\nThread pools (threadpoolctl):")
    rows = [
        [
            p["user_api"],
            p["internal_api"],
            p["version"],
            p["architecture"],
            p["num_threads"],
            p["threading_layer"],
            p["library"],
        ]
        for p in info["threadpools"]
    ]
    print(
        table(["api", "internal_api", "version", "architecture", "num_threads", "threading", "library"], rows)
    )
    t = info["torch"]
    print(
        f"\ntorch: {t['num_threads']} intra-op threads, {t['num_interop_threads']} inter-op; "
        f"MKL {'yes' if t['mkl'] else 'no'}, oneDNN {'yes' if t['mkldnn'] else 'no'}"
    )
    for line in t["parallel"]:
        print(f"  {line}")
    print()


# --- the floor ---------------------------------------------------------------------------------


def matmul_step_seconds(sizes: list[int], batch: int, repeats: int = 15, sample_s: float = 0.05) -> dict:
    """Median seconds of one training step's matrix products in float32 NumPy, after a warm-up.

    Forward a(l-1) @ Wl for every layer, backward dWl = a(l-1).T @ deltal for every layer and
    deltal @ Wl.T for every layer but the first: 3L - 1 products, into preallocated outputs so
    that only the products are timed. Each repetition times enough steps to last ~sample_s.
    """
    rng = np.random.default_rng(0)
    f32 = np.float32
    L = len(sizes) - 1
    # Weights scaled by 1/sqrt(fan_in) keep every value O(1): no overflow, no denormals.
    Ws = [
        (rng.standard_normal((i, o)) / math.sqrt(i)).astype(f32)
        for i, o in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    acts = [rng.random((batch, s), dtype=f32) for s in sizes]  # acts[0] = X; acts[l] rewritten each step
    deltas = [
        rng.standard_normal((batch, s)).astype(f32) for s in sizes
    ]  # deltas[L] fixed; the rest rewritten
    dWs = [np.empty_like(W) for W in Ws]

    def step() -> None:
        for k in range(L):
            np.matmul(acts[k], Ws[k], out=acts[k + 1])
        for k in range(L - 1, -1, -1):
            np.matmul(acts[k].T, deltas[k + 1], out=dWs[k])
            if k > 0:
                np.matmul(deltas[k + 1], Ws[k].T, out=deltas[k])

    # Warm-up (thread pools up, caches and pages touched), which also sizes the repetitions.
    started, warm = time.perf_counter(), 0
    while warm < 10 or time.perf_counter() - started < 0.2:
        step()
        warm += 1
    per_step = (time.perf_counter() - started) / warm
    inner = max(1, math.ceil(sample_s / per_step))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - t0) / inner)
    flops = (
        2 * batch * sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True)) * 3
        - 2 * batch * sizes[0] * sizes[1]
    )
    median = statistics.median(samples)
    return {
        "batch": batch,
        "step_seconds": median,
        "step_seconds_min": min(samples),
        "step_seconds_max": max(samples),
        "steps_per_sample": inner,
        "repeats": repeats,
        "flops_per_step": flops,
        "gflops": flops / median / 1e9,
    }


# --- the NumPy step's parts, timed inside real steps -------------------------------------------


@contextmanager
def numpy_step_parts() -> Iterator[dict[str, float]]:
    """While open, train()'s NumPy networks time each part of every step in place: {part: seconds}.

    Each part is timed where it runs, between the others, so what one part leaves in the caches
    for the next counts where it is paid; a few perf_counter calls per step are the cost.
    """
    seconds = dict.fromkeys((*NumpyMLP.PARTS, "step"), 0.0)

    def timed(name: str, method: Callable) -> Callable:
        def wrapper(self, *args):
            t0 = time.perf_counter()
            result = method(self, *args)
            seconds[name] += time.perf_counter() - t0
            return result

        return wrapper

    methods = {f"_{part}": timed(part, getattr(NumpyMLP, f"_{part}")) for part in NumpyMLP.PARTS}
    timed_class = type("TimedNumpyMLP", (NumpyMLP,), methods | {"step": timed("step", NumpyMLP.step)})
    with patch.object(network, "NumpyMLP", timed_class):
        yield seconds


def step_parts_line(seconds: dict[str, float]) -> str:
    """'forward 38 %, loss 3 %, backward 47 %, update 9 %, other 3 %' of the steps' total time."""
    step = seconds["step"] or math.nan
    other = step - sum(seconds[part] for part in NumpyMLP.PARTS)
    return ", ".join(f"{part} {100 * seconds[part] / step:.0f} %" for part in NumpyMLP.PARTS) + (
        f", other {100 * other / step:.0f} %"
    )


# --- running training --------------------------------------------------------------------------


class Runner:
    def __init__(self, data: Dataset, args: argparse.Namespace):
        self.data, self.args = data, args

    def limits(self, backend: str):
        if backend == "numpy" and self.args.threads:
            return threadpool_limits(limits=self.args.threads, user_api="blas")
        return nullcontext()

    def spec(self, **fields) -> TrainSpec:
        if self.args.quick:
            fields.setdefault("train_limit", QUICK_LIMIT)
        if self.args.validation_size is not None:
            fields.setdefault("validation_size", self.args.validation_size)
        return TrainSpec.model_validate(fields)

    def progress(self, label: str, epochs: int) -> Callable:
        def on_progress(event) -> None:
            if isinstance(event, EpochEnd) and not self.args.quiet:
                validation = (
                    ""
                    if event.validation_accuracy is None
                    else f"validation {100 * event.validation_accuracy:.2f} %, "
                )
                print(
                    f"  [{label}] epoch {event.epoch}/{epochs}: loss {event.loss:.4f}, "
                    f"train {100 * event.train_accuracy:.2f} %, {validation}"
                    f"test {100 * event.test_accuracy:.2f} %, {event.seconds:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )

        return on_progress

    def warm_up(self, spec: TrainSpec, cpu_matmul: str | None = None) -> None:
        """A few untimed steps: libraries loaded, thread pools up, first-call costs paid."""
        n = min(20 * spec.batch_size, len(self.data.train_images))
        warm = spec.model_copy(update={"epochs": 1, "train_limit": n})
        try:
            with self.limits(spec.backend):
                train(
                    warm,
                    self.data,
                    device=self.args.device,
                    threads=self.args.threads,
                    cpu_matmul=cpu_matmul or self.args.torch_matmul or "onednn",
                )
        except Exception:
            pass

    def run(self, spec: TrainSpec, label: str, cpu_matmul: str | None = None) -> dict:
        """Train once; a failure (divergence or anything else) is a result, not a crash."""
        row: dict = {"label": label, "spec": spec.model_dump(), "status": "ok"}
        started = time.perf_counter()
        try:
            with self.limits(spec.backend):
                result = train(
                    spec,
                    self.data,
                    Callbacks(self.progress(label, spec.epochs)),
                    device=self.args.device,
                    threads=self.args.threads,
                    cpu_matmul=cpu_matmul or self.args.torch_matmul or "onednn",
                )
        except TrainingError as exc:
            row.update(status="diverged", error=str(exc))
        except Exception as exc:
            row.update(status=f"failed: {type(exc).__name__}", error=str(exc))
        else:
            row.update(
                train_accuracy=result.train_accuracy,
                validation_accuracy=result.validation_accuracy,
                test_accuracy=result.test_accuracy,
                best_epoch=result.best_epoch,
                train_seconds=result.seconds,
                last_epoch_seconds=result.epochs[-1].seconds,
                epochs=[asdict(e) for e in result.epochs],
            )
        row["wall_seconds"] = time.perf_counter() - started
        if row["status"] != "ok":
            print(f"  [{label}] {row['status']}: {row['error']}", file=sys.stderr, flush=True)
        return row


def n_train(args: argparse.Namespace, data: Dataset) -> int:
    """Images a run trains on: the training split less the validation images, or --quick's."""
    held = VALIDATION_SIZE if args.validation_size is None else args.validation_size
    available = len(data.train_images) - held
    return min(QUICK_LIMIT, available) if args.quick else available


# --- the modes ---------------------------------------------------------------------------------


def throughput(runner: Runner, args: argparse.Namespace) -> dict:
    epochs = args.epochs or THROUGHPUT_EPOCHS
    backends = [args.backend] if args.backend else ["numpy", "torch"]
    # torch's matrix products on CPU: oneDNN (the default) and, for comparison, torch's own BLAS (MKL)
    matmuls = [args.torch_matmul] if args.torch_matmul else ["onednn", "blas"]
    variants = [
        (b, m) for b in backends for m in (matmuls if b == "torch" and args.device == "cpu" else [None])
    ]
    n = n_train(args, runner.data)
    base = THROUGHPUT | (json.loads(args.config) if args.config else {})
    print(
        f"Throughput: {'-'.join(map(str, LAYERS))}, {base}, {epochs} epoch(s) of {n:,} images, "
        f"torch device {args.device}\n"
    )
    rows = []

    def measure_floor(batch: int) -> float:
        """Seconds per epoch of the floor's products, now."""
        with threadpool_limits(limits=args.threads, user_api="blas") if args.threads else nullcontext():
            return matmul_step_seconds(LAYERS, batch, repeats=args.repeats)["step_seconds"] * math.ceil(
                n / batch
            )

    for batch in args.batch_sizes:
        for backend, matmul in variants:
            spec = runner.spec(backend=backend, batch_size=batch, epochs=epochs, **base)
            name = backend if matmul is None else f"{backend} ({matmul})"
            runner.warm_up(spec, matmul)
            # The floor just before and just after each run: the machine's speed drifts with its
            # neighbours, and a ratio is only meaningful against the speed of the same minutes.
            before = measure_floor(batch)
            with numpy_step_parts() if backend == "numpy" else nullcontext({}) as parts:
                row = runner.run(spec, f"{name} b={batch}", matmul)
            after = measure_floor(batch)
            floor = (before + after) / 2
            row |= {
                "backend": name,
                "cpu_matmul": matmul,
                "batch": batch,
                "steps_per_epoch": math.ceil(n / batch),
                "floor_epoch_seconds": floor,
                "floor_before": before,
                "floor_after": after,
            }
            if parts:
                row["step_parts_seconds"] = parts
            if row["status"] == "ok":
                s = statistics.median(e["seconds"] for e in row["epochs"])
                row |= {
                    "epoch_seconds": s,
                    "samples_per_second": n / s,
                    "ratio_to_floor": s / floor,
                    "wall_seconds_per_epoch": row["wall_seconds"] / epochs,
                }
            print(
                f"  [{name} b={batch}] floor {before:.3f} s before, {after:.3f} s after",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)

    print()
    print(
        table(
            [
                "backend",
                "batch",
                "s/epoch",
                "samples/s",
                "floor s",
                "x floor",
                "wall s/epoch",
                "test acc",
                "status",
            ],
            [
                [
                    r["backend"],
                    r["batch"],
                    r.get("epoch_seconds"),
                    r.get("samples_per_second") and round(r["samples_per_second"]),
                    r["floor_epoch_seconds"],
                    r.get("ratio_to_floor"),
                    r.get("wall_seconds_per_epoch"),
                    pct(r.get("test_accuracy")),
                    r["status"],
                ]
                for r in rows
            ],
            right={1, 2, 3, 4, 5, 6, 7},
        )
    )
    print(
        f"\ns/epoch: median over {epochs} epoch(s) of training time (evaluation excluded); floor: one step's "
        "matrix products in NumPy x steps, the mean of its measurements just before and after the run; "
        "x floor: s/epoch over floor; wall: the whole train() call per epoch, evaluation of both splits included."
    )
    for r in rows:
        if r.get("step_parts_seconds") and r["status"] == "ok":
            print(
                f"{r['backend']} b={r['batch']}: {r['epoch_seconds']:.3f} s/epoch, {r['ratio_to_floor']:.2f}x "
                f"floor; of a step, timed inside the run's steps: {step_parts_line(r['step_parts_seconds'])}"
            )
    for r in rows:
        drift = r["floor_after"] / r["floor_before"] - 1
        if abs(drift) > 0.2:
            print(
                f"warning: the floor moved {100 * drift:+.0f} % during {r['backend']} b={r['batch']}: "
                f"the machine was not quiet, that ratio is unreliable"
            )
    return {"epochs": epochs, "train_images": n, "spec": base, "runs": rows}


def notebook_configs(l2: float) -> list[dict]:
    """The notebook's 11 configurations, numbered from 1 in this order."""
    configs = [
        {
            "backend": "numpy",
            "activation": "sigmoid",
            "init": init,
            "optimizer": "sgd",
            "learning_rate": lr,
            "l2": l2,
        }
        for init, lr in NOTEBOOK_NUMPY
    ]
    return configs + [
        {
            "backend": "torch",
            "activation": act,
            "init": "glorot",
            "optimizer": "adam",
            "learning_rate": 0.01,
            "l2": l2 if fixed is None else fixed,
        }
        for act, fixed in NOTEBOOK_TORCH
    ]


def notebook(runner: Runner, args: argparse.Namespace) -> dict:
    epochs = args.epochs or NOTEBOOK_EPOCHS
    configs = list(enumerate(notebook_configs(args.l2 or 0.0), 1))
    if args.configs:
        configs = [(i, c) for i, c in configs if i in args.configs]
    fixed = {"batch_size": NOTEBOOK_BATCH, "epochs": epochs}
    print(
        f"Notebook: {'-'.join(map(str, LAYERS))}, batch {NOTEBOOK_BATCH}, {epochs} epoch(s) of "
        f"{n_train(args, runner.data):,} images, seeds {args.seed}-{args.seed + args.seeds - 1}\n"
    )
    return {"epochs": epochs, "batch": NOTEBOOK_BATCH} | replicated(runner, args, configs, fixed)


def candidates(runner: Runner, args: argparse.Namespace) -> dict:
    """BEST's candidates, each once per seed, ranked by mean validation accuracy: the first is BEST."""
    configs = [(i, best_config(args) | change) for i, change in enumerate(BEST_CANDIDATES, 1)]
    print(
        f"BEST's candidates: {'-'.join(map(str, LAYERS))}, {n_train(args, runner.data):,} images, "
        f"seeds {args.seed}-{args.seed + args.seeds - 1}; ranked by validation accuracy, test accuracy final\n"
    )
    for i, config in configs:
        print(f"  #{i}: {json.dumps(config)}")
    print()
    return {"candidates": dict(configs)} | replicated(runner, args, configs, {})


def replicated(
    runner: Runner, args: argparse.Namespace, configs: list[tuple[int, dict]], fixed: dict
) -> dict:
    """Each numbered configuration once per seed (--seed onwards, --seeds of them): every run's row, then
    the configurations ranked as GET /sweeps/{id} ranks them."""
    seeds = list(range(args.seed, args.seed + args.seeds))
    rows, warmed = [], set()
    for i, config in configs:
        for seed in seeds:
            spec = runner.spec(**(config | fixed | {"seed": seed}))
            if spec.backend not in warmed:  # the first run of a backend must not pay its start-up
                runner.warm_up(spec)
                warmed.add(spec.backend)
            label = (
                f"{i}/{len(configs)} {config['backend']} {config['activation']} {config['init']} "
                f"lr={config['learning_rate']:g} seed={seed}"
            )
            rows.append(runner.run(spec, label) | {"n": i, "seed": seed})
    print()
    print(
        table(
            ["#", "seed", "backend", "activation", "init", "lr", "l2", "train acc", "val acc", "test acc",
             "train s", "wall s", "status"],
            [
                [
                    r["n"], r["seed"], r["spec"]["backend"], r["spec"]["activation"], r["spec"]["init"],
                    f"{r['spec']['learning_rate']:g}", f"{r['spec']['l2']:g}", pct(r.get("train_accuracy")),
                    pct(r.get("validation_accuracy")), pct(r.get("test_accuracy")), r.get("train_seconds"),
                    r["wall_seconds"], r["status"],
                ]
                for r in rows
            ],
            right={0, 1, 5, 6, 7, 8, 9, 10, 11},
        )
    )  # fmt: skip
    for r in rows:
        if r["status"] != "ok":
            print(f"  #{r['n']} seed {r['seed']}: {r['error']}")
    configurations, ranked_by = group_runs([notebook_run(k, r) for k, r in enumerate(rows)])
    print(f"\nConfigurations, best first by {ranked_by}; mean (95 % CI) over {len(seeds)} seed(s):\n")
    print(configurations_table(configurations))
    return {
        "seeds": seeds,
        "runs": rows,
        "ranked_by": ranked_by,
        "configurations": [asdict(c) for c in configurations],
    }


def notebook_run(index: int, row: dict) -> Run:
    return Run(
        job_id=index,
        hyperparameters={"#": row["n"]},
        seed=row["seed"],
        succeeded=row["status"] == "ok",
        validation_accuracy=row.get("validation_accuracy"),
        test_accuracy=row.get("test_accuracy"),
        seconds=row.get("train_seconds"),
        failed=row["status"] != "ok",
    )


def mean_ci(summary: Summary | None) -> str | None:
    if summary is None:
        return None
    if summary.ci_low is None or summary.ci_high is None:
        return pct(summary.mean)
    return f"{100 * summary.mean:.2f} % ± {100 * (summary.ci_high - summary.mean):.2f}"


def configurations_table(configurations: list) -> str:
    """The configurations as docs/performance.md's notebook table shows them: mean ± 95 % CI half-width, ties
    and the test that judged them (paired by seed where two configurations ran two seeds or more alike)."""
    rows = [
        [
            c.hyperparameters["#"],
            c.n,
            mean_ci(c.validation),
            mean_ci(c.test),
            c.seconds,
            versus_best(c.tied_with_best, rank == 0, c.gap and c.gap.difference),
            None if c.gap is None else gap_text(c.gap.difference, c.gap.ci_low, c.gap.ci_high),
            c.p_value,
            "" if rank == 0 else how_tested(c.tested_by, c.pairs),
        ]
        for rank, c in enumerate(configurations)
    ]
    return table(
        ["#", "n", "validation acc", "test acc", "train s", "vs best", "gap, points (95 % CI)", "p", "test"],
        rows,
        right={0, 1, 2, 3, 4, 7},
    )


def best_config(args: argparse.Namespace) -> dict:
    """BEST, with --best-config, --backend and --epochs on top."""
    config = BEST | (json.loads(args.best_config) if args.best_config else {})
    if args.backend:
        config["backend"] = args.backend
    if args.epochs:
        config["epochs"] = args.epochs
    return config


def best(runner: Runner, args: argparse.Namespace) -> dict:
    config = best_config(args)
    spec = runner.spec(**config)
    print(f"Best: {spec.name}\n")
    runner.warm_up(spec)
    row = runner.run(spec, f"best {spec.backend}")
    print()
    if row["status"] == "ok":
        print(
            table(
                ["epoch", "loss", "train acc", "val loss", "val acc", "test acc", "train s"],
                [
                    [
                        e["epoch"],
                        e["loss"],
                        pct(e["train_accuracy"]),
                        e["validation_loss"],
                        pct(e["validation_accuracy"]),
                        pct(e["test_accuracy"]),
                        e["seconds"],
                    ]
                    for e in row["epochs"]
                ],
                right={0, 1, 2, 3, 4, 5, 6},
            )
        )
        print(
            "train and test accuracies of intermediate epochs: on fixed samples of 2,000 images; "
            "the last epoch's on every image"
        )
        print()
        met = row["test_accuracy"] >= 0.985 and spec.epochs <= 15
        print(
            table(
                [
                    "backend",
                    "epochs",
                    "val acc",
                    "test acc",
                    "train acc",
                    "train s",
                    "wall s",
                    "≥ 98.5 % in ≤ 15 epochs",
                ],
                [
                    [
                        spec.backend,
                        spec.epochs,
                        pct(row["validation_accuracy"]),
                        pct(row["test_accuracy"]),
                        pct(row["train_accuracy"]),
                        row["train_seconds"],
                        row["wall_seconds"],
                        "yes" if met else "no",
                    ]
                ],
                right={1, 2, 3, 4, 5, 6},
            )
        )
        row["target_met"] = met
    else:
        print(f"{row['status']}: {row['error']}  (wall {row['wall_seconds']:.1f} s)")
    return {"config": config, "run": row}


WALL_JOBS = ("default", "best", "both")


def wall(runner: Runner, args: argparse.Namespace) -> dict:
    """A job's whole wall time through the worker (claim to success) against its epochs' training time."""
    default = {"backend": "numpy"} | ({"epochs": args.epochs} if args.epochs else {})
    specs = [
        (label, runner.spec(**config))
        for key, label, config in [
            ("default", "default spec", default),
            ("best", "best configuration", best_config(args)),
        ]
        if args.wall in (key, "both")
    ]
    print("Wall time: each job queued alone on a temporary SQLite file, trained by run_worker(--once)\n")
    rows = []
    for label, spec in specs:
        runner.warm_up(spec)  # as a running worker would be: libraries loaded, the dataset decoded,
        dataset_digest(runner.data)  # and digested for the provenance, as by the worker's first job
        rows.append({"label": label, "spec": spec.model_dump(mode="json")} | worker_wall_time(spec, args))
    print(
        table(
            ["job", "backend", "epochs", "training s", "claim to success s", "overhead s", "ratio", "≤ 1.1"],
            [
                [
                    r["label"], r["spec"]["backend"], r["epochs_trained"], r["training_seconds"],
                    r["wall_seconds"], r["wall_seconds"] - r["training_seconds"], r["ratio"],
                    "yes" if r["ratio"] <= 1.1 else "no",
                ]
                for r in rows
            ],
            right={2, 3, 4, 5, 6},
        )
    )  # fmt: skip
    print(
        "\ntraining s: the sum of the epochs' training seconds as the job recorded them; claim to success: "
        "finished_at - started_at of the job row, evaluation, checkpoints and the model's write included."
    )
    return {"runs": rows}


def worker_wall_time(spec: TrainSpec, args: argparse.Namespace) -> dict:
    """Queue spec on a fresh SQLite file, run the real worker loop once, read the job back."""
    from service.settings import Settings
    from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
    from service.store.jobs import enqueue_job
    from service.store.queries import get_epochs, get_job
    from workers.worker import run_worker

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/wall.db"
        settings = Settings(
            database_url=url,
            data_dir=Path(args.data_dir),
            download=False,
            torch_device=args.device if args.device in ("auto", "cpu", "cuda") else "auto",
            torch_threads=args.threads or 0,
        )
        engine = make_engine(url)
        try:
            migrate(engine)
            sessions = make_sessionmaker(engine)
            with session_scope(sessions) as session:
                job_id = enqueue_job(session, spec).id
            run_worker(settings, once=True)
            with session_scope(sessions) as session:
                job, epochs = get_job(session, job_id), get_epochs(session, job_id)
                assert job is not None and job.started_at and job.finished_at, job
                if job.status != "succeeded":
                    sys.exit(f"bench/train.py: the job {job.status}: {job.error}")
                training = sum(e.seconds for e in epochs)
                seconds = (job.finished_at - job.started_at).total_seconds()
        finally:
            engine.dispose()
    return {
        "epochs_trained": len(epochs),
        "training_seconds": training,
        "wall_seconds": seconds,
        "ratio": seconds / training,
    }


# --- main --------------------------------------------------------------------------------------


def default_data_dir() -> str:
    return os.environ.get("MLPLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Default mode: throughput of each backend against the float32 NumPy matmul floor.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--notebook", action="store_true", help="the notebook's experiment (11 configurations)")
    mode.add_argument(
        "--candidates",
        action="store_true",
        help="BEST's candidates, --seeds each, ranked by validation accuracy (the first should be BEST)",
    )
    mode.add_argument("--best", action="store_true", help="train the BEST configuration once")
    mode.add_argument(
        "--wall",
        nargs="?",
        const="both",
        choices=WALL_JOBS,
        help="the default spec and BEST (or only one: --wall default, --wall best) through the worker: "
        "claim-to-success time over training time",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help=f"epochs per run (default: throughput {THROUGHPUT_EPOCHS}, notebook 15, best BEST's)",
    )
    p.add_argument(
        "--quick", action="store_true", help=f"smoke run: train on the first {QUICK_LIMIT:,} images"
    )
    p.add_argument(
        "--backend",
        choices=["numpy", "torch"],
        help="backend for --best (default BEST's); restricts the throughput mode to one backend",
    )
    p.add_argument(
        "--best-config",
        metavar="JSON",
        help="TrainSpec fields overriding BEST's, e.g. '{\"learning_rate\": 0.002}'",
    )
    p.add_argument(
        "--config", metavar="JSON", help="TrainSpec fields overriding the throughput mode's network/optimizer"
    )
    p.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(THROUGHPUT_BATCHES),
        metavar="B,B",
        help="throughput batch sizes (default 64,256)",
    )
    p.add_argument(
        "--repeats", type=int, default=15, help="repetitions of the floor measurement (median, default 15)"
    )
    p.add_argument("--l2", type=float, help="L2 for the notebook's configurations that have none (default 0)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the notebook's runs (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="runs of each notebook configuration (or candidate), seeds --seed onwards (default 1)",
    )
    p.add_argument(
        "--configs",
        type=lambda text: {int(x) for x in text.split(",")},
        metavar="N,N",
        help="only these of the notebook's configurations (numbered 1-11 as printed)",
    )
    p.add_argument(
        "--validation-size",
        type=int,
        help=f"images held out to validate on (default the spec's {VALIDATION_SIZE:,}; 0: the notebook's exact setup)",
    )
    p.add_argument(
        "--threads", type=int, help="BLAS threads for NumPy and torch.set_num_threads (default: as found)"
    )
    p.add_argument(
        "--torch-matmul",
        choices=["onednn", "blas"],
        help="torch's CPU matrix products: oneDNN (the "
        "service's default) or torch's BLAS (MKL); throughput runs both unless given",
    )
    p.add_argument(
        "--device", default="cpu", help="torch device (default cpu; 'auto' picks CUDA where present)"
    )
    p.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="folder holding mnist/ (default $MLPLAB_DATA_DIR or ../shared/data)",
    )
    p.add_argument(
        "--json", metavar="PATH", help="where to write the results (default bench/results/train-<mode>.json)"
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = next((m for m in ("notebook", "candidates", "best", "wall") if getattr(args, m)), "throughput")
    if args.epochs is not None and args.epochs < 1:
        sys.exit("--epochs must be at least 1")
    try:
        data = load_dataset("mnist", args.data_dir, download=False)
    except DataError as exc:
        sys.exit(f"bench/train.py: {exc}")

    info = machine_info()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print_machine(info)

    runner = Runner(data, args)
    started = time.perf_counter()
    try:
        modes = {
            "throughput": throughput,
            "notebook": notebook,
            "candidates": candidates,
            "best": best,
            "wall": wall,
        }
        results = modes[mode](runner, args)
    except ValueError as exc:  # bad JSON or a TrainSpec that does not validate (runs catch their own errors)
        sys.exit(f"bench/train.py: invalid configuration: {exc}")
    total = time.perf_counter() - started
    print(f"\nTotal {total:.1f} s")

    out = (
        Path(args.json)
        if args.json
        else REPO / "bench" / "results" / f"train-{mode}{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "mode": mode,
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "total_seconds": total,
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
