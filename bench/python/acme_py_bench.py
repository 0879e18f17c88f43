#!/usr/bin/python3
"""acme's Python package on the peer-comparison workloads: ParallelMap, 2 local Python workers.

    /usr/bin/python3 bench/python/acme_py_bench.py             # 3 reps, median + range
    /usr/bin/python3 bench/python/acme_py_bench.py --one       # one rep, raw numbers
    bash bench/python/compare.sh [REPS] [PEERS_DIR]            # side by side with dask, ipyparallel

Every call is what an ACME user writes (results in memory unless said):
    with ParallelMap(func, inputs, write_worker_results=False) as pmap:
        results = pmap.compute()
on workers started once by `acme.local_cluster_setup(n_workers=2)` (ACME's way to keep a
cluster across maps), each a `python3 -m acme.worker` process with one slot, behind a private
acme-broker (ipc://).

(e) cold start: process launch -> imports, ParallelMap(noop, [0], n_workers=2) starts its own
    broker and workers, result in hand (s)
(a) ParallelMap(noop, range(N))                     -> tasks/s
(b) 300 x ParallelMap(noop, [i]), sequential        -> p50 / p99 in us (20 untimed first)
(c) ParallelMap(sleep 10 ms, range(200))            -> efficiency = 1.0 s ideal / wall
(d) ParallelMap(1 MiB numpy, range(200))            -> MB/s into the client
(d-h5) the same with write_worker_results=True (ACME's default: each worker writes an HDF5 file)

Workload sizes and output lines are those of the peer scripts (dask_bench.py, ipp_bench.py),
so that `compare.sh` can put them side by side. Needs the package importable (PYTHONPATH=
clients/python, or installed) and acme-broker (ACME_BROKER_EXE, the install, or PATH).
"""
import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SYSTEM = "acme-py"
N_THROUGHPUT, N_LATENCY, N_WARMUP_LAT = 20_000, 300, 20
N_SLEEP, SLEEP_S, N_DATA, DATA_BYTES, N_WORKERS = 200, 0.010, 200, 1 << 20, 2


def noop(x):
    return x


def sleep10(x):
    time.sleep(SLEEP_S)
    return x


def make_mib(x):
    import numpy as np
    a = np.empty(DATA_BYTES // 8, dtype="f8")
    a.fill(float(x))
    return a


def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, math.ceil(p / 100.0 * len(xs)) - 1))]


def emit(name, value, unit, extra=""):
    print(f"{SYSTEM} {name}: {value:,.4g} {unit}{(' ' + extra) if extra else ''}", flush=True)


def one(args):
    t_cold0 = float(os.environ.get("BENCH_T0") or time.time())
    import acme
    from acme import ParallelMap

    out = {}
    with ParallelMap(noop, [0], n_workers=N_WORKERS, write_worker_results=False,
                     setup_interactive=False) as pm:
        res = pm.compute()
    out["cold_first_s"] = time.time() - t_cold0
    assert res == [0], res
    emit("(e) cold start -> first result (own broker and workers)", out["cold_first_s"], "s",
         f"(acme {acme.__version__})")

    t0 = time.perf_counter()
    cluster = acme.local_cluster_setup(n_workers=N_WORKERS)
    out["startup_s"] = time.perf_counter() - t0
    emit("cluster startup (local_cluster_setup, 2 workers registered)", out["startup_s"], "s")

    def pmap(func, inputs, **kw):
        kw.setdefault("write_worker_results", False)
        with ParallelMap(func, inputs, setup_interactive=False, **kw) as pm:
            return pm.compute()

    outdir = tempfile.mkdtemp(prefix="acme-py-bench-")
    try:
        assert pmap(noop, list(range(-100, 0))) == list(range(-100, 0))  # warm-up, untimed
        if "a" in args.only:
            t0 = time.perf_counter()
            res = pmap(noop, list(range(args.n)))
            dt = time.perf_counter() - t0
            assert res == list(range(args.n))
            out["throughput_tps"] = args.n / dt
            emit(f"(a) throughput ParallelMap {args.n} no-op", out["throughput_tps"], "tasks/s",
                 f"({dt:.2f} s)")
        if "b" in args.only:
            for i in range(N_WARMUP_LAT):
                pmap(noop, [i])
            samples = []
            for i in range(N_LATENCY):
                t0 = time.perf_counter()
                r = pmap(noop, [i])
                samples.append(time.perf_counter() - t0)
                assert r == [i]
            us = [s * 1e6 for s in samples]
            out["lat_p50_us"], out["lat_p99_us"] = pct(us, 50), pct(us, 99)
            emit("(b) ParallelMap(noop, [i]) round trip p50", out["lat_p50_us"], "us",
                 f"p99 {out['lat_p99_us']:,.0f} us")
        if "c" in args.only:
            t0 = time.perf_counter()
            res = pmap(sleep10, list(range(N_SLEEP)))
            dt = time.perf_counter() - t0
            assert res == list(range(N_SLEEP))
            out["sleep_wall_s"] = dt
            out["efficiency"] = N_SLEEP * SLEEP_S / N_WORKERS / dt
            emit("(c) 200 x 10 ms sleep wall", dt, "s", f"efficiency {out['efficiency']:.3f}")
        if "d" in args.only:
            t0 = time.perf_counter()
            res = pmap(make_mib, list(range(N_DATA)))
            dt = time.perf_counter() - t0
            assert len(res) == N_DATA and res[-1].nbytes == DATA_BYTES and res[7][0] == 7.0
            out["data_MBps"] = N_DATA * DATA_BYTES / 1e6 / dt
            emit("(d) 200 x 1 MiB results in memory", out["data_MBps"], "MB/s", f"({dt:.2f} s)")
            del res
            h5dir = os.path.join(outdir, "h5")
            t0 = time.perf_counter()
            pmap(make_mib, list(range(N_DATA)), write_worker_results=True, output_dir=h5dir)
            dt = time.perf_counter() - t0
            files = [os.path.join(d, f) for d, _, fs in os.walk(h5dir) for f in fs
                     if f.startswith("make_mib_") and f.endswith(".h5")]
            nbytes = sum(os.path.getsize(f) for f in files)
            assert len(files) == N_DATA and nbytes >= N_DATA * DATA_BYTES, (len(files), nbytes)
            out["data_h5_MBps"] = N_DATA * DATA_BYTES / 1e6 / dt
            emit("(d-h5) 200 x 1 MiB results written to HDF5 by the workers", out["data_h5_MBps"],
                 "MB/s", f"({dt:.2f} s, {len(files)} files)")
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
        t0 = time.perf_counter()
        acme.cluster_cleanup(cluster)
        emit("cluster shutdown", time.perf_counter() - t0, "s")
    print("JSON " + json.dumps(out), flush=True)


def report(system, key, vals, json_out, unit=""):
    """Prints the RESULT line of one measurement (median and range over the repetitions) and
    appends it to `json_out` (one JSON line, compare.sh reads them)."""
    med = statistics.median(vals)
    print(f"RESULT {system} {key}: median {med:,.4g}{unit} (range {min(vals):,.4g} - "
          f"{max(vals):,.4g}, n={len(vals)})", flush=True)
    if json_out:
        with open(json_out, "a") as f:
            f.write(json.dumps({"system": system, "key": key, "median": med, "min": min(vals),
                                "max": max(vals), "n": len(vals), "all": vals}) + "\n")


def reps(args):
    """Each repetition in a fresh process (its own session), then median and range."""
    runs = []
    for r in range(args.reps):
        env = dict(os.environ, BENCH_T0=repr(time.time()))
        cmd = [sys.executable, os.path.abspath(__file__), "--one", "--only", args.only, "--n", str(args.n)]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
        try:
            text, _ = p.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            text, _ = p.communicate()
            print(f"# rep {r + 1}: TIMEOUT after {args.timeout:.0f} s", flush=True)
        try:
            os.killpg(p.pid, signal.SIGKILL)  # nothing of the rep survives it
        except ProcessLookupError:
            pass
        for line in text.splitlines():
            if line.startswith("JSON "):
                runs.append(json.loads(line[5:]))
            elif line.strip():
                print(f"# rep {r + 1}: {line}", flush=True)
        print(f"# rep {r + 1}: rc={p.returncode}", flush=True)
        time.sleep(1.0)
    for key in (runs[0] if runs else {}):
        report(SYSTEM, key, [run[key] for run in runs if key in run], args.json_out)
    if not runs:
        print(f"RESULT {SYSTEM}: FAILED (no repetition finished)", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", action="store_true", help="run one repetition in this process")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per repetition")
    ap.add_argument("--only", default="abcd", help="subset of measurements, e.g. 'ad'")
    ap.add_argument("--n", type=int, default=N_THROUGHPUT, help="tasks for (a)")
    ap.add_argument("--json-out", default="", help="append one JSON line per measurement to this file")
    a = ap.parse_args()
    one(a) if a.one else reps(a)
