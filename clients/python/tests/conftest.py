"""Generic fixtures for the acme Python tests: the C++ binaries, private ipc endpoints, a real
acme-broker, and bounded waits on the broker's STATUS.

Every wait here has a deadline; nothing sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # clients/python: holds acme/
sys.path.insert(0, str(PACKAGE_DIR))

# This repository's dev build, unless ctest (or you) set ACME_*_EXE.
_DEFAULT_BIN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "build", "dev"))
BROKER_EXE = os.environ.get("ACME_BROKER_EXE", f"{_DEFAULT_BIN}/broker/acme-broker")
WORKER_EXE = os.environ.get("ACME_WORKER_EXE", f"{_DEFAULT_BIN}/worker/acme-worker")
MAP_EXE = os.environ.get("ACME_MAP_EXE", f"{_DEFAULT_BIN}/libclient/acme-map")
LAUNCH_EXE = os.environ.get("ACME_LAUNCH_EXE", f"{_DEFAULT_BIN}/launchers/acme-launch")


def python_env(**extra: str) -> dict:
    """The environment for child Python processes: this package first on PYTHONPATH, no
    broker configured from the outside (ACME_BROKER, ACME_LAUNCH_ID ...) unless given."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACME_BROKER", "ACME_WORKER_OF", "ACME_LAUNCH_ID", "ACME_WORKER_SLOTS")}
    paths = [str(PACKAGE_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Polls `predicate` until it returns a truthy value (returned) or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def query_status(endpoint: str, launch: str | None = None, timeout: float = 5.0) -> dict:
    """One STATUS request (PROTOCOL.md §6.1.5) on a fresh DEALER; the reply's header."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        header = {} if launch is None else {"launch": launch}
        sock.send_multipart([b"ACMEC1", b"\x0c", msgpack.packb(header)])
        if not sock.poll(timeout * 1000):
            raise AssertionError(f"no STATUS reply from {endpoint} within {timeout} s")
        frames = sock.recv_multipart()
        assert frames[1] == b"\x0c", f"expected STATUS, got command {frames[1]!r}"
        return msgpack.unpackb(frames[2], raw=False)
    finally:
        sock.close(0)


def wait_for_workers(endpoint: str, count: int, timeout: float = 15.0,
                     launch: str | None = None, exact: bool = True) -> dict:
    """Waits until the broker lists `count` workers (at least `count` if not `exact`);
    returns that STATUS."""
    def ready():
        status = query_status(endpoint, launch=launch)
        n = len(status["workers"])
        return status if (n == count if exact else n >= count) else None
    return wait_until(ready, timeout, f"{count} workers registered at {endpoint}", 0.05)


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


@pytest.fixture
def ipc_dir():
    """A short private directory for ipc:// sockets (their paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="acme-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ipc_endpoint(ipc_dir):
    """A fresh ipc:// endpoint nobody binds yet."""
    return f"ipc://{ipc_dir}/broker"


class Broker:
    """A running acme-broker process."""

    def __init__(self, endpoint: str, proc: subprocess.Popen, log_path: str):
        self.endpoint = endpoint
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        return stop_process(self.proc)


@pytest.fixture
def start_broker(ipc_dir):
    """A factory: start_broker(heartbeat_ms=None, liveness=None, *extra_args) -> Broker, bound
    to a private ipc endpoint; it answers STATUS before the factory returns. Stopped at the
    end of the test."""
    brokers: list[Broker] = []

    def start(heartbeat_ms: int | None = None, liveness: int | None = None,
              *extra: str) -> Broker:
        if not os.access(BROKER_EXE, os.X_OK):
            pytest.skip(f"no acme-broker at {BROKER_EXE} (set ACME_BROKER_EXE)")
        endpoint = f"ipc://{ipc_dir}/broker{len(brokers) or ''}"
        args = [BROKER_EXE, "--bind", endpoint, "--log-level", "info"]
        if heartbeat_ms is not None:
            args += ["--heartbeat-ms", str(heartbeat_ms)]
        if liveness is not None:
            args += ["--liveness", str(liveness)]
        args += list(extra)
        log_path = f"{ipc_dir}/broker{len(brokers)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        broker = Broker(endpoint, proc, log_path)
        brokers.append(broker)
        wait_until(lambda: proc.poll() is not None or query_status(endpoint, timeout=2),
                   10, f"acme-broker to answer STATUS at {endpoint}")
        assert proc.poll() is None, f"acme-broker exited: {broker.log()}"
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(start_broker):
    """An acme-broker with default options."""
    return start_broker()
