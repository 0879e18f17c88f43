"""An ACME user's script on workers started through acme-launch: local, and real SLURM and SGE
on this machine (scripts/ci/{slurm,sge}-up.sh). A missing scheduler skips its test, or fails it
with ACME_REQUIRE_CLUSTERS=1 (CI). ctest runs this file with the labels "python;cluster",
serially, under the same lock as the C++ cluster tests.

    PYTHONPATH=clients/python ACME_LAUNCH_EXE=build/dev/launchers/acme-launch \\
        /usr/bin/python3 -m pytest -q clients/python/tests/launch_clusters.py
"""

import os
import subprocess
import sys
import time

import h5py
import pytest

import acme
from acme import ParallelMap

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("ACME_BUILD_DIR", os.path.join(REPO, "build", "dev"))
for name, rel in (("ACME_LAUNCH_EXE", "launchers/acme-launch"), ("ACME_BROKER_EXE", "broker/acme-broker"),
                  ("ACME_WORKER_EXE", "worker/acme-worker")):
    os.environ.setdefault(name, os.path.join(BUILD, rel))


def missing(why):
    if os.environ.get("ACME_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{why} (ACME_REQUIRE_CLUSTERS=1)")
    pytest.skip(why)


@pytest.fixture(autouse=True)
def own_acme_home(tmp_path, monkeypatch):
    """Each test its own ~/.acme, so no launch of the developer's stands in."""
    monkeypatch.setenv("ACME_HOME", str(tmp_path / "acme-home"))
    monkeypatch.delenv("ACME_BROKER", raising=False)
    yield
    acme.cluster_cleanup()


def band(trial, channels, scale=2.0):
    """What an ACME user maps: one trial in, an array out (here: defined in this test module,
    which the workers import through the PYTHONPATH the launch gives them)."""
    import numpy as np
    rng = np.random.default_rng(trial)
    return rng.standard_normal(channels) * scale


def run_acme_script(tmp_path, n=20):
    """The ACME user's part: ParallelMap with the default result files, then the aggregate."""
    import numpy as np
    out = tmp_path / "results"
    with ParallelMap(band, list(range(n)), 8, scale=3.0, output_dir=str(out),
                     setup_interactive=False) as pmap:
        files = pmap.compute()
    assert files, "compute() returned no file names"
    aggregate = out / "band.h5"
    assert aggregate.exists(), sorted(os.listdir(out))
    with h5py.File(aggregate, "r") as h5:
        names = sorted(h5.keys(), key=lambda k: int(k.rsplit("_", 1)[1]))
        assert len(names) == n, names
        for i, name in enumerate(names):
            got = h5[name]["result_0"][()]
            np.testing.assert_allclose(got, band(i, 8, 3.0))


def pids_of_worker_processes():
    text = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in text.splitlines() if "-m acme.worker" in line and "ps -eo" not in line]


def test_local_launch_serves_an_acme_script_and_cleanup_stops_it(tmp_path):
    before = pids_of_worker_processes()
    cluster = acme.launch_cluster_setup("local", 2, timeout=30)
    assert cluster.wait_for_workers(2, 20) == 2
    run_acme_script(tmp_path)
    acme.cluster_cleanup()
    deadline = time.monotonic() + 20
    while len(pids_of_worker_processes()) > len(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pids_of_worker_processes()) <= len(before), pids_of_worker_processes()


def squeue_jobs():
    r = subprocess.run(["/usr/bin/squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, timeout=20)
    return r.stdout.strip()


def test_slurm_cluster_setup_then_parallel_map(tmp_path):
    if not os.path.exists("/usr/bin/squeue"):
        missing("no /usr/bin/squeue (slurm-client)")
    if subprocess.run(["/usr/bin/squeue", "-h"], capture_output=True, timeout=20).returncode != 0:
        missing("SLURM is not up (squeue fails): scripts/ci/slurm-up.sh starts it")
    # ACME's call, as in its README, plus what this single-node test cluster needs: the broker
    # on lo, a short time limit.
    cluster = acme.slurm_cluster_setup(partition="debug", n_cores=1, n_workers=2, mem_per_worker="200MB",
                                       timeout=60, interactive=False, interface="lo", time="10:00")
    try:
        assert cluster.wait_for_workers(2, 30) == 2, squeue_jobs()
        launches = [w.get("launch") for w in cluster.status()["workers"]]
        assert launches == [cluster.launch_id] * 2, launches  # READY carries ACME_LAUNCH_ID
        run_acme_script(tmp_path)
    finally:
        acme.cluster_cleanup()
    deadline = time.monotonic() + 30
    while "acme" in squeue_jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "acme" not in squeue_jobs(), squeue_jobs()


def test_sge_launch_then_parallel_map(tmp_path, monkeypatch):
    if not os.path.exists("/usr/bin/qsub"):
        missing("no /usr/bin/qsub (gridengine-client)")
    monkeypatch.setenv("SGE_ROOT", "/var/lib/gridengine")
    monkeypatch.setenv("SGE_CELL", "default")
    monkeypatch.setenv("PATH", "/usr/bin:" + os.environ.get("PATH", ""))
    if subprocess.run(["/usr/bin/qstat"], capture_output=True, timeout=20).returncode != 0:
        missing("SGE is not up (qstat fails): scripts/ci/sge-up.sh starts it")
    cluster = acme.launch_cluster_setup("sge", 2, timeout=60, interface="lo", time_limit="10:00")
    try:
        assert cluster.wait_for_workers(2, 30) == 2
        run_acme_script(tmp_path)
    finally:
        acme.cluster_cleanup()
    deadline = time.monotonic() + 30
    qstat = lambda: subprocess.run(["/usr/bin/qstat"], capture_output=True, text=True).stdout.strip()
    while qstat() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not qstat(), qstat()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
