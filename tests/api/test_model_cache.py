"""The API's caches of decoded models hold at most MLPLAB_MODEL_CACHE_MB of weights, whatever their count:
any reader could make it keep 16 of the largest networks (80 MB each, 1.3 GB of the API's memory)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.main import create_app
from tests.factories import job_body
from workers.worker import run_worker


def test_models_kept_in_memory_stay_within_their_megabytes(settings):
    # 784 x 300 + 300 x 10 float32 weights and their biases: 0.95 MB each; two fit in 2 MB, not three
    small = settings.model_copy(update={"model_cache_mb": 2})
    with TestClient(create_app(small)) as client:
        ids = [
            client.post("/jobs", json=job_body(hidden_layers=[300], seed=seed)).json()["id"]
            for seed in range(3)
        ]
        run_worker(small, once=True)
        for model in ids:
            assert client.get(f"/models/{model}/predictions/test/0").status_code == 200
        cache = client.app.state.inference.models.cache
        assert cache.weight <= 2 * 2**20, cache.weight
        assert cache.get(ids[-1]) is not None and cache.get(ids[0]) is None  # the oldest went first
        assert client.get(f"/models/{ids[0]}/predictions/test/0").status_code == 200  # loaded again
