"""The term codec: message payloads and exit reasons as msgpack (via msgspec).

What crosses nodes: None, bool, int (any size), float, str, bytes
(``bytearray`` and ``memoryview`` arrive as ``bytes``), tuple (arrives as a
tuple), list, dict (keys of any of these hashable types), :class:`Atom`
(arrives as the same interned atom), :class:`Pid`, :class:`Ref`, and
``msgspec.Struct`` classes registered with :func:`register_struct`. Anything
else is refused at the sender with :class:`EncodeError`. Only exact types
are carried: a ``namedtuple`` or an ``IntEnum`` is refused rather than
silently turned into its base type. Nothing decoded can run code: no
pickle, no eval, and only registered classes are ever instantiated.

Theory of operation. msgspec encodes tuples and Struct subclasses (Pid,
Ref) natively as msgpack arrays, so a plain encoding would lose "tuple or
list?" and "Pid or 3-element list?". Every term is therefore the msgpack
array ``[shape, value]``:

- *Shaped* (the fast path; ``shape`` non-empty, see ``shapes.py``): the
  value's types are described by a short signature such as ``(apxx)`` for
  ``(atom, pid, 42, "hello")``, the value is encoded by msgspec in one call
  and decoded by a msgspec ``Decoder`` built once per shape, so tuples come
  back as tuples and pids as Pids with no Python code per element.
- *Tagged* (``shape`` empty): any other value, walked once in Python.
  Tuples, atoms, pids, refs, big ints, dicts with non-scalar keys and open
  structs become msgpack ext values (:class:`ExtCode`), decoded by one hook.

Ints beyond 64 bits make msgspec raise ``OverflowError`` on the shaped
form; the encoder then retries with the tagged form, which carries them as
ext values, so small ints pay nothing for the check. In the shaped form an
atom is its name, found by a C-level dict lookup (the encoder's
``enc_hook``); in the tagged form it is an ext value.

Measured when written (2-core VM, CPython 3.11, msgspec 0.22):
``encode_term`` + ``decode_term`` of ``(atom, pid, 42, "hello")`` at about
800k/s; the same as a ``Send`` frame (``ControlEncoder.send_into``, then
``ControlDecoder.decode`` + ``decode_term``) at about 530k/s.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Final, cast

import msgspec
from msgspec.msgpack import Ext

from otpylib.runtime.atoms import MAX_ATOM_LENGTH, Atom, AtomLimitExceeded
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.errors import AtomLimitReached, EncodeError, RemoteProtocolError
from otpylib_dist.protocol.registry import lookup_name, lookup_type, register_struct
from otpylib_dist.protocol.shapes import (
    DECODERS,
    FLAT_SHAPES,
    PLAIN_TYPES,
    atom_named,
    decoder_for,
    element_types,
    shape_of,
    tuple_shape,
    unknown_struct,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ExtCode",
    "RemoteException",
    "Term",
    "decode_term",
    "encode_failure",
    "encode_reason",
    "encode_term",
    "make_encoder",
    "register_struct",
    "to_tagged",
    "to_wire",
]


class ExtCode:
    """msgpack ext type codes of the tagged form (the ext body in comments).

    Plain ints, not an IntEnum: ``msgspec.msgpack.Ext`` takes exact ints.
    """

    ATOM: Final = 1  # UTF-8 name
    TUPLE: Final = 2  # array of items
    PID: Final = 3  # [node, id, creation]
    REF: Final = 4  # [node, id, creation]
    BIGINT: Final = 5  # signed big-endian two's complement
    DICT: Final = 6  # [k1, v1, k2, v2, ...] for dicts with keys msgpack maps cannot hold
    STRUCT: Final = 7  # [name, field1, field2, ...] for open registered structs
    SHAPED: Final = 8  # [shape, value]: a shaped tuple or closed struct inside a tagged value


class Term(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An encoded term, as :func:`encode_term` returns and control messages carry.

    On the wire it is the msgpack array ``[shape, value]`` (see the module
    docstring). Control messages decode it as a typed field, so
    :func:`decode_term` can go straight to the value; ``bytes(term)`` gives
    the encoded form for storage or tests.

    Attributes:
        shape: the shape signature, or ``b""`` for the tagged form.
        value: the encoded value.
    """

    shape: bytes
    value: msgspec.Raw

    def __bytes__(self) -> bytes:
        return _encode(self)


class RemoteException(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """An exception (or any unsendable exit reason) as it crosses nodes.

    Exceptions cannot travel (they hold frames and arbitrary objects), so
    :func:`encode_reason` sends their type name and message instead.

    Attributes:
        type: qualified type name, e.g. ``"builtins.ValueError"``.
        message: ``str(exc)``, or ``repr(reason)`` for other unsendable reasons.
    """

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


register_struct(RemoteException, "otpylib.RemoteException")

_INT_MIN: Final = -(1 << 63)  # msgpack ints are int64 or uint64
_INT_MAX: Final = (1 << 64) - 1
_TAGGED: Final = b""  # the shape that marks the tagged form


class _AtomNames(dict[Any, str]):
    """Atom -> name; its ``__getitem__`` is the encoder's ``enc_hook``.

    A hit is a C-level dict lookup. ``__missing__`` runs once per atom, and
    for any other value msgspec cannot encode by itself (refused here).
    """

    def __missing__(self, key: Any) -> str:
        if type(key) is not Atom:
            raise _unsupported(key)
        self[key] = key.name
        return key.name


_atom_names = _AtomNames()


def make_encoder() -> msgspec.msgpack.Encoder:
    """Return a msgspec encoder that can encode :func:`to_wire` output.

    For encoders of larger messages that embed terms (``control.py``).
    """
    return msgspec.msgpack.Encoder(enc_hook=_atom_names.__getitem__)


_encode = make_encoder().encode

# ----------------------------------------------------------------- encoding


def to_wire(value: Any) -> tuple[bytes, Any]:
    """Return the ``[shape, value]`` pair msgspec should encode for a term.

    If msgspec raises ``OverflowError`` on it (an int beyond 64 bits in a
    shaped value), encode :func:`to_tagged` of the value instead.

    Raises:
        EncodeError: the value (or a part of it) cannot be sent.
    """
    shape = shape_of(value)
    if shape is not None:
        return (shape, value)
    return to_tagged(value)


def to_tagged(value: Any) -> tuple[bytes, Any]:
    """Return the ``[shape, value]`` pair of the tagged form of a term.

    Raises:
        EncodeError: the value (or a part of it) cannot be sent.
    """
    try:
        return (_TAGGED, _tag(value))
    except RecursionError:
        raise EncodeError(
            "cannot send a value nested this deeply (or one that contains itself); "
            "flatten it, or send its parts in separate messages"
        ) from None


def _tag(x: Any) -> Any:
    t = type(x)
    if t in PLAIN_TYPES and (t is not int or _INT_MIN <= x <= _INT_MAX):
        return x
    convert = _TAGGERS.get(t)
    if convert is not None:
        return convert(x)
    entry = lookup_type(t)
    if entry is None:
        raise _unsupported(x)
    if entry.shape is not None:
        return Ext(ExtCode.SHAPED, _encode((entry.shape, x)))
    fields = [entry.name]
    fields.extend([_tag(getattr(x, f)) for f in entry.fields])
    return Ext(ExtCode.STRUCT, _encode(fields))


def _tag_dict(x: dict[Any, Any]) -> Any:
    if _MAP_KEY_TYPES.issuperset(map(type, x)) and all(
        _INT_MIN <= k <= _INT_MAX for k in x if type(k) is int
    ):
        return {k: _tag(v) for k, v in x.items()}
    flat = []
    for k, v in x.items():
        flat.append(_tag(k))
        flat.append(_tag(v))
    return Ext(ExtCode.DICT, _encode(flat))


def _tag_tuple(x: tuple[Any, ...]) -> Ext:
    # A tuple inside a tagged value still takes the shaped form when it can:
    # one encode call, and a typed decode instead of a hook per element.
    shape = shape_of(x)
    if shape is not None:
        try:
            return Ext(ExtCode.SHAPED, _encode((shape, x)))
        except OverflowError:
            pass  # an int beyond 64 bits: walk it
    return Ext(ExtCode.TUPLE, _encode([_tag(e) for e in x]))


def _tag_bigint(x: int) -> Ext:
    return Ext(ExtCode.BIGINT, x.to_bytes((x.bit_length() + 8) // 8, "big", signed=True))


# Keys a msgpack map carries and an untyped decoder gives back unchanged.
_MAP_KEY_TYPES: Final = frozenset({type(None), bool, int, float, str, bytes})
_TAGGERS: Final[dict[type, Callable[[Any], Any]]] = {
    int: _tag_bigint,  # only reached outside the 64-bit range
    list: lambda x: [_tag(e) for e in x],
    tuple: _tag_tuple,
    dict: _tag_dict,
    Atom: lambda a: Ext(ExtCode.ATOM, a.name.encode()),
    Pid: lambda p: Ext(ExtCode.PID, _encode(p)),
    Ref: lambda r: Ext(ExtCode.REF, _encode(r)),
}


def encode_term(value: Any) -> Term:
    """Encode a message payload for another node.

    Returns a :class:`Term`, which control messages carry as it is;
    ``bytes(result)`` gives the encoded bytes.

    Raises:
        EncodeError: the value (or a part of it) cannot be sent; the message
            names the type and what to send instead.
    """
    try:
        if type(value) is tuple:  # the common case, written out: one cached lookup
            types = element_types(value)
            shape = FLAT_SHAPES.get(types) or tuple_shape(value, types)
            if shape is not None:
                return Term(shape, _Raw(_encode(value)))
            shape, wire = to_tagged(value)
        else:
            shape, wire = to_wire(value)
        return Term(shape, _Raw(_encode(wire)))
    except OverflowError:
        pass  # an int beyond 64 bits in the shaped form: the tagged form carries it
    except (TypeError, ValueError) as exc:
        raise encode_failure(exc) from None
    try:
        shape, wire = to_tagged(value)
        return Term(shape, _Raw(_encode(wire)))
    except (TypeError, ValueError, OverflowError) as exc:
        raise encode_failure(exc) from None


_Raw = msgspec.Raw


def encode_failure(exc: Exception) -> EncodeError:
    """Return the :class:`EncodeError` to raise for an error met while encoding.

    For encoders that call msgspec on :func:`to_wire` output themselves.
    """
    if isinstance(exc, EncodeError):
        return exc
    if isinstance(exc, UnicodeError):
        return EncodeError(
            f"cannot send a str that is not valid UTF-8 ({exc}); strings with lone "
            "surrogates cannot cross nodes, send bytes instead"
        )
    if isinstance(exc, OverflowError):
        return EncodeError(
            f"cannot send this value: {exc} in a field a registered struct declares as int; "
            "declare that field as Any to send ints beyond 64 bits"
        )
    # A closed struct whose field holds a value of another type than declared.
    return EncodeError(f"cannot send this value: {exc}")


def encode_reason(reason: Any) -> Term:
    """Encode an exit reason; unlike :func:`encode_term`, never fails.

    An exception becomes :class:`RemoteException` (type name and message);
    any other value that cannot be sent becomes a :class:`RemoteException`
    holding its ``repr``. An exit signal must always be deliverable, or a
    linked process would never learn that its partner died.
    """
    if isinstance(reason, BaseException):
        return encode_term(_exception_reason(reason))
    try:
        return encode_term(reason)
    except EncodeError:
        t = type(reason)
        return encode_term(RemoteException(f"{t.__module__}.{t.__qualname__}", _safe_repr(reason)))


def _exception_reason(exc: BaseException) -> RemoteException:
    t = type(exc)
    try:
        message = str(exc)
    except Exception:
        message = _safe_repr(exc)
    return RemoteException(f"{t.__module__}.{t.__qualname__}", message)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


_SENDABLE: Final = (
    "only None, bool, int, float, str, bytes, tuple, list, dict, Atom, Pid, Ref and "
    "msgspec.Struct types registered with register_struct() can be sent"
)
_BASES: Final = (tuple, list, dict, str, bytes, bool, int, float)


def _unsupported(value: Any) -> EncodeError:
    t = type(value)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    if isinstance(value, msgspec.Struct):
        hint = (
            f"it is a msgspec.Struct that is not registered; call register_struct({t.__name__}) "
            "on both nodes (from otpylib_dist)"
        )
    elif isinstance(value, BaseException):
        hint = "send str(exc) or a registered msgspec.Struct (exit reasons use encode_reason)"
    elif callable(value) and not isinstance(value, type):
        hint = (
            "code cannot be sent to another node; send a 'package.module:function' string "
            "and resolve it on the receiving node"
        )
    elif isinstance(value, set | frozenset):
        hint = "send a list or tuple of its items"
    elif isinstance(value, enum.Enum):
        hint = "send its value, or an Atom"
    elif isinstance(value, _BASES):
        base = next(b.__name__ for b in _BASES if isinstance(value, b))
        hint = (
            f"it is a subclass of {base}; convert it with {base}(value) "
            "(only exact types are carried, so nothing changes type on the way)"
        )
    else:
        hint = _SENDABLE + "; convert it to one of these or register a msgspec.Struct"
    return EncodeError(f"cannot send a value of type {name}: {hint}")


# ----------------------------------------------------------------- decoding

_split = msgspec.msgpack.Decoder(tuple[bytes, msgspec.Raw]).decode
_DECODE_ERRORS: Final = (
    msgspec.DecodeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
)


def decode_term(data: Term | bytes | bytearray | memoryview) -> Any:
    """Decode a term produced by :func:`encode_term` on any node.

    Takes the :class:`Term` of a decoded control message, or its bytes.

    Raises:
        RemoteProtocolError: the bytes are not a valid term, or name a
            struct this node has not registered.
        AtomLimitReached: (a RemoteProtocolError) the term needs a new atom
            and peers have created ``atom.untrusted_limit`` atoms already.
    """
    try:
        if type(data) is Term:
            shape = data.shape
            value = data.value
        else:
            shape, value = _split(cast("bytes", data))
        if shape:
            decoder = DECODERS.get(shape)
            return (decoder or decoder_for(shape)).decode(value)
        return _tagged_decode(value)
    except _DECODE_ERRORS as exc:
        raise RemoteProtocolError(f"malformed term from peer: {exc}") from None
    except AtomLimitExceeded as exc:
        raise AtomLimitReached(str(exc)) from None


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == ExtCode.TUPLE:
        return tuple(_tagged_decode(data))
    if code == ExtCode.ATOM:
        return _decode_atom(data)
    decode = _EXT_DECODERS.get(code)
    if decode is None:
        raise RemoteProtocolError(f"malformed term from peer: unknown ext code {code}")
    return decode(data)


def _decode_atom(data: memoryview) -> Atom:
    if len(data) > _MAX_ATOM_BYTES:
        raise RemoteProtocolError(f"malformed term from peer: an atom name of {len(data)} bytes")
    return atom_named(str(data, "utf-8"))


_MAX_ATOM_BYTES: Final = MAX_ATOM_LENGTH * 4  # UTF-8 takes at most 4 bytes a character


def _decode_dict(data: memoryview) -> dict[Any, Any]:
    flat = _tagged_decode(data)
    if type(flat) is not list or len(flat) % 2:
        raise RemoteProtocolError("malformed term from peer: dict ext needs key/value pairs")
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _decode_struct(data: memoryview) -> Any:
    values = _tagged_decode(data)
    if type(values) is not list or not values or type(values[0]) is not str:
        raise RemoteProtocolError("malformed term from peer: struct ext without a name")
    entry = lookup_name(values[0])
    if entry is None:
        raise unknown_struct(values[0])
    if len(values) - 1 != len(entry.fields):
        raise RemoteProtocolError(
            f"peer sent a {entry.name} with {len(values) - 1} fields, this node's class "
            f"has {len(entry.fields)}; run the same definition on both nodes"
        )
    return entry.cls(**dict(zip(entry.fields, values[1:], strict=True)))


def _decode_shaped(data: memoryview) -> Any:
    shape, value = _split(data)
    if not shape:
        raise RemoteProtocolError("malformed term from peer: empty shape in a shaped ext")
    return decoder_for(shape).decode(value)


_tagged_decode = msgspec.msgpack.Decoder(ext_hook=_ext_hook).decode
_EXT_DECODERS: Final[dict[int, Callable[[memoryview], Any]]] = {
    ExtCode.PID: msgspec.msgpack.Decoder(Pid).decode,
    ExtCode.REF: msgspec.msgpack.Decoder(Ref).decode,
    ExtCode.BIGINT: lambda data: int.from_bytes(data, "big", signed=True),
    ExtCode.DICT: _decode_dict,
    ExtCode.STRUCT: _decode_struct,
    ExtCode.SHAPED: _decode_shaped,
}
