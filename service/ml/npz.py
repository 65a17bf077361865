"""The .npz archives mlplab stores (weights, checkpoints, predictions): NumPy arrays, no pickles, each
tagged with the format it was written in, so a reader refuses bytes it did not write."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray


def write_npz(tag: str, arrays: dict[str, NDArray[Any]]) -> bytes:
    """`arrays` as an .npz whose `format` array says `tag`."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, format=np.array(tag), **arrays)
    return buf.getvalue()


@contextmanager
def read_npz(blob: bytes, tag: str, error: type[ValueError], kind: str) -> Iterator[NpzFile]:
    """write_npz(tag, ...)'s archive, open for the block. Bytes that are not one, another format,
    or an array the block reads that is missing or malformed raise `error`, naming the `kind` of file."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            found = str(npz["format"])
            if found != tag:
                raise error(f"unknown {kind} format {found!r}, expected {tag!r}")
            yield npz
    except error:
        raise
    except (KeyError, OSError, EOFError, ValueError) as exc:  # np.load's errors, and a missing array's
        raise error(f"not an mlplab {kind} file: {exc}") from exc
