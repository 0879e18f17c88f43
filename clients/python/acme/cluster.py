"""A private acme cluster on this machine: acme-broker and Python workers, for as long as the
client process lives.

    from acme.cluster import LocalCluster
    with LocalCluster(4) as cluster:
        client = cluster.client()
        ...

`LocalCluster` starts `acme-broker --bind ipc://<private temp dir>/broker` and `n_workers`
copies of `python -m acme.worker` at once (the workers retry connecting on their own, so
nobody waits for the broker), then waits until every worker has registered (STATUS). Every
child gets PR_SET_PDEATHSIG, so that nothing outlives the client even when it is SIGKILLed;
`close()` (also at exit) terminates them, kills what lingers, and removes the temp dir.

`set_default()` / `get_default()` hold the cluster that `local_cluster_setup()` and friends
started, which `ParallelMap` uses when given none.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from .client import AcmeError, BrokerGone, Client, query_status

__all__ = ["LocalCluster", "get_default", "set_default"]

#: How long close() lets children end after SIGTERM before it kills them.
_GRACE = 2.0
#: Lines of a log quoted in an error.
_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1
#: Longest ipc:// path ZeroMQ accepts (sun_path is 108 bytes with its terminator).
_MAX_IPC_PATH = 100


def _cpu_count() -> int:
    """The CPUs this process may use (its affinity mask), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _find_broker() -> tuple[str, str]:
    """(path, how it was found) of acme-broker: $ACME_BROKER_EXE, acme._paths.BIN_DIR, PATH."""
    configured = os.environ.get("ACME_BROKER_EXE")
    if configured:
        if not os.access(configured, os.X_OK) or os.path.isdir(configured):
            raise AcmeError(f"acme-broker not found: $ACME_BROKER_EXE is {configured!r}, which is "
                            f"not an executable file; fix or unset ACME_BROKER_EXE")
        return configured, "$ACME_BROKER_EXE"
    try:
        from . import _paths  # written by `cmake --install`
        candidate = os.path.join(_paths.BIN_DIR, "acme-broker")
        if os.access(candidate, os.X_OK):
            return candidate, "acme._paths.BIN_DIR"
    except ImportError:
        pass
    found = shutil.which("acme-broker")
    if found:
        return found, "PATH"
    raise AcmeError("acme-broker not found: LocalCluster needs it; install acme (cmake --install) "
                    "so that it is on PATH, or set ACME_BROKER_EXE to its path")


def _tail(path: str, lines: int = _TAIL_LINES) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 16384))
            data = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _exit_text(returncode: int) -> str:
    """"exited with status 1", "was killed by SIGKILL"."""
    if returncode is not None and returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _child_setup_for(parent: int):
    """The preexec_fn of every child: die with the thread that started it (PR_SET_PDEATHSIG
    SIGKILL), and at once if the parent is already gone. Resolved before fork: the child only
    calls into libc."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    kill_signal = int(signal.SIGKILL)
    getppid = os.getppid
    exit_now = os._exit

    def setup():
        prctl(_PR_SET_PDEATHSIG, kill_signal, 0, 0, 0)
        if getppid() != parent:
            exit_now(127)
    return setup


class _Spawner:
    """A thread that starts the children and lives as long as the cluster: PR_SET_PDEATHSIG fires
    when the *thread* that forked a child ends, so the children must not be started by a
    short-lived thread of the user's (e.g. a thread pool's)."""

    def __init__(self):
        self._requests: "collections.deque" = collections.deque()
        self._ready = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="acme-cluster-spawner", daemon=True)
        self._thread.start()

    def _run(self):
        with self._ready:
            while True:
                while not self._requests and not self._stop:
                    self._ready.wait()
                if self._stop and not self._requests:
                    return
                function, box, done = self._requests.popleft()
                try:
                    box.append((True, function()))
                except BaseException as exc:  # handed to the caller
                    box.append((False, exc))
                done.set()

    def call(self, function):
        box, done = [], threading.Event()
        with self._ready:
            self._requests.append((function, box, done))
            self._ready.notify()
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def stop(self):
        with self._ready:
            self._stop = True
            self._ready.notify()
        self._thread.join(5.0)


_live: "weakref.WeakSet[LocalCluster]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for cluster in list(_live):
        cluster.close()


class LocalCluster:
    """acme-broker and `n_workers` Python workers (`python -m acme.worker`) on this machine.

    `n_workers` None: one per CPU this process may use. Each worker runs `slots_per_worker`
    tasks at once. The workers run with this process's `sys.path` as PYTHONPATH and its cwd,
    so they import what the client imports; `env` adds variables to theirs. `broker_args` are
    extra acme-broker options (e.g. ["--no-worker-timeout-ms", "2000"]). Returns once every
    worker has registered, else raises AcmeError naming what failed (within `start_timeout`).
    """

    source = "LocalCluster"

    def __init__(self, n_workers: int | None = None, *, slots_per_worker: int = 1,
                 start_timeout: float = 60.0, env: dict | None = None,
                 broker_args: list[str] | None = None):
        self.n_workers = _cpu_count() if n_workers is None else int(n_workers)
        if self.n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, got {n_workers}")
        self.slots_per_worker = int(slots_per_worker)
        if self.slots_per_worker < 1:
            raise ValueError(f"slots_per_worker must be at least 1, got {slots_per_worker}")
        self._closed = False
        self._processes: list[subprocess.Popen] = []
        self._client: Client | None = None
        self._lock = threading.Lock()
        broker_exe, found_by = _find_broker()
        self.log_dir = self._make_dir()
        self.endpoint = f"ipc://{self.log_dir}/broker"
        self._spawner = _Spawner()
        _live.add(self)
        try:
            self._start(broker_exe, found_by, env or {}, list(broker_args or ()))
            # A worker of S > 1 slots runs S single-slot processes (acme.worker): count slots.
            self._wait(self.n_workers, self.n_workers * self.slots_per_worker, start_timeout)
        except BaseException:
            self.close()
            raise

    # ---- start-up ----

    @staticmethod
    def _make_dir() -> str:
        path = tempfile.mkdtemp(prefix="acme-cluster-")
        if len(path) + len("/broker") > _MAX_IPC_PATH:  # a long $TMPDIR: ipc paths are short
            shutil.rmtree(path, ignore_errors=True)
            path = tempfile.mkdtemp(prefix="acme-cluster-", dir="/tmp")
        return path

    def _start(self, broker_exe: str, found_by: str, extra_env: dict, broker_args: list) -> None:
        setup = _child_setup_for(os.getpid())
        devnull = subprocess.DEVNULL

        def popen(argv, log_name, env=None):
            with open(os.path.join(self.log_dir, log_name), "wb") as log:
                return subprocess.Popen(argv, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=os.getcwd(), preexec_fn=setup,
                                        close_fds=True)

        broker_argv = [broker_exe, "--bind", self.endpoint, "--log-level", "warn", *broker_args]
        try:
            self.broker = self._spawner.call(lambda: popen(broker_argv, "broker.log"))
        except OSError as exc:
            raise AcmeError(f"cannot start acme-broker {broker_exe} (found by {found_by}): "
                            f"{exc}") from None
        self._processes.append(self.broker)

        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in extra_env.items()})
        paths = [p if p else os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.pop("ACME_BROKER", None)  # the worker's endpoint is --connect
        env["ACME_CRASH_DIR"] = self.log_dir  # crash_report() reads them
        # One supervisor runs every slot as a single-slot worker process and restarts one that
        # dies (a task that crashes its worker must not shrink the pool until the map hangs).
        worker_argv = [sys.executable, "-m", "acme.worker", "--connect", self.endpoint,
                       "--slots", str(self.n_workers * self.slots_per_worker), "--supervise",
                       "--parent-pid", str(os.getpid())]
        self.workers: list[subprocess.Popen] = []
        try:
            worker = self._spawner.call(lambda: popen(worker_argv, "worker-0.log", env))
        except OSError as exc:
            raise AcmeError(f"cannot start the Python workers ({sys.executable} -m acme.worker): "
                            f"{exc}") from None
        self.workers.append(worker)
        self._processes.append(worker)

    def _problem(self) -> str | None:
        """Why the cluster cannot come up: a child that has exited, with its log's tail."""
        if self.broker.poll() is not None:
            return (f"acme-broker (pid {self.broker.pid}) {_exit_text(self.broker.returncode)}; "
                    f"its log ({self.log_dir}/broker.log) ends:\n"
                    f"{_tail(os.path.join(self.log_dir, 'broker.log')) or '(empty)'}")
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                log = os.path.join(self.log_dir, f"worker-{i}.log")
                return (f"Python worker {i}, the supervisor of the cluster's worker processes "
                        f"(pid {worker.pid}, {sys.executable} -m acme.worker --supervise), "
                        f"{_exit_text(worker.returncode)}; its log ({log}) ends:\n"
                        f"{_tail(log) or '(empty)'}")
        return None

    def wait_for_workers(self, n: int | None = None, timeout: float = 60.0) -> int:
        """Waits until `n` worker registrations (default: all the cluster's) are live at the
        broker, polling STATUS; returns how many are. Raises AcmeError naming how many came
        (with the tail of a worker's log) after `timeout` seconds, or as soon as the broker or a
        worker process exits."""
        if n is None:
            n = self.n_workers * self.slots_per_worker if self.slots_per_worker > 1 \
                else self.n_workers
        return self._wait(n, 0, timeout)

    def _wait(self, n: int, slots: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        online = 0
        online_slots = 0
        last_error = None
        while True:
            problem = self._problem()
            if problem is not None:
                raise AcmeError(f"LocalCluster: {online} of {n} workers registered; {problem}")
            left = deadline - time.monotonic()
            try:
                status = query_status(self.endpoint, timeout=max(0.05, min(1.0, left)))
                workers = status.get("workers", ())
                online = len(workers) + status.get("workers_omitted", 0)
                online_slots = sum(w.get("slots", 0) for w in workers)
                last_error = None
            except BrokerGone as exc:
                last_error = exc
            if online >= n and online_slots >= slots:
                return online
            if time.monotonic() >= deadline:
                log = os.path.join(self.log_dir, "worker-0.log")
                why = f" (the broker did not answer: {last_error})" if last_error else ""
                raise AcmeError(
                    f"LocalCluster: only {online} of {n} workers registered with the broker at "
                    f"{self.endpoint} within {timeout:g} s{why}; the log of worker 0 ({log}) "
                    f"ends:\n{_tail(log) or '(empty)'}")
            time.sleep(0.02)

    # ---- use ----

    @property
    def pids(self) -> list[int]:
        """Process ids of the broker and the workers."""
        return [p.pid for p in self._processes]

    def status(self, timeout: float = 5.0) -> dict:
        """The broker's STATUS (acme.client.query_status)."""
        return query_status(self.endpoint, timeout=timeout)

    def client(self) -> Client:
        """A Client of this cluster, shared by its callers and closed with the cluster."""
        with self._lock:
            if self._closed:
                raise AcmeError(f"LocalCluster at {self.endpoint} is closed")
            if self._client is None:
                self._client = Client(self.endpoint, source=self.source)
            return self._client

    def crash_report(self, pid) -> str:
        """The Python stack that worker process `pid` left when a task crashed it ("" if
        none): faulthandler's report, from the cluster's temp dir."""
        from .worker import read_crash_report
        return read_crash_report(self.log_dir, pid)

    # ---- shutdown ----

    def close(self) -> None:
        """Stops the workers and the broker (SIGTERM, then SIGKILL after a grace period),
        removes the temp dir. Idempotent; also runs at exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if get_default() is self:
            set_default(None)
        if client is not None:
            client.close()
        alive = [p for p in self._processes if p.poll() is None]
        for process in alive:
            try:
                process.terminate()
            except OSError:
                pass
        deadline = time.monotonic() + _GRACE
        for process in alive:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in alive:
            if process.poll() is None:
                try:
                    process.kill()
                except OSError:
                    pass
                try:
                    process.wait(5.0)
                except subprocess.TimeoutExpired:
                    pass
        spawner = getattr(self, "_spawner", None)
        if spawner is not None:
            spawner.stop()
        if getattr(self, "log_dir", None):
            shutil.rmtree(self.log_dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.n_workers} workers"
        return f"<LocalCluster {self.endpoint} ({state})>"


# ---- the default cluster ----

_default = None
_default_lock = threading.Lock()


def set_default(cluster) -> None:
    """Registers the cluster later ParallelMaps use when given none (None: forget it)."""
    global _default
    with _default_lock:
        _default = cluster


def get_default():
    """The cluster registered with set_default(), or None."""
    with _default_lock:
        return _default
