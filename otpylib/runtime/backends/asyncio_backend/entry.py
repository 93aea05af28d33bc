"""The runtime's entry points for the distribution layer (a ``RuntimeEntry``).

``AsyncIOBackend.attach_router`` returns one of these: the only handle the
distribution layer has on local processes. Each method is what one kind of
control message from a peer does here; none awaits, none raises for a dead
target, and each returns what the caller needs to answer the peer. They
reach into the backend's tables directly (same package): ``deliver`` runs
once per message received from another node.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from otpylib.runtime.backends.asyncio_backend.signals import MISSING
from otpylib.runtime.backends.base import SpawnOptions
from otpylib.runtime.data import Pid, Ref

if TYPE_CHECKING:
    from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend
    from otpylib.runtime.backends.asyncio_backend.process import Process

logger = logging.getLogger(__name__)

__all__ = ["Entry"]


class Entry:
    """Signals in, from other nodes, for one ``AsyncIOBackend`` (see ``RuntimeEntry``)."""

    __slots__ = ("_processes", "_rt")

    def __init__(self, rt: AsyncIOBackend) -> None:
        self._rt = rt
        self._processes = rt._processes

    def _live(self, pid: Pid) -> Process | None:
        proc = self._processes.get(pid)
        if proc is None and self._rt._aliases:
            proc = self._rt._alias_owner(pid)
        return proc

    def deliver(self, to: Pid, message: Any) -> bool:
        """Deliver a message from another node; ``False`` if ``to`` is not alive."""
        proc = self._live(to)
        if proc is None:
            return False
        self._rt._messages += 1
        proc.deliver(message)
        return True

    def deliver_encoded(self, to: Pid, encoded: Any, decode: Callable[[Any], Any]) -> bool:
        """Deliver ``decode(encoded)`` to ``to``, decoding only if ``to`` is alive.

        A message to a dead pid then costs no decoding (nor any atom the
        payload would create). Exceptions from ``decode`` propagate (the
        caller drops the message and logs why).
        """
        # _live inlined: this runs once per message received from a peer.
        proc = self._processes.get(to)
        if proc is None:
            # An alias (a call's reply address: once per remote call):
            # _alias_owner inlined, stale-alias clean-up left to it.
            proc = self._rt._aliases.get(to)
            if proc is None or proc.pid not in self._processes:
                return False
        message = decode(encoded)
        self._rt._messages += 1
        proc.deliver(message)
        return True

    def deliver_run(self, to: Pid | str, encoded: Any, decode: Callable[[Any], list[Any]]) -> int:
        """Deliver the messages ``decode(encoded)`` gives, in order, to ``to``; how many.

        The receiving end of a run (several messages to one pid, or to one
        registered name, in one frame): decoded only if ``to`` is alive,
        appended to the mailbox at once, and the owner woken once.
        Exceptions from ``decode`` propagate.
        """
        if isinstance(to, str):
            named = self._rt._registry.get(to)
            if named is None:
                return 0
            to = named
        proc = self._live(to)
        if proc is None:
            return 0
        messages = decode(encoded)
        n = len(messages)
        if not n:
            return 0
        self._rt._messages += n
        proc.received += n
        mailbox = proc.mailbox
        if mailbox is None:
            proc.mailbox = deque(messages)
        else:
            mailbox.extend(messages)
        waiter = proc.waiter
        if waiter is not None:
            proc.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return n

    def deliver_named_encoded(self, name: str, encoded: Any, decode: Callable[[Any], Any]) -> bool:
        """As :meth:`deliver_encoded`, to a registered name (``False``: nobody holds it)."""
        pid = self._rt._registry.get(name)
        return pid is not None and self.deliver_encoded(pid, encoded, decode)

    def is_alive(self, pid: Pid) -> bool:
        """Whether the local ``pid`` is a live process (or an active alias)."""
        proc = self._live(pid)
        return proc is not None and proc.kill_reason is None

    def link(self, local: Pid, remote: Pid) -> bool:
        """A peer linked ``remote`` to our ``local``; ``False`` means noproc."""
        proc = self._processes.get(local)
        if proc is None or proc.kill_reason is not None:
            return False
        self.adopt_link(local, remote)
        return True

    def adopt_link(self, local: Pid, remote: Pid) -> None:
        """Record our half of a link (asked by the peer, or made by a remote spawn_link)."""
        proc = self._processes.get(local)
        if proc is None:
            return
        if proc.links is None:
            proc.links = set()
        if remote not in proc.links:
            proc.links.add(remote)
            self._rt._links += 1

    def unlink(self, local: Pid, remote: Pid) -> None:
        """A peer removed the link between ``remote`` and our ``local``."""
        proc = self._processes.get(local)
        if proc is not None and proc.links is not None and remote in proc.links:
            proc.links.discard(remote)
            self._rt._links -= 1

    def link_exit(self, local: Pid, remote: Pid, reason: Any) -> None:
        """The remote process linked to our ``local`` ended with ``reason``."""
        proc = self._processes.get(local)
        if proc is not None:
            self._rt._link_exit(proc, remote, reason)

    def exit_signal(self, local: Pid, sender: Pid, reason: Any) -> None:
        """An ``exit/2`` signal from ``sender``, a process of another node."""
        proc = self._processes.get(local)
        if proc is not None:
            self._rt._exit_signal(proc, sender, reason, link=False)

    def _target(self, target: Pid | str) -> Process | None:
        pid = target if type(target) is Pid else self._rt._registry.get(target)  # type: ignore[arg-type]
        return self._processes.get(pid) if pid is not None else None

    def monitor(self, target: Pid | str, owner: Pid, ref: Ref) -> Pid | None:
        """A remote ``owner`` monitors our ``target``; its pid, or ``None`` (noproc)."""
        # _target inlined for a pid (every remote call to a pid starts here).
        proc = self._processes.get(target) if type(target) is Pid else self._target(target)
        if proc is None or proc.kill_reason is not None:
            return None
        if proc.monitored_by is None:
            proc.monitored_by = {}
        proc.monitored_by[ref] = owner
        return proc.pid

    def demonitor(self, target: Pid | str, ref: Ref) -> None:
        """A remote owner removed its monitor ``ref`` on our ``target``."""
        proc = self._target(target)
        if proc is not None and proc.monitored_by is not None:
            proc.monitored_by.pop(ref, None)

    def down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        """A remote process our ``owner`` monitored ended (its ``DOWN``)."""
        self._rt._down(owner, ref, reason)

    def adopt_monitor(self, owner: Pid, ref: Ref, target: Pid) -> None:
        """Our half of a monitor the peer already made (a remote ``spawn_monitor``)."""
        proc = self._processes.get(owner)
        if proc is not None:
            self._rt._own_monitor(proc, ref, target)

    def monitored(self, owner: Pid, ref: Ref) -> Pid | tuple[str, str] | None:
        """What our ``owner``'s monitor ``ref`` watches, or ``None`` if it holds no such monitor."""
        proc = self._processes.get(owner)
        monitors = proc.monitors if proc is not None else None
        if not monitors:
            return None
        item = monitors.get(ref, MISSING)
        return None if item is MISSING else item

    def node_lost(self, node: str, reason: Any) -> None:
        """The connection to ``node`` is gone: fire every link and monitor across it."""
        self._rt._node_lost(node, reason)

    def spawn(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SpawnOptions,
    ) -> Pid:
        """Spawn for a peer; the remote spawner's link and monitor are set before it runs."""
        proc = self._rt._spawn(fn, args, kwargs, options.name, options.trap_exits)
        if options.link:
            self.adopt_link(proc.pid, options.sender)
        if options.monitor is not None:
            self.monitor(proc.pid, options.sender, options.monitor)
        return proc.pid
