"""The implementations the suite checks, as command templates: a new language adds one entry.

Each entry names a `worker` command (a worker process that connects to `{endpoint}` with
`{slots}` slots and serves the builtins echo, sleep, fail), a `client` command (the client
driver of README.md: runs `{function}` over `{args}` on the broker at `{endpoint}`) and
optionally a `broker` command (binds `{endpoint}`). Any of them may be None (not provided).

Placeholders: `{endpoint}`, `{slots}`, `{function}`; an element that is exactly `{args}`
expands to the arguments, one element each; `{ACME_WORKER_EXE}`, `{ACME_MAP_EXE}`,
`{ACME_BROKER_EXE}`, `{PYTHON}`, `{REPO}`, `{HERE}` come from the environment (defaults
below). `requires` lists, per role, files that must exist, else that role's tests skip
(saying which file is missing); `env` adds variables (`PYTHONPATH` entries are prepended).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
_BUILD = str(REPO / "build" / "dev")  # this repository's dev build, unless ACME_*_EXE say otherwise

DEFAULTS = {
    "ACME_WORKER_EXE": _BUILD + "/worker/acme-worker",
    "ACME_MAP_EXE": _BUILD + "/libclient/acme-map",
    "ACME_BROKER_EXE": _BUILD + "/broker/acme-broker",
    "PYTHON": "/usr/bin/python3",
}

IMPLEMENTATIONS = [
    {
        "name": "cpp",
        "worker": ["{ACME_WORKER_EXE}", "--connect", "{endpoint}", "--slots", "{slots}",
                   "--log-level", "warn"],
        "client": ["{ACME_MAP_EXE}", "--broker", "{endpoint}", "--json", "{function}", "{args}"],
        "broker": ["{ACME_BROKER_EXE}", "--bind", "{endpoint}", "--heartbeat-ms", "{heartbeat_ms}",
                   "--log-level", "warn"],
        "requires": {"worker": ["{ACME_WORKER_EXE}"], "client": ["{ACME_MAP_EXE}"],
                     "broker": ["{ACME_BROKER_EXE}"]},
        "env": {},
    },
    {
        "name": "python",
        "worker": ["{PYTHON}", "-m", "acme.worker", "--connect", "{endpoint}", "--slots", "{slots}",
                   "--threads", "--log-level", "warn"],
        "client": ["{PYTHON}", "{HERE}/drivers/python_client.py", "--broker", "{endpoint}",
                   "--json", "{function}", "{args}"],
        "broker": None,
        "requires": {"worker": ["{REPO}/clients/python/acme/worker.py"],
                     "client": ["{REPO}/clients/python/acme/client.py"]},
        "env": {"PYTHONPATH": "{REPO}/clients/python"},
    },
]


def variables() -> dict:
    v = {k: os.environ.get(k) or d for k, d in DEFAULTS.items()}
    v["REPO"], v["HERE"] = str(REPO), str(HERE)
    return v


def expand(template: list[str], **values) -> list[str]:
    """The argv of a template: `{args}` expands to values["args"], other placeholders format."""
    allv = {**variables(), **{k: str(v) for k, v in values.items() if k != "args"}}
    argv = []
    for element in template:
        if element == "{args}":
            argv.extend(str(a) for a in values.get("args", ()))
        else:
            argv.append(element.format(**allv))
    return argv


def environment(impl: dict) -> dict:
    """The children's environment: ours, minus ACME_BROKER (the templates pass the endpoint),
    plus the entry's `env` (PYTHONPATH prepended)."""
    env = dict(os.environ)
    env.pop("ACME_BROKER", None)
    for key, value in impl.get("env", {}).items():
        value = value.format(**variables())
        if key == "PYTHONPATH" and env.get(key):
            value = value + os.pathsep + env[key]
        env[key] = value
    return env


def missing(impl: dict, role: str) -> list[str]:
    """Files the entry's `role` command requires that do not exist."""
    return [p for p in (r.format(**variables()) for r in impl.get("requires", {}).get(role, []))
            if not Path(p).exists()]


def selected() -> list[dict]:
    """The entries ACME_CONFORMANCE_IMPL names (comma-separated), else all."""
    want = os.environ.get("ACME_CONFORMANCE_IMPL", "").strip()
    if not want:
        return IMPLEMENTATIONS
    names = [w.strip() for w in want.split(",") if w.strip()]
    unknown = [n for n in names if n not in {i["name"] for i in IMPLEMENTATIONS}]
    if unknown:
        sys.exit(f"ACME_CONFORMANCE_IMPL names unknown implementations {unknown}; "
                 f"known: {[i['name'] for i in IMPLEMENTATIONS]} (tests/conformance/implementations.py)")
    return [i for i in IMPLEMENTATIONS if i["name"] in names]
