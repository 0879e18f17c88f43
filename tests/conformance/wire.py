"""A strict, independent reading of the acme wire protocol (docs/PROTOCOL.md), for the suite.

Written from PROTOCOL.md alone, deliberately without the `acme` package: the suite judges the
implementations, so it must not share their codec. `decode` applies the checks of §11 in its
order and raises `Violation` naming the rule and the section, so a failing test says which rule
an implementation broke. `encode` builds the frames the suite sends as the fake peer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgpack

VERSION = 1
SIG = {"C": b"ACMEC1", "W": b"ACMEW1", "B": b"ACMEB1"}

SUBMIT, CANCEL, HEARTBEAT, BYE, READY, RESULTS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
ACCEPT, DONE, ERROR, WELCOME, TASKS, STATUS = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C
NAMES = {SUBMIT: "SUBMIT", CANCEL: "CANCEL", HEARTBEAT: "HEARTBEAT", BYE: "BYE", READY: "READY",
         RESULTS: "RESULTS", ACCEPT: "ACCEPT", DONE: "DONE", ERROR: "ERROR", WELCOME: "WELCOME",
         TASKS: "TASKS", STATUS: "STATUS"}

OK, FAILED, TIMED_OUT, POISONED, UNSUPPORTED = 0, 1, 2, 3, 4

# ERROR codes (§6.2.4)
MALFORMED, VERSION_MISMATCH, UNKNOWN_COMMAND, BAD_REQUEST, NO_SUCH_FUNCTION = 1, 2, 3, 4, 5

MAX_HEADER = 65536
MAX_TEXT = 4096

# Who may send what (§6 table): peer letter -> commands.
ALLOWED = {
    "C": {SUBMIT, CANCEL, HEARTBEAT, BYE, STATUS},
    "W": {HEARTBEAT, BYE, READY, RESULTS},
    "B": {CANCEL, HEARTBEAT, BYE, RESULTS, ACCEPT, DONE, ERROR, WELCOME, TASKS, STATUS},
}

_SIGNATURE = re.compile(rb"ACME(.)([1-9][0-9]{0,8})\Z", re.S)  # §11 rule 2: 1..9 digits


class Violation(AssertionError):
    """A message that breaks PROTOCOL.md: `rule` (the §11 DecodeError name or a short rule
    name), `section` (e.g. "5.4") and what was seen."""

    def __init__(self, rule: str, section: str, detail: str):
        super().__init__(f"{rule} (PROTOCOL.md §{section}): {detail}")
        self.rule, self.section, self.detail = rule, section, detail


@dataclass
class Message:
    peer: str            # "C", "W" or "B"
    command: int
    header: dict
    payload: list        # bytes
    frames: list = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return NAMES.get(self.command, f"0x{self.command:02X}")


def pack(value) -> bytes:
    """msgpack as PROTOCOL.md §7.3 packs: str as str, bytes as bin."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(frame: bytes):
    """One payload value (task, common or result frame: exactly one msgpack value, §6.5)."""
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


def encode(peer: str, command: int, header: dict | None = None, payload=(),
           version: int = VERSION) -> list[bytes]:
    """Frames of one message as a DEALER sends it (§5.1): signature, command, header, payload."""
    sig = b"ACME" + peer.encode() + str(version).encode()
    return [sig, bytes([command]), pack({} if header is None else header), *payload]


def signature_version(frame: bytes) -> tuple[str, int] | None:
    """(peer letter, version) of a well-formed signature frame (§5.2), else None."""
    m = _SIGNATURE.match(bytes(frame))
    if not m:
        return None
    return m.group(1).decode("latin-1"), int(m.group(2))


# --- header reading (§5.4) -----------------------------------------------------------------

class _Map(list):
    """A msgpack map read as its list of pairs, so that duplicate and non-str keys show."""


def _read_header(frame: bytes):
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False, use_list=True,
                               object_pairs_hook=_Map)
    except msgpack.ExtraData:
        raise Violation("MalformedHeader", "5.4", "trailing bytes after the header map")
    except Exception as e:  # truncated, invalid bytes
        raise Violation("MalformedHeader", "5.4", f"header is not valid msgpack ({e})")


def _depth(value) -> int:
    if isinstance(value, _Map):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _as_dict(pairs: _Map, where: str) -> dict:
    out = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise Violation("MalformedHeader", "5.4", f"{where} has a non-str key {k!r}")
        if k in out:
            raise Violation("MalformedHeader", "5.4", f"{where} has key {k!r} twice")
        out[k] = _plain(v)
    return out


def _plain(value):
    if isinstance(value, _Map):
        return _as_dict(value, "a nested map")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- field checks (§5.4 types, §5.6 limits, §6 tables) ----------------------------------------

def _is_uint(v, bits: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


def _bad(cmd: int, key: str, what: str, value, section: str):
    raise Violation("BadField", section, f"{NAMES[cmd]} field {key!r} must be {what}, got {value!r}")


def _check_name(cmd, key, v, section):
    if not isinstance(v, str) or not 1 <= len(v.encode()) <= 255:
        _bad(cmd, key, "a str of 1..255 bytes (§5.6)", v, section)


def _check_text(cmd, key, v, section):
    if not isinstance(v, str) or len(v.encode()) > MAX_TEXT:
        _bad(cmd, key, "a str of at most 4096 bytes (§5.6)", v, section)


def _entries(cmd, key, v, arity, kinds, section):
    if not isinstance(v, list) or not v:
        _bad(cmd, key, "a non-empty array", v, section)
    for e in v:
        if not isinstance(e, list) or len(e) != arity:
            _bad(cmd, key, f"entries that are arrays of exactly {arity}", e, section)
        for x, bits in zip(e, kinds):
            if not _is_uint(x, bits):
                _bad(cmd, key, f"entries of u{bits} integers", e, section)


def _field_check(kind: str):
    """A checker(cmd, key, value, section) for one field kind of the §6 tables."""
    if kind in ("u8", "u16", "u32", "u64"):
        bits = int(kind[1:])
        return lambda c, k, v, s: _is_uint(v, bits) or _bad(c, k, kind, v, s)
    if kind == "bool":
        return lambda c, k, v, s: isinstance(v, bool) or _bad(c, k, "a msgpack bool", v, s)
    if kind == "str":
        return lambda c, k, v, s: isinstance(v, str) or _bad(c, k, "a msgpack str", v, s)
    if kind == "text":
        return _check_text
    if kind == "name":
        return _check_name
    raise ValueError(kind)


# command -> (section, [(key, kind, required)])
_FIELDS = {
    ("C", SUBMIT): ("6.1.1", [("job", "u64", True), ("function", "name", True),
                              ("total", "u64", True), ("first", "u64", True),
                              ("count", "u32", True), ("common", "bool", False),
                              ("max_retries", "u32", False), ("retry_on_error", "bool", False),
                              ("timeout_ms", "u32", False), ("cores", "u32", False)]),
    ("C", CANCEL): ("6.1.2", [("job", "u64", True)]),
    ("C", STATUS): ("6.1.5", [("launch", "text", False)]),
    ("W", READY): ("6.3.1", [("slots", "u32", True), ("prefetch", "u32", False),
                             ("host", "text", False), ("pid", "u32", False),
                             ("cores", "u32", False), ("memory", "u64", False),
                             ("agent", "text", False), ("launch", "text", False)]),
    ("W", RESULTS): ("6.3.2", []),
    ("B", ACCEPT): ("6.2.1", [("job", "u64", True), ("received", "u64", True),
                              ("window", "u64", True), ("heartbeat_ms", "u32", False)]),
    ("B", DONE): ("6.2.3", [("job", "u64", True), ("ok", "u64", True), ("failed", "u64", True),
                            ("cancelled", "bool", False)]),
    ("B", ERROR): ("6.2.4", [("code", "u16", True), ("message", "text", True),
                             ("job", "u64", False)]),
    ("B", TASKS): ("6.4.2", [("job", "u64", True), ("function", "name", True),
                             ("common", "bool", False), ("timeout_ms", "u32", False),
                             ("cores", "u32", False)]),
    ("B", CANCEL): ("6.4.3", [("job", "u64", True)]),
    ("B", WELCOME): ("6.4.1", [("worker", "u32", True), ("heartbeat_ms", "u32", True),
                               ("liveness", "u32", True)]),
    ("B", STATUS): ("6.2.7", [("agent", "text", False), ("uptime_ms", "u64", True),
                              ("clients", "u64", True), ("jobs", "u64", True),
                              ("tasks_queued", "u64", True), ("tasks_running", "u64", True),
                              ("tasks_done", "u64", True), ("tasks_failed", "u64", True),
                              ("workers_omitted", "u64", False)]),
}
_COMMON_FIELDS = {BYE: ("6.1.4", [("reason", "text", False), ("reconnect", "bool", False)]),
                  HEARTBEAT: ("6.1.3", [])}


def _check_fields(peer: str, cmd: int, h: dict) -> int:
    """Checks the header of a decoded command; returns the number of payload frames it implies."""
    section, fields = _FIELDS.get((peer, cmd)) or _COMMON_FIELDS.get(cmd) or ("6", [])
    for key, kind, required in fields:
        if h.get(key) is None:
            if required:
                raise Violation("MissingField", section, f"{NAMES[cmd]} lacks required {key!r}")
            continue
        _field_check(kind)(cmd, key, h[key], section)
    if peer == "C" and cmd == SUBMIT:
        if h["total"] < 1 or h["count"] < 1:
            _bad(cmd, "total/count", ">= 1", (h["total"], h["count"]), section)
        if h["first"] + h["count"] > h["total"]:
            _bad(cmd, "first + count", "<= total", (h["first"], h["count"], h["total"]), section)
        if h.get("common") and h["first"] != 0:
            _bad(cmd, "common", "used only when first == 0", h["first"], section)
        if h.get("cores") is not None and h["cores"] < 1:
            _bad(cmd, "cores", ">= 1", h["cores"], section)
        return h["count"] + (1 if h.get("common") else 0)
    if peer == "W" and cmd == READY:
        fn = h.get("functions")
        if fn is None:
            raise Violation("MissingField", section, "READY lacks required 'functions'")
        if not isinstance(fn, list) or len(fn) > 4096:
            _bad(cmd, "functions", "an array of at most 4096 names", fn, section)
        for name in fn:
            _check_name(cmd, "functions", name, section)
        if h["slots"] < 1:
            _bad(cmd, "slots", ">= 1", h["slots"], section)
    if peer == "W" and cmd == RESULTS:
        r = h.get("results")
        if r is None:
            raise Violation("MissingField", section, "RESULTS lacks required 'results'")
        _entries(cmd, "results", r, 3, (64, 64, 8), section)
        for e in r:
            if e[2] not in (OK, FAILED, TIMED_OUT, UNSUPPORTED):
                _bad(cmd, "results", "entries with status 0, 1, 2 or 4 (§6.3.2)", e, section)
        return len(r)
    if peer == "B" and cmd == RESULTS:
        r = h.get("results")
        if r is None:
            raise Violation("MissingField", "6.2.2", "RESULTS lacks required 'results'")
        _entries(cmd, "results", r, 3, (64, 8, 32), "6.2.2")
        return len(r)
    if peer == "B" and cmd == TASKS:
        t = h.get("tasks")
        if t is None:
            raise Violation("MissingField", section, "TASKS lacks required 'tasks'")
        _entries(cmd, "tasks", t, 2, (64, 32), section)
        if any(e[1] < 1 for e in t):
            _bad(cmd, "tasks", "entries with attempt >= 1", t, section)
        return len(t) + (1 if h.get("common") else 0)
    if peer == "B" and cmd == CANCEL:
        t = h.get("tasks")
        if t is not None and (not isinstance(t, list) or not all(_is_uint(x, 64) for x in t)):
            _bad(cmd, "tasks", "an array of u64", t, section)
    if peer == "B" and cmd == STATUS:
        if not isinstance(h.get("workers"), list):
            raise Violation("MissingField", section, "STATUS lacks the array 'workers'")
    return 0


def decode(frames: list, *, sender: str, receiver: str) -> Message:
    """Reads one message `sender` sent to `receiver` ("C", "W" or "B"), applying §11 rules 1-12
    and the field tables of §6, §5.6. Raises Violation; the caller expects a good message."""
    frames = [bytes(f) for f in frames]
    if len(frames) < 3:
        raise Violation("TooFewFrames", "5.1", f"{len(frames)} frames, 3 at least")
    sv = signature_version(frames[0])
    if sv is None:
        raise Violation("NotAcme", "5.2", f"signature frame {frames[0][:16]!r}")
    peer, version = sv
    if peer not in "CWB":
        raise Violation("UnknownPeer", "5.2", f"peer letter {peer!r}")
    if version != VERSION:
        raise Violation("VersionMismatch", "12", f"signature {frames[0]!r}, not version {VERSION}")
    if peer != sender:
        raise Violation("WrongPeer", "5.2", f"signature {frames[0]!r} from a {sender} peer")
    if len(frames[1]) != 1 or frames[1][0] not in NAMES:
        raise Violation("UnknownCommand", "5.3", f"command frame {frames[1]!r}")
    cmd = frames[1][0]
    if cmd not in ALLOWED[peer]:
        raise Violation("CommandNotAllowed", "6", f"{NAMES[cmd]} from a {peer} peer")
    if len(frames[2]) > MAX_HEADER:
        raise Violation("HeaderTooLarge", "5.6", f"{NAMES[cmd]} header of {len(frames[2])} bytes")
    raw = _read_header(frames[2])
    if not isinstance(raw, _Map):
        raise Violation("MalformedHeader", "5.4", f"{NAMES[cmd]} header is not a map: {raw!r}")
    if _depth(raw) > 4:
        raise Violation("MalformedHeader", "5.4", f"{NAMES[cmd]} header nests deeper than 4")
    header = _as_dict(raw, f"the {NAMES[cmd]} header")
    n = _check_fields(peer, cmd, header)
    if len(frames) - 3 != n:
        raise Violation("PayloadCountMismatch", "5.5",
                        f"{NAMES[cmd]} has {len(frames) - 3} payload frames, header implies {n}")
    return Message(peer, cmd, header, frames[3:], frames)


def check_error_map(frame: bytes, section: str = "6.5") -> dict:
    """An error map (§6.5): one msgpack map, `message` str required; kind, traceback, host str
    and pid u32 when present. Returns it."""
    try:
        value = unpack(frame)
    except Exception as e:
        raise Violation("ErrorMap", section, f"payload is not one msgpack value ({e})")
    if not isinstance(value, dict):
        raise Violation("ErrorMap", section, f"error payload is not a map: {value!r}")
    if not isinstance(value.get("message"), str):
        raise Violation("ErrorMap", section, f"error map without a str 'message': {value!r}")
    for key in ("kind", "traceback", "host"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise Violation("ErrorMap", section, f"error map {key!r} is not a str: {value!r}")
    if value.get("pid") is not None and not _is_uint(value["pid"], 32):
        raise Violation("ErrorMap", section, f"error map 'pid' is not a u32: {value!r}")
    return value


# --- liberal encodings (§5.4: any integer encoding; unknown keys; nil = absent) ------------------

class Raw(bytes):
    """Bytes that packx() puts in verbatim: a value in a chosen msgpack encoding."""


def u64(n: int) -> Raw:
    return Raw(b"\xcf" + n.to_bytes(8, "big"))


def i64(n: int) -> Raw:
    return Raw(b"\xd3" + n.to_bytes(8, "big", signed=True))


def i8(n: int) -> Raw:
    return Raw(b"\xd0" + n.to_bytes(1, "big", signed=True))


def packx(value) -> bytes:
    """pack() that honours Raw values inside maps and arrays."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        n = len(value)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
        return head + b"".join(packx(k) + packx(v) for k, v in value.items())
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        return head + b"".join(packx(v) for v in value)
    return pack(value)
