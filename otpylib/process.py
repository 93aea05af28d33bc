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

``send``, ``receive`` and ``receive_batch`` are the backend's own (see
``otpylib.runtime.backends.asyncio_backend.mailbox``): each does the common
case in its one frame, where a wrapper here would add a call per message on
the hottest path. ``receive_batch`` takes every queued message in one call.
"""

from __future__ import annotations

import logging
from typing import Any

from otpylib.runtime.atoms import Atom
from otpylib.runtime.backends.asyncio_backend.mailbox import (
    OUTSIDE,
    receive,
    receive_batch,
    send,
)
from otpylib.runtime.backends.base import Name, ProcessFunction, RuntimeBackend
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, ProcessInfo, Ref
from otpylib.runtime.errors import NotInProcessError, ProcessExit

logger = logging.getLogger(__name__)

__all__ = [
    "alias",
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
    "receive_batch",
    "register",
    "runtime",
    "self",
    "send",
    "set_label",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "unalias",
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
        raise NotInProcessError(OUTSIDE)
    return proc.runtime


def in_process() -> bool:
    """Whether the caller runs inside a process (so the functions here work)."""
    return current_process.get() is not None


def self() -> Pid:
    """The calling process's pid (Erlang's ``self()``)."""
    return runtime().self()


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


async def spawn_opt(
    fn: ProcessFunction,
    args: list[Any] | tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Pid, Ref | None]:
    """Spawn with ``link=``/``monitor=`` (and ``name``, ``trap_exits``, ``node``) atomically.

    Erlang's ``spawn_opt``: returns ``(pid, monitor_ref_or_None)``.
    """
    return await runtime().spawn_opt(fn, args, kwargs, **options)


async def link(pid: Pid) -> None:
    """Link the caller and ``pid`` (a Pid: resolve a name with ``whereis`` first)."""
    await runtime().link(pid)


async def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``."""
    await runtime().unlink(pid)


async def monitor(target: Pid | Name | tuple[str, str]) -> Ref:
    """Monitor ``target``; returns the monitor's ref."""
    return await runtime().monitor(target)


async def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor (optionally flushing its DOWN message)."""
    return await runtime().demonitor(ref, flush)


async def exit(pid: Pid, reason: Any) -> None:
    """Send the exit signal ``reason`` to ``pid`` (Erlang's ``exit/2``; a Pid, not a name)."""
    await runtime().exit(pid, reason)


def exit_self(reason: Any) -> None:
    """End the calling process with ``reason`` (Erlang's ``exit/1``), by raising.

    Like any exception it can be caught on its way out; unlike other
    exceptions it is not logged as a crash. The strings "normal", "kill" and
    "shutdown" mean those atoms, as for ``exit/2``.

    Raises:
        ProcessExit: always, carrying ``reason``.
        NotInProcessError: called from outside a process (there is nothing
            to end, and an exit reason thrown around ``main`` would mislead).
    """
    runtime()
    raise ProcessExit(reason)


def flag(name: Atom | str, value: Any) -> Any:
    """Set a process flag (``trap_exit``) of the caller; returns the old value."""
    return runtime().process_flag(name, value)


async def register(name: Name, pid: Pid | None = None) -> None:
    """Register the caller (or ``pid``) under ``name``."""
    await runtime().register(name, pid)


async def unregister(name: Name) -> None:
    """Remove a registered name."""
    await runtime().unregister(name)


def whereis(name: Name) -> Pid | None:
    """The pid registered as ``name``, or ``None``."""
    return runtime().whereis(name)


def is_alive(pid: Pid) -> bool:
    """Whether ``pid`` is alive."""
    return runtime().is_alive(pid)


def process_info(pid: Pid) -> ProcessInfo | None:
    """A snapshot of ``pid`` or ``None``."""
    return runtime().process_info(pid)


def set_label(label: str | None) -> None:
    """Say what the calling process is, for ``ps``, ``top`` and ``process_info``.

    Erlang's ``proc_lib:set_label/1`` (OTP 27). A gen_server labels itself
    ``"gen_server module.Class"`` and a supervisor ``"supervisor STRATEGY"``,
    so a listing shows what each process does instead of the one function
    every server runs. Keep it short and bounded (it is kept per process);
    ``None`` removes it.

    Differs from Erlang: the label is a string (Erlang takes any term).

    Raises:
        NotInProcessError: called from outside a process.
        TypeError: ``label`` is neither a str nor ``None``.
    """
    proc = current_process.get()
    if proc is None:
        raise NotInProcessError(OUTSIDE)
    if label is not None and not isinstance(label, str):
        raise TypeError(f"set_label() takes a str or None, got {type(label).__name__}")
    proc.label = label


def make_ref() -> Ref:
    """A new unique reference."""
    return runtime().make_ref()


def alias() -> Pid:
    """A new reply address for the caller's mailbox (OTP 24's ``alias/0``).

    Give it to whoever should answer; ``unalias`` it when the answer is no
    longer wanted, and anything sent to it later is dropped instead of
    landing in the mailbox (how ``gen_server.call`` avoids late replies).
    """
    return runtime().alias()


def unalias(alias: Pid) -> bool:
    """Deactivate an alias of the caller; returns whether it was active."""
    return runtime().unalias(alias)
