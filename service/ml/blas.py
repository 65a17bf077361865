"""W -= A.T @ B in one call of the BLAS that NumPy itself uses: gemm computes C = alpha A B + beta C, so
plain SGD's update goes straight into the weights, never through a gradient array and a second pass.

NumPy exposes no gemm with beta. Its wheels bundle OpenBLAS as scipy-openblas (64-bit integers, symbols
prefixed `scipy_`); threadpoolctl finds that library, ctypes calls its cblas_sgemm. SciPy's sgemm would
bring a second OpenBLAS with a thread pool of its own, whose threads fight NumPy's for the cores. Where
NumPy's BLAS is another build, `descend` returns False and the caller computes the gradient itself.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_info

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # cblas.h's enum values
_INT, _BLASINT, _FLOAT, _PTR = ctypes.c_int, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p


NUMPY_ROOT = (
    Path(np.__file__).resolve().parent.parent
)  # site-packages, where NumPy's wheel puts its libraries


def numpy_blas() -> dict[str, Any]:
    """threadpoolctl's entry for the BLAS NumPy loaded ({} if none): the one in NumPy's wheel's own folder,
    not SciPy's (listed first once scipy.linalg is imported); else the first BLAS."""
    blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    folders = {NUMPY_ROOT / "numpy.libs", NUMPY_ROOT / "numpy" / ".dylibs"}  # Linux's wheels, macOS's
    numpys = [pool for pool in blas if Path(pool.get("filepath", "")).parent in folders]
    found: dict[str, Any] = (numpys or blas or [{}])[0]
    return found


def _numpys_sgemm() -> Callable[..., None] | None:
    """cblas_sgemm of the scipy-openblas NumPy loaded (imported above, so threadpoolctl lists it), or None."""
    pool = numpy_blas()
    if pool.get("internal_api") == "openblas" and "scipy_openblas64_" in pool.get("filepath", ""):
        try:
            function: Any = ctypes.CDLL(pool["filepath"]).scipy_cblas_sgemm64_
        except (OSError, AttributeError):
            return None
        function.argtypes = [_INT, _INT, _INT, _BLASINT, _BLASINT, _BLASINT, _FLOAT, _PTR, _BLASINT]
        function.argtypes += [_PTR, _BLASINT, _FLOAT, _PTR, _BLASINT]
        function.restype = None
        return function  # type: ignore[no-any-return]
    return None


sgemm = _numpys_sgemm()


def descender(
    W: NDArray[np.float32], A: NDArray[np.float32], B: NDArray[np.float32]
) -> Callable[[], None] | None:
    """A call doing W -= A.T @ B, in place, in one gemm, with every check and pointer taken now: for
    arrays that stay where they are (a training step's buffers and weights, rewritten in place each
    step). None where it cannot be done so.

    To the bit what NumPy's product and subtraction give for up to 384 rows (OpenBLAS's K block here);
    beyond, gemm adds the product to W block by block, so W differs within float32 rounding."""
    k, n_in = A.shape
    if (
        sgemm is None
        or W.shape != (n_in, B.shape[1])
        or B.shape[0] != k
        or not all(x.dtype == np.float32 and x.flags.c_contiguous for x in (W, A, B))
    ):
        return None
    n_out = W.shape[1]
    # Row-major: W (n_in, n_out) = -1 * A.T (n_in, k) @ B (k, n_out) + 1 * W; leading dimensions = row lengths.
    args = (ROW_MAJOR, TRANS, NO_TRANS, n_in, n_out, k, -1.0, A.ctypes.data, n_in, B.ctypes.data, n_out,
            1.0, W.ctypes.data, n_out)  # fmt: skip
    call = sgemm

    def descend(_alive: object = (W, A, B)) -> None:  # the arrays live as long as the call into them
        call(*args)

    return descend
