"""MNIST and Fashion-MNIST: find, check, download and decode the four IDX files of a dataset.

A dataset lives in ``<data_dir>/<name>/`` or in torchvision's ``<data_dir>/<Name>/raw/``, each file
either gzip'd (``.gz``) or raw. ``data_dir`` is the ``MLPLAB_DATA_DIR`` setting, which every error
message names so that whoever reads it knows what to change.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
from numpy.typing import ArrayLike, NDArray

SETTING = "MLPLAB_DATA_DIR"
IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
ROWS = COLS = 28

# Tried in order; each serves <file name>.gz. DATASETS shares this list object: edit it in place to point
# every download elsewhere (an internal mirror), or pass mirrors= for one call (tests do).
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
# MD5 of the *decompressed* files: mirrors re-compress, so the archives' own checksums vary.
MNIST_MD5: dict[str, str | None] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# No verified checksums of the decompressed Fashion-MNIST files are known here, and a download that
# cannot be verified is worse than none: Fashion-MNIST is local-only.
FASHION_MD5: dict[str, str | None] = {
    "train-images-idx3-ubyte": None,
    "train-labels-idx1-ubyte": None,
    "t10k-images-idx3-ubyte": None,
    "t10k-labels-idx1-ubyte": None,
}

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(Exception):
    """A dataset file is missing, unreadable or malformed, or could not be downloaded. Its message names
    the files and folders, for the operator's log; clients are told unavailable_reason()."""


def unavailable_reason(name: str) -> str:
    """What an API client is told of a DataError: the setting to look at, never a path of the server."""
    return (
        f"The {name} dataset is not available on this machine: its files are missing or damaged in "
        f"the data directory ({SETTING}), or could not be downloaded. The server's log names the file."
    )


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    subdirs: tuple[str, ...]  # relative to data_dir, in search order; the first one receives downloads
    classes: tuple[str, ...]
    md5: dict[str, str | None]  # file name -> MD5 of its decompressed bytes; None: cannot download it
    mirrors: list[str] = field(default_factory=list)
    system_dirs: tuple[Path, ...] = ()  # searched after data_dir, never written to
    splits: dict[str, int] = field(default_factory=lambda: {"train": 60000, "test": 10000})
    hint: str = ""  # how to get the files when they cannot be downloaded

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name for pair in SPLIT_FILES.values() for name in pair)

    def can_download(self, mirrors: list[str] | None = None) -> bool:
        return bool(self.mirrors if mirrors is None else mirrors) and all(self.md5.get(f) for f in self.files)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        subdirs=("mnist", "MNIST/raw"),
        classes=tuple(str(d) for d in range(10)),
        md5=MNIST_MD5,
        mirrors=MNIST_MIRRORS,
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        subdirs=("fashion-mnist", "FashionMNIST/raw"),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        md5=FASHION_MD5,
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        hint="install Debian's dataset-fashion-mnist package (it puts the files in "
        "/usr/share/datasets/fashion-mnist/) or place the four files in",
    ),
}


Images = NDArray[np.float32]  # (N, 784) in [0, 1], one flattened image a row
Labels = NDArray[np.int64]  # (N,)
Indices = NDArray[np.int64]  # rows of a split: a batch


class Split(NamedTuple):
    """Images and their labels, row for row."""

    images: Images
    labels: Labels


@dataclass(frozen=True)
class Dataset:
    name: str
    train_images: Images  # read-only, as every array here: shared by every user in the process
    train_labels: Labels
    test_images: Images
    test_labels: Labels
    classes: tuple[str, ...]

    def split(self, split: str) -> Split:
        if split == "train":
            return Split(self.train_images, self.train_labels)
        if split == "test":
            return Split(self.test_images, self.test_labels)
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")


def _error(path: Path, problem: str, remedy: str = "") -> DataError:
    remedy = (
        remedy or f"replace it (deleted MNIST files are downloaded again); {SETTING} is the data directory"
    )
    return DataError(f"{path}: {problem}; {remedy}")


def read_idx(path: Path | str, *, magic: int | None = None) -> NDArray[np.uint8]:
    """The uint8 array an IDX file holds, shaped from its header; ``magic`` also checks the file's kind."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except FileNotFoundError:
        raise _error(path, "file is missing") from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; truncated gzip is EOFError
        raise _error(path, f"cannot be read or decompressed ({exc})") from None
    if len(data) < 4:
        raise _error(path, f"too short for an IDX header ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    zero, dtype, ndim = found >> 16, (found >> 8) & 0xFF, found & 0xFF
    if magic is not None and found != magic:
        raise _error(path, f"wrong magic number {found}, expected {magic}")
    if zero or dtype != 0x08 or not 1 <= ndim <= 4:
        raise _error(path, f"not an IDX file of unsigned bytes (magic number {found:#010x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _error(path, f"truncated: {len(data)} bytes, the header alone needs {header}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise _error(path, f"{what}: {len(data)} bytes, header {shape} implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path | str, array: ArrayLike) -> None:
    """Write images (N, 28, 28) or labels (N,), values 0-255, as IDX; gzip'd if the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        in_range = array.size == 0 or (array.min() >= 0 and array.max() <= 255)
        if not (np.issubdtype(array.dtype, np.integer) and in_range):
            raise ValueError(f"IDX holds unsigned bytes; got {array.dtype} values")
        array = array.astype(np.uint8)
    if not 1 <= array.ndim <= 4:
        raise ValueError(f"IDX arrays have 1 to 4 dimensions, got shape {array.shape}")
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    data = header + np.ascontiguousarray(array).tobytes()
    _write_atomically(path, gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def _write_atomically(path: Path, data: bytes) -> None:
    # A crash or a concurrent reader must never see half a file under the final name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[Indices]:
    """Index batches of one epoch's shuffle: a function of (seed, epoch) alone, so a resumed job repeats them.

    ceil(n / batch_size) batches whose sizes differ by at most one image, not full batches and a remainder:
    a last step on a few images takes as long a stride on a far noisier gradient, and the epoch's
    accuracies are measured right after it."""
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return np.array_split(order, epoch_steps(n, batch_size)) if n else []


def epoch_steps(n: int, batch_size: int) -> int:
    """Steps (batches) of an epoch of n images."""
    return -(-n // batch_size)


def images_into_epoch(n: int, batch_size: int, steps: int) -> int:
    """Images the first `steps` of epoch_batches(n, batch_size) hold (np.array_split puts the larger first)."""
    smaller, larger = divmod(n, epoch_steps(n, batch_size))
    return steps * smaller + min(steps, larger)


# --- finding the files ---------------------------------------------------------------------------


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def _candidates(info: DatasetInfo, data_dir: Path) -> list[Path]:
    return [data_dir / sub for sub in info.subdirs] + list(info.system_dirs)


def _find_file(folder: Path, name: str) -> Path | None:
    # Raw first: torchvision's raw/ holds both, and raw needs no decompression.
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(info: DatasetInfo, data_dir: Path) -> tuple[Path, dict[str, Path | None]]:
    """The folder to use and its files (None where missing): the first complete one, else the first
    one under data_dir with any of the files (to be completed there), else the download folder."""
    found = []
    for folder in _candidates(info, data_dir):
        files = {name: _find_file(folder, name) for name in info.files}
        if all(files.values()):
            return folder, files
        found.append((folder, files))
    for folder, files in found[: len(info.subdirs)]:
        if any(files.values()):
            return folder, files
    return found[0]


def _found(files: dict[str, Path | None]) -> dict[str, Path]:
    """The files that are there, by name."""
    return {name: path for name, path in files.items() if path is not None}


def _missing_remedy(info: DatasetInfo, data_dir: Path) -> str:
    places = " or ".join(str(p) for p in _candidates(info, data_dir))
    get = info.hint or "place the four files in"
    return (
        f"looked in {places}; {get} {data_dir / info.subdirs[0]}, "
        f"or set {SETTING} (now {data_dir}) to the folder that holds {info.subdirs[0]}/"
    )


# --- downloading ---------------------------------------------------------------------------------


def _download(info: DatasetInfo, folder: Path, name: str, mirrors: list[str], data_dir: Path) -> None:
    failures = []
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True) as client:
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                response = client.get(url)
                response.raise_for_status()
                content = gzip.decompress(response.content)
            except httpx.HTTPStatusError as exc:
                failures.append(f"{url}: HTTP {exc.response.status_code}")
                continue
            except (httpx.HTTPError, httpx.InvalidURL, OSError, EOFError, zlib.error) as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            digest = hashlib.md5(content).hexdigest()
            if digest != info.md5[name]:
                failures.append(f"{url}: MD5 of the decompressed file is {digest}, expected {info.md5[name]}")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(folder / f"{name}.gz", response.content)
            return
    tried = "; ".join(failures) or "no mirrors configured"
    raise DataError(
        f"could not download {info.name} file {name}.gz into {folder}: tried {tried}. "
        f"Place the files there yourself or set {SETTING} (now {data_dir}) to a folder that has them."
    )


# --- loading -------------------------------------------------------------------------------------


def _load_split(images_path: Path, labels_path: Path, n_classes: int) -> Split:
    raw = read_idx(images_path, magic=IMAGES_MAGIC)
    if raw.shape[1:] != (ROWS, COLS):
        raise _error(images_path, f"images are {raw.shape[1]}x{raw.shape[2]}, expected {ROWS}x{COLS}")
    raw_labels = read_idx(labels_path, magic=LABELS_MAGIC)
    if len(raw_labels) != len(raw):
        raise _error(labels_path, f"{len(raw_labels)} labels for the {len(raw)} images in {images_path.name}")
    if raw_labels.size and raw_labels.max() >= n_classes:
        raise _error(labels_path, f"label {raw_labels.max()} out of range 0..{n_classes - 1}")
    # Decoded once per process and shared, hence read-only: one caller scaling in place would corrupt all.
    images = raw.reshape(len(raw), ROWS * COLS).astype(np.float32)
    images /= np.float32(255)
    labels = raw_labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return Split(images, labels)


_cache: dict[tuple[str, Path], Dataset] = {}  # by the folder its files were read from
# By the data_dir asked for: once decoded and checked, a dataset is served from memory without looking at
# the disk again (a remount, a renamed folder failed every job queued behind the one training).
_loaded: dict[tuple[str, Path], Dataset] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _loaded.clear()


def load_dataset(
    name: str, data_dir: Path | str, download: bool = True, mirrors: list[str] | None = None
) -> Dataset:
    """The dataset, decoded once per process; missing MNIST files are downloaded when ``download``."""
    info = _info(name)
    data_dir = Path(data_dir).expanduser().absolute()
    if (loaded := _loaded.get((name, data_dir))) is not None:
        return loaded
    folder, files = _locate(info, data_dir)
    key = (name, folder.resolve())
    if (cached := _cache.get(key)) is not None and all(files.values()):
        _loaded[(name, data_dir)] = cached
        return cached
    # One lock for all: concurrent first requests must not download or decode the same files twice.
    with _cache_lock:
        folder, files = _locate(info, data_dir)
        missing = [n for n, p in files.items() if p is None]
        if missing:
            if not (download and info.can_download(mirrors)):
                remedy = _missing_remedy(info, data_dir)
                if len(missing) == 1:
                    raise _error(folder / missing[0], "missing (neither raw nor .gz)", remedy)
                raise _error(folder, f"missing {', '.join(missing)} (neither raw nor .gz)", remedy)
            for file_name in missing:
                _download(info, folder, file_name, info.mirrors if mirrors is None else mirrors, data_dir)
            folder, files = _locate(info, data_dir)
        key = (name, folder.resolve())
        if (cached := _cache.get(key)) is not None:
            _loaded[(name, data_dir)] = cached
            return cached
        found = _found(files)
        arrays = {
            split: _load_split(found[images_name], found[labels_name], len(info.classes))
            for split, (images_name, labels_name) in SPLIT_FILES.items()
        }
        dataset = Dataset(name, *arrays["train"], *arrays["test"], classes=info.classes)
        _cache[key] = _loaded[(name, data_dir)] = dataset
        return dataset


def _count(path: Path) -> int | None:
    """Items in an IDX file from its first 8 bytes, without decoding the rest."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            header = f.read(8)
        return struct.unpack(">I", header[4:8])[0] if len(header) == 8 else None
    except (OSError, EOFError, zlib.error):
        return None


def dataset_status(name: str, data_dir: Path | str, download: bool = True) -> dict[str, Any]:
    """Whether the dataset is on disk and where, cheaply (headers only); never raises for a missing folder."""
    info = _info(name)
    folder, files = _locate(info, Path(data_dir).expanduser().absolute())
    found = _found(files)
    counts = {file: _count(path) for file, path in found.items()}
    damaged = sorted(found[file].name for file, count in counts.items() if count is None)  # not gzip, or cut
    present = len(found) == len(files) and not damaged
    splits = dict(info.splits)
    if present:
        for split, (images_name, _) in SPLIT_FILES.items():
            splits[split] = counts[images_name] or splits[split]
    return {
        "name": name,
        "present": present,
        "damaged": damaged,
        "directory": str(folder) if present else None,
        # a damaged file is not downloaded again: it is in the way
        "will_download": not present and not damaged and download and info.can_download(),
        "splits": splits,
        "classes": list(info.classes),
    }
