"""Client dialogs (PROTOCOL.md §6.1, §6.2, §7.1, §9, §11): the suite plays the broker for the
implementation's client driver (README.md: runs one job, prints JSON lines in input order).

Every message the client sends is decoded strictly (wire.decode), so any test also fails when
the client breaks framing or a field table on the way.
"""

from __future__ import annotations

import json
import time

import wire
from wire import pack, unpack

EXIT_BOUND = 5.0  # seconds a client gets to exit once its job has ended


def _arg_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


class Window:
    """§6.2.1: usable window = the latest ACCEPT's window minus the counts of the SUBMITs sent
    after the one it answered (1024 before the first ACCEPT). The client may not have seen our
    newest ACCEPT yet, so a SUBMIT is legal if it fits any ACCEPT we sent."""

    def __init__(self):
        self.sent = 0                    # tasks received in SUBMITs so far
        self.accepts = [(0, 1024)]       # (tasks received when the ACCEPT was sent, window)

    def fits(self, count: int) -> bool:
        self.sent += count
        return any(self.sent - base <= window for base, window in self.accepts)

    def accepted(self, window: int):
        self.accepts.append((self.sent, window))


class Session:
    """One job of the client under test, seen from the broker's side."""

    def __init__(self, c, heartbeat_ms: int = 200, keep_alive: bool = True):
        self.c, self.heartbeat_ms, self.keep_alive = c, heartbeat_ms, keep_alive
        self.ident = self.job = None
        self.tasks: list[bytes] = []
        self.window = Window()
        self.total = len(c.args)
        self.counts: list[int] = []      # count of each SUBMIT, in order

    def fail(self, text):
        self.c.fail(text)

    def read_submit(self, timeout: float = 10.0) -> wire.Message:
        """The next SUBMIT (heartbeats skipped), checked against §6.1.1 and the window."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.c.broker.recv(deadline - time.monotonic())
            if got is None:
                self.fail(f"expected a SUBMIT within {timeout:.1f} s (have {len(self.tasks)} of "
                          f"{self.total} tasks)")
            _, ident, m = got
            if m.command == wire.HEARTBEAT:
                continue
            if m.command != wire.SUBMIT:
                self.fail(f"sent {m.name} {m.header} while the job was being submitted")
            break
        h = m.header
        if self.ident is None:
            self.ident, self.job = ident, h["job"]
            if h["first"] != 0:
                self.fail(f"first SUBMIT has first {h['first']}, §6.1.1 says 0")
        elif ident != self.ident:
            self.fail("a later SUBMIT came from another routing identity (§4: one socket, one peer)")
        elif h["job"] != self.job:
            self.fail(f"later SUBMIT names job {h['job']}, the job is {self.job}")
        if h["function"] != self.c.function:
            self.fail(f"SUBMIT function {h['function']!r}, the driver was asked for "
                      f"{self.c.function!r}")
        if h["total"] != self.total:
            self.fail(f"SUBMIT total {h['total']} for {self.total} arguments (§6.1.1)")
        if h["first"] != len(self.tasks):
            self.fail(f"SUBMIT first {h['first']} but {len(self.tasks)} tasks were received "
                      f"(§6.1.1: tasks in order, first == ACCEPT.received)")
        if not self.window.fits(h["count"]):
            self.fail(f"SUBMIT of {h['count']} tasks exceeds the window: {self.window.sent} sent, "
                      f"ACCEPTs so far (received, window) {self.window.accepts[1:]} (§6.2.1)")
        frames = m.payload[1:] if h.get("common") else m.payload
        if h.get("common"):
            try:
                unpack(m.payload[0])
            except Exception as e:
                self.fail(f"common frame is not one msgpack value ({e}) (§6.5)")
        for k, frame in enumerate(frames):
            index = h["first"] + k
            try:
                value = unpack(frame)
            except Exception as e:
                self.fail(f"task frame {index} is not one msgpack value ({e}) (§6.5)")
            if not isinstance(value, list):
                self.fail(f"task frame {index} is {value!r}, not an array of arguments (§6.5)")
            want = [_arg_value(self.c.args[index])]
            if value != want:
                self.fail(f"task frame {index} is {value!r}; README contract: [ARG {index}] = "
                          f"{want!r}")
        self.tasks.extend(frames)
        self.counts.append(h["count"])
        return m

    def accept(self, window: int):
        self.c.broker.send(self.ident, wire.ACCEPT, {"job": self.job, "received": len(self.tasks),
                                                     "window": window,
                                                     "heartbeat_ms": self.heartbeat_ms})
        self.window.accepted(window)
        if self.keep_alive:
            self.c.broker.keep_alive(self.ident, self.heartbeat_ms)

    def open(self, window: int = 1 << 20):
        """Reads SUBMITs, answering each with ACCEPT, until the whole job arrived."""
        while len(self.tasks) < self.total:
            self.read_submit()
            self.accept(window)

    def results(self, entries, attempts: int = 1):
        """entries: (index, status, payload frame)."""
        self.c.broker.send(self.ident, wire.RESULTS,
                           {"job": self.job, "results": [[i, s, attempts] for i, s, _ in entries]},
                           [f for _, _, f in entries])

    def echo_all(self, order=None, batch: int = 2):
        order = list(range(self.total)) if order is None else order
        for k in range(0, len(order), batch):
            self.results([(i, wire.OK, pack(_arg_value(self.c.args[i])))
                          for i in order[k:k + batch]])

    def done(self, ok: int, failed: int):
        self.c.broker.send(self.ident, wire.DONE, {"job": self.job, "ok": ok, "failed": failed})

    def exit_code(self, bound: float = EXIT_BOUND) -> int:
        rc = self.c.child.wait(bound)
        if rc is None:
            self.fail(f"still running {bound:.0f} s after its job ended (§9: a client MUST NOT hang)")
        return rc

    def lines(self) -> list[dict]:
        out = []
        for line in self.c.child.stdout.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                self.fail(f"stdout line {line!r} is not JSON (README driver contract)")
        return out

    def expect_success(self):
        rc = self.exit_code()
        lines = self.lines()
        want = [{"index": i, "ok": True, "value": _arg_value(a)} for i, a in enumerate(self.c.args)]
        if rc != 0 or lines != want:
            shown = lines if len(lines) < 12 else lines[:6] + ["..."] + lines[-3:]
            self.fail(f"exit {rc}, stdout {shown}; expected exit 0 and the {len(want)} values in "
                      f"input order (README contract)")


# --- tests -------------------------------------------------------------------------------------

def test_submit_well_formed_and_results_in_order(client):
    """§6.1.1 SUBMIT (first 0, count == frames, total, task frames are arrays); out-of-order
    RESULTS in several messages (§6.2.2), then DONE (§6.2.3): exit 0, values in input order."""
    c = client("echo", ["1", '"two"', "[3,4]", '{"k":5}', "plain text", "-6"])
    s = Session(c)
    s.open()
    s.echo_all(order=[4, 1, 5, 0, 3, 2], batch=2)
    s.done(ok=6, failed=0)
    s.expect_success()


def test_heartbeats_while_job_open(client):
    """§9: a client heartbeats every ACCEPT.heartbeat_ms while it has open jobs."""
    c = client("echo", ["1", "2"])
    s = Session(c, heartbeat_ms=100)
    s.open()
    c.broker.heartbeats(1.2, s.fail)
    s.echo_all()
    s.done(ok=2, failed=0)
    s.expect_success()


def test_window_respected_and_unsolicited_accept(client):
    """§6.2.1: the client never sends more than the window allows; after a window of 0 it
    waits, and an unsolicited ACCEPT with a bigger window lets it continue."""
    n = 1030
    c = client("echo", [str(i) for i in range(n)])
    s = Session(c)
    limit = 1027  # ACCEPT.window = limit - received: 3 left once 1024 arrived, then 0
    while len(s.tasks) < limit:
        s.read_submit()
        s.accept(max(0, limit - len(s.tasks)))
    if len(s.tasks) != limit:
        s.fail(f"received {len(s.tasks)} tasks, more than the window allowed ({limit})")
    extra = c.broker.gather(0.6, lambda i, m: m.command != wire.HEARTBEAT)
    if extra:
        s.fail(f"after ACCEPT window 0 it sent {[(m.name, m.header) for _, _, m in extra]} "
               f"(§6.2.1: no SUBMIT until the window opens)")
    c.broker.send(s.ident, wire.ACCEPT, {"job": s.job, "received": len(s.tasks), "window": 1024,
                                         "heartbeat_ms": s.heartbeat_ms})
    s.window.accepted(1024)
    while len(s.tasks) < n:
        s.read_submit(timeout=5.0)
        s.accept(1024 - (len(s.tasks) - limit))
    order = list(range(n))[::-1]
    s.echo_all(order=order, batch=200)
    s.done(ok=n, failed=0)
    s.expect_success()


def test_failed_results_are_reported(client):
    """§6.5: failed, timed-out and poisoned results come with error maps; the driver reports
    them (non-zero exit, the messages shown) and still prints the others in order."""
    c = client("echo", ["0", "1", "2", "3"])
    s = Session(c)
    s.open()
    errors = {1: ("conformance: task 1 failed on purpose", "ValueError", wire.FAILED),
              2: ("conformance: task 2 ran too long", "TimedOut", wire.TIMED_OUT),
              3: ("conformance: task 3 killed 3 workers", "Poisoned", wire.POISONED)}
    entries = [(0, wire.OK, pack(0))]
    for i, (message, kind, status) in errors.items():
        entries.append((i, status, pack({"message": message, "kind": kind, "host": "h",
                                         "pid": 4411, "unknown-key": [1]})))
    s.results(entries[2:])
    s.results(entries[:2], attempts=2)
    s.done(ok=1, failed=3)
    rc = s.exit_code()
    lines = s.lines()
    if rc == 0:
        s.fail("exit 0 although 3 tasks failed (README contract: non-zero)")
    if [ln.get("index") for ln in lines] != [0, 1, 2, 3] or lines[0] != {"index": 0, "ok": True,
                                                                         "value": 0}:
        s.fail(f"stdout {lines}: expected 4 lines in input order, line 0 ok")
    for i, (message, kind, _) in errors.items():
        if lines[i].get("ok") is not False or message not in str(lines[i].get("error")):
            s.fail(f"line {i} {lines[i]}: expected ok false with error {message!r}")
        if message not in c.child.stderr:
            s.fail(f"stderr does not show the failure message {message!r} (README contract)")


def test_no_such_function_error(client):
    """§6.2.4: ERROR no-such-function (5) closes the job, no DONE follows: non-zero exit and the
    broker's message (naming the function) reported."""
    fn = "conformance.no-such-function"
    c = client(fn, ["1", "2"])
    s = Session(c)
    s.open()
    c.broker.send(s.ident, wire.ERROR, {"code": wire.NO_SUCH_FUNCTION, "job": s.job,
                                        "message": f"no worker offers function '{fn}'"})
    rc = s.exit_code()
    if rc == 0:
        s.fail("exit 0 after ERROR no-such-function (README contract: non-zero)")
    if fn not in c.child.stderr:
        s.fail(f"stderr does not name the function {fn!r} after ERROR no-such-function")


def test_broker_bye_fails_job(client):
    """§6.2.6: BYE from the broker closes the open jobs without DONE; the client reports them
    failed quoting `reason`, and does not hang."""
    for reconnect in (False, True):
        c = client("echo", ["1"])
        s = Session(c)
        s.open()
        reason = f"conformance: broker says bye (reconnect {str(reconnect).lower()})"
        c.broker.send(s.ident, wire.BYE, {"reason": reason, "reconnect": reconnect})
        c.broker.heartbeat.clear()
        rc = s.exit_code()
        if rc == 0:
            s.fail(f"exit 0 after BYE reconnect {reconnect} with the job open")
        if reason not in c.child.stderr:
            s.fail(f"stderr does not quote the BYE reason {reason!r} (§6.2.6)")


def test_broker_silence_fails_job(client):
    """§9: a broker silent for 3 x heartbeat_ms is gone: the job fails with an error naming the
    broker address; the client MUST NOT hang."""
    c = client("echo", ["1"])
    s = Session(c, heartbeat_ms=200, keep_alive=False)
    s.open()
    t0 = time.monotonic()
    rc = s.exit_code(bound=5.0)
    took = time.monotonic() - t0
    if rc == 0:
        s.fail("exit 0 although the broker went silent with the job open")
    port = c.broker.endpoint.rsplit(":", 1)[1]
    if port not in c.child.stderr:
        s.fail(f"the error does not name the broker address {c.broker.endpoint} (§9)")
    if took < 0.4:
        s.fail(f"gave up after {took:.2f} s, before 3 x heartbeat_ms (600 ms) of silence (§9)")


def test_bad_broker_messages_are_dropped(client):
    """§11, §12: a client drops broker messages that fail to decode (other versions, garbage,
    malformed headers) and completes when the real answers follow."""
    c = client("echo", ["10", "11", "12"])
    s = Session(c)
    s.open()
    sig, R, D = b"ACMEB1", bytes([wire.RESULTS]), bytes([wire.DONE])
    job = s.job
    wrong = pack("WRONG")
    done = {"job": job, "ok": 3, "failed": 0}
    results0 = {"job": job, "results": [[0, 0, 1]]}

    def dup_key():
        pairs = [("job", job), ("job", job), ("ok", 3), ("failed", 0)]
        return b"\x84" + b"".join(pack(k) + pack(v) for k, v in pairs)

    bad = [
        [b"junk"],
        [sig, R],
        [b"ACMEB2", R, pack(results0), wrong],
        [b"ACMEB2", D, pack(done)],
        [b"ACMEB01", D, pack(done)],
        [b"ACMEW1", D, pack(done)],
        [sig, b"\x42", pack({})],
        [sig, R, pack([job, [[0, 0, 1]]]), wrong],
        [sig, R, pack(results0)[:-2], wrong],
        [sig, D, pack(done) + b"\x00"],
        [sig, D, dup_key()],
        [sig, D, pack({**done, "pad": "x" * 70000})],
        [sig, D, pack({"job": job, "ok": 3})],
        [sig, D, pack({**done, "ok": 3.0})],
        [sig, R, pack({"job": job, "results": [[0, 0]]}), wrong],
        [sig, R, pack(results0)],
        [sig, R, pack(results0), wrong, wrong],
        [sig, R, pack({"job": job, "results": []})],
        [sig, bytes([wire.ACCEPT]), pack({"job": job, "received": 3})],
    ]
    for frames in bad:
        c.broker.send_raw(s.ident, frames)
    s.results([(1, wire.OK, pack(11)), (0, wire.OK, pack(10))])
    # §5.4: any integer encoding, unknown keys ignored, nil counts as absent
    c.broker.send_raw(s.ident, [sig, R, wire.packx(
        {"job": wire.u64(job), "results": [[wire.i64(2), wire.i8(0), wire.u64(1)]],
         "x-future": {"a": [1]}}), pack(12)])
    c.broker.send_raw(s.ident, [sig, D, wire.packx(
        {"job": wire.i64(job), "ok": wire.u64(3), "failed": wire.i8(0), "cancelled": None,
         "x-future": "ignored"})])
    s.expect_success()


def test_unanswered_submit(client):
    """§9: a client MUST heartbeat while a SUBMIT is unanswered (every 1000 ms before the first
    ACCEPT), and a broker silent for 3 x 1000 ms is gone: non-zero exit, no hang."""
    c = client("echo", ["1"])
    s = Session(c, keep_alive=False)
    s.read_submit()
    t0 = time.monotonic()
    while c.child.alive() and time.monotonic() - t0 < 7.0:
        c.broker.gather(0.02)  # reads (and logs) what the client sends meanwhile
    rc = c.child.wait(0.1)
    took = time.monotonic() - t0
    c.broker.gather(0.05)
    beats = [t for t, i, m in c.broker.log if m.command == wire.HEARTBEAT and t > t0]
    if rc is None:
        s.fail("still running 7 s after a SUBMIT the broker never answered (§9: MUST NOT hang)")
    if rc == 0:
        s.fail("exit 0 although its SUBMIT was never answered")
    if took < 2.5:
        s.fail(f"gave up {took:.2f} s after an unanswered SUBMIT; §9: 3 x 1000 ms of silence")
    if not beats or beats[0] - t0 > 1.4:
        s.fail(f"no HEARTBEAT within 1.4 s of an unanswered SUBMIT (heartbeats at "
               f"{[round(b - t0, 2) for b in beats]} s; §9: every 1000 ms before the first ACCEPT)")
