"""AsyncIOBackend: one node's processes as asyncio tasks, with Erlang semantics.

Theory of operation
-------------------
A process is an asyncio task running a wrapper around the user's coroutine.
The wrapper sets the ``current_process`` context variable, awaits the user
function, and turns however it ended into an exit reason:

- returned                -> ``normal``
- raised ``ProcessExit``  -> its ``reason`` (not logged as a crash)
- raised anything else    -> the exception itself (logged once, with traceback)
- cancelled by a signal   -> the reason the signal carried (``killed``, ...)

Once a process has been told to die, the signal's reason is its exit reason
however the function then ends: one that catches the cancellation and
returns still ends ``killed`` (``kill`` cannot be trapped), and
``is_alive`` is already false for it.

Termination (``_terminate``) then runs synchronously, with no ``await``, so
no other process can observe a half-dead process: the pid leaves the process
table and the registry, each linked process gets a link exit signal, and each
monitor owner gets its ``(DOWN, ref, pid, reason)``.

Exit signals follow ``erlang:exit/2``:

=====================  =====================  ==========================
signal reason          target traps exits     target does not trap
=====================  =====================  ==========================
``kill`` (exit/2)      dies, reason killed    dies, reason killed
``normal``             ``(EXIT, from, normal)``  ignored (unless from itself)
anything else          ``(EXIT, from, R)``    dies with reason R
=====================  =====================  ==========================

A link signal (a linked process ended) is the same, except that ``kill`` is
not special (it arrives as a plain reason) and ``normal`` from itself cannot
happen.

Remote pids: every operation checks the process table first (the common
case). A pid whose node is not ours is handed to ``self._router`` (set by the
distribution layer); without a router, such a pid is treated as dead.

The hot path (measured by ``bench/local.py``): ``send`` is a plain ``def``
that appends to the mailbox and returns one shared, already-done future, so
a local message costs no coroutine and no trip through the loop; a remote
send returns the router's coroutine instead. ``receive`` with neither
``match`` nor ``timeout`` runs a small coroutine of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILL,
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TRAP_EXIT,
    Atom,
    atom,
    normalize_reason,
)
from otpylib.runtime.backends.asyncio_backend.process import Process
from otpylib.runtime.backends.base import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    Name,
    ProcessFunction,
    RemoteRouter,
    RuntimeBackend,
    Target,
)
from otpylib.runtime.context import current_process
from otpylib.runtime.data import (
    EXIT_KINDS,
    LOCAL_NODE,
    Pid,
    ProcessInfo,
    Ref,
    RuntimeStatistics,
    exit_kind,
)
from otpylib.runtime.errors import (
    NameAlreadyRegistered,
    NotInProcessError,
    ProcessExit,
    RuntimeClosedError,
    UnknownNameError,
)

logger = logging.getLogger(__name__)

__all__ = ["AsyncIOBackend", "resolve_function"]

#: Exit reasons that are not crashes: a process ending with one of these is
#: not logged (as Erlang's error logger stays quiet for normal and shutdown).
_QUIET_REASONS = (NORMAL, SHUTDOWN)


#: Strings accepted as the well-known exit reasons. The seed manual writes
#: ``runtime.exit(pid, 'shutdown')``; Python users will type strings, and a
#: string that silently failed to mean ``kill`` would be a trap.
#: Differs from Erlang: there, the string "kill" is not the atom kill.
def _name_text(name: Name) -> str:
    """A registered name as the registry keys it: an Atom stands for its text."""
    if isinstance(name, Atom):
        return str(name.name)
    return name


def resolve_function(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function.

    This is how a process is named across nodes (remote spawn): by an
    importable reference, never by shipping code.

    Raises:
        ValueError: ``ref`` is not of the form ``module:function``.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such function.
        TypeError: the attribute is not callable.
    """
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"function reference {ref!r} is not of the form 'package.module:function'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref!r} is not callable (it is a {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


class _AlreadyDone:
    """An awaitable that is complete at once, for ``send`` before ``initialize()``.

    Once the runtime runs, ``send`` hands out one already-done future of its
    loop instead (faster to await, and usable with ``asyncio.gather``).
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_ALREADY_DONE: Awaitable[None] = _AlreadyDone()


def _check_pid(pid: Any, what: str) -> None:
    """Refuse a target of ``exit``/``link``/``unlink`` that is not a pid, with advice."""
    if type(pid) is not Pid:
        raise TypeError(
            f"{what}() takes a Pid, got {type(pid).__name__}: {pid!r}; "
            "for a registered name, look the pid up first with whereis(name)"
        )


class AsyncIOBackend(RuntimeBackend):
    """The local runtime: processes, mailboxes, registry, links and monitors.

    Create one per node, ``await initialize()`` inside a running event loop,
    and ``await shutdown()`` at the end. Process code reaches its runtime
    through :mod:`otpylib.process` (or by being handed this object).
    """

    def __init__(self) -> None:
        self._node_name: str = LOCAL_NODE
        self._creation: int = 0
        self._router: RemoteRouter | None = None
        self._processes: dict[Pid, Process] = {}
        self._registry: dict[str, Pid] = {}
        self._pid_counter = itertools.count(1)
        self._ref_counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._initialized = False
        self._closing = False
        self._closed = False
        self._total_spawned = 0
        self._messages = 0
        self._links = 0
        self._monitors = 0
        # Processes ended, by exit_kind(reason) (observability: statistics()).
        self._exits = dict.fromkeys(EXIT_KINDS, 0)
        # Active aliases (see alias()): extra pids that reach a process's mailbox.
        self._aliases: dict[Pid, Process] = {}
        self._runtime_pid = Pid(self._node_name, 0, self._creation)
        # What a local send returns: one already-done future of our loop,
        # shared by every send (see ``send``).
        self._sent: Awaitable[None] = _ALREADY_DONE
        self._shutdown_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life

    @property
    def node_name(self) -> str:
        """This runtime's node name (``nonode@nohost`` when not distributed)."""
        return self._node_name

    @property
    def runtime_pid(self) -> Pid:
        """The pid that signals sent from outside any process carry as sender."""
        return self._runtime_pid

    def _set_identity(self, node_name: str, creation: int) -> None:
        """Set the node name and creation; only before the first spawn."""
        if self._total_spawned:
            raise RuntimeError("the node identity cannot change after processes exist")
        self._node_name = node_name
        self._creation = creation
        self._runtime_pid = Pid(node_name, 0, creation)

    async def initialize(self) -> None:
        """Start the runtime in the running event loop; call once before anything else."""
        if self._initialized:
            raise RuntimeError("this runtime is already initialized")
        self._loop = loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()
        sent.set_result(None)
        self._sent = sent
        self._started_at = time.monotonic()
        self._initialized = True

    async def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """End every process with reason ``shutdown`` and release everything.

        First every process gets the exit signal ``shutdown`` from the runtime:
        processes that do not trap exits end at once; those that trap (such as
        supervisors) get ``(EXIT, runtime_pid, shutdown)`` and up to
        ``timeout`` seconds to stop their children in order and exit. What is
        still alive after that is killed (reason ``shutdown``). Links and
        monitors fire as usual throughout. Calling ``shutdown`` twice, or
        while it runs, is safe: every call from outside the runtime's
        processes returns once the shutdown is complete.

        Called from inside a process of this runtime, the shutdown cannot
        wait for its own caller to end, so it runs in a task of its own (as
        Erlang's ``init:stop/0`` returns at once and stops the system
        afterwards) and this call returns after it has started: by then the
        caller has had its ``shutdown`` signal, like every other process. A
        caller that does not trap exits ends at its next ``await``; one that
        traps gets the ``(EXIT, runtime_pid, shutdown)`` message and
        ``timeout`` seconds to return.

        Args:
            timeout: seconds for trapping processes to end after the signal,
                then again for killed ones to finish their clean-up.
        """
        if self._closed or not self._initialized:
            self._closed = True
            return
        task = self._shutdown_task
        if task is None:
            # The signals go out now, in the caller's step, so nothing runs
            # in between (a process spawned but not yet started never will).
            self._closing = True
            for proc in list(self._processes.values()):
                if proc.pid in self._processes:
                    self._exit_signal(proc, self._runtime_pid, SHUTDOWN, link=False)
            # The waiting runs as a task in an empty context: it is no process,
            # even when a process asked for it (a task inherits its creator's
            # context), and it goes on if the caller is ended meanwhile.
            task = self._shutdown_task = asyncio.get_running_loop().create_task(
                self._finish_shutdown(timeout), context=contextvars.Context()
            )
        caller = current_process.get()
        if caller is not None and caller.runtime is self:
            # The caller has had its signal: a non-trapping caller ends here.
            await asyncio.sleep(0)
            return
        # Shielded: a caller that gives up waiting does not stop the shutdown.
        await asyncio.shield(task)

    async def _finish_shutdown(self, timeout: float) -> None:
        """Wait for the signalled processes, kill what is left, then close (see ``shutdown``)."""
        await self._wait_all_gone(timeout)
        for proc in list(self._processes.values()):
            self._kill(proc, SHUTDOWN)
        if not await self._wait_all_gone(timeout):
            stuck = [p.pid for p in self._processes.values()]
            logger.warning(
                "shutdown: %d process(es) ignored cancellation and were abandoned: %r",
                len(stuck),
                stuck[:10],
            )
            for pid in stuck:
                left = self._processes.get(pid)
                if left is not None:
                    self._terminate(left, SHUTDOWN)
        self._closed = True

    async def _wait_all_gone(self, timeout: float) -> bool:
        tasks = [p.task for p in self._processes.values() if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        # Let done tasks finish their clean-up callbacks.
        await asyncio.sleep(0)
        return not self._processes

    def _check_open(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or self._closed:
            state = "has been shut down" if self._closed else "is not initialized"
            raise RuntimeClosedError(
                f"the runtime {state}; call 'await runtime.initialize()' first "
                "and use it only until 'await runtime.shutdown()'"
            )
        return loop

    # ----------------------------------------------------------------- spawn

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
        if node is not None and node != self._node_name:
            return (await self._spawn_remote(node, fn, args, kwargs, name, trap_exits, None))[0]
        proc = self._spawn(fn, args, kwargs, name, trap_exits)
        return proc.pid

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
        caller = self._caller("spawn_link")
        if node is not None and node != self._node_name:
            pid, _ = await self._spawn_remote(node, fn, args, kwargs, name, trap_exits, "link")
            return pid
        proc = self._spawn(fn, args, kwargs, name, trap_exits)
        self._add_link(caller, proc)
        return proc.pid

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
        caller = self._caller("spawn_monitor")
        if node is not None and node != self._node_name:
            pid, ref = await self._spawn_remote(node, fn, args, kwargs, name, trap_exits, "monitor")
            assert ref is not None
            return pid, ref
        proc = self._spawn(fn, args, kwargs, name, trap_exits)
        ref = self.make_ref()
        self._add_monitor(caller, proc, ref, proc.pid)
        return proc.pid, ref

    async def _spawn_remote(
        self,
        node: str,
        fn: ProcessFunction,
        args: list[Any] | tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        name: str | None,
        trap_exits: bool,
        relation: str | None,
    ) -> tuple[Pid, Ref | None]:
        raise RuntimeError(
            f"cannot spawn on node {node!r}: this runtime is not distributed "
            "(use otpylib_dist.DistributedBackend)"
        )

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
            if name in self._registry:
                raise NameAlreadyRegistered(
                    f"cannot spawn with name {name!r}: it is registered to {self._registry[name]!r}"
                )
        pid = Pid(self._node_name, next(self._pid_counter), self._creation)
        proc = Process(pid, self, bool(trap_exits), time.time(), fn)
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
            reason = proc.kill_reason
            if reason is None:
                reason = exc
                self._log_crash(proc, exc)
            if not isinstance(exc, Exception):
                # KeyboardInterrupt / SystemExit must still reach the loop.
                self._terminate(proc, reason)
                raise
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

    # ---------------------------------------------------------------- self

    def _caller(self, what: str) -> Process:
        proc = current_process.get()
        if proc is None or proc.runtime is not self:
            raise NotInProcessError(
                f"{what}() must be called from inside a process of this runtime; "
                "spawn a process and call it there (from main, use spawn/send/exit)"
            )
        return proc

    def self(self) -> Pid:
        """The pid of the calling process (Erlang's ``self()``).

        Raises:
            NotInProcessError: called from outside a process of this runtime.
        """
        return self._caller("self").pid

    def make_ref(self) -> Ref:
        """A new reference, unique within this node's incarnation (a counter)."""
        return Ref(self._node_name, next(self._ref_counter), self._creation)

    def alias(self) -> Pid:
        """A new address for the caller's mailbox, until ``unalias`` (Erlang's ``alias/0``).

        A request names an alias as its reply address so the answer can be
        refused once the requester stops waiting: after ``unalias``, messages
        sent to the alias (from this node or another) are dropped, as messages
        to a dead pid are. This is how ``gen_server.call`` keeps a reply that
        comes after its timeout out of the caller's mailbox.

        Differs from Erlang: an alias is a Pid (a fresh id of this node that no
        process has), not a reference, so it travels wherever a pid does;
        ``is_alive`` says False for it. The owner removes its aliases
        (``unalias`` in a ``finally``); one left behind by a process that ended
        is dropped when it ends.
        """
        proc = self._caller("alias")
        alias = Pid(self._node_name, next(self._pid_counter), self._creation)
        self._aliases[alias] = proc
        if proc.aliases is None:
            proc.aliases = set()
        proc.aliases.add(alias)
        return alias

    def unalias(self, alias: Pid) -> bool:
        """Deactivate the caller's ``alias`` (``unalias/1``); returns whether it was active."""
        proc = self._caller("unalias")
        if self._aliases.get(alias) is not proc:
            return False
        del self._aliases[alias]
        if proc.aliases is not None:
            proc.aliases.discard(alias)
        return True

    def _alias_owner(self, alias: Pid) -> Process | None:
        """The live process an active alias reaches, or None (a stale alias is removed)."""
        proc = self._aliases.get(alias)
        if proc is None:
            return None
        if proc.pid not in self._processes:
            del self._aliases[alias]
            return None
        return proc

    def process_flag(self, flag: Atom | str, value: Any) -> Any:
        """Set a flag of the calling process and return its old value.

        Only ``trap_exit`` exists today (Erlang's ``process_flag(trap_exit, B)``):
        when on, exit signals arrive as ``(EXIT, from, reason)`` messages
        instead of ending the process (except ``kill``).
        """
        proc = self._caller("process_flag")
        if flag is TRAP_EXIT or flag == "trap_exit":
            old = proc.trap_exits
            proc.trap_exits = bool(value)
            return old
        raise ValueError(f"unknown process flag {flag!r}; supported: trap_exit")

    # ------------------------------------------------------------ messages

    def send(self, target: Target, message: Any) -> Awaitable[None]:
        """Send ``message`` to a pid, a registered name or ``(name, node)``.

        Sending to a dead pid drops the message silently, as in Erlang (use a
        monitor to learn of the death). Sending to a name nobody holds raises.
        Messages from one sender to one receiver arrive in the order sent.

        This is the hot path of the runtime, so it is a plain ``def``: a local
        send is done when it returns, and what it returns is one shared,
        already-complete future (awaiting it costs no coroutine and no trip
        through the event loop). A send to another node's pid or name returns
        the router's coroutine, which does the work when awaited. Either way,
        write ``await runtime.send(...)``.

        Raises:
            UnknownNameError: ``target`` is a name that is not registered here,
                or ``(name, node)`` for another node when not distributed.
            TypeError: ``target`` is none of the above.
        """
        if type(target) is Pid:
            proc = self._processes.get(target)
            if proc is None:
                if self._aliases:
                    proc = self._alias_owner(target)
                if proc is None:
                    if target.node != self._node_name and self._router is not None:
                        return self._router.send(self._sender_pid(), target, message)
                    return self._sent
        else:
            proc = self._named(target)
            if proc is None:
                return self._send_remote_named(target, message)
        # Process.deliver, inlined: this runs once per local message.
        self._messages += 1
        proc.received += 1
        mailbox = proc.mailbox
        if mailbox is None:
            proc.mailbox = deque((message,))
        else:
            mailbox.append(message)
        waiter = proc.waiter
        if waiter is not None:
            proc.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return self._sent

    def _named(self, target: Any) -> Process | None:
        """The live local process a name target stands for; ``None`` for ``(name, node)``.

        Raises:
            UnknownNameError: a local name (or ``(name, our node)``) nobody holds.
            TypeError: not a name, nor a pair.
        """
        if isinstance(target, tuple) and len(target) == 2 and target[1] == self._node_name:
            target = target[0]
        if isinstance(target, str | Atom):
            name = _name_text(target)
        elif isinstance(target, tuple) and len(target) == 2:
            return None
        else:
            raise TypeError(
                f"send() target must be a Pid, a registered name or (name, node); "
                f"got {type(target).__name__}: {target!r}"
            )
        pid = self._registry.get(name)
        if pid is None:
            raise UnknownNameError(name)
        return self._processes[pid]

    def _send_remote_named(self, target: Any, message: Any) -> Awaitable[None]:
        """Send to ``(name, node)`` on another node, through the router."""
        name, node = target
        name = _name_text(name)
        if self._router is None:
            raise UnknownNameError(
                target, f"node {node!r} is not reachable: this runtime is not distributed"
            )
        return self._router.send_registered(self._sender_pid(), name, node, message)

    def send_nowait(self, target: Pid | Name, message: Any) -> bool:
        """Deliver to a local pid or name without awaiting; returns whether delivered.

        For callbacks that cannot await. Remote targets are not accepted here
        (they may need to wait for a connection): use ``await send``.
        """
        if isinstance(target, Pid):
            proc = self._processes.get(target)
            if proc is None and self._aliases:
                proc = self._alias_owner(target)
        else:
            pid = self._registry.get(_name_text(target))
            proc = self._processes.get(pid) if pid is not None else None
        if proc is None:
            return False
        self._messages += 1
        proc.deliver(message)
        return True

    def _sender_pid(self) -> Pid:
        proc = current_process.get()
        if proc is None or proc.runtime is not self:
            return self._runtime_pid
        return proc.pid

    def receive(
        self,
        timeout: float | None = None,
        match: Callable[[Any], bool] | None = None,
    ) -> Awaitable[Any]:
        """Take the next message from the caller's mailbox, waiting if none.

        With ``match``, take the first message for which ``match(msg)`` is
        true and leave the others queued in their order (selective receive).
        Returns an awaitable (``await runtime.receive()``); the common case,
        no ``match`` and no ``timeout``, runs a smaller coroutine than the
        general one.

        Raises:
            TimeoutError: (``asyncio.TimeoutError``) nothing arrived within
                ``timeout`` seconds; ``timeout=0`` polls.
            NotInProcessError: called from outside a process.
        """
        proc = current_process.get()
        if proc is None or proc.runtime is not self:
            self._caller("receive")
            raise AssertionError("unreachable")
        if match is None and timeout is None:
            return self._receive_next(proc)
        return self._receive(proc, timeout, match)

    async def _receive_next(self, proc: Process) -> Any:
        """``receive()`` with no match and no timeout: the oldest message."""
        mailbox = proc.mailbox
        while not mailbox:
            # A process exists, so the runtime is initialized and has a loop.
            waiter = proc.waiter = self._loop.create_future()  # type: ignore[union-attr]
            try:
                await waiter
            finally:
                proc.waiter = None
            mailbox = proc.mailbox
        return mailbox.popleft()

    async def _receive(
        self,
        proc: Process,
        timeout: float | None,
        match: Callable[[Any], bool] | None,
    ) -> Any:
        """``receive`` in general: selective, with a deadline, or both."""
        scanned = 0
        deadline: float | None = None
        loop = self._loop
        assert loop is not None
        if timeout is not None:
            deadline = loop.time() + timeout
        while True:
            mailbox = proc.mailbox
            if mailbox:
                if match is None:
                    return mailbox.popleft()
                n = len(mailbox)
                while scanned < n:
                    msg = mailbox[scanned]
                    if match(msg):
                        del mailbox[scanned]
                        return msg
                    scanned += 1
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"receive timed out after {timeout} s")
            waiter = loop.create_future()
            proc.waiter = waiter
            handle = None
            if deadline is not None:
                handle = loop.call_at(deadline, _wake, waiter)
            try:
                await waiter
            finally:
                proc.waiter = None
                if handle is not None:
                    handle.cancel()

    # ------------------------------------------------------------ registry

    @staticmethod
    def _check_name(name: Any) -> str:
        if type(name) is Atom:
            return str(name.name)
        if not isinstance(name, str) or not name:
            raise TypeError(f"registered names are non-empty str, got {name!r}")
        return name

    async def register(self, name: Name, pid: Pid | None = None) -> None:
        """Register ``pid`` (default: the caller) under ``name`` (``register/2``).

        The name is freed when the process ends. An Atom name stands for its
        text: ``atom.ensure("db")`` and ``"db"`` are the same name.

        Differs from Erlang: registering a process again under the name it
        already holds is a no-op here, where Erlang's ``register/2`` raises
        ``badarg``; start-up code may then register without checking first,
        and a retried start does not fail on its own earlier registration.

        Raises:
            NameAlreadyRegistered: the name is taken by another process, or
                the process already has another name.
            ValueError: ``pid`` is not a live local process.
        """
        name = self._check_name(name)
        proc = self._caller("register") if pid is None else self._processes.get(pid)
        if proc is None:
            raise ValueError(f"cannot register {name!r}: {pid!r} is not a live local process")
        holder = self._registry.get(name)
        if holder is not None:
            if holder == proc.pid:
                return
            raise NameAlreadyRegistered(
                f"cannot register {name!r}: the name is taken by {holder!r}; "
                "unregister it first or choose another name"
            )
        if proc.name is not None:
            raise NameAlreadyRegistered(
                f"cannot register {proc.pid!r} as {name!r}: it is already registered "
                f"as {proc.name!r} (a process has at most one name)"
            )
        self._registry[name] = proc.pid
        proc.name = name

    async def unregister(self, name: Name) -> None:
        """Remove ``name`` from the registry (``unregister/1``).

        Raises:
            UnknownNameError: nobody is registered under ``name``.
        """
        name = self._check_name(name)
        pid = self._registry.pop(name, None)
        if pid is None:
            raise UnknownNameError(name, "nothing to unregister")
        proc = self._processes.get(pid)
        if proc is not None:
            proc.name = None

    def whereis(self, name: Name) -> Pid | None:
        """The pid registered under ``name`` (a str or an Atom), or ``None`` (``whereis/1``)."""
        return self._registry.get(_name_text(name))

    def registered(self) -> list[str]:
        """All registered names (``registered/0``)."""
        return list(self._registry)

    # --------------------------------------------------------------- links

    async def link(self, pid: Pid) -> None:
        """Link the caller and ``pid`` (``link/1``): bidirectional and idempotent.

        Linking to a dead process delivers the exit signal ``noproc`` to the
        caller at once (a message when trapping exits, else the caller dies),
        where Erlang raises ``noproc`` or sends it, depending on the version.

        Raises:
            TypeError: ``pid`` is not a Pid. As in Erlang (``badarg``), a
                registered name is not accepted: look it up with ``whereis``.
        """
        _check_pid(pid, "link")
        proc = self._caller("link")
        if pid == proc.pid:
            return
        other = self._processes.get(pid)
        if other is not None:
            self._add_link(proc, other)
            return
        if pid.node != self._node_name and self._router is not None:
            if proc.links is None:
                proc.links = set()
            if pid not in proc.links:
                proc.links.add(pid)
                self._links += 1
                await self._router.link(proc.pid, pid)
            return
        self._exit_signal(proc, pid, NOPROC, link=True)
        await asyncio.sleep(0)

    def _add_link(self, a: Process, b: Process) -> None:
        if a.links is None:
            a.links = set()
        if b.pid in a.links:
            return
        a.links.add(b.pid)
        if b.links is None:
            b.links = set()
        b.links.add(a.pid)
        self._links += 1

    async def unlink(self, pid: Pid) -> None:
        """Remove the link between the caller and ``pid`` if there is one (``unlink/1``).

        Raises:
            TypeError: ``pid`` is not a Pid (as for ``link``).
        """
        _check_pid(pid, "unlink")
        proc = self._caller("unlink")
        if proc.links is None or pid not in proc.links:
            return
        proc.links.discard(pid)
        self._links -= 1
        other = self._processes.get(pid)
        if other is not None:
            if other.links is not None:
                other.links.discard(proc.pid)
        elif pid.node != self._node_name and self._router is not None:
            self._router.unlink(proc.pid, pid)

    # ------------------------------------------------------------ monitors

    async def monitor(self, target: Pid | Name | tuple[str, str]) -> Ref:
        """Monitor ``target`` (``monitor(process, T)``) and return the monitor's ref.

        When the target ends (or is already dead, or the name is not
        registered), the caller gets ``(DOWN, ref, pid_or_name, reason)``;
        ``noproc`` for a target that did not exist. Monitoring is one-way and
        stackable: each call makes a new, independent monitor.
        """
        proc = self._caller("monitor")
        ref = self.make_ref()
        if type(target) is Pid:
            other = self._processes.get(target)
            if other is not None:
                self._add_monitor(proc, other, ref, target)
                return ref
            if target.node != self._node_name and self._router is not None:
                self._own_monitor(proc, ref, target)
                await self._router.monitor(proc.pid, target, ref)
                return ref
            self._messages += 1
            proc.deliver((DOWN, ref, target, NOPROC))
            return ref
        if isinstance(target, tuple):
            name, node = target
            if node != self._node_name:
                if self._router is None:
                    self._messages += 1
                    proc.deliver((DOWN, ref, target, NOCONNECTION))
                    return ref
                self._own_monitor(proc, ref, (name, node))
                await self._router.monitor(proc.pid, (name, node), ref)
                return ref
            target = name
        name = self._check_name(target)
        pid = self._registry.get(name)
        other = self._processes.get(pid) if pid is not None else None
        if other is None:
            self._messages += 1
            proc.deliver((DOWN, ref, name, NOPROC))
            return ref
        self._add_monitor(proc, other, ref, other.pid)
        return ref

    def _own_monitor(self, owner: Process, ref: Ref, item: Any) -> None:
        if owner.monitors is None:
            owner.monitors = {}
        owner.monitors[ref] = item
        self._monitors += 1

    def _add_monitor(self, owner: Process, target: Process, ref: Ref, item: Any) -> None:
        self._own_monitor(owner, ref, item)
        if target.monitored_by is None:
            target.monitored_by = {}
        target.monitored_by[ref] = owner.pid

    async def demonitor(self, ref: Ref, flush: bool = False) -> bool:
        """Remove the monitor ``ref`` (``demonitor/2``); returns whether it was active.

        With ``flush=True`` a ``DOWN`` message for it that already arrived is
        removed from the mailbox too, so the caller never sees it.
        """
        proc = self._caller("demonitor")
        item = proc.monitors.pop(ref, _MISSING) if proc.monitors else _MISSING
        active = item is not _MISSING
        if active:
            self._monitors -= 1
            if type(item) is Pid and item.node == self._node_name:
                target = self._processes.get(item)
                if target is not None and target.monitored_by is not None:
                    target.monitored_by.pop(ref, None)
            elif self._router is not None:
                self._router.demonitor(proc.pid, item, ref)
        if flush:
            self._flush_down(proc, ref)
        return active

    @staticmethod
    def _flush_down(proc: Process, ref: Ref) -> None:
        mailbox = proc.mailbox
        if not mailbox:
            return
        for i, msg in enumerate(mailbox):
            if type(msg) is tuple and len(msg) == 4 and msg[0] is DOWN and msg[1] == ref:
                del mailbox[i]
                return

    # --------------------------------------------------------- exit signals

    async def exit(self, pid: Pid, reason: Any) -> None:
        """Send the exit signal ``reason`` to ``pid`` (Erlang's ``exit/2``).

        ``kill`` ends the target unconditionally (its exit reason becomes
        ``killed``); ``normal`` is ignored unless the target traps exits or is
        the caller itself; any other reason ends a non-trapping target with
        that reason and reaches a trapping one as ``(EXIT, from, reason)``.
        The strings "normal", "kill" and "shutdown" mean those atoms.

        Raises:
            TypeError: ``pid`` is not a Pid. As in Erlang (``badarg``), a
                registered name is not accepted: look it up with ``whereis``.
        """
        _check_pid(pid, "exit")
        reason = normalize_reason(reason)
        sender = self._sender_pid()
        target = self._processes.get(pid)
        if target is not None:
            self._exit_signal(target, sender, reason, link=False)
            if target.pid == sender:
                # Let the cancellation land here, in the caller, right away.
                await asyncio.sleep(0)
            return
        if pid.node != self._node_name and self._router is not None:
            await self._router.exit(sender, pid, reason)

    def _link_exit(self, target: Process, sender: Pid, reason: Any) -> None:
        """A process linked to ``target`` ended: drop the link, then signal.

        Ignored when there is no such link (it was removed meanwhile), as in
        Erlang, where an unlink makes later link signals from that pid void.
        """
        links = target.links
        if links is None or sender not in links:
            return
        links.discard(sender)
        self._links -= 1
        self._exit_signal(target, sender, reason, link=True)

    def _exit_signal(self, target: Process, sender: Pid, reason: Any, *, link: bool) -> None:
        """Apply an exit signal to a live local process (the table above)."""
        if target.kill_reason is not None:
            return
        if reason is KILL and not link:
            self._kill(target, KILLED)
        elif target.trap_exits:
            self._messages += 1
            target.deliver((EXIT, sender, reason))
        elif reason is NORMAL:
            if not link and sender == target.pid:
                self._kill(target, NORMAL)
        else:
            self._kill(target, reason)

    def _kill(self, proc: Process, reason: Any) -> None:
        """Make ``proc`` end with ``reason`` (cancels its task; idempotent)."""
        if proc.kill_reason is not None:
            return
        proc.kill_reason = reason
        task = proc.task
        if not proc.started:
            # Cancelling a task that never ran skips the wrapper entirely, so
            # clean up here; the task then finishes without running the body.
            self._terminate(proc, reason)
        # For a process ending by its own hand (exit(self(), R)) the pending
        # CancelledError surfaces at its next await.
        if task is not None:
            task.cancel()

    def _terminate(self, proc: Process, reason: Any) -> None:
        """Remove a finished process and fire its links and monitors (no awaits)."""
        pid = proc.pid
        if self._processes.pop(pid, None) is None:
            return
        if proc.name is not None and self._registry.get(proc.name) == pid:
            del self._registry[proc.name]
        if proc.aliases:
            for alias in proc.aliases:
                self._aliases.pop(alias, None)
        if proc.waiter is not None and not proc.waiter.done():
            proc.waiter.cancel()
        self._exits[exit_kind(reason)] += 1
        if reason not in _QUIET_REASONS and logger.isEnabledFor(logging.DEBUG):
            logger.debug("process %r exited: %r", pid, reason)
        if proc.links:
            for other_pid in proc.links:
                other = self._processes.get(other_pid)
                if other is not None:
                    self._link_exit(other, pid, reason)
                    continue
                self._links -= 1
                if other_pid.node != self._node_name and self._router is not None:
                    self._router.link_exit(pid, other_pid, reason)
            proc.links = None
        if proc.monitored_by:
            for ref, owner_pid in proc.monitored_by.items():
                owner = self._processes.get(owner_pid)
                if owner is not None:
                    item = owner.monitors.pop(ref, _MISSING) if owner.monitors else _MISSING
                    if item is not _MISSING:
                        self._monitors -= 1
                        self._messages += 1
                        owner.deliver((DOWN, ref, item, reason))
                elif owner_pid.node != self._node_name and self._router is not None:
                    self._router.monitor_down(pid, owner_pid, ref, reason)
            proc.monitored_by = None
        if proc.monitors:
            for ref, item in proc.monitors.items():
                self._monitors -= 1
                if type(item) is Pid and item.node == self._node_name:
                    target = self._processes.get(item)
                    if target is not None and target.monitored_by is not None:
                        target.monitored_by.pop(ref, None)
                elif self._router is not None:
                    self._router.demonitor(pid, item, ref)
            proc.monitors = None

    # ------------------------------------------- signals arriving from peers
    #
    # The distribution layer calls these when a control message from another
    # node names one of our processes. They never await and never raise for a
    # dead target: each returns what the caller needs to answer the peer.

    def _remote_deliver(self, pid: Pid, message: Any) -> bool:
        """Deliver a message from another node; ``False`` if ``pid`` is not alive."""
        proc = self._processes.get(pid)
        if proc is None:
            proc = self._alias_owner(pid) if self._aliases else None
            if proc is None:
                return False
        self._messages += 1
        proc.deliver(message)
        return True

    def _remote_deliver_named(self, name: str, message: Any) -> bool:
        """Deliver to a registered name for another node; ``False`` if nobody holds it."""
        pid = self._registry.get(name)
        return pid is not None and self._remote_deliver(pid, message)

    def _remote_link(self, local: Pid, remote: Pid) -> bool:
        """A peer linked ``remote`` to our ``local``; ``False`` means noproc."""
        proc = self._processes.get(local)
        if proc is None or proc.kill_reason is not None:
            return False
        if proc.links is None:
            proc.links = set()
        if remote not in proc.links:
            proc.links.add(remote)
            self._links += 1
        return True

    def _remote_unlink(self, local: Pid, remote: Pid) -> None:
        """A peer removed the link between ``remote`` and our ``local``."""
        proc = self._processes.get(local)
        if proc is not None and proc.links is not None and remote in proc.links:
            proc.links.discard(remote)
            self._links -= 1

    def _remote_link_exit(self, local: Pid, remote: Pid, reason: Any) -> None:
        """The remote process linked to our ``local`` ended with ``reason``."""
        proc = self._processes.get(local)
        if proc is not None:
            self._link_exit(proc, remote, reason)

    def _remote_exit(self, local: Pid, sender: Pid, reason: Any) -> None:
        """An ``exit/2`` signal from a process on another node."""
        proc = self._processes.get(local)
        if proc is not None:
            self._exit_signal(proc, sender, reason, link=False)

    def _remote_monitor(self, target: Pid | str, owner: Pid, ref: Ref) -> Pid | None:
        """A remote ``owner`` monitors our ``target``; returns its pid, or None (noproc)."""
        pid = target if type(target) is Pid else self._registry.get(target)  # type: ignore[arg-type]
        proc = self._processes.get(pid) if pid is not None else None
        if proc is None or proc.kill_reason is not None:
            return None
        if proc.monitored_by is None:
            proc.monitored_by = {}
        proc.monitored_by[ref] = owner
        return proc.pid

    def _remote_demonitor(self, target: Pid | str, ref: Ref) -> None:
        """A remote owner removed its monitor ``ref`` on our ``target``."""
        pid = target if type(target) is Pid else self._registry.get(target)  # type: ignore[arg-type]
        proc = self._processes.get(pid) if pid is not None else None
        if proc is not None and proc.monitored_by is not None:
            proc.monitored_by.pop(ref, None)

    def _remote_down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        """A process our ``owner`` monitored on another node ended (its DOWN)."""
        proc = self._processes.get(owner)
        if proc is None or not proc.monitors:
            return
        item = proc.monitors.pop(ref, _MISSING)
        if item is not _MISSING:
            self._monitors -= 1
            self._messages += 1
            proc.deliver((DOWN, ref, item, reason))

    def _add_remote_link(self, local: Pid, remote: Pid) -> None:
        """Record our side of a link the peer already made (remote spawn_link)."""
        self._remote_link(local, remote)

    def _add_remote_monitor(self, owner: Pid, ref: Ref, item: Any) -> None:
        """Record our side of a monitor the peer already made (remote spawn_monitor)."""
        proc = self._processes.get(owner)
        if proc is not None:
            self._own_monitor(proc, ref, item)

    def _node_lost(self, node: str, reason: Any = NOCONNECTION) -> None:
        """The connection to ``node`` is gone: fire every link and monitor across it.

        Each local process linked to a process there gets the link exit signal
        ``reason`` (``noconnection``), each monitor on a process there delivers
        ``(DOWN, ref, item, noconnection)``, and monitors held by processes
        there on ours are dropped: exactly once each.
        """
        for proc in list(self._processes.values()):
            if proc.monitored_by:
                for ref in [r for r, o in proc.monitored_by.items() if o.node == node]:
                    del proc.monitored_by[ref]
            if proc.monitors:
                gone = [
                    ref
                    for ref, item in proc.monitors.items()
                    if (item.node if type(item) is Pid else item[1]) == node
                ]
                for ref in gone:
                    self._remote_down(proc.pid, ref, reason)
            if proc.links:
                for other in [p for p in proc.links if p.node == node]:
                    self._link_exit(proc, other, reason)

    # -------------------------------------------------------- introspection

    def is_alive(self, pid: Pid) -> bool:
        """Whether ``pid`` is alive (``is_process_alive/1``; remote: best knowledge).

        A process that has been told to die is not alive any more, even before
        its task has run its clean-up: as in Erlang, where
        ``exit(P, kill), false = is_process_alive(P)`` holds.
        """
        proc = self._processes.get(pid)
        if proc is not None:
            return proc.kill_reason is None
        if pid.node != self._node_name and self._router is not None:
            return bool(self._router.is_alive(pid))
        return False

    def process_info(self, pid: Pid) -> ProcessInfo | None:
        """A snapshot of a live local process, or ``None`` (``process_info/1``)."""
        proc = self._processes.get(pid)
        if proc is None:
            return None
        return ProcessInfo(
            pid=proc.pid,
            state=proc.state,
            name=proc.name,
            created_at=proc.created_at,
            trap_exits=proc.trap_exits,
            message_queue_len=proc.message_queue_len,
            links=tuple(proc.links or ()),
            monitors=tuple((proc.monitors or {}).values()),
            monitored_by=tuple((proc.monitored_by or {}).values()),
            function=proc.function,
            label=proc.label,
            messages_received=proc.received,
        )

    def processes(self) -> list[Pid]:
        """Pids of all live local processes (``processes/0``)."""
        return list(self._processes)

    def statistics(self) -> RuntimeStatistics:
        """Counters for this runtime (a frozen snapshot)."""
        uptime = time.monotonic() - self._started_at if self._initialized else 0.0
        return RuntimeStatistics(
            uptime_seconds=uptime,
            total_spawned=self._total_spawned,
            active_processes=len(self._processes),
            messages_processed=self._messages,
            active_monitors=self._monitors,
            active_links=self._links,
            registered_names=len(self._registry),
            exits=dict(self._exits),
        )


_MISSING: Any = atom.ensure("$otpylib_missing")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
