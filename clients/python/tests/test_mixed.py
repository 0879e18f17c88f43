"""Mixed languages with numpy arrays: a Python ParallelMap calls a C++ function (the example
plugin's `scale`, which takes and returns acme::NdArray, msgpack ext 1) on C++ acme-worker
processes; arrays go both ways without pickles (PROTOCOL.md §6.5). (The other direction, a C++
client calling a Python worker's named function, is in test_worker.py.)"""

import os
import subprocess

import numpy as np
import pytest

from acme import ParallelMap
from acme.pmap import TasksFailed
from conftest import WORKER_EXE, wait_for_workers

PLUGIN = os.environ.get("ACME_EXAMPLE_PLUGIN",
                        os.path.join(os.path.dirname(WORKER_EXE), "..", "examples", "plugin",
                                     "libacme_example_plugin.so"))


@pytest.fixture
def cpp_workers(broker, monkeypatch):
    if not os.path.exists(PLUGIN):
        pytest.skip(f"no example plugin at {PLUGIN} (set ACME_EXAMPLE_PLUGIN)")
    procs = [subprocess.Popen([WORKER_EXE, "--connect", broker.endpoint, "--slots", "1",
                               "--plugin", PLUGIN], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        wait_for_workers(broker.endpoint, 2, timeout=15)
        monkeypatch.setenv("ACME_BROKER", broker.endpoint)
        yield broker
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test_numpy_arrays_to_a_cpp_function_and_back(cpp_workers):
    signals = [np.arange(12.0).reshape(3, 4) * i for i in range(20)]
    with ParallelMap("scale", signals, 2.5, write_worker_results=False,
                     setup_interactive=False) as pmap:
        scaled = pmap.compute()
    assert len(scaled) == 20
    for i, (got, signal) in enumerate(zip(scaled, signals)):
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, (i, type(got))
        assert got.shape == (3, 4)
        np.testing.assert_array_equal(got, signal * 2.5)


def test_a_wrong_dtype_fails_that_input_with_the_cpp_message(cpp_workers):
    signals = [np.ones(3), np.ones(3, dtype=np.float32), np.ones(3)]
    with pytest.raises(TasksFailed) as caught:
        with ParallelMap("scale", signals, 2.0, write_worker_results=False,
                         setup_interactive=False) as pmap:
            pmap.compute()
    assert caught.value.failed == [1]
    assert "dtype is '<f4', not '<f8'" in str(caught.value), str(caught.value)
    np.testing.assert_array_equal(caught.value.results[0], np.full(3, 2.0))
