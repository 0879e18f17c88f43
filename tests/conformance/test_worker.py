"""Worker dialogs (PROTOCOL.md §6.3, §6.4, §7.2, §8, §9, §11): the suite plays the broker.

Every message the worker sends is decoded strictly (wire.decode), so any test also fails when
the worker breaks framing or a field table on the way.
"""

from __future__ import annotations

import time

import wire
from harness import cmd
from wire import pack, unpack

BUILTINS = {"echo", "sleep", "fail"}


def _by_key(results):
    return {(job, index): (status, frame) for _, job, index, status, frame in results}


def _echo_ok(w, job, value, timeout=5.0, what="an echo after the previous step"):
    """Sends echo(value) as task 0 of `job`; returns once its result came back ok."""
    w.tasks(job, "echo", [[0, 1]], [pack([value])])
    got = w.results(1, timeout, what)
    _, j, i, status, frame = got[0]
    if (j, i, status) != (job, 0, wire.OK) or unpack(frame) != value:
        w.fail(f"echo({value!r}) as job {job}: expected result [{job}, 0, 0] with {value!r}, got "
               f"[{j}, {i}, {status}] with {unpack(frame)!r} (§6.3.2)")


# --- registration ------------------------------------------------------------------------------

def test_ready_is_well_formed(worker):
    """§6.3.1: READY first, with functions (the builtins) and slots as configured."""
    w = worker(slots=2)
    w.ready()
    h = w.ready_msg.header
    if not BUILTINS <= set(h["functions"]):
        w.fail(f"READY functions {h['functions']} lack {sorted(BUILTINS - set(h['functions']))} "
               f"(the suite's contract: the worker command serves echo, sleep, fail)")
    if h["slots"] != 2:
        w.fail(f"READY slots is {h['slots']}, but the worker was started with 2 slots (§6.3.1)")
    first = w.broker.log[0][2]
    if first.command != wire.READY:
        w.fail(f"first message was {first.name}, not READY (§7.2: acme-worker = W:READY ...)")


def test_no_welcome_means_reconnect_with_new_socket(worker):
    """§9: no WELCOME within 3 x 1000 ms -> broker gone: a new socket (new routing identity)
    sends READY again. Heartbeats meanwhile are allowed (§7.2)."""
    w = worker()
    first = w.ready()
    t0 = time.monotonic()
    _, second, msg = w.broker.expect("a READY from a new socket after 3 s without WELCOME (§9)",
                                     lambda i, m: m.command == wire.READY, 7.0)
    elapsed = time.monotonic() - t0
    if second == first:
        w.fail("re-sent READY on the same socket after no WELCOME; §9 says: close the socket and "
               "reconnect with a new one (a new routing identity)")
    if elapsed < 2.5:
        w.fail(f"gave up waiting for WELCOME after {elapsed:.2f} s; §9 says 3 x 1000 ms")
    for _, ident, m in w.broker.log:
        if m.command not in (wire.READY, wire.HEARTBEAT):
            w.fail(f"sent {m.name} before WELCOME (§7.2 allows only HEARTBEAT)")


def test_heartbeats_at_welcome_interval(worker):
    """§9: an idle worker sends HEARTBEAT whenever it sent nothing for WELCOME.heartbeat_ms."""
    w = worker()
    w.register(heartbeat_ms=100, liveness=10)
    beats = w.broker.heartbeats(1.2, w.fail, ident=w.ident)
    for m in beats:
        if m.header or m.payload:
            w.fail(f"HEARTBEAT header {m.header} payload {len(m.payload)}: §6.1.3 says {{}} alone")


# --- tasks -------------------------------------------------------------------------------------

def test_echo_results(worker):
    """§6.4.2 / §6.3.2: TASKS echo -> RESULTS [job, index, 0] + the value, job = broker job id."""
    w = worker()
    w.register()
    values = [{"a": 1, "b": [1, 2.5, "s", None, True]}, "hello", b"\x00\x01bin", -7]
    job = (1 << 40) + 3  # a u64 beyond 32 bits
    w.tasks(job, "echo", [[i, 1 + i] for i in range(len(values))], [pack([v]) for v in values])
    got = _by_key(w.results(len(values), 5.0, "echo results"))
    for i, v in enumerate(values):
        if (job, i) not in got:
            w.fail(f"no result for [{job}, {i}] (got {sorted(got)})")
        status, frame = got[(job, i)]
        if status != wire.OK or unpack(frame) != v:
            w.fail(f"echo({v!r}) gave status {status} value {unpack(frame)!r} (§6.3.2, §6.5)")


def test_liberal_headers_accepted(worker):
    """§5.4: any integer encoding (uint64, int64, int8 holding non-negative values), unknown
    keys ignored, nil counts as absent: such a WELCOME and TASKS work like plain ones."""
    w = worker()
    w.ready()
    w.broker.send_raw(w.ident, [b"ACMEB1", bytes([wire.WELCOME]), wire.packx(
        {"worker": wire.u64(1), "heartbeat_ms": wire.i64(100), "liveness": wire.i8(10),
         "x-future": {"a": [1]}})])
    w.broker.keep_alive(w.ident, 100)
    header = {"job": wire.u64(301), "function": "echo", "tasks": [[wire.i64(0), wire.i8(1)]],
              "timeout_ms": None, "common": None, "cores": wire.u64(1), "x-future": [1, "two"]}
    w.broker.send_raw(w.ident, [b"ACMEB1", bytes([wire.TASKS]), wire.packx(header),
                                pack(["liberal"])])
    got = w.results(1, 5.0, "the result of a TASKS in liberal encodings")
    if got[0][1:4] != (301, 0, wire.OK) or unpack(got[0][4]) != "liberal":
        w.fail(f"TASKS with uint64/int64 integers, nil options and unknown keys gave "
               f"{got[0][1:4]} (§5.4: receivers MUST accept them)")
    w.cancel(999, [])  # a job it never saw: ignored (§6.4.3)
    _echo_ok(w, 302, "after CANCEL of an unknown job")


def test_slots_bound_and_start_order(worker):
    """§8: at most `slots` tasks at once, started in received order, also across TASKS messages
    and beyond the credit (a worker that receives more than its credit MUST still queue)."""
    w = worker(slots=2)
    w.register()
    d = 0.3
    t0 = time.monotonic()
    w.tasks(21, "sleep", [[0, 1], [1, 1], [2, 1]], [pack([d])] * 3)
    w.tasks(22, "sleep", [[0, 1], [1, 1], [2, 1]], [pack([d])] * 3)
    got = w.results(6, 10.0, "six sleep(0.3) results")
    if any(s != wire.OK for _, _, _, s, _ in got):
        w.fail(f"sleep results not ok: {[(j, i, s) for _, j, i, s, _ in got]}")
    early = [(j, i) for t, j, i, _, _ in got if t - t0 < 2 * d - 0.08]
    if len(early) > 2:
        w.fail(f"{len(early)} sleep({d}) tasks ended within {2 * d - 0.08:.2f} s on a 2-slot worker: "
               f"{early}; §8: at most `slots` at once")
    order = [(j, i) for _, j, i, _, _ in sorted(got)]
    waves = [set(order[0:2]), set(order[2:4]), set(order[4:6])]
    want = [{(21, 0), (21, 1)}, {(21, 2), (22, 0)}, {(22, 1), (22, 2)}]
    if waves != want:
        w.fail(f"completion order {order}: tasks did not start in received order (§8 worker order)")


def test_start_order_one_slot(worker):
    """§8: with one slot, completion order is start order, which must be received order."""
    w = worker(slots=1)
    w.register()
    w.tasks(31, "sleep", [[0, 1], [1, 1]], [pack([0.25]), pack([0.02])])
    w.tasks(32, "sleep", [[0, 1], [1, 1]], [pack([0.15]), pack([0.0])])
    got = w.results(4, 10.0, "four sleep results")
    order = [(j, i) for _, j, i, _, _ in sorted(got)]
    if order != [(31, 0), (31, 1), (32, 0), (32, 1)]:
        w.fail(f"one slot, completion order {order}: §8 says tasks start in received order")


def test_common_frame_accepted_and_forgotten(worker):
    """§6.4.2: a common frame comes with the first TASKS of a job, is kept for later TASKS and
    forgotten after CANCEL with empty tasks (§6.4.3), after which the job may come again."""
    w = worker()
    w.register()
    w.tasks(41, "echo", [[0, 1]], [pack({"scale": 2}), pack([1])], common=True)
    w.tasks(41, "echo", [[1, 1]], [pack([2])])
    got = _by_key(w.results(2, 5.0, "echo with a common frame"))
    if got.get((41, 0), (None,))[0] != wire.OK or got.get((41, 1), (None,))[0] != wire.OK:
        w.fail(f"echo with a common frame (then without) gave {got} (§6.4.2)")
    if unpack(got[(41, 0)][1]) != 1 or unpack(got[(41, 1)][1]) != 2:
        w.fail("echo with a common frame returned the wrong values: the common frame must not be "
               "taken for a task frame (§6.4.2)")
    w.cancel(41, [])
    w.tasks(41, "echo", [[2, 1]], [pack({"scale": 3}), pack([3])], common=True)
    got = w.results(1, 5.0, "echo after CANCEL [] and a new common frame")
    if got[0][1:4] != (41, 2, wire.OK) or unpack(got[0][4]) != 3:
        w.fail(f"after CANCEL with empty tasks, a new first TASKS with common gave {got[0][1:4]}")


def test_unknown_function_is_unsupported(worker):
    """§6.4.2: a worker without `function` reports each task unsupported (4) with an error map."""
    w = worker()
    w.register()
    w.tasks(51, "conformance.no-such-function", [[0, 1], [1, 1]], [pack([1]), pack([2])])
    got = _by_key(w.results(2, 5.0, "unsupported results"))
    for i in (0, 1):
        status, frame = got.get((51, i), (None, None))
        if status != wire.UNSUPPORTED:
            w.fail(f"task {i} of an unknown function got status {status}, not 4 unsupported")
        try:
            wire.check_error_map(frame)
        except wire.Violation as v:
            w.fail(f"unsupported result payload: {v}")
    _echo_ok(w, 52, "still here")


def test_fail_gives_error_map(worker):
    """§6.5: a function that raises gives status failed (1) and an error map."""
    w = worker()
    w.register()
    w.tasks(61, "fail", [[0, 1]], [pack(["conformance boom 42"])])
    (_, job, index, status, frame), = w.results(1, 5.0, "fail result")
    if (job, index, status) != (61, 0, wire.FAILED):
        w.fail(f"fail() gave [{job}, {index}, {status}], expected [61, 0, 1] (§6.5)")
    try:
        err = wire.check_error_map(frame)
    except wire.Violation as v:
        w.fail(f"fail() result: {v}")
    if "conformance boom 42" not in err["message"]:
        w.fail(f"error map message {err['message']!r} does not carry the raised text")


def test_cores_beyond_slots_fail(worker):
    """§6.4.2: `cores` > `slots` (a broker bug): each task reported failed with an error map."""
    w = worker(slots=1)
    w.register()
    w.tasks(65, "echo", [[0, 1]], [pack([1])], cores=2)
    (_, job, index, status, frame), = w.results(1, 5.0, "result of a task needing 2 cores")
    if (job, index, status) != (65, 0, wire.FAILED):
        w.fail(f"a task with cores 2 on a 1-slot worker gave [{job}, {index}, {status}], "
               f"expected status 1 failed (§6.4.2)")
    try:
        wire.check_error_map(frame)
    except wire.Violation as v:
        w.fail(f"cores > slots result: {v}")


def test_timeout_gives_timed_out(worker):
    """§6.4.2: timeout_ms runs from the start; on expiry status timed-out (2), error map kind
    "TimedOut"; the late return is never sent."""
    w = worker(slots=1)
    w.register()
    t0 = time.monotonic()
    w.tasks(71, "sleep", [[0, 1]], [pack([5.0])], timeout_ms=300)
    (t, job, index, status, frame), = w.results(1, 4.0, "a timed-out result")
    if (job, index, status) != (71, 0, wire.TIMED_OUT):
        w.fail(f"sleep(5) with timeout_ms 300 gave [{job}, {index}, {status}], expected status 2")
    if t - t0 < 0.25:
        w.fail(f"timed out after {t - t0:.2f} s, before timeout_ms 300")
    try:
        err = wire.check_error_map(frame)
    except wire.Violation as v:
        w.fail(f"timed-out result: {v}")
    if err.get("kind") != "TimedOut":
        w.fail(f"timed-out error map kind {err.get('kind')!r}, §6.5 says \"TimedOut\"")
    _echo_ok(w, 72, "after timeout", timeout=6.0)
    late = w.broker.gather(0.3, lambda i, m: m.command == wire.RESULTS)
    if late:
        w.fail(f"sent a result after the timed-out one: {[m.header for _, _, m in late]} (§6.4.2)")


def test_cancel_queued_task(worker):
    """§6.4.3: CANCEL with indices drops queued tasks: no result for them, the job goes on."""
    w = worker(slots=1)
    w.register()
    w.tasks(81, "sleep", [[0, 1], [1, 1], [2, 1]], [pack([0.3]), pack([0.0]), pack([0.05])])
    w.cancel(81, [1, 99])  # 99: unknown indices are ignored
    got = w.results(2, 5.0, "results of tasks 0 and 2")
    keys = sorted((j, i) for _, j, i, _, _ in got)
    late = w.broker.gather(0.3, lambda i, m: m.command == wire.RESULTS)
    keys += [(j, i) for _, _, m in late for j, i, _ in m.header["results"]]
    if (81, 1) in keys or sorted(keys) != [(81, 0), (81, 2)]:
        w.fail(f"after CANCEL of queued task 1: results {keys}; expected [81,0] and [81,2] only")


def test_cancel_running_task_sends_no_result(worker):
    """§6.4.3: an abandoned running task's result is never sent (by index, or whole job)."""
    w = worker(slots=2)
    w.register()
    w.tasks(91, "sleep", [[0, 1]], [pack([0.8])])
    w.tasks(92, "sleep", [[0, 1]], [pack([0.8])])
    early = w.broker.gather(0.25, lambda i, m: m.command == wire.RESULTS)
    if early:
        w.fail(f"sleep(0.8) results after 0.25 s: {[m.header for _, _, m in early]}")
    w.cancel(91, [0])
    w.cancel(92, [])
    late = w.broker.gather(1.2, lambda i, m: m.command == wire.RESULTS)
    if late:
        w.fail(f"sent results for cancelled running tasks: {[m.header for _, _, m in late]} "
               f"(§6.3.2: MUST NOT send one for an abandoned task)")
    _echo_ok(w, 93, "after cancelling running tasks")


# --- heartbeat loss and BYE -------------------------------------------------------------------

def test_heartbeat_loss_reconnects_with_new_identity(worker):
    """§9: a broker silent for liveness x heartbeat_ms is gone: new socket, READY again."""
    w = worker()
    old = w.register(heartbeat_ms=100, liveness=3)
    w.broker.silent = True
    _, new, _ = w.broker.expect("READY again after the broker went silent (§9)", cmd(wire.READY),
                                4.0)
    if new == old:
        w.fail("reconnected on the same routing identity; §9: close the socket, use a new one")


def test_bye_reconnect_true_reregisters(worker):
    """§6.4.5: BYE reconnect true -> abandon all tasks, READY again without backoff."""
    w = worker()
    w.register()
    w.tasks(101, "sleep", [[0, 1]], [pack([0.4])])
    w.broker.gather(0.1)
    w.broker.send(w.ident, wire.BYE, {"reason": "conformance: I no longer know you",
                                      "reconnect": True})
    w.broker.heartbeat.clear()
    w.broker.expect("READY after BYE reconnect true (§6.4.5)", cmd(wire.READY), 3.0)
    w.welcome()
    late = w.broker.gather(0.6, lambda i, m: m.command == wire.RESULTS)
    if late:
        w.fail(f"sent a result of a task abandoned by BYE: {[m.header for _, _, m in late]}")


def test_bye_reconnect_false_exits(worker):
    """§6.4.5: BYE reconnect false -> MUST NOT reconnect; a worker program exits (README)."""
    w = worker()
    w.register()
    w.broker.send(w.ident, wire.BYE, {"reason": "conformance: I am stopping", "reconnect": False})
    w.broker.heartbeat.clear()
    deadline = time.monotonic() + 5.0
    while w.child.alive() and time.monotonic() < deadline:
        for _, _, m in w.broker.gather(0.05):
            if m.command == wire.READY:
                w.fail("sent READY after BYE reconnect false (§6.4.5: MUST NOT reconnect)")
    if w.child.alive():
        w.fail("still running 5 s after BYE reconnect false (README: the worker program exits)")


# --- bad input ---------------------------------------------------------------------------------

def _tasks_header(job, **extra):
    return {"job": job, "function": "echo", "tasks": [[0, 1]], **extra}


def _bad_messages():
    """(name, section, frames, job): broker messages a worker MUST drop (§11: data errors are
    dropped; §12: other versions are dropped). `job` is the broker job id a wrongly accepted
    TASKS would answer for."""
    sig, T = b"ACMEB1", bytes([wire.TASKS])
    task = pack([1])

    def dup_key(job):
        pairs = [("job", job), ("job", job), ("function", "echo"), ("tasks", [[0, 1]])]
        return b"\x84" + b"".join(pack(k) + pack(v) for k, v in pairs)

    return [
        ("one garbage frame", "11 rule 1", [b"\xff\x00garbage"], None),
        ("two frames", "11 rule 1", [sig, T], None),
        ("not an acme signature", "11 rule 2", [b"HELLO1", T, pack(_tasks_header(201)), task], 201),
        ("version 2 signature ACMEB2", "12", [b"ACMEB2", T, pack(_tasks_header(202)), task], 202),
        ("leading-zero version ACMEB01", "5.2", [b"ACMEB01", T, pack(_tasks_header(203)), task], 203),
        ("client signature (wrong peer)", "11 rule 5", [b"ACMEC1", T, pack(_tasks_header(204)), task], 204),
        ("unknown command byte 0x42", "11 rule 6", [sig, b"\x42", pack({})], None),
        ("two-byte command frame", "11 rule 6", [sig, T + b"\x00", pack(_tasks_header(205)), task], 205),
        ("READY from the broker", "11 rule 7", [sig, bytes([wire.READY]), pack({"functions": ["echo"], "slots": 1})], None),
        ("header not a map", "11 rule 9", [sig, T, pack([206, "echo", [[0, 1]]]), task], 206),
        ("truncated header", "11 rule 9", [sig, T, pack(_tasks_header(207))[:-3], task], 207),
        ("trailing bytes after the header", "11 rule 9", [sig, T, pack(_tasks_header(208)) + b"\xc0", task], 208),
        ("a known key twice", "5.4", [sig, T, dup_key(209), task], 209),
        ("a non-str key", "5.4", [sig, T, pack({**_tasks_header(210), 7: "x"}), task], 210),
        ("header nested deeper than 4", "5.4", [sig, T, pack(_tasks_header(211, x=[[[[1]]]])), task], 211),
        ("header larger than 65536 bytes", "5.6", [sig, T, pack(_tasks_header(212, pad="x" * 70000)), task], 212),
        ("TASKS without function", "11 rule 10", [sig, T, pack({"job": 213, "tasks": [[0, 1]]}), task], 213),
        ("TASKS with a nil function", "5.4", [sig, T, pack(_tasks_header(214, function=None)), task], 214),
        ("function as bin, not str", "5.4", [sig, T, pack(_tasks_header(215, function=b"echo")), task], 215),
        ("job as a float", "5.4", [sig, T, pack(_tasks_header(216.0)), task], 216),
        ("empty tasks", "6.4.2", [sig, T, pack({"job": 217, "function": "echo", "tasks": []})], 217),
        ("task entry of arity 1", "5.4", [sig, T, pack(_tasks_header(218, tasks=[[0]])), task], 218),
        ("attempt 0", "6.4.2", [sig, T, pack(_tasks_header(219, tasks=[[0, 0]])), task], 219),
        ("common as 1, not a bool", "5.4", [sig, T, pack(_tasks_header(220, common=1)), pack({}), task], 220),
        ("one payload frame too few", "11 rule 12", [sig, T, pack(_tasks_header(221, tasks=[[0, 1], [1, 1]])), task], 221),
        ("one payload frame too many", "11 rule 12", [sig, T, pack(_tasks_header(222)), task, task], 222),
        ("function of 256 bytes", "5.6", [sig, T, pack(_tasks_header(223, function="e" * 256)), task], 223),
        ("CANCEL without job", "11 rule 10", [sig, bytes([wire.CANCEL]), pack({"tasks": []})], None),
        ("WELCOME without heartbeat_ms", "11 rule 10", [sig, bytes([wire.WELCOME]), pack({"worker": 9, "liveness": 1})], None),
    ]


def test_bad_broker_messages_are_dropped(worker):
    """§11: a worker drops broker messages that fail to decode, and MUST NOT crash or stall:
    after each, it stays registered and answers a valid TASKS; no bad TASKS is ever run."""
    w = worker()
    w.register(heartbeat_ms=100, liveness=50)
    broken = []
    for n, (name, section, frames, job) in enumerate(_bad_messages()):
        w.broker.send_raw(w.ident, frames)
        good = 1000 + n
        w.tasks(good, "echo", [[0, 1]], [pack([n])])
        deadline = time.monotonic() + 5.0
        answered = False
        while not answered:
            got = w.broker.recv(deadline - time.monotonic())
            if got is None:
                if not w.child.alive():
                    w.fail(f"crashed (exit {w.child.wait(0)}) after: {name} (§11: MUST NOT crash); "
                           f"earlier problems: {broken}")
                broken.append(f"{name} (§{section}): no answer to the valid TASKS after it within "
                              f"5 s (stalled)")
                break
            _, _, m = got
            if m.command in (wire.READY, wire.BYE):
                w.fail(f"sent {m.name} {m.header} after: {name} (it should have dropped it, §11)")
            if m.command != wire.RESULTS:
                continue
            for (j, i, status), frame in zip(m.header["results"], m.payload):
                if j == good:
                    answered = True
                    if status != wire.OK or unpack(frame) != n:
                        broken.append(f"{name}: the valid echo after it gave status {status}")
                elif j == job or (200 <= j < 300):
                    broken.append(f"{name} (§{section}): ran a TASKS it must drop "
                                  f"(result [{j}, {i}, {status}])")
    for _, _, m in w.broker.gather(0.3, lambda i, m: m.command == wire.RESULTS):
        broken.append(f"late results {m.header['results']} after the bad messages")
    if broken:
        w.fail("did not drop bad broker messages:\n  " + "\n  ".join(broken))
