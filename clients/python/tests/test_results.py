"""acme.results without workers: ACME's file layout, and many processes writing one container."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from acme import results  # noqa: E402


def _writer(spec, ids):
    for i in ids:
        results.write_result((np.full(5, i), i * 2), i, spec)


def test_single_file_many_processes(tmp_path):
    """4 processes x 25 tasks into one container: every group complete, no lock file left."""
    spec = results.make_spec(str(tmp_path), "f", single_file=True, write_pickle=False, stacking_dim=None)
    results.prepare_output(spec, None, None)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(spec, range(k, 100, 4))) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results.finish_container(spec, 100, [spec["container"]] * 100, None, None)
    with h5py.File(spec["container"], "r") as h5f:
        assert len(h5f.keys()) == 100
        for i in range(100):
            assert h5f[f"comp_{i}/result_0"][()].tolist() == [i] * 5
            assert h5f[f"comp_{i}/result_1"][()] == 2 * i
    assert sorted(os.listdir(tmp_path)) == ["f.h5"]


def test_acme_dataset_rules_and_retry(tmp_path):
    spec = results.make_spec(str(tmp_path), "g", single_file=False, write_pickle=False, stacking_dim=None)
    results.prepare_output(spec, None, None)
    # all numbers/strings -> one dataset of the list (ACME: a scalar reads back as [x])
    name = results.write_result(7, 0, spec)
    with h5py.File(name, "r") as h5f:
        assert list(h5f) == ["result_0"] and h5f["result_0"][()].tolist() == [7]
    name = results.write_result((np.arange(3), "x"), 1, spec)
    with h5py.File(name, "r") as h5f:
        assert list(h5f) == ["result_0", "result_1"]
    # unstorable -> pickle of the list of return values; a later retry replaces it by HDF5
    pname = results.write_result(None, 2, spec)
    assert pname.endswith("g_2.pickle")
    with open(pname, "rb") as fh:
        assert pickle.load(fh) == [None]
    name = results.write_result(1.5, 2, spec)
    assert name.endswith("g_2.h5") and not os.path.exists(pname)
    assert not [n for n in os.listdir(spec["dir"]) if ".tmp" in n]
