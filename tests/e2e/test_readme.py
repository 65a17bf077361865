"""README's walk-through, run as written: its ```sh blocks, in order, in one bash session against a
live API and worker, with MLPLAB_URL (which the walk-through reads) pointing at them.

Each block must exit 0 (bash runs them under `set -eo pipefail`) and show what the README says it
shows; the files it writes (a digit, the weights, the figures) must be what it says they are.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys

import pytest
from PIL import Image

from service.ml.weights import load_weights
from tests.support import REPO, start_service

WALKTHROUGH = re.compile(r"<!-- walkthrough\b.*?-->(.*?)<!-- /walkthrough -->", re.S)
TIMEOUT = 300  # a wait loop that never ends (a job gone wrong) stops here; the outputs say where
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)

# What each block shows, found by a command only that block runs.
PROMISES = {
    "API=": [],
    "| tee job.txt": [r"HTTP/1\.1 202 Accepted", r"location: /jobs/\d+", r'"status":"queued"'],
    "/events": [r"event: epoch", r"event: end\ndata: \{[^\n]*\"status\":\"succeeded\"", r'"epoch":3,'],
    '/accuracy"': [
        r'\{"train":0\.\d+,"validation":0\.\d+,"test":0\.\d+\}',
        r'"label":7,"predicted":7,',
        r'"matrix":\[\[',
        r'"ranked_by":"validation_accuracy"',
    ],
    "-F file=@digit.png": [r'\{"predicted":7,'],
    "/cancel": [r"HTTP/1\.1 200 OK", r'"cancel_requested":true'],
    "-o sweep.json": [
        r'"succeeded":8,',
        r'"configurations":\[\{',
        r'"differing":\["init","learning_rate"\]',
        r'"a_right_b_wrong":\d+,"b_right_a_wrong":\d+',
    ],
    "/promote": [
        r'"name":"champion","model_id":6,',  # the sweep's N(0, 1) at 0.3, as README says (NumPy: deterministic)
        r'"detail":"the best model of sweep [0-9a-f]{12} by validation_accuracy; it is not shown better than '
        r'the next configuration \(no test\)"',
        r"x-model-id: \d+",
        r'"rollback_to":\d+',
        r'"history":\[\{"action":"rollback".*"action":"move".*"action":"promote"',
    ],
    "model.onnx": [r"(?m)^7$"],
    "/reproduce": [
        r'"dataset_sha256": "[0-9a-f]{64}"',
        r'"weights_identical": true',
        r"bit-identical weights",
    ],
    "/metrics": [
        r'mlplab_jobs\{status="succeeded"\} 10\.0',
        r'mlplab_predictions_total\{alias="champion",model="\d+"\} 1\.0',
    ],
    '"epochs": 0': [r"HTTP/1\.1 422 ", r"content-type: application/problem\+json", r"body\.epochs"],
}


def walkthrough_blocks() -> list[str]:
    (section,) = WALKTHROUGH.findall((REPO / "README.md").read_text())
    return SH_BLOCK.findall(section)


def test_the_walkthrough_is_marked_and_every_promise_has_its_block():
    blocks = walkthrough_blocks()
    assert len(blocks) == len(PROMISES)
    for key in PROMISES:
        assert sum(key in block for block in blocks) == 1, f"one block, and only one, runs {key!r}"
    text = "".join(blocks)
    assert text.count("127.0.0.1:8000") == 1  # the default of $API; every command goes through $API


@pytest.mark.slow  # a live API and worker; three trainings and a sweep of eight
def test_the_walkthrough_runs_as_written(tmp_path):
    blocks = walkthrough_blocks()
    root = tmp_path / "service"
    root.mkdir()
    service = start_service(root)
    service.start_worker()
    for i, block in enumerate(blocks):
        (tmp_path / f"{i}.sh").write_text(block)
    # One session, so that what a block captures ($JOB, $IDS) is there for the next; a block's
    # output in its own file, and a marker once it has run to its end.
    driver = "set -eo pipefail\n" + "".join(
        f"source {i}.sh > {i}.out 2>&1\n: > {i}.ok\n" for i in range(len(blocks))
    )
    # python3 (for the json helper) from this environment, wherever the system's may be
    env = {
        **service.env,
        "MLPLAB_URL": service.url,
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    }
    bash = subprocess.Popen(["bash", "-c", driver], cwd=tmp_path, env=env, start_new_session=True)
    try:
        ended = f"bash exited {bash.wait(timeout=TIMEOUT)}"
    except subprocess.TimeoutExpired:  # a wait that never ends: the blocks' outputs say where
        os.killpg(bash.pid, signal.SIGKILL)
        bash.wait()
        ended = f"stopped after {TIMEOUT} s"
    finally:
        service.stop()

    for i, block in enumerate(blocks):
        out = (tmp_path / f"{i}.out").read_text() if (tmp_path / f"{i}.out").exists() else ""
        assert (tmp_path / f"{i}.ok").exists(), (
            f"block {i} did not run to its end ({ended}):\n{block}\n---\n{out}"
        )
        for key, shown in PROMISES.items():
            if key in block:
                for pattern in shown:
                    assert re.search(pattern, out), (
                        f"block {i} does not show {pattern!r}:\n{block}\n---\n{out}"
                    )

    digit = Image.open(tmp_path / "digit.png")
    assert (digit.format, digit.size) == ("PNG", (224, 224))
    assert load_weights((tmp_path / "model.npz").read_bytes()).spec.train_limit == 10_000
    for figure in ("cm.png", "cost.png", "disagree.png"):
        assert Image.open(io.BytesIO((tmp_path / figure).read_bytes())).format == "PNG"
