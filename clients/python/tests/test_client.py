"""acme.client against real processes: acme-broker and the C++ acme-worker (a Python client
driving C++ workers), plus a fake broker where only a fake can say it (an old broker).

Every wait is bounded; sockets are ipc:// under private temp dirs or 127.0.0.1.
"""

from __future__ import annotations

import os

from conftest import _DEFAULT_BIN  # noqa: E402  (this repository's build/dev)
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import pytest
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from acme import protocol as P  # noqa: E402
from acme.client import (AcmeError, BrokerGone, Client, JobError, configured_broker,  # noqa: E402
                         query_status)

BROKER_EXE = os.environ.get("ACME_BROKER_EXE", _DEFAULT_BIN + "/broker/acme-broker")
WORKER_EXE = os.environ.get("ACME_WORKER_EXE", _DEFAULT_BIN + "/worker/acme-worker")

pytestmark = pytest.mark.skipif(
    not (os.access(BROKER_EXE, os.X_OK) and os.access(WORKER_EXE, os.X_OK)),
    reason=f"acme-broker ({BROKER_EXE}) or acme-worker ({WORKER_EXE}) not built: set "
           f"ACME_BROKER_EXE and ACME_WORKER_EXE")


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def tasks(values):
    """Task frames for echo-like functions: each value as the only positional argument."""
    return (pack([v]) for v in values)


class Procs:
    """Child processes of one test, all killed at its end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="acme-tc-", dir="/tmp")  # ipc paths must be short
        self.procs: list[subprocess.Popen] = []

    def start(self, argv, name):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def broker(self, *args, name="broker"):
        endpoint = f"ipc://{self.dir}/{name}"
        proc = self.start([BROKER_EXE, "--bind", endpoint, "--log-level", "warn", *args], name)
        return endpoint, proc

    def cpp_workers(self, endpoint, n=2, slots=1):
        return [self.start([WORKER_EXE, "--connect", endpoint, "--slots", str(slots),
                            "--log-level", "warn"], f"worker{len(self.procs)}") for _ in range(n)]

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_workers(endpoint, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if len(query_status(endpoint, timeout=1.0)["workers"]) >= n:
                return
        except BrokerGone:
            pass
        assert time.monotonic() < deadline, f"{n} workers did not register at {endpoint}"
        time.sleep(0.02)


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.close()


@pytest.fixture
def cpp_cluster(procs):
    """acme-broker and two single-slot C++ acme-workers; yields the endpoint."""
    endpoint, _ = procs.broker()
    procs.cpp_workers(endpoint, 2)
    wait_for_workers(endpoint, 2)
    return endpoint


def collect(job, timeout=60.0):
    """Every result of a job, asserting it ends within `timeout`."""
    deadline = time.monotonic() + timeout
    results = []
    for batch in job.batches(timeout=timeout):
        results.extend(batch)
        assert time.monotonic() < deadline, f"job {job} did not end within {timeout} s"
    return results


# ---- jobs on C++ workers -------------------------------------------------------------------


def test_echo_on_cpp_workers(cpp_cluster):
    values = [0, -5, 3.5, "text", b"\x00bytes", [1, [2, 3]], {"k": [1, 2]}, None, True]
    with Client(cpp_cluster) as client:
        job = client.submit("echo", tasks(values), len(values))
        results = collect(job, 30)
    assert sorted(r.index for r in results) == list(range(len(values)))
    for r in results:
        assert r.status == P.OK and r.attempts == 1
        assert unpack(r.payload) == values[r.index]
    assert job.done and job.ok == len(values) and job.failed == 0 and not job.cancelled


def test_common_frame_and_failures(cpp_cluster):
    with Client(cpp_cluster) as client:
        failing = client.submit("fail", (pack([f"boom {i}"]) for i in range(5)), 5)
        slow = client.submit("sleep", (pack([5.0]) for _ in range(2)), 2, timeout=0.2)
        common = client.submit("echo", tasks(range(3)), 3, common=pack({"unused": 1}))
        failed = collect(failing, 30)
        timed_out = collect(slow, 30)
        echoed = collect(common, 30)
    assert sorted(unpack(r.payload)["message"] for r in failed) == [f"boom {i}" for i in range(5)]
    assert all(r.status == P.FAILED for r in failed)
    assert failing.ok == 0 and failing.failed == 5
    assert [r.status for r in timed_out] == [P.TIMED_OUT, P.TIMED_OUT]
    assert sorted(unpack(r.payload) for r in echoed) == [0, 1, 2]


def test_exactly_once_20000_tasks(cpp_cluster):
    n = 20_000
    with Client(cpp_cluster) as client:
        job = client.submit("echo", tasks(range(n)), n)
        results = collect(job, 60)
    assert len(results) == n
    indices = [r.index for r in results]
    assert len(set(indices)) == n and set(indices) == set(range(n))
    assert all(unpack(r.payload) == r.index for r in results)
    assert job.ok == n and job.failed == 0


def test_window_respected(procs):
    endpoint, _ = procs.broker("--max-window", "1024")
    procs.cpp_workers(endpoint, 2)
    wait_for_workers(endpoint, 2)
    n = 50_000
    with Client(endpoint) as client:
        engine = client._engine
        counts = []
        send = engine._send

        def spy(frames, what):  # runs on the I/O thread
            if what == "SUBMIT":
                counts.append(msgpack.unpackb(frames[2])["count"])
            send(frames, what)
        engine._send = spy
        job = client.submit("echo", tasks(range(n)), n)
        results = collect(job, 120)  # a window exceeded would fail the job (ERROR bad-request)
    assert len(results) == n and len({r.index for r in results}) == n
    assert sum(counts) == n and max(counts) <= 1024
    assert len(counts) > 1  # more than one SUBMIT was needed


def test_tasks_are_consumed_lazily(cpp_cluster):
    produced = 0

    def frames():
        nonlocal produced
        for i in range(10_000_000):
            produced += 1
            yield pack([i])

    with Client(cpp_cluster) as client:
        job = client.submit("echo", frames(), 10_000_000)
        got = 0
        for _ in job.results(timeout=30):
            got += 1
            if got == 2000:
                break
        job.cancel()
        assert job.wait(10), "a cancelled job did not end"
    # the window (1024 before the first ACCEPT) and max_in_flight (65536) bound what was packed
    assert produced <= 70_000


def test_small_in_flight_bound_does_not_stall(cpp_cluster):
    n = 10_000
    with Client(cpp_cluster, max_in_flight=1500) as client:
        job = client.submit("echo", tasks(range(n)), n)
        results = collect(job, 60)
    assert sorted(r.index for r in results) == list(range(n))


def test_two_jobs_at_once(cpp_cluster):
    n = 5000
    outcome = {}
    with Client(cpp_cluster) as client:
        jobs = {"a": client.submit("echo", tasks(f"a{i}" for i in range(n)), n),
                "b": client.submit("echo", tasks(f"b{i}" for i in range(n)), n)}
        assert jobs["a"].id != jobs["b"].id

        def read(name):
            outcome[name] = collect(jobs[name], 60)
        readers = [threading.Thread(target=read, args=(name,)) for name in jobs]
        for t in readers:
            t.start()
        for t in readers:
            t.join(90)
    for name in "ab":
        results = outcome[name]
        assert len(results) == n
        assert sorted(unpack(r.payload) for r in results) == sorted(f"{name}{i}" for i in range(n))


def test_task_iterator_errors_fail_the_job(cpp_cluster):
    def frames():
        yield pack([1])
        raise TypeError("cannot pack input 1")

    with Client(cpp_cluster) as client:
        job = client.submit("echo", frames(), 3)
        with pytest.raises(TypeError, match="cannot pack input 1"):
            collect(job, 30)
        short = client.submit("echo", tasks([1]), 3)  # fewer tasks than total
        with pytest.raises(AcmeError, match="ended after 1 of 3"):
            collect(short, 30)
        # the client still works
        assert [unpack(r.payload) for r in collect(client.submit("echo", tasks([7]), 1))] == [7]


def test_zero_tasks(cpp_cluster):
    with Client(cpp_cluster) as client:
        job = client.submit("echo", (), 0)
        assert collect(job, 5) == [] and job.done


# ---- failures of the job as a whole --------------------------------------------------------


def test_no_such_function(procs):
    endpoint, _ = procs.broker("--no-worker-timeout-ms", "500")
    procs.cpp_workers(endpoint, 1)  # the broker's timer runs only while a worker is live
    wait_for_workers(endpoint, 1)
    with Client(endpoint) as client:
        job = client.submit("no_such_function_here", tasks([1, 2]), 2)
        started = time.monotonic()
        with pytest.raises(JobError) as caught:
            collect(job, 30)
        assert time.monotonic() - started < 10
    assert caught.value.code == P.NO_SUCH_FUNCTION
    assert "no_such_function_here" in str(caught.value)
    assert endpoint in str(caught.value)
    assert job.error is caught.value


def test_broker_killed_mid_job(procs):
    endpoint, broker = procs.broker("--heartbeat-ms", "200")
    procs.cpp_workers(endpoint, 2)
    wait_for_workers(endpoint, 2)
    with Client(endpoint, source="test broker") as client:
        job = client.submit("sleep", (pack([0.05]) for _ in range(400)), 400)
        results = job.results(timeout=30)
        next(results)  # running, and the client has the broker's heartbeat_ms (200)
        broker.kill()
        killed = time.monotonic()
        with pytest.raises(BrokerGone) as caught:
            for _ in results:
                pass
        elapsed = time.monotonic() - killed
    assert elapsed < 2.0, f"BrokerGone came {elapsed:.2f} s after the broker died (3 x 200 ms)"
    assert endpoint in str(caught.value) and "(test broker)" in str(caught.value)


def test_broker_stopped_mid_job(procs):
    endpoint, broker = procs.broker("--heartbeat-ms", "200")
    procs.cpp_workers(endpoint, 1)
    wait_for_workers(endpoint, 1)
    with Client(endpoint) as client:
        job = client.submit("sleep", (pack([0.2]) for _ in range(100)), 100)
        results = job.results(timeout=30)
        next(results)
        broker.send_signal(signal.SIGTERM)  # a stopping broker says BYE (reconnect false)
        with pytest.raises(BrokerGone) as caught:
            for _ in results:
                pass
    assert f"the broker at {endpoint} stopped (" in str(caught.value)


@pytest.mark.parametrize("kind", ["ipc", "tcp"])
def test_nobody_listening(procs, kind):
    if kind == "ipc":
        endpoint = f"ipc://{procs.dir}/nobody"
    else:
        with socket.socket() as s:  # a free port, closed again: nobody listens there
            s.bind(("127.0.0.1", 0))
            endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with Client(endpoint) as client:
        job = client.submit("echo", tasks([1]), 1)
        with pytest.raises(BrokerGone) as caught:
            collect(job, 30)
    elapsed = time.monotonic() - started
    assert elapsed < 6.0, f"BrokerGone took {elapsed:.1f} s (3 x the default 1 s heartbeat)"
    assert endpoint in str(caught.value) and "check that acme-broker runs there" in str(caught.value)


def test_invalid_endpoint():
    with pytest.raises(AcmeError, match="invalid broker endpoint 'nonsense'"):
        Client("nonsense")


# ---- cancel ----------------------------------------------------------------------------------


def test_cancel(cpp_cluster):
    with Client(cpp_cluster) as client:
        job = client.submit("sleep", (pack([0.05]) for _ in range(1000)), 1000)
        results = job.results(timeout=30)
        next(results)
        job.cancel()
        rest = list(results)  # ends at once
        assert len(rest) < 1000
        assert job.wait(10) and job.cancelled
        deadline = time.monotonic() + 10
        while client.status()["jobs"] != 0:  # the broker closed it
            assert time.monotonic() < deadline, "the broker kept the cancelled job"
            time.sleep(0.05)
        # the client goes on
        assert [unpack(r.payload) for r in collect(client.submit("echo", tasks([9]), 1))] == [9]


def test_ctrl_c_while_reading_cancels(cpp_cluster):
    with Client(cpp_cluster) as client:
        job = client.submit("sleep", (pack([10.0]) for _ in range(10)), 10)
        main = threading.main_thread().ident
        timer = threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                collect(job, 30)
        finally:
            timer.cancel()
        assert job.cancelled
        assert job.wait(10), "the job did not end after Ctrl-C"
        deadline = time.monotonic() + 10
        while client.status()["tasks_running"] != 0:  # workers abandoned the sleeps
            assert time.monotonic() < deadline, "the tasks kept running after Ctrl-C"
            time.sleep(0.05)


def test_close_fails_open_jobs(cpp_cluster):
    client = Client(cpp_cluster)
    job = client.submit("sleep", (pack([10.0]) for _ in range(4)), 4)
    time.sleep(0.2)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 3
    with pytest.raises(AcmeError, match="closed"):
        collect(job, 10)
    with pytest.raises(AcmeError, match="closed"):
        client.submit("echo", tasks([1]), 1)
    deadline = time.monotonic() + 10
    while query_status(cpp_cluster)["jobs"] != 0:  # BYE closed the job on the broker
        assert time.monotonic() < deadline, "the broker kept the job of a closed client"
        time.sleep(0.05)


# ---- configured_broker and STATUS -------------------------------------------------------------


def test_configured_broker(monkeypatch, tmp_path):
    monkeypatch.setenv("ACME_HOME", str(tmp_path))
    monkeypatch.delenv("ACME_BROKER", raising=False)
    assert configured_broker() is None
    with pytest.raises(AcmeError, match="no broker configured"):
        Client()

    path = tmp_path / "broker"
    host = socket.gethostname()
    path.write_text(f"tcp://node1:5555\nhost={host}\npid={os.getpid()}\nlaunch=x\n")
    assert configured_broker() == ("tcp://node1:5555", str(path))

    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(f"tcp://node1:5555\nhost={host}\npid={dead.pid}\n")
    assert configured_broker() is None  # stale: our host, the broker process has ended
    path.write_text(f"tcp://node1:5555\nhost=some-other-host\npid={dead.pid}\n")
    assert configured_broker() == ("tcp://node1:5555", str(path))  # cannot tell: trust it
    path.write_text("tcp://node2:5555\n")
    assert configured_broker() == ("tcp://node2:5555", str(path))

    monkeypatch.setenv("ACME_BROKER", "tcp://env:1")
    assert configured_broker() == ("tcp://env:1", "$ACME_BROKER")
    client = Client()
    try:
        assert client.endpoint == "tcp://env:1" and client.source == "$ACME_BROKER"
    finally:
        client.close()


def test_configured_broker_home_default(monkeypatch, tmp_path):
    monkeypatch.delenv("ACME_BROKER", raising=False)
    monkeypatch.delenv("ACME_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".acme").mkdir()
    (tmp_path / ".acme" / "broker").write_text("ipc:///x\n")
    assert configured_broker() == ("ipc:///x", str(tmp_path / ".acme" / "broker"))
    client = Client()
    try:
        assert "(~/.acme/broker)" in repr(client)
    finally:
        client.close()


def test_query_status(cpp_cluster):
    status = query_status(cpp_cluster, timeout=5)
    assert status["agent"].startswith("acme-broker")
    assert len(status["workers"]) == 2
    assert all(w["slots"] == 1 and w["pid"] > 0 for w in status["workers"])
    assert status["jobs"] == 0 and status["clients"] == 0
    assert query_status(cpp_cluster, launch="no-such-launch")["workers"] == []
    with Client(cpp_cluster) as client:
        collect(client.submit("echo", tasks(range(10)), 10))
        assert client.status()["tasks_done"] >= 10


def test_query_status_timeout(procs):
    started = time.monotonic()
    with pytest.raises(BrokerGone, match="no broker answered at ipc://.*within 0.5 s"):
        query_status(f"ipc://{procs.dir}/nobody", timeout=0.5)
    assert time.monotonic() - started < 2


def test_query_status_old_broker(procs):
    """A broker that predates STATUS answers ERROR unknown-command (PROTOCOL.md §12)."""
    endpoint = f"ipc://{procs.dir}/old"
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)

    def serve():
        if router.poll(5000):
            identity, *_ = router.recv_multipart()
            router.send_multipart([identity, *P.encode(P.SIG_BROKER, P.ERROR, {
                "code": P.UNKNOWN_COMMAND, "message": "unknown command 0x0c"})])
    server = threading.Thread(target=serve)
    server.start()
    try:
        with pytest.raises(AcmeError, match=f"the broker at {endpoint} does not support STATUS"):
            query_status(endpoint, timeout=5)
    finally:
        server.join(10)
        router.close(0)


def test_bad_task_frame_fails_only_its_job(cpp_cluster):
    with Client(cpp_cluster) as client:
        other = client.submit("sleep", (pack([0.3]) for _ in range(2)), 2)
        bad = client.submit("echo", iter(["not bytes"]), 1)
        with pytest.raises(TypeError, match="a task frame must be bytes"):
            collect(bad, 30)
        assert len(collect(other, 30)) == 2
