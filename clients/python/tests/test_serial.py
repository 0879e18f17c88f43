"""acme.serial: values on the wire (msgpack + ext 1 arrays, ext 2 pickles, ext 3 tuples)."""

import fractions

import msgpack
import numpy as np
import pytest

from acme import serial
from acme.serial import packb, unpackb


def roundtrip(value, python=True):
    return unpackb(packb(value, python=python))


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, float("inf"), "", "héllo",
    b"", b"\x00\xff", [], {}, [1, [2, [3, {"a": [b"x", "y"]}]]], {1: "int key", "s": None},
])
def test_plain_values_round_trip(value):
    assert roundtrip(value) == value
    assert roundtrip(value, python=False) == value


def test_bytes_and_str_stay_apart():
    assert type(roundtrip(b"abc")) is bytes
    assert type(roundtrip("abc")) is str
    assert packb("a") == b"\xa1a" and packb(b"a") == b"\xc4\x01a"  # str vs bin


def test_ints_beyond_64_bits_are_pickled():
    for value in (2**64, -(2**63) - 1, 10**40, [1, {"k": 2**100}], (2**70,)):
        assert roundtrip(value) == value
    assert msgpack.unpackb(packb(2**64), raw=False).code == serial.EXT_PICKLE


def test_tuples_sets_and_objects():
    value = (1, (2, "x"), [3, (4,)], {(1, 2): "tuple key"})
    back = roundtrip(value)
    assert back == value and type(back) is tuple and type(back[1]) is tuple
    assert type(back[2][1]) is tuple
    assert roundtrip({1, 2}) == {1, 2}
    assert roundtrip(frozenset("ab")) == frozenset("ab")
    assert roundtrip(fractions.Fraction(1, 3)) == fractions.Fraction(1, 3)
    assert roundtrip(lambda x: x + 1)(1) == 2  # cloudpickle
    assert msgpack.unpackb(packb((1, 2))).code == serial.EXT_TUPLE
    assert msgpack.unpackb(packb((1, 2), python=False)) == [1, 2]  # portable: an array


@pytest.mark.parametrize("array", [
    np.arange(12, dtype="<f8").reshape(3, 4),
    np.arange(6, dtype=np.int32).reshape(2, 3),
    np.arange(5, dtype=np.uint8),
    np.array([-1, 0, 1], dtype=np.int64),
    np.array([True, False, True]),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
    np.array([1.5], dtype=np.float16),
    np.array(3.25),  # 0-d
    np.zeros((0, 3)),  # empty
    np.zeros((2, 0, 4), dtype=np.int16),
    np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),  # Fortran order
    np.arange(20, dtype=np.int64).reshape(4, 5)[::2, 1::2],  # non-contiguous view
    np.arange(4, dtype=">i4"),  # big-endian keeps its dtype
])
@pytest.mark.parametrize("python", [True, False])
def test_arrays_round_trip_writable(array, python):
    back = roundtrip(array, python=python)
    assert isinstance(back, np.ndarray)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable and back.flags.c_contiguous
    if back.size:
        back.flat[0] = back.flat[-1]  # writable for real
    assert msgpack.unpackb(packb(array, python=python)).code == serial.EXT_NDARRAY


def test_ext1_byte_layout_is_dtype_shape_then_c_order_bytes():
    # So that C++ (and any language) can rely on it: PROTOCOL.md §6.5 / py-spec.md.
    array = np.array([[1, 2, 3], [4, 5, 6]], dtype="<u2").T  # a view; C order: 1 4 2 5 3 6
    packed = packb(array, python=False)
    expected = bytes.fromhex(
        "c7 14 01"            # ext 8: 20 data bytes, ext type 1
        "92 a3 3c 75 32"      # [ "<u2",
        "92 03 02"            #   [3, 2] ]
        "0100 0400 0200 0500 0300 0600")  # the items in C order, little-endian u16
    assert packed == expected
    assert packb(array) == expected  # the same in Python mode
    # 0-d bool: head ["|b1", []] and one byte, 7 bytes in all.
    assert packb(np.array(True), python=False) == bytes.fromhex("c7 07 01 92 a3 7c 62 31 90 01")


def test_unpack_accepts_memoryview_and_rejects_truncated_ext1():
    packed = packb(np.arange(3.0))
    np.testing.assert_array_equal(unpackb(memoryview(packed)), np.arange(3.0))
    broken = msgpack.packb(msgpack.ExtType(1, msgpack.packb(["<f8", [3]]) + b"\x00" * 23))
    with pytest.raises(ValueError, match="needs 24 data bytes"):
        unpackb(broken)


def test_numpy_scalars_pack_as_plain_numbers():
    assert packb(np.float64(1.5)) == packb(1.5)
    assert packb(np.int32(7), python=False) == packb(7)
    assert packb(np.bool_(True), python=False) == packb(True)
    assert roundtrip([np.uint64(2**64 - 1), np.float32(0.5)]) == [2**64 - 1, 0.5]


def test_other_ext_types_pass_through():
    value = msgpack.ExtType(42, b"xyz")
    assert unpackb(msgpack.packb(value)) == value


@pytest.mark.parametrize("value, named", [
    ({1, 2}, "a set"),
    (fractions.Fraction(1, 2), "a fractions.Fraction"),
    (2**64, "an int beyond 64 bits"),
    ([1, {"x": 2**70}], "an int beyond 64 bits"),
    (np.array(["a"], dtype=object), "a numpy array of dtype object"),
    (np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), "a numpy array of dtype"),
    (np.array(["x"]), "a numpy array of dtype <U1"),
    (np.complex128(1j), "a numpy.complex128"),
])
def test_portable_mode_refuses_what_other_languages_cannot_read(value, named):
    with pytest.raises(TypeError) as error:
        packb(value, python=False)
    assert named in str(error.value)
    assert "to a non-Python function: msgpack holds nil, bool, int, float, str, bytes, list, " \
           "dict and numpy arrays" in str(error.value)


def test_python_mode_pickles_non_plain_arrays():
    array = np.array(["a", None], dtype=object)
    back = roundtrip(array)
    assert back.dtype == object and list(back) == ["a", None]


def test_portable_mode_packs_subclasses_as_their_base():
    import collections
    import enum

    class Color(enum.IntEnum):
        RED = 1

    assert unpackb(packb(collections.OrderedDict(a=Color.RED), python=False)) == {"a": 1}


def _deep(value, levels):
    for _ in range(levels):
        value = [value]
    return value


def _same(a, b):
    """Equality that descends into lists, tuples and dicts and compares arrays by value."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


ARR = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.mark.parametrize("value", [
    [3, [ARR], []],                                   # ParallelMap's task frame
    (1, (ARR, [ARR, {"k": (ARR,)}])),                 # tuples holding arrays, nested
    {"a": [ARR, 2], "b": {"c": ARR}},
    _deep(ARR, 6),                                    # deeper than the pre-pass looks
    list(range(100)) + [ARR],                         # an array after the items it peeks at
    [ARR, np.array(["x", None], dtype=object)],       # a non-plain array next to a plain one
    [(2**70, ARR), {"n": -(2**65)}],                  # ints beyond 64 bits beside arrays
])
def test_nested_arrays_round_trip_in_python_mode(value):
    back = roundtrip(value)
    assert _same(back, value), back


def test_numpy_scalars_beside_nested_arrays_become_plain_numbers():
    back = roundtrip([np.float64(0.5), ARR, (np.int8(3), [ARR])])
    assert _same(back, [0.5, ARR, (3, [ARR])])


def test_nested_arrays_are_ext1_in_portable_mode_and_tuples_become_lists():
    value = (1, (ARR, [ARR, {"k": (ARR,)}]))
    back = roundtrip(value, python=False)
    assert _same(back, [1, [ARR, [ARR, {"k": [ARR]}]]])
    # Another language sees ext 1 at every depth, with no ext 3 anywhere.
    raw = msgpack.unpackb(packb(value, python=False), strict_map_key=False)
    assert raw[1][0].code == serial.EXT_NDARRAY
    assert raw[1][1][1]["k"][0].code == serial.EXT_NDARRAY
    assert _same(roundtrip(_deep(ARR, 6), python=False), _deep(ARR, 6))


@pytest.mark.parametrize("value, named", [
    ([ARR, [np.array(["x"])]], "a numpy array of dtype <U1"),
    ((ARR, {1, 2}), "a set"),
    ([ARR, (2**64,)], "an int beyond 64 bits"),
])
def test_portable_mode_refuses_bad_values_next_to_arrays(value, named):
    with pytest.raises(TypeError, match=named):
        packb(value, python=False)


def test_nested_arrays_are_packed_outside_msgpacks_default_hook(monkeypatch):
    # Arrays built into ext 1 inside msgpack's `default` cost ~40x more; the pre-pass must
    # reach those of a task frame (two levels down) so that `default` never sees them.
    seen = []
    for name in ("_default_python", "_default_portable"):
        original = getattr(serial, name)

        def spy(obj, original=original):
            seen.append(type(obj))
            return original(obj)
        monkeypatch.setattr(serial, name, spy)
    packb([3, [ARR], [{"w": ARR}]])
    packb([ARR, (ARR, 2.0)], python=False)
    assert np.ndarray not in seen
