"""ACME's ParallelMap on acme: ACME-style scripts against real acme-broker and Python workers
(and C++ acme-worker for a named function), checked through the files and values they leave.

Every wait is bounded (`bounded()` runs a compute in a thread with a deadline); sockets are
ipc:// under private temp dirs. Run:

    cd clients/python && /usr/bin/python3 -m pytest -q tests/test_pmap.py
"""

from __future__ import annotations

import logging
import os

from conftest import _DEFAULT_BIN  # noqa: E402  (this repository's build/dev)
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, PKG)

import acme  # noqa: E402
from acme import ParallelMap  # noqa: E402
from acme import cluster as acme_cluster  # noqa: E402
from acme.pmap import TasksFailed  # noqa: E402

BROKER_EXE = os.environ.setdefault("ACME_BROKER_EXE", _DEFAULT_BIN + "/broker/acme-broker")
WORKER_EXE = os.environ.setdefault("ACME_WORKER_EXE", _DEFAULT_BIN + "/worker/acme-worker")

pytestmark = pytest.mark.skipif(
    not os.access(BROKER_EXE, os.X_OK),
    reason=f"acme-broker ({BROKER_EXE}) not built: set ACME_BROKER_EXE")

DEADLINE = 120.0  # seconds any one compute may take before the test fails


# ---- functions the maps run (importable by the workers: this file's folder is on sys.path) ----

def simple_func(x, y, z=3):
    return (x + y) * z


def medium_func(x, y, z=3, w=np.ones((3, 3))):
    return (sum(x) + y) * z * w.max()


def hard_func(x, y, z=3, w=np.zeros((3, 1)), **kwargs):
    return sum(x) + y, z * w


def with_task_id(x, taskID=None):
    return np.array([x, taskID])


def vector(x, y):
    return np.full(3, (x + y) * 3.0)


def multi(k):
    return np.arange(k, k + 4, dtype=float), k, np.array([k * 2.0])


def unstorable(x):
    return {"x": x} if x == 2 else x  # a dict: HDF5 cannot hold it


def flaky(x, flag):
    if x % 17 == 4 and not os.path.exists(flag):  # fails for 4, 21, 38 until `flag` exists
        raise ValueError(f"input {x} is bad")
    return x * 10


def slow_square(x):
    time.sleep(0.15)
    return x * x


def pid_of(x):
    return os.getpid()


def nbytes_of(x, big):
    return int(big.nbytes) + x


# ---- fixtures and helpers ----

@pytest.fixture(autouse=True)
def no_configured_broker(monkeypatch, tmp_path):
    """No ~/.acme/broker or $ACME_BROKER of the machine may leak into a test."""
    monkeypatch.delenv("ACME_BROKER", raising=False)
    monkeypatch.setenv("ACME_HOME", str(tmp_path / "acme-home"))


@pytest.fixture(scope="module")
def cluster():
    """Two Python workers, registered as the default cluster (what local_cluster_setup does)."""
    c = acme_cluster.LocalCluster(2, start_timeout=60)
    acme_cluster.set_default(c)
    yield c
    acme_cluster.set_default(None)
    c.close()


def bounded(fn, *args, timeout=DEADLINE, **kwargs):
    """fn(*args, **kwargs) with a deadline: its value, or its exception re-raised."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def read_all(container, n):
    with h5py.File(container, "r") as h5f:
        return [h5f[f"comp_{i}"]["result_0"][()] for i in range(n)]


# ---- argument rules (no workers needed) ----

def test_argument_distribution_like_acme(tmp_path):
    mk = lambda *a, **k: ParallelMap(*a, write_worker_results=False, verbose=False, **k)  # noqa: E731
    assert mk(simple_func, [2, 4, 6, 8], 4).n_inputs == 4
    assert mk(simple_func, [2, 4, 6, 8], y=4).n_inputs == 4  # positional arg given by name
    assert mk(simple_func, 0, 4, z=[3, 4, 5, 6]).n_inputs == 4
    assert mk(simple_func, [2, 4, 6, 8], [2, 2], n_inputs=2).n_inputs == 2
    assert mk(medium_func, [2, 4, 6, 8], y=[2, 2], n_inputs=2).n_inputs == 2
    assert mk(medium_func, None, None, w=[np.ones((3, 3)), 2 * np.ones((3, 3))]).n_inputs == 2
    assert mk(medium_func, None, None, z=np.zeros((3,))).n_inputs == 3
    assert mk(medium_func, None, None, z=np.zeros((3, 1))).n_inputs == 3
    assert mk(hard_func, [2, 4, 6, 8], 2, w=np.ones((3,))).n_inputs == 4  # w's default is an array
    assert mk(hard_func, np.ones((3,)), 1, w=np.ones((7, 1))).n_inputs == 3
    assert mk(hard_func, [2, 4, 6, 8], [2, 2], w=np.ones((8, 1)), n_inputs=4).n_inputs == 4
    assert mk(simple_func, range(5), 1).n_inputs == 5
    # all broadcast, n_inputs given (ACME's rand1 example)
    assert mk(simple_func, 1, 2, n_inputs=7).n_inputs == 7
    # markers (beyond ACME)
    pm = mk(simple_func, acme.broadcast([1, 2]), acme.iterate([[1], [2], [3]]))
    assert pm.n_inputs == 3


def test_argument_errors_name_the_arguments():
    mk = lambda *a, **k: ParallelMap(*a, write_worker_results=False, verbose=False, **k)  # noqa: E731
    with pytest.raises(ValueError, match=r"simple_func expects 2 positional arguments \('x', 'y'\), found 1"):
        mk(simple_func, 4)
    with pytest.raises(ValueError, match=r"simple_func accepts at maximum 1 keyword arguments \('z'\), found 2 \(unknown: 'w'\)"):
        mk(simple_func, 4, 4, z=3, w=4)
    with pytest.raises(ValueError, match=r"automatic input distribution failed: found 2 objects "
                                         r"containing 2 to 4 elements \('x' \(4\), 'y' \(2\)\)"):
        mk(simple_func, [2, 4, 6, 8], [2, 2])
    with pytest.raises(ValueError, match=r"found 2 objects containing 2 to 3 elements"):
        mk(medium_func, [1, 2, 3], None, w=[np.ones((3, 3)), 2 * np.ones((3, 3))])
    with pytest.raises(ValueError, match=r"No object has required length of 3 matching `n_inputs` \(found 'x' \(4\), 'y' \(2\)\)"):
        mk(simple_func, [2, 4, 6, 8], [2, 2], n_inputs=3)
    with pytest.raises(ValueError, match="No object has required length of 8"):
        mk(hard_func, [2, 4, 6, 8], [2, 2], w=np.ones((8, 1)), n_inputs=8)
    with pytest.raises(ValueError, match="found 0 objects"):
        mk(simple_func, 1, 2)
    with pytest.raises(TypeError, match="first input has to be a callable"):
        mk(42, [1, 2])
    with pytest.raises(ValueError, match="`n_inputs` has to be 'auto' or an integer"):
        mk(simple_func, [1, 2], 3, n_inputs="many")
    with pytest.raises(TypeError, match="argument 'x' is a generator"):
        mk(simple_func, (i for i in range(3)), 1)
    with pytest.raises(ValueError, match="multiple values for argument"):
        mk(simple_func, [1, 2], 3, x=[1, 2])
    with pytest.raises(ValueError, match="acme.iterate.. arguments must have `n_inputs` = 3"):
        mk(simple_func, [1, 2, 3], acme.iterate([1, 2]), n_inputs=3)
    with pytest.raises(ValueError, match="Pickling of results does not support single output"):
        ParallelMap(simple_func, [1, 2], 3, write_pickle=True, single_file=True, verbose=False)
    with pytest.raises(ValueError, match="exactly one `None`"):
        mk(simple_func, [1, 2], 3, result_shape=(3, 3))


# ---- maps on workers ----

def test_walkthrough_files_and_container(cluster, tmp_path):
    with ParallelMap(simple_func, [2, 4, 6, 8], 4, output_dir=str(tmp_path)) as pmap:
        results = bounded(pmap.compute)
    payload = tmp_path / "simple_func_payload"
    assert results == [str(payload / f"simple_func_{i}.h5") for i in range(4)]
    assert pmap.results_container == str(tmp_path / "simple_func.h5")
    assert [v.tolist() for v in read_all(pmap.results_container, 4)] == [[18], [24], [30], [36]]
    with h5py.File(pmap.results_container, "r") as h5f:
        link = h5f.get("comp_2", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert (link.filename, link.path) == ("simple_func_payload/simple_func_2.h5", "/")
    assert any(name.startswith("ACME_simple_func_") and name.endswith(".log")
               for name in os.listdir(tmp_path))  # ACME's default log file beside the results


def test_in_memory_in_input_order_and_default_output_dir(cluster, tmp_path, monkeypatch):
    with ParallelMap(slow_square, list(range(12)), write_worker_results=False) as pmap:
        assert bounded(pmap.compute) == [i * i for i in range(12)]
    # ACME's default folder: ACME_<date> next to the file defining func
    with ParallelMap(simple_func, [1, 2], 1) as pmap:
        files = bounded(pmap.compute)
    folder = os.path.dirname(pmap.results_container)
    try:
        assert os.path.dirname(folder) == HERE
        assert os.path.basename(folder).startswith("ACME_")
        assert all(os.path.isfile(f) for f in files)
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def test_broadcast_values_travel_once(cluster, monkeypatch):
    """A broadcast array goes once in the SUBMIT's common frame, not in 40 task frames."""
    from acme import client as acme_client
    seen = {"common": 0, "tasks": 0, "count": 0}
    real_submit = acme_client.Client.submit

    def spy(self, function, tasks, total, *, common=None, **kw):
        seen["common"] = len(common or b"")

        def counted():
            for frame in tasks:
                seen["tasks"] += len(frame)
                seen["count"] += 1
                yield frame
        return real_submit(self, function, counted(), total, common=common, **kw)

    monkeypatch.setattr(acme_client.Client, "submit", spy)
    big = np.zeros((500, 500))  # 2 MB, 2-D: broadcast by ACME's rule
    with ParallelMap(nbytes_of, list(range(40)), big, write_worker_results=False) as pmap:
        assert bounded(pmap.compute) == [2_000_000 + i for i in range(40)]
    assert seen["count"] == 40
    assert seen["common"] > 2_000_000
    assert seen["tasks"] < 40 * 64  # each task frame: its id and one small int


def test_task_id_and_result_shape(cluster, tmp_path):
    with ParallelMap(with_task_id, [5, 6, 7], write_worker_results=False) as pmap:
        assert [v.tolist() for v in bounded(pmap.compute)] == [[5, 0], [6, 1], [7, 2]]
    # virtual dataset stacking along the None axis (ACME's user guide example)
    with ParallelMap(vector, [2, 4, 6, 8], 4, result_shape=(None, 3), output_dir=str(tmp_path / "a")) as pmap:
        bounded(pmap.compute)
    with h5py.File(pmap.results_container, "r") as h5f:
        assert list(h5f.keys()) == ["result_0"]
        dset = h5f["result_0"]
        assert dset.is_virtual and dset.shape == (4, 3) and dset.dtype == np.float64
        assert dset[()].tolist() == [[18.0] * 3, [24.0] * 3, [30.0] * 3, [36.0] * 3]
    # further return values are linked per task; result_dtype sets the dataset's type
    with ParallelMap(multi, range(5), result_shape=(None, 4), result_dtype="float16",
                     output_dir=str(tmp_path / "b")) as pmap:
        bounded(pmap.compute)
    with h5py.File(pmap.results_container, "r") as h5f:
        assert h5f["result_0"].dtype.name == "float16"
        assert h5f["result_0"][3].tolist() == [3.0, 4.0, 5.0, 6.0]
        assert sorted(h5f["comp_3"].keys()) == ["result_1", "result_2"]
        assert h5f["comp_3"]["result_1"][()] == 3
    # in memory: one stacked array (ACME's docs show it as a one-element list)
    with ParallelMap(vector, [2, 4, 6, 8], 4, n_inputs=4, result_shape=(None, 3),
                     write_worker_results=False) as pmap:
        (stacked,) = bounded(pmap.compute)
    assert stacked.shape == (4, 3) and stacked[1].tolist() == [24.0] * 3
    # unlimited axis: the extent comes from the results
    with ParallelMap(np.arange, [2, 3, 4], result_shape=(None, np.inf), output_dir=str(tmp_path / "c")) as pmap:
        bounded(pmap.compute)
    with h5py.File(pmap.results_container, "r") as h5f:
        assert h5f["result_0"].shape == (3, 4) and h5f["result_0"].maxshape == (3, None)
        assert h5f["result_0"][2].tolist() == [0, 1, 2, 3]


def test_single_file_concurrent_writers(cluster, tmp_path):
    with ParallelMap(slow_square, list(range(16)), single_file=True, output_dir=str(tmp_path)) as pmap:
        assert bounded(pmap.compute) == [str(tmp_path / "slow_square.h5")]
    assert sorted(os.listdir(tmp_path))[-1] == "slow_square.h5"
    assert not any(name.endswith(".lock") or ".tmp" in name for name in os.listdir(tmp_path))
    assert [v.tolist() for v in read_all(pmap.results_container, 16)] == [[i * i] for i in range(16)]
    with ParallelMap(vector, list(range(6)), 1, single_file=True, result_shape=(None, 3),
                     output_dir=str(tmp_path / "s")) as pmap:
        bounded(pmap.compute)
    with h5py.File(pmap.results_container, "r") as h5f:
        assert not h5f["result_0"].is_virtual
        assert h5f["result_0"][:, 0].tolist() == [3.0 * (i + 1) for i in range(6)]


def test_pickles_and_fallback(cluster, tmp_path):
    with ParallelMap(simple_func, [2, 4, 6], 4, write_pickle=True, output_dir=str(tmp_path / "p")) as pmap:
        files = bounded(pmap.compute)
    assert files == [str(tmp_path / "p" / f"simple_func_{i}.pickle") for i in range(3)]
    assert pmap.results_container is None
    with open(files[1], "rb") as fh:
        assert pickle.load(fh) == 24
    # a value HDF5 cannot hold is pickled for that task only; the container links the others
    with ParallelMap(unstorable, [1, 2, 3], output_dir=str(tmp_path / "f")) as pmap:
        files = bounded(pmap.compute)
    payload = tmp_path / "f" / "unstorable_payload"
    assert files == [str(payload / "unstorable_0.h5"), str(payload / "unstorable_1.pickle"),
                     str(payload / "unstorable_2.h5")]
    with open(files[1], "rb") as fh:
        assert pickle.load(fh) == [{"x": 2}]  # the list of return values, as ACME's emergency pickle
    with h5py.File(pmap.results_container, "r") as h5f:
        assert sorted(h5f.keys()) == ["comp_0", "comp_2"]
        assert h5f["comp_2"]["result_0"][()].tolist() == [3]


def test_failures_collected_then_rerun(cluster, tmp_path, caplog):
    flag = str(tmp_path / "fixed")
    out = str(tmp_path / "out")
    with ParallelMap(flaky, list(range(50)), flag, output_dir=out) as pmap:
        with pytest.raises(TasksFailed) as info:
            bounded(pmap.compute)
        exc = info.value
        assert isinstance(exc, RuntimeError) and isinstance(exc, acme.AcmeError)
        assert exc.failed == [4, 21, 38]
        message = str(exc)
        assert message.startswith("3/50 tasks failed: indices [4, 21, 38]")
        assert "ValueError: input 21 is bad" in message and "Traceback" in message
        assert set(exc.errors) == {4, 21, 38} and "input 38 is bad" in exc.errors[38]
        assert exc.details[4]["kind"] == "ValueError"
        # the other 47 results are kept, on disk and on the exception
        assert exc.results[4] is None and exc.results[5].endswith("flaky_5.h5")
        assert sum(r is not None for r in exc.results) == 47
        assert pmap.failed == [4, 21, 38]
        # fix the cause, rerun only the failed inputs: same task ids, same file names
        open(flag, "w").close()
        files = bounded(pmap.compute, indices=exc.failed)
    assert files == [os.path.join(out, "flaky_payload", f"flaky_{i}.h5") for i in range(50)]
    assert pmap.failed == []
    assert [v.tolist() for v in read_all(pmap.results_container, 50)] == [[i * 10] for i in range(50)]


def test_dryrun_and_debug(cluster, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="ACME")
    # not interactive (stdin is no terminal under pytest): dry run, then the real map
    with ParallelMap(simple_func, [2, 4, 6, 8], 4, dryrun=True, output_dir=str(tmp_path / "d")) as pmap:
        assert "Dry-run completed" in caplog.text
        assert os.listdir(tmp_path / "d" / "simple_func_payload") == []  # dry-run file removed
        files = bounded(pmap.compute)
    assert all(os.path.isfile(f) for f in files)
    # interactive and declined: nothing runs, the output folder goes
    monkeypatch.setattr("acme.pmap._stdin_is_terminal", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    with ParallelMap(simple_func, [2, 4], 4, dryrun=True, output_dir=str(tmp_path / "n")) as pmap:
        assert pmap.compute() is None
    assert not os.path.exists(tmp_path / "n")
    # debug: every call in this process, sequentially, errors propagate as they are
    with ParallelMap(pid_of, list(range(5)), write_worker_results=False) as pmap:
        assert pmap.compute(debug=True) == [os.getpid()] * 5
    with ParallelMap(simple_func, [2, 4], 4, z=None, write_worker_results=False) as pmap:
        with pytest.raises(TypeError, match="unsupported operand"):
            pmap.compute(debug=True)


def test_worker_killed_mid_map_still_completes(tmp_path):
    previous = acme_cluster.get_default()
    with acme_cluster.LocalCluster(2, start_timeout=60) as own:
        acme_cluster.set_default(own)
        try:
            # A worker process (a child of the cluster's supervisor, which restarts it).
            victim = own.status()["workers"][0]["pid"]
            assert victim != own.workers[0].pid
            killer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
            killer.start()
            with ParallelMap(slow_square, list(range(30)), output_dir=str(tmp_path)) as pmap:
                files = bounded(pmap.compute)
            killer.join(5)
            with pytest.raises(ProcessLookupError):  # it did die (and was reaped)
                os.kill(victim, 0)
            assert own.workers[0].poll() is None  # the supervisor lives on
        finally:
            acme_cluster.set_default(previous)
    assert [v.tolist() for v in read_all(pmap.results_container, 30)] == [[i * i] for i in range(30)]
    assert len(files) == 30 and all(os.path.isfile(f) for f in files)


def test_unsendable_arguments_are_named_before_anything_runs(cluster):
    previous = acme_cluster.get_default()
    acme_cluster.set_default(None)
    try:
        with ParallelMap(simple_func, list(range(5)), 1, z=threading.Lock(), n_workers=1,
                         write_worker_results=False, verbose=False) as pmap:
            with pytest.raises(TypeError, match=r"argument 'z' \(a _thread.lock\) cannot be sent "
                                                r"to the workers: cannot pickle '_thread.lock'"):
                bounded(pmap.compute)
            assert pmap._cluster is None  # failed before a cluster was started
    finally:
        acme_cluster.set_default(previous)
    # An iterated argument's element: the argument and the input index.
    with ParallelMap(simple_func, [1, 2, threading.Lock(), 4], 1, write_worker_results=False,
                     verbose=False) as pmap:
        with pytest.raises(TypeError, match=r"argument 'x' at input 2 \(a _thread.lock\) cannot "
                                            r"be sent to the workers: cannot pickle"):
            bounded(pmap.compute)


def test_dead_supervisor_fails_the_map_naming_it(tmp_path):
    previous = acme_cluster.get_default()
    with acme_cluster.LocalCluster(1, start_timeout=60) as own:
        acme_cluster.set_default(own)
        try:
            supervisor = own.workers[0]
            killer = threading.Timer(1.0, os.kill, (supervisor.pid, signal.SIGKILL))
            killer.start()
            started = time.monotonic()
            with ParallelMap(slow_square, list(range(200)), write_worker_results=False,
                             verbose=False) as pmap:
                with pytest.raises(acme.AcmeError, match=r"(?s)the map cannot finish: its "
                                   r"LocalCluster .* supervisor .*was killed by SIGKILL"):
                    bounded(pmap.compute, timeout=60)
            assert time.monotonic() - started < 15
            killer.join(5)
        finally:
            acme_cluster.set_default(previous)


def test_dead_default_cluster_is_replaced(caplog):
    previous = acme_cluster.get_default()
    dead = acme_cluster.LocalCluster(1, start_timeout=60)
    acme_cluster.set_default(dead)
    try:
        dead.broker.kill()
        dead.broker.wait(10)
        with ParallelMap(simple_func, [1, 2], 1, n_workers=1, write_worker_results=False) as pmap:
            assert bounded(pmap.compute) == [6, 9]
            assert pmap._cluster is not None and pmap._cluster is not dead
        assert dead._closed and acme_cluster.get_default() is None
        assert "The default cluster" in caplog.text and "is unusable" in caplog.text
    finally:
        dead.close()
        acme_cluster.set_default(previous)


def test_broker_without_workers_is_reported_while_the_map_waits(monkeypatch, caplog):
    from acme import pmap as acme_pmap
    monkeypatch.setattr(acme_pmap._Watch, "POLL", 0.3)
    monkeypatch.setattr(acme_pmap._Watch, "NO_WORKER_FIRST", 1.0)
    monkeypatch.setattr(acme_pmap._Watch, "STATUS_EVERY", 0.3)
    folder = tempfile.mkdtemp(prefix="acme-pm-", dir="/tmp")
    endpoint = f"ipc://{folder}/broker"
    procs = [subprocess.Popen([BROKER_EXE, "--bind", endpoint, "--log-level", "warn"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    previous = acme_cluster.get_default()
    acme_cluster.set_default(None)
    try:
        monkeypatch.setenv("ACME_BROKER", endpoint)
        with ParallelMap(simple_func, [1, 2], 1, write_worker_results=False) as pmap:
            box = {}
            thread = threading.Thread(target=lambda: box.setdefault("v", bounded(pmap.compute)),
                                      daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while "no worker is connected" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
            assert f"no worker is connected to the broker at {endpoint} (from $ACME_BROKER)" \
                in caplog.text and "acme-launch status" in caplog.text
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, PKG]))
            env.pop("ACME_BROKER", None)
            procs.append(subprocess.Popen([sys.executable, "-m", "acme.worker", "--connect",
                                           endpoint], env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            thread.join(60)
            assert box.get("v") == [6, 9]
    finally:
        acme_cluster.set_default(previous)
        for proc in reversed(procs):
            proc.kill()
            proc.wait(10)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not os.access(WORKER_EXE, os.X_OK), reason="acme-worker not built")
def test_named_function_on_cpp_workers(tmp_path, monkeypatch):
    """A Python map calling the C++ worker's builtin `echo` (mixed languages)."""
    folder = tempfile.mkdtemp(prefix="acme-pm-", dir="/tmp")
    endpoint = f"ipc://{folder}/broker"
    procs = [subprocess.Popen([BROKER_EXE, "--bind", endpoint, "--log-level", "warn"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([WORKER_EXE, "--connect", endpoint, "--slots", "1",
                                           "--log-level", "warn"], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        monkeypatch.setenv("ACME_BROKER", endpoint)  # as acme-launch / a user would configure it
        with ParallelMap("echo", [1, 2.5, "three"], write_worker_results=False) as pmap:
            assert bounded(pmap.compute) == [1, 2.5, "three"]
        with ParallelMap("echo", [1, 2, 3], 10, output_dir=str(tmp_path)) as pmap:
            files = bounded(pmap.compute)
        assert files == [str(tmp_path / "echo_payload" / f"echo_{i}.h5") for i in range(3)]
        with h5py.File(pmap.results_container, "r") as h5f:
            assert h5f["comp_1"]["result_0"][()].tolist() == [2, 10]  # echo's [2, 10]
        with ParallelMap("fail", ["boom", "bang"], write_worker_results=False) as pmap:
            with pytest.raises(TasksFailed, match="2/2 tasks failed: indices \\[0, 1\\]") as info:
                bounded(pmap.compute)
        assert "boom" in info.value.errors[0]
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(10)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def test_script_without_main_guard(tmp_path):
    """`python3 script.py` with the function in __main__ and no `if __name__` guard."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from acme import ParallelMap

        def f(x, y, z=3):
            return (x + y) * z

        with ParallelMap(f, [2, 4, 6, 8], 4, n_workers=2, write_worker_results=False) as pmap:
            results = pmap.compute()
        print("RESULTS", results)
        with ParallelMap(f, [2, 4, 6, 8], 4, n_workers=2) as pmap:
            files = pmap.compute()
        print("FILES", len(files), pmap.results_container)
    """))
    env = dict(os.environ, PYTHONPATH=PKG, ACME_HOME=str(tmp_path / "home"))
    env.pop("ACME_BROKER", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=DEADLINE)
    assert proc.returncode == 0, proc.stderr
    assert "RESULTS [18, 24, 30, 36]" in proc.stdout
    container = proc.stdout.split("FILES 4 ")[1].strip()
    assert os.path.dirname(os.path.dirname(container)) == str(tmp_path)  # ACME_<date> beside script.py
    assert [v.tolist() for v in read_all(container, 4)] == [[18], [24], [30], [36]]
    assert "Starting a local acme cluster with 2 workers" in proc.stderr


def test_started_cluster_lifetime():
    """stop_client="auto": the cluster a map starts stops with it; False: it stays, and the
    next map attaches to it (as ACME keeps its client); True: it stops too."""
    previous = acme_cluster.get_default()
    acme_cluster.set_default(None)
    with ParallelMap(simple_func, [1, 2], 1, n_workers=1, write_worker_results=False) as pmap:
        assert bounded(pmap.compute) == [6, 9]
        started = pmap._cluster
        assert started is not None
    assert pmap._cluster is None and all(p.poll() is not None for p in started._processes)
    with ParallelMap(simple_func, [1, 2], 1, n_workers=1, stop_client=False,
                     write_worker_results=False) as pmap:
        bounded(pmap.compute)
    kept = acme_cluster.get_default()
    try:
        assert kept is not None and kept.broker.poll() is None
        with ParallelMap(simple_func, [3, 4], 1, write_worker_results=False, stop_client=True) as pmap:
            assert bounded(pmap.compute) == [12, 15]
            assert pmap._cluster is None  # attached, did not start its own
        assert acme_cluster.get_default() is None and kept.broker.poll() is not None
    finally:
        acme_cluster.set_default(previous)
        if kept is not None:
            kept.close()
