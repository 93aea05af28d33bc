"""The API for code running inside a process, bound to that process's runtime.

Process code should not need a global ``runtime`` variable (the seed manual's
examples use one that is never defined). Every function here finds the
running process through a context variable that the runtime sets when the
process starts, and forwards to that process's runtime. Several runtimes
(nodes) can share one event loop and each process still reaches its own.

Usage::

    from otpylib import process

    async def echo():
        while True:
            sender, msg = await process.receive()
            await process.send(sender, ("echo", msg))

Calling any of these from outside a process raises ``NotInProcessError``;
from ``main``, use the runtime object itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from otpylib.runtime.atoms import Atom
from otpylib.runtime.backends.base import ProcessFunction, RuntimeBackend, Target
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, ProcessInfo, Ref
from otpylib.runtime.errors import NotInProcessError, ProcessExit

logger = logging.getLogger(__name__)

__all__ = [
    "demonitor",
    "exit",
    "exit_self",
    "flag",
    "in_process",
    "is_alive",
    "link",
    "make_ref",
    "monitor",
    "process_info",
    "receive",
    "register",
    "runtime",
    "self",
    "send",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "unlink",
    "unregister",
    "whereis",
]


def runtime() -> RuntimeBackend:
    """The runtime running the calling process.

    Raises:
        NotInProcessError: called from outside any process.
    """
    proc = current_process.get()
    if proc is None:
        raise NotInProcessError(
            "otpylib.process functions work only inside a process; from main, "
            "call the runtime object directly (e.g. 'await runtime.send(pid, msg)')"
        )
    return proc.runtime


def in_process() -> bool:
    """Whether the caller runs inside a process (so the functions here work)."""
    return current_process.get() is not None


def self() -> Pid:
    """The calling process's pid (Erlang's ``self()``)."""
    return runtime().self()


async def send(target: Target, message: Any) -> None:
    """Send ``message`` to a pid, registered name or ``(name, node)``."""
    await runtime().send(target, message)


async def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """Take the next (or the first matching) message; see ``RuntimeBackend.receive``."""
    return await runtime().receive(timeout, match)


async def spawn(
    fn: ProcessFunction,
    args: list[Any] | tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> Pid:
    """Spawn a process on the caller's runtime (options as ``RuntimeBackend.spawn``)."""
    return await runtime().spawn(fn, args, kwargs, **options)


async def spawn_link(
    fn: ProcessFunction,
    args: list[Any] | tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> Pid:
    """Spawn a process linked to the caller."""
    return await runtime().spawn_link(fn, args, kwargs, **options)


async def spawn_monitor(
    fn: ProcessFunction,
    args: list[Any] | tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Pid, Ref]:
    """Spawn a process monitored by the caller; returns ``(pid, ref)``."""
    return await runtime().spawn_monitor(fn, args, kwargs, **options)


async def link(pid: Pid) -> None:
    """Link the caller and ``pid``."""
    await runtime().link(pid)


async def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``."""
    await runtime().unlink(pid)


async def monitor(target: Pid | str | tuple[str, str]) -> Ref:
    """Monitor ``target``; returns the monitor's ref."""
    return await runtime().monitor(target)


async def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor (optionally flushing its DOWN message)."""
    return await runtime().demonitor(ref, flush)


async def exit(pid: Pid, reason: Any) -> None:
    """Send the exit signal ``reason`` to ``pid`` (Erlang's ``exit/2``)."""
    await runtime().exit(pid, reason)


def exit_self(reason: Any) -> None:
    """End the calling process with ``reason`` (Erlang's ``exit/1``), by raising.

    Like any exception it can be caught on its way out; unlike other
    exceptions it is not logged as a crash.
    """
    raise ProcessExit(reason)


def flag(name: Atom | str, value: Any) -> Any:
    """Set a process flag (``trap_exit``) of the caller; returns the old value."""
    return runtime().process_flag(name, value)


async def register(name: str, pid: Pid | None = None) -> None:
    """Register the caller (or ``pid``) under ``name``."""
    await runtime().register(name, pid)


async def unregister(name: str) -> None:
    """Remove a registered name."""
    await runtime().unregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered as ``name``, or ``None``."""
    return runtime().whereis(name)


def is_alive(pid: Pid) -> bool:
    """Whether ``pid`` is alive."""
    return runtime().is_alive(pid)


def process_info(pid: Pid) -> ProcessInfo | None:
    """A snapshot of ``pid`` or ``None``."""
    return runtime().process_info(pid)


def make_ref() -> Ref:
    """A new unique reference."""
    return runtime().make_ref()
