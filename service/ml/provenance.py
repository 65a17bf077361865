"""What produced a model (Provenance, collected by the worker that trains it) and how a reproduction
compares with the model it reproduces (Reproduction).

Two NumPy runs of one spec on the same machine type give bit-identical weights: the batches depend
only on (seed, epoch) and every operation is deterministic for a given BLAS, architecture and thread
count, which is why Provenance records them. Torch runs may differ in the last bits (oneDNN and
CUDA kernels pick their algorithms at run time), so a Reproduction also says how far the weights and
accuracies moved.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from service import __version__

from .blas import numpy_blas
from .data import Dataset
from .network import BackendOptions
from .spec import TrainSpec
from .weights import Weights

MOST_THREAD_CHANGES = 100  # noted in a job's provenance; the first ones tell that its threads changed
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when mlplab runs from a checkout


class Provenance(BaseModel):
    """What trained a job: the code, the libraries, the machine and the data (its latest attempt's)."""

    mlplab: str = Field(description="mlplab's version.")
    git_commit: str | None = Field(description="The checkout's commit; null when installed from a package.")
    git_modified: bool | None = Field(description="Whether the checkout had uncommitted changes.")
    python: str
    numpy: str
    numba: str | None = Field(
        None,
        description="numba's version: it compiles the NumPy step's elementwise work (null: before it did).",
    )
    torch: str | None = Field(description="torch's installed version (null: not installed).")
    blas: str = Field(description="NumPy's BLAS: library, version, CPU kernels, threading.")
    torch_matmul: str | None = Field(description="Torch jobs: where its products ran (onednn, blas, cuda).")
    device: str = Field(description="cpu, or the CUDA device and its name.")
    threads: int = Field(
        description="Threads the job started on: NumPy's BLAS threads, or torch's intra-op ones."
    )
    threads_changed: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[epoch, threads] each time the host's other jobs changed the job's threads during that "
        "epoch (docs/deployment.md; the first 100 changes); NumPy's weights are bit-identical only to a "
        "run on the same threads.",
    )
    cpus: int = Field(description="Logical CPUs of the machine.")
    cpu: str = Field(description="The CPU's model name.")
    host: str
    dataset: str
    dataset_sha256: str = Field(description="SHA-256 of the decoded dataset (data.dataset_sha256).")


def stored_provenance(stored: dict[str, Any] | None) -> Provenance | None:
    """A job row's provenance, or None where it has none or one of a form this version cannot read."""
    try:
        return None if stored is None else Provenance.model_validate(stored)
    except ValidationError:
        return None


def resumed(earlier: Provenance, now: Provenance, epoch: int) -> Provenance:
    """A resumed attempt's provenance (`now`, from `epoch` on), keeping the threads the earlier attempts
    trained on: rebuilt afresh, a job resumed on 2 threads after epochs on 1 said 2 throughout, and its
    reproduction's weights differed with no environment change to say why."""
    changes = [change for change in earlier.threads_changed if change[0] < epoch]  # not the epochs redone
    before = changes[-1][1] if changes else earlier.threads
    if now.threads != before:
        changes.append((epoch, now.threads))
    return now.model_copy(
        update={"threads": earlier.threads, "threads_changed": changes[:MOST_THREAD_CHANGES]}
    )


# The fields that make two machines the same for bit-identical NumPy weights.
MACHINE_TYPE = (
    "numpy",
    "numba",
    "blas",
    "threads",
    "threads_changed",
    "cpu",
    "device",
    "torch",
    "torch_matmul",
)


def collect(spec: TrainSpec, data: Dataset, options: BackendOptions) -> Provenance:
    """This process's Provenance for training `spec` on `data` with these backend options."""
    commit, modified = git_state()
    blas = numpy_blas()
    device, threads, matmul = "cpu", int(blas.get("num_threads") or 1), None
    if spec.backend == "torch":
        device, threads, matmul = _torch(options)
    return Provenance(
        mlplab=__version__,
        git_commit=commit,
        git_modified=modified,
        python=platform.python_version(),
        numpy=np.__version__,
        numba=_version("numba"),
        torch=_version("torch"),
        blas=f"{blas.get('internal_api')} {blas.get('version')} "
        f"({blas.get('architecture')}, {blas.get('threading_layer')})",
        torch_matmul=matmul,
        device=device,
        threads=threads,
        cpus=os.cpu_count() or 1,
        cpu=_cpu_name(),
        host=socket.gethostname(),
        dataset=data.name,
        dataset_sha256=dataset_digest(data),
    )


class Reproduction(BaseModel):
    """How a reproduction's model compares with the model it trained again."""

    of: int = Field(description="The model reproduced.")
    weights_identical: bool = Field(description="Every weight and bias equal, bit for bit.")
    max_weight_difference: float = Field(description="max |w - w'| over every weight and bias.")
    train_accuracy_change: float = Field(description="This model's train accuracy less the original's.")
    validation_accuracy_change: float | None = Field(
        description="This model's validation accuracy (what ranks models) less the original's; "
        "null without a validation split."
    )
    test_accuracy_change: float = Field(description="This model's test accuracy less the original's.")
    environment_changes: dict[str, list[Any]] | None = Field(
        description="The provenance fields that differ: {field: [original, this]}; "
        "null when the original has no provenance."
    )
    summary: str


@dataclass(frozen=True)
class Trained:
    """One side of a comparison: a model's weights, its accuracies, and its provenance if recorded."""

    weights: Weights
    train_accuracy: float
    test_accuracy: float
    provenance: Provenance | None
    validation_accuracy: float | None = None  # None without a validation split


def compare(of: int, original: Trained, reproduced: Trained) -> Reproduction:
    """The Reproduction of model `of` by `reproduced`."""
    pairs = [
        (a, a2)
        for (W, b), (W2, b2) in zip(original.weights.params, reproduced.weights.params, strict=True)
        for a, a2 in ((W, W2), (b, b2))
    ]
    identical = all(np.array_equal(a, a2) for a, a2 in pairs)
    difference = max(float(np.abs(a - a2).max()) for a, a2 in pairs)
    changes = None
    if original.provenance is not None and reproduced.provenance is not None:
        old, new = original.provenance.model_dump(), reproduced.provenance.model_dump()
        changes = {key: [old[key], new[key]] for key in old if old[key] != new[key]}
    test_change = reproduced.test_accuracy - original.test_accuracy
    return Reproduction(
        of=of,
        weights_identical=identical,
        max_weight_difference=difference,
        train_accuracy_change=reproduced.train_accuracy - original.train_accuracy,
        validation_accuracy_change=(
            None
            if original.validation_accuracy is None or reproduced.validation_accuracy is None
            else reproduced.validation_accuracy - original.validation_accuracy
        ),
        test_accuracy_change=test_change,
        environment_changes=changes,
        summary=_summary(identical, difference, test_change, changes),
    )


def _summary(identical: bool, difference: float, test_change: float, changes: dict[str, Any] | None) -> str:
    if identical:
        outcome = "bit-identical weights"
    else:
        outcome = f"weights differ by up to {difference:.3g}; test accuracy moved {test_change:+.4%}"
    if changes is None:
        return f"{outcome} (the original has no provenance to compare)"
    machine = [key for key in MACHINE_TYPE if key in changes]
    where = (
        f"on another machine type ({', '.join(machine)} differ)" if machine else "on the same machine type"
    )
    # another mlplab may train otherwise (0.2.0 split an epoch's images into even batches)
    version = (
        f", by mlplab {changes['mlplab'][1]} (the original: {changes['mlplab'][0]})"
        if "mlplab" in changes
        else ""
    )
    return f"{outcome}, {where}{version}"


def dataset_sha256(data: Dataset) -> str:
    """SHA-256 of the decoded arrays a job trains and is tested on: train images (float32, row-major),
    train labels (int64), test images, test labels; the same whether the files were raw or gzip'd."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


_digests: dict[int, tuple[Dataset, str]] = {}  # id -> (the dataset, kept so its id is never reused; digest)


def dataset_digest(data: Dataset) -> str:
    """dataset_sha256, computed once per dataset object in this process (datasets are decoded once)."""
    if (known := _digests.get(id(data))) is None:
        known = _digests[id(data)] = (data, dataset_sha256(data))
    return known[1]


@cache
def git_state() -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout mlplab runs from; (None, None) outside one."""
    if not (CHECKOUT / ".git").exists():
        return None, None
    try:
        commit = _git("rev-parse", "HEAD")
        modified = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, modified


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch(options: BackendOptions) -> tuple[str, int, str]:
    """(device, threads, where products run) of a torch job under these options."""
    import torch  # only for torch jobs, which have imported it already

    from .torch_mlp import resolve_device

    device = resolve_device(options.get("device", "auto"))
    threads = options.get("threads") or torch.get_num_threads()
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})", threads, "cuda"
    return "cpu", threads, options.get("cpu_matmul", "onednn")
