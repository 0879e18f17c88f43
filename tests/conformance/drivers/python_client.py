"""The conformance client driver of the Python implementation (tests/conformance/README.md).

Mimics the subset of `acme-map` the suite uses, over `acme.client.Client`:

    python_client.py --broker ENDPOINT [--json] [--timeout S] FUNCTION [ARG ...]

Each ARG is parsed as JSON when it parses as JSON, else taken as a string; task i is the
msgpack array [ARG i]. Prints one line per input, in input order: with --json
{"index":i,"ok":true,"value":...} or {"index":i,"ok":false,"error":"...","kind":"..."}, else
the value (a str as it is, other values as JSON; an empty line for a failed task). Exit 0 when
every task is ok; 1 with the failures (or the error) on stderr otherwise; 2 on bad usage.
"""

from __future__ import annotations

import json
import sys

import msgpack

from acme.client import AcmeError, Client

USAGE = "usage: python_client.py --broker ENDPOINT [--json] [--timeout S] FUNCTION [ARG ...]"


def parse_argument(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def to_json(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      default=lambda v: list(v) if isinstance(v, (bytes, bytearray)) else repr(v))


def parse_command_line(argv):
    broker, as_json, timeout = None, False, 0.0
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        opt = argv[i]
        if opt == "--json":
            as_json = True
            i += 1
        elif opt in ("--broker", "--timeout") and i + 1 < len(argv):
            if opt == "--broker":
                broker = argv[i + 1]
            else:
                timeout = float(argv[i + 1])
            i += 2
        elif opt == "--":
            i += 1
            break
        else:
            raise SystemExit(f"python_client.py: unknown option {opt}\n{USAGE}")
    if broker is None or i >= len(argv):
        raise SystemExit(USAGE)
    return broker, as_json, timeout, argv[i], argv[i + 1:]


def main(argv) -> int:
    try:
        broker, as_json, timeout, function, args = parse_command_line(argv)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if not args:
        args = [line.rstrip("\r\n") for line in sys.stdin]
    frames = [msgpack.packb([parse_argument(a)], use_bin_type=True) for a in args]
    failures = []
    try:
        with Client(broker) as client:
            job = client.submit(function, iter(frames), len(frames),
                                timeout=timeout if timeout > 0 else None)
            waiting, next_index = {}, 0
            for result in job.results():
                waiting[result.index] = result
                while next_index in waiting:
                    r = waiting.pop(next_index)
                    value = msgpack.unpackb(r.payload, raw=False, strict_map_key=False)
                    if r.status == 0:
                        line = (to_json({"index": r.index, "ok": True, "value": value}) if as_json
                                else value if isinstance(value, str) else to_json(value))
                    else:
                        err = value if isinstance(value, dict) else {"message": repr(value)}
                        message, kind = str(err.get("message", "")), str(err.get("kind") or "")
                        failures.append((r.index, message, kind))
                        line = (to_json({"index": r.index, "ok": False, "error": message,
                                         "kind": kind}) if as_json else "")
                    print(line, flush=True)
                    next_index += 1
    except AcmeError as e:
        sys.stdout.flush()
        print(f"python_client: error: {e}", file=sys.stderr)
        return 1
    if not failures:
        return 0
    print(f"python_client: {len(failures)} of {len(frames)} tasks failed:", file=sys.stderr)
    for index, message, kind in failures[:20]:
        print(f"  input {index} ({args[index]}): {message}{f' [{kind}]' if kind else ''}",
              file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
