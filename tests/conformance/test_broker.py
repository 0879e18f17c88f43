"""Broker dialogs (PROTOCOL.md §6.1, §6.4, §9, §11, §12): the suite plays clients and workers
against an implementation's broker command (optional in implementations.py)."""

from __future__ import annotations

import re
import socket
import time

import pytest
import zmq

import implementations
import wire
from harness import Child
from wire import pack, unpack

HEARTBEAT_MS = 200


class Peer:
    """A DEALER playing a client ("C") or a worker ("W") against the broker under test."""

    def __init__(self, b, letter: str):
        self.b, self.letter = b, letter
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(b.endpoint)

    def send(self, command, header=None, payload=(), version=1):
        self.sock.send_multipart(wire.encode(self.letter, command, header, payload, version))

    def send_raw(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout: float, skip_heartbeats=True):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return None
            frames = self.sock.recv_multipart()
            try:
                m = wire.decode(frames, sender="B", receiver=self.letter)
            except wire.Violation as v:
                self.b.fail(f"sent a message that breaks {v}")
            if skip_heartbeats and m.command == wire.HEARTBEAT:
                continue
            return m

    def expect(self, command, what, timeout=5.0) -> wire.Message:
        m = self.recv(timeout)
        if m is None or m.command != command:
            self.b.fail(f"expected {what}, got {m.name + ' ' + str(m.header) if m else 'nothing'} "
                        f"within {timeout:.0f} s")
        return m

    def close(self):
        self.sock.close(0)


class BrokerUnderTest:
    def __init__(self, impl, tmp_path):
        self.name = impl["name"]
        with socket.socket() as s:  # a free port (the broker binds it right after)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"tcp://127.0.0.1:{port}"
        argv = implementations.expand(impl["broker"], endpoint=self.endpoint,
                                      heartbeat_ms=HEARTBEAT_MS)
        self.child = Child(argv, implementations.environment(impl), tmp_path, "broker")
        self.peers: list[Peer] = []
        probe = self.peer("C")  # STATUS needs no session (§6.1.5): wait until it answers
        deadline = time.monotonic() + 10
        while True:
            probe.send(wire.STATUS)
            if probe.recv(0.5) is not None:
                break
            if time.monotonic() > deadline or not self.child.alive():
                self.fail("did not answer STATUS within 10 s of starting")

    def peer(self, letter):
        p = Peer(self, letter)
        self.peers.append(p)
        return p

    def fail(self, text):
        raise AssertionError(f"[{self.name} broker] {text}\n{self.child.describe()}")

    def close(self):
        for p in self.peers:
            p.close()
        self.child.stop()


@pytest.fixture
def broker(impl, tmp_path):
    if not impl.get("broker"):
        pytest.skip(f"implementation {impl['name']!r} has no broker command "
                    f"(tests/conformance/implementations.py)")
    gone = implementations.missing(impl, "broker")
    if gone:
        pytest.skip(f"implementation {impl['name']!r}: broker not available ({', '.join(gone)})")
    b = BrokerUnderTest(impl, tmp_path)
    yield b
    b.close()


def test_client_version_mismatch(broker):
    """§12: another version from a client gets ERROR version-mismatch (2) naming both versions,
    in the broker's own version."""
    c = broker.peer("C")
    c.send(wire.SUBMIT, {"job": 1, "function": "echo", "total": 1, "first": 0, "count": 1},
           [pack([1])], version=2)
    m = c.expect(wire.ERROR, "ERROR version-mismatch")
    if m.header["code"] != wire.VERSION_MISMATCH:
        broker.fail(f"ERROR code {m.header['code']} for a version 2 client, §12 says 2")
    if not (re.search(r"\b2\b", m.header["message"]) and re.search(r"\b1\b", m.header["message"])):
        broker.fail(f"version-mismatch message {m.header['message']!r} does not name both versions")


def test_worker_version_mismatch(broker):
    """§11, §12: a worker of another version gets BYE reconnect false with a reason."""
    w = broker.peer("W")
    w.send(wire.READY, {"functions": ["echo"], "slots": 1}, version=2)
    m = w.expect(wire.BYE, "BYE reconnect false")
    if m.header.get("reconnect") is not False and m.header.get("reconnect") is not None:
        broker.fail(f"BYE {m.header} to a version 2 worker: §12 says reconnect false")
    if not m.header.get("reason"):
        broker.fail("BYE to a version 2 worker gives no reason (§11)")


def test_malformed_client_messages_get_errors(broker):
    """§11: client rejections get ERROR with the code of the table; the broker carries on."""
    c = broker.peer("C")
    cases = [
        ("header not a map", [b"ACMEC1", bytes([wire.SUBMIT]), pack([1, 2])], wire.MALFORMED),
        ("unknown command byte", [b"ACMEC1", b"\x42", pack({})], wire.UNKNOWN_COMMAND),
        ("command a client may not send (READY)",
         [b"ACMEC1", bytes([wire.READY]), pack({"functions": ["x"], "slots": 1})],
         wire.UNKNOWN_COMMAND),
        ("SUBMIT without function", wire.encode("C", wire.SUBMIT, {"job": 1, "total": 1,
                                                                   "first": 0, "count": 1},
                                                [pack([1])]), wire.MALFORMED),
        ("SUBMIT first > 0 for no open job",
         wire.encode("C", wire.SUBMIT, {"job": 5, "function": "echo", "total": 3, "first": 1,
                                        "count": 1}, [pack([1])]), wire.BAD_REQUEST),
        ("CANCEL of a job that is not open", wire.encode("C", wire.CANCEL, {"job": 6}),
         wire.BAD_REQUEST),
    ]
    for name, frames, code in cases:
        c.send_raw(frames)
        m = c.recv(5.0)
        if m is None or m.command != wire.ERROR or m.header["code"] != code:
            broker.fail(f"{name}: expected ERROR code {code} (§11), got "
                        f"{m.name + ' ' + str(m.header) if m else 'nothing'}")


def test_status_without_session(broker):
    """§6.1.5: STATUS from a fresh DEALER is answered and starts no session."""
    c = broker.peer("C")
    c.send(wire.STATUS)
    m = c.expect(wire.STATUS, "STATUS")
    if m.header["clients"] != 0:
        broker.fail(f"STATUS counts {m.header['clients']} clients with only STATUS senders")
    silence = c.recv(3 * HEARTBEAT_MS / 1000, skip_heartbeats=False)
    if silence is not None:
        broker.fail(f"sent {silence.name} to a STATUS-only peer (§6.1.5: no heartbeats)")


def test_unknown_client_heartbeat_gets_bye(broker):
    """§9: HEARTBEAT from an unknown client identity gets BYE reconnect true."""
    c = broker.peer("C")
    c.send(wire.HEARTBEAT)
    m = c.expect(wire.BYE, "BYE reconnect true")
    if m.header.get("reconnect") is not True:
        broker.fail(f"BYE {m.header} to an unknown client: §9 says reconnect true")


def test_job_through_broker(broker):
    """§7.3: a worker registers, a client's job flows SUBMIT -> ACCEPT -> TASKS -> RESULTS ->
    RESULTS -> DONE, and the worker gets CANCEL with empty tasks when the job closes (§6.4.3)."""
    w = broker.peer("W")
    w.send(wire.READY, {"functions": ["echo"], "slots": 1, "prefetch": 1, "host": "conf",
                        "pid": 1, "agent": "acme conformance suite"})
    welcome = w.expect(wire.WELCOME, "WELCOME")
    if not 1 <= welcome.header["liveness"] or welcome.header["heartbeat_ms"] != HEARTBEAT_MS:
        broker.fail(f"WELCOME {welcome.header}: heartbeat_ms should be the configured "
                    f"{HEARTBEAT_MS} (§9)")
    c = broker.peer("C")
    c.send(wire.SUBMIT, {"job": 7, "function": "echo", "total": 2, "first": 0, "count": 2},
           [pack([3]), pack([4])])
    acc = c.expect(wire.ACCEPT, "ACCEPT")
    if acc.header["job"] != 7 or acc.header["received"] != 2:
        broker.fail(f"ACCEPT {acc.header}: expected job 7 received 2 (§6.2.1)")
    got = []
    while len(got) < 2:
        t = w.expect(wire.TASKS, "TASKS (2 credits: slots 1 + prefetch 1)")
        if t.header["function"] != "echo":
            broker.fail(f"TASKS {t.header}")
        got += [(e[0], f) for e, f in zip(t.header["tasks"], t.payload)]
        bjob = t.header["job"]
    for index, frame in got:
        w.send(wire.RESULTS, {"results": [[bjob, index, wire.OK]]}, [pack(unpack(frame)[0])])
    values, done = {}, None
    while done is None:
        m = c.recv(5.0)
        if m is None:
            broker.fail(f"no DONE within 5 s (results so far {values})")
        if m.command == wire.RESULTS:
            for (i, status, attempts), f in zip(m.header["results"], m.payload):
                values[i] = unpack(f)
        elif m.command == wire.DONE:
            done = m
    if values != {0: 3, 1: 4} or done.header["ok"] != 2 or done.header["failed"] != 0:
        broker.fail(f"results {values}, DONE {done.header}: expected {{0: 3, 1: 4}}, ok 2")
    m = w.expect(wire.CANCEL, "CANCEL with empty tasks after the job closed (§6.4.3)")
    if m.header["job"] != bjob or m.header.get("tasks") not in (None, []):
        broker.fail(f"CANCEL {m.header} to the worker, expected job {bjob} with empty tasks")
