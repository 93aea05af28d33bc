"""Interned atoms: small named constants that compare by identity.

Erlang programs tag their messages with atoms (``ok``, ``'EXIT'``, ``'DOWN'``);
Python has no such type, and plain strings make it too easy to confuse a tag
with data (``"normal"`` typed by a user versus the exit reason ``normal``).
An :class:`Atom` is a distinct type: there is exactly one instance per name,
so ``atom.ensure("ok") is atom.ensure("ok")`` and comparison is an identity
check. Atoms survive the trip between nodes and come back as the same
interned object.

Usage::

    from otpylib.runtime.atoms import atom, EXIT, DOWN
    PING = atom.ensure("ping")
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "DOWN",
    "EXIT",
    "KILL",
    "KILLED",
    "NOCONNECTION",
    "NODEDOWN",
    "NODEUP",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "TRAP_EXIT",
    "Atom",
    "atom",
    "ensure",
    "normalize_reason",
]

#: Longest atom name accepted. Erlang limits atoms to 255 characters; we do
#: the same so an atom table cannot be grown without bound by one huge name.
MAX_ATOM_LENGTH: Final = 255


class Atom:
    """A named constant that is unique per name (use :func:`atom.ensure`).

    Never construct ``Atom`` directly: two direct instances with the same name
    would not be identical, which breaks the one guarantee atoms give. For the
    same reason an atom is immutable: every holder shares the one object, so
    renaming it would rename it for all of them.
    """

    __slots__ = ("__weakref__", "name")

    name: str

    def __new__(cls, *args: object, **kwargs: object) -> Atom:
        raise TypeError("atoms are interned: get one with atom.ensure(name), not Atom(...)")

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"atoms are immutable: cannot set {attr!r} of {self!r}")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"atoms are immutable: cannot delete {attr!r} of {self!r}")

    def __repr__(self) -> str:
        return ":" + self.name

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Name the module-level function, not the bound method atom.ensure:
        # pickling a bound method pickles its object, the table and its lock.
        # Unpickling (and copy) then interns the name again: the same object.
        return (ensure, (self.name,))

    def __copy__(self) -> Atom:
        return self

    def __deepcopy__(self, memo: object) -> Atom:
        return self


class _AtomTable:
    """The process-wide table of interned atoms (exposed as ``atom``)."""

    __slots__ = ("_lock", "_table")

    def __init__(self) -> None:
        self._table: dict[str, Atom] = {}
        self._lock = threading.Lock()

    def ensure(self, name: str) -> Atom:
        """Return the one :class:`Atom` for ``name``, creating it on first use.

        Raises:
            TypeError: if ``name`` is not a ``str``.
            ValueError: if ``name`` is longer than :data:`MAX_ATOM_LENGTH`.
        """
        found = self._table.get(name)
        if found is not None:
            return found
        if not isinstance(name, str):
            raise TypeError(f"atom names are str, got {type(name).__name__}: {name!r}")
        if len(name) > MAX_ATOM_LENGTH:
            raise ValueError(
                f"atom name is {len(name)} characters long; the limit is {MAX_ATOM_LENGTH}"
            )
        with self._lock:
            found = self._table.get(name)
            if found is None:
                found = object.__new__(Atom)
                object.__setattr__(found, "name", name)
                self._table[name] = found
            return found

    def exists(self, name: str) -> Atom | None:
        """Return the atom for ``name`` if it was already created, else ``None``.

        Decoders of untrusted input may prefer this to :meth:`ensure`, as
        Erlang's ``binary_to_existing_atom`` does.
        """
        return self._table.get(name)

    def __len__(self) -> int:
        return len(self._table)


#: The atom table. ``atom.ensure("name")`` is the only way to get an Atom.
atom: Final = _AtomTable()


def ensure(name: str) -> Atom:
    """Return the one :class:`Atom` for ``name`` (the same as ``atom.ensure(name)``).

    A plain module-level function, so a pickled atom names it by reference
    (``otpylib.runtime.atoms.ensure``) and unpickles to the interned object.
    """
    return atom.ensure(name)


EXIT: Final = atom.ensure("EXIT")
DOWN: Final = atom.ensure("DOWN")
NORMAL: Final = atom.ensure("normal")
KILL: Final = atom.ensure("kill")
KILLED: Final = atom.ensure("killed")
SHUTDOWN: Final = atom.ensure("shutdown")
NOPROC: Final = atom.ensure("noproc")
NOCONNECTION: Final = atom.ensure("noconnection")
TIMEOUT: Final = atom.ensure("timeout")
TRAP_EXIT: Final = atom.ensure("trap_exit")
NODEUP: Final = atom.ensure("nodeup")
NODEDOWN: Final = atom.ensure("nodedown")


_REASON_ALIASES: dict[str, Atom] = {"normal": NORMAL, "kill": KILL, "shutdown": SHUTDOWN}


def normalize_reason(reason: Any) -> Any:
    """The exit reason ``reason`` means: the strings ``"normal"``, ``"kill"`` and
    ``"shutdown"`` become their atoms (the manual writes ``exit(pid, 'shutdown')``);
    anything else is returned as it is."""
    if type(reason) is str:
        return _REASON_ALIASES.get(reason, reason)
    return reason
