"""ACME's cluster set-up functions, on `acme-launch`.

ACME users start workers with `local_cluster_setup()` or `slurm_cluster_setup(...)` and then
run `ParallelMap`, which picks the running workers up; `cluster_cleanup()` stops them. The
same calls work here. Local workers are a `LocalCluster` (acme-broker and Python workers on
this machine); batch workers are an `acme-launch BACKEND` launch whose workers are Python
workers (`--worker-cmd '<this python> -m acme.worker'`), so every `acme-launch` backend
(slurm, sge, pbs) is available through `launch_cluster_setup()`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from . import cluster as _cluster
from .client import AcmeError, query_status

__all__ = [
    "LaunchedCluster",
    "cluster_cleanup",
    "find_program",
    "launch_cluster_setup",
    "local_cluster_setup",
    "slurm_cluster_setup",
]

log = logging.getLogger("ACME")

_ENV_OF = {"acme-launch": "ACME_LAUNCH_EXE", "acme-broker": "ACME_BROKER_EXE",
           "acme-worker": "ACME_WORKER_EXE", "acme-map": "ACME_MAP_EXE"}


def find_program(name: str) -> str:
    """The path of one of acme's programs: `$ACME_<NAME>_EXE`, else next to where the package
    was installed (CMake writes `acme/_paths.py`), else PATH. Raises AcmeError naming all three."""
    env = _ENV_OF.get(name)
    if env and os.environ.get(env):
        return os.environ[env]
    try:
        from . import _paths  # written by `cmake --install`
        candidate = os.path.join(_paths.BIN_DIR, name)
        if os.access(candidate, os.X_OK):
            return candidate
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return found
    raise AcmeError(f"{name} not found: install acme (cmake --install), put {name} on PATH"
                    + (f", or set {env}" if env else ""))


def _memory(text) -> str | None:
    """ACME/dask memory strings ("1GB", "500MB", "2GiB", 2e9) as acme-launch's ("1G", "500M")."""
    if text is None or text == "auto":
        return None
    if isinstance(text, (int, float)):
        return f"{max(1, int(text) // (1 << 20))}M"
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KkMmGgTt]?)(i?[Bb])?\s*", str(text))
    if not match:
        raise ValueError(f"mem_per_worker: cannot read {text!r}: use a number with K, M, G or T, e.g. '4GB'")
    number, unit = match.group(1), (match.group(2) or "M").upper()
    return f"{number}{unit}"


class LaunchedCluster:
    """Workers started by `acme-launch`: its broker endpoint and launch id. `close()` runs
    `acme-launch stop --id`, which cancels the batch jobs and stops the broker."""

    def __init__(self, endpoint: str, launch_id: str, backend: str, n_workers: int):
        self.endpoint = endpoint
        self.launch_id = launch_id
        self.backend = backend
        self.n_workers = n_workers
        self.source = f"acme-launch {backend} --id {launch_id}"
        self._closed = False

    def status(self, timeout: float = 5.0) -> dict:
        return query_status(self.endpoint, timeout=timeout)

    def wait_for_workers(self, n: int, timeout: float) -> int:
        """Waits until n workers are registered; returns how many there are (maybe fewer)."""
        deadline = time.monotonic() + timeout
        online = 0
        while True:
            try:
                online = len(self.status(timeout=2.0).get("workers", []))
            except AcmeError:
                online = 0
            if online >= n or time.monotonic() >= deadline:
                return online
            time.sleep(0.2)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if _cluster.get_default() is self:
            _cluster.set_default(None)
        try:
            subprocess.run([find_program("acme-launch"), "stop", "--id", self.launch_id],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError, AcmeError) as exc:
            log.warning("could not stop launch %s: %s (run: acme-launch stop --id %s)",
                        self.launch_id, exc, self.launch_id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<LaunchedCluster {self.backend} {self.launch_id} at {self.endpoint}>"


def launch_cluster_setup(backend: str, n_workers: int = 1, *, cores_per_worker: int = 1,
                         mem_per_worker=None, time_limit: str | None = None,
                         partition: str | None = None, account: str | None = None,
                         job_extra=(), n_workers_startup: int = 1, timeout: float = 60,
                         interactive: bool = False, worker_cmd: str | None = None,
                         interface: str | None = None, register: bool = True) -> LaunchedCluster:
    """Starts `n_workers` Python workers through `acme-launch BACKEND` (local, slurm, sge, pbs)
    and registers them as the workers every later `ParallelMap` uses. Each worker gets
    `cores_per_worker` slots (one worker process per slot). Returns once `n_workers_startup`
    workers are online; raises AcmeError with acme-launch's own message (e.g. the scheduler's
    reason a job pends) if none came within `timeout` seconds."""
    del interactive  # nothing to ask: acme-launch reports why jobs pend and cleans up itself
    launch_id = f"acme-py-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    if worker_cmd is None:
        # Workers import what this process imports (its sys.path and working directory). SLURM
        # passes the environment on, SGE and PBS do not: the path goes in the command itself.
        path = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        worker_cmd = (f"env PYTHONPATH={shlex.quote(path)} {shlex.quote(sys.executable)} "
                      "-m acme.worker")
    cmd = [find_program("acme-launch"), backend, "--n", str(n_workers),
           "--cpus-per-worker", str(cores_per_worker), "--id", launch_id,
           "--wait", str(max(1, int(timeout))), "--worker-cmd", worker_cmd]
    memory = _memory(mem_per_worker)
    if memory:
        cmd += ["--mem-per-worker", memory]
    if time_limit:
        cmd += ["--time", str(time_limit)]
    if partition:
        cmd += ["--partition", partition]
    if account:
        cmd += ["--account", account]
    if interface:
        cmd += ["--interface", interface]
    for extra in job_extra or ():
        cmd += ["--extra", extra]
    log.info("starting %d workers: %s", n_workers, shlex.join(cmd))
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout + 120)
    endpoint = None
    for line in proc.stdout.splitlines():
        if line.startswith("ACME_BROKER="):
            endpoint = line.split("=", 1)[1].strip()
    if proc.returncode != 0 or not endpoint:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise AcmeError(f"acme-launch {backend} failed (exit {proc.returncode}):\n{tail}")
    launched = LaunchedCluster(endpoint, launch_id, backend, n_workers)
    online = launched.wait_for_workers(max(1, min(n_workers_startup, n_workers)), timeout)
    if online < 1:
        launched.close()
        raise AcmeError(f"acme-launch {backend}: no worker online within {timeout} s")
    log.info("%d/%d workers online at %s (launch %s)", online, n_workers, endpoint, launch_id)
    if register:
        previous = _cluster.get_default()
        if previous is not None and previous is not launched:
            previous.close()
        _cluster.set_default(launched)
    return launched


def slurm_cluster_setup(partition: str = "partition_name", n_cores: int = 1, n_workers: int = 1,
                        processes_per_worker: int = 1, mem_per_worker="1GB",
                        n_workers_startup: int = 1, timeout: int = 60, interactive: bool = True,
                        interactive_wait: int = 10, start_client: bool = True, job_extra=(),
                        invalid_partitions=(), **kwargs) -> LaunchedCluster:
    """ACME's `slurm_cluster_setup`: `n_workers` SLURM jobs (one array job) on `partition`,
    each with `n_cores` cores and `mem_per_worker`, serving Python functions. Later
    `ParallelMap` calls use them; `cluster_cleanup()` cancels the jobs. `processes_per_worker`,
    `interactive_wait` and `start_client` are accepted for compatibility (each core is its own
    worker process here; nothing is interactive)."""
    del processes_per_worker, interactive_wait, start_client
    if partition in invalid_partitions:
        raise ValueError(f"partition {partition!r} is not allowed here ({list(invalid_partitions)})")
    return launch_cluster_setup("slurm", n_workers, cores_per_worker=n_cores,
                                mem_per_worker=mem_per_worker, partition=partition,
                                job_extra=job_extra, n_workers_startup=n_workers_startup,
                                timeout=timeout, interactive=interactive,
                                time_limit=kwargs.pop("walltime", None) or kwargs.pop("time", None),
                                account=kwargs.pop("account", None),
                                interface=kwargs.pop("interface", None))


def local_cluster_setup(n_workers: int | None = None, mem_per_worker=None, interactive: bool = True,
                        start_client: bool = True):
    """ACME's `local_cluster_setup`: `n_workers` local Python workers (default: one per CPU
    this process may use) behind a private acme-broker, used by every later `ParallelMap`
    until `cluster_cleanup()` or the end of this process."""
    del mem_per_worker, interactive, start_client
    previous = _cluster.get_default()
    if previous is not None:
        previous.close()
    local = _cluster.LocalCluster(n_workers)
    _cluster.set_default(local)
    return local


def cluster_cleanup(client=None) -> None:
    """ACME's `cluster_cleanup`: stops the workers of `client` (default: the running ones)."""
    target = client if client is not None else _cluster.get_default()
    if target is None:
        log.info("no running workers to stop")
        return
    target.close()
    if _cluster.get_default() is target:
        _cluster.set_default(None)
