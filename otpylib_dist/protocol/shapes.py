"""Shapes: short signatures that let msgspec decode a term with no Python per element.

msgspec decodes a msgpack array as a list and a Pid as a 3-element list
unless it is told the type. A *shape* tells it: the sender computes the
shape of a value from its types, sends it in front of the value, and the
receiver decodes the value with a ``Decoder`` built once for that shape.

Grammar (ASCII; one shape describes one value)::

    shape := "x"              a value msgspec round-trips untyped: None,
                              bool, int (64-bit), float, str, bytes, and
                              lists / dicts of those (one level)
           | "a"              an Atom (sent as its name; decoded by a hook)
           | "p" | "r"        a Pid, a Ref
           | "(" shape* ")"   a tuple of those
           | "[" shape "]"    a list whose items all have that shape (rows of
                              flat tuples, atoms, pids, refs or closed structs)
           | "{" name "}"     a registered *closed* struct (registry.py)

``(apxx)`` is ``(atom, pid, 42, "hello")`` and decodes with
``tuple[Atom, Pid, Any, Any]``; ``[(ax)]`` is a list of ``(atom, int)``
rows. A value with any other part (a list mixing kinds, a dict with tuple
keys or atom values, an int beyond 64 bits, an open struct) has no shape
and takes the codec's tagged form instead.

House rules: computing a shape never raises (None means "no shape"); a
flat tuple's shape is cached by its element types, so the common case is
one ``map(type, ...)`` and one dict lookup. Decoders are cached by shape.
Both caches are bounded, since a peer can send shapes without end.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from otpylib.runtime.atoms import MAX_ATOM_LENGTH, Atom, atom
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.protocol.errors import RemoteProtocolError
from otpylib_dist.protocol.registry import lookup_name, lookup_type

logger = logging.getLogger(__name__)

__all__ = [
    "DECODERS",
    "FLAT_SHAPES",
    "MAX_SHAPE_BYTES",
    "MAX_SHAPE_DEPTH",
    "PLAIN_TYPES",
    "atom_named",
    "decoder_for",
    "element_types",
    "run_decoder_for",
    "shape_of",
    "tuple_shape",
    "unknown_struct",
]

#: Deepest tuple nesting given a shape; deeper values take the tagged form.
MAX_SHAPE_DEPTH: Final = 16
#: Longest shape; one msgpack bin8 length byte, and short enough to cache.
MAX_SHAPE_BYTES: Final = 255
#: Entries per cache. Programs use a few dozen message shapes; the bound
#: stops a peer that sends endless new shapes from growing our memory.
MAX_CACHED_SHAPES: Final = 1024

_NoneType = type(None)

#: Types msgspec round-trips exactly through an untyped decoder ("x").
#: Ints only within 64 bits: a larger one makes the encoder raise
#: OverflowError and the codec falls back to its tagged form.
PLAIN_TYPES: Final = frozenset({_NoneType, bool, int, float, str, bytes, bytearray, memoryview})
# Dict key types an untyped decoder gives back unchanged.
_PLAIN_KEY_TYPES: Final = frozenset({_NoneType, bool, int, float, str, bytes})

_CODES: Final[dict[type, bytes]] = {t: b"x" for t in PLAIN_TYPES}
_CODES.update({Atom: b"a", Pid: b"p", Ref: b"r"})

#: Shapes of flat tuples by their element types (read directly by the
#: codec's fast paths). Tuples holding containers are cached in
#: ``_nested_shapes`` by element types plus the containers' own shapes.
FLAT_SHAPES: dict[tuple[type, ...], bytes] = {}
_nested_shapes: dict[tuple[tuple[type, ...], tuple[bytes, ...]], bytes] = {}
_CONTAINERS: Final = frozenset({tuple, list, dict})


def element_types(value: tuple[Any, ...]) -> tuple[type, ...]:
    """The types of ``value``'s elements: the key of :data:`FLAT_SHAPES`.

    The same as ``tuple(map(type, value))``, in about 60% of its time for
    the tuples messages are made of (2 to 4 elements): unpacking into
    locals builds no map iterator and no length guess (measured with
    callgrind: ~1,050 instructions against ~2,100 with the call). It runs
    for every tuple a remote send encodes.
    """
    n = len(value)
    if n == 2:
        a, b = value
        return (type(a), type(b))
    if n == 3:
        a, b, c = value
        return (type(a), type(b), type(c))
    if n == 4:
        a, b, c, d = value
        return (type(a), type(b), type(c), type(d))
    return tuple(map(type, value))


def shape_of(value: Any) -> bytes | None:
    """Return the shape of ``value``, or None when it needs the tagged form."""
    t = type(value)
    if t is tuple:
        types = element_types(value)
        found = FLAT_SHAPES.get(types)
        return found if found is not None else tuple_shape(value, types)
    code = _CODES.get(t)
    return code if code is not None else _part_shape(t, value, 0)


def tuple_shape(value: tuple[Any, ...], types: tuple[type, ...], depth: int = 0) -> bytes | None:
    """The shape of a tuple whose element ``types`` missed :data:`FLAT_SHAPES`.

    For callers that looked the flat cache up themselves (the fast paths).
    """
    plan = _plans.get(types)
    if plan is None:
        if _CONTAINERS.isdisjoint(types):
            shape = _build(types, value, depth)
            if shape is not None:
                _remember(FLAT_SHAPES, types, shape)
            return shape
        plan = _plan(types)
    # The shapes of the nested containers, then one lookup by element types
    # plus those shapes. Written out: this runs per message for shapes like
    # gen_server's (call, (pid, (alias, ref)), request).
    tuples, others = plan
    subs = []
    for i in tuples:
        item = value[i]
        item_types = element_types(item)
        sub = FLAT_SHAPES.get(item_types)
        if sub is None:
            if depth >= MAX_SHAPE_DEPTH:
                return None
            sub = tuple_shape(item, item_types, depth + 1)
            if sub is None:
                return None
        subs.append(sub)
    for i in others:
        sub = _part_shape(types[i], value[i], depth)
        if sub is None:
            return None
        subs.append(sub)
    key = (types, tuple(subs))
    found = _nested_shapes.get(key)
    if found is None:
        found = _build(types, value, depth)
        if found is not None:
            _remember(_nested_shapes, key, found)
    return found


def _plan(types: tuple[type, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the tuples, and the lists and dicts, of such a tuple are."""
    tuples = tuple(i for i, t in enumerate(types) if t is tuple)
    others = tuple(i for i, t in enumerate(types) if t is list or t is dict)
    if len(_plans) >= MAX_CACHED_SHAPES:
        _plans.clear()
    _plans[types] = (tuples, others)
    return tuples, others


_plans: dict[tuple[type, ...], tuple[tuple[int, ...], tuple[int, ...]]] = {}


def _list_shape(item: list[Any]) -> bytes | None:
    types = set(map(type, item))
    if PLAIN_TYPES.issuperset(types):
        return b"x"
    if len(types) != 1:
        return None
    (t,) = types
    if t is tuple:  # rows: every item a flat tuple of the same element types
        rows = {tuple(map(type, row)) for row in item}
        if len(rows) != 1:
            return None
        (row_types,) = rows
        if not _CONTAINERS.isdisjoint(row_types):
            return None
        inner = FLAT_SHAPES.get(row_types) or tuple_shape(item[0], row_types)
    else:
        inner = _CODES.get(t)
        if inner is None:
            entry = lookup_type(t)
            inner = entry.shape if entry is not None else None
    if inner is None or len(inner) > MAX_SHAPE_BYTES - 2:
        return None
    return b"[" + inner + b"]"


def _dict_shape(item: dict[Any, Any]) -> bytes | None:
    if _PLAIN_KEY_TYPES.issuperset(map(type, item)) and PLAIN_TYPES.issuperset(
        map(type, item.values())
    ):
        return b"x"
    return None


def _build(types: tuple[type, ...], value: tuple[Any, ...], depth: int) -> bytes | None:
    parts = []
    for t, item in zip(types, value, strict=True):
        code = _CODES.get(t)
        if code is None:
            code = _part_shape(t, item, depth)
            if code is None:
                return None
        parts.append(code)
    shape = b"(" + b"".join(parts) + b")"
    return shape if len(shape) <= MAX_SHAPE_BYTES else None


def _remember(cache: dict[Any, bytes], key: Any, shape: bytes) -> None:
    if len(cache) >= MAX_CACHED_SHAPES:
        cache.clear()
    cache[key] = shape


def _part_shape(t: type, item: Any, depth: int) -> bytes | None:
    if t is tuple:
        if depth >= MAX_SHAPE_DEPTH:
            return None
        types = element_types(item)
        found = FLAT_SHAPES.get(types)
        return found if found is not None else tuple_shape(item, types, depth + 1)
    if t is list:
        return _list_shape(item)
    if t is dict:
        return _dict_shape(item)
    entry = lookup_type(t)
    return entry.shape if entry is not None else None


# ---------------------------------------------------------------- decoding

_atoms_by_name: dict[Any, Atom] = {}


def atom_named(name: str) -> Atom:
    """Return the interned atom for a name that came from the wire.

    Raises:
        ValueError: not a str, or longer than atoms may be.
    """
    found = _atoms_by_name.get(name)
    if found is not None:
        return found
    if type(name) is not str or len(name) > MAX_ATOM_LENGTH:
        raise ValueError(f"expected an atom name of at most {MAX_ATOM_LENGTH} characters")
    found = atom.ensure_untrusted(name)  # AtomLimitExceeded passes through msgspec
    if len(_atoms_by_name) < _MAX_CACHED_ATOMS:  # misses beyond the bound use ensure()
        _atoms_by_name[name] = found
    return found


#: Atom names cached for decoding (peers create at most atom.untrusted_limit atoms).
_MAX_CACHED_ATOMS: Final = 65536


def _dec_hook(type_: type, obj: Any) -> Any:
    """msgspec ``dec_hook``: an Atom arrives as its name.

    Shaped decoders have no custom type but Atom (closed structs allow no
    other), so a cache hit needs no further check.
    """
    found = _atoms_by_name.get(obj)
    if found is not None:
        return found
    if type_ is not Atom:
        raise TypeError(f"cannot decode a value of type {type_!r}")
    return atom_named(obj)


def _no_ext(code: int, data: memoryview) -> Any:
    # Shaped values never contain ext values; only a broken peer sends them.
    raise ValueError(f"unexpected ext value (code {code}) in a shaped term")


#: Decoders by shape (read directly by the codec's fast path).
DECODERS: dict[bytes, msgspec.msgpack.Decoder[Any]] = {}
#: Decoders of runs (lists of values of one shape), by shape.
RUN_DECODERS: dict[bytes, msgspec.msgpack.Decoder[Any]] = {}


def decoder_for(shape: bytes) -> msgspec.msgpack.Decoder[Any]:
    """Return the (cached) msgspec decoder for values of ``shape``.

    Raises:
        RemoteProtocolError: the shape is malformed or names a struct this
            node has not registered (or registered with untyped fields).
    """
    found = DECODERS.get(shape)
    if found is not None:
        return found
    kind, end = _parse(shape, 0, 0)
    if end != len(shape):
        raise _bad_shape(shape)
    decoder = msgspec.msgpack.Decoder(kind, ext_hook=_no_ext, dec_hook=_dec_hook)
    if len(DECODERS) >= MAX_CACHED_SHAPES:
        DECODERS.clear()
    DECODERS[shape] = decoder
    return decoder


def run_decoder_for(shape: bytes) -> msgspec.msgpack.Decoder[Any]:
    """Return the (cached) decoder of a run: a list of values of ``shape`` (``SendRun``).

    Raises:
        RemoteProtocolError: as :func:`decoder_for`.
    """
    found = RUN_DECODERS.get(shape)
    if found is not None:
        return found
    kind, end = _parse(shape, 0, 0)
    if end != len(shape):
        raise _bad_shape(shape)
    decoder = msgspec.msgpack.Decoder(list[kind], ext_hook=_no_ext, dec_hook=_dec_hook)  # type: ignore[valid-type]
    if len(RUN_DECODERS) >= MAX_CACHED_SHAPES:
        RUN_DECODERS.clear()
    RUN_DECODERS[shape] = decoder
    return decoder


_SIMPLE: Final[dict[int, Any]] = {ord("x"): Any, ord("a"): Atom, ord("p"): Pid, ord("r"): Ref}
_OPEN, _CLOSE, _BRACE = ord("("), ord(")"), ord("{")
_BRACKET, _UNBRACKET = ord("["), ord("]")


def _parse(shape: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Parse the shape item at ``pos``; return its msgspec type and where it ends."""
    if pos >= len(shape) or depth > MAX_SHAPE_DEPTH:
        raise _bad_shape(shape)
    code = shape[pos]
    simple = _SIMPLE.get(code)
    if simple is not None:
        return simple, pos + 1
    if code == _OPEN:
        items = []
        pos += 1
        while pos < len(shape) and shape[pos] != _CLOSE:
            item, pos = _parse(shape, pos, depth + 1)
            items.append(item)
        if pos >= len(shape):
            raise _bad_shape(shape)
        return tuple.__class_getitem__(tuple(items) if items else ()), pos + 1
    if code == _BRACKET:
        item, pos = _parse(shape, pos + 1, depth + 1)
        if pos >= len(shape) or shape[pos] != _UNBRACKET:
            raise _bad_shape(shape)
        return list.__class_getitem__(item), pos + 1
    if code == _BRACE:
        end = shape.find(b"}", pos)
        if end < 0:
            raise _bad_shape(shape)
        try:
            name = shape[pos + 1 : end].decode()
        except UnicodeDecodeError:
            raise _bad_shape(shape) from None
        entry = lookup_name(name)
        if entry is None:
            raise unknown_struct(name)
        if entry.shape is None:
            raise RemoteProtocolError(
                f"peer sent {name!r} as a struct with typed fields, but this node's class has "
                "untyped (Any) fields; run the same definition on both nodes"
            )
        return entry.cls, end + 1
    raise _bad_shape(shape)


def _bad_shape(shape: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed term from peer: bad shape {shape[:40]!r}")


def unknown_struct(name: str) -> RemoteProtocolError:
    """The error for a struct name this node has not registered."""
    return RemoteProtocolError(
        f"peer sent a struct registered as {name[:80]!r}, which this node does not know; "
        "call register_struct() for that class on both nodes"
    )
