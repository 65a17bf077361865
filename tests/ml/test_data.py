"""service.ml.data: IDX reading and checks, both folder layouts, downloads from a local server, batches."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from service.ml import data
from service.ml.data import (
    DataError,
    dataset_status,
    epoch_batches,
    epoch_steps,
    images_into_epoch,
    load_dataset,
    read_idx,
    write_idx,
)
from tests.support import real_data_dir

FILES = [
    name for pair in data.SPLIT_FILES.values() for name in pair
]  # train images, labels, test images, labels


def synthetic(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train + n_test, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # the ends of the range must map to exactly 0 and 1
    labels = rng.integers(0, 10, size=n_train + n_test, dtype=np.uint8)
    return dict(
        zip(FILES, [images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]], strict=True)
    )


def write_dataset(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (name + ".gz" if gz else name), array)


def idx_bytes(array: np.ndarray, tmp_path: Path) -> bytes:
    path = tmp_path / "scratch.idx"
    write_idx(path, array)
    content = path.read_bytes()
    path.unlink()
    return content


@pytest.fixture(autouse=True)
def fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def no_system_fashion(monkeypatch):
    """Keep an installed Debian dataset-fashion-mnist out of tests that expect nothing to be found."""
    info = data.DATASETS["fashion-mnist"]
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", dataclasses.replace(info, system_dirs=()))


# --- reading and layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw"])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_round_trip_both_layouts(tmp_path, layout, gz):
    arrays = synthetic()
    write_dataset(tmp_path / layout, arrays, gz=gz)

    ds = load_dataset("mnist", tmp_path, download=False)

    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    for split, (images_name, labels_name) in data.SPLIT_FILES.items():
        images, labels = ds.split(split)
        expected = arrays[images_name]
        assert images.dtype == np.float32 and images.shape == (len(expected), 784)
        assert images.flags.c_contiguous
        np.testing.assert_array_equal(images, expected.reshape(len(expected), 784) / np.float32(255))
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, arrays[labels_name])
    assert ds.train_images[0, 0] == 0.0 and ds.train_images[0, 1] == 1.0
    with pytest.raises(ValueError):
        ds.split("validation")


def test_read_idx_shape_and_write_idx_checks(tmp_path):
    images = synthetic()["train-images-idx3-ubyte"]
    write_idx(tmp_path / "a.gz", images)
    with gzip.open(tmp_path / "a.gz") as f:
        assert int.from_bytes(f.read(4), "big") == 2051
    got = read_idx(tmp_path / "a.gz")
    assert got.dtype == np.uint8 and got.shape == images.shape
    np.testing.assert_array_equal(got, images)
    write_idx(tmp_path / "labels", np.array([0, 9, 3]))  # integer labels are accepted and stored as bytes
    assert read_idx(tmp_path / "labels").tolist() == [0, 9, 3]
    with pytest.raises(ValueError):
        write_idx(tmp_path / "bad", np.array([256]))
    assert not list(tmp_path.glob("*.part"))


def test_loads_are_cached_and_read_only(tmp_path):
    write_dataset(tmp_path / "mnist", synthetic())
    first = load_dataset("mnist", tmp_path, download=False)
    assert load_dataset("mnist", str(tmp_path), download=False) is first
    with pytest.raises(ValueError):
        first.train_images[0, 0] = 0.5  # shared across the process: nobody may scale it in place


def test_a_loaded_dataset_is_served_from_memory_while_its_folder_is_away(tmp_path):
    """A renamed data folder (a remount, a symlink swap) failed every job queued behind the one training,
    though the worker held the decoded dataset."""
    write_dataset(tmp_path / "mnist", synthetic())
    first = load_dataset("mnist", tmp_path, download=False)
    (tmp_path / "mnist").rename(tmp_path / "away")
    assert load_dataset("mnist", tmp_path, download=False) is first
    data.clear_cache()  # a process that never read it: says what is missing, as before
    with pytest.raises(data.DataError, match="missing"):
        load_dataset("mnist", tmp_path, download=False)


def test_fashion_mnist_classes_and_system_fallback(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    write_dataset(system, synthetic(seed=1), gz=False)
    info = data.DATASETS["fashion-mnist"]
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", dataclasses.replace(info, system_dirs=(system,)))

    ds = load_dataset("fashion-mnist", tmp_path / "empty-data-dir")

    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot" and len(ds.classes) == 10
    assert ds.train_images.shape == (12, 784)
    assert not (tmp_path / "empty-data-dir").exists()  # nothing was downloaded or created


# --- errors ----------------------------------------------------------------------------------------


def assert_names(exc: DataError, path: Path, *words: str) -> None:
    message = str(exc)
    assert str(path) in message, message
    assert "MLPLAB_DATA_DIR" in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_wrong_magic(tmp_path, gz):
    arrays = synthetic()
    arrays["train-images-idx3-ubyte"] = arrays["train-labels-idx1-ubyte"]  # a labels file where images belong
    write_dataset(tmp_path / "mnist", arrays, gz=gz)
    bad = tmp_path / "mnist" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, download=False)
    assert_names(exc.value, bad, "magic", "2049", "2051")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_truncated_data(tmp_path, gz):
    write_dataset(tmp_path / "mnist", synthetic(), gz=False)
    bad = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    content = bad.read_bytes()[:-100]
    if gz:
        bad.unlink()
        bad = bad.with_name(bad.name + ".gz")
        content = gzip.compress(content)
    bad.write_bytes(content)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, download=False)
    assert_names(exc.value, bad, "truncated")


def test_truncated_gzip_stream(tmp_path):
    write_dataset(tmp_path / "mnist", synthetic())
    bad = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-12])
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, download=False)
    assert_names(exc.value, bad)


def test_label_count_mismatch_and_wrong_size(tmp_path):
    arrays = synthetic()
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:-1]
    write_dataset(tmp_path / "a" / "mnist", arrays)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path / "a", download=False)
    assert_names(exc.value, tmp_path / "a" / "mnist" / "t10k-labels-idx1-ubyte.gz", "4 labels", "5 images")

    arrays = synthetic()
    arrays["train-images-idx3-ubyte"] = np.zeros((12, 32, 32), np.uint8)
    write_dataset(tmp_path / "b" / "mnist", arrays)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path / "b", download=False)
    assert_names(exc.value, tmp_path / "b" / "mnist" / "train-images-idx3-ubyte.gz", "32x32", "28x28")


def test_missing_file(tmp_path):
    arrays = synthetic()
    del arrays["train-labels-idx1-ubyte"]
    write_dataset(tmp_path / "mnist", arrays)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, download=False)
    assert_names(exc.value, tmp_path / "mnist" / "train-labels-idx1-ubyte", "missing")


def test_missing_fashion_mnist_is_local_only(tmp_path, no_system_fashion):
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path, download=True)
    assert_names(exc.value, tmp_path / "fashion-mnist", "dataset-fashion-mnist")
    assert not any(tmp_path.iterdir())


def test_status_never_raises_and_reads_only_headers(tmp_path, no_system_fashion):
    nowhere = tmp_path / "does-not-exist"
    status = dataset_status("mnist", nowhere)
    assert status == {
        "name": "mnist",
        "present": False,
        "damaged": [],
        "directory": None,
        "will_download": True,
        "splits": {"train": 60000, "test": 10000},
        "classes": list("0123456789"),
    }
    assert dataset_status("mnist", nowhere, download=False)["will_download"] is False
    assert dataset_status("fashion-mnist", nowhere)["will_download"] is False

    write_dataset(tmp_path / "MNIST" / "raw", synthetic())
    status = dataset_status("mnist", tmp_path)
    assert status["present"] and not status["will_download"]
    assert status["directory"] == str(tmp_path / "MNIST" / "raw")
    assert status["splits"] == {"train": 12, "test": 5}

    # a file overwritten with noise: /readyz and /datasets said present while every job of it failed
    broken = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    broken.write_bytes(os.urandom(5000))
    status = dataset_status("mnist", tmp_path)
    assert (status["present"], status["damaged"], status["will_download"]) == (
        False,
        ["train-images-idx3-ubyte.gz"],
        False,  # in the way: not downloaded again
    )


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError):
        load_dataset("cifar10", tmp_path)


# --- downloads from a local server ----------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server over tmp_path/www; yields its base URL. Never the internet."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def mirrors_list():
    """data.MNIST_MIRRORS (shared with DATASETS, so edited in place), restored afterwards."""
    saved = list(data.MNIST_MIRRORS)
    yield data.MNIST_MIRRORS
    data.MNIST_MIRRORS[:] = saved


@pytest.fixture
def served(tmp_path, server, monkeypatch, mirrors_list):
    """Synthetic MNIST served as <name>.gz under /good/, with the module's MD5 table pointed at it."""
    arrays = synthetic()
    good = tmp_path / "www" / "good"
    good.mkdir()
    for name, array in arrays.items():
        content = idx_bytes(array, tmp_path)
        (good / f"{name}.gz").write_bytes(gzip.compress(content))
        monkeypatch.setitem(data.MNIST_MD5, name, hashlib.md5(content).hexdigest())
    mirrors_list[:] = ["http://192.0.2.1/never-used/"]  # unroutable: a mirrors= argument must win over it
    return arrays, f"{server}/good/"


def test_download_from_second_mirror(tmp_path, served, server):
    arrays, good = served
    data_dir = tmp_path / "data"
    assert dataset_status("mnist", data_dir)["will_download"]

    ds = load_dataset("mnist", data_dir, mirrors=[f"{server}/missing/", good])

    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert ds.train_images.shape == (12, 784)
    assert sorted(os.listdir(data_dir / "mnist")) == sorted(f"{n}.gz" for n in FILES)
    assert dataset_status("mnist", data_dir)["present"]


def test_download_uses_the_module_mirror_list(tmp_path, served, mirrors_list):
    _, good = served
    mirrors_list[:] = ["not a url", good]
    ds = load_dataset("mnist", tmp_path / "data")
    assert ds.test_images.shape == (5, 784)


def test_download_completes_a_partial_torchvision_folder(tmp_path, served):
    arrays, good = served
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_dataset(raw, {k: v for k, v in arrays.items() if "train" in k}, gz=False)
    load_dataset("mnist", tmp_path / "data", mirrors=[good])
    assert sorted(os.listdir(raw)) == sorted(FILES[:2] + [f"{n}.gz" for n in FILES[2:]])
    assert not (tmp_path / "data" / "mnist").exists()


@pytest.mark.parametrize("corruption", ["wrong-content", "not-gzip"])
def test_corrupt_download_leaves_no_file(tmp_path, served, corruption):
    arrays, good = served
    target = tmp_path / "www" / "good" / "train-labels-idx1-ubyte.gz"
    if corruption == "wrong-content":
        target.write_bytes(gzip.compress(idx_bytes(arrays["train-labels-idx1-ubyte"][::-1], tmp_path)))
    else:
        target.write_bytes(b"<html>not a gzip file</html>")
    data_dir = tmp_path / "data"

    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir, mirrors=[good])

    message = str(exc.value)
    assert "train-labels-idx1-ubyte" in message and good in message and "MLPLAB_DATA_DIR" in message
    left = sorted(os.listdir(data_dir / "mnist"))
    assert left == ["train-images-idx3-ubyte.gz"]  # only the file that was verified before the bad one


def test_download_404(tmp_path, server):
    data_dir = tmp_path / "data"
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir, mirrors=[f"{server}/a/", f"{server}/b/"])
    message = str(exc.value)
    assert f"{server}/a/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"{server}/b/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert "MLPLAB_DATA_DIR" in message
    assert not (data_dir / "mnist").exists() or not any((data_dir / "mnist").iterdir())


def test_download_false_never_downloads(tmp_path, served):
    _, good = served
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path / "data", download=False, mirrors=[good])
    assert_names(exc.value, tmp_path / "data" / "mnist", "missing")
    assert not (tmp_path / "data").exists()


# --- batches ---------------------------------------------------------------------------------------


def test_epoch_batches_cover_every_index_once_and_repeat():
    batches = epoch_batches(1000, 64, seed=3, epoch=2)
    # 16 steps of 62 or 63 images, not 15 of 64 and one of 40: no step learns from a remainder
    assert [len(b) for b in batches] == [63] * 8 + [62] * 8
    assert [len(b) for b in epoch_batches(5000, 64, 0, 1)] == [64] * 23 + [63] * 56
    assert [len(b) for b in epoch_batches(1024, 64, 0, 1)] == [64] * 16
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    again = epoch_batches(1000, 64, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    np.testing.assert_array_equal(np.concatenate(batches), np.random.default_rng([3, 2]).permutation(1000))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(1000, 64, 3, 3)))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(1000, 64, 4, 2)))
    assert epoch_batches(0, 8, 0, 0) == []
    with pytest.raises(ValueError):
        epoch_batches(10, 0, 0, 0)


def test_images_into_epoch_counts_what_epoch_batches_hold():
    for n, batch in [(1000, 64), (5000, 64), (500, 64), (1024, 64), (7, 3), (1, 1)]:
        sizes = [len(b) for b in epoch_batches(n, batch, 0, 1)]
        assert len(sizes) == epoch_steps(n, batch)
        assert [images_into_epoch(n, batch, k) for k in range(len(sizes) + 1)] == [
            sum(sizes[:k]) for k in range(len(sizes) + 1)
        ]


# --- the real files --------------------------------------------------------------------------------


@pytest.mark.slow  # the real MNIST decoded
@pytest.mark.realdata
def test_real_mnist():
    """Fails, never skips, when the files are missing: CI must notice a data directory gone wrong."""
    data_dir = real_data_dir()
    ds = load_dataset("mnist", data_dir, download=False)
    assert ds.train_images.shape == (60000, 784) and ds.test_images.shape == (10000, 784)
    for images, labels in (ds.split("train"), ds.split("test")):
        assert images.dtype == np.float32 and images.flags.c_contiguous
        assert images.min() == 0.0 and images.max() == 1.0
        assert labels.dtype == np.int64 and set(np.unique(labels).tolist()) == set(range(10))
    status = dataset_status("mnist", data_dir)
    assert status["splits"] == {"train": 60000, "test": 10000}
    # The table downloads are verified against must match real files (byte-identical to the canonical ones).
    for name in FILES:
        folder = Path(status["directory"])
        path = folder / name if (folder / name).exists() else folder / f"{name}.gz"
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert hashlib.md5(content).hexdigest() == data.MNIST_MD5[name], path
