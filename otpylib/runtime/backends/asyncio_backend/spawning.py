"""Spawning: how a process starts, runs and turns its end into an exit reason.

Kept apart from ``backend.py`` (the runtime's life cycle, messages, the
registry) because it is one path with one set of rules: a process is an
asyncio task running :meth:`Spawner._run` around the user's coroutine, and
``spawn_link`` / ``spawn_monitor`` / ``spawn_opt`` relate the child to its
parent before the child can run (here or, through the router, on another
node), so it cannot end before the link or monitor exists.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from otpylib.runtime.atoms import KILLED, NORMAL, SHUTDOWN, normalize_reason
from otpylib.runtime.backends.asyncio_backend.process import Process
from otpylib.runtime.backends.asyncio_backend.signals import SignalEngine
from otpylib.runtime.backends.base import ProcessFunction, SpawnOptions
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import NameAlreadyRegistered, ProcessExit, RuntimeClosedError
from otpylib.runtime.function_ref import reference_of, resolve_function

if TYPE_CHECKING:
    from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend

logger = logging.getLogger(__name__)

__all__ = ["Spawner"]


class Spawner(SignalEngine):
    """Process creation for ``AsyncIOBackend``, on top of the signal engine.

    A mixin, as ``SignalEngine``: the state it works on belongs to the
    backend and is declared here for the type checker.
    """

    _creation: int
    _pid_counter: itertools.count[int]
    _total_spawned: int
    _closing: bool
    _runtime_pid: Pid
    _check_open: Callable[[], asyncio.AbstractEventLoop]

    async def spawn(
        self,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        trap_exits: bool = False,
        node: str | None = None,
    ) -> Pid:
        """Start a process running ``await fn(*args, **kwargs)``; return its pid.

        Args:
            fn: an async function, or ``"package.module:function"``.
            args, kwargs: passed to ``fn``.
            name: register the new process under this name before it runs.
            trap_exits: start with exit trapping on (see ``process_flag``).
            node: run it on another node (distributed runtimes only).

        Raises:
            NameAlreadyRegistered: ``name`` is taken.
            RuntimeClosedError: the runtime is not running.
        """
        if node is None or node == self._node_name:
            return self._spawn(fn, args, kwargs, name, trap_exits).pid
        pid, _ = await self.spawn_opt(fn, args, kwargs, name=name, trap_exits=trap_exits, node=node)
        return pid

    async def spawn_link(
        self,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        trap_exits: bool = False,
        node: str | None = None,
    ) -> Pid:
        """Spawn and link to the caller atomically (Erlang's ``spawn_link``)."""
        self._caller("spawn_link")
        pid, _ = await self.spawn_opt(
            fn, args, kwargs, name=name, trap_exits=trap_exits, link=True, node=node
        )
        return pid

    async def spawn_monitor(
        self,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        trap_exits: bool = False,
        node: str | None = None,
    ) -> tuple[Pid, Ref]:
        """Spawn and monitor atomically; returns ``(pid, ref)`` (``spawn_monitor``)."""
        self._caller("spawn_monitor")
        pid, ref = await self.spawn_opt(
            fn, args, kwargs, name=name, trap_exits=trap_exits, monitor=True, node=node
        )
        assert ref is not None
        return pid, ref

    async def spawn_opt(
        self,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        trap_exits: bool = False,
        link: bool = False,
        monitor: bool = False,
        node: str | None = None,
    ) -> tuple[Pid, Ref | None]:
        """Spawn with any of link and monitor, atomically (Erlang's ``spawn_opt``).

        Returns ``(pid, ref)``; ``ref`` is the monitor's ref, ``None`` without
        ``monitor``. The child cannot end before the link or monitor exists,
        here or on another node. ``link`` and ``monitor`` need a calling
        process (they relate the child to it).

        Raises:
            NameAlreadyRegistered: ``name`` is taken (``.holder`` is its pid).
            NotInProcessError: ``link``/``monitor`` outside a process.
            OtpError: on another node: ``noconnection`` when it cannot be
                reached, or its reason for refusing the spawn.
        """
        caller = self._caller("spawn_opt") if link or monitor else None
        if node is not None and node != self._node_name:
            router = self._router_for(node)
            if router is None:
                raise RuntimeClosedError(
                    f"cannot spawn on node {node!r}: this runtime is not distributed "
                    "(use otpylib_dist.DistributedBackend)"
                )
            ref = self.make_ref() if monitor else None
            options = SpawnOptions(
                sender=caller.pid if caller is not None else self._sender_pid(),
                name=name,
                trap_exits=trap_exits,
                link=link,
                monitor=ref,
            )
            pid = await router.spawn(
                node, reference_of(fn), tuple(args or ()), dict(kwargs or {}), options
            )
            return pid, ref
        proc = self._spawn(fn, args, kwargs, name, trap_exits)
        if caller is None:
            return proc.pid, None
        if link:
            self._add_link(caller, proc)
        if not monitor:
            return proc.pid, None
        ref = self.make_ref()
        self._add_monitor(caller, proc, ref, proc.pid)
        return proc.pid, ref

    def _spawn(
        self,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        name: str | None,
        trap_exits: bool,
    ) -> Process:
        loop = self._check_open()
        func: Callable[..., Any] = resolve_function(fn) if isinstance(fn, str) else fn
        if not callable(func):
            raise TypeError(f"spawn() needs an async function, got {type(func).__name__}")
        if name is not None:
            name = self._check_name(name)
            holder = self._registry.get(name)
            if holder is not None:
                raise NameAlreadyRegistered(
                    f"cannot spawn with name {name!r}: it is registered to {holder!r}",
                    holder=holder,
                )
        pid = Pid(self._node_name, next(self._pid_counter), self._creation)
        runtime = cast("AsyncIOBackend", self)  # a Spawner is only ever mixed into one
        proc = Process(pid, runtime, bool(trap_exits), time.time(), fn)
        self._processes[pid] = proc
        if name is not None:
            self._registry[name] = pid
            proc.name = name
        self._total_spawned += 1
        # No ``kwargs or {}``: an empty dict per spawn is memory for nothing.
        proc.task = loop.create_task(self._run(proc, func, args or (), kwargs))
        if self._closing:
            # Spawned while the runtime shuts down (a supervisor restarting a
            # child): it gets the same shutdown signal as everyone else did.
            self._exit_signal(proc, self._runtime_pid, SHUTDOWN, link=False)
        return proc

    async def _run(
        self,
        proc: Process,
        fn: Callable[..., Any],
        args: list[Any] | tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> None:
        """The task body of every process: run ``fn``, then turn its end into a reason.

        Once the process has been told to die (``kill_reason`` set), that is
        its reason however the function ended: a killed process that catches
        the cancellation and returns still ends ``killed``, since ``kill``
        cannot be trapped.
        """
        proc.started = True
        current_process.set(proc)
        try:
            await (fn(*args, **kwargs) if kwargs else fn(*args))
        except asyncio.CancelledError:
            reason = proc.kill_reason if proc.kill_reason is not None else KILLED
        except ProcessExit as exc:
            reason = proc.kill_reason
            if reason is None:
                reason = normalize_reason(exc.exit_reason)
                if exc.crash:
                    self._log_crash(proc, exc)
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt too: a process (maybe spawned
            # by a peer) ends, with the exception as its reason; the node
            # does not. Ctrl-C reaches asyncio.run through its own handler.
            reason = proc.kill_reason
            if reason is None:
                reason = exc
                self._log_crash(proc, exc)
        else:
            reason = proc.kill_reason if proc.kill_reason is not None else NORMAL
        self._terminate(proc, reason)

    @staticmethod
    def _log_crash(proc: Process, exc: BaseException) -> None:
        logger.error(
            "process %r (%s) crashed: %s: %s",
            proc.pid,
            proc.function,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={"event": "crash", "pid": str(proc.pid), "reason": type(exc).__name__},
        )
