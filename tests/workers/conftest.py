"""The worker suites' fixtures: a tiny IDX dataset in tmp_path, and no CPU quota."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.ml.data import write_idx


def write_dataset(folder: Path) -> None:
    """A tiny random MNIST-shaped dataset: 200 training and 100 test images."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 100)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))


@pytest.fixture
def data_dir(tmp_path) -> Path:
    write_dataset(tmp_path / "data" / "mnist")
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def no_cpu_quota(tmp_path, monkeypatch) -> None:
    """Workers here see no CPU quota, whatever the machine's (a CI container's --cpus would change the
    shares the tests expect); a test that wants one writes it (test_presence.py's cgroup fixture)."""
    from workers import presence

    monkeypatch.setattr(presence, "CGROUP", tmp_path / "no-cgroup")
