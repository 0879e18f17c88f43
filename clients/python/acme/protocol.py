"""The acme wire protocol (docs/PROTOCOL.md): constants and a validating codec.

`encode` builds the frames of one message for ``send_multipart``; `decode` checks a received
message against the rules of PROTOCOL.md §11 (in the same order as the reference decoder,
``core/src/protocol/codec.cpp``) and raises `DecodeError` with the typed reason of the first
rule it breaks, so that a peer never crashes on garbage: it drops and logs it (§11).

A decoded header is a plain dict: nil values are removed (§5.4: nil counts as absent), optional
fields that have a default in the field tables of §6 are filled in with it, and unknown keys
are kept as they came (receivers ignore them).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import msgpack

VERSION = 1
SIG_CLIENT, SIG_WORKER, SIG_BROKER = b"ACMEC1", b"ACMEW1", b"ACMEB1"

# §5.3 command bytes.
(SUBMIT, CANCEL, HEARTBEAT, BYE, READY, RESULTS, ACCEPT, DONE, ERROR, WELCOME, TASKS,
 STATUS) = range(1, 13)
COMMAND_NAMES = {
    SUBMIT: "SUBMIT", CANCEL: "CANCEL", HEARTBEAT: "HEARTBEAT", BYE: "BYE", READY: "READY",
    RESULTS: "RESULTS", ACCEPT: "ACCEPT", DONE: "DONE", ERROR: "ERROR", WELCOME: "WELCOME",
    TASKS: "TASKS", STATUS: "STATUS",
}

# §6.5 task status.
OK, FAILED, TIMED_OUT, POISONED, UNSUPPORTED = 0, 1, 2, 3, 4
CANCELLED = 5  # reserved, never sent in version 1
STATUS_NAMES = {OK: "ok", FAILED: "failed", TIMED_OUT: "timed-out", POISONED: "poisoned",
                UNSUPPORTED: "unsupported", CANCELLED: "cancelled"}

# §6.2.4 ERROR codes.
(MALFORMED, VERSION_MISMATCH, UNKNOWN_COMMAND, BAD_REQUEST, NO_SUCH_FUNCTION, TOO_LARGE,
 SHUTTING_DOWN, INTERNAL) = range(1, 9)
ERROR_NAMES = {
    MALFORMED: "malformed", VERSION_MISMATCH: "version-mismatch",
    UNKNOWN_COMMAND: "unknown-command", BAD_REQUEST: "bad-request",
    NO_SUCH_FUNCTION: "no-such-function", TOO_LARGE: "too-large",
    SHUTTING_DOWN: "shutting-down", INTERNAL: "internal",
}

# §5.6 limits.
MAX_HEADER = 65536
MAX_FUNCTION_NAME = 255
MAX_FUNCTIONS = 4096
MAX_TEXT = 4096
MAX_ENTRIES_PER_MESSAGE = 1024  # RESULTS/TASKS/CANCEL entries that always fit one header
MAX_DEPTH = 4  # header map > list > entry > one level to spare (§5.4)

PEERS = (b"C", b"W", b"B")
_SIGNATURES = {b"C": SIG_CLIENT, b"W": SIG_WORKER, b"B": SIG_BROKER}

REASONS = (
    "TooFewFrames", "NotAcme", "UnknownPeer", "VersionMismatch", "WrongPeer", "UnknownCommand",
    "CommandNotAllowed", "HeaderTooLarge", "MalformedHeader", "MissingField", "BadField",
    "PayloadCountMismatch",
)
# §11: the ERROR code a broker answers a client with, per reason (None: dropped).
ERROR_CODE_FOR = {
    "TooFewFrames": MALFORMED, "NotAcme": None, "UnknownPeer": None,
    "VersionMismatch": VERSION_MISMATCH, "WrongPeer": None, "UnknownCommand": UNKNOWN_COMMAND,
    "CommandNotAllowed": UNKNOWN_COMMAND, "HeaderTooLarge": TOO_LARGE,
    "MalformedHeader": MALFORMED, "MissingField": MALFORMED, "BadField": MALFORMED,
    "PayloadCountMismatch": MALFORMED,
}


class DecodeError(ValueError):
    """A message that breaks a rule of PROTOCOL.md §11.

    `reason` is the rule's name (one of `REASONS`), `version` the protocol version its
    signature named (None when the signature was unreadable), `field` the header field at
    fault when there is one.
    """

    def __init__(self, reason: str, detail: str = "", *, version: int | None = None,
                 field: str | None = None):
        self.reason = reason
        self.version = version
        self.field = field
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Message(NamedTuple):
    """A decoded message: the sender's peer letter, the command byte, the header and the
    payload frames (bytes or zmq.Frame, as they were given to `decode`)."""
    peer: bytes
    command: int
    header: dict
    payload: list


def signature(peer: bytes) -> bytes:
    """The version-1 signature frame of peer letter b"C", b"W" or b"B"."""
    return _SIGNATURES[peer]


def _frame_bytes(frame: Any) -> bytes:
    """The bytes of a frame given as bytes, bytearray, memoryview or zmq.Frame."""
    if isinstance(frame, bytes):
        return frame
    data = getattr(frame, "bytes", None)  # zmq.Frame
    if isinstance(data, bytes):
        return data
    return bytes(frame)


def _parse_signature(frame: Any) -> tuple[bytes, int]:
    """(peer letter, version) of a signature frame, or DecodeError NotAcme/UnknownPeer."""
    text = _frame_bytes(frame)
    # "ACME", a peer letter, the version in decimal: 1 to 3 digits, no leading zero (§5.2).
    if not 6 <= len(text) <= 8 or not text.startswith(b"ACME"):
        raise DecodeError("NotAcme", "the first frame is not an acme signature")
    peer = text[4:5]
    if peer not in PEERS:
        raise DecodeError("UnknownPeer", f"the signature names no known peer: {text!r}")
    digits = text[5:]
    if (len(digits) > 1 and digits[:1] == b"0") or not all(48 <= d <= 57 for d in digits):
        raise DecodeError("NotAcme", f"the signature has no valid version: {text!r}")
    return peer, int(digits)


def signature_version(frame: Any) -> int | None:
    """The protocol version a well-formed signature of any peer names, else None (§5.2)."""
    try:
        return _parse_signature(frame)[1]
    except DecodeError:
        return None


def encode(signature: bytes, command: int, header: dict, payload: Sequence = ()) -> list:
    """The frames of one message, ready for ``send_multipart``.

    `header` is packed as given (str keys, str values as msgpack str); None values are left
    out, so optional fields can be passed as None. `payload` frames are appended unchanged.
    """
    if any(value is None for value in header.values()):
        header = {key: value for key, value in header.items() if value is not None}
    return [signature, bytes((command,)),
            msgpack.packb(header, use_bin_type=True), *payload]


# ---- Field schemas (PROTOCOL.md §6) ----
#
# A field spec: (key, kind, required, default, extra). kinds: "u8".."u64" (extra: minimum),
# "bool", "str" (extra: (min, max) bytes), "list" (extra: (min, max, entry-checker)).

_UMAX = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF, "u64": 0xFFFFFFFFFFFFFFFF}
_NO_LIMIT = 1 << 62


def _is_uint(value: Any, kind: str) -> bool:
    return type(value) is int and 0 <= value <= _UMAX[kind]


def _entry_ints(*kinds: str, status_at: int | None = None, statuses=None, min_last=None):
    """A checker of positional list entries of unsigned ints (§5.4)."""
    arity = len(kinds)

    def check(entry: Any) -> bool:
        if type(entry) is not list or len(entry) != arity:
            return False
        for i, (value, kind) in enumerate(zip(entry, kinds)):
            if not _is_uint(value, kind):
                return False
            if i == status_at and value not in statuses:
                return False
        if min_last is not None and entry[-1] < min_last:
            return False
        return True
    return check


def _check_function_name(entry: Any) -> bool:
    return type(entry) is str and 1 <= len(entry.encode()) <= MAX_FUNCTION_NAME


def _check_u64(entry: Any) -> bool:
    return _is_uint(entry, "u64")


def _check_worker_info(entry: Any) -> bool:
    # §6.2.7: entries are maps, read like a header (unknown keys ignored).
    if not isinstance(entry, dict) or not all(type(k) is str for k in entry):
        return False
    if isinstance(entry, _Pairs) and entry.duplicates:
        return False
    try:
        _read_fields(entry, _WORKER_INFO)
    except DecodeError:
        return False
    return True


_ALL_STATUSES = frozenset(range(0, 6))
_WORKER_STATUSES = frozenset((OK, FAILED, TIMED_OUT, UNSUPPORTED))  # §6.3.2

_WORKER_INFO = (
    ("id", "u32", True, None, 0),
    ("host", "str", False, "", (0, MAX_TEXT)),
    ("pid", "u32", False, 0, 0),
    ("slots", "u32", True, None, 0),
    ("running", "u32", True, None, 0),
    ("launch", "str", False, "", (0, MAX_TEXT)),
    ("functions", "u32", False, 0, 0),
)

_BYE = (("reason", "str", False, "", (0, MAX_TEXT)), ("reconnect", "bool", False, False, None))

# (receiver-side sender letter, command) -> fields
_SCHEMAS: dict[tuple[bytes, int], tuple] = {
    # Client to broker (§6.1).
    (b"C", SUBMIT): (
        ("job", "u64", True, None, 0),
        ("function", "str", True, None, (1, MAX_FUNCTION_NAME)),
        ("total", "u64", True, None, 1),
        ("first", "u64", True, None, 0),
        ("count", "u32", True, None, 1),
        ("common", "bool", False, False, None),
        ("max_retries", "u32", False, None, 0),
        ("retry_on_error", "bool", False, False, None),
        ("timeout_ms", "u32", False, 0, 0),
        ("cores", "u32", False, 1, 1),
    ),
    (b"C", CANCEL): (("job", "u64", True, None, 0),),
    (b"C", HEARTBEAT): (),
    (b"C", BYE): _BYE,
    (b"C", STATUS): (("launch", "str", False, None, (0, MAX_TEXT)),),
    # Worker to broker (§6.3).
    (b"W", READY): (
        ("functions", "list", True, None, (0, MAX_FUNCTIONS, _check_function_name)),
        ("slots", "u32", True, None, 1),
        ("prefetch", "u32", False, 0, 0),
        ("host", "str", False, "", (0, MAX_TEXT)),
        ("pid", "u32", False, 0, 0),
        ("cores", "u32", False, 0, 0),
        ("memory", "u64", False, 0, 0),
        ("agent", "str", False, "", (0, MAX_TEXT)),
        ("launch", "str", False, "", (0, MAX_TEXT)),
    ),
    (b"W", RESULTS): (
        ("results", "list", True, None,
         (1, _NO_LIMIT, _entry_ints("u64", "u64", "u8", status_at=2,
                                    statuses=_WORKER_STATUSES))),
    ),
    (b"W", HEARTBEAT): (),
    (b"W", BYE): _BYE,
    # Broker to client and worker (§6.2, §6.4).
    (b"B", ACCEPT): (
        ("job", "u64", True, None, 0),
        ("received", "u64", True, None, 0),
        ("window", "u64", True, None, 0),
        ("heartbeat_ms", "u32", False, 1000, 1),
    ),
    (b"B", RESULTS): (
        ("job", "u64", True, None, 0),
        ("results", "list", True, None,
         (1, _NO_LIMIT, _entry_ints("u64", "u8", "u32", status_at=1, statuses=_ALL_STATUSES,
                                    min_last=1))),
    ),
    (b"B", DONE): (
        ("job", "u64", True, None, 0),
        ("ok", "u64", True, None, 0),
        ("failed", "u64", True, None, 0),
        ("cancelled", "bool", False, False, None),
    ),
    (b"B", ERROR): (
        ("code", "u16", True, None, 1),
        ("message", "str", True, None, (0, MAX_TEXT)),
        ("job", "u64", False, None, 0),
    ),
    (b"B", HEARTBEAT): (),
    (b"B", BYE): _BYE,
    (b"B", STATUS): (
        ("agent", "str", False, "", (0, MAX_TEXT)),
        ("uptime_ms", "u64", True, None, 0),
        ("clients", "u64", True, None, 0),
        ("jobs", "u64", True, None, 0),
        ("tasks_queued", "u64", True, None, 0),
        ("tasks_running", "u64", True, None, 0),
        ("tasks_done", "u64", True, None, 0),
        ("tasks_failed", "u64", True, None, 0),
        ("workers", "list", True, None, (0, _NO_LIMIT, _check_worker_info)),
        ("workers_omitted", "u64", False, 0, 0),
    ),
    (b"B", WELCOME): (
        ("worker", "u32", True, None, 0),
        ("heartbeat_ms", "u32", True, None, 1),
        ("liveness", "u32", True, None, 1),
    ),
    (b"B", TASKS): (
        ("job", "u64", True, None, 0),
        ("function", "str", True, None, (1, MAX_FUNCTION_NAME)),
        ("tasks", "list", True, None,
         (1, _NO_LIMIT, _entry_ints("u64", "u32", min_last=1))),
        ("common", "bool", False, False, None),
        ("timeout_ms", "u32", False, 0, 0),
        ("cores", "u32", False, 1, 1),
    ),
    (b"B", CANCEL): (
        ("job", "u64", True, None, 0),
        ("tasks", "list", False, [], (0, _NO_LIMIT, _check_u64)),
    ),
}

# Which commands a broker sends to a client and to a worker (§6 table).
_TO_CLIENT = frozenset((ACCEPT, RESULTS, DONE, ERROR, HEARTBEAT, BYE, STATUS))
_TO_WORKER = frozenset((WELCOME, TASKS, CANCEL, HEARTBEAT, BYE))


class _Pairs(dict):
    """A dict that remembers keys seen twice in the msgpack map it was built from."""
    __slots__ = ("duplicates",)

    def __init__(self, pairs):
        super().__init__()
        self.duplicates = None
        for key, value in pairs:
            if key in self:
                if self.duplicates is None:
                    self.duplicates = set()
                self.duplicates.add(key)
            self[key] = value


def _depth(value: Any, level: int = 1) -> int:
    """Nesting depth of containers (a scalar is 0, an empty list 1)."""
    if isinstance(value, dict):
        if level > MAX_DEPTH:
            return level
        return max([level] + [_depth(v, level + 1) for v in value.values()])
    if isinstance(value, list):
        if level > MAX_DEPTH:
            return level
        return max([level] + [_depth(v, level + 1) for v in value])
    return level - 1


def _parse_header(frame: Any) -> _Pairs:
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=False, use_list=True,
                                 object_pairs_hook=_Pairs)
    except Exception as error:  # ExtraData, ValueError, UnicodeDecodeError, TypeError...
        raise DecodeError("MalformedHeader", f"the header is not one msgpack map: {error}") \
            from None
    if not isinstance(header, _Pairs):
        raise DecodeError("MalformedHeader",
                          f"the header is a {type(header).__name__}, not a map")
    if not all(type(key) is str for key in header):
        raise DecodeError("MalformedHeader", "a header key is not a str")
    if _depth(header) > MAX_DEPTH:
        raise DecodeError("MalformedHeader", f"the header nests deeper than {MAX_DEPTH} levels")
    return header


def _read_fields(header: dict, schema: tuple) -> dict:
    """Validates `header` against `schema`; returns the header with nils removed and
    defaults filled. A duplicated known key wins over any field error (like the reference)."""
    duplicates = getattr(header, "duplicates", None)
    if duplicates:
        known = {spec[0] for spec in schema}
        twice = sorted(duplicates & known)
        if twice:
            raise DecodeError("MalformedHeader", f"field '{twice[0]}' appears twice",
                              field=twice[0])
    out = {key: value for key, value in header.items() if value is not None}
    first_error: DecodeError | None = None
    for key, kind, required, default, extra in schema:
        value = out.get(key)
        if value is None:
            if required:
                if first_error is None:
                    first_error = DecodeError("MissingField", f"field '{key}' is missing",
                                              field=key)
            elif default is not None:
                out[key] = list(default) if isinstance(default, list) else default
            continue
        problem = None
        if kind in _UMAX:
            if not _is_uint(value, kind):
                problem = f"is not a {kind}"
            elif value < extra:
                problem = f"is below {extra}"
        elif kind == "bool":
            if type(value) is not bool:
                problem = "is not a bool"
        elif kind == "str":
            low, high = extra
            if type(value) is not str:
                problem = "is not a str"
            elif not low <= len(value.encode()) <= high:
                problem = f"is not {low}..{high} bytes long"
        elif kind == "list":
            low, high, check = extra
            if type(value) is not list:
                problem = "is not an array"
            elif not low <= len(value) <= high:
                problem = f"has {len(value)} entries, not {low}..{high}"
            elif not all(check(entry) for entry in value):
                problem = "has a bad entry"
        if problem is not None and first_error is None:
            first_error = DecodeError("BadField", f"field '{key}' {problem}: {value!r:.80}",
                                      field=key)
    if first_error is not None:
        raise first_error
    return out


def decode(frames: Sequence, *, expect_from: bytes, to: bytes | None = None) -> Message:
    """Decodes one message from peer kind `expect_from` (b"B" in clients and workers; b"C" or
    b"W" in a broker), checking PROTOCOL.md §11 rules 1-12 in order.

    `to` (b"C" or b"W"), when given with expect_from b"B", also refuses the broker commands the
    other receiver kind gets (e.g. TASKS to a client) as CommandNotAllowed.
    Raises DecodeError; never anything else for any input frames.
    """
    if len(frames) < 3:
        raise DecodeError("TooFewFrames", f"{len(frames)} frames, every message has at least 3")
    peer, version = _parse_signature(frames[0])
    if version != VERSION:
        raise DecodeError("VersionMismatch",
                          f"protocol version mismatch: peer speaks {version}, "
                          f"this side speaks {VERSION}", version=version)
    if peer != expect_from:
        raise DecodeError("WrongPeer", f"a {peer.decode()} peer may not send here",
                          version=version)
    command_frame = _frame_bytes(frames[1])
    if len(command_frame) != 1 or not SUBMIT <= command_frame[0] <= STATUS:
        raise DecodeError("UnknownCommand", f"command frame {command_frame[:8]!r}",
                          version=version)
    command = command_frame[0]
    schema = _SCHEMAS.get((peer, command))
    allowed = schema is not None
    if allowed and peer == b"B" and to is not None:
        allowed = command in (_TO_CLIENT if to == b"C" else _TO_WORKER)
    if not allowed:
        raise DecodeError("CommandNotAllowed",
                          f"{COMMAND_NAMES[command]} may not come from a {peer.decode()} peer"
                          + (f" to a {to.decode()} peer" if to else ""), version=version)
    header_frame = frames[2]
    if not isinstance(header_frame, (bytes, bytearray, memoryview)):
        header_frame = _frame_bytes(header_frame)
    if len(header_frame) > MAX_HEADER:
        raise DecodeError("HeaderTooLarge",
                          f"the header has {len(header_frame)} bytes, the limit is {MAX_HEADER}",
                          version=version)
    try:
        header = _read_fields(_parse_header(header_frame), schema)
        if command == SUBMIT:
            _check_submit_rules(header)  # rule 11, before the payload count (rule 12)
    except DecodeError as error:
        error.version = version
        raise
    payload = list(frames[3:])
    expected = _payload_count(command, peer, header)
    if len(payload) != expected:
        raise DecodeError("PayloadCountMismatch",
                          f"{len(payload)} payload frames, the header implies {expected}",
                          version=version)
    return Message(peer, command, dict(header), payload)


def _payload_count(command: int, peer: bytes, header: dict) -> int:
    if command == SUBMIT:
        return header["count"] + (1 if header["common"] else 0)
    if command == TASKS:
        return len(header["tasks"]) + (1 if header["common"] else 0)
    if command == RESULTS:
        return len(header["results"])
    return 0


def _check_submit_rules(header: dict) -> None:
    """§6.1.1 cross-field rules, which the reference checks with the fields (rule 11)."""
    if header["count"] > header["total"] or header["first"] > header["total"] - header["count"]:
        raise DecodeError("BadField", "first + count exceeds total", field="count")
    if header["common"] and header["first"] != 0:
        raise DecodeError("BadField", "common is allowed only with first == 0", field="common")


def error_map(message: str, kind: str = "", traceback: str = "", host: str = "",
              pid: int = 0) -> bytes:
    """A §6.5 error map payload frame."""
    return msgpack.packb({"message": message, "kind": kind, "traceback": traceback,
                          "host": host, "pid": pid}, use_bin_type=True)


def decode_error_map(frame: Any) -> dict:
    """A §6.5 error map as a dict (message required); DecodeError if it is not one."""
    try:
        value = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as error:
        raise DecodeError("MalformedHeader", f"the error map is not msgpack: {error}") from None
    if not isinstance(value, dict) or type(value.get("message")) is not str:
        raise DecodeError("MissingField", "the error map has no str 'message'", field="message")
    return value
