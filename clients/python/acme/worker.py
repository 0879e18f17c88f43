"""A Python acme worker: ``python3 -m acme.worker --connect ENDPOINT``.

It speaks PROTOCOL.md §6.3-§6.4, §8-§10 like the C++ runtime (``worker/src/runtime.cpp``):

- The **I/O thread** (the one that calls `Worker.run`) owns the DEALER socket: it sends READY,
  queues TASKS, sends RESULTS in batches, heartbeats and reconnects. No task runs on it, so a
  busy task never delays a heartbeat (§9).
- **Task threads** (`slots` of them) start the queued tasks themselves, in received order with
  no overtaking and at most `slots` cores' worth at once (§8), so that a batch of small tasks
  runs back to back without a thread hand-over per task. A finished task's result goes on a
  list; the I/O thread is woken (a byte on a pipe) only when that list was empty, and sends
  everything on it in one RESULTS.
- **Abandoning** a running task (CANCEL, timeout, broker gone) raises an exception in its
  thread (``PyThreadState_SetAsyncExc``); a task stuck in C code cannot be stopped that way,
  and `recycle_after` later the worker lets its other tasks end, says BYE and re-executes
  itself (§6.4.3).

Functions: the builtins of acme-worker (``echo``, ``sleep``, ``fail``, ``crash``), Python
callables shipped with the job (``acme.python``, the call convention of py-spec.md), and
named functions (``--function``, ``--module`` with ``@acme.function``), called like C++ ones:
the task frame is the array of positional arguments, the common frame the map of named ones.

With ``--slots N`` (N > 1) and no ``--threads``, this process supervises N single-slot worker
processes instead (Python threads share one GIL: processes use the cores).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import faulthandler
import importlib
import json
import logging
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Callable

import msgpack
import zmq

from . import protocol as P
from . import serial

log = logging.getLogger("acme.worker")

RECYCLE = 75  # run()'s status when the process should be replaced (EX_TEMPFAIL, like C++)
PYTHON_FUNCTION = "acme.python"
BUILTINS = ("echo", "sleep", "fail", "crash")
WELCOME_TIMEOUT = 3.0  # §9: no WELCOME within 3 x 1000 ms
DEFAULT_HEARTBEAT = 1.0  # §9: before WELCOME
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0  # §9: reconnect backoff, doubling, jittered
# Extra tasks held per slot (READY prefetch = this x slots). Measured no-op throughput through
# acme-broker, 2 single-slot workers and acme.client.Client on 2 cores: prefetch 1 ~3.4k/s,
# 2 ~6.2k/s, 4 ~13-14k/s, 8 ~20-25k/s. 4 keeps small tasks flowing; the price is a longer tail
# at the end of a job of long tasks (up to 4 queued behind a running one), hence not more.
DEFAULT_PREFETCH = 4
EXIT_USAGE = 2

# ---------------------------------------------------------------------------------------------
# Named functions


_registry: dict[str, Callable] = {}


def function(name: str | Callable | None = None):
    """Decorator: offer the function under `name` (default: its ``__name__``) to callers of
    any language, when its module is served with ``python3 -m acme.worker --module M``.

        @acme.function("square")
        def square(x): return x * x
    """
    def register(fn: Callable, fn_name: str | None = None) -> Callable:
        key = fn_name or fn.__name__
        if not 1 <= len(key.encode()) <= P.MAX_FUNCTION_NAME:
            raise ValueError(f"function name {key!r} must be 1..255 bytes (PROTOCOL.md §5.6)")
        if key in (PYTHON_FUNCTION, *BUILTINS):
            raise ValueError(f"function name {key!r} is taken by a builtin of acme workers")
        fn.__acme_name__ = key
        _registry[key] = fn
        return fn

    if callable(name):  # @function without parentheses
        return register(name)
    return lambda fn: register(fn, name)


def registered_functions() -> dict[str, Callable]:
    """The functions decorated with `function` so far, by name."""
    return dict(_registry)


def _import_attr(target: str) -> Callable:
    """``module:attr.path`` -> the object; errors name the target and what to do."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"'{target}' is not module:attr (e.g. mypkg.mymod:square)")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import module '{module_name}' for '{target}': {error} "
                          f"(is it on PYTHONPATH? sys.path[0] is {sys.path[0]!r})") from error
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module '{module_name}' has no attribute '{attr}' "
                                 f"(for '{target}')") from None
    return obj


def parse_function_option(text: str) -> tuple[str, Callable]:
    """``NAME=module:attr`` or ``module:attr`` (named ``module:attr``) -> (name, callable)."""
    name, sep, target = text.partition("=")
    if not sep:
        name, target = text, text
    fn = _import_attr(target)
    if not callable(fn):
        raise TypeError(f"'{target}' is a {type(fn).__name__}, not a function")
    return name, fn


def module_functions(module_name: str) -> dict[str, Callable]:
    """The functions of module `module_name` decorated with `function`, by name."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import module '{module_name}': {error}") from error
    found = {fn.__acme_name__: fn for fn in vars(module).values()
             if callable(fn) and hasattr(fn, "__acme_name__")}
    found.update({name: fn for name, fn in _registry.items()
                  if getattr(fn, "__module__", None) == module.__name__})
    if not found:
        log.warning("module %s has no function decorated with @acme.function", module_name)
    return found


# ---------------------------------------------------------------------------------------------
# Tasks


class _Abandoned(BaseException):
    """Raised in a task's thread to stop an abandoned task (never escapes the worker)."""


class BuiltinError(Exception):
    """An error of a builtin, reported like acme-worker does: its text and C++ kind."""

    def __init__(self, message: str, kind: str = "std::invalid_argument"):
        super().__init__(message)
        self.kind = kind


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
_set_async_exc.restype = ctypes.c_int

QUEUED, RUNNING, RETURNED = 0, 1, 2


class _CommonFrameFailed(Exception):
    """A job's common frame could not be decoded: raised afresh for each of its tasks (one
    shared exception object would collect every task's traceback)."""

    def __init__(self, message: str, kind: str, tb: str):
        super().__init__(message)
        self.kind = kind
        self.tb = tb


class _JobState:
    """What the worker keeps per broker job (§6.4.2): the common frame, decoded once (on a
    task thread, lazily: unpickling may import modules) and shared by the job's tasks."""
    __slots__ = ("frame", "_lock", "_done", "_value", "_error")

    def __init__(self, frame):
        self.frame = frame
        self._lock = threading.Lock()
        self._done = False
        self._value = None
        self._error: tuple[str, str, str] | None = None  # (message, kind, traceback)

    def get(self, decoder: Callable) -> Any:
        if not self._done:
            with self._lock:
                if not self._done:
                    try:
                        self._value = decoder(self.frame)
                    except BuiltinError as error:  # a message made for the user: as it is
                        self._error = (str(error), error.kind, "")
                    except Exception as error:  # every task of the job fails with it
                        kind = type(error).__name__
                        self._error = (f"{kind}: {error}", kind, _user_traceback(error))
                    self._done = True
        if self._error is not None:
            raise _CommonFrameFailed(*self._error)
        return self._value

    @property
    def value(self) -> Any:
        """The decoded common frame, or None (not decoded yet, or failed)."""
        return self._value if self._done else None


class Task:
    __slots__ = ("job", "index", "attempt", "cores", "timeout", "deadline", "function",
                 "runner", "payload", "state", "abandoned", "abandoned_at", "cancelled",
                 "thread_id", "interrupted", "job_state")

    def __init__(self, job, index, attempt, cores, timeout, function, runner, payload,
                 job_state):
        self.job = job
        self.index = index
        self.attempt = attempt
        self.cores = cores
        self.timeout = timeout
        self.deadline = 0.0
        self.function = function
        self.runner = runner
        self.payload = payload
        self.job_state = job_state
        self.state = QUEUED
        self.abandoned = False
        self.abandoned_at = 0.0
        self.cancelled = False  # read by long builtins (sleep) to return early
        self.thread_id = 0
        self.interrupted = False


def _buffer(payload) -> memoryview | bytes:
    if isinstance(payload, (bytes, memoryview)):
        return payload
    return payload.buffer  # zmq.Frame


def _type_name(value: Any) -> str:
    """msgpack's name for a value's type, as acme-worker's messages say it."""
    if value is None:
        return "nil"
    return {bool: "bool", int: "int", float: "float", str: "str", bytes: "bin", list: "array",
            dict: "map"}.get(type(value), "ext")


def _unpack_task_frame(task: Task, **options) -> Any:
    try:
        return msgpack.unpackb(_buffer(task.payload), **options)
    except msgpack.ExtraData:
        raise BuiltinError(f"the task frame of {task.function}() has bytes after its msgpack "
                           f"value") from None
    except (ValueError, TypeError) as error:
        raise BuiltinError(f"the task frame of {task.function}() is not a msgpack value: "
                           f"{error}") from None


def _expect_arity(args: Any, name: str, low: int, high: int) -> None:
    if type(args) is not list:
        raise BuiltinError(f"{name}() expects an array of arguments, got {_type_name(args)}")
    if not low <= len(args) <= high:
        counts = str(low) if low == high else f"{low}..{high}"
        raise BuiltinError(f"{name}() takes {counts} argument{'' if high == 1 else 's'} but the "
                           f"task has {len(args)}")


def _echo(worker: "Worker", task: Task) -> bytes:
    """One argument comes back as it is; none or several come back as the array (the frame's
    own bytes: ext values and all pass through unchanged)."""
    data = _buffer(task.payload)
    try:
        msgpack.unpackb(data, raw=True, strict_map_key=False)
    except msgpack.ExtraData:
        raise BuiltinError("the task frame of echo() has bytes after its msgpack value") from None
    except TypeError:
        pass  # an unhashable map key in Python: still one msgpack value
    except ValueError as error:
        raise BuiltinError(f"the task frame of echo() is not a msgpack value: {error}") from None
    view = memoryview(data)
    head = view[0]
    if head == 0x91:
        return bytes(view[1:])
    if head == 0xDC and view[1:3] == b"\x00\x01":
        return bytes(view[3:])
    if head == 0xDD and view[1:5] == b"\x00\x00\x00\x01":
        return bytes(view[5:])
    return bytes(view)


def _sleep(worker: "Worker", task: Task) -> bytes:
    args = _unpack_task_frame(task, raw=False, strict_map_key=False)
    _expect_arity(args, "sleep", 1, 1)
    seconds = args[0]
    if type(seconds) not in (int, float):
        raise BuiltinError(f"sleep() argument 1: expected float, got {_type_name(seconds)}")
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise BuiltinError("sleep() needs a finite number of seconds >= 0")
    # Short steps, so that a cancel or timeout ends it within 10 ms.
    until = time.monotonic() + seconds
    while not task.cancelled:
        left = until - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.01))
    return msgpack.packb(seconds)


def _render(value: Any) -> str:
    """A JSON-like rendering of a msgpack value, as msgpack-c's operator<< prints it."""
    def plain(v):
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, msgpack.ExtType):
            return f"EXT(type:{v.code},size:{len(v.data)})"
        raise TypeError
    return json.dumps(value, separators=(",", ":"), default=plain, ensure_ascii=False)


def _fail(worker: "Worker", task: Task) -> bytes:
    args = _unpack_task_frame(task, raw=False, strict_map_key=False)
    _expect_arity(args, "fail", 0, 1)
    if not args:
        raise BuiltinError("fail() was called", "std::runtime_error")
    message = args[0]
    raise BuiltinError(message if type(message) is str else _render(message),
                       "std::runtime_error")


def _crash(worker: "Worker", task: Task) -> bytes:
    os.abort()  # for fault tests: the worker process dies with this task running


_BUILTIN_RUNNERS = {"echo": _echo, "sleep": _sleep, "fail": _fail, "crash": _crash}

# A result of at least this many bytes is written before its task thread starts another task,
# waiting at most _RESULT_LEAVES_TIMEOUT seconds for it.
_TRACK_RESULTS_FROM = 64 * 1024
_RESULT_LEAVES_TIMEOUT = 1.0


def _decode_kwargs(frame) -> dict:
    if frame is None:
        return {}
    kwargs = serial.unpackb(frame)
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(type(k) is str for k in kwargs):
        raise TypeError(f"the common frame must be a map of named arguments with str keys, "
                        f"not {serial.describe_type(kwargs)}")
    return kwargs


def _named_runner(name: str, fn: Callable) -> Callable:
    """A runner for a named function: positional array + kwargs map, portable result."""
    def run(worker: "Worker", task: Task) -> bytes:
        args = serial.unpackb(_buffer(task.payload))
        if type(args) is not list:
            raise TypeError(f"{name}() expects an array of arguments as its task frame, got "
                            f"{serial.describe_type(args)}")
        kwargs = task.job_state.get(_decode_kwargs) if task.job_state else {}
        value = fn(*args, **kwargs)
        try:
            return serial.packb(value, python=False)
        except TypeError as error:
            raise TypeError(f"{name}() returned {serial.describe_type(value)}, which cannot go "
                            f"back to its caller: {error}") from None
    return run


class _PythonCall:
    """The decoded common frame of an ``acme.python`` job (py-spec.md)."""
    __slots__ = ("fn", "name", "args", "kwargs", "iter_args", "iter_kwargs", "taskid", "write")

    def __init__(self, frame):
        if frame is None:
            raise ValueError("an acme.python job needs a common frame with the function")
        spec = serial.unpackb(frame)
        if not isinstance(spec, dict) or "fn" not in spec:
            raise ValueError(f"the common frame of an acme.python job must be a map with 'fn', "
                             f"not {serial.describe_type(spec)}")
        fn = spec["fn"]
        name = spec.get("name") or "function"
        try:
            if isinstance(fn, (bytes, bytearray)):
                import pickle
                fn = pickle.loads(fn)
            elif isinstance(fn, str):
                fn = _import_attr(fn)
        except Exception as error:
            hint = ""
            if isinstance(error, (ImportError, AttributeError)):
                hint = (" — the workers import it by module name: make the module importable "
                        "there (PYTHONPATH, the working directory) or define the function in "
                        "the script (__main__), which is sent by value")
            raise BuiltinError(f"could not load the map's function '{name}' on worker "
                               f"{socket.gethostname()}:{os.getpid()}: "
                               f"{type(error).__name__}: {error}{hint}",
                               type(error).__name__) from None
        if not callable(fn):
            raise TypeError(f"the function of an acme.python job is "
                            f"{serial.describe_type(fn)}, not callable")
        self.fn = fn
        self.name = spec.get("name") or getattr(fn, "__name__", "function")
        self.args = list(spec.get("args") or ())
        self.kwargs = dict(spec.get("kwargs") or {})
        self.iter_args = list(spec.get("iter_args") or ())
        self.iter_kwargs = list(spec.get("iter_kwargs") or ())
        self.taskid = bool(spec.get("taskid"))
        self.write = spec.get("write")
        needed = max(self.iter_args, default=-1) + 1
        if len(self.args) < needed:
            self.args.extend([None] * (needed - len(self.args)))


def _run_python(worker: "Worker", task: Task) -> bytes:
    call: _PythonCall = task.job_state.get(_PythonCall) if task.job_state else _PythonCall(None)
    frame = serial.unpackb(_buffer(task.payload))
    try:
        task_id, values, kvalues = frame
    except (TypeError, ValueError):
        raise ValueError(f"an acme.python task frame is [task_id, [args], [kwargs]], not "
                         f"{serial.describe_type(frame)}") from None
    args = call.args
    if call.iter_args:
        args = list(args)
        for position, value in zip(call.iter_args, values):
            args[position] = value
    kwargs = call.kwargs
    if call.iter_kwargs or call.taskid:
        kwargs = dict(kwargs)
        kwargs.update(zip(call.iter_kwargs, kvalues))
        if call.taskid:
            kwargs["taskID"] = task_id
    value = call.fn(*args, **kwargs)
    if call.write is not None:
        from .results import write_result  # h5py only where results are written
        value = write_result(value, task_id, call.write)
    try:
        return serial.packb(value, python=True)
    except Exception as error:  # the user's value: say which and why, not msgpack's frames
        raise BuiltinError(f"{call.name}() returned {serial.describe_type(value)} for input "
                           f"{task_id}, which cannot be sent back: {type(error).__name__}: "
                           f"{error}", type(error).__name__) from None


def _task_function(task: Task) -> str:
    """"f()" for a task of an acme.python job whose function is known, else "<function>()"."""
    if task.function == PYTHON_FUNCTION and task.job_state is not None:
        call = task.job_state.value
        if isinstance(call, _PythonCall):
            return f"{call.name}()"
    return f"{task.function}()"


def _user_traceback(error: BaseException) -> str:
    """The traceback of `error` without the worker's own frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


# ---------------------------------------------------------------------------------------------
# The worker


DISCONNECTED, AWAITING_WELCOME, REGISTERED = 0, 1, 2


def _version() -> str:
    try:
        from ._version import __version__
        return __version__
    except ImportError:
        return "0"


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


class Worker:
    """One worker registration loop: `run()` serves until `stop()`, a broker BYE without
    reconnect (0), giving up (1), or a stuck task (`RECYCLE`: replace the process).

    `functions` maps names to Python callables served with the C++ convention (default: the
    functions decorated with `function` so far); the builtins and ``acme.python`` are always
    offered. `prefetch` defaults to DEFAULT_PREFETCH per slot; `recycle_after` and
    `give_up_after` are in seconds (0: never); `parent_pid`: stop when that process is gone.
    """

    def __init__(self, endpoint: str, slots: int = 1, prefetch: int | None = None,
                 functions: dict[str, Callable] | None = None, launch: str | None = None, *,
                 recycle_after: float = 1.0, give_up_after: float = 0.0,
                 parent_pid: int | None = None, agent: str | None = None):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, not {slots}")
        if prefetch is None:
            prefetch = DEFAULT_PREFETCH * slots
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, not {prefetch}")
        if launch is not None and len(launch.encode()) > P.MAX_TEXT:
            raise ValueError("a launch id is at most 4096 bytes")
        self.endpoint = endpoint
        self.slots = slots
        self.prefetch = prefetch
        self.launch = launch or None
        self.recycle_after = recycle_after
        self.give_up_after = give_up_after
        self.parent_pid = parent_pid
        self.agent = agent or f"acme-python-worker {_version()}"
        self.host = socket.gethostname()
        self.pid = os.getpid()
        functions = registered_functions() if functions is None else dict(functions)
        self._runners: dict[str, Callable] = dict(_BUILTIN_RUNNERS)
        self._runners[PYTHON_FUNCTION] = _run_python
        for name, fn in functions.items():
            if not 1 <= len(name.encode()) <= P.MAX_FUNCTION_NAME:
                raise ValueError(f"function name {name!r} must be 1..255 bytes")
            self._runners[name] = _named_runner(name, fn)

        # Shared with the task threads, under _lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queued: collections.deque[Task] = collections.deque()
        self._running: list[Task] = []
        self._free_cores = slots
        self._done: list = []  # (job, index, status, frame) to send
        # Every call on the socket holds _sock_lock (taken after _lock when both are held): the
        # I/O thread's, and a task thread's sending its own result (see _task_thread).
        self._sock_lock = threading.Lock()
        self._recycling = False
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop_requested = False
        self._threads: list[threading.Thread] = []

        # The I/O thread's own state.
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._poller: select.poll | None = None  # the socket's ZMQ_FD and the wake-up pipe
        self._state = DISCONNECTED
        self._jobs: dict[int, _JobState] = {}
        self._heartbeat = DEFAULT_HEARTBEAT
        self._liveness = 3
        self._backoff = BACKOFF_MIN
        self._next_connect = 0.0
        self._ready_sent = 0.0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._worker_id = None
        self._dropped = 0
        self._parent_is_ppid = parent_pid is not None and parent_pid == os.getppid()
        self._next_parent_check = 0.0

    # ---- public

    def stop(self) -> None:
        """Asks run() to return (BYE to the broker); thread-safe and fine in a signal handler."""
        self._stop_requested = True
        self._wake()

    @property
    def registered(self) -> bool:
        return self._state == REGISTERED

    def run(self) -> int:
        self._context = zmq.Context()
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        for i in range(self.slots):
            thread = threading.Thread(target=self._task_thread, name=f"acme-task-{i}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        now = time.monotonic()
        self._last_heard = now
        self._next_connect = now
        try:
            return self._loop()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._close_socket(0)
            if self._context is not None:
                self._context.term()
                self._context = None

    def busy_threads(self) -> int:
        """Task threads still inside a function (stuck ones included)."""
        with self._lock:
            return len(self._running)

    # ---- the I/O loop

    def _loop(self) -> int:
        while True:
            now = time.monotonic()
            if self._stop_requested:
                if self._socket is not None and self._state != DISCONNECTED:
                    self._send([P.SIG_WORKER, b"\x04",
                                msgpack.packb({"reason": "worker stopping"})], now)
                self._abandon_all(now)
                self._close_socket(500)
                log.info("stopped")
                return 0
            if self._state == DISCONNECTED and now >= self._next_connect:
                self._connect(now)

            timeout = max(0.0, min(self._next_wakeup(now) - now, 1.0))
            if self._socket is not None and self._input_pending():
                timeout = 0.0  # a send of ours may have taken the ZMQ_FD's signal for it
            if self._poller is not None:
                # ZMQ_FD only says "look at ZMQ_EVENTS": _receive_all always looks.
                self._poller.poll(math.ceil(timeout * 1000))
            else:
                time.sleep(timeout)
            due = now + timeout
            now = time.monotonic()
            if now - due > self._interval() * self._liveness:
                self._warn_starved(now - due)
            self._drain_wake()
            self._flush_results(now)
            if self._socket is not None:
                status = self._receive_all(now)
                if status is not None:
                    return status
            self._expire_timeouts(now)
            self._flush_results(now)
            status = self._check_broker(now)
            if status is None:
                status = self._check_stuck(now)
            if status is None:
                status = self._check_parent(now)
            if status is not None:
                return status
            if self._socket is not None and now - self._last_sent >= self._interval():
                self._send([P.SIG_WORKER, b"\x03", b"\x80"], now)

    def _warn_starved(self, late: float) -> None:
        """The I/O thread ran `late` seconds after it was due: a task held the GIL (a long C
        call that does not release it), so no heartbeat went out meanwhile."""
        with self._lock:
            running = [t for t in self._running if not t.abandoned]
        if not running:
            return
        names = ", ".join(f"task {t.index} of {_task_function(t)}" for t in running[:3])
        if len(running) > 1:
            names = f"one of {names}{', ...' if len(running) > 3 else ''}"
        log.warning("%s held the GIL for %.1f s: the broker may have declared this worker dead "
                    "(no heartbeat for that long); release the GIL in long C calls", names, late)

    def _interval(self) -> float:
        return self._heartbeat if self._state == REGISTERED else DEFAULT_HEARTBEAT

    def _next_wakeup(self, now: float) -> float:
        nxt = now + 1.0
        if self._state == DISCONNECTED:
            nxt = min(nxt, self._next_connect)
        if self._socket is not None:
            nxt = min(nxt, self._last_sent + self._interval())
        if self._state == AWAITING_WELCOME:
            nxt = min(nxt, self._ready_sent + WELCOME_TIMEOUT)
        if self._state == REGISTERED:
            nxt = min(nxt, self._last_heard + self._heartbeat * self._liveness)
        if self._state != REGISTERED and self.give_up_after > 0:
            nxt = min(nxt, self._last_heard + self.give_up_after)
        with self._lock:
            for task in self._running:
                if not task.abandoned and task.timeout > 0:
                    nxt = min(nxt, task.deadline)
                if task.abandoned and self.recycle_after > 0 and not self._recycling:
                    nxt = min(nxt, task.abandoned_at + self.recycle_after)
        return nxt

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the I/O thread is waking up anyway

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # ---- the socket

    def _connect(self, now: float) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 500)
        # No send limit: what waits to go out is bounded by the credits, and a RESULTS refused
        # by a full pipe would be lost while the broker still waits for it (§10).
        sock.setsockopt(zmq.SNDHWM, 0)
        if self.endpoint.startswith("tcp://"):
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
            sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as error:
            sock.close(0)
            raise ValueError(f"cannot connect to {self.endpoint}: {error}") from None
        with self._sock_lock:
            self._socket = sock
        self._poller = select.poll()
        self._poller.register(sock.getsockopt(zmq.FD), select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        log.debug("connecting to %s", self.endpoint)
        self._send_ready(now)

    def _close_socket(self, linger_ms: int) -> None:
        with self._sock_lock:
            if self._socket is not None:
                self._socket.close(linger_ms)
                self._socket = None
        # Still wake on the pipe while disconnected.
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)

    def _input_pending(self) -> bool:
        with self._sock_lock:
            return self._socket is not None and bool(self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def _send(self, frames: list, now: float) -> None:
        with self._sock_lock:
            if self._socket is None:
                return
            try:
                self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                log.debug("dropped a message to %s: the pipe is full", self.endpoint)
        self._last_sent = now

    def _send_ready(self, now: float) -> None:
        header = {
            "functions": sorted(self._runners),
            "slots": self.slots,
            "prefetch": self.prefetch,
            "host": self.host,
            "pid": self.pid,
            "cores": os.cpu_count() or 0,
            "memory": _machine_memory(),
            "agent": self.agent,
        }
        if self.launch:
            header["launch"] = self.launch
        self._send(P.encode(P.SIG_WORKER, P.READY, header), now)
        self._state = AWAITING_WELCOME
        self._ready_sent = now

    # ---- broker messages

    def _receive_all(self, now: float) -> int | None:
        sock = self._socket
        while sock is not None:
            with self._sock_lock:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return None
            status = self._handle(frames, now)
            if status is not None:
                return status
            sock = self._socket
        return None

    def _handle(self, frames: list, now: float) -> int | None:
        try:
            message = P.decode(frames, expect_from=b"B", to=b"W")
        except P.DecodeError as error:
            # §11: a malformed broker message is dropped and logged.
            self._dropped += 1
            if self._dropped <= 10 or self._dropped % 1000 == 0:
                log.warning("dropped a message from %s (%d so far): %s", self.endpoint,
                            self._dropped, error)
            return None
        self._last_heard = now  # §9: every message counts as a heartbeat
        command, header = message.command, message.header
        if command == P.TASKS:
            self._on_tasks(header, message.payload, now)
        elif command == P.CANCEL:
            self._on_cancel(header["job"], header["tasks"], now)
        elif command == P.WELCOME:
            if self._state == AWAITING_WELCOME:
                log.info("registered with %s as worker %d", self.endpoint, header["worker"])
            self._state = REGISTERED
            self._worker_id = header["worker"]
            self._heartbeat = max(header["heartbeat_ms"], 1) / 1000.0
            self._liveness = max(header["liveness"], 1)
            self._backoff = BACKOFF_MIN
        elif command == P.BYE:
            self._abandon_all(now)
            if header["reconnect"]:
                # §6.4.5: "I no longer know you": register again at once, same socket.
                log.info("broker %s asks to register again: %s", self.endpoint,
                         header["reason"])
                self._send_ready(now)
                return None
            log.info("broker %s said bye: %s", self.endpoint,
                     header["reason"] or "no reason given")
            self._close_socket(0)
            self._state = DISCONNECTED
            return 0
        return None  # HEARTBEAT

    def _on_tasks(self, header: dict, payload: list, now: float) -> None:
        job, name = header["job"], header["function"]
        cores, timeout = header["cores"], header["timeout_ms"] / 1000.0
        frames = iter(payload)
        if header["common"]:
            state = self._jobs[job] = _JobState(next(frames))
        else:
            state = self._jobs.get(job)
            if state is None:
                state = self._jobs[job] = _JobState(None)
        runner = self._runners.get(name)
        failures = []
        tasks = []
        if runner is None:
            # §6.4.2: the broker requeues them elsewhere and stops sending us the function.
            frame = self._error_frame(f"this worker has no function {name}", "Unsupported")
            failures = [(job, index, P.UNSUPPORTED, frame) for index, _ in header["tasks"]]
        elif cores > self.slots:
            frame = self._error_frame(f"{name}() needs {cores} cores per task but this worker "
                                      f"has {self.slots} slots", "TooManyCores")
            failures = [(job, index, P.FAILED, frame) for index, _ in header["tasks"]]
        else:
            tasks = [Task(job, index, attempt, cores, timeout, name, runner, frame, state)
                     for (index, attempt), frame in zip(header["tasks"], frames)]
        with self._cond:
            if failures:
                self._done.extend(failures)
            if tasks:
                self._queued.extend(tasks)
                self._cond.notify(len(tasks))

    def _on_cancel(self, job: int, indices: list, now: float) -> None:
        wanted = set(indices)

        def matches(task_job, task_index):
            return task_job == job and (not wanted or task_index in wanted)

        with self._cond:
            if self._queued:
                self._queued = collections.deque(
                    t for t in self._queued if not matches(t.job, t.index))
            for task in self._running:
                if matches(task.job, task.index):
                    self._abandon(task, now)
            # §6.4.3: never send the result of an abandoned task, even one that just ended.
            if self._done:
                self._done = [r for r in self._done if not matches(r[0], r[1])]
        if not wanted:
            self._jobs.pop(job, None)  # the job is over here: forget its common frame

    # ---- tasks (I/O side)

    def _error_frame(self, message: str, kind: str, tb: str = "") -> bytes:
        return P.error_map(message, kind, tb, self.host, self.pid)

    def _abandon(self, task: Task, now: float) -> None:
        """Under _lock: stop a task if it runs (an exception in its thread), never send its
        result."""
        if task.abandoned:
            return
        task.abandoned = True
        task.abandoned_at = now
        task.cancelled = True
        if task.state == RUNNING and not task.interrupted:
            task.interrupted = True
            _set_async_exc(task.thread_id, id(_Abandoned))

    def _abandon_all(self, now: float) -> None:
        with self._cond:
            self._queued.clear()
            for task in self._running:
                self._abandon(task, now)
            self._done = []
        self._jobs.clear()

    def _expire_timeouts(self, now: float) -> None:
        with self._lock:
            for task in self._running:
                if task.abandoned or task.timeout <= 0 or now < task.deadline:
                    continue
                # §6.4.2: send timed-out, then abandon; its cores stay taken until it returns.
                ms = round(task.timeout * 1000)
                self._done.append((task.job, task.index, P.TIMED_OUT, self._error_frame(
                    f"task {task.index} of {task.function}() ran longer than its timeout of "
                    f"{ms} ms", "TimedOut")))
                self._abandon(task, now)

    def _flush_results(self, now: float) -> None:
        if not self._done:
            return
        with self._lock:
            done, self._done = self._done, []
        if self._socket is None or not done:
            return
        # One RESULTS for all that are ready (§6.3.2), split so each header stays small (§5.6).
        step = P.MAX_ENTRIES_PER_MESSAGE
        for first in range(0, len(done), step):
            chunk = done[first:first + step]
            header = msgpack.packb({"results": [[j, i, s] for j, i, s, _ in chunk]})
            self._send([P.SIG_WORKER, b"\x06", header, *[r[3] for r in chunk]], now)

    def _check_stuck(self, now: float) -> int | None:
        # §6.4.3: a function that ignores cancellation holds its cores; only a new process
        # frees them.
        if self.recycle_after <= 0:
            return None
        with self._cond:
            stuck = next((t for t in self._running if t.abandoned
                          and now - t.abandoned_at >= self.recycle_after), None)
            if stuck is None:
                if self._recycling:
                    self._recycling = False
                    log.info("the stuck task returned after all; starting tasks again")
                    self._cond.notify_all()
                return None
            busy = sum(1 for t in self._running if not t.abandoned)
            if not self._recycling:
                self._recycling = True
                log.warning("task %d of job %d (%s()) has not returned %d ms after it was "
                            "abandoned; this worker starts no more tasks and is replaced%s",
                            stuck.index, stuck.job, stuck.function,
                            (now - stuck.abandoned_at) * 1000,
                            f" when its {busy} other running tasks end" if busy else "")
        if busy:
            return None
        self._flush_results(now)
        if self._socket is not None and self._state != DISCONNECTED:
            # The broker requeues what this worker still holds without blame (§6.3.4).
            reason = f"recycling: task {stuck.index} of job {stuck.job} is stuck in " \
                     f"{stuck.function}()"
            self._send(P.encode(P.SIG_WORKER, P.BYE, {"reason": reason}), now)
        with self._lock:
            self._queued.clear()
        self._close_socket(500)
        self._state = DISCONNECTED
        return RECYCLE

    # ---- liveness (§9)

    def _check_broker(self, now: float) -> int | None:
        if self._state == AWAITING_WELCOME and now - self._ready_sent >= WELCOME_TIMEOUT:
            self._broker_gone("no WELCOME within 3 s", now)
        elif self._state == REGISTERED and \
                now - self._last_heard >= self._heartbeat * self._liveness:
            self._broker_gone(f"silent for {(now - self._last_heard) * 1000:.0f} ms", now)
        if self._state != REGISTERED and self.give_up_after > 0 and \
                now - self._last_heard >= self.give_up_after:
            log.warning("giving up: no broker at %s for %.0f s", self.endpoint,
                        now - self._last_heard)
            self._abandon_all(now)
            self._close_socket(0)
            self._state = DISCONNECTED
            return 1
        return None

    def _broker_gone(self, why: str, now: float) -> None:
        # §9: abandon everything, forget common frames, new socket after a jittered backoff.
        delay = random.uniform(self._backoff / 2, self._backoff)
        with self._lock:
            held = len(self._queued) + sum(1 for t in self._running if not t.abandoned)
        log.warning("broker %s gone (%s); abandoning %d tasks, reconnecting in %d ms",
                    self.endpoint, why, held, delay * 1000)
        self._abandon_all(now)
        self._close_socket(0)
        self._state = DISCONNECTED
        self._next_connect = now + delay
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _check_parent(self, now: float) -> int | None:
        if self.parent_pid is None or now < self._next_parent_check:
            return None
        self._next_parent_check = now + 0.5
        gone = self._parent_is_ppid and os.getppid() != self.parent_pid
        if not gone:
            try:
                os.kill(self.parent_pid, 0)
            except ProcessLookupError:
                gone = True
            except PermissionError:
                pass
        if not gone:
            return None
        log.info("parent process %d is gone; stopping", self.parent_pid)
        self._stop_requested = True
        return None  # the next turn says BYE and returns 0

    # ---- task threads

    def _can_start(self) -> bool:
        return (not self._recycling and not self._closing and bool(self._queued)
                and self._queued[0].cores <= self._free_cores)

    def _task_thread(self) -> None:
        thread_id = threading.get_ident()
        cond = self._cond
        while True:
            with cond:
                while not self._can_start():
                    if self._closing:
                        return
                    cond.wait()
                task = self._queued.popleft()
                self._free_cores -= task.cores
                task.state = RUNNING
                task.thread_id = thread_id
                self._running.append(task)
                if task.timeout > 0:
                    task.deadline = time.monotonic() + task.timeout
                    self._wake()  # the I/O thread must watch the new deadline
                if self.slots > 1 and self._queued:
                    cond.notify()  # another thread may start the next one too
            status, frame = self._execute(task, thread_id)
            sent = None
            with cond:
                self._running.remove(task)
                self._free_cores += task.cores
                if not task.abandoned:
                    # §8/§10: after a worker dies, the broker blames the oldest tasks it still
                    # has in flight there. A finished task whose result had not left yet would
                    # be blamed for a crash of the next one, and the crashing one spared. So
                    # this thread sends the result itself (under _sock_lock; no hand-over to
                    # the I/O thread) ...
                    sent = self._send_result(task.job, task.index, status, frame)
                elif self._recycling:
                    self._wake()  # the stuck one may have returned, or the last busy one
                if self.slots > 1 and self._queued:
                    cond.notify()
            if sent is not None:
                # ... and, for a large result, starts no other task before libzmq's I/O
                # thread has written it: a crash of the next task would lose the rest with the
                # process, and the broker would blame (and rerun) the finished task. A small
                # result leaves within microseconds; the crash report (_report_crashes) gives it
                # that moment. (Tracking every result cost ~9% of no-op throughput, and no
                # wait closes the window: PROTOCOL.md §14.)
                try:
                    sent.wait(_RESULT_LEAVES_TIMEOUT)
                except zmq.NotDone:
                    pass  # a slow or gone peer: do not stall the worker for it

    def _send_result(self, job: int, index: int, status: int,
                     frame: bytes) -> zmq.MessageTracker | None:
        """Sends one RESULTS from a task thread (the caller holds _lock, so the I/O thread
        cannot abandon the task meanwhile). For a large result, returns what tells when libzmq
        has written it."""
        header = msgpack.packb({"results": [[job, index, status]]})
        tracker = None
        with self._sock_lock:
            sock = self._socket
            if sock is None:
                return None  # disconnected: the task was abandoned with its registration
            try:
                track = len(frame) >= _TRACK_RESULTS_FROM
                tracker = sock.send_multipart([P.SIG_WORKER, b"\x06", header, frame], zmq.NOBLOCK,
                                              copy=False, track=track)
                if not track:
                    tracker = None
            except zmq.Again:
                log.debug("dropped a result to %s: the pipe is full", self.endpoint)
            # The send may have taken the ZMQ_FD's signal of messages that arrived meanwhile:
            # then the I/O thread would not see them until its next timeout.
            pending = sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
        self._last_sent = time.monotonic()
        if pending:
            self._wake()
        return tracker

    def _execute(self, task: Task, thread_id: int) -> tuple[int, bytes | None]:
        try:
            try:
                frame = task.runner(self, task)
                status = P.OK
            except _Abandoned:
                raise
            except BuiltinError as error:
                status, frame = P.FAILED, self._error_frame(str(error), error.kind)
            except _CommonFrameFailed as error:
                status, frame = P.FAILED, self._error_frame(str(error), error.kind, error.tb)
            except BaseException as error:  # noqa: B902: a task's SystemExit fails the task
                kind = type(error).__name__
                status, frame = P.FAILED, self._error_frame(
                    f"{kind}: {error}", kind, _user_traceback(error))
            finally:
                with self._lock:
                    task.state = RETURNED
                    if task.interrupted:
                        _set_async_exc(thread_id, None)  # clear one not yet delivered
        except _Abandoned:
            with self._lock:
                task.state = RETURNED
                _set_async_exc(thread_id, None)
            return P.FAILED, None
        return status, frame


# ---------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m acme.worker",
        description="An acme worker that runs Python functions (and the builtins echo, sleep, "
                    "fail, crash) for an acme broker.")
    parser.add_argument("--connect", metavar="ENDPOINT",
                        help="broker endpoint (default: $ACME_WORKER_OF, then $ACME_BROKER)")
    parser.add_argument("--slots", type=int, default=None,
                        help="tasks run at once (default: $ACME_WORKER_SLOTS, else 1); N > 1 "
                             "starts N single-slot worker processes under this one")
    parser.add_argument("--supervise", action="store_true",
                        help="run the slots as single-slot worker processes under this one, which "
                             "restarts any that dies, also with --slots 1 (LocalCluster uses it: "
                             "a task that kills its worker must not shrink the pool for good)")
    parser.add_argument("--threads", action="store_true",
                        help="run the slots as threads of this process instead (they share "
                             "one GIL: for functions that release it)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help=f"extra tasks held queued per slot (default {DEFAULT_PREFETCH})")
    parser.add_argument("--function", action="append", default=[], metavar="[NAME=]MOD:ATTR",
                        help="serve a function by name (repeatable); without NAME= its name is "
                             "MOD:ATTR")
    parser.add_argument("--module", action="append", default=[], metavar="M",
                        help="serve the functions of module M decorated with @acme.function "
                             "(repeatable)")
    parser.add_argument("--launch-id", default=None,
                        help="the acme-launch launch this worker belongs to (default: "
                             "$ACME_LAUNCH_ID)")
    parser.add_argument("--give-up-after", type=float, default=None, metavar="S",
                        help="exit 1 when the broker has been gone S seconds (default: 600 "
                             "with a launch id, else never; 0: never)")
    parser.add_argument("--recycle-after-ms", type=int, default=1000,
                        help="a cancelled or timed-out task still running this long after is "
                             "stuck: the worker re-executes itself (0: never)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process is gone")
    parser.add_argument("--log-level", default="info",
                        choices=["trace", "debug", "info", "warn", "warning", "error", "off"])
    parser.add_argument("--version", action="version",
                        version=f"acme-python-worker {_version()}")
    return parser


def _configure_logging(level: str) -> None:
    levels = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
              "off": logging.CRITICAL + 10}
    logging.basicConfig(level=levels[level], stream=sys.stderr,
                        format=f"acme-worker[{os.getpid()}] %(levelname)s %(message)s")


def _set_pdeathsig() -> None:
    """In a child: get SIGTERM when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _supervise(options: argparse.Namespace, endpoint: str, slots: int) -> int:
    """Runs `slots` single-slot worker processes and restarts any that dies (back-off 0.1 s
    doubling to 5 s); SIGTERM/SIGINT stop them all."""
    child_args = [sys.executable, "-m", "acme.worker", "--connect", endpoint, "--slots", "1",
                  "--parent-pid", str(os.getpid()), "--log-level", options.log_level,
                  "--recycle-after-ms", str(options.recycle_after_ms)]
    if options.prefetch is not None:
        child_args += ["--prefetch", str(options.prefetch)]
    for spec in options.function:
        child_args += ["--function", spec]
    for module in options.module:
        child_args += ["--module", module]
    if options.launch_id is not None:
        child_args += ["--launch-id", options.launch_id]
    if options.give_up_after is not None:
        child_args += ["--give-up-after", str(options.give_up_after)]

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start(slot: int) -> subprocess.Popen:
        return subprocess.Popen(child_args, preexec_fn=_set_pdeathsig)

    children: dict[int, subprocess.Popen | None] = {i: start(i) for i in range(slots)}
    started = {i: time.monotonic() for i in range(slots)}
    backoff = {i: 0.1 for i in range(slots)}
    restart_at: dict[int, float] = {}
    codes: list[int] = []
    log.info("supervising %d worker processes for %s: %s", slots, endpoint,
             " ".join(str(c.pid) for c in children.values()))
    signalled_at = None
    while True:
        now = time.monotonic()
        if stopping and signalled_at is None:
            signalled_at = now
            restart_at.clear()
            for child in children.values():
                if child is not None and child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        if signalled_at is not None and now - signalled_at > 10:
            for child in children.values():
                if child is not None and child.poll() is None:
                    child.kill()
        for slot, child in list(children.items()):
            if child is None:
                if slot in restart_at and now >= restart_at[slot] and not stopping:
                    del restart_at[slot]
                    children[slot] = start(slot)
                    started[slot] = now
                    log.info("restarted worker process %d as pid %d", slot, children[slot].pid)
                continue
            code = child.poll()
            if code is None:
                continue
            children[slot] = None
            if stopping:
                continue
            if code < 0 or code not in (0, 1, EXIT_USAGE):
                if now - started[slot] > 30:
                    backoff[slot] = 0.1
                delay = backoff[slot]
                backoff[slot] = min(backoff[slot] * 2, 5.0)
                restart_at[slot] = now + delay
                crash_dir = os.environ.get(CRASH_DIR_ENV)
                report = read_crash_report(crash_dir, child.pid) if crash_dir else ""
                log.warning("worker process %d (pid %d) died (%s); restarting in %.1f s%s", slot,
                            child.pid, f"signal {-code}" if code < 0 else f"exit {code}", delay,
                            f"\n{report}" if report else "")
            else:
                codes.append(code)
                log.info("worker process %d (pid %d) exited with %d", slot, child.pid, code)
        if all(c is None for c in children.values()) and not restart_at:
            return 0 if stopping else max(codes, default=0)
        time.sleep(0.05)


CRASH_DIR_ENV = "ACME_CRASH_DIR"  # set: each worker process writes crash-<pid>.log there
_crash_file = None  # faulthandler writes to its descriptor: it stays open while we run


def _report_crashes() -> None:
    """A task that kills the process (a segfault or abort in C code) leaves the Python stack of
    every thread, so that one sees which function crashed and where: in $ACME_CRASH_DIR/
    crash-<pid>.log when set (LocalCluster sets it; ParallelMap then adds the report to the
    failure of the input that crashed), else in the log. Writing it also gives libzmq's I/O
    thread the moment it needs to pass on a small result sent just before (PROTOCOL.md §14)."""
    global _crash_file
    target = sys.stderr
    directory = os.environ.get(CRASH_DIR_ENV)
    if directory:
        try:
            target = _crash_file = open(crash_report_path(directory, os.getpid()), "w")
        except OSError as error:
            log.warning("cannot write crash reports to %s: %s", directory, error)
    faulthandler.enable(file=target, all_threads=True)


def crash_report_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"crash-{pid}.log")


def read_crash_report(directory: str, pid: Any) -> str:
    """What worker process `pid` wrote to its crash report in `directory` ("" if nothing)."""
    try:
        with open(crash_report_path(directory, int(pid)), errors="replace") as report:
            return report.read(64 * 1024).strip()
    except (OSError, TypeError, ValueError):
        return ""


def main(argv: list[str] | None = None) -> int:
    original = list(sys.argv[1:] if argv is None else argv)
    options = _parser().parse_args(original)
    _configure_logging(options.log_level)
    endpoint = options.connect or os.environ.get("ACME_WORKER_OF") or \
        os.environ.get("ACME_BROKER")
    if not endpoint:
        print("acme-worker: error: no broker endpoint: pass --connect ENDPOINT or set "
              "ACME_WORKER_OF or ACME_BROKER (e.g. tcp://127.0.0.1:5555)", file=sys.stderr)
        return EXIT_USAGE
    try:
        slots = options.slots if options.slots is not None else \
            int(os.environ.get("ACME_WORKER_SLOTS") or 1)
    except ValueError:
        print(f"acme-worker: error: ACME_WORKER_SLOTS must be a number, not "
              f"{os.environ.get('ACME_WORKER_SLOTS')!r}", file=sys.stderr)
        return EXIT_USAGE
    if slots < 1:
        print(f"acme-worker: error: --slots must be >= 1, not {slots}", file=sys.stderr)
        return EXIT_USAGE
    if options.launch_id is None:
        options.launch_id = os.environ.get("ACME_LAUNCH_ID") or None
    give_up = options.give_up_after
    if give_up is None:
        give_up = 600.0 if options.launch_id else 0.0

    # Imports first, also in the supervisor: a bad --function fails once, with exit 2.
    functions: dict[str, Callable] = {}
    try:
        for module in options.module:
            functions.update(module_functions(module))
        for spec in options.function:
            name, fn = parse_function_option(spec)
            functions[name] = fn
    except Exception as error:
        print(f"acme-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    if (slots > 1 and not options.threads) or options.supervise:
        return _supervise(options, endpoint, slots)

    prefetch = options.prefetch if options.prefetch is not None else DEFAULT_PREFETCH * slots
    try:
        worker = Worker(endpoint, slots=slots, prefetch=prefetch, functions=functions,
                        launch=options.launch_id, recycle_after=options.recycle_after_ms / 1000,
                        give_up_after=give_up, parent_pid=options.parent_pid)
    except ValueError as error:
        print(f"acme-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    stop_signalled = False

    def on_signal(signum, frame):
        nonlocal stop_signalled
        stop_signalled = True
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _report_crashes()
    log.info("worker %s:%d offers %d functions with %d slots to %s%s", worker.host, worker.pid,
             len(worker._runners), slots, endpoint,
             f", launch {options.launch_id}" if options.launch_id else "")
    try:
        status = worker.run()
    except ValueError as error:  # a bad endpoint
        print(f"acme-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.flush()
    sys.stderr.flush()
    if status == RECYCLE and not stop_signalled:
        logging.shutdown()
        # A stuck task holds its cores until the process ends: replace it (same pid).
        os.execv(sys.executable, [sys.executable, "-m", "acme.worker", *original])
    if status == RECYCLE or worker.busy_threads():
        os._exit(0 if status == RECYCLE else status)  # a stuck thread must not hold the exit
    return status


if __name__ == "__main__":
    sys.exit(main())
