"""The acme client: jobs to a broker and their results back (docs/PROTOCOL.md §6.1, §6.2, §9).

    from acme.client import Client
    with Client("tcp://node1:5555") as client:
        job = client.submit("echo", (packb([x]) for x in range(10)), total=10)
        for result in job.results():
            print(result.index, unpackb(result.payload))

One background I/O thread per `Client` owns its DEALER socket (ZeroMQ sockets are not thread
safe); the user's threads hand it jobs and cancels through a queue and an eventfd wake-up, and
read results from a queue per job. The I/O thread follows the C++ client
(libclient/src/connection.cpp): one SUBMIT unanswered at a time, as many task frames per SUBMIT
as the window allows, a job's task iterator consumed only as its frames are sent, heartbeats
while jobs are open, and a broker silent for 3 heartbeats failing every open job.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import queue
import socket as _socket
import threading
import time
import weakref
from typing import Iterable, Iterator, NamedTuple

import msgpack
import zmq

from . import protocol as P

__all__ = [
    "AcmeError",
    "BrokerGone",
    "Client",
    "Job",
    "JobError",
    "Result",
    "configured_broker",
    "query_status",
]

log = logging.getLogger("acme.client")

#: Most task frames in one SUBMIT, and about the most bytes: big enough to amortise the round
#: trip, small enough to start work early and to stay far below the broker's message limit.
MAX_CHUNK = 4096
MAX_CHUNK_BYTES = 64 << 20
#: PROTOCOL.md §6.2.1: the window a client may assume before its first ACCEPT.
INITIAL_WINDOW = 1024
#: PROTOCOL.md §9: the heartbeat interval before the first ACCEPT, and the broker's liveness.
DEFAULT_HEARTBEAT_MS = 1000
BROKER_LIVENESS = 3
#: Longest wait of the I/O thread between checks (heartbeats, liveness, stop).
_TICK = 0.2
#: A send that cannot leave within this long means the broker is as good as gone.
_SEND_TIMEOUT_MS = 2000


# ---- errors -------------------------------------------------------------------------------


class AcmeError(Exception):
    """Base of every acme error."""


class BrokerGone(AcmeError):
    """The broker is unreachable, silent, or stopped; the message names its endpoint and where
    that endpoint came from."""


class JobError(AcmeError):
    """The broker refused or failed a job as a whole (PROTOCOL.md §6.2.4 ERROR).

    `code` is the ERROR code (`acme.protocol.NO_SUCH_FUNCTION`, ...), `job` the client job id,
    `function` the job's function."""

    def __init__(self, message: str, code: int, job: int | None = None, function: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.job = job
        self.function = function


_ERROR_NAMES = {
    P.MALFORMED: "malformed",
    P.VERSION_MISMATCH: "version-mismatch",
    P.UNKNOWN_COMMAND: "unknown-command",
    P.BAD_REQUEST: "bad-request",
    P.NO_SUCH_FUNCTION: "no-such-function",
    P.TOO_LARGE: "too-large",
    P.SHUTTING_DOWN: "shutting-down",
    P.INTERNAL: "internal",
}


def _error_name(code) -> str:
    return _ERROR_NAMES.get(code, f"code {code}")


# ---- where the broker is --------------------------------------------------------------------


def _acme_home() -> str | None:
    home = os.environ.get("ACME_HOME")
    if home:
        return home
    user_home = os.environ.get("HOME")
    return os.path.join(user_home, ".acme") if user_home else None


def configured_broker() -> tuple[str, str] | None:
    """The broker a client uses when given none, as `(endpoint, source)`, or None.

    Like acme::configured_broker() (libclient/src/client.cpp): `$ACME_BROKER` (source
    "$ACME_BROKER"), else the first line of `$ACME_HOME/broker` (ACME_HOME defaults to
    ~/.acme; written by `acme-launch`; source: the file's path), unless that file was written on
    this host for a broker process that has ended (a stale launch)."""
    broker = os.environ.get("ACME_BROKER")
    if broker:
        return broker, "$ACME_BROKER"
    home = _acme_home()
    if home is None:
        return None
    path = os.path.join(home, "broker")
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    if not lines or not lines[0]:
        return None
    endpoint, host, pid = lines[0], "", 0
    for line in lines[1:]:
        if line.startswith("host="):
            host = line[5:]
        elif line.startswith("pid="):
            try:
                pid = int(line[4:])
            except ValueError:
                pid = 0
    if pid > 0 and host == _socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # our own broker, ended: a stale launch, not a broker to wait for
        except OSError:
            pass  # alive, owned by someone else
    return endpoint, path


def _describe_source(source: str | None) -> str:
    """"($ACME_BROKER)", "(~/.acme/broker)", "(LocalCluster)"; "" when unknown."""
    if not source:
        return ""
    home = os.environ.get("HOME")
    if home and source.startswith(home.rstrip("/") + "/"):
        source = "~" + source[len(home.rstrip("/")):]
    return f" ({source})"


def _hint(source: str | None) -> str:
    """What the user should check when the broker does not answer."""
    if source == "$ACME_BROKER":
        return ("check that acme-broker runs there (it prints ACME_BROKER=<endpoint> when it "
                "starts), that host and port are right and that no firewall blocks the port; or "
                "unset ACME_BROKER")
    if source and source.startswith("LocalCluster"):
        return "the local cluster's acme-broker has stopped: was the cluster closed, or did it crash?"
    if source and source.endswith("broker"):
        return (f"the file was written by acme-launch: check `acme-launch status`; "
                f"`acme-launch stop`, or removing {source}, forgets that broker")
    return ("check that acme-broker runs there (it prints ACME_BROKER=<endpoint> when it starts), "
            "that host and port are right and that no firewall blocks the port")


# ---- STATUS -------------------------------------------------------------------------------


def _new_dealer(context: zmq.Context, endpoint: str, linger: int) -> zmq.Socket:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, linger)
    sock.setsockopt(zmq.SNDTIMEO, _SEND_TIMEOUT_MS)
    if endpoint.startswith("tcp://"):
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise AcmeError(f"invalid broker endpoint {endpoint!r}: {exc} "
                        f"(expected e.g. tcp://host:5555 or ipc:///path)") from None
    return sock


def query_status(endpoint: str, timeout: float = 5.0, launch: str | None = None) -> dict:
    """Asks the broker at `endpoint` what it holds (PROTOCOL.md §6.1.5, §6.2.7): a fresh DEALER,
    one STATUS, one reply; returns the reply's header as a dict (`workers`, `jobs`, ...).

    `launch` restricts the worker list to that acme-launch launch ("" for untagged workers).
    Raises BrokerGone when no reply comes within `timeout` seconds (never blocks longer), and
    AcmeError when the broker refuses, speaks another version or does not know STATUS."""
    deadline = time.monotonic() + timeout
    header = {} if launch is None else {"launch": launch}
    sock = _new_dealer(zmq.Context.instance(), endpoint, 0)
    try:
        try:
            sock.send_multipart(P.encode(P.SIG_CLIENT, P.STATUS, header), zmq.NOBLOCK)
        except zmq.Again:
            raise BrokerGone(f"no broker answered at {endpoint} within {timeout:g} s") from None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                if time.monotonic() < deadline:
                    continue
                raise BrokerGone(f"no broker answered at {endpoint} within {timeout:g} s")
            frames = sock.recv_multipart()
            try:
                message = P.decode(frames, expect_from=b"B", to=b"C")
            except P.DecodeError as exc:
                if exc.reason == "VersionMismatch":
                    raise AcmeError(f"the broker at {endpoint} speaks protocol version "
                                    f"{exc.version}, this client {P.VERSION}") from None
                raise AcmeError(f"the broker at {endpoint} sent an undecodable reply to STATUS: "
                                f"{exc}") from None
            if message.command == P.STATUS:
                return dict(message.header)
            if message.command == P.ERROR:
                code = message.header.get("code")
                text = message.header.get("message", "")
                if code == P.UNKNOWN_COMMAND:
                    raise AcmeError(f"the broker at {endpoint} does not support STATUS "
                                    f"(an older acme-broker: {text})")
                raise AcmeError(f"the broker at {endpoint} refused STATUS: {text} "
                                f"({_error_name(code)})")
            if message.command == P.BYE:
                raise AcmeError(f"the broker at {endpoint} said BYE instead of STATUS: "
                                f"{message.header.get('reason') or 'no reason given'}")
            # HEARTBEAT, or something for a session this socket never had: wait on.
    finally:
        sock.close(0)


# ---- results and jobs -----------------------------------------------------------------------


class Result(NamedTuple):
    """One task's outcome: `status` is acme.protocol.OK, FAILED, TIMED_OUT or POISONED;
    `payload` the result frame (a msgpack value) or, for the others, an error map."""

    index: int
    status: int
    attempts: int
    payload: bytes


_DONE = object()  # end of a job's result queue


class _JobState:
    """What the I/O thread and the readers share about a job. Counters written by one side only,
    except under `Client._lock`."""

    __slots__ = ("id", "function", "total", "tasks", "common", "options", "queue", "sent",
                 "delivered", "opened", "accepted", "cancel_requested", "cancel_sent", "closed",
                 "pending", "ok", "failed", "cancelled", "error", "done_event")

    def __init__(self, job_id, function, total, tasks, common, options):
        self.id = job_id
        self.function = function
        self.total = total
        self.tasks = tasks
        self.common = common
        self.options = options
        self.queue = queue.SimpleQueue()
        self.sent = 0  # task frames sent (I/O thread)
        self.delivered = 0  # results received for it (I/O thread)
        self.opened = False  # a SUBMIT went out (I/O thread)
        self.accepted = False
        self.cancel_requested = False
        self.cancel_sent = False
        self.closed = False  # DONE, ERROR or failure seen: nothing more comes
        self.pending = None  # a task frame taken from the iterator but not yet sent
        self.ok = 0
        self.failed = 0
        self.cancelled = False
        self.error: BaseException | None = None
        self.done_event = threading.Event()


class Job:
    """A submitted job. Read its results with `results()` (completion order) or `batches()`."""

    def __init__(self, client: "Client", state: _JobState):
        self._client = client  # keeps the client (and its I/O thread) alive while the job is used
        self._state = state

    @property
    def id(self) -> int:
        return self._state.id

    @property
    def function(self) -> str:
        return self._state.function

    @property
    def total(self) -> int:
        return self._state.total

    @property
    def ok(self) -> int:
        """Results with status ok, as the broker's DONE counted them (0 before DONE)."""
        return self._state.ok

    @property
    def failed(self) -> int:
        """Results with another status, as the broker's DONE counted them (0 before DONE)."""
        return self._state.failed

    @property
    def cancelled(self) -> bool:
        return self._state.cancelled or self._state.cancel_requested

    @property
    def done(self) -> bool:
        """The job has ended on the broker (DONE), failed or been cancelled; unread results may
        still wait in `results()`."""
        return self._state.done_event.is_set()

    @property
    def error(self) -> BaseException | None:
        """Why the job failed as a whole (what `results()` raises), or None."""
        return self._state.error

    def wait(self, timeout: float | None = None) -> bool:
        """Waits until the job has ended (see `done`); False on timeout."""
        return self._state.done_event.wait(timeout)

    def batches(self, timeout: float | None = None) -> Iterator[list[Result]]:
        """The results as they arrived, one list per broker message: the cheapest way to read a
        big job. Ends after the last result (or at once after `cancel()`); raises BrokerGone or
        JobError when the job fails as a whole (results read before stay valid), TimeoutError
        when no result comes for `timeout` seconds. Ctrl-C while waiting cancels the job."""
        state = self._state
        get = state.queue.get
        while True:
            if state.cancel_requested:
                return
            try:
                # A bounded wait, so that Ctrl-C is seen promptly on any platform.
                item = get(timeout=0.5 if timeout is None else timeout)
            except queue.Empty:
                if timeout is None:
                    continue
                raise TimeoutError(f"no result of job {state.id} ({state.function}) within "
                                   f"{timeout:g} s") from None
            except KeyboardInterrupt:
                self.cancel()
                raise
            if item.__class__ is list:
                self._client._settle(len(item))
                if state.cancel_requested:
                    return
                yield item
            elif item is _DONE:
                state.queue.put(_DONE)  # a later reader ends too
                return
            else:
                state.queue.put(item)
                raise item

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """The results one by one in completion order (see `batches()`)."""
        for batch in self.batches(timeout):
            yield from batch

    def cancel(self) -> None:
        """Abandons the job: the broker drops its queued tasks, no more results come, and
        `results()` ends. No-op once the job has ended."""
        self._client._cancel(self._state)

    def __repr__(self) -> str:
        return f"<acme Job {self.id} {self.function!r} {self.total} tasks>"


# ---- the client -----------------------------------------------------------------------------

_live_engines: "weakref.WeakSet[_Engine]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for engine in list(_live_engines):
        engine.close()


class Client:
    """A connection to an acme broker.

    `endpoint` None: `configured_broker()` ($ACME_BROKER, else the broker acme-launch recorded),
    else AcmeError. `source` says where the endpoint came from, for error messages (e.g.
    "LocalCluster"). `max_in_flight` bounds the tasks sent and not yet read over all jobs: what
    bounds the client's memory when results are read slowly. Thread-safe."""

    def __init__(self, endpoint: str | None = None, *, source: str | None = None,
                 max_in_flight: int = 1 << 16):
        if endpoint is None:
            configured = configured_broker()
            if configured is None:
                raise AcmeError("no broker configured: pass an endpoint, set ACME_BROKER, start "
                                "workers with acme-launch, or use acme.cluster.LocalCluster")
            endpoint, source = configured
        self.endpoint = endpoint
        self.source = source
        self._engine = _Engine(endpoint, source, max(1, int(max_in_flight)))
        _live_engines.add(self._engine)

    def submit(self, function: str, tasks: Iterable[bytes], total: int, *,
               common: bytes | None = None, max_retries: int | None = None,
               retry_on_error: bool = False, timeout: float | None = None,
               cores: int = 1) -> Job:
        """Submits a job of `total` tasks; `tasks` yields the packed task frames (msgpack
        values) in order and is consumed lazily by the I/O thread as the window allows (an
        exception it raises fails the job and comes out of `results()`). `timeout` is each task's
        maximum run time in seconds. Job failures arrive through `results()`."""
        if not isinstance(function, str) or not 1 <= len(function.encode()) <= 255:
            raise ValueError(f"function name {function!r} must be a str of 1 to 255 bytes")
        total = int(total)
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        if int(cores) < 1:
            raise ValueError(f"cores must be at least 1, got {cores}")
        options = {}
        if max_retries is not None:
            options["max_retries"] = int(max_retries)
        if retry_on_error:
            options["retry_on_error"] = True
        if timeout:
            timeout_ms = int(round(timeout * 1000))
            if not 0 <= timeout_ms <= 0xFFFFFFFF:
                raise ValueError(f"timeout must be between 0 and 4294967 s, got {timeout}")
            options["timeout_ms"] = max(1, timeout_ms)
        if cores != 1:
            options["cores"] = int(cores)
        return self._engine.open(self, function, tasks, total, common, options)

    def status(self, launch: str | None = None, timeout: float = 5.0) -> dict:
        """The broker's STATUS (see `query_status`)."""
        return query_status(self.endpoint, timeout=timeout, launch=launch)

    def close(self) -> None:
        """Says BYE to the broker and stops the I/O thread; open jobs fail."""
        self._engine.close()

    @property
    def closed(self) -> bool:
        return self._engine.stopping

    # used by Job
    def _settle(self, n: int) -> None:
        self._engine.settle(n)

    def _cancel(self, state: _JobState) -> None:
        self._engine.cancel(state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()

    def __repr__(self) -> str:
        return f"<acme Client {self.endpoint}{_describe_source(self.source)}>"


class _Engine:
    """The I/O thread and everything it owns. Separate from Client so that the thread does not
    keep the Client alive (Client.__del__ closes it)."""

    def __init__(self, endpoint: str, source: str | None, max_in_flight: int):
        self.endpoint = endpoint
        self.source = source
        self.where = f"{endpoint}{_describe_source(source)}"
        self.max_in_flight = max_in_flight
        self.stopping = False
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # PROTOCOL.md §14: count up, never reuse
        self._requests: collections.deque = collections.deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # In-flight accounting: tasks sent minus results read or abandoned (under _lock).
        self._sent_total = 0
        self._settled = 0
        self._starved = False
        self._no_more_requests = False  # set by the I/O thread as it ends (under _lock)
        self._context = zmq.Context(1)
        self._sock = None
        self._new_socket()  # here, so that an invalid endpoint raises in Client()
        self._thread = threading.Thread(target=self._run, name=f"acme-client {endpoint}",
                                        daemon=True)
        self._thread.start()

    # ---- user side ----

    def wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:
            pass  # closed: the thread is gone

    def open(self, client, function, tasks, total, common, options) -> Job:
        state = _JobState(next(self._ids), function, total, iter(tasks), common, options)
        if total == 0:  # nothing to run: no job on the broker (PROTOCOL.md: total >= 1)
            state.closed = True
            state.queue.put(_DONE)
            state.done_event.set()
            return Job(client, state)
        with self._lock:
            if self._no_more_requests:
                raise AcmeError(f"the acme client for {self.where} is closed")
            self._requests.append(state)
        self.wake()
        return Job(client, state)

    def settle(self, n: int) -> None:
        with self._lock:
            self._settled += n
            wake = self._starved and self._sent_total - self._settled <= self.max_in_flight // 2
            if wake:
                self._starved = False
        if wake:
            self.wake()

    def cancel(self, state: _JobState) -> None:
        with self._lock:
            if state.cancel_requested or state.closed:
                return
            state.cancel_requested = True
            drained = 0
            while True:  # results nobody will read
                try:
                    item = state.queue.get_nowait()
                except queue.Empty:
                    break
                if item.__class__ is list:
                    drained += len(item)
            self._settled += drained
        self._requests.append(None)  # "look at the cancels"
        self.wake()

    def close(self) -> None:
        if self.stopping:  # already closing: wait for it like the first caller
            if self._thread is not threading.current_thread():
                self._thread.join(5.0)
            return
        self.stopping = True
        self.wake()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)

    # ---- I/O thread ----

    def _new_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        self._sock = _new_dealer(self._context, self.endpoint, 500)
        self._window = INITIAL_WINDOW
        self._heartbeat = DEFAULT_HEARTBEAT_MS / 1000
        self._outstanding: int | None = None  # job id of the unanswered SUBMIT
        self._outstanding_count = 0
        self._session = False
        self._last_sent = time.monotonic()
        self._last_heard = self._last_sent
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._wake_fd, zmq.POLLIN)

    def _run(self) -> None:
        self._jobs: dict[int, _JobState] = {}
        self._staged: dict[int, tuple[_JobState, list]] = {}
        self._last_served = 0
        try:
            while not self.stopping:
                try:
                    self._step()
                except _SendFailed as exc:
                    self._fail_all(BrokerGone(str(exc)))
                    self._new_socket()
                except Exception as exc:  # a bug: fail loudly, do not hang the readers
                    log.exception("acme client I/O thread failed")
                    self._fail_all(AcmeError(f"the acme client for {self.where} failed: {exc!r}"))
                    self._new_socket()
            with self._lock:
                self._no_more_requests = True
            self._take_requests()
            if self._session:
                try:
                    self._sock.send_multipart(
                        P.encode(P.SIG_CLIENT, P.BYE, {"reason": "client closed"}), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self._fail_all(AcmeError(f"the acme client for {self.where} was closed while the "
                                     f"job ran"))
        finally:
            try:
                self._sock.close(200 if self._session else 0)
                self._context.term()
            finally:
                os.close(self._wake_fd)

    def _step(self) -> None:
        now = time.monotonic()
        wait = _TICK
        if self._jobs_open():
            wait = min(wait, self._last_sent + self._heartbeat - now)
        events = self._poller.poll(max(0, int(wait * 1000)))
        for item, _ in events:
            if item == self._wake_fd:
                try:
                    os.eventfd_read(self._wake_fd)
                except BlockingIOError:
                    pass
        received = False
        for _ in range(1000):  # then pump and heartbeat before reading on
            try:  # self._sock, not a saved method: a BYE replaces the socket
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            received = True
            self._handle(frames)
        if self._staged:
            self._flush()
        now = time.monotonic()
        if received:
            self._last_heard = now
        if self._requests:
            self._take_requests()
        self._pump(now)
        self._keepalive(now)

    def _jobs_open(self) -> bool:
        return self._outstanding is not None or any(j.opened for j in self._jobs.values())

    def _send(self, frames, what: str) -> None:
        try:
            self._sock.send_multipart(frames, copy=False)
        except zmq.Again:
            raise _SendFailed(f"could not send {what} to the broker at {self.where} within "
                              f"{_SEND_TIMEOUT_MS / 1000:g} s: it is not reading; "
                              f"{_hint(self.source)}") from None
        self._last_sent = time.monotonic()

    # -- incoming

    def _handle(self, frames) -> None:
        if len(frames) > 3 and frames[1] == _RESULTS_BYTE:
            fast = _fast_results(frames)
            if fast is not None:
                self._on_results(*fast)
                return
        try:
            message = P.decode(frames, expect_from=b"B", to=b"C")
        except P.DecodeError as exc:  # PROTOCOL.md §11: dropped and logged
            log.warning("dropped a message from the broker at %s: %s", self.endpoint, exc)
            return
        command = message.command
        if command == P.RESULTS:
            self._on_results(message.header, message.payload)
        elif command == P.ACCEPT:
            self._on_accept(message.header)
        elif command == P.DONE:
            self._on_done(message.header)
        elif command == P.ERROR:
            self._on_error(message.header)
        elif command == P.BYE:
            self._on_bye(message.header)
        # HEARTBEAT: counted as heard; STATUS: this socket never asks

    def _on_results(self, header, payload) -> None:
        state = self._jobs.get(header["job"])
        if state is None or state.closed:
            return  # a cancelled or failed job: its late results are dropped
        total = state.total
        batch = []
        for (index, status, attempts), frame in zip(header["results"], payload):
            if index >= total:
                log.warning("the broker sent a result for task %d of job %d, which has %d tasks",
                            index, state.id, total)
                continue
            batch.append(Result(index, status, attempts,
                                frame if frame.__class__ is bytes else bytes(frame)))
        if not batch:
            return
        state.delivered += len(batch)
        # Staged, and handed to the readers once per poll: one queue operation (and one wake-up
        # of a reader) for all the RESULTS that arrived together.
        staged = self._staged.get(state.id)
        if staged is None:
            self._staged[state.id] = (state, batch)
        else:
            staged[1].extend(batch)

    def _flush(self, only: _JobState | None = None) -> None:
        """Hands the staged results to the readers (all jobs', or only those of `only`)."""
        if only is not None:
            staged = self._staged.pop(only.id, None)
            items = [] if staged is None else [staged]
        else:
            items = list(self._staged.values())
            self._staged.clear()
        with self._lock:
            for state, batch in items:
                if state.cancel_requested:
                    self._settled += len(batch)
                else:
                    state.queue.put(batch)

    def _on_accept(self, header) -> None:
        # PROTOCOL.md §6.2.1: usable window = the latest ACCEPT's window minus what was sent
        # after the SUBMIT it answered.
        window = header["window"]
        if self._outstanding is not None and self._outstanding == header["job"]:
            self._window = window
            self._outstanding = None
            self._outstanding_count = 0
        else:
            self._window = max(0, window - self._outstanding_count)
        heartbeat_ms = header.get("heartbeat_ms")
        if heartbeat_ms:
            self._heartbeat = heartbeat_ms / 1000
        state = self._jobs.get(header["job"])
        if state is not None:
            state.accepted = True

    def _on_done(self, header) -> None:
        state = self._jobs.get(header["job"])
        if state is None:
            return
        state.ok = header["ok"]
        state.failed = header["failed"]
        cancelled = bool(header.get("cancelled"))
        state.cancelled = cancelled
        if not state.cancel_requested and (cancelled or state.delivered < state.total):
            self._fail(state, AcmeError(
                f"the broker at {self.where} ended job {state.id} ({state.function}) after "
                f"{state.delivered} of {state.total} results"))
        else:
            self._close(state, None)
        self._forget(state)

    def _on_error(self, header) -> None:
        code = header["code"]
        text = header.get("message", "")
        job_id = header.get("job")
        if job_id is None:
            job_id = self._outstanding  # a SUBMIT's answer that could not name its job
        if self._outstanding is not None and (header.get("job") is None
                                              or header["job"] == self._outstanding):
            # A refused SUBMIT took nothing of the window (§6.1.1): give it back.
            self._window += self._outstanding_count
            self._outstanding = None
            self._outstanding_count = 0
        state = self._jobs.get(job_id) if job_id is not None else None
        if state is None:
            # E.g. a CANCEL that crossed the job's DONE (§6.1.2): nothing to do.
            log.debug("the broker at %s reported error %s (%s) for no open job: %s",
                      self.endpoint, code, _error_name(code), text)
            return
        if code == P.NO_SUCH_FUNCTION:
            message = (f"no worker offers function {state.function!r} (the broker at {self.where} "
                       f"waited for one: {text}); check its name and that the workers register it")
        elif code == P.SHUTTING_DOWN:
            message = f"the broker at {self.where} is shutting down and refused job {state.id} ({state.function}): {text}"
        else:
            message = (f"the broker at {self.where} refused job {state.id} ({state.function}, "
                       f"{_error_name(code)}): {text}")
        closed_by_broker = code in (P.NO_SUCH_FUNCTION, P.INTERNAL) or code not in _ERROR_NAMES
        if not closed_by_broker and state.accepted and not state.cancel_sent:
            # PROTOCOL.md §6.2.4: other errors leave the job open on the broker; close it.
            state.cancel_sent = True
            self._send(P.encode(P.SIG_CLIENT, P.CANCEL, {"job": state.id}), "CANCEL")
        error_class = BrokerGone if code == P.SHUTTING_DOWN else JobError
        if error_class is JobError:
            error = JobError(message, code, state.id, state.function)
        else:
            error = BrokerGone(message)
        self._fail(state, error)
        self._forget(state)

    def _on_bye(self, header) -> None:
        # PROTOCOL.md §6.2.6: open jobs are closed without DONE.
        reason = header.get("reason") or "no reason given"
        if self._jobs:
            if header.get("reconnect"):
                text = f"the broker at {self.where} forgot this client ({reason})"
            else:
                text = f"the broker at {self.where} stopped ({reason})"
            self._fail_all(BrokerGone(text))
        self._new_socket()  # a fresh identity: the next job starts a new session

    # -- requests from the user's threads

    def _take_requests(self) -> None:
        cancels = False
        while self._requests:
            state = self._requests.popleft()
            if state is None:
                cancels = True
            else:
                self._jobs[state.id] = state
                if state.cancel_requested:
                    cancels = True
        if not cancels:
            return
        for state in list(self._jobs.values()):
            if not state.cancel_requested or state.cancel_sent:
                continue
            if not state.opened:
                self._close(state, None)
                self._forget(state)
                continue
            state.cancel_sent = True  # DONE (cancelled) closes it
            self._send(P.encode(P.SIG_CLIENT, P.CANCEL, {"job": state.id}), "CANCEL")

    # -- outgoing

    def _pump(self, now: float) -> None:
        """Sends one SUBMIT if none is unanswered (PROTOCOL.md §6.2.1), round robin over the jobs
        with tasks left."""
        if self._outstanding is not None or not self._jobs or self._window <= 0:
            return
        ids = sorted(self._jobs)
        start = 0
        for k, job_id in enumerate(ids):
            if job_id > self._last_served:
                start = k
                break
        for job_id in ids[start:] + ids[:start]:
            state = self._jobs.get(job_id)
            if (state is None or state.cancel_requested or state.closed
                    or state.sent >= state.total):
                continue
            with self._lock:
                capacity = self.max_in_flight - (self._sent_total - self._settled)
                if capacity <= 0:
                    self._starved = True
                    return
            count = min(state.total - state.sent, self._window, MAX_CHUNK, capacity)
            self._last_served = job_id
            self._submit_chunk(state, count, now)
            return

    def _submit_chunk(self, state: _JobState, count: int, now: float) -> None:
        first = state.sent
        frames = []
        common = first == 0 and state.common is not None
        if common:
            frames.append(state.common)
        size = 0
        tasks = state.tasks
        try:
            for i in range(count):
                if state.pending is not None:
                    frame, state.pending = state.pending, None
                else:
                    frame = next(tasks)
                if frame.__class__ is not bytes and not isinstance(frame, _FRAME_TYPES):
                    raise TypeError(f"a task frame must be bytes (a packed msgpack value), not "
                                    f"{type(frame).__name__}")
                n = len(frame)
                if i > 0 and size + n > MAX_CHUNK_BYTES:
                    state.pending = frame
                    break
                size += n
                frames.append(frame)
        except StopIteration:
            self._abort(state, AcmeError(
                f"the tasks of job {state.id} ({state.function}) ended after "
                f"{first + len(frames) - common} of {state.total}"))
            return
        except Exception as exc:
            index = first + len(frames) - common
            exc.add_note(f"(while packing input {index} of job {state.id}, {state.function})")
            self._abort(state, exc)
            return
        n = len(frames) - common
        header = {"job": state.id, "function": state.function, "total": state.total,
                  "first": first, "count": n}
        if common:
            header["common"] = True
        if first == 0:
            header.update(state.options)
        if not self._jobs_open():
            self._last_heard = now  # the broker's silence counts from now
        self._send(P.encode(P.SIG_CLIENT, P.SUBMIT, header, frames), "SUBMIT")
        state.sent += n
        with self._lock:
            self._sent_total += n
        state.opened = True
        self._session = True
        self._window -= n
        self._outstanding = state.id
        self._outstanding_count = n

    def _abort(self, state: _JobState, error: BaseException) -> None:
        """Fails a job whose tasks could not be produced, and closes it on the broker."""
        self._fail(state, error)
        if state.opened and not state.cancel_sent:
            state.cancel_sent = True
            self._send(P.encode(P.SIG_CLIENT, P.CANCEL, {"job": state.id}), "CANCEL")
            # keep it until DONE (cancelled) so that its id's late messages are recognised
        else:
            self._forget(state)

    def _keepalive(self, now: float) -> None:
        if not self._jobs_open():
            return  # PROTOCOL.md §9: heartbeat while jobs are open or a SUBMIT is unanswered
        silence = self._heartbeat * BROKER_LIVENESS
        if now - self._last_heard > silence:
            error = BrokerGone(
                f"the broker at {self.where} did not answer for {silence:.1f} s (stopped, "
                f"crashed or unreachable): {_hint(self.source)}")
            log.warning("%s; failing %d open job(s)", error, len(self._jobs))
            self._fail_all(error)
            self._new_socket()
            return
        if now - self._last_sent >= self._heartbeat:
            self._send(P.encode(P.SIG_CLIENT, P.HEARTBEAT, {}), "HEARTBEAT")

    # -- ending jobs

    def _close(self, state: _JobState, error: BaseException | None) -> None:
        """Ends a job for its readers: they get its remaining results, then the end or `error`."""
        if state.closed:
            return
        self._flush(state)  # its results first, then the end
        with self._lock:
            state.closed = True
            state.error = error
            # Results that will never come are no longer in flight.
            self._settled += state.sent - state.delivered
            state.delivered = state.sent
            state.queue.put(_DONE if error is None else error)
        state.done_event.set()

    def _fail(self, state: _JobState, error: BaseException) -> None:
        self._close(state, error)

    def _fail_all(self, error: BaseException) -> None:
        for state in list(self._jobs.values()):
            self._fail(state, error)
        self._jobs.clear()
        self._outstanding = None
        self._outstanding_count = 0

    def _forget(self, state: _JobState) -> None:
        self._jobs.pop(state.id, None)


class _SendFailed(Exception):
    pass


_RESULTS_BYTE = bytes((P.RESULTS,))
_FRAME_TYPES = (bytes, bytearray, memoryview, zmq.Frame)
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def _fast_results(frames):
    """(header, payload) of a broker RESULTS in its usual form, checked as strictly as
    protocol.decode checks it, in a fraction of the time; None for anything else (then
    protocol.decode decides, and names what is wrong).

    The usual form: signature ACMEB1, a header that is a 2-entry fixmap (so no key can appear
    twice) with exactly `job` and `results`, entries [index u64, status 0..5, attempts u32 >= 1],
    one payload frame per entry."""
    head = frames[2]
    if frames[0] != P.SIG_BROKER or not head or head[0] != 0x82 or len(head) > P.MAX_HEADER:
        return None
    try:
        header = msgpack.unpackb(head, raw=False)
    except Exception:
        return None
    if header.__class__ is not dict or len(header) != 2:
        return None
    job = header.get("job")
    entries = header.get("results")
    if (job.__class__ is not int or not 0 <= job <= _U64 or entries.__class__ is not list
            or not entries or len(entries) != len(frames) - 3):
        return None
    for entry in entries:
        if entry.__class__ is not list or len(entry) != 3:
            return None
        index, status, attempts = entry
        if (index.__class__ is not int or status.__class__ is not int
                or attempts.__class__ is not int or not 0 <= index <= _U64
                or not 0 <= status <= 5 or not 1 <= attempts <= _U32):
            return None
    return header, frames[3:]
