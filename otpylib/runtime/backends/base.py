"""The backend contract: what every otpylib runtime offers.

``RuntimeBackend`` is the public API of a runtime (the seed manual's
``runtime.spawn``, ``runtime.send`` ...). ``AsyncIOBackend`` implements it
for one node; ``otpylib_dist.DistributedBackend`` extends that with a node
name, connections and remote pids. Behaviours (gen_server, supervisor) use
only this contract, never a backend's private parts.

``RemoteRouter`` is the one place where the local runtime meets pids of
other nodes: whenever ``send``/``link``/``monitor``/``exit`` is given a Pid
(or ``(name, node)``) whose node is not ours, the local backend hands the
operation to its router. A runtime without distribution has no router and
treats such pids as dead (``noproc``), as a non-distributed Erlang node would.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeAlias

from otpylib.runtime.atoms import Atom
from otpylib.runtime.data import Pid, ProcessInfo, Ref, RuntimeStatistics

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "Name",
    "ProcessFunction",
    "RemoteRouter",
    "RuntimeBackend",
    "Target",
]

#: Seconds ``shutdown()`` gives processes that trap exits to end after the
#: ``shutdown`` signal (and again, after the kill, to finish their clean-up).
#: The same as a supervisor's default for a worker (OTP's 5000 ms), so a
#: supervision tree stopping its workers in order is not cut short by the
#: runtime it runs on. Every backend uses this one default.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0

#: What a process runs: an async function (or a "module:function" reference,
#: resolved by import, which is what remote spawn uses).
ProcessFunction: TypeAlias = Callable[..., Awaitable[Any]] | str

#: A registered name: a str, or an Atom standing for its text (``register``,
#: ``whereis``, ``send`` ... treat ``atom.ensure("db")`` and ``"db"`` alike).
Name: TypeAlias = str | Atom

#: Where a message can go: a pid, a locally registered name, or
#: ``(name, node)`` for a name registered on another node.
Target: TypeAlias = Pid | Name | tuple[str, str]


class RemoteRouter(Protocol):
    """Carries operations whose target lives on another node.

    The local backend calls these; the distribution layer implements them.
    Methods that are plain ``def`` are called from inside process clean-up
    (which cannot await) and must only enqueue.
    """

    async def send(self, sender: Pid | None, to: Pid, message: Any) -> None:
        """Send ``message`` to the remote pid ``to`` (dropped if it is dead)."""

    async def send_registered(self, sender: Pid | None, name: str, node: str, message: Any) -> None:
        """Send to the process registered as ``name`` on ``node``."""

    async def link(self, local: Pid, remote: Pid) -> None:
        """Ask ``remote``'s node to add a link; an unknown pid answers with noproc."""

    def unlink(self, local: Pid, remote: Pid) -> None:
        """Remove a link on the remote side (enqueue only: no connection, no link)."""

    async def monitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Ask the remote node to monitor ``target`` for ``owner``."""

    def demonitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Remove a monitor on the remote side (enqueue only)."""

    async def exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Deliver an ``exit/2`` signal to a remote process."""

    def link_exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Tell remote ``target`` that its linked local process ``sender`` ended."""

    def monitor_down(
        self, target: Pid | tuple[str, str], owner: Pid, ref: Ref, reason: Any
    ) -> None:
        """Tell remote ``owner`` that the local process it monitored ended."""

    def is_alive(self, pid: Pid) -> bool | None:
        """Best local knowledge of a remote pid's liveness (None: unknown)."""


class RuntimeBackend(ABC):
    """The public API every runtime offers (see the seed manual).

    Async methods may need to wait (for a connection, for buffer space);
    plain methods answer from local state at once.
    """

    @property
    @abstractmethod
    def node_name(self) -> str:
        """This runtime's node name (``nonode@nohost`` when not distributed)."""

    @abstractmethod
    async def initialize(self) -> None:
        """Start the runtime; call once before anything else."""

    @abstractmethod
    async def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """End every process with reason ``shutdown`` and release everything.

        Called from inside one of the runtime's processes, it starts the
        shutdown and returns at once; the caller then ends with ``shutdown``
        like every other process (it cannot wait for its own end).
        """

    @abstractmethod
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
        """Start a process running ``fn(*args, **kwargs)`` and return its pid."""

    @abstractmethod
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
        """Spawn and link to the caller atomically (the child cannot die unlinked)."""

    @abstractmethod
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
        """Spawn and monitor atomically; returns ``(pid, ref)``."""

    @abstractmethod
    def self(self) -> Pid:
        """The pid of the calling process."""

    @abstractmethod
    def send(self, target: Target, message: Any) -> Awaitable[None]:
        """Send ``message`` to a pid, a registered name or ``(name, node)``.

        Returns an awaitable: always ``await`` it. A local send is complete
        before it is returned (it is a plain ``def`` so the hot path costs no
        coroutine); a remote one may wait for a connection or buffer space.
        """

    @abstractmethod
    def receive(
        self,
        timeout: float | None = None,
        match: Callable[[Any], bool] | None = None,
    ) -> Awaitable[Any]:
        """Take the next message (or the first one ``match`` accepts); await the result."""

    @abstractmethod
    async def register(self, name: Name, pid: Pid | None = None) -> None:
        """Register ``pid`` (default: the caller) under ``name``."""

    @abstractmethod
    async def unregister(self, name: Name) -> None:
        """Remove a registered name."""

    @abstractmethod
    def whereis(self, name: Name) -> Pid | None:
        """The pid registered under ``name``, or ``None``."""

    @abstractmethod
    def registered(self) -> list[str]:
        """All registered names."""

    @abstractmethod
    async def link(self, pid: Pid) -> None:
        """Link the caller and ``pid`` (bidirectional, idempotent); a pid, never a name."""

    @abstractmethod
    async def unlink(self, pid: Pid) -> None:
        """Remove the link between the caller and ``pid``, if any."""

    @abstractmethod
    async def monitor(self, target: Pid | Name | tuple[str, str]) -> Ref:
        """Monitor ``target``; a ``(DOWN, ref, pid, reason)`` message follows its end."""

    @abstractmethod
    async def demonitor(self, ref: Ref, flush: bool = False) -> bool:
        """Remove a monitor; with ``flush`` also drop its DOWN message if queued."""

    @abstractmethod
    async def exit(self, pid: Pid, reason: Any) -> None:
        """Send an exit signal to ``pid`` (Erlang's ``exit/2``); a pid, never a name."""

    @abstractmethod
    def process_flag(self, flag: Atom | str, value: Any) -> Any:
        """Set a flag of the calling process (``trap_exit``); returns the old value."""

    @abstractmethod
    def is_alive(self, pid: Pid) -> bool:
        """Whether ``pid`` is alive (remote: the best local knowledge)."""

    @abstractmethod
    def process_info(self, pid: Pid) -> ProcessInfo | None:
        """A snapshot of a local process, or ``None`` when it is not alive."""

    @abstractmethod
    def processes(self) -> list[Pid]:
        """Pids of all live local processes."""

    @abstractmethod
    def statistics(self) -> RuntimeStatistics:
        """Counters for this runtime."""

    @abstractmethod
    def make_ref(self) -> Ref:
        """A new unique reference."""

    @abstractmethod
    def alias(self) -> Pid:
        """A new reply address for the caller's mailbox, valid until ``unalias``."""

    @abstractmethod
    def unalias(self, alias: Pid) -> bool:
        """Deactivate an alias of the caller: later messages to it are dropped."""
