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

Links, monitors, exit signals and termination live in ``signals.py``
(``SignalEngine``), process creation in ``spawning.py`` (``Spawner``, built
on it and mixed in here); what the distribution layer may do to
local processes lives in ``entry.py``. A pid whose node is not ours is
handed to the router attached by the distribution layer
(``attach_router``); without one, such a pid is treated as dead.

The hot path (measured by ``bench/local.py``): ``send`` is a plain ``def``
that appends to the mailbox and returns one shared, already-done future, so
a local message costs no coroutine and no trip through the loop; a remote
send returns the router's coroutine instead. ``receive`` with neither
``match`` nor ``timeout`` runs a small coroutine of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Self

from otpylib.runtime.atoms import (
    SHUTDOWN,
    TRAP_EXIT,
    Atom,
)
from otpylib.runtime.backends.asyncio_backend.deadlines import Deadlines
from otpylib.runtime.backends.asyncio_backend.entry import Entry
from otpylib.runtime.backends.asyncio_backend.mailbox import receive as _receive_next
from otpylib.runtime.backends.asyncio_backend.process import Process
from otpylib.runtime.backends.asyncio_backend.signals import wake
from otpylib.runtime.backends.asyncio_backend.spawning import Spawner
from otpylib.runtime.backends.base import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    Name,
    RemoteChannel,
    RemoteRouter,
    RuntimeBackend,
    RuntimeEntry,
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
)
from otpylib.runtime.errors import (
    NameAlreadyRegistered,
    NotInProcessError,
    RuntimeClosedError,
    RuntimeStateError,
    UnknownNameError,
)
from otpylib.runtime.function_ref import resolve_function

logger = logging.getLogger(__name__)

__all__ = ["AsyncIOBackend", "resolve_function"]


def _name_text(name: Name) -> str:
    """A registered name as the registry keys it: an Atom stands for its text."""
    if isinstance(name, Atom):
        return str(name.name)
    return name


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


def _not_started() -> asyncio.Future[Any]:
    """``_new_future`` before ``initialize``: no process can wait yet."""
    raise RuntimeStateError("the runtime is not initialized; call 'await runtime.initialize()'")


class AsyncIOBackend(Spawner, RuntimeBackend):
    """The local runtime: processes, mailboxes, registry, links and monitors.

    Create one per node, ``await initialize()`` inside a running event loop,
    and ``await shutdown()`` at the end. Process code reaches its runtime
    through :mod:`otpylib.process` (or by being handed this object).
    """

    def __init__(self) -> None:
        self._node_name: str = LOCAL_NODE
        self._creation: int = 0
        self._router: RemoteRouter | None = None
        #: The router's channels (nodes connected now); none until one is attached.
        self._channels: Mapping[str, RemoteChannel] = {}
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
        #: The loop's ``create_future``, bound once: what a waiting ``receive``
        #: calls. ``asyncio.get_running_loop()`` makes a ``getpid`` system
        #: call each time (CPython checks for a fork), once per wait.
        self._new_future: Callable[[], asyncio.Future[Any]] = _not_started
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
            raise RuntimeStateError("the node identity cannot change after processes exist")
        self._node_name = node_name
        self._creation = creation
        self._runtime_pid = Pid(node_name, 0, creation)

    async def initialize(self) -> None:
        """Start the runtime in the running event loop; call once before anything else."""
        if self._initialized:
            raise RuntimeStateError("this runtime is already initialized")
        self._loop = loop = asyncio.get_running_loop()
        self._new_future = loop.create_future
        self._deadlines = Deadlines(loop)
        sent: asyncio.Future[None] = loop.create_future()
        sent.set_result(None)
        self._sent = sent
        self._started_at = time.monotonic()
        self._initialized = True

    async def __aenter__(self) -> Self:
        """``async with Runtime() as runtime:``: initialize, then shut down at the end."""
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

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
        await self._await_stop(task)

    async def _await_stop(self, task: asyncio.Task[None]) -> None:
        """Wait for a stop ``task``, unless the caller is one of our processes.

        A process cannot wait for its own end: it has had its signal, so a
        non-trapping caller ends at this await; a trapping one goes on.
        """
        caller = current_process.get()
        if caller is not None and caller.runtime is self:
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
        self._deadlines.close()
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

    # ---------------------------------------------------------- distribution

    def attach_router(self, router: RemoteRouter) -> RuntimeEntry:
        """Connect the distribution layer: the seam, both ways.

        From now on, operations on pids of other nodes go to ``router``; the
        returned ``RuntimeEntry`` is how the distribution layer delivers what
        peers send. Called once, by ``otpylib_dist.Node.initialize``.
        """
        if self._router is not None:
            raise RuntimeStateError("a router is already attached to this runtime")
        self._router = router
        self._channels = router.channels
        return Entry(self)

    def is_local(self, where: Pid | Ref | str) -> bool:
        """Whether a pid, a ref or a node name belongs to this node."""
        node = where if isinstance(where, str) else where.node
        return node == self._node_name

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
        return self._add_alias(self._caller("alias"))

    def _add_alias(self, proc: Process) -> Pid:
        """:meth:`alias` for the calling process ``proc``."""
        alias = Pid(self._node_name, next(self._pid_counter), self._creation)
        self._aliases[alias] = proc
        if proc.aliases is None:
            proc.aliases = set()
        proc.aliases.add(alias)
        return alias

    def unalias(self, alias: Pid) -> bool:
        """Deactivate the caller's ``alias`` (``unalias/1``); returns whether it was active."""
        return self._remove_alias(self._caller("unalias"), alias)

    def _remove_alias(self, proc: Process, alias: Pid) -> bool:
        """:meth:`unalias` for the calling process ``proc``."""
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
                    router = self._router_for(target.node)
                    if router is not None:
                        return router.send(target, message)
                    return self._sent
        elif type(target) is tuple and len(target) == 2 and target[1] != self._node_name:
            # (name, node) on another node: _named would only say "not local".
            return self._send_remote_named(target, message)
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
        if type(node) is not str:
            raise TypeError(
                f"send() target (name, node) needs the node's name as a str "
                f"(such as 'app@host'); got {type(node).__name__}: {node!r}"
            )
        router = self._router_for(node)
        if router is None:
            raise UnknownNameError(
                target, f"node {node!r} is not reachable: this runtime is not distributed"
            )
        return router.send_registered(self._sender_pid(), _name_text(name), node, message)

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
            # The process API's receive, whose fast path is the common case.
            return _receive_next()
        return self._receive(proc, timeout, match)

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
                handle = loop.call_at(deadline, wake, waiter)
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
                "unregister it first or choose another name",
                holder=holder,
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
        router = self._router_for(pid.node)
        return router is not None and router.is_alive(pid)

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
