"""How a worker counts its host's cores, and how a claim divides the free ones."""

from __future__ import annotations

import os
import socket

import pytest

from workers import presence


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A fake /proc/self/cgroup and /sys/fs/cgroup: write(v2=...) or write(v1=(quota, period))."""
    monkeypatch.setattr(presence, "CGROUP", tmp_path / "self-cgroup")
    monkeypatch.setattr(presence, "CGROUPS", tmp_path / "sys")

    def write(v2: str | None = None, v1: tuple[int, int] | None = None) -> None:
        (tmp_path / "self-cgroup").write_text("0::/system.slice/mlplab.service\n")
        if v2 is not None:
            folder = tmp_path / "sys" / "system.slice" / "mlplab.service"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpu.max").write_text(v2 + "\n")
        if v1 is not None:
            (tmp_path / "sys" / "cpu").mkdir(parents=True, exist_ok=True)
            (tmp_path / "sys" / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
            (tmp_path / "sys" / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")

    return write


@pytest.mark.parametrize(
    "v2, v1, cpus",
    [
        ("200000 100000", None, 2),  # docker --cpus 2 (cgroup v2)
        ("150000 100000", None, 1),  # 1.5: a second thread would be throttled mid-product
        ("50000 100000", None, 1),  # half a CPU still trains
        ("max 100000", None, None),  # no quota
        (None, (300000, 100000), 3),  # cgroup v1
        (None, (-1, 100000), None),  # v1's "no quota"
        (None, None, None),  # neither readable
    ],
)
def test_a_cpu_quota_caps_the_cores_a_worker_counts(cgroup, v2, v1, cpus):
    cgroup(v2=v2, v1=v1)
    assert presence.cpu_quota() == cpus
    affinity = len(os.sched_getaffinity(0))
    assert presence.host_cores() == (affinity if cpus is None else min(affinity, cpus))


def test_containers_with_quotas_of_their_own_do_not_share_cores(cgroup):
    """Without a quota, every process on these CPUs counts together (containers too); with one, a
    container's workers count among themselves (its hostname is its own)."""
    cgroup(v2="max 100000")
    shared = presence.host_key()
    assert socket.gethostname() not in shared.split("/cpus:")[1]
    cgroup(v2="200000 100000")
    assert presence.host_key() == f"{shared}/quota:{socket.gethostname()}"


@pytest.mark.parametrize(
    "cores, held, idle, queued, threads",
    [
        (2, 0, 2, 1, 2),  # a job alone takes every core, whatever the idle workers
        (2, 0, 2, 8, 1),  # a burst: one share each
        (2, 1, 1, 8, 1),  # the core left free
        (2, 2, 1, 8, 0),  # every core held: wait
        (12, 4, 3, 2, 4),  # 8 free, two jobs for three idle workers
        (3, 0, 2, 5, 1),  # rounded down: the later claim takes the other 2
        (2, 0, 1, 0, 2),  # an empty queue: a claim that finds nothing
    ],
)
def test_a_claim_takes_its_part_of_the_free_cores(cores, held, idle, queued, threads):
    assert presence.threads_for_claim(cores, held, idle, queued) == threads
