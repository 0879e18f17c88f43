"""python3 -m acme.worker against the real acme-broker, driven by a raw pyzmq client written
here (PROTOCOL.md §6.1-§6.2), and against a fake broker for what a real one never sends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import cloudpickle
import msgpack
import numpy as np
import pytest
import zmq

from conftest import (MAP_EXE, python_env, query_status, stop_process, wait_for_workers,
                      wait_until)
from acme import protocol as P
from acme import serial
from acme.worker import Worker

FUNCTIONS_MODULE = '''
import time
import acme.worker

def square(x):
    return x * x

def power(x, p=2):
    return x ** p

def returns_set(x):
    return {x}

@acme.worker.function("cube")
def cube(x):
    return x ** 3

@acme.worker.function
def greet(name, punctuation="!"):
    return "hello " + name + punctuation
'''


# ---- helpers


class RawClient:
    """A minimal acme client (PROTOCOL.md §6.1): one job at a time, heartbeats, deadlines."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.job = 0

    def close(self):
        self.sock.send_multipart(P.encode(P.SIG_CLIENT, P.BYE, {}))
        self.sock.close(100)

    def run(self, function: str, tasks: list[bytes], *, common: bytes | None = None,
            timeout_ms: int = 0, deadline: float = 20.0, on_result=None, **options):
        """Runs one job; returns ({index: (status, attempts, payload)}, DONE header).
        Raises AssertionError on ERROR or when `deadline` passes."""
        self.job += 1
        job, total, sent, window = self.job, len(tasks), 0, 1024
        results: dict[int, tuple] = {}
        last_sent = 0.0
        end = time.monotonic() + deadline
        while True:
            now = time.monotonic()
            assert now < end, f"job {function} not done within {deadline} s: " \
                              f"{len(results)}/{total} results"
            if sent < total and window > 0:
                count = min(window, total - sent)
                header = {"job": job, "function": function, "total": total, "first": sent,
                          "count": count, "timeout_ms": timeout_ms, **options}
                payload = tasks[sent:sent + count]
                if sent == 0 and common is not None:
                    header["common"] = True
                    payload = [common, *payload]
                self.sock.send_multipart(P.encode(P.SIG_CLIENT, P.SUBMIT, header, payload))
                sent += count
                window -= count
                last_sent = now
            elif now - last_sent >= 0.3:  # §9: heartbeat while the job is open
                self.sock.send_multipart(P.encode(P.SIG_CLIENT, P.HEARTBEAT, {}))
                last_sent = now
            if not self.sock.poll(100):
                continue
            while True:
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                message = P.decode(frames, expect_from=b"B", to=b"C")
                header = message.header
                if message.command == P.ACCEPT:
                    window = header["window"]
                elif message.command == P.RESULTS:
                    for (index, status, attempts), frame in zip(header["results"],
                                                                 message.payload):
                        assert index not in results, f"task {index} delivered twice"
                        results[index] = (status, attempts, frame)
                        if on_result:
                            on_result(index, status, attempts, frame)
                elif message.command == P.DONE:
                    return results, header
                elif message.command == P.ERROR:
                    raise AssertionError(f"ERROR from the broker: {header}")
                elif message.command == P.BYE:
                    raise AssertionError(f"BYE from the broker: {header}")

    def values(self, function, args_list, **kwargs):
        """Runs `function` once per argument list (portable frames); the unpacked values,
        in order, or AssertionError naming a failed task."""
        results, done = self.run(function, [serial.packb(a, python=False) for a in args_list],
                                 **kwargs)
        out = []
        for index in range(len(args_list)):
            status, _, frame = results[index]
            assert status == P.OK, f"task {index} status {status}: {serial.unpackb(frame)}"
            out.append(serial.unpackb(frame))
        return out


@pytest.fixture
def client(broker):
    c = RawClient(broker.endpoint)
    yield c
    c.close()


@pytest.fixture
def functions_dir(tmp_path):
    (tmp_path / "acmetestfns.py").write_text(FUNCTIONS_MODULE)
    return tmp_path


@pytest.fixture
def start_worker(functions_dir, tmp_path):
    """A factory: start_worker(endpoint, *args, env=None) -> Popen of python3 -m acme.worker
    (with the test functions importable); all stopped at the end of the test."""
    procs = []

    def start(endpoint, *args, env=None):
        full_env = python_env(**(env or {}))
        full_env["PYTHONPATH"] = f"{functions_dir}{os.pathsep}{full_env['PYTHONPATH']}"
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")
        command = [sys.executable, "-m", "acme.worker", *args]
        if endpoint is not None:
            command[3:3] = ["--connect", endpoint]
        proc = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = tmp_path / f"worker{len(procs)}.log"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


def worker_log(proc) -> str:
    return proc.log_path.read_text(errors="replace")


def error_of(frame) -> dict:
    value = msgpack.unpackb(frame, raw=False)
    assert isinstance(value, dict) and "message" in value, value
    return value


def python_job(fn, args=(), kwargs=None, iter_args=(), iter_kwargs=(), taskid=False):
    """The common frame of an acme.python job (py-spec.md call convention)."""
    return serial.packb({"fn": cloudpickle.dumps(fn), "name": getattr(fn, "__name__", "f"),
                         "args": list(args), "kwargs": dict(kwargs or {}),
                         "iter_args": list(iter_args), "iter_kwargs": list(iter_kwargs),
                         "taskid": taskid, "write": None})


def python_task(task_id, values=(), kvalues=()):
    return serial.packb([task_id, list(values), list(kvalues)])


# ---- the real broker


def test_builtins_behave_like_acme_worker(broker, client, start_worker):
    start_worker(broker.endpoint)
    status = wait_for_workers(broker.endpoint, 1)
    entry = status["workers"][0]
    assert entry["slots"] == 1 and entry["functions"] == 5
    assert client.values("echo", [[1], [1, 2], ["s"], [], [{"a": b"x"}]]) == \
        [1, [1, 2], "s", [], {"a": b"x"}]
    assert client.values("sleep", [[0.01], [0]]) == [0.01, 0.0]
    results, done = client.run("fail", [msgpack.packb(["boom"]), msgpack.packb([]),
                                        msgpack.packb([[1, 2]]), msgpack.packb("x")])
    assert done["failed"] == 4
    errors = [error_of(results[i][2]) for i in range(4)]
    assert [e["message"] for e in errors] == [
        "boom", "fail() was called", "[1,2]", "fail() expects an array of arguments, got str"]
    assert errors[0]["kind"] == "std::runtime_error"
    assert errors[3]["kind"] == "std::invalid_argument"
    assert errors[0]["pid"] == entry["pid"] and errors[0]["host"]


def test_unknown_function_is_never_sent_and_fails_the_job(start_broker, start_worker):
    broker = start_broker(None, None, "--no-worker-timeout-ms", "300")
    start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 1)
    c = RawClient(broker.endpoint)
    with pytest.raises(AssertionError, match="'code': 5"):
        c.run("no-such-function", [msgpack.packb([1])], deadline=10)
    c.close()


def test_named_functions_use_the_cpp_convention(broker, client, start_worker):
    start_worker(broker.endpoint, "--function", "power=acmetestfns:power",
                 "--function", "acmetestfns:square", "--function", "set=acmetestfns:returns_set",
                 "--module", "acmetestfns")
    wait_for_workers(broker.endpoint, 1)
    # Task frame: positional arguments; common frame: named arguments shared by every task.
    assert client.values("power", [[2], [3]], common=msgpack.packb({"p": 3})) == [8, 27]
    assert client.values("power", [[5]]) == [25]
    assert client.values("acmetestfns:square", [[4], [1.5]]) == [16, 2.25]
    assert client.values("cube", [[2]]) == [8]  # @acme.worker.function("cube") in --module
    assert client.values("greet", [["ada"]], common=msgpack.packb({"punctuation": "?"})) == \
        ["hello ada?"]
    squared = client.values("power", [[np.arange(4, dtype=np.int32)]])[0]
    np.testing.assert_array_equal(squared, [0, 1, 4, 9])
    results, done = client.run("set", [msgpack.packb([1])])
    error = error_of(results[0][2])
    assert results[0][0] == P.FAILED and error["kind"] == "TypeError"
    assert error["message"].startswith("TypeError: set() returned a set")
    assert "non-Python function" in error["message"]
    results, _ = client.run("power", [msgpack.packb(1)])
    assert "expects an array of arguments" in error_of(results[0][2])["message"]


def test_acme_python_jobs_run_shipped_callables(broker, client, start_worker):
    start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 1)
    offset = 100  # captured by value

    # Broadcast args (position 1) and kwargs, iterated position 0, taskID.
    common = python_job(lambda x, y, k=0, taskID=None: (x * y + k + offset, taskID),
                        args=[None, 10], kwargs={"k": 1}, iter_args=[0], taskid=True)
    results, done = client.run("acme.python", [python_task(7, [1]), python_task(9, [2])],
                               common=common)
    assert done["ok"] == 2
    assert serial.unpackb(results[0][2]) == (111, 7)
    assert serial.unpackb(results[1][2]) == (121, 9)

    # Iterated keyword arguments; numpy in, numpy out; Python-only values (sets) come back.
    def f(a, scale=1, tag=None):
        return a * scale, {tag}

    common = python_job(f, iter_args=[0], iter_kwargs=["tag"], kwargs={"scale": 2})
    results, _ = client.run("acme.python", [python_task(0, [np.ones(3)], ["x"])],
                            common=common)
    value, tags = serial.unpackb(results[0][2])
    np.testing.assert_array_equal(value, [2, 2, 2])
    assert tags == {"x"}

    # An exception fails the task with the remote traceback.
    def divide(x):
        return 1 / x

    results, done = client.run("acme.python", [python_task(0, [0]), python_task(1, [4])],
                               common=python_job(divide, iter_args=[0]))
    assert done == {"job": client.job, "ok": 1, "failed": 1, "cancelled": False}
    assert results[0][0] == P.FAILED
    error = error_of(results[0][2])
    assert error["kind"] == "ZeroDivisionError"
    assert error["message"] == "ZeroDivisionError: division by zero"
    assert "in divide" in error["traceback"] and "return 1 / x" in error["traceback"]
    assert "acme/worker.py" not in error["traceback"]
    assert serial.unpackb(results[1][2]) == 0.25

    # A function named by module:qualname is imported by the worker.
    common = serial.packb({"fn": "acmetestfns:power", "name": "power", "args": [None],
                           "kwargs": {"p": 3}, "iter_args": [0], "iter_kwargs": [],
                           "taskid": False, "write": None})
    results, _ = client.run("acme.python", [python_task(0, [2])], common=common)
    assert serial.unpackb(results[0][2]) == 8


def test_unloadable_function_and_unsendable_result_say_why(broker, client, start_worker,
                                                              tmp_path, monkeypatch):
    start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 1)

    # A function of a module only this process can import: pickled by reference, the worker
    # cannot load it; every task gets the same short message (the traceback does not grow).
    (tmp_path / "onlyhere").mkdir()
    (tmp_path / "onlyhere" / "latemod_w.py").write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path / "onlyhere"))
    import latemod_w
    results, done = client.run("acme.python", [python_task(i, [i]) for i in range(20)],
                               common=python_job(latemod_w.f, iter_args=[0]))
    assert done["failed"] == 20
    errors = [error_of(results[i][2]) for i in range(20)]
    message = errors[0]["message"]
    assert message.startswith("could not load the map's function 'f' on worker "), message
    assert "ModuleNotFoundError: No module named 'latemod_w'" in message
    assert "the workers import it by module name" in message and "__main__" in message
    assert errors[0]["kind"] == "ModuleNotFoundError"
    assert len({(e["message"], e["traceback"]) for e in errors}) == 1  # the same, not growing
    assert len(errors[-1]["traceback"]) < 200

    # A return value that cannot be pickled: which function, what type, which input, why.
    def lock_of(x):
        import threading
        return threading.Lock()

    results, done = client.run("acme.python", [python_task(3, [3])],
                               common=python_job(lock_of, iter_args=[0]))
    error = error_of(results[0][2])
    assert error["message"] == ("lock_of() returned a _thread.lock for input 3, which cannot be "
                                "sent back: TypeError: cannot pickle '_thread.lock' object"), error
    assert "msgpack" not in error["traceback"] and "serial.py" not in error["traceback"]


def test_gil_starvation_is_reported(start_broker, start_worker):
    broker = start_broker(200, 3)  # dead after 600 ms of silence
    proc = start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 1)

    def hold_gil(seconds):
        import ctypes
        ctypes.PyDLL(None).sleep(seconds)  # a C call that keeps the GIL
        return seconds

    c = RawClient(broker.endpoint)
    try:
        c.run("acme.python", [python_task(0, [2])], common=python_job(hold_gil, iter_args=[0]),
              deadline=4, max_retries=0)
    except AssertionError:
        pass  # whatever became of the task: the worker's log must say what happened
    finally:
        c.close()
    deadline = time.monotonic() + 10
    while "held the GIL" not in worker_log(proc) and time.monotonic() < deadline:
        time.sleep(0.1)
    text = worker_log(proc)
    assert "task 0 of hold_gil() held the GIL for " in text, text
    assert "release the GIL in long C calls" in text


def test_timeout_stops_python_code_and_recycles_when_stuck(broker, client, start_worker):
    worker = start_worker(broker.endpoint, "--recycle-after-ms", "300")
    first = wait_for_workers(broker.endpoint, 1)["workers"][0]

    # A pure-Python loop is stopped by the exception raised in its thread: no recycling, and
    # the single slot is free again for the next job.
    def spin(x):
        while True:
            x += 1

    results, _ = client.run("acme.python", [python_task(0, [0])],
                            common=python_job(spin, iter_args=[0]), timeout_ms=300)
    assert results[0][0] == P.TIMED_OUT
    error = error_of(results[0][2])
    assert error["kind"] == "TimedOut" and "timeout of 300 ms" in error["message"]
    assert client.values("echo", [[1]], deadline=5) == [1]
    assert query_status(broker.endpoint)["workers"][0]["id"] == first["id"]

    # time.sleep in C cannot be interrupted: the task is stuck, the worker says BYE and
    # re-executes itself (same pid), registers anew and serves again.
    def hang(x):
        import time
        time.sleep(60)

    results, _ = client.run("acme.python", [python_task(0, [0])],
                            common=python_job(hang, iter_args=[0]), timeout_ms=300)
    assert results[0][0] == P.TIMED_OUT

    def re_registered():
        workers = query_status(broker.endpoint)["workers"]
        return workers if len(workers) == 1 and workers[0]["id"] != first["id"] else None

    again = wait_until(re_registered, 15, "the recycled worker to register again")[0]
    assert again["pid"] == first["pid"] == worker.pid
    assert worker.poll() is None
    assert client.values("echo", [["back"]]) == ["back"]
    assert "recycling" in broker.log() or "stuck" in worker_log(worker)


def test_killed_worker_tasks_rerun_on_the_other(start_broker, start_worker):
    broker = start_broker(200, 3)  # a dead worker is noticed after 600 ms
    client = RawClient(broker.endpoint)
    start_worker(broker.endpoint)
    start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 2)
    killed = []

    def on_result(index, status, attempts, frame):
        if not killed:  # SIGKILL the worker that holds the most tasks now
            busiest = max(query_status(broker.endpoint)["workers"], key=lambda w: w["running"])
            assert busiest["running"] > 0
            os.kill(busiest["pid"], signal.SIGKILL)
            killed.append(busiest["pid"])

    results, done = client.run("sleep", [msgpack.packb([0.3])] * 6, on_result=on_result)
    assert killed and done["ok"] == 6
    assert all(status == P.OK for status, _, _ in results.values())
    assert max(attempts for _, attempts, _ in results.values()) == 2  # the victim's reran
    assert [w["pid"] for w in query_status(broker.endpoint)["workers"]] != killed


def test_slots_start_supervised_processes(start_broker, start_worker):
    broker = start_broker(200, 3)
    client = RawClient(broker.endpoint)
    supervisor = start_worker(broker.endpoint, "--slots", "2")
    workers = wait_for_workers(broker.endpoint, 2)["workers"]
    pids = {w["pid"] for w in workers}
    assert supervisor.pid not in pids and all(w["slots"] == 1 for w in workers)
    assert client.values("echo", [[i] for i in range(20)]) == list(range(20))

    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)

    def restarted():
        now = {w["pid"] for w in query_status(broker.endpoint)["workers"]}
        return now if len(now) == 2 and victim not in now else None

    now = wait_until(restarted, 15, "the killed worker process to be restarted")
    assert len(now - pids) == 1
    assert stop_process(supervisor, timeout=10) == 0
    wait_until(lambda: not query_status(broker.endpoint)["workers"], 10,
               "the supervised workers to leave")


def test_cpp_client_calls_a_python_function(broker, start_worker):
    if not os.access(MAP_EXE, os.X_OK):
        pytest.skip(f"no acme-map at {MAP_EXE} (set ACME_MAP_EXE)")
    start_worker(broker.endpoint, "--function", "square=acmetestfns:square")
    wait_for_workers(broker.endpoint, 1)
    out = subprocess.run([MAP_EXE, "--broker", broker.endpoint, "square", "3", "4", "1.5"],
                         capture_output=True, text=True, timeout=30, env=python_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["9", "16", "2.25"]


def test_heartbeats_flow_during_a_pure_python_busy_loop(start_broker, start_worker):
    broker = start_broker(200, 3)  # dead after 600 ms of silence
    start_worker(broker.endpoint)
    first = wait_for_workers(broker.endpoint, 1)["workers"][0]

    def busy(seconds):
        import time
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += 1
        return n

    c = RawClient(broker.endpoint)
    results, done = c.run("acme.python", [python_task(0, [5.0])],
                          common=python_job(busy, iter_args=[0]), deadline=20)
    c.close()
    status, attempts, frame = results[0]
    assert status == P.OK and attempts == 1 and serial.unpackb(frame) > 0
    workers = query_status(broker.endpoint)["workers"]
    assert [w["id"] for w in workers] == [first["id"]], broker.log()


def test_launch_id_shows_in_status(broker, start_worker):
    start_worker(broker.endpoint, env={"ACME_LAUNCH_ID": "launch-7"})
    start_worker(broker.endpoint)
    wait_for_workers(broker.endpoint, 2)
    tagged = query_status(broker.endpoint, launch="launch-7")["workers"]
    assert [w["launch"] for w in tagged] == ["launch-7"]
    assert len(query_status(broker.endpoint, launch="")["workers"]) == 1


def test_missing_endpoint_is_a_usage_error(start_worker):
    proc = start_worker(None)
    assert proc.wait(15) == 2
    assert "--connect" in worker_log(proc) and "ACME_BROKER" in worker_log(proc)


def test_in_process_worker_api(broker, client):
    worker = Worker(broker.endpoint, functions={"twice": lambda x: 2 * x})
    codes = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()))
    thread.start()
    try:
        wait_for_workers(broker.endpoint, 1)
        assert client.values("twice", [[21], ["ab"]]) == [42, "abab"]
    finally:
        worker.stop()
        thread.join(10)
    assert codes == [0]


# ---- a fake broker, for what a real one never sends


class FakeBroker:
    def __init__(self, endpoint):
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.identity = None

    def recv(self, timeout=10.0, skip_heartbeats=True) -> P.Message:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, "no message from the worker in time"
            if not self.sock.poll(left * 1000):
                continue
            identity, *frames = self.sock.recv_multipart()
            self.identity = identity
            message = P.decode(frames, expect_from=b"W")
            if skip_heartbeats and message.command == P.HEARTBEAT:
                continue
            return message

    def send(self, command, header, payload=(), signature=P.SIG_BROKER):
        self.sock.send_multipart([self.identity, *P.encode(signature, command, header,
                                                          payload)])

    def send_raw(self, *frames):
        self.sock.send_multipart([self.identity, *frames])


def test_worker_protocol_against_a_fake_broker(ipc_endpoint, start_worker):
    fake = FakeBroker(ipc_endpoint)
    worker = start_worker(ipc_endpoint, "--prefetch", "3")
    ready = fake.recv()
    assert ready.command == P.READY
    h = ready.header
    assert set(h["functions"]) >= {"echo", "sleep", "fail", "crash", "acme.python"}
    assert h["slots"] == 1 and h["prefetch"] == 3 and h["pid"] == worker.pid
    assert h["agent"].startswith("acme-python-worker ") and h["launch"] == ""
    fake.send(P.WELCOME, {"worker": 1, "heartbeat_ms": 1000, "liveness": 3})

    # Garbage and other versions are dropped; the worker carries on.
    fake.send_raw(b"ACMEB1", b"\x0b", b"\xc1")
    fake.send_raw(b"ACMEB2", b"\x0b", msgpack.packb({"job": 1}))
    fake.send_raw(b"nonsense")
    fake.send(P.RESULTS, {"job": 1, "results": [[0, 0, 1]]}, [b"\x01"])  # not for workers

    # Unknown function: unsupported; too many cores: failed; echo: ok.
    fake.send(P.TASKS, {"job": 5, "function": "nope", "tasks": [[0, 1], [1, 1]]},
              [b"\x91\x01", b"\x91\x02"])
    message = fake.recv()
    assert message.command == P.RESULTS
    assert message.header["results"] == [[5, 0, P.UNSUPPORTED], [5, 1, P.UNSUPPORTED]]
    assert error_of(message.payload[0])["kind"] == "Unsupported"
    fake.send(P.TASKS, {"job": 6, "function": "echo", "cores": 2, "tasks": [[0, 1]]},
              [b"\x91\x01"])
    message = fake.recv()
    assert message.header["results"] == [[6, 0, P.FAILED]]
    assert "needs 2 cores per task but this worker has 1 slots" in \
        error_of(message.payload[0])["message"]

    # CANCEL with indices: the running sleep is abandoned (no result ever), the queued echo
    # 1 dropped, echo 2 runs; FIFO start: echo 2 could only start once the sleep stopped.
    fake.send(P.TASKS, {"job": 7, "function": "sleep", "tasks": [[0, 1]]}, [b"\x91\x05"])
    fake.send(P.TASKS, {"job": 8, "function": "echo", "tasks": [[1, 1], [2, 1]]},
              [b"\x91\xa1a", b"\x91\xa1b"])
    # (echo 1 is dropped first: once the sleep stops, the task thread starts the next task at
    # once, so a CANCEL after the sleep's could come too late for it.)
    fake.send(P.CANCEL, {"job": 8, "tasks": [1]})
    fake.send(P.CANCEL, {"job": 7, "tasks": [0]})
    message = fake.recv()
    assert message.header["results"] == [[8, 2, P.OK]] and message.payload == [b"\xa1b"]

    # The common frame stays until CANCEL with no tasks.
    common = msgpack.packb({"ignored": 1})
    fake.send(P.TASKS, {"job": 9, "function": "echo", "common": True, "tasks": [[0, 1]]},
              [common, b"\x91\x00"])
    assert fake.recv().header["results"] == [[9, 0, P.OK]]
    fake.send(P.CANCEL, {"job": 9})

    # BYE reconnect true: READY again at once; BYE reconnect false: exit 0.
    fake.send(P.BYE, {"reason": "who are you", "reconnect": True})
    assert fake.recv().command == P.READY
    fake.send(P.WELCOME, {"worker": 2, "heartbeat_ms": 1000, "liveness": 3})
    fake.send(P.BYE, {"reason": "stopping", "reconnect": False})
    assert worker.wait(10) == 0
    assert "said bye: stopping" in worker_log(worker)
    assert "dropped a message" in worker_log(worker)
    fake.sock.close(0)


def test_a_large_result_leaves_before_the_next_task_can_crash_the_worker(ipc_endpoint,
                                                                         start_worker):
    """A 4 MiB result, then a task that aborts at once: the result must be written before the
    next task starts (else it dies with the process, and the broker blames and reruns the
    finished task); the crash leaves the Python stack in the log."""
    fake = FakeBroker(ipc_endpoint)
    worker = start_worker(ipc_endpoint, "--prefetch", "2")
    assert fake.recv().command == P.READY
    fake.send(P.WELCOME, {"worker": 1, "heartbeat_ms": 1000, "liveness": 3})
    big = bytes(range(256)) * (4 * 4096)
    fake.send(P.TASKS, {"job": 1, "function": "echo", "tasks": [[0, 1]]}, [msgpack.packb([big])])
    fake.send(P.TASKS, {"job": 2, "function": "crash", "tasks": [[0, 1]]}, [b"\x90"])
    assert worker.wait(20) is not None and worker.returncode != 0
    message = fake.recv()
    assert message.command == P.RESULTS and message.header["results"] == [[1, 0, P.OK]]
    assert message.payload == [msgpack.packb(big)]
    assert "Fatal Python error: Aborted" in worker_log(worker)
    fake.sock.close(0)


def test_crash_reports_go_to_the_crash_dir_and_the_supervisors_log(ipc_endpoint, start_worker,
                                                                    tmp_path):
    """With ACME_CRASH_DIR, a worker process that crashes leaves crash-<pid>.log there (what
    LocalCluster reads for ParallelMap's error) and its supervisor logs it; a directory it
    cannot write to is a warning, not a reason to stop serving."""
    from acme.worker import read_crash_report
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    fake = FakeBroker(ipc_endpoint)
    supervisor = start_worker(ipc_endpoint, "--slots", "1", "--supervise",
                              env={"ACME_CRASH_DIR": str(crash_dir)})
    ready = fake.recv()
    fake.send(P.WELCOME, {"worker": 1, "heartbeat_ms": 1000, "liveness": 3})
    fake.send(P.TASKS, {"job": 1, "function": "crash", "tasks": [[0, 1]]}, [b"\x90"])
    deadline = time.monotonic() + 20
    while "died (signal" not in worker_log(supervisor):
        assert time.monotonic() < deadline, worker_log(supervisor)
        time.sleep(0.05)
    report = read_crash_report(str(crash_dir), ready.header["pid"])
    assert "Fatal Python error: Aborted" in report and "in _crash" in report, report
    assert "in _crash" in worker_log(supervisor)
    assert read_crash_report(str(crash_dir), 1) == "" and read_crash_report("/nope", "x") == ""

    other = start_worker(None, "--connect", ipc_endpoint,
                         env={"ACME_CRASH_DIR": str(tmp_path / "missing")})
    deadline = time.monotonic() + 20
    while "cannot write crash reports to" not in worker_log(other):
        assert other.poll() is None and time.monotonic() < deadline, worker_log(other)
        time.sleep(0.05)
    fake.sock.close(0)


def test_worker_reconnects_when_the_broker_is_silent(ipc_endpoint, start_worker):
    fake = FakeBroker(ipc_endpoint)
    start_worker(ipc_endpoint)
    assert fake.recv().command == P.READY
    fake.send(P.WELCOME, {"worker": 1, "heartbeat_ms": 100, "liveness": 2})
    fake.send(P.TASKS, {"job": 1, "function": "sleep", "tasks": [[0, 1]]}, [b"\x91\x05"])
    # Silent for 200 ms: the worker abandons the sleep and sends READY on a new socket.
    again = fake.recv(timeout=10)
    assert again.command == P.READY
    assert fake.identity is not None
    fake.send(P.WELCOME, {"worker": 2, "heartbeat_ms": 1000, "liveness": 3})
    fake.send(P.TASKS, {"job": 2, "function": "echo", "tasks": [[0, 1]]}, [b"\x91\x03"])
    message = fake.recv()
    assert message.header["results"] == [[2, 0, P.OK]]  # never the abandoned sleep's
    fake.sock.close(0)
