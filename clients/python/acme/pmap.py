"""ACME's `ParallelMap`, running on acme's broker and workers.

An ACME script runs unchanged::

    from acme import ParallelMap

    def f(x, y, z=3):
        return (x + y) * z

    with ParallelMap(f, [2, 4, 6, 8], 4) as pmap:
        results = pmap.compute()

The interface, argument rules, result files and messages are ACME's (esi-neuroscience/acme:
``acme/frontend.py``, ``backend.py``, ``validators.py``, ``results/*``, and its user guide);
what differs or goes beyond is listed in the docstring of :class:`ParallelMap`.

How a map travels: a Python callable runs as the function ``"acme.python"`` of Python
workers (``python3 -m acme.worker``): the callable (cloudpickle) and every broadcast argument go
**once**, in the SUBMIT's common frame; each task frame holds only the task id and the
iterated values. A ``str`` names a function that workers of any language offer (e.g. C++
``acme-worker``'s builtins): each task frame is the array of positional arguments, the named
arguments form the common frame, values are packed portably, and result files are written by
this process (a C++ worker does not write HDF5).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import numbers
import os
import random
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from . import results as _results
from .client import AcmeError

__all__ = ["ParallelMap", "iterate", "broadcast", "TasksFailed"]

log = logging.getLogger("ACME")

_OBJ = "<ParallelMap>"
_MAX_ARG_MB = 1024  # ACME's warning limit for the size of one argument
_MISSING = object()  # a task without a result (not run yet, or failed)


# ---------------------------------------------------------------------------------------------
# Markers and errors
# ---------------------------------------------------------------------------------------------

class iterate:
    """Marks an argument whose items go one per call (beyond ACME).

    ACME guesses: a list, tuple, range or 1-D array whose length equals `n_inputs` is iterated,
    anything else broadcast. ``acme.iterate(x)`` says so explicitly, for any sized, indexable
    `x` (e.g. a list of lists whose length happens to differ, or a pandas index); its length
    counts when `n_inputs` is inferred and must equal `n_inputs`."""

    __slots__ = ("value",)

    def __init__(self, value):
        if inspect.isgenerator(value) or (hasattr(value, "__next__") and not hasattr(value, "__len__")):
            raise TypeError("acme.iterate() needs a sized sequence, not a generator or iterator: "
                            "pass list(...)")
        try:
            len(value)
        except TypeError:
            raise TypeError(f"acme.iterate() needs a sized sequence, not {type(value).__name__}") from None
        self.value = value

    def __repr__(self):
        return f"acme.iterate({self.value!r})"


class broadcast:
    """Marks an argument passed whole to every call (beyond ACME): ``acme.broadcast([1, 2])``
    is not iterated even when its length equals `n_inputs`, and does not count when
    `n_inputs` is inferred. It travels once, in the common frame."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"acme.broadcast({self.value!r})"


class TasksFailed(AcmeError, RuntimeError):
    """Some calls of a map failed; the others' results are kept.

    ACME raises a RuntimeError "Parallel computation failed: k/N tasks failed or stalled";
    this is one too (and an `acme.AcmeError`), raised after every other task has finished,
    with what a script needs to look and to rerun:

    - ``failed``: the failed input indices, ascending;
    - ``errors``: index -> the remote error as text (its traceback, else its message);
    - ``details``: index -> the error map the worker or broker sent (``message``, ``kind``,
      ``traceback``, ``host``, ``pid``);
    - ``results``: one entry per input, in input order: what that task returned (its file name
      when results are written, else its value), None for failed tasks;
    - ``pmap``: the ParallelMap; ``pmap.compute(indices=exc.failed)`` reruns only those inputs
      (task ids, hence file names, stay the original indices).
    """

    def __init__(self, message: str, failed: list, errors: dict, details: dict, results: list,
                 pmap: "ParallelMap | None" = None):
        super().__init__(message)
        self.failed = failed
        self.errors = errors
        self.details = details
        self.results = results
        self.pmap = pmap


# ---------------------------------------------------------------------------------------------
# Argument processing (ACME's frontend.prepare_input, with names in the messages)
# ---------------------------------------------------------------------------------------------

class _Arg:
    """One argument: its value and, when iterated, the sequence to index per call."""

    __slots__ = ("label", "value", "seq")

    def __init__(self, label: str, value: Any, seq: Sequence | None):
        self.label = label
        self.value = value
        self.seq = seq

    def at(self, i: int):
        return self.seq[i] if self.seq is not None else self.value


def _is_iterator(value) -> bool:
    return inspect.isgenerator(value) or (hasattr(value, "__next__") and not hasattr(value, "__len__"))


def _candidate_length(value, default=inspect.Parameter.empty):
    """ACME's rule: the length a value offers for iteration, or None (then it is broadcast).

    Lists, tuples and ranges offer their length, numpy arrays their size when 1-D after
    squeezing. For a keyword argument whose default is itself a list/tuple of the same length,
    or an array, the value is taken as that parameter's value, not as per-call inputs."""
    import numpy as np

    if isinstance(value, (list, tuple, range)):
        if isinstance(default, (list, tuple)) and len(default) == len(value):
            return None
        return len(value)
    if isinstance(value, np.ndarray):
        if isinstance(default, np.ndarray):
            return None
        squeezed = value.squeeze()
        if squeezed.ndim == 1:
            return squeezed.size
    return None


def _iteration_sequence(value, n: int):
    """The sequence whose item i is call i's value (ACME iterates an array along its first
    axis; a (1, n) array along its squeezed axis)."""
    import numpy as np

    if isinstance(value, np.ndarray) and not (value.ndim >= 1 and value.shape[0] == n):
        return value.squeeze()
    return value


def _size_mb(value) -> float:
    nbytes = getattr(value, "nbytes", None)
    return nbytes / 1024 ** 2 if isinstance(nbytes, numbers.Number) else 0.0


class _Inputs:
    """The processed arguments of a map: what is iterated, what is broadcast."""

    def __init__(self, func, n_inputs, args: tuple, kwargs: dict):
        self.named = isinstance(func, str)
        if self.named:
            if not func:
                raise ValueError(f"{_OBJ} the function name must not be empty")
            self.name = func.replace(os.sep, "_")
        else:
            if not callable(func):
                raise TypeError(f"{_OBJ} first input has to be a callable function (or the name "
                                f"of a function acme workers offer), not {type(func)}")
            self.name = _func_name(func)
        guess = self._check_n_inputs(n_inputs)
        args, kwargs, defaults, self.taskid = self._bind(func, list(args), dict(kwargs))

        # Collect every candidate length (with the argument's name, for the messages).
        lengths: list[tuple[str, int]] = []
        forced: list[tuple[str, int]] = []
        entries = [(self._pos_label(func, k), v, inspect.Parameter.empty) for k, v in enumerate(args)]
        entries += [(name, v, defaults.get(name, inspect.Parameter.empty)) for name, v in kwargs.items()]
        for label, value, default in entries:
            if isinstance(value, iterate):
                forced.append((label, len(value.value)))
                lengths.append((label, len(value.value)))
            elif isinstance(value, broadcast):
                continue
            elif _is_iterator(value):
                raise TypeError(f"{_OBJ} argument '{label}' is a {type(value).__name__}: "
                                f"ParallelMap needs to know the number of inputs up front; pass "
                                f"list(...) (or acme.iterate(list(...)))")
            else:
                n = _candidate_length(value, default)
                if n is not None:
                    lengths.append((label, n))
            if _size_mb(getattr(value, "value", value)) > _MAX_ARG_MB:
                log.warning("argument '%s': size %4.2f MB exceeds recommended limit of %d MB. "
                            "Distributing large variables across workers may result in poor "
                            "performance. ", label, _size_mb(getattr(value, "value", value)),
                            _MAX_ARG_MB)
        described = ", ".join(f"'{label}' ({n})" for label, n in lengths)
        if guess:
            if len({n for _, n in lengths}) != 1:
                ns = [n for _, n in lengths]
                raise ValueError(
                    f"{_OBJ} automatic input distribution failed: found {len(lengths)} objects "
                    f"containing {min(ns, default=0)} to {max(ns, default=0)} elements"
                    + (f" ({described})" if lengths else "")
                    + ". Please specify `n_inputs` manually (or mark the iterated argument with "
                      "acme.iterate()). ")
            n_inputs = lengths[0][1]
        else:
            n_inputs = int(n_inputs)
            if lengths and n_inputs not in {n for _, n in lengths} and not all(n == 1 for _, n in lengths):
                raise ValueError(f"{_OBJ} No object has required length of {n_inputs} matching "
                                 f"`n_inputs` (found {described}). ")
        bad = [f"'{label}' ({n})" for label, n in forced if n != n_inputs]
        if bad:
            raise ValueError(f"{_OBJ} acme.iterate() arguments must have `n_inputs` = {n_inputs} "
                             f"elements: {', '.join(bad)}")
        self.n_inputs = n_inputs

        def classify(label, value, default):
            if isinstance(value, iterate):
                return _Arg(label, value.value, value.value)
            if isinstance(value, broadcast):
                return _Arg(label, value.value, None)
            if _candidate_length(value, default) == n_inputs:
                return _Arg(label, value, _iteration_sequence(value, n_inputs))
            if isinstance(value, range):
                value = list(value)
            elif callable(value) and not isinstance(value, type):
                log.warning("Found a single callable object in %s arguments: %s. It will be "
                            "executed just once and shared by all workers",
                            "keyword" if label in kwargs else "positional", label)
            return _Arg(label, value, None)

        self.pos = [classify(*entry) for entry in entries[:len(args)]]
        self.kw = {entry[0]: classify(*entry) for entry in entries[len(args):]}
        if self.named and any(a.seq is not None for a in self.kw.values()):
            names = ", ".join(name for name, a in self.kw.items() if a.seq is not None)
            raise TypeError(f"{_OBJ} a function named by string ({func!r}) gets its per-call "
                            f"inputs as positional arguments and its named arguments shared by "
                            f"all calls: pass the iterated {names} positionally")

    @staticmethod
    def _check_n_inputs(n_inputs) -> bool:
        if isinstance(n_inputs, str):
            if n_inputs != "auto":
                raise ValueError(f"{_OBJ} `n_inputs` has to be 'auto' or an integer >= 1, not {n_inputs}")
            return True
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, numbers.Real) \
                or n_inputs != int(n_inputs) or n_inputs < 1:
            raise ValueError(f"{_OBJ} `n_inputs` has to be 'auto' or an integer >= 1, not {n_inputs!r}")
        return False

    @staticmethod
    def _pos_label(func, k: int) -> str:
        names = _Inputs._positional_names(func)
        return names[k] if k < len(names) else f"args[{k}]"

    @staticmethod
    def _positional_names(func) -> list[str]:
        sig = _signature(func)
        if sig is None:
            return []
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in sig.parameters.values() if p.kind in kinds and p.name != "taskID"]

    def _bind(self, func, args: list, kwargs: dict):
        """Check `args`/`kwargs` against `func`'s signature (ACME's checks and messages)."""
        if self.named:
            return args, kwargs, {}, False
        sig = _signature(func)
        if sig is None:  # e.g. some builtins: nothing to check
            return args, kwargs, {}, False
        P = inspect.Parameter
        params = sig.parameters
        taskid = "taskID" in params and params["taskID"].kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)
        if taskid and "taskID" in kwargs:
            log.debug("Found `taskID` in kwargs - overriding it")
            kwargs.pop("taskID")
        positional = [p for p in params.values()
                      if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and p.name != "taskID"]
        varargs = any(p.kind == P.VAR_POSITIONAL for p in params.values())
        given_pos = {p.name for p in positional[:len(args)]}
        twice = sorted(given_pos & set(kwargs))
        if twice:
            raise ValueError(f"{_OBJ} {self.name} got multiple values for argument(s) "
                             + ", ".join(f"'{n}'" for n in twice))
        # Positional parameters may be given by name (ACME moves them; binding by name is
        # the same for the call).
        required = [p.name for p in positional if p.default is P.empty]
        found = len(args) + sum(1 for n in required if n in kwargs and n not in given_pos)
        if any(n not in given_pos and n not in kwargs for n in required):
            names = ", ".join(f"'{n}'" for n in required)
            raise ValueError(f"{_OBJ} {self.name} expects {len(required)} positional arguments "
                             f"({names}), found {found}")
        if len(args) > len(positional) and not varargs:
            names = ", ".join(f"'{p.name}'" for p in positional)
            raise ValueError(f"{_OBJ} {self.name} expects at most {len(positional)} positional "
                             f"arguments ({names}), found {len(args)}")
        keywords = [p.name for p in params.values()
                    if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) and p.name != "taskID"
                    and p.name not in given_pos and p.default is not P.empty]
        varkw = any(p.kind == P.VAR_KEYWORD for p in params.values())
        bindable = {p.name for p in params.values()
                    if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)} - given_pos
        unknown = [n for n in kwargs if n not in bindable]
        if unknown and not varkw:
            names = ", ".join(f"'{n}'" for n in keywords)
            raise ValueError(f"{_OBJ} {self.name} accepts at maximum {len(keywords)} keyword "
                             f"arguments ({names}), found "
                             f"{sum(1 for n in kwargs if n not in required)} (unknown: "
                             + ", ".join(f"'{n}'" for n in unknown) + ")")
        missing = [p.name for p in params.values() if p.kind == P.KEYWORD_ONLY
                   and p.default is P.empty and p.name not in kwargs and p.name != "taskID"]
        if missing:
            raise ValueError(f"{_OBJ} {self.name} needs the keyword argument(s) "
                             + ", ".join(f"'{n}'" for n in missing))
        defaults = {n: params[n].default for n in kwargs if n in params}
        return args, kwargs, defaults, taskid

    # -- per-call values --

    def call_args(self, i: int) -> tuple[list, dict]:
        args = [a.at(i) for a in self.pos]
        kwargs = {name: a.at(i) for name, a in self.kw.items()}
        if self.taskid:
            kwargs["taskID"] = i
        return args, kwargs


def _signature(func):
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _func_name(func) -> str:
    name = getattr(func, "__name__", None)
    if name is None and hasattr(func, "func"):  # functools.partial
        name = getattr(func.func, "__name__", None)
    return name or type(func).__name__


# ---------------------------------------------------------------------------------------------
# Logging (ACME's "ACME" logger: INFO by default, DEBUG with verbose=True, WARNING with False)
# ---------------------------------------------------------------------------------------------

class _Formatter(logging.Formatter):
    """ACME's layout: "ACME - INFO - message", "ACME ! WARNING ! ...", "ACME | ERROR | ..."."""

    MARKS = {logging.DEBUG: "# {} #", logging.INFO: "- {} -", logging.WARNING: "! {} !"}

    def format(self, record):
        mark = self.MARKS.get(record.levelno, "| {} |").format(record.levelname)
        text = f"{record.name} {mark} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _detach_logfiles() -> None:
    """Each map logs to its own file only: drop (and close) the previous map's file."""
    for h in [h for h in log.handlers if getattr(h, "_acme_file", False)]:
        log.removeHandler(h)
        h.close()


def _prepare_log(verbose, logfile: str | None = None) -> logging.Logger:
    if verbose is not None and not isinstance(verbose, bool):
        raise TypeError(f"{_OBJ} `verbose` has to be `True`, `False` or `None`, not {type(verbose)}")
    level = logging.INFO if verbose is None else logging.DEBUG if verbose else logging.WARNING
    log.setLevel(level)
    if not any(getattr(h, "_acme_stream", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._acme_stream = True
        handler.setFormatter(_Formatter())
        log.addHandler(handler)
    if logfile is not None:
        _detach_logfiles()
        if os.path.isfile(logfile):
            log.warning("log-file %s already exists, appending to it", logfile)
        handler = logging.FileHandler(logfile)
        handler._acme_file = True
        handler.setFormatter(_Formatter())
        log.addHandler(handler)
    for h in log.handlers:
        if getattr(h, "_acme_stream", False) or getattr(h, "_acme_file", False):
            h.setLevel(level)
    return log


class _Progress:
    """Progress of a map on stderr: a bar redrawn in place on a terminal, else a log line at
    every further 10 % (never more often than every 2 s, except the last)."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.done = 0
        self.enabled = enabled and total > 0
        self.tty = self.enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.next_pct = 10

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2 or self.done == self.total:
                self.last = now
                pct = 100 * self.done // self.total
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{pct:3d}% |{bar:<25}| {self.done}/{self.total} "
                                 f"[{now - self.start:.1f}s]")
                sys.stderr.flush()
        else:
            pct = 100 * self.done // self.total
            if (pct >= self.next_pct and now - self.last >= 2.0) or self.done == self.total:
                self.last = now
                self.next_pct = (pct // 10 + 1) * 10
                log.info("%d/%d tasks done (%d%%) [%.1fs]", self.done, self.total, pct,
                         now - self.start)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# ParallelMap
# ---------------------------------------------------------------------------------------------

class ParallelMap:
    """Context manager that executes a function in parallel (ACME's interface).

    Parameters are ACME's (see ``acme/frontend.py`` and the ACME user guide); in short:

    func : callable or str
        A Python callable (runs on Python workers; shipped with cloudpickle, so a function
        defined in ``__main__`` works and no ``if __name__ == "__main__"`` guard is needed),
        or the name of a function that acme workers of any language offer (beyond ACME).
    *args, **kwargs : the function's arguments
        ACME's rule: a list, tuple, range or 1-D numpy array whose length equals `n_inputs` is
        iterated (item i goes to call i), anything else is broadcast (the same value to every
        call; it travels once). For a keyword argument whose default is a list/tuple of that
        length, or an array, the value is taken as a plain value. ``acme.iterate(x)`` /
        ``acme.broadcast(x)`` override the guess (beyond ACME). Positional parameters may be
        given by name. A function with a ``taskID`` parameter receives the input index there.
        Generators and iterators are refused (their length is unknown).
    n_inputs : int or "auto"
        Number of calls; inferred from the iterated arguments unless given.
    write_worker_results : bool
        True: results go to HDF5 files (see :mod:`acme.results`) and `compute` returns the
        file names. False: `compute` returns the values, in input order.
    output_dir : str or None
        Where the files go; None: a new folder ``ACME_YYYYMMDD-hhmmss-ffffff`` next to the
        file that defines `func` (ACME's code; its docs say the working directory), or in the
        working directory when `func` has no file, lives in an installed package, or that
        folder is not writable.
    result_shape, result_dtype : tuple with one None, numpy dtype name
        Stack every call's first return value along the None axis: a virtual dataset
        ``result_0`` in the aggregate container (or, with ``write_worker_results=False``, one
        array: `compute` then returns ``[array, <further return values>...]``, as ACME's docs
        show). ``np.inf`` marks an axis whose size comes from the results.
    single_file : bool
        All results in one HDF5 file; writers serialize on a POSIX file lock.
    write_pickle : bool
        Pickle each result to ``<func>_<i>.pickle`` instead of HDF5.
    partition, mem_per_worker : str
        SLURM settings of ACME's automatic cluster; acme starts local workers instead, so these
        are accepted and ignored (start SLURM workers with ``acme-launch`` or
        ``slurm_cluster_setup``; maps find them).
    n_workers : int or "auto"
        Workers of the LocalCluster a map starts when no broker is known ("auto": one per CPU,
        at most `n_inputs`).
    setup_timeout : seconds to wait for that cluster's workers.
    setup_interactive : bool
        Whether the dry run asks before continuing. Treated as False when stdin is not a
        terminal, so that no prompt can hang a batch job (beyond ACME).
    stop_client : "auto" or bool
        "auto": a cluster this map started stops when the map ends (``with`` block exit, or the
        end of `compute` outside one); a cluster registered with ``local_cluster_setup`` stays.
        False: a started cluster stays and becomes the default for later maps. True: also stop
        the registered default cluster (a broker found through $ACME_BROKER or acme-launch is
        never stopped by a map).
    verbose : None, True, False
        Level of the logger "ACME" (INFO, DEBUG, WARNING); messages go to stderr.
    dryrun : bool
        Run one randomly picked call here first (timing and memory are logged), then, if
        interactive, ask whether to continue; declining makes `compute` return None.
    logfile : None, bool or str
        None: a log file ``ACME_<func>_<date>.log`` in the output folder when results are
        written; True/False force/suppress it; a str names it.

    Where the map runs: ``acme.cluster.get_default()`` (what ``local_cluster_setup()``
    registers), else ``acme.client.configured_broker()`` ($ACME_BROKER, or the broker that
    ``acme-launch`` recorded), else a LocalCluster started for this map. A default cluster
    whose broker or workers' supervisor has exited is closed and forgotten first. While no
    result comes, the map checks every few seconds: a LocalCluster that lost its broker or
    supervisor fails the map (AcmeError with the log's tail); a broker without any worker is
    logged every 30 s while the map waits (batch jobs may still be pending).

    Differences from ACME, all deliberate:

    - ``with ParallelMap(...) as pmap`` gives the ParallelMap itself (ACME gives its daemon;
      ``compute``, ``results_container``, ``n_inputs``/``n_calls`` are on both).
    - ``compute()`` always returns the results, also when `func` takes ``taskID`` and results
      are not written (ACME then returns None), and in debug mode (ACME returns what its
      wrapper returns). A function with ``taskID`` gets it also when results are written
      (ACME's wrapper drops it then).
    - Failed calls do not stop the others: `compute` raises :class:`TasksFailed` (a
      RuntimeError, like ACME's) after all calls ended, with every error and the partial
      results; ``compute(indices=exc.failed)`` reruns just those inputs.
    - A result HDF5 cannot hold is pickled for that task only (ACME too), but the aggregate
      container is kept and links the HDF5 results (ACME deletes it and moves the payload).
    - More positional arguments than required are accepted up to the function's positional
      parameters; unknown keyword arguments are named in the error.
    - Broadcast values travel once in the SUBMIT's common frame (ACME scatters them).
    - The cluster starts at the first `compute`, not in the constructor.
    """

    objName = _OBJ

    def __init__(
        self,
        func: Callable | str,
        *args: Any,
        n_inputs: int | str = "auto",
        write_worker_results: bool = True,
        output_dir: str | None = None,
        result_shape: tuple | None = None,
        result_dtype: str = "float",
        single_file: bool = False,
        write_pickle: bool = False,
        partition: str = "auto",
        n_workers: int | str = "auto",
        mem_per_worker: str = "auto",
        setup_timeout: float = 60,
        setup_interactive: bool = True,
        stop_client: bool | str = "auto",
        verbose: bool | None = None,
        dryrun: bool = False,
        logfile: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        _detach_logfiles()
        _prepare_log(verbose)
        from ._version import __version__
        log.debug("This is acme %s (ACME's ParallelMap)", __version__)

        self.func = func
        self._inputs = _Inputs(func, n_inputs, args, kwargs)
        self.n_inputs = self._inputs.n_inputs
        self.name = self._inputs.name
        log.debug("Inferred `n_inputs = %d`", self.n_inputs)

        for flag, value in (("write_worker_results", write_worker_results), ("single_file", single_file),
                            ("write_pickle", write_pickle), ("dryrun", dryrun)):
            if not isinstance(value, bool):
                raise TypeError(f"{_OBJ} `{flag}` has to be `True` or `False`, not {value!r}")
        if not write_worker_results and write_pickle:
            log.warning("Pickling of results only possible if `write_worker_results` is `True`")
        if not write_worker_results and output_dir:
            log.warning("Output directory specification has no effect if `write_worker_results` is `False`.")
        if write_pickle and result_shape:
            log.warning("Pickling of results does not support output array shape specification.")
        if not write_worker_results and single_file:
            log.warning("Generating a single output file only possible if `write_worker_results` is `True`.")
        if write_pickle and single_file:
            raise ValueError(f"{_OBJ} Pickling of results does not support single output file creation.")
        self.write_worker_results = write_worker_results
        self.write_pickle = write_worker_results and write_pickle
        self.single_file = write_worker_results and single_file and not write_pickle
        self.result_shape, self.stacking_dim, self.result_dtype = _validate_result_shape(
            None if self.write_pickle else result_shape, result_dtype, self.n_inputs, write_worker_results)

        if isinstance(stop_client, str):
            if stop_client != "auto":
                raise ValueError(f"{_OBJ} `stop_client` has to be 'auto' or Boolean, not {stop_client}")
        elif not isinstance(stop_client, bool):
            raise TypeError(f"{_OBJ} `stop_client` has to be 'auto' or Boolean, not {stop_client!r}")
        self.stop_client = stop_client
        if isinstance(n_workers, str):
            if n_workers != "auto":
                raise ValueError(f"{_OBJ} `n_workers` has to be 'auto' or an integer >= 1, not {n_workers}")
        elif isinstance(n_workers, bool) or not isinstance(n_workers, numbers.Integral) or n_workers < 1:
            raise ValueError(f"{_OBJ} `n_workers` has to be 'auto' or an integer >= 1, not {n_workers!r}")
        self.n_workers = n_workers
        if not isinstance(partition, str):
            raise TypeError(f"{_OBJ} `partition` has to be 'auto' or a valid SLURM partition name, not {type(partition)}")
        if partition != "auto" or mem_per_worker != "auto":
            log.debug("`partition`/`mem_per_worker` ignored: acme starts local workers; use "
                      "acme-launch or slurm_cluster_setup for SLURM")
        if not isinstance(setup_timeout, numbers.Real) or setup_timeout <= 0:
            raise ValueError(f"{_OBJ} `setup_timeout` has to be a positive number, not {setup_timeout!r}")
        self.setup_timeout = float(setup_timeout)
        if not isinstance(setup_interactive, bool):
            raise TypeError(f"{_OBJ} `setup_interactive` has to be `True` or `False`, not {setup_interactive!r}")
        self.setup_interactive = setup_interactive and _stdin_is_terminal()

        # Output folder and files (created now, as ACME does).
        self.output_dir = None
        self.results_container = None
        self._spec = None
        if write_worker_results:
            self.output_dir = _output_dir(output_dir, func)
            self._spec = _results.make_spec(self.output_dir, self.name, single_file=self.single_file,
                                            write_pickle=self.write_pickle, stacking_dim=self.stacking_dim)
            _results.prepare_output(self._spec, self.result_shape, self.result_dtype)
            if not self.write_pickle:
                self.results_container = os.path.join(self.output_dir, f"{self.name}.h5")
            log.debug("Using output directory %s", self.output_dir)
        elif not self._inputs.taskid:
            log.warning("`write_worker_results` is `False` and `taskID` is not a keyword argument "
                        "of %s. Results will be collected in memory by caller - this might be slow "
                        "and can lead to excessive memory consumption. ", self.name)
        self.logfile = _logfile(logfile, write_worker_results, func, self.name, self.output_dir)
        if self.logfile is not None:
            _prepare_log(verbose, self.logfile)
            log.debug("Set up logfile=%s", self.logfile)

        self._values: list = [_MISSING] * self.n_inputs
        self.failed: list[int] = []
        self._cluster = None  # a LocalCluster this map started
        self._in_context = False
        self._declined = False
        if dryrun:
            self._declined = not self._dryrun()

    # -- ACME attribute names --

    @property
    def n_calls(self) -> int:
        return self.n_inputs

    def __repr__(self) -> str:
        return f"<ParallelMap {self.name} n_inputs={self.n_inputs}>"

    # -- context manager --

    def __enter__(self) -> "ParallelMap":
        self._in_context = True
        return self

    def __exit__(self, *exc) -> None:
        self._in_context = False
        self.cleanup()

    def cleanup(self) -> None:
        """Stop the cluster this map started (unless ``stop_client=False``), and with
        ``stop_client=True`` also the registered default cluster."""
        if self._cluster is None and self.stop_client is not True:
            return
        from . import cluster as _cluster
        if self._cluster is not None and self.stop_client is not False:
            log.debug("Closing the local cluster started by this map")
            try:
                self._cluster.close()
            finally:
                if _cluster.get_default() is self._cluster:
                    _cluster.set_default(None)
                self._cluster = None
        if self.stop_client is True:
            default = _cluster.get_default()
            if default is not None:
                log.debug("`stop_client=True`: closing the default cluster %s", default)
                default.close()
                _cluster.set_default(None)

    # -- computing --

    def compute(self, debug: bool = False, indices: Sequence[int] | None = None):
        """Run the map; returns the results (ACME's ``compute(debug=False)``).

        Returns, as ACME: with ``write_worker_results`` the list of result files in input
        order (``[container]`` with single_file), else the list of return values in input
        order (``[stacked array, ...]`` with result_shape); None after a declined dry run.
        Raises :class:`TasksFailed` when calls failed (after all others ended).

        debug : run every call sequentially in this process (no workers), so exceptions
            propagate as usual and pdb / ``%debug`` work; results are written as usual.
        indices : run only these inputs (beyond ACME), e.g. ``exc.failed`` after fixing the
            cause; the returned list still covers all inputs, merging earlier results.
        """
        if not isinstance(debug, bool):
            raise TypeError(f"{_OBJ} `debug` has to be `True` or `False`, not {debug!r}")
        if self._declined:
            log.debug("No parallel computing client allocated after the declined dry-run, exiting")
            return None
        ids = self._indices(indices)
        if debug:
            return self._compute_debug(ids)
        try:
            return self._compute_remote(ids)
        finally:
            if not self._in_context:
                self.cleanup()

    def _indices(self, indices) -> Sequence[int]:
        if indices is None:
            return range(self.n_inputs)
        ids = sorted({int(i) for i in indices})
        bad = [i for i in ids if not 0 <= i < self.n_inputs]
        if bad:
            raise ValueError(f"{_OBJ} `indices` must lie in 0..{self.n_inputs - 1}, got {bad[:10]}")
        return ids

    def _call_local(self, i: int):
        args, kwargs = self._inputs.call_args(i)
        return self.func(*args, **kwargs)

    def _compute_debug(self, ids):
        if self._inputs.named:
            raise ValueError(f"{_OBJ} compute(debug=True) runs a Python callable in this process; "
                             f"{self.func!r} names a function of acme workers: use compute()")
        log.warning("Running in debug mode")
        for i in ids:
            value = self._call_local(i)
            self._values[i] = _results.write_result(value, i, self._spec) if self._spec else value
        self.failed = [i for i in self.failed if i not in set(ids)]
        return self._finish(ids, {})

    def _compute_remote(self, ids):
        from . import protocol, serial
        from .client import Client

        inputs = self._inputs
        # Everything the workers share is packed before a broker is looked for: an argument
        # that cannot travel fails here, naming it, with nothing started or submitted.
        if inputs.named:
            function = self.func
            common = None
            if inputs.kw:
                common = _pack_shared({n: a.value for n, a in inputs.kw.items()}, inputs.kw.values(),
                                      python=False)
            frames = _named_frames(inputs, ids)
        else:
            function = "acme.python"
            shared = [a for a in inputs.pos + list(inputs.kw.values()) if a.seq is None]
            common = _pack_shared(self._common_frame(), shared, python=True)
            frames = _python_frames(inputs, ids)
        endpoint, source, cluster = self._broker()
        log.info("Preparing %d parallel calls of `%s` on broker %s", len(ids), self.name, endpoint)
        values = self._values
        write_here = inputs.named and self._spec is not None
        spec = self._spec
        errors: dict[int, dict] = {}
        progress = _Progress(len(ids), log.isEnabledFor(logging.INFO))
        unpack = serial.unpackb
        OK = protocol.OK
        # A LocalCluster's one Client serves every map on it (a Client is a thread and a
        # socket: ~1.5 ms to set up and take down, most of a short map's round trip).
        own_client = not hasattr(cluster, "client")
        client = Client(endpoint, source=source) if own_client else cluster.client()
        watch = _Watch(endpoint, source, cluster)
        job = None
        try:
            job = client.submit(function, frames, len(ids), common=common)
            for batch in watch.batches(job):
                for r in batch:
                    i = ids[r.index]
                    if r.status == OK:
                        value = unpack(r.payload)
                        if write_here:
                            value = _results.write_result(value, i, spec)
                        values[i] = value
                    else:
                        errors[i] = _error_map(r.payload, r.status, unpack)
                        if r.status == protocol.POISONED and hasattr(cluster, "crash_report"):
                            _add_crash_report(errors[i], cluster)
                progress.update(len(batch))
        finally:
            progress.close()
            if own_client:
                client.close()
            elif job is not None and not job.done:
                job.cancel()  # left early (an error here, Ctrl-C): the shared client stays
        return self._finish(ids, errors)

    def _finish(self, ids, errors: dict):
        """Merge a run into the map's state, write the container, report and return."""
        ran = set(ids) if not isinstance(ids, range) else None
        earlier = [i for i in self.failed if ran is not None and i not in ran]
        self.failed = sorted(earlier + list(errors))
        files = None
        if self._spec is not None:
            files = [v if v is not _MISSING else None for v in self._values]
            self.results_container = _results.finish_container(
                self._spec, self.n_inputs, files, self.result_shape, self.result_dtype) \
                if self._spec["mode"] != "pickle" else None
            pickled = [i for i in ids if isinstance(self._values[i], str)
                       and self._values[i].endswith(".pickle") and self._spec["mode"] != "pickle"]
            if pickled:
                log.warning("Results of %d task(s) could not be saved as HDF5 and were pickled "
                            "instead (tasks %s)%s", len(pickled), _short(pickled, 10),
                            f"; {self.results_container} does not link them"
                            if self._spec["mode"] == "hdf5" else "")
        if errors:
            raise self._failure(len(ids), errors)
        if self.failed:
            log.warning("%d input(s) failed in an earlier run and have no result yet: %s",
                        len(self.failed), _short(self.failed))
        if self._spec is not None:
            log.info("SUCCESS! Results have been saved to %s", self.output_dir)
        else:
            log.info("SUCCESS! Finished parallel computation")
        _flush_log()
        return self._result_list()

    def _result_list(self):
        if self._spec is not None:
            if self._spec["mode"] == "single":
                return [self._spec["container"]]
            return [v if v is not _MISSING else None for v in self._values]
        values = [v if v is not _MISSING else None for v in self._values]
        if self.result_shape is None:
            return values
        import numpy as np
        stacked = np.empty(self.result_shape, dtype=self.result_dtype)
        index = [slice(None)] * len(self.result_shape)
        extras = []
        for i, value in enumerate(values):
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if value is None and i in self.failed:
                continue
            index[self.stacking_dim] = i
            stacked[tuple(index)] = items[0]
            extras.extend(items[1:])
        return [stacked] + extras

    def _failure(self, n_run: int, errors: dict) -> TasksFailed:
        failed = sorted(errors)
        texts = {i: _error_text(errors[i]) for i in failed}
        shown = 3
        lines = [f"{len(failed)}/{n_run} tasks failed: indices {_short(failed, 20)}"]
        for i in failed[:shown]:
            e = errors[i]
            where = f" on {e['host']} pid {e['pid']}" if e.get("host") else ""
            lines.append(f"--- task {i}: {e.get('kind') or 'error'}{where} ---")
            lines.append(texts[i].rstrip())
        if len(failed) > shown:
            lines.append(f"... and {len(failed) - shown} more (all in the exception's .errors)")
        lines.append("The other tasks' results are kept; rerun just the failed inputs with "
                     "pmap.compute(indices=exc.failed).")
        message = "\n".join(lines)
        log.error("Parallel computation failed: %s", message)
        _flush_log()
        return TasksFailed(message, failed, texts, dict(errors), self._result_list_partial(), self)

    def _result_list_partial(self) -> list:
        return [v if v is not _MISSING else None for v in self._values]

    def _common_frame(self) -> dict:
        inputs = self._inputs
        import cloudpickle
        try:
            fn = cloudpickle.dumps(self.func, protocol=5)
        except Exception as exc:
            raise TypeError(f"{_OBJ} cannot send {self.name} to the workers: cloudpickle failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        return {
            "fn": fn,
            "name": self.name,
            "args": [None if a.seq is not None else a.value for a in inputs.pos],
            "kwargs": {n: a.value for n, a in inputs.kw.items() if a.seq is None},
            "iter_args": [k for k, a in enumerate(inputs.pos) if a.seq is not None],
            "iter_kwargs": [n for n, a in inputs.kw.items() if a.seq is not None],
            "taskid": inputs.taskid,
            "write": self._spec,
        }

    def _broker(self) -> tuple[str, str, Any]:
        """(endpoint, source, the LocalCluster or None): the default cluster, the configured
        broker, or a new cluster. A default cluster that has lost its broker or its workers'
        supervisor is dropped (closed, unregistered) and the map goes on without it."""
        from . import cluster as _cluster
        from .client import configured_broker
        if self._cluster is not None:
            problem = _cluster_problem(self._cluster)
            if problem is None:
                return self._cluster.endpoint, "LocalCluster", self._cluster
            log.warning("The local cluster this map started is unusable, starting a new one: %s",
                        problem)
            was_default = _cluster.get_default() is self._cluster
            self._cluster.close()
            self._cluster = None
            if was_default:
                _cluster.set_default(None)
        default = _cluster.get_default()
        if default is not None:
            problem = _cluster_problem(default)
            if problem is None:
                log.info("Attaching to parallel computing client %s", default)
                return default.endpoint, "LocalCluster", default
            log.warning("The default cluster %s is unusable; closing and forgetting it: %s",
                        default, problem)
            if _cluster.get_default() is default:
                _cluster.set_default(None)
            try:
                default.close()
            except Exception as exc:  # noqa: BLE001 - it is dead already
                log.debug("closing the dead default cluster: %s", exc)
        configured = configured_broker()
        if configured is not None:
            log.info("Attaching to acme broker %s (from %s)", *configured)
            return configured[0], configured[1], None
        n = self.n_workers
        if n == "auto":
            n = max(1, min(os.cpu_count() or 1, self.n_inputs))
        log.info("Starting a local acme cluster with %d workers", n)
        self._cluster = _cluster.LocalCluster(n, start_timeout=self.setup_timeout)
        if self.stop_client is False:
            _cluster.set_default(self._cluster)  # kept for later maps, as ACME keeps its client
        return self._cluster.endpoint, "LocalCluster", self._cluster

    # -- dry run --

    def _dryrun(self) -> bool:
        """ACME's dry run: one randomly picked call here, timed; then ask whether to go on."""
        if self._inputs.named:
            log.warning("dryrun: %r names a function of acme workers; it cannot run in this "
                        "process, skipping the dry run", self.func)
            return True
        i = random.randrange(self.n_inputs)
        log.info("Performing a single dry-run of %s simulating randomly picked worker #%d with "
                 "automatically distributed arguments", self.name, i)
        mem0 = _rss_mb()
        tic = time.perf_counter()
        value = self._call_local(i)
        toc = time.perf_counter()
        mem1 = _rss_mb()
        if self._spec is not None:  # ACME writes the result and removes it again
            written = _results.write_result(value, i, self._spec)
            if self._spec["mode"] != "single":
                _results._unlink(written)
        used, unit = mem1 - mem0, "MB"
        if used > 1000:
            used, unit = used / 1024, "GB"
        log.info("Dry-run completed. Elapsed time is %f seconds, estimated memory consumption "
                 "was %3.2f %s.", toc - tic, used, unit)
        if not self.setup_interactive:
            return True
        go_on = _yes_no(f"Do you want to continue executing {self.name} with the provided arguments?")
        if not go_on and self.output_dir is not None:
            import shutil
            shutil.rmtree(self.output_dir, ignore_errors=True)
        return go_on


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------

def _pack_shared(frame, args, *, python: bool) -> bytes:
    """`frame` packed; when that fails, a TypeError naming the argument (of `args`) that
    cannot travel, its type and why."""
    from .serial import packb
    try:
        return packb(frame, python=python)
    except Exception as exc:  # noqa: BLE001 - cloudpickle raises many kinds
        _raise_unsendable(args, None, python, exc)


def _raise_unsendable(args, i: int | None, python: bool, exc: BaseException):
    """Finds which of `args` (their value, or item `i` when iterated) cannot be packed and
    raises a TypeError saying so; re-raises a general one when none alone fails."""
    from .serial import describe_type, packb
    for a in args:
        value = a.value if i is None else a.at(i)
        try:
            packb(value, python=python)
        except Exception as own:  # noqa: BLE001
            where = f" at input {i}" if i is not None and a.seq is not None else ""
            raise TypeError(f"{_OBJ} argument '{a.label}'{where} ({describe_type(value)}) cannot "
                            f"be sent to the workers: {own}") from None
    where = f" of input {i}" if i is not None else ""
    raise TypeError(f"{_OBJ} the arguments{where} cannot be sent to the workers: "
                    f"{type(exc).__name__}: {exc}") from None


def _python_frames(inputs: _Inputs, ids: Sequence[int]) -> Iterator[bytes]:
    """Task frames of the acme.python convention: [task_id, [iter args], [iter kwargs]]."""
    from .serial import packb
    iterated = [a for a in inputs.pos if a.seq is not None] + \
               [a for a in inputs.kw.values() if a.seq is not None]
    pos = [a.seq for a in inputs.pos if a.seq is not None]
    kws = [a.seq for a in inputs.kw.values() if a.seq is not None]
    for i in ids:
        try:
            frame = packb([i, [s[i] for s in pos], [s[i] for s in kws]], python=True)
        except Exception as exc:  # noqa: BLE001 - cloudpickle raises many kinds
            _raise_unsendable(iterated, i, True, exc)
        yield frame


def _named_frames(inputs: _Inputs, ids: Sequence[int]) -> Iterator[bytes]:
    """Task frames of a named function: the array of its positional arguments (portable)."""
    from .serial import packb
    args = inputs.pos
    for i in ids:
        try:
            frame = packb([a.at(i) for a in args], python=False)
        except Exception as exc:  # noqa: BLE001
            _raise_unsendable(args, i, False, exc)
        yield frame


def _cluster_problem(cluster) -> str | None:
    """Why a LocalCluster cannot run a map (closed, or its broker or its workers' supervisor
    has exited, with the log's tail), or None."""
    if getattr(cluster, "_closed", False):
        return f"{cluster!r} is closed"
    problem = getattr(cluster, "_problem", None)
    try:
        return problem() if problem is not None else None
    except Exception as exc:  # noqa: BLE001 - a half-built cluster
        return f"{type(exc).__name__}: {exc}"


class _Watch:
    """Reads a job's results with bounded waits; while none come, checks why: a dead cluster
    fails the map (AcmeError naming it), a broker without workers is logged every
    `_NO_WORKER_EVERY` s (the map waits: batch jobs may pend)."""

    POLL = 2.0  # seconds without a result before a health check
    STATUS_EVERY = 5.0  # seconds between two STATUS queries while no result comes
    NO_WORKER_FIRST = 10.0  # seconds without a worker before the first warning
    NO_WORKER_EVERY = 30.0

    def __init__(self, endpoint: str, source: str, cluster=None):
        self.endpoint = endpoint
        self.source = source
        self.cluster = cluster
        self.no_worker_since: float | None = None
        self.warned_at: float | None = None
        self.asked_at: float | None = None

    def batches(self, job) -> Iterator[list]:
        while True:
            try:
                for batch in job.batches(timeout=self.POLL):
                    yield batch
                return
            except TimeoutError:  # raised by job.batches before anything was taken
                self.check()

    def check(self) -> None:
        from .client import AcmeError as _AcmeError, query_status
        if self.cluster is not None:
            problem = _cluster_problem(self.cluster)
            if problem is not None:
                raise AcmeError(f"{_OBJ} the map cannot finish: its LocalCluster at "
                                f"{self.endpoint} lost a process: {problem}")
        now = time.monotonic()
        if self.asked_at is not None and now - self.asked_at < self.STATUS_EVERY:
            return
        self.asked_at = now
        try:
            status = query_status(self.endpoint, timeout=self.POLL)
        except _AcmeError:
            return  # a broker gone or refusing: the client's own checks report it
        workers = len(status.get("workers") or ()) + int(status.get("workers_omitted") or 0)
        now = time.monotonic()
        if workers:
            if self.warned_at is not None:
                log.info("%d worker(s) connected to the broker at %s: the map goes on",
                         workers, self.endpoint)
            self.no_worker_since = self.warned_at = None
            return
        if self.no_worker_since is None:
            self.no_worker_since = now
        waited = now - self.no_worker_since
        due = self.NO_WORKER_FIRST if self.warned_at is None else \
            self.warned_at - self.no_worker_since + self.NO_WORKER_EVERY
        if waited >= due:
            self.warned_at = now
            log.warning("no worker is connected to the broker at %s (from %s) for %.0f s: the "
                        "map waits (are the batch jobs pending? `acme-launch status`)",
                        self.endpoint, self.source, waited)
            _flush_log()


def _error_map(payload, status: int, unpack) -> dict:
    try:
        err = unpack(payload)
    except Exception as exc:  # a worker of another language sent something odd
        err = {"message": f"undecodable error payload ({exc})"}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    err.setdefault("message", "")
    err["status"] = status
    return err


def _add_crash_report(err: dict, cluster) -> None:
    """A poisoned input on a LocalCluster: the Python stack its last worker left when it died
    (the broker's error map names that worker's pid) becomes the error's traceback."""
    report = cluster.crash_report(err.get("pid"))
    if report and not err.get("traceback"):
        err["traceback"] = f"worker pid {err.get('pid')} crashed running this input:\n{report}"


def _error_text(err: dict) -> str:
    text = err.get("traceback") or ""
    message = err.get("message") or ""
    if message and message not in text:
        text = (text.rstrip() + "\n" + message) if text else message
    return text


def _short(indices: list, limit: int = 20) -> str:
    if len(indices) <= limit:
        return str(list(indices))
    return "[" + ", ".join(map(str, indices[:limit])) + f", ... ({len(indices) - limit} more)]"


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _validate_result_shape(shape, result_dtype, n_calls: int, write_worker_results: bool):
    """ACME's validate_result_shape: (shape with n_calls at the None axis, that axis, dtype)."""
    import numpy as np
    if shape is None:
        return None, None, None
    if not isinstance(shape, (list, tuple)):
        raise TypeError(f"{_OBJ} `result_shape` has to be either `None` or tuple, not {type(shape)}")
    if not isinstance(result_dtype, str):
        raise TypeError(f"{_OBJ} `result_dtype` has to be a string, not {type(result_dtype)}")
    if sum(spec is None for spec in shape) != 1:
        raise ValueError(f"{_OBJ} `result_shape` must contain exactly one `None` entry")
    stacking_dim = list(shape).index(None)
    r_shape = list(shape)
    r_shape[stacking_dim] = n_calls
    if not all(isinstance(spec, numbers.Number) and not isinstance(spec, bool) for spec in r_shape):
        raise ValueError(f"{_OBJ} `result_shape` must only contain numerical values")
    infs = [spec for spec in r_shape if np.isinf(spec)]
    if infs and not write_worker_results:
        raise ValueError(f"{_OBJ} using `np.inf` in `result_shape` is only valid if "
                         f"`write_worker_results` is `True`")
    if len(infs) > 1:
        raise ValueError(f"{_OBJ} cannot use more than one `np.inf` in `result_shape`")
    if any(np.isnan(spec) or spec < 0 or int(spec) != spec for spec in r_shape if not np.isinf(spec)):
        raise ValueError(f"{_OBJ} `result_shape` must only contain non-negative integers")
    try:
        dtype = np.dtype(result_dtype)
    except Exception as exc:
        raise TypeError(f"{_OBJ} `result_dtype` has to be a valid NumPy datatype specification. "
                        f"Original error message below:\n{exc}") from None
    r_shape = tuple(spec if np.isinf(spec) else int(spec) for spec in r_shape)
    return r_shape, stacking_dim, dtype


def _func_dir(func) -> str | None:
    """The folder of the file defining `func`, if it is a user's folder we may write to."""
    if isinstance(func, str):
        return None
    try:
        target = inspect.unwrap(getattr(func, "func", func))
        path = os.path.dirname(os.path.abspath(inspect.getfile(target)))
    except (TypeError, OSError):
        return None
    if "site-packages" in path or "dist-packages" in path or not os.path.isdir(path) \
            or not os.access(path, os.W_OK):
        return None
    return path


def _output_dir(output_dir, func) -> str:
    if not isinstance(output_dir, (type(None), str)):
        raise TypeError(f"{_OBJ} `output_dir` has to be either `None` or str, not {type(output_dir)}")
    if output_dir is not None:
        return os.path.abspath(os.path.expanduser(output_dir))
    base = _func_dir(func) or os.getcwd()
    try:
        old = [e for e in os.listdir(base) if e.startswith("ACME_") and os.path.isdir(os.path.join(base, e))]
        if len(old) > 20:
            log.warning("Found %d ACME directories in %s", len(old), base)
    except OSError:
        pass
    return os.path.join(base, f"ACME_{datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")


def _logfile(spec, write_worker_results: bool, func, name: str, out_dir: str | None) -> str | None:
    """ACME's validate_logfile: None -> a file beside the results when results are written."""
    if spec is None and write_worker_results:
        spec = True
    if spec is None or spec is False:
        return None
    if spec is True:
        folder = out_dir if write_worker_results and out_dir else (_func_dir(func) or os.getcwd())
        return os.path.join(folder, f"ACME_{name}_{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.log")
    if isinstance(spec, str):
        if os.path.isdir(spec):
            raise IOError(f"{_OBJ} `logfile` has to be `None`, `True`, `False` or a valid "
                          f"file-name, not a directory")
        return os.path.abspath(os.path.expanduser(spec))
    raise TypeError(f"{_OBJ} `logfile` has to be `None`, `True`, `False` or a valid file-name, "
                    f"not {type(spec)}")


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _yes_no(question: str) -> bool:
    """ACME's user_yesno with default yes."""
    while True:
        try:
            answer = input(f"{question} [Y/n] ").strip().lower()
        except EOFError:
            return True
        if answer in ("", "y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        print("Please respond with 'y' or 'n'")


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 ** 2
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _flush_log() -> None:
    for h in log.handlers:
        try:
            h.flush()
        except Exception:
            pass
