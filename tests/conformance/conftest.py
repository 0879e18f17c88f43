"""Fixtures of the conformance suite: one parameter per implementation (implementations.py,
narrowed by ACME_CONFORMANCE_IMPL or --impl), fake brokers, and the processes under test."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import implementations  # noqa: E402
import wire  # noqa: E402
from harness import Child, FakeBroker  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--impl", default=None,
                     help="implementations to check, comma-separated (default: "
                          "$ACME_CONFORMANCE_IMPL, else all of implementations.py)")


def pytest_configure(config):
    if config.getoption("--impl"):
        os.environ["ACME_CONFORMANCE_IMPL"] = config.getoption("--impl")


def pytest_generate_tests(metafunc):
    if "impl" in metafunc.fixturenames:
        impls = implementations.selected()
        metafunc.parametrize("impl", impls, ids=[i["name"] for i in impls])


def _require(impl: dict, role: str):
    if not impl.get(role):
        pytest.skip(f"implementation {impl['name']!r} has no {role} command "
                    f"(tests/conformance/implementations.py)")
    gone = implementations.missing(impl, role)
    if gone:
        pytest.skip(f"implementation {impl['name']!r}: {role} not available yet ({', '.join(gone)} "
                    f"missing)")


class WorkerUnderTest:
    """A worker process of one implementation connected to a FakeBroker, and the steps of the
    worker dialogs (§7.2)."""

    def __init__(self, impl: dict, tmp_path: Path, slots: int):
        self.impl, self.slots = impl, slots
        self.name = impl["name"]
        self.broker = FakeBroker(self.name, "W")
        self.argv = implementations.expand(impl["worker"], endpoint=self.broker.endpoint,
                                           slots=slots)
        self.child = Child(self.argv, implementations.environment(impl), tmp_path, "worker")
        self.broker.child = self.child
        self.ident: bytes | None = None
        self.ready_msg: wire.Message | None = None

    def fail(self, text: str):
        self.broker.fail(text)

    def ready(self, timeout: float = 10.0):
        """Waits for READY (§6.3.1); returns the sender's identity."""
        _, ident, msg = self.broker.expect("READY (§6.3.1)", lambda i, m: m.command == wire.READY,
                                           timeout)
        self.ident, self.ready_msg = ident, msg
        return ident

    def welcome(self, heartbeat_ms: int = 100, liveness: int = 10, worker_id: int = 1,
                keep_alive: bool = True):
        self.broker.send(self.ident, wire.WELCOME,
                         {"worker": worker_id, "heartbeat_ms": heartbeat_ms, "liveness": liveness})
        if keep_alive:
            self.broker.keep_alive(self.ident, heartbeat_ms)

    def register(self, heartbeat_ms: int = 100, liveness: int = 10):
        self.ready()
        self.welcome(heartbeat_ms, liveness)
        return self.ident

    def tasks(self, job: int, function: str, entries: list, payload: list, **options):
        header = {"job": job, "function": function, "tasks": entries, **options}
        self.broker.send(self.ident, wire.TASKS, header, payload)

    def cancel(self, job: int, tasks: list | None = None):
        header = {"job": job} if tasks is None else {"job": job, "tasks": tasks}
        self.broker.send(self.ident, wire.CANCEL, header)

    def results(self, count: int, timeout: float, what: str = "RESULTS"):
        """`count` results as a list of (time, job, index, status, payload frame)."""
        out = []
        end = time.monotonic() + timeout
        while len(out) < count:
            left = end - time.monotonic()
            got = self.broker.recv(max(0.0, left))
            if got is None:
                self.fail(f"expected {count} results ({what}) within {timeout:.1f} s, got "
                          f"{[(j, i, s) for _, j, i, s, _ in out]}")
            t, ident, msg = got
            if msg.command == wire.READY:
                self.fail(f"sent READY again (a new registration) while {what} was awaited")
            if msg.command == wire.BYE:
                self.fail(f"sent BYE {msg.header} while {what} was awaited")
            if msg.command != wire.RESULTS:
                continue
            for (job, index, status), frame in zip(msg.header["results"], msg.payload):
                out.append((t, job, index, status, frame))
        return out

    def close(self):
        self.child.stop()
        self.broker.close()


@pytest.fixture
def worker(impl, tmp_path):
    """A factory: worker(slots=1) starts the implementation's worker against a fake broker."""
    _require(impl, "worker")
    started = []

    def start(slots: int = 1) -> WorkerUnderTest:
        d = tmp_path / f"w{len(started)}"
        d.mkdir()
        w = WorkerUnderTest(impl, d, slots)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


class ClientUnderTest:
    """The client driver of one implementation (README.md) running one job against a
    FakeBroker."""

    def __init__(self, impl: dict, tmp_path: Path, function: str, args: list[str]):
        self.impl, self.name, self.function, self.args = impl, impl["name"], function, args
        self.broker = FakeBroker(self.name, "C")
        self.argv = implementations.expand(impl["client"], endpoint=self.broker.endpoint,
                                           function=function, args=args)
        self.child = Child(self.argv, implementations.environment(impl), tmp_path, "client")
        self.broker.child = self.child

    def fail(self, text: str):
        self.broker.fail(text)

    def close(self):
        self.child.stop()
        self.broker.close()


@pytest.fixture
def client(impl, tmp_path):
    """A factory: client(function, args) starts the implementation's client driver."""
    _require(impl, "client")
    started = []

    def start(function: str, args: list) -> ClientUnderTest:
        d = tmp_path / f"c{len(started)}"
        d.mkdir()
        c = ClientUnderTest(impl, d, function, [str(a) for a in args])
        started.append(c)
        return c

    yield start
    for c in started:
        c.close()
