"""`make run` takes its port from PORT, else as `mlplab dev` does (MLPLAB_PORT, .env, 8000)."""

from __future__ import annotations

import os
import subprocess

from tests.support import REPO


def _run_line(**env: str) -> list[str]:
    # run under `make test`: the outer make's flags and level would change what this one prints
    ignored = ("PORT", "MLPLAB_PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    clean = {k: v for k, v in os.environ.items() if k not in ignored}
    command = ["make", "--no-print-directory", "-n", "run"]
    out = subprocess.run(
        command, cwd=REPO, env=clean | env, capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()[-1].split()


def test_make_run_leaves_the_port_to_mlplab_port_unless_port_is_given():
    """It passed --port 8000 always: MLPLAB_PORT=8743 (or in .env) served on 8000."""
    assert _run_line(MLPLAB_PORT="8743")[-1] == "dev"  # mlplab dev reads MLPLAB_PORT itself
    assert _run_line(PORT="9000")[-2:] == ["--port", "9000"]
