"""Exceptions raised by the runtime API, each with a ``reason`` to match on.

Reasons are data (usually atoms, as Erlang's exit reasons); the exception
message is for humans and says what to do next.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "NameAlreadyRegistered",
    "NotInProcessError",
    "OtpError",
    "ProcessExit",
    "RuntimeClosedError",
    "RuntimeStateError",
    "UnknownNameError",
]


class OtpError(Exception):
    """Base class of every error the otpylib runtime raises on purpose."""

    reason: Any = None


class NotInProcessError(OtpError, RuntimeError):
    """Raised when process-only API (``self``, ``receive``...) is called from outside a process.

    Code in ``main`` talks to the runtime object directly; code running as a
    process uses :mod:`otpylib.process` (or the runtime object it was given).
    """


class RuntimeClosedError(OtpError, RuntimeError):
    """Raised when the runtime was never initialized or has been shut down."""


class RuntimeStateError(OtpError, RuntimeError):
    """Raised for a call the runtime cannot take in its state: initialized twice,
    a second router attached, the node identity changed once processes exist.

    A programming error (fix the call order), unlike ``RuntimeClosedError``.
    """


class UnknownNameError(OtpError, LookupError):
    """Raised when sending to a registered name that nobody holds.

    Erlang raises ``badarg`` here; we name the missing name instead.
    """

    def __init__(self, name: object, detail: str = "") -> None:
        self.name = name
        self.reason = name
        msg = f"no process is registered as {name!r}"
        if detail:
            msg += f"; {detail}"
        else:
            msg += "; check the spelling, or look it up with whereis() first"
        super().__init__(msg)


class NameAlreadyRegistered(OtpError, ValueError):
    """Raised by ``register`` when the name is taken or the process already has a name.

    ``holder`` is the pid holding the name when that is why (also for a spawn
    with a name on another node), else ``None``.
    """

    def __init__(self, message: str, holder: Any = None) -> None:
        self.holder = holder
        super().__init__(message)


class ProcessExit(OtpError):
    """An exit seen by a caller: raised by ``gen_server.call`` and friends.

    ``reason`` is the exit reason (``noproc``, ``noconnection``, ``timeout``,
    or whatever the server exited with), like Erlang's ``{Reason, {M, F, A}}``.
    """

    #: Whether a process ended by this exception is logged as a crash.
    crash: bool = False

    def __init__(self, reason: Any, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message if message is not None else f"exit: {reason!r}")

    @property
    def exit_reason(self) -> Any:
        """The reason a process that does not catch this exception exits with."""
        return self.reason
