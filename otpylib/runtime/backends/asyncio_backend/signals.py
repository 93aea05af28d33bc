"""Links, monitors and exit signals: the part of the runtime that decides who dies.

Kept apart from ``backend.py`` (processes, mailboxes, registry) because it
is one engine with one set of rules, Erlang's:

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

Termination (``_terminate``) runs synchronously, with no ``await``, so no
other process can observe a half-dead process: the pid leaves the process
table and the registry, each linked process gets a link exit signal, and
each monitor owner gets its ``(DOWN, ref, pid, reason)``.

Pids of other nodes: the one question "does this pid live elsewhere, and
who carries the operation there?" is answered by ``_router_for``; the
router answers with a failure reason (``noconnection``, ``noproc``) and the
rules here act on it as on any local failure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILL,
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    atom,
    normalize_reason,
)
from otpylib.runtime.backends.asyncio_backend.deadlines import Deadlines
from otpylib.runtime.backends.asyncio_backend.process import Process
from otpylib.runtime.backends.base import MONITOR_ENDED, Name, RemoteChannel, RemoteRouter
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, Ref, exit_kind
from otpylib.runtime.errors import UnknownNameError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

logger = logging.getLogger(__name__)

__all__ = ["MISSING", "SignalEngine", "check_pid", "wake"]

#: Exit reasons that are not crashes: a process ending with one of these is
#: not logged (as Erlang's error logger stays quiet for normal and shutdown).
QUIET_REASONS = (NORMAL, SHUTDOWN)

#: "No such entry" in the monitor tables (``None`` is a valid monitor item).
MISSING: Any = atom.ensure("$otpylib_missing")


def check_pid(pid: Any, what: str) -> None:
    """Refuse a target of ``exit``/``link``/``unlink`` that is not a pid, with advice."""
    if type(pid) is not Pid:
        raise TypeError(
            f"{what}() takes a Pid, got {type(pid).__name__}: {pid!r}; "
            "for a registered name, look the pid up first with whereis(name)"
        )


class SignalEngine:
    """Links, monitors, exit signals and termination, for ``AsyncIOBackend``.

    A mixin: the state it works on (process table, registry, counters,
    router) belongs to the backend and is declared here only for the type
    checker.
    """

    _node_name: str
    _router: RemoteRouter | None
    _channels: Mapping[str, RemoteChannel]
    _processes: dict[Pid, Process]
    _registry: dict[str, Pid]
    _aliases: dict[Pid, Process]
    _messages: int
    _links: int
    _monitors: int
    _exits: dict[str, int]
    _caller: Callable[[str], Process]
    _sender_pid: Callable[[], Pid]
    _check_name: Callable[[Any], str]
    _loop: asyncio.AbstractEventLoop | None
    _pid_counter: Iterator[int]
    _ref_counter: Iterator[int]
    _deadlines: Deadlines
    _creation: int
    send: Callable[[Any, Any], Awaitable[None]]
    make_ref: Callable[[], Ref]

    def _router_for(self, node: str) -> RemoteRouter | None:
        """The router that carries operations to ``node``; ``None`` when ``node`` is ours
        or this runtime is not distributed (then a pid there is dead: noproc).

        The one place that decides local versus remote.
        """
        if node == self._node_name:
            return None
        return self._router

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
        check_pid(pid, "link")
        proc = self._caller("link")
        if pid == proc.pid:
            return
        other = self._processes.get(pid)
        if other is not None:
            self._add_link(proc, other)
            return
        router = self._router_for(pid.node)
        if router is None:
            self._exit_signal(proc, pid, NOPROC, link=True)
            await asyncio.sleep(0)
            return
        if proc.links is None:
            proc.links = set()
        if pid in proc.links:
            return
        proc.links.add(pid)
        self._links += 1
        failure = await router.link(proc.pid, pid)
        if failure is not None:
            # As if the remote end had died at once: the link fires with the reason.
            self._link_exit(proc, pid, failure)

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
        check_pid(pid, "unlink")
        proc = self._caller("unlink")
        if proc.links is None or pid not in proc.links:
            return
        proc.links.discard(pid)
        self._links -= 1
        other = self._processes.get(pid)
        if other is not None:
            if other.links is not None:
                other.links.discard(proc.pid)
        else:
            router = self._router_for(pid.node)
            if router is not None:
                router.unlink(proc.pid, pid)

    # ------------------------------------------------------------ monitors

    def monitor(self, target: Pid | Name | tuple[str, str]) -> Awaitable[Ref]:
        """Monitor ``target`` (``monitor(process, T)``); await it for the monitor's ref.

        When the target ends (or is already dead, or the name is not
        registered), the caller gets ``(DOWN, ref, pid_or_name, reason)``;
        ``noproc`` for a target that did not exist. Monitoring is one-way and
        stackable: each call makes a new, independent monitor.

        A plain ``def`` returning an awaitable, as ``send``: for a local
        target, and for a remote one on an up connection (every remote
        ``gen_server.call`` starts here), the monitor is in place when it
        returns and the awaitable is already done, with no coroutine.
        """
        return self._monitor_for(self._caller("monitor"), target)

    def _monitor_for(self, proc: Process, target: Pid | Name | tuple[str, str]) -> Awaitable[Ref]:
        """:meth:`monitor` for the calling process ``proc``."""
        ref = self.make_ref()
        if type(target) is Pid:
            other = self._processes.get(target)
            if other is not None:
                self._add_monitor(proc, other, ref, target)
                return self._done_with(ref)
            router = self._router_for(target.node)
            if router is None:
                self._messages += 1
                proc.deliver((DOWN, ref, target, NOPROC))
                return self._done_with(ref)
            return self._monitor_remote(router, proc, target, ref)
        if isinstance(target, tuple):
            name, node = target
            if node != self._node_name:
                router = self._router_for(node)
                if router is None:
                    self._messages += 1
                    proc.deliver((DOWN, ref, target, NOCONNECTION))
                    return self._done_with(ref)
                return self._monitor_remote(router, proc, (name, node), ref)
            target = name
        name = self._check_name(target)
        pid = self._registry.get(name)
        other = self._processes.get(pid) if pid is not None else None
        if other is None:
            self._messages += 1
            proc.deliver((DOWN, ref, name, NOPROC))
        else:
            self._add_monitor(proc, other, ref, other.pid)
        return self._done_with(ref)

    def _done_with(self, ref: Ref) -> Awaitable[Ref]:
        """An already-done awaitable whose result is ``ref``."""
        loop = self._loop
        assert loop is not None  # a process is calling: the runtime is initialized
        done: asyncio.Future[Ref] = loop.create_future()
        done.set_result(ref)
        return done

    def _monitor_remote(
        self, router: RemoteRouter, proc: Process, target: Pid | tuple[str, str], ref: Ref
    ) -> Awaitable[Ref]:
        """Monitor a target on another node; a failure reason becomes an immediate DOWN."""
        self._own_monitor(proc, ref, target)
        asked = router.monitor(proc.pid, target, ref)
        if isinstance(asked, asyncio.Future) and asked.done():
            # The router's fast path (an up connection): the Monitor is
            # queued and its answer known, so no coroutine is needed.
            failure = asked.result()
            if failure is not None:
                self._down(proc.pid, ref, failure)
            return self._done_with(ref)
        return self._monitor_wait(asked, proc, ref)

    async def _monitor_wait(self, asked: Awaitable[Any], proc: Process, ref: Ref) -> Ref:
        """The rest of :meth:`_monitor_remote` when the router must connect first."""
        failure = await asked
        if failure is not None:
            self._down(proc.pid, ref, failure)
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
        return self._demonitor_for(self._caller("demonitor"), ref, flush)

    def _demonitor_for(self, proc: Process, ref: Ref, flush: bool) -> bool:
        """:meth:`demonitor` for the calling process ``proc`` (no awaits)."""
        item = proc.monitors.pop(ref, MISSING) if proc.monitors else MISSING
        active = item is not MISSING
        if active:
            self._monitors -= 1
            self._drop_monitor(proc.pid, ref, item)
        if flush:
            self._flush_down(proc, ref)
        return active

    # ------------------------------------------------------------ requests

    async def request(
        self,
        dest: Pid | tuple[str, str],
        message_tag: Any,
        payload: Any,
        timeout: float | None,
    ) -> tuple[bool, Any]:
        """Ask ``dest`` and wait for its answer: the mechanics of a call.

        Monitors ``dest``, sends it ``(message_tag, self, alias, ref,
        payload)`` where ``alias`` is a new alias of the caller and ``ref``
        the monitor's ref (the receiver answers ``from_ = (self, alias,
        ref)``), then waits for the answer ``(ref, value)`` or
        ``(ref, value, MONITOR_ENDED)`` (see :meth:`answer`), or for the
        monitor's ``DOWN``. When it returns, the alias is inactive (a late
        answer is dropped) and the monitor is gone, with no ``DOWN`` of it
        left in the mailbox. Messages that are neither stay queued in order.

        Returns ``(True, value)`` for an answer, ``(False, reason)`` for the
        ``DOWN`` (``noproc``, ``noconnection``, the exit reason).

        Raises:
            TimeoutError: no answer within ``timeout`` seconds (``None``: no
                limit), counted from the call (the monitor and the send may
                wait for a connection).

        One coroutine for what ``monitor``, ``alias``, ``send``, a selective
        ``receive`` and ``demonitor`` do, each inlined (a runtime method per
        step cost ~1,000-1,500 instructions each, on every call of every
        client; measured with callgrind). Keep it in step with them.
        """
        proc = self._caller("request")
        me = proc.pid
        loop = self._loop
        assert loop is not None
        deadline = None if timeout is None else loop.time() + timeout
        router = self._router
        remote: Pid | None = None
        if type(dest) is Pid and router is not None and dest.node != self._node_name:
            remote = dest
            # A pid of another node (the remote call): monitor() inlined, its
            # checks and frames skipped (the pid is not ours, there is a
            # router); the monitor itself goes with the message, below.
            ref = Ref(self._node_name, next(self._ref_counter), self._creation)  # make_ref
            monitors = proc.monitors  # _own_monitor:
            if monitors is None:
                monitors = proc.monitors = {}
            monitors[ref] = dest
            self._monitors += 1
        else:
            ref = await self._monitor_for(proc, dest)
        # alias() inlined, without the process's own alias set: that set lets
        # _terminate drop the aliases a process leaves behind, and this one is
        # removed in the ``finally`` below however the request ends.
        aliases = self._aliases
        alias = Pid(self._node_name, next(self._pid_counter), self._creation)
        aliases[alias] = proc
        timed = False
        try:
            message = (message_tag, me, alias, ref, payload)  # flat: one cached shape
            try:  # not contextlib.suppress: three Python calls per call
                # To the router straight for a remote pid (what send decides).
                if remote is None or router is None:
                    await self.send(dest, message)
                else:
                    # The monitor and the message in one operation (one frame
                    # when the peer reads MonitorSend), the router's answer
                    # awaited directly (already done on an up connection).
                    failure = await router.monitor_send(me, remote, ref, message)
                    if failure is not None:  # noconnection, noproc: its DOWN
                        self._down(me, ref, failure)
            except UnknownNameError:  # unreachable (name, node): the DOWN says why
                pass
            except BaseException:  # unsendable payload (EncodeError): no monitor left behind
                self._demonitor_for(proc, ref, True)
                raise
            # A selective receive of the answer or the DOWN, as _receive with
            # the match written out (no closure and no call per message).
            scanned = 0
            msg: Any = None
            while True:
                mailbox = proc.mailbox
                if mailbox:
                    n = len(mailbox)
                    while scanned < n:
                        item = mailbox[scanned]
                        if type(item) is tuple:
                            size = len(item)
                            if size == 2 or size == 3:  # an answer?
                                found = item[0] == ref
                            else:  # the DOWN?
                                found = size == 4 and item[0] is DOWN and item[1] == ref
                            if found:
                                del mailbox[scanned]
                                msg = item
                                break
                        scanned += 1
                    if msg is not None:
                        break
                if deadline is not None:
                    if deadline <= loop.time():
                        self._demonitor_for(proc, ref, True)
                        raise TimeoutError(f"no answer within {timeout} s")
                    if not timed:  # one shared timer wakes us (deadlines.py)
                        self._deadlines.add(proc, deadline)
                        timed = True
                waiter = loop.create_future()
                proc.waiter = waiter
                try:
                    await waiter
                finally:
                    proc.waiter = None
        finally:
            # From here on an answer, if it still comes, is dropped.
            aliases.pop(alias, None)
            if timed:
                self._deadlines.remove(proc)
        size = len(msg)
        if size == 4:  # the DOWN: the monitor is gone already
            return (False, msg[3])
        if size == 3:
            # (ref, value, MONITOR_ENDED): the target released its half, so
            # ours goes without the DEMONITOR signal (see answer()).
            monitors = proc.monitors
            if monitors and monitors.pop(ref, MISSING) is not MISSING:
                self._monitors -= 1
            else:
                # Gone already (a lost connection): its DOWN may be queued.
                self._flush_down(proc, ref)
        else:
            self._demonitor_for(proc, ref, True)
        return (True, msg[1])

    def answer(self, from_: tuple[Pid, Pid, Ref], value: Any) -> Awaitable[None]:
        """Send ``value`` as the answer to the :meth:`request` ``from_``; await it.

        From the process the requester monitors (a server answering its own
        call), the answer also ends that monitor: its half here is released
        and the answer says so, ``(ref, value, MONITOR_ENDED)``, so the
        requester ends its own half with no ``DEMONITOR`` signal. From any
        other sender it is ``(ref, value)`` and the requester demonitors.
        The half is released only once the answer is queued: an answer that
        cannot be sent (``EncodeError``) leaves the monitor, so the
        requester still gets the ``DOWN`` when the sender crashes on it.

        Differs from Erlang: OTP's caller always demonitors after the
        answer, one ``DEMONITOR`` signal per remote call (its encoding, and
        its decoding and dispatch on the server's node, ~29k instructions
        of a ~266k-instruction remote call, measured with callgrind). What
        the requester can observe is the same: the answer, and never a
        ``DOWN`` after it.
        """
        owner, reply_to, ref = from_
        proc = current_process.get()
        monitored_by = None if proc is None or proc.runtime is not self else proc.monitored_by
        ends = monitored_by is not None and monitored_by.get(ref) == owner
        answer = (ref, value, MONITOR_ENDED) if ends else (ref, value)
        # To a node whose connection is up: straight to its channel, as
        # process.send does (what self.send would decide, two frames less).
        channel = self._channels.get(reply_to.node) if type(reply_to) is Pid else None
        if channel is not None:
            sent = channel.send_message(reply_to, answer, None)
        else:
            sent = self.send(reply_to, answer)
        if ends:
            assert monitored_by is not None
            del monitored_by[ref]  # after the answer is queued (see above)
        return sent

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
        check_pid(pid, "exit")
        reason = normalize_reason(reason)
        sender = self._sender_pid()
        target = self._processes.get(pid)
        if target is not None:
            self._exit_signal(target, sender, reason, link=False)
            if target.pid == sender:
                # Let the cancellation land here, in the caller, right away.
                await asyncio.sleep(0)
            return
        router = self._router_for(pid.node)
        if router is not None:
            await router.exit(sender, pid, reason)

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
        if reason not in QUIET_REASONS and logger.isEnabledFor(logging.DEBUG):
            logger.debug("process %r exited: %r", pid, reason)
        if proc.links:
            for other_pid in proc.links:
                other = self._processes.get(other_pid)
                if other is not None:
                    self._link_exit(other, pid, reason)
                    continue
                self._links -= 1
                router = self._router_for(other_pid.node)
                if router is not None:
                    router.link_exit(pid, other_pid, reason)
            proc.links = None
        if proc.monitored_by:
            for ref, owner_pid in proc.monitored_by.items():
                owner = self._processes.get(owner_pid)
                if owner is not None:
                    item = owner.monitors.pop(ref, MISSING) if owner.monitors else MISSING
                    if item is not MISSING:
                        self._monitors -= 1
                        self._messages += 1
                        owner.deliver((DOWN, ref, item, reason))
                else:
                    router = self._router_for(owner_pid.node)
                    if router is not None:
                        router.monitor_down(pid, owner_pid, ref, reason)
            proc.monitored_by = None
        if proc.monitors:
            for ref, item in proc.monitors.items():
                self._monitors -= 1
                self._drop_monitor(pid, ref, item)
            proc.monitors = None

    def _drop_monitor(self, owner: Pid, ref: Ref, item: Pid | tuple[str, str]) -> None:
        """Remove the target's half of the monitor ``ref`` that ``owner`` held on ``item``."""
        node = item.node if isinstance(item, Pid) else item[1]
        router = self._router_for(node)
        if router is not None:
            router.demonitor(owner, item, ref)
            return
        target = self._processes.get(item) if isinstance(item, Pid) else None
        if target is not None and target.monitored_by is not None:
            target.monitored_by.pop(ref, None)

    def _down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        """Deliver the DOWN of the monitor ``ref`` to ``owner``, if it still holds it."""
        proc = self._processes.get(owner)
        if proc is None or not proc.monitors:
            return
        item = proc.monitors.pop(ref, MISSING)
        if item is not MISSING:
            self._monitors -= 1
            self._messages += 1
            proc.deliver((DOWN, ref, item, reason))

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
                    self._down(proc.pid, ref, reason)
            if proc.links:
                for other in [p for p in proc.links if p.node == node]:
                    self._link_exit(proc, other, reason)


def wake(waiter: asyncio.Future[None]) -> None:
    """A receive's deadline passed: wake the waiting owner (it then sees the time)."""
    if not waiter.done():
        waiter.set_result(None)
