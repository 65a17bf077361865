"""Does submitting a large study hold up other writers? A grid study of 1,000 x 10 points asking for its
first `--parallelism` trials at once is submitted; a second after, another client submits a job. Prints
both answers' times: the job's is the write lock the study held. Not pass/fail.

    MLPLAB_DATA_DIR=../shared/data .venv/bin/python bench/study_submit.py [--parallelism 60]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parallelism", type=int, default=60)
    args = parser.parse_args()
    body = {
        "base": {"backend": "numpy", "epochs": 1, "train_limit": 200, "validation_size": 200},
        "space": {
            "hidden_layers": {"choice": [[i + 1] for i in range(1000)]},
            "l2": {"choice": [i * 1e-4 for i in range(10)]},
        },
        "sampler": "grid",
        "trials": args.parallelism,
        "parallelism": args.parallelism,
    }
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/bench.db", download=False)  # MLPLAB_DATA_DIR
        with TestClient(create_app(settings)) as client:
            timed: dict[str, tuple[int, float]] = {}

            def post(name: str, path: str, json: dict) -> None:
                started = time.perf_counter()
                status = client.post(path, json=json).status_code
                timed[name] = (status, time.perf_counter() - started)

            study = threading.Thread(target=post, args=("study", "/studies", body))
            study.start()
            time.sleep(1.0)
            post("job", "/jobs", {"backend": "numpy"})
            study.join()
    print("| request | status | seconds |\n| --- | ---: | ---: |")
    for name, path in (("study", "/studies"), ("job", "/jobs")):
        print(f"| POST {path} | {timed[name][0]} | {timed[name][1]:.2f} |")


if __name__ == "__main__":
    main()
