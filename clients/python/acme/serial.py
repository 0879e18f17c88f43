"""Values on the wire: msgpack, plus numpy arrays (ext 1), tuples (ext 3) and pickles (ext 2).

Task, common and result frames are each one msgpack value (PROTOCOL.md §6.5). Python peers
add three ext types:

- **ext 1, n-dimensional array** (any language may read it): ext data = the msgpack array
  ``[dtype, shape]`` (dtype: numpy's ``dtype.str`` such as ``"<f8"``, ``"|b1"``, ``"<c16"``;
  shape: array of unsigned ints) immediately followed by the raw bytes of the array in C order
  (``prod(shape) * itemsize`` bytes). Only bool, int, uint, float and complex dtypes; others
  are pickled in Python mode.
- **ext 2, Python pickle** (Python mode only): ``cloudpickle.dumps(obj, protocol=5)`` of a
  value msgpack cannot hold (sets, class instances, ints beyond 64 bits, ...).
- **ext 3, tuple** (Python mode only): the msgpack array of the items.

``python=False`` (portable mode, for functions of other languages) uses none of ext 2/3: a
tuple goes as an array and anything else msgpack cannot hold raises TypeError naming its type.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack

EXT_NDARRAY, EXT_PICKLE, EXT_TUPLE = 1, 2, 3

PORTABLE_TYPES = "msgpack holds nil, bool, int, float, str, bytes, list, dict and numpy arrays"

_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1
_PLAIN_KINDS = "biufc"  # bool, int, uint, float, complex: the dtypes of ext 1


class _Pickled:
    """Marks a value (an int beyond 64 bits) that must go as a pickle."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def describe_type(obj: Any) -> str:
    """'a set', 'an int beyond 64 bits', 'a numpy array of dtype object', for messages."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        return f"a numpy array of dtype {obj.dtype}"
    if type(obj) is int:
        return "an int beyond 64 bits"
    cls = type(obj)
    name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return _article(name)


def _portable_error(obj: Any) -> TypeError:
    return TypeError(f"cannot send {describe_type(obj)} to a non-Python function: "
                     f"{PORTABLE_TYPES}")


def _pickle(obj: Any) -> msgpack.ExtType:
    import cloudpickle
    return msgpack.ExtType(EXT_PICKLE, cloudpickle.dumps(obj, protocol=5))


def _is_plain_dtype(dtype) -> bool:
    return dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None


def _ndarray_ext(array) -> msgpack.ExtType:
    head = msgpack.packb([array.dtype.str, list(array.shape)], use_bin_type=True)
    # One copy of the data into the ext (tobytes() and then head + ... would be two).
    raw = array.reshape(-1) if array.flags.c_contiguous else array.ravel(order="C")
    return msgpack.ExtType(EXT_NDARRAY, b"".join((head, raw.view("u1").data)))


def _plain_scalar(obj: Any, np) -> bool | int | float | None:
    """A numpy bool, integer or float scalar as the plain Python value; None for others."""
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return None


def _default_python(obj: Any) -> Any:
    """msgpack's fallback in Python mode: everything strict msgpack types do not cover."""
    cls = type(obj)
    if cls is tuple:
        return msgpack.ExtType(EXT_TUPLE, _packb(list(obj), _default_python))
    if cls is _Pickled:
        return _pickle(obj.value)
    np = sys.modules.get("numpy")
    if np is not None:
        if cls is np.ndarray:
            if _is_plain_dtype(obj.dtype):
                return _ndarray_ext(obj)
            return _pickle(obj)
        if isinstance(obj, np.generic):
            plain = _plain_scalar(obj, np)
            if plain is not None:
                return plain
            # complex, datetime, str_ ... keep their numpy type through a pickle
    return _pickle(obj)


def _default_portable(obj: Any) -> Any:
    """msgpack's fallback in portable mode: plain types only, subclasses as their base."""
    if isinstance(obj, tuple):
        return list(obj)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            if _is_plain_dtype(obj.dtype):
                return _ndarray_ext(np.asarray(obj))
            raise _portable_error(obj)
        if isinstance(obj, np.generic):
            plain = _plain_scalar(obj, np)
            if plain is None:
                raise _portable_error(obj)
            return plain
    # Subclasses of the plain types (IntEnum, OrderedDict, str subclasses ...) as the base.
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(obj, base):
            value = base(obj)
            if base is int and not _INT_MIN <= value <= _UINT_MAX:
                raise _portable_error(value)
            return value
    raise _portable_error(obj)


def _packb(obj: Any, default) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=default)


def _mark_big_ints(obj: Any) -> Any:
    """A copy of obj's plain containers with ints beyond 64 bits wrapped in _Pickled (msgpack
    raises OverflowError on them instead of calling `default`)."""
    cls = type(obj)
    if cls is int:
        return obj if _INT_MIN <= obj <= _UINT_MAX else _Pickled(obj)
    if cls is list:
        return [_mark_big_ints(item) for item in obj]
    if cls is tuple:
        return tuple(_mark_big_ints(item) for item in obj)
    if cls is dict:
        return {_mark_big_ints(k): _mark_big_ints(v) for k, v in obj.items()}
    return obj


_PREPACK_DEPTH = 4  # container levels searched for arrays
_PREPACK_PEEK = 64  # items of a container looked at to decide whether to search it


def _prepack(obj: Any, python: bool, np, depth: int = 0) -> Any:
    """obj with its numpy arrays already made ext 1 (and, in Python mode, the tuples that hold
    them ext 3; in portable mode such tuples become lists). The same ext built inside
    msgpack's `default` costs up to ~40x more (measured: 9 ms against 0.2 ms per MiB),
    apparently from the Packer's buffer growing while the ext's bytes are alive.

    Searches _PREPACK_DEPTH container levels; a container is searched only if one of its
    first _PREPACK_PEEK items is an array or a container, so long lists of numbers are not
    walked. Returns obj itself when there is nothing to do; arrays it does not reach, and
    arrays of other dtypes, are left to `default`."""
    cls = type(obj)
    if cls is np.ndarray:
        return _ndarray_ext(obj) if _is_plain_dtype(obj.dtype) else obj
    searched = (np.ndarray, list, tuple, dict)
    if depth >= _PREPACK_DEPTH:
        return obj
    if cls is list or cls is tuple:
        if not any(type(x) in searched for x in obj[:_PREPACK_PEEK]):
            return obj
        items = [_prepack(x, python, np, depth + 1) for x in obj]
        if cls is list or not python:
            return items
        return msgpack.ExtType(EXT_TUPLE, _packb(items, _default_python))
    if cls is dict:
        values = list(obj.values())
        if not any(type(v) in searched for v in values[:_PREPACK_PEEK]):
            return obj
        return {k: _prepack(v, python, np, depth + 1) for k, v in zip(obj, values)}
    return obj


def packb(obj: Any, *, python: bool = True) -> bytes:
    """Packs one value; `python=False` for functions of other languages (portable mode).

    Raises TypeError in portable mode for a value msgpack cannot hold, naming its type.
    """
    np = sys.modules.get("numpy")  # no numpy loaded: no arrays to look for
    if python:
        try:
            return _packb(obj if np is None else _prepack(obj, True, np), _default_python)
        except OverflowError:
            marked = _mark_big_ints(obj)
            return _packb(marked if np is None else _prepack(marked, True, np), _default_python)
    try:
        return _packb(obj if np is None else _prepack(obj, False, np), _default_portable)
    except OverflowError:
        raise TypeError(f"cannot send an int beyond 64 bits to a non-Python function: "
                        f"{PORTABLE_TYPES}") from None


def _unpack_ndarray(data: bytes):
    import numpy as np
    # The [dtype, shape] head is short: read it from a prefix (feeding all of a large array to
    # an Unpacker copies it, ~4 ms per MiB).
    view = memoryview(data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(view[:1024])
    try:
        try:
            dtype_str, shape = unpacker.unpack()
        except msgpack.OutOfData:  # a head longer than 1 KiB (a shape of very many axes)
            unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
            unpacker.feed(data)
            dtype_str, shape = unpacker.unpack()
        dtype = np.dtype(dtype_str)
        if not _is_plain_dtype(dtype) or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError(f"dtype {dtype_str!r} shape {shape!r}")
    except Exception as error:
        raise ValueError(f"ext 1 (ndarray) has a bad [dtype, shape] head: {error}") from None
    offset = unpacker.tell()
    count = 1
    for n in shape:
        count *= n
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"ext 1 (ndarray) of dtype {dtype_str} shape {shape} needs "
                         f"{count * dtype.itemsize} data bytes, has {len(data) - offset}")
    # frombuffer over bytes is read-only: copy once so that the receiver may write to it.
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).copy()
    return array.reshape(shape)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _unpack_ndarray(data)
    if code == EXT_TUPLE:
        return tuple(unpackb(data))
    if code == EXT_PICKLE:
        import pickle
        return pickle.loads(data)
    return msgpack.ExtType(code, data)


def unpackb(buf: Any) -> Any:
    """Unpacks one value from bytes, a memoryview or a zmq.Frame; ext 1/2/3 become ndarray,
    the pickled object and tuple; other ext types stay msgpack.ExtType."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        buf = getattr(buf, "buffer", buf)  # zmq.Frame
    return msgpack.unpackb(buf, raw=False, strict_map_key=False, ext_hook=_ext_hook,
                           use_list=True)
