"""The registry of ``msgspec.Struct`` types that may cross nodes, by name.

Why a registry: a value on the wire names its type, and the receiving node
must map that name back to a class without importing or running anything
the peer chose. Only classes registered here (on both nodes, under the same
name) are ever built from the wire, so decoding never runs code a peer
picked; Erlang's external term format has no user types at all.

Each class is classified once, at registration:

- *closed*: every field has a concrete declared type (no ``Any``, no
  custom types other than :class:`~otpylib.runtime.atoms.Atom`), so msgspec
  can encode and decode it on its own typed fast path, including tuples and
  pids in its fields. A wrong runtime value in such a field (a str in an
  ``int`` field) makes the receiving node's decoder refuse the message.
- *open*: some field is ``Any`` (or similar); its values are walked by the
  term codec like any other container, which is slower but exact.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final, TypeVar

import msgspec
import msgspec.inspect as mi

from otpylib.runtime.atoms import Atom

logger = logging.getLogger(__name__)

__all__ = ["MAX_STRUCT_NAME_BYTES", "StructEntry", "lookup_name", "lookup_type", "register_struct"]

#: Longest registered name, in UTF-8 bytes. Names travel inside every value
#: of the type; 200 bytes fits any ``package.module.Class`` and stays short
#: enough for a one-byte length prefix.
MAX_STRUCT_NAME_BYTES: Final = 200

# Characters that delimit names inside a shape signature (see codec.py).
_FORBIDDEN_NAME_CHARS: Final = frozenset("{}()[]")

S = TypeVar("S", bound=type[msgspec.Struct])


class StructEntry:
    """What the codec knows about one registered class.

    Attributes:
        cls: the class.
        name: its wire name.
        fields: field names, in definition order.
        shape: ``b"{name}"`` for a closed class (typed fast path), else None.
    """

    __slots__ = ("cls", "fields", "name", "shape")

    def __init__(self, cls: type[msgspec.Struct], name: str, closed: bool) -> None:
        self.cls = cls
        self.name = name
        self.fields: tuple[str, ...] = cls.__struct_fields__
        self.shape: bytes | None = b"{" + name.encode() + b"}" if closed else None


_lock = threading.Lock()
_by_type: dict[type, StructEntry] = {}
_by_name: dict[str, StructEntry] = {}


def register_struct(cls: S, name: str | None = None) -> S:
    """Allow values of ``cls`` (a ``msgspec.Struct``) to be sent to other nodes.

    Register the class on every node that sends or receives it, under the
    same name; usable as a decorator. Registering the same class under the
    same name again does nothing.

    Args:
        cls: a ``msgspec.Struct`` subclass. Subclasses are separate types and
            need their own registration.
        name: the wire name; defaults to ``"module.QualName"``. Pass one to
            keep the wire format stable when the class moves.

    Returns:
        ``cls`` itself.

    Raises:
        TypeError: ``cls`` is not a ``msgspec.Struct`` class.
        ValueError: the name is taken by another class, the class is already
            registered under another name, or the name is empty, too long, or
            contains one of ``{}()[]``.
    """
    if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
        raise TypeError(f"register_struct() takes a msgspec.Struct class, got {cls!r}")
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    _check_name(name)
    with _lock:
        old = _by_name.get(name)
        if old is not None and old.cls is not cls:
            raise ValueError(
                f"struct name {name!r} is already registered for {_qualified(old.cls)}; "
                f"pass another name to register {_qualified(cls)}"
            )
        known = _by_type.get(cls)
        if known is not None:
            if known.name != name:
                raise ValueError(
                    f"{_qualified(cls)} is already registered as {known.name!r}; "
                    "a class has one wire name"
                )
            return cls
        entry = StructEntry(cls, name, _is_closed(cls))
        _by_type[cls] = entry
        _by_name[name] = entry
    logger.debug("registered struct %s as %r (closed=%s)", _qualified(cls), name, entry.shape)
    return cls


def lookup_type(cls: type) -> StructEntry | None:
    """The entry for a registered class, or None."""
    return _by_type.get(cls)


def lookup_name(name: str) -> StructEntry | None:
    """The entry registered under a wire name, or None."""
    return _by_name.get(name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"struct name {name!r} is not a non-empty str")
    if len(name.encode()) > MAX_STRUCT_NAME_BYTES:
        raise ValueError(
            f"struct name {name[:40]!r}... is longer than {MAX_STRUCT_NAME_BYTES} bytes; "
            "pass a shorter name"
        )
    bad = _FORBIDDEN_NAME_CHARS.intersection(name)
    if bad:
        raise ValueError(f"struct name {name!r} may not contain {''.join(sorted(bad))!r}")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_closed(cls: type[msgspec.Struct]) -> bool:
    """Whether msgspec alone can round-trip every field of ``cls`` exactly."""
    try:
        info = mi.type_info(cls)
        if not _closed(info, set()):
            return False
        msgspec.msgpack.Decoder(cls, dec_hook=_any_dec_hook)
    except (TypeError, ValueError) as exc:
        logger.debug("struct %s takes the open path: %s", _qualified(cls), exc)
        return False
    return True


def _closed(t: mi.Type, seen: set[int]) -> bool:
    if isinstance(t, mi.AnyType):
        return False
    if isinstance(t, mi.CustomType):
        return t.cls is Atom
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType | mi.NamedTupleType):
        if id(t.cls) in seen:
            return True
        seen.add(id(t.cls))
        return all(_closed(f.type, seen) for f in t.fields)
    if isinstance(t, mi.UnionType):
        return all(_closed(u, seen) for u in t.types)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _closed(t.item_type, seen)
    if isinstance(t, mi.TupleType):
        return all(_closed(u, seen) for u in t.item_types)
    if isinstance(t, mi.DictType):
        return _closed(t.key_type, seen) and _closed(t.value_type, seen)
    return True  # scalars, enums, literals, dates: msgspec types them exactly


def _any_dec_hook(type_: type, obj: Any) -> Any:
    # Only lets Decoder(cls) be built to test the class; shapes.py decodes for real.
    return obj
