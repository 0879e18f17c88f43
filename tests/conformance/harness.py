"""The fake peers and the child processes of the suite.

`FakeBroker` binds a ROUTER and plays the broker against a worker or a client under test: it
decodes every message strictly (wire.decode), keeps heartbeating the peers it was told to (so
the peer under test does not declare it dead) unless told to go silent, and waits only until
deadlines. `Child` runs one implementation command with its output in files.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

import zmq

import wire

ROLE = {"W": "worker", "C": "client", "B": "broker"}


def _die_with_parent():  # preexec_fn: the child gets SIGKILL if pytest dies
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One process of an implementation, stdout and stderr in files under `directory`."""

    def __init__(self, argv: list[str], env: dict, directory: Path, name: str):
        self.argv, self.name = argv, name
        self._out = directory / f"{name}.stdout"
        self._err = directory / f"{name}.stderr"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.wait(3) is None:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def describe(self) -> str:
        err = self.stderr.strip()
        tail = "\n".join(err.splitlines()[-15:])
        return f"command: {' '.join(self.argv)}\nstderr (tail):\n{tail}" if tail else \
            f"command: {' '.join(self.argv)} (no stderr)"


class FakeBroker:
    """A ROUTER bound on 127.0.0.1 that plays the broker for `peer` ("W" or "C") of `impl`."""

    def __init__(self, impl: str, peer: str):
        self.impl, self.peer = impl, peer
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.heartbeat: dict[bytes, float] = {}   # identity -> interval (s) we heartbeat it at
        self.last_sent: dict[bytes, float] = {}
        self.silent = False                        # True: send no heartbeats (play dead)
        self.log: list[tuple[float, bytes, wire.Message]] = []  # everything received
        self._pending: deque = deque()
        self.child: Child | None = None           # for failure messages
        self.sessions: set[bytes] = set()          # client identities with a session (§9)

    def close(self):
        self.sock.close(0)

    # -- sending ---------------------------------------------------------------------------
    def send_raw(self, ident: bytes, frames: list[bytes]):
        self.sock.send_multipart([ident, *frames])
        self.last_sent[ident] = time.monotonic()

    def send(self, ident: bytes, command: int, header: dict | None = None, payload=(), **kw):
        self.send_raw(ident, wire.encode("B", command, header, payload, **kw))

    def keep_alive(self, ident: bytes, interval_ms: int):
        """Heartbeat `ident` every `interval_ms` while waiting (§9), so it keeps us alive."""
        self.heartbeat[ident] = interval_ms / 1000.0
        self.last_sent.setdefault(ident, time.monotonic())

    def _service(self):
        if self.silent:
            return
        now = time.monotonic()
        for ident, interval in self.heartbeat.items():
            if now - self.last_sent.get(ident, 0) >= interval:
                self.send(ident, wire.HEARTBEAT)

    # -- receiving -------------------------------------------------------------------------
    def _as_broker_would(self, ident: bytes, msg: wire.Message):
        """The answers §9 and §6.1.5 prescribe to a client the broker does not know: HEARTBEAT
        gets BYE reconnect true (acme-map probes the broker this way), STATUS gets STATUS."""
        if msg.command == wire.SUBMIT and msg.header["first"] == 0:
            self.sessions.add(ident)
        elif msg.command == wire.BYE:
            self.sessions.discard(ident)
        elif msg.command == wire.HEARTBEAT and ident not in self.sessions:
            self.send(ident, wire.BYE, {"reason": "unknown client", "reconnect": True})
        elif msg.command == wire.STATUS:
            self.send(ident, wire.STATUS, {"agent": "acme conformance suite", "uptime_ms": 1,
                                           "clients": len(self.sessions), "jobs": 0,
                                           "tasks_queued": 0, "tasks_running": 0,
                                           "tasks_done": 0, "tasks_failed": 0, "workers": []})

    def fail(self, text: str):
        where = f"\n{self.child.describe()}" if self.child else ""
        raise AssertionError(f"[{self.impl} {ROLE[self.peer]}] {text}{where}")

    def recv(self, timeout: float):
        """The next message from any peer as (time, identity, Message), or None after
        `timeout` seconds. A message that breaks the protocol fails the test."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            self._service()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            step = min(left, 0.01) if self.heartbeat and not self.silent else left
            if self.sock.poll(max(1, int(step * 1000)), zmq.POLLIN):
                ident, *frames = self.sock.recv_multipart()
                t = time.monotonic()
                try:
                    msg = wire.decode(frames, sender=self.peer, receiver="B")
                except wire.Violation as v:
                    self.fail(f"sent a message that breaks {v} (frames: {_show(frames)})")
                self.log.append((t, ident, msg))
                if self.peer == "C":
                    self._as_broker_would(ident, msg)
                return t, ident, msg

    def expect(self, what: str, match, timeout: float, *, keep=False):
        """The first message for which match(ident, msg) is true within `timeout` seconds.
        Others are dropped (kept for the next recv when keep=True). Fails naming `what`."""
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                got = self.recv(deadline - time.monotonic())
                if got is None:
                    seen = ", ".join(m.name for _, _, m in skipped[-12:]) or "nothing"
                    self.fail(f"expected {what} within {timeout:.1f} s; received instead: {seen}")
                t, ident, msg = got
                if match(ident, msg):
                    return got
                skipped.append(got)
        finally:
            if keep:
                self._pending.extend(s for s in skipped if s[2].command != wire.HEARTBEAT)

    def heartbeats(self, seconds: float, fail, ident: bytes | None = None) -> list:
        """Gathers for `seconds` and fails unless the peer sent only HEARTBEATs, at least 4 of
        them, with no silence over 350 ms (§9 with heartbeat_ms 100). Returns the HEARTBEATs."""
        t0 = time.monotonic()
        got = [g for g in self.gather(seconds) if ident is None or g[1] == ident]
        others = [m.name for _, _, m in got if m.command != wire.HEARTBEAT]
        if others:
            fail(f"sent {others} while it should only heartbeat (§9)")
        times = [t0] + [t for t, _, _ in got]
        gaps = [b - a for a, b in zip(times, times[1:])] + [time.monotonic() - times[-1]]
        if len(got) < 4 or max(gaps) > 0.35:
            fail(f"with heartbeat_ms 100 it sent {len(got)} HEARTBEATs in {seconds} s, longest "
                 f"silence {max(gaps) * 1000:.0f} ms (§9: one every interval)")
        return [m for _, _, m in got]

    def gather(self, seconds: float, match=lambda i, m: True):
        """All messages matching during `seconds` (bounded wait)."""
        deadline = time.monotonic() + seconds
        out = []
        while (got := self.recv(deadline - time.monotonic())) is not None:
            if match(got[1], got[2]):
                out.append(got)
        return out


def _show(frames, limit=6) -> str:
    shown = [bytes(f)[:40] for f in frames[:limit]]
    return repr(shown) + (" ..." if len(frames) > limit else "")


def cmd(command: int):
    """A match function for expect(): messages with this command."""
    return lambda ident, msg: msg.command == command
