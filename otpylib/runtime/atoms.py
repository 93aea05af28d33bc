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
    "AtomLimitExceeded",
    "atom",
    "ensure",
    "normalize_reason",
]

#: Longest atom name accepted. Erlang limits atoms to 255 characters; we do
#: the same so an atom table cannot be grown without bound by one huge name.
MAX_ATOM_LENGTH: Final = 255

#: Atoms that untrusted input (another node's messages) may create, by
#: default. Atoms are never freed, so a peer sending ever new names would
#: otherwise grow this process without bound (about 160 bytes an atom: a
#: million distinct names cost ~159 MiB). Erlang caps its whole atom table
#: (1,048,576 by default) and stops the node when it is full.
#: Differs from Erlang: only atoms created from untrusted input count, the
#: program's own atoms are never refused, and reaching the limit refuses
#: the one term that needed a new atom instead of stopping the node. Change
#: it with ``atom.untrusted_limit = n``.
DEFAULT_UNTRUSTED_ATOM_LIMIT: Final = 100_000


class AtomLimitExceeded(Exception):
    """Raised by :meth:`_AtomTable.ensure_untrusted` when untrusted input has created
    :attr:`_AtomTable.untrusted_limit` atoms already.

    Not a ``ValueError``: decoders pass it through msgspec hooks unchanged,
    so the receive path can tell "table full" from "malformed".
    """


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

    __slots__ = ("_lock", "_table", "untrusted_count", "untrusted_limit")

    def __init__(self) -> None:
        self._table: dict[str, Atom] = {}
        self._lock = threading.Lock()
        #: Atoms created by :meth:`ensure_untrusted` so far (they stay forever).
        self.untrusted_count = 0
        #: How many atoms :meth:`ensure_untrusted` may create in all.
        self.untrusted_limit = DEFAULT_UNTRUSTED_ATOM_LIMIT

    def ensure(self, name: str) -> Atom:
        """Return the one :class:`Atom` for ``name``, creating it on first use.

        Raises:
            TypeError: if ``name`` is not a ``str``.
            ValueError: if ``name`` is longer than :data:`MAX_ATOM_LENGTH`.
        """
        found = self._table.get(name)
        if found is not None:
            return found
        _check_name(name)
        with self._lock:
            found = self._table.get(name)
            if found is None:
                found = self._add(name)
            return found

    def _add(self, name: str) -> Atom:
        new = object.__new__(Atom)
        object.__setattr__(new, "name", name)
        self._table[name] = new
        return new

    def ensure_untrusted(self, name: str) -> Atom:
        """Return the atom for a name that came from untrusted input (a peer's message).

        An existing atom is returned as :meth:`ensure` does; a new one is
        created only while fewer than :attr:`untrusted_limit` atoms have been
        created this way.

        Raises:
            AtomLimitExceeded: ``name`` is new and the limit is reached.
            TypeError, ValueError: as :meth:`ensure`.
        """
        found = self._table.get(name)
        if found is not None:
            return found
        _check_name(name)
        with self._lock:
            found = self._table.get(name)
            if found is None:
                if self.untrusted_count >= self.untrusted_limit:
                    raise AtomLimitExceeded(
                        f"atom table full: {self.untrusted_count} atoms were created from "
                        f"peers' messages, the limit (atom.untrusted_limit) is "
                        f"{self.untrusted_limit}; a new atom {name[:40]!r} was refused"
                    )
                found = self._add(name)
                self.untrusted_count += 1
            return found

    def exists(self, name: str) -> Atom | None:
        """Return the atom for ``name`` if it was already created, else ``None``.

        Decoders of untrusted input may prefer this to :meth:`ensure`, as
        Erlang's ``binary_to_existing_atom`` does.
        """
        return self._table.get(name)

    def __len__(self) -> int:
        return len(self._table)


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"atom names are str, got {type(name).__name__}: {name!r}")
    if len(name) > MAX_ATOM_LENGTH:
        raise ValueError(
            f"atom name is {len(name)} characters long; the limit is {MAX_ATOM_LENGTH}"
        )


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
