"""Result files of a ParallelMap, laid out exactly as ACME lays them out.

Two sides use this module:

* the **worker** (``acme.worker``, or the client for a function of another language, which
  cannot write files) calls :func:`write_result` once per task with the ``write`` spec that
  :class:`acme.ParallelMap` put into the common frame;
* the **client** calls :func:`prepare_output` before a map (directories, the shared container
  of ``single_file``) and :func:`finish_container` after it (the aggregate ``<func>.h5``).

Layout (ACME's, see its "Auto-Generated HDF5-Files" documentation)::

    output_dir/
      <func>.h5                    aggregate container: group comp_<i> = external link to
                                   <func>_payload/<func>_<i>.h5 ("/"), or with result_shape
                                   one virtual dataset "result_0" stacking every result_0
      <func>_payload/<func>_<i>.h5 one file per task: datasets result_0, result_1, ...

``single_file=True``: only ``<func>.h5``, holding ``comp_<i>/result_<k>`` (or, with
``result_shape``, the real dataset ``result_0`` plus ``comp_<i>/result_<k>`` for k >= 1).
``write_pickle=True``: ``output_dir/<func>_<i>.pickle`` and no container.

Return values follow ACME's rule: a value that is not a list/tuple is treated as a
one-element list; a list whose items are all numbers or strings becomes one dataset
``result_0`` (so a scalar 18 reads back as ``[18]``); otherwise item k becomes ``result_k``.
A value HDF5 cannot hold (``None``, objects, ragged lists) is pickled instead, for that task
only, to ``<func>_<i>.pickle`` next to where its ``.h5`` would have been (holding the list of
return values, as ACME's emergency pickles do), with a warning.

Writes of per-task files go to a temporary name and are renamed into place, so a worker
killed mid-write never leaves a half file and a retried task simply replaces it. Writers of
the single shared container serialize on a POSIX lock (``fcntl.lockf``, which also works on
NFSv4) of ``<container>.lock``; the OS drops the lock of a writer that dies.
"""

from __future__ import annotations

import fcntl
import logging
import numbers
import os
import pickle
from typing import Any, Sequence

__all__ = ["write_result", "result_filename", "prepare_output", "finish_container"]

log = logging.getLogger("ACME")

#: What the HDF5 layer raises for a value it cannot store (then we pickle instead).
_UNSTORABLE = (TypeError, ValueError)


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------

def result_filename(spec: dict, task_id: int) -> str:
    """The file task `task_id` writes in `spec`'s mode (.h5, or .pickle with write_pickle)."""
    ext = "pickle" if spec["mode"] == "pickle" else "h5"
    return os.path.join(spec["dir"], f"{spec['name']}_{int(task_id)}.{ext}")


def write_result(value: Any, task_id: int, spec: dict) -> str:
    """Write one task's return value as ACME would; returns the file that holds it.

    `spec` is the ``write`` map of the common frame (built by :func:`make_spec`). The
    returned name is what travels back to the client: the task's ``.h5`` file, the
    container (single_file), or the ``.pickle`` that holds the value.
    """
    import h5py  # only the writers of results need h5py

    mode = spec["mode"]
    if mode == "pickle":
        fname = result_filename(spec, task_id)
        _atomic_pickle(value, fname)
        return fname
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    stacking_dim = spec.get("stacking_dim")
    if mode == "single":
        return _write_single(h5py, values, int(task_id), spec, stacking_dim)

    fname = result_filename(spec, task_id)
    tmp = f"{fname}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as h5f:
            if stacking_dim is None:
                _write_plain(h5f, "", values)
            else:
                for k, item in enumerate(values):
                    h5f.create_dataset(f"result_{k}", data=item)
    except _UNSTORABLE as exc:
        _unlink(tmp)
        return _emergency_pickle(values, fname, exc)
    except BaseException:
        _unlink(tmp)
        raise
    os.replace(tmp, fname)
    _unlink(fname[: -len(".h5")] + ".pickle")  # a stale fallback of an earlier attempt
    return fname


def _write_plain(h5f, group: str, values: list) -> None:
    """ACME's rule: all numbers/strings -> one dataset result_0, else one per item."""
    if all(isinstance(item, (numbers.Number, str)) for item in values):
        h5f.create_dataset(f"{group}result_0", data=values)
    else:
        for k, item in enumerate(values):
            h5f.create_dataset(f"{group}result_{k}", data=item)


def _write_single(h5py, values: list, task_id: int, spec: dict, stacking_dim) -> str:
    """Write into the one shared container under an exclusive lock (single_file=True)."""
    import numpy as np

    container = spec["container"]
    group = f"comp_{task_id}"
    with _FileLock(container + ".lock"):
        with h5py.File(container, "a") as h5f:
            if group in h5f:  # a retry after a worker died mid-way: start the task afresh
                del h5f[group]
            try:
                if stacking_dim is None:
                    _write_plain(h5f, group + "/", values)
                else:
                    dset = h5f["result_0"]
                    first = np.asarray(values[0])
                    if None in (dset.maxshape or ()):
                        _grow(dset, first.shape, stacking_dim)
                    if first.ndim == dset.ndim - 1:  # fill the leading part of each axis
                        index = [slice(0, n) for n in first.shape]
                        index.insert(stacking_dim, task_id)
                    else:
                        index = [slice(None)] * dset.ndim
                        index[stacking_dim] = task_id
                    dset[tuple(index)] = first
                    for k, item in enumerate(values[1:], start=1):
                        h5f.create_dataset(f"{group}/result_{k}", data=item)
            except _UNSTORABLE as exc:
                if group in h5f:
                    del h5f[group]
                pname = os.path.join(os.path.dirname(container), f"{spec['name']}_{task_id}.pickle")
                return _emergency_pickle(values, pname[: -len(".pickle")] + ".h5", exc)
    return container


def _grow(dset, shape: tuple, stacking_dim: int) -> None:
    """Enlarge the unlimited (np.inf) axes of `dset` to hold a result of `shape`."""
    want = list(dset.shape)
    others = [ax for ax in range(dset.ndim) if ax != stacking_dim]
    for ax, size in zip(others, shape):
        if dset.maxshape[ax] is None and size > want[ax]:
            want[ax] = size
    if tuple(want) != dset.shape:
        dset.resize(tuple(want))


def _emergency_pickle(values: list, h5name: str, exc: Exception) -> str:
    """Pickle what HDF5 could not hold next to its would-be .h5 file; warn like ACME."""
    pname = h5name[: -len(".h5")] + ".pickle"
    _atomic_pickle(values, pname)
    log.warning("Could not write %s results have been pickled instead: %s. Return values are "
                "most likely not suitable for storage in HDF5 containers. Original error "
                "message: %s", h5name, pname, exc)
    return pname


def _atomic_pickle(value: Any, fname: str) -> None:
    tmp = f"{fname}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            try:
                pickle.dump(value, fh)
            except (pickle.PicklingError, AttributeError, TypeError):
                import cloudpickle  # lambdas, local classes: loadable with pickle + cloudpickle
                fh.seek(0)
                fh.truncate()
                cloudpickle.dump(value, fh)
        os.replace(tmp, fname)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _FileLock:
    """An exclusive POSIX record lock on `path` (created if missing), blocking."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------

def make_spec(output_dir: str, name: str, *, single_file: bool, write_pickle: bool,
              stacking_dim: int | None) -> dict:
    """The ``write`` map of the common frame (plain msgpack types only)."""
    if write_pickle:
        return {"mode": "pickle", "dir": output_dir, "name": name, "stacking_dim": None}
    if single_file:
        return {"mode": "single", "dir": output_dir, "name": name,
                "container": os.path.join(output_dir, f"{name}.h5"),
                "stacking_dim": stacking_dim}
    return {"mode": "hdf5", "dir": os.path.join(output_dir, f"{name}_payload"), "name": name,
            "stacking_dim": stacking_dim}


def prepare_output(spec: dict, result_shape: Sequence | None, result_dtype) -> None:
    """Create the directories (and the shared container of single_file) before a map.

    Raises OSError naming the folder when it cannot be created.
    """
    import h5py
    import numpy as np

    try:
        os.makedirs(spec["dir"], exist_ok=True)
    except OSError as exc:
        raise OSError(f"automatic creation of output folder {spec['dir']} failed: {exc}") from exc
    if spec["mode"] != "single" or os.path.exists(spec["container"]):
        return
    with h5py.File(spec["container"], "w") as h5f:
        if result_shape is not None:
            inf = [s == np.inf for s in result_shape]
            shape = tuple(1 if i else int(s) for s, i in zip(result_shape, inf))
            maxshape = tuple(None if i else int(s) for s, i in zip(result_shape, inf)) if any(inf) else None
            h5f.create_dataset("result_0", shape=shape, maxshape=maxshape, dtype=result_dtype)


def finish_container(spec: dict, n_inputs: int, files: Sequence[str | None],
                     result_shape: Sequence | None, result_dtype) -> str | None:
    """Write the aggregate ``<func>.h5`` after a map; returns its path (None for pickles).

    `files[i]` is what task i returned (its file), or None if it has not succeeded (yet);
    `result_shape` is the validated shape (n_inputs at the stacking axis, np.inf allowed).
    Without `result_shape`: group ``comp_<i>`` external-links every task's payload file
    (as ACME does, also the not yet successful ones, so the container works once a rerun
    fills them in), except tasks whose value had to be pickled (a link to a pickle would be
    broken; they are named in a warning). With `result_shape`: the virtual dataset
    ``result_0`` of dtype `result_dtype` stacking every task's ``result_0`` along the
    ``None`` axis (missing tasks read as the fill value 0), plus links
    ``comp_<i>/result_<k>`` for further return values. Rebuilt on every call.
    """
    import h5py
    import numpy as np

    if spec["mode"] == "pickle":
        return None
    container = os.path.join(os.path.dirname(spec["dir"]) if spec["mode"] == "hdf5" else spec["dir"],
                             f"{spec['name']}.h5")
    if spec["mode"] == "single":
        _unlink(container + ".lock")
        return container
    payload = os.path.basename(spec["dir"])
    name = spec["name"]
    pickled = [i for i, f in enumerate(files) if f is not None and f.endswith(".pickle")]
    skip = set(pickled)
    tmp = f"{container}.tmp{os.getpid()}"
    if result_shape is None:
        with h5py.File(tmp, "w") as h5f:
            for i in range(n_inputs):
                if i not in skip:
                    h5f[f"comp_{i}"] = h5py.ExternalLink(f"{payload}/{name}_{i}.h5", "/")
        os.replace(tmp, container)
        return container

    stacking_dim = spec["stacking_dim"]
    done = [i for i, f in enumerate(files) if f is not None and f.endswith(".h5")]
    extras = []
    if done:  # further return values (result_1, ...) are linked per task, as ACME does
        with h5py.File(files[done[0]], "r") as h5f:
            extras = sorted((k for k in h5f.keys() if k != "result_0"),
                            key=lambda k: int(k.split("_")[1]))
    # An np.inf axis is unlimited: each source maps with its own extent (ACME's layout).
    unlimited = [s == np.inf for s in result_shape]
    shape = tuple(1 if u else int(s) for s, u in zip(result_shape, unlimited))
    maxshape = tuple(None if u else int(s) for s, u in zip(result_shape, unlimited)) if any(unlimited) else None
    src_axes = [ax for ax in range(len(shape)) if ax != stacking_dim]
    src_shape = tuple(shape[ax] for ax in src_axes)
    src_max = tuple(maxshape[ax] for ax in src_axes) if maxshape else None
    layout = h5py.VirtualLayout(shape=shape, dtype=np.dtype(result_dtype), maxshape=maxshape)
    index = [slice(h5py.h5s.UNLIMITED) if u else slice(None) for u in unlimited]
    src_index = tuple(index[ax] for ax in src_axes)
    for i in range(n_inputs):
        if i in skip:
            continue
        index[stacking_dim] = i
        source = h5py.VirtualSource(f"{payload}/{name}_{i}.h5", "result_0", shape=src_shape,
                                    maxshape=src_max)
        layout[tuple(index)] = source[src_index] if src_index else source
    with h5py.File(tmp, "w", libver="latest") as h5f:
        h5f.create_virtual_dataset("result_0", layout)
        for extra in extras:
            for i in range(n_inputs):
                if i not in skip:
                    h5f[f"comp_{i}/{extra}"] = h5py.ExternalLink(f"{payload}/{name}_{i}.h5", extra)
    os.replace(tmp, container)
    return container
