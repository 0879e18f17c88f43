"""acme.cluster.LocalCluster with real processes: acme-broker and `python -m acme.worker`.

Every wait is bounded; the cluster's socket is ipc:// under its private temp dir.
"""

from __future__ import annotations

import json
import os

from conftest import _DEFAULT_BIN  # noqa: E402  (this repository's build/dev)
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.join(HERE, "..")
sys.path.insert(0, PACKAGE_ROOT)

from acme import cluster as acme_cluster  # noqa: E402
from acme import protocol as P  # noqa: E402
from acme.client import AcmeError  # noqa: E402
from acme.cluster import LocalCluster  # noqa: E402

BROKER_EXE = os.environ.get("ACME_BROKER_EXE", _DEFAULT_BIN + "/broker/acme-broker")
HAVE_WORKER = os.path.exists(os.path.join(PACKAGE_ROOT, "acme", "worker.py"))

pytestmark = [
    pytest.mark.skipif(not HAVE_WORKER, reason="acme/worker.py (python -m acme.worker) is not "
                                               "written yet"),
    pytest.mark.skipif(not os.access(BROKER_EXE, os.X_OK),
                       reason=f"acme-broker ({BROKER_EXE}) not built: set ACME_BROKER_EXE"),
]


@pytest.fixture(autouse=True)
def broker_exe(monkeypatch):
    monkeypatch.setenv("ACME_BROKER_EXE", BROKER_EXE)


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def gone(pid: int) -> bool:
    """True when the process has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if not gone(pid)]
        if not alive:
            return []
        if time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_two_workers_start_fast_and_run_echo():
    started = time.monotonic()
    cluster = LocalCluster(2)
    try:
        elapsed = time.monotonic() - started
        assert elapsed < 5.0, f"LocalCluster(2) took {elapsed:.1f} s to start"
        status = cluster.status()
        assert len(status["workers"]) == 2
        # One supervisor (cluster.workers) runs the single-slot worker processes.
        assert [parent_of(w["pid"]) for w in status["workers"]] == [cluster.workers[0].pid] * 2
        assert cluster.endpoint.startswith("ipc://")
        client = cluster.client()
        assert cluster.client() is client
        n = 500
        job = client.submit("echo", (pack([i, "x"]) for i in range(n)), n)
        results = [r for batch in job.batches(timeout=30) for r in batch]
        assert sorted(r.index for r in results) == list(range(n))
        assert all(r.status == P.OK for r in results)
        assert all(msgpack.unpackb(r.payload) == [r.index, "x"] for r in results)
    finally:
        cluster.close()


def test_close_leaves_no_process():
    with LocalCluster(2) as cluster:
        pids = cluster.pids + [w["pid"] for w in cluster.status()["workers"]]
        log_dir = cluster.log_dir
        assert len(pids) == 4 and not any(gone(pid) for pid in pids)  # broker, supervisor, 2
        client = cluster.client()
    started = time.monotonic()
    cluster.close()  # idempotent
    assert time.monotonic() - started < 1
    assert wait_gone(pids, 0.1) == []  # close() waited for them
    assert not os.path.exists(log_dir)
    assert client.closed
    with pytest.raises(AcmeError, match="closed"):
        cluster.client()


def test_killed_client_leaves_nothing_behind():
    """The cluster's owner SIGKILLed: PR_SET_PDEATHSIG ends the broker and the workers."""
    program = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {PACKAGE_ROOT!r})
        from acme.cluster import LocalCluster
        cluster = LocalCluster(2, slots_per_worker=2)
        status = cluster.status()
        print(json.dumps({{"pids": cluster.pids, "dir": cluster.log_dir,
                          "registered": [w["pid"] for w in status["workers"]]}}), flush=True)
        time.sleep(120)
    """)
    owner = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    info = {}
    try:
        line = ""
        deadline = time.monotonic() + 30
        import selectors
        with selectors.DefaultSelector() as selector:
            selector.register(owner.stdout, selectors.EVENT_READ)
            while not line:
                assert time.monotonic() < deadline, "the cluster in the child did not start"
                assert owner.poll() is None, f"the child failed: {owner.stderr.read()}"
                if selector.select(timeout=0.5):
                    line = owner.stdout.readline()
        info = json.loads(line)
        pids = set(info["pids"]) | set(info["registered"])
        assert len(info["registered"]) == 4  # 2 workers x 2 single-slot processes
        assert not any(gone(pid) for pid in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        alive = wait_gone(pids, 15)
        assert alive == [], f"processes outlived their SIGKILLed client: {alive}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if info.get("dir"):  # nobody was left to remove it
            shutil.rmtree(info["dir"], ignore_errors=True)


def test_missing_broker(monkeypatch, tmp_path):
    monkeypatch.setenv("ACME_BROKER_EXE", str(tmp_path / "no-such-acme-broker"))
    with pytest.raises(AcmeError, match="acme-broker not found: \\$ACME_BROKER_EXE is .*"
                                        "no-such-acme-broker"):
        LocalCluster(1)
    monkeypatch.delenv("ACME_BROKER_EXE")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "acme._paths", types.SimpleNamespace(BIN_DIR=str(tmp_path)))
    with pytest.raises(AcmeError, match="acme-broker not found.*ACME_BROKER_EXE"):
        LocalCluster(1)


def test_worker_that_cannot_start(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # "python -m acme.worker" exits 1
    started = time.monotonic()
    with pytest.raises(AcmeError, match="0 of 1 workers registered; Python worker 0, the "
                                        "supervisor.*exited with status 1"):
        LocalCluster(1, start_timeout=30)
    assert time.monotonic() - started < 10  # seen as the worker exits, not at the timeout


def test_wait_for_workers_names_how_many_came():
    with LocalCluster(1) as cluster:
        assert cluster.wait_for_workers(1, timeout=5) == 1
        started = time.monotonic()
        with pytest.raises(AcmeError, match="only 1 of 3 workers registered .* within 0.5 s"):
            cluster.wait_for_workers(3, timeout=0.5)
        assert time.monotonic() - started < 3


def test_default_workers_and_registry():
    assert acme_cluster.get_default() is None
    cluster = LocalCluster()
    try:
        assert cluster.n_workers == len(os.sched_getaffinity(0))
        assert len(cluster.status()["workers"]) == cluster.n_workers
        acme_cluster.set_default(cluster)
        assert acme_cluster.get_default() is cluster
    finally:
        cluster.close()
    assert acme_cluster.get_default() is None  # close() forgets it


def test_a_task_that_kills_its_worker_fails_alone_and_the_pool_recovers():
    """A poison input (here: abort) kills every worker that runs it. The supervisor restarts
    the dead worker processes, the broker fails the input as Poisoned after --max-retries
    deaths, and no other input is blamed, even though an input that aborts at once can take
    the result its worker sent just before down with it: every task in flight on a dead worker
    is a suspect, and suspects never share a worker (PROTOCOL.md §10, §14). The failure, and
    the worker's log, show the Python stack of the crash."""
    from acme import ParallelMap
    from acme.pmap import TasksFailed

    def crash_on_7(x):
        if x == 7:
            os.abort()
        return x * 10

    with LocalCluster(2, broker_args=["--heartbeat-ms", "200", "--max-retries", "2"]) as cluster:
        acme_cluster.set_default(cluster)
        try:
            t0 = time.monotonic()
            with pytest.raises(TasksFailed) as caught:
                with ParallelMap(crash_on_7, list(range(60)), write_worker_results=False,
                                 setup_interactive=False) as pmap:
                    pmap.compute()
            elapsed = time.monotonic() - t0
            failure = caught.value
            assert failure.failed == [7], str(failure)
            assert "Poisoned" in str(failure.details[7]), failure.details[7]
            # The failure carries the Python stack the worker left when input 7 crashed it.
            assert "Fatal Python error: Aborted" in failure.errors[7], failure.errors[7]
            assert "in crash_on_7" in failure.errors[7], failure.errors[7]
            assert "in crash_on_7" in str(failure)
            assert [r for i, r in enumerate(failure.results) if i != 7] == \
                [i * 10 for i in range(60) if i != 7]
            assert elapsed < 30, elapsed
            with open(os.path.join(cluster.log_dir, "worker-0.log"), errors="replace") as log:
                text = log.read()
            assert "Fatal Python error: Aborted" in text, text[-2000:]
            assert "in crash_on_7" in text, text[-2000:]
            # Both worker processes are back: the next map runs on 2 registrations.
            assert cluster.wait_for_workers(2, timeout=15) >= 2
            with ParallelMap(crash_on_7, list(range(8, 20)), write_worker_results=False,
                             setup_interactive=False) as pmap:
                assert pmap.compute() == [i * 10 for i in range(8, 20)]
        finally:
            acme_cluster.set_default(None)
