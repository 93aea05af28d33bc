"""The term codec: what crosses nodes comes back equal, and of the same type."""

from __future__ import annotations

import enum
from collections import OrderedDict, namedtuple
from typing import Any

import msgspec
import pytest

from otpylib.runtime.atoms import Atom, atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.codec import (
    RemoteException,
    Term,
    decode_term,
    encode_reason,
    encode_term,
)
from otpylib_dist.protocol.errors import EncodeError, RemoteProtocolError
from otpylib_dist.protocol.registry import lookup_type, register_struct
from otpylib_dist.protocol.shapes import element_types

OK = atom.ensure("ok")
PID = Pid("a@host1", 123, 7)
REF = Ref("a@host1", 5, 7)


class Point(msgspec.Struct, frozen=True):
    """Closed: every field typed, so msgspec carries it alone."""

    x: int
    y: int
    owner: Pid
    tag: Atom
    path: tuple[int, ...] = ()


class Envelope(msgspec.Struct):
    """Open: an Any field, walked by the codec."""

    body: Any
    note: str = ""


class Unregistered(msgspec.Struct):
    a: int


register_struct(Point, "test.Point")
register_struct(Envelope, "test.Envelope")


def round_trip(value: Any) -> Any:
    term = encode_term(value)
    back = decode_term(term)
    assert decode_term(bytes(term)) == back  # the bytes alone decode the same
    return back


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (True != 1, tuple != list)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    2**200,
    -(2**200),
    1.5,
    float("inf"),
    "",
    "héllo ☃",
    b"",
    b"\x00\xff",
    (),
    (1,),
    (OK, PID, 42, "hello"),
    ((1, 2), (3, (4, (5,)))),
    [],
    [1, "a", None],
    [(1, 2), (3, 4)],
    [[1], [2, [3]]],
    [(1, 2), [3]],
    {},
    {"a": 1, "b": [1, 2]},
    {(1, 2): "tuple key", OK: "atom key", PID: "pid key", 3: "int key"},
    {"nested": {"t": (1, (2, 3))}},
    {None: 1, True: 2, 1.5: 3, b"b": 4},
    OK,
    atom.ensure(""),
    PID,
    REF,
    [OK, OK],
    [PID, REF],
    (OK, [1, 2, 3], {"a": 1}),
    (atom.ensure("$gen_call"), (PID, REF), ("get", "key")),
    (1, 2**70),
    [2**70],
    {"big": 2**70},
    Point(1, 2, PID, OK),
    Point(1, 2, PID, OK, (1, 2, 3)),
    (Point(1, 2, PID, OK), OK),
    [Point(1, 2, PID, OK)],
    Envelope((OK, [PID])),
    Envelope({(1,): Envelope(OK, "inner")}, "outer"),
    RemoteException("builtins.ValueError", "boom"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:40])
def test_round_trip(value: Any) -> None:
    assert same(round_trip(value), value)


def test_atoms_come_back_as_the_same_object() -> None:
    back = round_trip((OK, [OK], {"k": OK}, {OK: 1}, Point(0, 0, PID, OK)))
    assert back[0] is OK and back[1][0] is OK and back[2]["k"] is OK
    assert next(iter(back[3])) is OK and back[4].tag is OK


def test_new_atoms_are_interned_on_arrival() -> None:
    name = "arrived_from_the_wire_only"
    term = bytes(encode_term(atom.ensure(name)))
    assert decode_term(term) is atom.ensure(name)


def test_byte_like_values_arrive_as_bytes() -> None:
    assert same(round_trip(bytearray(b"ab")), b"ab")
    assert same(round_trip((memoryview(b"cd"),)), (b"cd",))


def test_pids_and_refs_compare_equal_and_hash_alike() -> None:
    back = round_trip({PID: REF})
    assert back == {PID: REF} and hash(next(iter(back))) == hash(PID)


# --------------------------------------------------------------- wire format

# (value, exact bytes): the wire format, pinned. Read both ways.
WIRE = [
    ("hi", b"\x92\xc4\x01x\xa2hi"),
    (OK, b"\x92\xc4\x01a\xa2ok"),
    ((OK, 1), b"\x92\xc4\x04(ax)\x92\xa2ok\x01"),
    (PID, b"\x92\xc4\x01p\x93\xa7a@host1{\x07"),
    ([OK], b"\x92\xc4\x03[a]\x91\xa2ok"),
    ({"t": (1,)}, b"\x92\xc4\x00\x81\xa1t\xd7\x08\x92\xc4\x03(x)\x91\x01"),
    (2**64, b"\x92\xc4\x00\xc7\x09\x05\x01\x00\x00\x00\x00\x00\x00\x00\x00"),
]


@pytest.mark.parametrize(("value", "wire"), WIRE, ids=lambda v: repr(v)[:30])
def test_exact_bytes_both_ways(value: Any, wire: bytes) -> None:
    assert bytes(encode_term(value)) == wire
    assert same(decode_term(wire), value)


@pytest.mark.parametrize("size", range(7))
def test_element_types_are_the_types_of_the_elements(size: int) -> None:
    # The unrolled arities (2 to 4) and the general case agree with map(type).
    value = (OK, PID, 1, "s", 2.0, None)[:size]
    assert element_types(value) == tuple(map(type, value))
    assert element_types(tuple(reversed(value))) == tuple(map(type, reversed(value)))


def test_common_shapes() -> None:
    assert encode_term((OK, PID, 42, "hello")).shape == b"(apxx)"
    assert encode_term((OK, (PID, REF), ("a", 1))).shape == b"(a(pr)(xx))"
    assert encode_term([(OK, 1), (OK, 2)]).shape == b"[(ax)]"
    assert encode_term(Point(1, 2, PID, OK)).shape == b"{test.Point}"
    assert encode_term(Envelope(1)).shape == b""  # open structs take the tagged form
    assert encode_term((1, 2**70)).shape == b""  # so do big ints


def test_term_is_a_typed_value_with_bytes() -> None:
    term = encode_term((1, 2))
    assert isinstance(term, Term) and isinstance(term.value, msgspec.Raw)
    assert msgspec.msgpack.decode(bytes(term)) == [b"(xx)", [1, 2]]


# ---------------------------------------------------------------- refusals


def test_unregistered_struct_is_refused_at_the_sender() -> None:
    with pytest.raises(
        EncodeError,
        match=r"^cannot send a value of type test_codec\.Unregistered: it is a msgspec\.Struct "
        r"that is not registered; call register_struct\(Unregistered\) on both nodes "
        r"\(from otpylib_dist\)$",
    ):
        encode_term((1, Unregistered(1)))


def test_a_function_is_refused_with_what_to_send_instead() -> None:
    with pytest.raises(
        EncodeError,
        match=r"^cannot send a value of type function: code cannot be sent to another node; "
        r"send a 'package\.module:function' string and resolve it on the receiving node$",
    ):
        encode_term({"f": lambda: 1})


class Color(enum.Enum):
    RED = 1


Pair = namedtuple("Pair", "a b")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, r"^cannot send a value of type set: send a list or tuple of its items$"),
        (Color.RED, r"^cannot send a value of type test_codec\.Color: send its value, or an Atom$"),
        (
            Pair(1, 2),
            r"^cannot send a value of type test_codec\.Pair: it is a subclass of tuple; convert "
            r"it with tuple\(value\) \(only exact types are carried, so nothing changes type on "
            r"the way\)$",
        ),
        (OrderedDict(a=1), r"it is a subclass of dict; convert it with dict\(value\)"),
        (ValueError("x"), r"exit reasons use encode_reason"),
        (
            object(),
            r"^cannot send a value of type object: only None, bool, int, float, str, bytes, "
            r"tuple, list, dict, Atom, Pid, Ref and msgspec\.Struct types registered with "
            r"register_struct\(\) can be sent; convert it to one of these or register a "
            r"msgspec\.Struct$",
        ),
    ],
    ids=["set", "enum", "namedtuple", "OrderedDict", "exception", "object"],
)
def test_unsendable_values_name_their_type(value: Any, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        encode_term([value])


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match=r"^cannot send a value nested this deeply"):
        encode_term(loop)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(EncodeError, match=r"^cannot send a str that is not valid UTF-8"):
        encode_term("\ud800")


def test_big_int_in_a_typed_field_is_refused() -> None:
    with pytest.raises(EncodeError, match=r"declare that field as Any"):
        encode_term(Point(2**70, 0, PID, OK))


# ---------------------------------------------------------------- reasons


def test_exception_reason_becomes_remote_exception() -> None:
    reason = decode_term(encode_reason(KeyError("missing")))
    assert reason == RemoteException("builtins.KeyError", "'missing'")
    assert str(reason) == "builtins.KeyError: 'missing'"


def test_unsendable_reason_becomes_its_repr() -> None:
    reason = decode_term(encode_reason({1, 2}))
    assert reason == RemoteException("builtins.set", "{1, 2}")


def test_sendable_reasons_pass_unchanged() -> None:
    assert decode_term(encode_reason(atom.ensure("normal"))) is atom.ensure("normal")
    assert decode_term(encode_reason(("shutdown", 1))) == ("shutdown", 1)


def test_encode_reason_survives_a_broken_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    reason = decode_term(encode_reason(Broken()))
    assert reason.message == "<unprintable Broken: RuntimeError>"


# ---------------------------------------------------------------- decoding


def test_unknown_struct_name_is_a_remote_error() -> None:
    wire = msgspec.msgpack.encode([b"{no.Such}", {}])
    with pytest.raises(
        RemoteProtocolError,
        match=r"^peer sent a struct registered as 'no\.Such', which this node does not know; "
        r"call register_struct\(\) for that class on both nodes$",
    ):
        decode_term(wire)


def test_struct_field_mismatch_is_a_remote_error() -> None:
    wire = msgspec.msgpack.encode(
        [b"", msgspec.msgpack.Ext(7, msgspec.msgpack.encode(["test.Envelope", 1, 2, 3]))]
    )
    with pytest.raises(
        RemoteProtocolError,
        match=r"^peer sent a test\.Envelope with 3 fields, this node's class has 2; run the "
        r"same definition on both nodes$",
    ):
        decode_term(wire)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\xc1",
        b"\x92\xc4\x02(x\x01",  # unterminated shape
        b"\x92\xc4\x01q\x01",  # unknown shape code
        b"\x92\xc4\x03(x)\x01",  # value does not match the shape
        b"\x92\xc4\x00\xd4\x63\x00",  # unknown ext code
        b"\x92\xc4\x01a\x01",  # an atom that is not a name
    ],
)
def test_malformed_terms_are_remote_errors(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match=r"^malformed term from peer: "):
        decode_term(wire)


def test_overlong_atom_is_refused() -> None:
    wire = msgspec.msgpack.encode([b"", msgspec.msgpack.Ext(1, b"a" * 2000)])
    with pytest.raises(RemoteProtocolError, match=r"an atom name of 2000 bytes"):
        decode_term(wire)


# ---------------------------------------------------------------- registry


def test_register_struct_is_idempotent_and_usable_as_decorator() -> None:
    assert register_struct(Point, "test.Point") is Point

    @register_struct
    class Local(msgspec.Struct):
        a: int

    entry = lookup_type(Local)
    assert entry is not None and entry.name.endswith("Local") and entry.shape is not None


def test_a_name_belongs_to_one_class() -> None:
    class Other(msgspec.Struct):
        a: int

    with pytest.raises(
        ValueError,
        match=r"^struct name 'test\.Point' is already registered for test_codec\.Point; pass "
        r"another name to register ",
    ):
        register_struct(Other, "test.Point")
    with pytest.raises(ValueError, match=r"is already registered as 'test\.Point'; a class"):
        register_struct(Point, "test.Point2")


@pytest.mark.parametrize("name", ["", "a{b", "x" * 201])
def test_bad_struct_names(name: str) -> None:
    class Named(msgspec.Struct):
        a: int

    with pytest.raises(ValueError, match=r"^struct name"):
        register_struct(Named, name)


def test_only_struct_classes_register() -> None:
    with pytest.raises(TypeError, match=r"^register_struct\(\) takes a msgspec\.Struct class"):
        register_struct(dict)  # type: ignore[type-var]
