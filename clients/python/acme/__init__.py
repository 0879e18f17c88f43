"""acme for Python: ACME's `ParallelMap` on acme's broker, and Python workers.

    from acme import ParallelMap

    def f(x, y, z=3):
        return (x + y) * z

    with ParallelMap(f, [2, 4, 6, 8], 4) as pmap:
        results = pmap.compute()

With no broker configured the map starts a private acme-broker and one Python worker per
CPU, and stops them afterwards; `acme-launch` (or `slurm_cluster_setup`) starts workers on a
cluster, which later maps find through `~/.acme/broker` or `$ACME_BROKER`. The wire protocol
is docs/PROTOCOL.md; `acme.client.Client` speaks it directly, `python3 -m acme.worker` serves
Python functions (shipped by value with cloudpickle, or named) to any client.
"""

from ._version import __version__

# Names load on first use (PEP 562), so that `python3 -m acme.worker` and `import acme.client`
# do not pay for h5py and the ParallelMap machinery.
_EXPORTS = {
    "AcmeError": "client",
    "BrokerGone": "client",
    "Client": "client",
    "JobError": "client",
    "configured_broker": "client",
    "query_status": "client",
    "LocalCluster": "cluster",
    "cluster_cleanup": "launch",
    "launch_cluster_setup": "launch",
    "local_cluster_setup": "launch",
    "slurm_cluster_setup": "launch",
    "ParallelMap": "pmap",
    "TasksFailed": "pmap",
    "broadcast": "pmap",
    "iterate": "pmap",
    "function": "worker",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'acme' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
