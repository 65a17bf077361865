"""The API serves every model in NumPy: it loads neither torch nor numba (the workers' libraries)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

CHECK = """
import sys
import numpy as np
import service.api.asgi  # the app, its routers and everything they import
from service.ml.numpy_mlp import init_params
from service.ml.spec import TrainSpec
from service.ml.weights import Weights, dump_weights, load_weights

spec = TrainSpec(backend="torch")
weights = load_weights(dump_weights(spec, init_params(spec)))  # a torch job's weights, served
assert weights.predict_proba(np.zeros((3, 784), np.float32)).shape == (3, 10)
print(sorted(m for m in ("torch", "numba") if m in sys.modules))
"""


def test_the_api_and_a_prediction_load_neither_torch_nor_numba():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
