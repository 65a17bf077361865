"""How a worker counts its host's cores, and how a claim divides the free ones."""

from __future__ import annotations

import pytest

from workers import presence


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A fake /proc/self/cgroup and /sys/fs/cgroup: write(v2={folder: cpu.max}) for a cgroup v2 service in
    system.slice, or write(v1=(quota, period)) for a cgroup v1 container (its own folder mounted as the
    hierarchy's root, where /proc's path does not exist)."""
    monkeypatch.setattr(presence, "CGROUP", tmp_path / "self-cgroup")
    monkeypatch.setattr(presence, "CGROUPS", tmp_path / "sys")

    def write(v2: dict[str, str] | None = None, v1: tuple[int, int] | None = None) -> None:
        if v2 is not None:
            (tmp_path / "self-cgroup").write_text("0::/system.slice/mlplab.service\n")
            for folder, limit in v2.items():
                (tmp_path / "sys" / folder).mkdir(parents=True, exist_ok=True)
                (tmp_path / "sys" / folder / "cpu.max").write_text(limit + "\n")
        if v1 is not None:
            (tmp_path / "self-cgroup").write_text("5:memory:/docker/ab12\n4:cpu,cpuacct:/docker/ab12\n")
            root = tmp_path / "sys" / "cpu,cpuacct"
            root.mkdir(parents=True, exist_ok=True)
            (root / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
            (root / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")

    return write


SERVICE, SLICE = "system.slice/mlplab.service", "system.slice"


@pytest.mark.parametrize(
    "v2, v1, cpus",
    [
        ({SERVICE: "200000 100000"}, None, 2),  # docker --cpus 2, systemd CPUQuota=200%
        ({SERVICE: "150000 100000"}, None, 1),  # 1.5: a second thread would be throttled mid-product
        ({SERVICE: "50000 100000"}, None, 1),  # half a CPU still trains
        ({SERVICE: "max 100000"}, None, None),  # no quota
        ({SERVICE: "max 100000", SLICE: "300000 100000"}, None, 3),  # the slice's quota binds
        ({SERVICE: "400000 100000", SLICE: "300000 100000", "": "max 100000"}, None, 3),  # the least
        (None, (300000, 100000), 3),  # cgroup v1, in a container
        (None, (-1, 100000), None),  # v1's "no quota"
        (None, None, None),  # neither readable
    ],
)
def test_a_cpu_quota_is_read_from_the_processs_cgroup_and_its_ancestors(cgroup, v2, v1, cpus):
    cgroup(v2=v2, v1=v1)
    assert presence.cpu_quota() == cpus


@pytest.mark.parametrize(
    "cores, jobs, rank, threads",
    [
        (2, 1, 0, 2),
        (2, 2, 0, 1),
        (2, 2, 1, 1),
        (3, 2, 0, 2),
        (3, 2, 1, 1),
        (2, 3, 2, 1),
        (12, 3, 2, 4),
        (4, 0, 0, 4),
    ],
)
def test_a_fair_share_divides_the_cores_with_the_remainder_to_the_first(cores, jobs, rank, threads):
    assert presence.fair_share(cores, jobs, rank) == threads


def test_a_running_job_gives_up_cores_when_a_job_waits_and_takes_them_back_when_it_ends(
    monkeypatch, sessions, db_url
):
    """Two cores, this worker and an idle one: a lone job takes both; when a second job is queued, the
    running one drops to one thread (recorded, so the idle worker can claim the other core), keeps it
    while both run, and takes the core back once the other job ends and nothing waits."""
    from service.settings import Settings
    from service.store import jobs, queries
    from service.store.db import session_scope
    from service.store.workers import register_worker, worker_heartbeat
    from tests.factories import tiny_spec

    monkeypatch.setattr(presence, "host_cores", lambda: 2)
    me = presence.Presence(sessions, "me", Settings(database_url=db_url, lease_seconds=3600))
    with session_scope(sessions) as s:
        me._register(s)
        register_worker(s, "x", me.host, me.host_key, 1, lease_seconds=3600)
        first = jobs.enqueue_job(s, tiny_spec(seed=1)).id

    def recorded() -> dict[str, tuple[int | None, int]]:
        with session_scope(sessions) as s:
            return {w.id: (w.job_id, w.threads) for w in queries.live_workers(s, 3600)}

    assert me.claim().id == first and me.threads == 2 and recorded()["me"] == (first, 2)
    with session_scope(sessions) as s:
        second = jobs.enqueue_job(s, tiny_spec(seed=2)).id
    me.rebalance()
    assert me.threads == 1 and recorded()["me"] == (first, 1)
    with session_scope(sessions) as s:  # x claims it on the core given up
        jobs.claim_job(s, "x")
        worker_heartbeat(s, "x", second, 1)
    me.rebalance()
    assert me.threads == 1
    with session_scope(sessions) as s:
        worker_heartbeat(s, "x", None, 1)  # its job ended; nothing is queued
    me.rebalance()
    assert me.threads == 1  # room seen once: a job queued for another host's workers shrinks it a beat
    me.rebalance()
    assert me.threads == 2 and recorded()["me"] == (first, 2)


def test_three_cores_two_jobs_every_core_trains(monkeypatch, sessions, db_url):
    """The remainder of the division goes to the first worker by start, whichever claims first."""
    from service.settings import Settings
    from service.store import jobs
    from service.store.db import session_scope
    from tests.factories import tiny_spec

    monkeypatch.setattr(presence, "host_cores", lambda: 3)
    settings = Settings(database_url=db_url, lease_seconds=3600)
    older, younger = (presence.Presence(sessions, name, settings) for name in ("older", "younger"))
    with session_scope(sessions) as s:
        older._register(s)
    with session_scope(sessions) as s:
        younger._register(s)
        jobs.enqueue_job(s, tiny_spec(seed=1))
        jobs.enqueue_job(s, tiny_spec(seed=2))
    assert younger.claim() is not None and older.claim() is not None
    assert (older.threads, younger.threads) == (2, 1)
    older.rebalance()
    younger.rebalance()
    assert (older.threads, younger.threads) == (2, 1)  # and it stays so


def test_under_a_cpu_quota_a_running_job_gives_up_its_containers_cores(monkeypatch, cgroup, sessions, db_url):
    """Eight cores, a quota of two CPUs on this container: a job alone takes both, and gives one up
    when a job waits for the container's other, idle worker."""
    from service.settings import Settings
    from service.store import jobs
    from service.store.db import session_scope
    from service.store.workers import register_worker
    from tests.factories import tiny_spec

    monkeypatch.setattr(presence, "host_cores", lambda: 8)
    cgroup(v2={SERVICE: "200000 100000"})
    me = presence.Presence(sessions, "me", Settings(database_url=db_url, lease_seconds=3600))
    with session_scope(sessions) as s:
        me._register(s)
        register_worker(s, "x", me.host, me.host_key, 1, lease_seconds=3600)
        jobs.enqueue_job(s, tiny_spec(seed=1))
    assert me.claim() is not None and me.threads == 2
    with session_scope(sessions) as s:
        jobs.enqueue_job(s, tiny_spec(seed=2))
    me.rebalance()
    assert me.threads == 1


def test_a_claim_within_a_cpu_quota_counts_its_containers_running_jobs(monkeypatch, cgroup, sessions, db_url):
    """Eight cores, a quota of two CPUs on this container: a job here holds one, so a claim takes the
    other one, whatever the cores free elsewhere on the host."""
    from service.settings import Settings
    from service.store import jobs
    from service.store.db import session_scope
    from service.store.workers import register_worker, worker_heartbeat
    from tests.factories import tiny_spec

    monkeypatch.setattr(presence, "host_cores", lambda: 8)
    cgroup(v2={SERVICE: "200000 100000"})
    me = presence.Presence(sessions, "me", Settings(database_url=db_url, lease_seconds=3600))
    with session_scope(sessions) as s:
        me._register(s)
        register_worker(s, "x", me.host, me.host_key, 1, lease_seconds=3600)  # this container
        held = jobs.enqueue_job(s, tiny_spec(seed=1)).id
        jobs.claim_job(s, "x")
        worker_heartbeat(s, "x", held, 1)
        jobs.enqueue_job(s, tiny_spec(seed=2))
    assert me.claim() is not None and me.threads == 1
