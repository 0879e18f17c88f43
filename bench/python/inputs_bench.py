#!/usr/bin/python3
"""Workload (f), numpy arrays as the inputs of a map: acme's ParallelMap next to dask.

    /usr/bin/python3 bench/python/inputs_bench.py [--reps 3] [--json-out FILE]

(f) 200 x 1 MiB float64 arrays, one per task, each task returning its sum -> MB/s out of
    the client (10^6 bytes/s; sending the arrays, running the tasks, results back). This is
    the shape of a Syncopy map over trials. acme: ParallelMap(total, arrays) on
    local_cluster_setup(n_workers=2); dask: client.map(total, arrays) + gather on a
    LocalCluster of 2 single-threaded worker processes (the peer scripts' set-up). The peer
    scripts in ../shared/bench/peers have no such workload, hence this one.

Each repetition runs in a fresh process; the parent prints the median and the range.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from acme_py_bench import report  # noqa: E402

N_ARRAYS, ARRAY_BYTES, N_WORKERS = 200, 1 << 20, 2
KEY = "inputs_MBps"


def total(a):
    return float(a.sum())


def arrays():
    import numpy as np
    return [np.full(ARRAY_BYTES // 8, float(i)) for i in range(N_ARRAYS)]


def check(results):
    assert [round(r) for r in results] == [i * (ARRAY_BYTES // 8) for i in range(N_ARRAYS)]


def run_acme():
    import acme
    inputs = arrays()
    cluster = acme.local_cluster_setup(n_workers=N_WORKERS)
    try:
        kw = dict(write_worker_results=False, setup_interactive=False)
        with acme.ParallelMap(total, inputs[:4], **kw) as pmap:  # warm-up, untimed
            pmap.compute()
        t0 = time.perf_counter()
        with acme.ParallelMap(total, inputs, **kw) as pmap:
            results = pmap.compute()
        dt = time.perf_counter() - t0
    finally:
        acme.cluster_cleanup(cluster)
    check(results)
    return dt


def run_dask():
    import logging
    from distributed import Client, LocalCluster
    inputs = arrays()
    with LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(N_WORKERS)
        client.gather(client.map(total, inputs[:4], pure=False))  # warm-up, untimed
        t0 = time.perf_counter()
        results = client.gather(client.map(total, inputs, pure=False))
        dt = time.perf_counter() - t0
    check(results)
    return dt


SYSTEMS = {"acme-py": run_acme, "dask": run_dask}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per repetition")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        dt = SYSTEMS[args.one]()
        print(f"JSON {json.dumps({KEY: N_ARRAYS * ARRAY_BYTES / 1e6 / dt})}", flush=True)
        return
    failed = False
    for system in args.systems.split(","):
        runs = []
        for rep in range(args.reps):
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--one", system],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                text, _ = p.communicate(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                text = f"TIMEOUT after {args.timeout:.0f} s"
            try:
                os.killpg(p.pid, signal.SIGKILL)  # nothing of the rep survives it
            except ProcessLookupError:
                pass
            p.wait()
            for line in text.splitlines():
                if line.startswith("JSON "):
                    runs.append(json.loads(line[5:])[KEY])
                elif line.strip():
                    print(f"# {system} rep {rep + 1}: {line}", flush=True)
        if not runs:
            print(f"RESULT {system} {KEY}: FAILED (no repetition finished)", flush=True)
            failed = True
            continue
        report(system, KEY, runs, args.json_out, " MB/s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
