"""The backend contract, and the seam between the runtime and distribution.

``RuntimeBackend`` is the public API of a runtime (the seed manual's
``runtime.spawn``, ``runtime.send`` ...). ``AsyncIOBackend`` implements it
for one node; ``otpylib_dist.Node`` is a runtime that is also a node of a
cluster. Behaviours (gen_server, supervisor) use only this contract.

The seam with distribution is declared both ways, as two Protocols:

- ``RemoteRouter``: operations *out*. Whenever an operation's target lives
  on another node, the runtime hands it to the router it was given
  (``AsyncIOBackend.attach_router``); the router answers with a failure
  reason, if any, and the runtime acts on it with its own rules.
- ``RuntimeEntry``: signals *in*. What ``attach_router`` returns: the only
  way the distribution layer touches local processes (deliver, link, exit
  signal, monitor, DOWN, node lost, spawn for a peer).

A runtime without a router treats pids of other nodes as dead (``noproc``),
as a non-distributed Erlang node would.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, TypeAlias

import msgspec

from otpylib.runtime.atoms import Atom
from otpylib.runtime.data import Pid, ProcessInfo, Ref, RuntimeStatistics

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "MONITOR_ENDED",
    "Name",
    "ProcessFunction",
    "RemoteChannel",
    "RemoteRouter",
    "RuntimeBackend",
    "RuntimeEntry",
    "SpawnOptions",
    "Target",
]

#: Seconds ``shutdown()`` gives processes that trap exits to end after the
#: ``shutdown`` signal (and again, after the kill, to finish their clean-up).
#: The same as a supervisor's default for a worker (OTP's 5000 ms), so a
#: supervision tree stopping its workers in order is not cut short by the
#: runtime it runs on. Every backend uses this one default.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0

#: Third element of an answer to a request whose sender released the
#: requester's monitor on it: ``(ref, value, MONITOR_ENDED)`` (a bool, which
#: costs no atom decoding on the wire). See ``RuntimeBackend.answer``.
MONITOR_ENDED: Final = True

#: What a process runs: an async function (or a "module:function" reference,
#: resolved by import, which is what remote spawn uses).
ProcessFunction: TypeAlias = Callable[..., Awaitable[Any]] | str

#: A registered name: a str, or an Atom standing for its text (``register``,
#: ``whereis``, ``send`` ... treat ``atom.ensure("db")`` and ``"db"`` alike).
Name: TypeAlias = str | Atom

#: Where a message can go: a pid, a locally registered name, or
#: ``(name, node)`` for a name registered on another node.
Target: TypeAlias = Pid | Name | tuple[str, str]


class RemoteChannel(Protocol):
    """The way out to one node whose connection is up: the remote send fast path.

    The runtime sends a message to another node's pid or registered name
    straight through the channel of that node (``RemoteRouter.channels``),
    one call from ``send``; the router's own ``send`` / ``send_registered``
    do the rest (connecting first, stale pids). Same rules as those: a plain
    ``def`` whose awaitable is already done when the message is queued with
    room to spare; raises at once for a message that cannot be encoded.
    """

    def send_message(self, to: Pid | str, message: Any, sender: Pid | None) -> Awaitable[None]:
        """Send ``message`` to ``to``, a pid of that node or a name registered there.

        A pid of an earlier incarnation of the node is dead: the message is
        dropped. ``sender`` is the sending process (for a name; ``None``:
        none, or not known).
        """


class RemoteRouter(Protocol):
    """Operations out: what the runtime asks of the distribution layer.

    The runtime calls these for a target on another node (decided in one
    place, ``AsyncIOBackend._router_for``; ``process.send`` and ``answer``
    first look the node up in :attr:`channels`, the fast path to a node
    that is connected); the distribution layer implements them. A failure
    comes back as a *reason* (``noconnection``, ``noproc``) that the
    runtime then acts on (fires the link, delivers the DOWN) with its
    own rules; the router never calls back into the runtime for that. Methods
    that are plain ``def`` are called from process clean-up (which cannot
    await) and only enqueue.
    """

    @property
    def channels(self) -> Mapping[str, RemoteChannel]:
        """The channels of the nodes connected now, by node name.

        A live view the router keeps up to date; the runtime reads it once
        per remote send (``process.send``'s fast path) and never writes it.
        """

    def send(self, to: Pid, message: Any) -> Awaitable[None]:
        """Send ``message`` to the remote pid ``to`` (dropped if it is dead).

        A plain ``def`` returning an awaitable, as the runtime's own ``send``:
        on a connection that is up and has room, the message is queued before
        it returns and the awaitable is already done (no coroutine per
        message). Raises at once, before any connection work, for a message
        that cannot be encoded. (Erlang's SEND carries no sender either.)
        """

    def send_registered(self, sender: Pid, name: str, node: str, message: Any) -> Awaitable[None]:
        """Send to the process registered as ``name`` on ``node`` (dropped if none).

        A plain ``def`` returning an awaitable, as :meth:`send`.
        """

    async def link(self, local: Pid, remote: Pid) -> Any:
        """Ask ``remote``'s node to add a link: ``None`` once asked, else the exit reason.

        ``noconnection`` when the node cannot be reached, ``noproc`` for a pid
        of an earlier incarnation of that node; a live node that finds no such
        process answers later with an ``EXIT`` carrying ``noproc``.
        """

    def unlink(self, local: Pid, remote: Pid) -> None:
        """Remove a link on the remote side (enqueue only: no connection, no link)."""

    def monitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> Awaitable[Any]:
        """Ask the remote node to monitor ``target``; await it for ``None``, or the
        reason of an immediate ``DOWN`` (``noconnection``, ``noproc``).

        A plain ``def`` returning an awaitable, as :meth:`send` (a remote
        ``gen_server.call`` starts with a monitor)."""

    def monitor_send(self, owner: Pid, target: Pid, ref: Ref, message: Any) -> Awaitable[Any]:
        """:meth:`monitor` then :meth:`send` to the same remote pid, as one operation.

        What every remote ``gen_server.call`` starts with; await it for
        ``None`` or the reason of an immediate ``DOWN`` (then the message
        was not sent). A router may send both in one frame.

        Raises:
            EncodeError: ``message`` cannot be sent (nothing was).
        """

    def demonitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        """Remove a monitor on the remote side (enqueue only)."""

    async def exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Deliver an ``exit/2`` signal to a remote process (dropped if unreachable)."""

    def link_exit(self, sender: Pid, target: Pid, reason: Any) -> None:
        """Tell remote ``target`` that its linked local process ``sender`` ended."""

    def monitor_down(
        self, target: Pid | tuple[str, str], owner: Pid, ref: Ref, reason: Any
    ) -> None:
        """Tell remote ``owner`` that the local process it monitored ended."""

    def is_alive(self, pid: Pid) -> bool:
        """Best local knowledge of a remote pid's liveness."""

    async def spawn(
        self,
        node: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SpawnOptions,
    ) -> Pid:
        """Start ``function`` (a ``module:qualname`` reference) on ``node`` (``spawn_opt``).

        With ``options.link`` / ``options.monitor`` the peer sets the relation
        up before the child runs, and the distribution layer records our half
        (``RuntimeEntry.adopt_link`` / ``adopt_monitor``) in the same step as
        the reply, so an immediate ``EXIT``/``DOWN`` is never lost.

        Raises:
            OtpError: with ``.reason``: ``noconnection`` (node unreachable), or
                the peer's reason for refusing (``NameAlreadyRegistered`` with
                the holder for a taken name).
        """


class SpawnOptions(msgspec.Struct, frozen=True):
    """How to spawn (Erlang's ``spawn_opt`` options), for a spawn on another node.

    Attributes:
        sender: the spawning process (the child's link or monitor partner).
        name: register the child under this name before it runs.
        trap_exits: the child starts trapping exits.
        link: link the child to ``sender`` atomically.
        monitor: the ref of a monitor ``sender`` holds on the child, or None.
    """

    sender: Pid
    name: str | None = None
    trap_exits: bool = False
    link: bool = False
    monitor: Ref | None = None


class RuntimeEntry(Protocol):
    """Signals in: what the runtime offers the distribution layer.

    The distribution layer gets this object from
    ``AsyncIOBackend.attach_router`` and calls only these methods when a
    peer's control message names one of our processes. None of them awaits
    and none raises for a dead target: each returns what the caller needs to
    answer the peer (``False`` / ``None`` mean noproc).
    """

    def deliver(self, to: Pid, message: Any) -> bool:
        """Deliver a message from another node; ``False`` if ``to`` is not alive."""

    def deliver_encoded(self, to: Pid, encoded: Any, decode: Callable[[Any], Any]) -> bool:
        """Deliver ``decode(encoded)``, decoding only when ``to`` is alive (else ``False``)."""

    def deliver_run(self, to: Pid | str, encoded: Any, decode: Callable[[Any], list[Any]]) -> int:
        """Deliver the messages ``decode(encoded)`` gives to a pid or registered name at once;
        how many (0: nobody there)."""

    def deliver_named_encoded(self, name: str, encoded: Any, decode: Callable[[Any], Any]) -> bool:
        """As ``deliver_encoded``, to a registered name (decoded only if someone holds it)."""

    def is_alive(self, pid: Pid) -> bool:
        """Whether the local ``pid`` is a live process (or an active alias)."""

    def link(self, local: Pid, remote: Pid) -> bool:
        """A peer linked ``remote`` to our ``local``; ``False`` means noproc."""

    def unlink(self, local: Pid, remote: Pid) -> None:
        """A peer removed the link between ``remote`` and our ``local``."""

    def link_exit(self, local: Pid, remote: Pid, reason: Any) -> None:
        """The remote process linked to our ``local`` ended with ``reason``."""

    def exit_signal(self, local: Pid, sender: Pid, reason: Any) -> None:
        """An ``exit/2`` signal from ``sender``, a process of another node."""

    def monitor(self, target: Pid | str, owner: Pid, ref: Ref) -> Pid | None:
        """A remote ``owner`` monitors our ``target``; its pid, or ``None`` (noproc)."""

    def demonitor(self, target: Pid | str, ref: Ref) -> None:
        """A remote owner removed its monitor ``ref`` on our ``target``."""

    def down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        """A remote process our ``owner`` monitored ended (its ``DOWN``)."""

    def monitored(self, owner: Pid, ref: Ref) -> Pid | tuple[str, str] | None:
        """What our ``owner``'s monitor ``ref`` watches; ``None``: no such monitor.

        Lets the distribution layer accept a ``DOWN`` only from the node the
        monitored process lives on.
        """

    def adopt_link(self, local: Pid, remote: Pid) -> None:
        """Our half of a link the peer already made (a remote ``spawn_link``)."""

    def adopt_monitor(self, owner: Pid, ref: Ref, target: Pid) -> None:
        """Our half of a monitor the peer already made (a remote ``spawn_monitor``)."""

    def node_lost(self, node: str, reason: Any) -> None:
        """The connection to ``node`` is gone: fire every link and monitor across it."""

    def spawn(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SpawnOptions,
    ) -> Pid:
        """Spawn for a peer; ``options.sender`` is the remote spawner.

        Raises:
            NameAlreadyRegistered: the name is taken (``.holder`` is its pid).
            RuntimeClosedError: the runtime is shutting down.
        """


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

        Returns ``(pid, ref)``, ``ref`` being the monitor's ref (``None``
        without ``monitor``). ``spawn``, ``spawn_link`` and ``spawn_monitor``
        are this with one option each; ``gen_server.start_link`` needs both.
        """

    @abstractmethod
    def is_local(self, where: Pid | Ref | str) -> bool:
        """Whether a pid, a ref or a node name belongs to this node.

        The one test behaviours use to tell local from remote (e.g. an
        exception reason cannot travel to another node, a string can).
        """

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
    def monitor(self, target: Pid | Name | tuple[str, str]) -> Awaitable[Ref]:
        """Monitor ``target``; a ``(DOWN, ref, pid, reason)`` message follows its end.

        Returns an awaitable of the ref: always ``await`` it (a plain ``def``,
        as :meth:`send`, so the common case costs no coroutine)."""

    @abstractmethod
    async def demonitor(self, ref: Ref, flush: bool = False) -> bool:
        """Remove a monitor; with ``flush`` also drop its DOWN message if queued."""

    @abstractmethod
    async def request(
        self,
        dest: Pid | tuple[str, str],
        message_tag: Any,
        payload: Any,
        timeout: float | None,
    ) -> tuple[bool, Any]:
        """Ask ``dest`` and wait: monitor it, send ``(message_tag, self, alias, ref,
        payload)`` with a new alias as the reply address, and wait for the
        answer (:meth:`answer`) or the monitor's ``DOWN``; both alias and
        monitor are gone on return. ``(True, value)`` or ``(False, reason)``;
        ``TimeoutError`` after ``timeout`` seconds. The mechanics of a call."""

    @abstractmethod
    def answer(self, from_: tuple[Pid, Pid, Ref], value: Any) -> Awaitable[None]:
        """Send ``value`` as the answer to the request ``from_``; await the result.

        ``(ref, value, MONITOR_ENDED)`` from the process the requester
        monitors, which releases its half of that monitor; ``(ref, value)``
        from any other."""

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
