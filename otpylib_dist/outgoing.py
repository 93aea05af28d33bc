"""The writing half of a connection: frames out, batching, fragments, backpressure.

Mixed into ``Connection`` (``connection.py``), which owns the transport
and the handshake; the state here (the output buffer, the encoder, the
outbox of large messages, the drain waiters) is set up by
:meth:`Outgoing._init_outgoing` and touched only by these methods and by
the connection's close and read paths.

House rules (the connection module's, for writes):

- Control messages queued during one loop step are appended to one buffer
  and written with one ``transport.write`` (coalescing). The first frame of
  a step is written at once (a reply does not wait a loop iteration).
- Consecutive messages of one shape to one target within a step join a run
  frame (``SendRun``); any other frame closes the run first, so order holds.
- A frame over 256 KiB goes in fragments (``protocol/fragments.py``); while
  one is going out, a frame of its sender waits behind it (``_aside``).
- A sender awaits ``drain`` only while the buffer is over the high-water
  mark, the transport has paused us, or its own large message is still
  mostly queued (the ``FlowControlMixin`` pattern).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final

from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid, Ref
from otpylib_dist.busy_wait import BusyWait
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_term
from otpylib_dist.protocol.control_encoder import ControlEncoder
from otpylib_dist.protocol.fragments import Outbox
from otpylib_dist.protocol.shapes import element_types
from otpylib_dist.protocol.tls_layer import TlsLayer

logger = logging.getLogger(__name__)

__all__ = ["HIGH_WATER", "Outgoing"]

#: Bytes queued before a sender must await ``drain``. 1 MiB keeps a fast
#: sender busy for several write calls while bounding memory per peer.
HIGH_WATER: Final = 1 << 20


class Outgoing:
    """Frames out for one connection (a mixin of ``Connection``).

    The connection's own state this reads is declared here for the type
    checker.
    """

    _busy: BusyWait
    _close_reason: Any
    _loop: asyncio.AbstractEventLoop
    peer_creation: int
    _tls: TlsLayer | None
    _tls_broken: bool
    _transport: asyncio.Transport | None

    def _init_outgoing(self) -> None:
        self._out = bytearray()
        self._encoder = ControlEncoder()
        #: Large messages going out in fragments (once both ends set Flags.FRAGMENTS).
        self._outbox = Outbox(self._encoder.encode_into)
        self._flush_handle: asyncio.Handle | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        #: The peer reads SendRun frames: bursts to one pid go as runs.
        self._runs = False
        #: Runs are formed now: the peer reads them and no large message is
        #: going out (then frames may have to wait behind it: see _aside).
        self._runs_now = False
        #: The open batch holds signals only (see send_control).
        self._signals_only = False
        #: The peer reads MonitorSend frames (Flags.MONITOR_SEND).
        self.monitor_sends = False
        self._bytes_out = 0
        self._messages_out = 0
        #: Held around every transport.write: the tick guard thread writes
        #: between frames only (see tick_guard.py).
        self._wlock = threading.RLock()
        #: What a send that need not wait returns: one done future, shared.
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._done.set_result(None)

    def send_message(self, to: Pid | str, term: Any, sender: Pid | None) -> Awaitable[None]:
        """Send ``term`` to the peer's pid or registered name ``to``; await for room.

        The remote send fast path (``RemoteChannel``, called straight from
        ``process.send``): the returned awaitable is already done unless the
        sender must wait for the buffer to drain (backpressure). A pid of an
        earlier incarnation of the peer is dead: the message is dropped.

        Raises:
            EncodeError: ``term`` cannot be sent (nothing is queued).
        """
        # Fast path: the next message of the run open for ``to`` (the same
        # target object and the same element types; a 4-tuple's, the usual
        # burst message, are computed inline), appended to the run here. It skips
        # send_run_into's frame and its open/close logic, and the checks of
        # send_term: a run is open only while this step's batch is open on a
        # live connection with runs allowed (everything that ends one of
        # those closes the run first, and a closed run has no types), and a
        # run to a pid was opened after its incarnation was checked. Anything
        # else, including an item that fails or fills the run, takes the
        # whole path below (the item is undone first).
        encoder = self._encoder
        if encoder.run_to is to and type(term) is tuple:
            if len(term) == 4:  # shapes.element_types, inlined for the usual size
                a, b, c, d = term
                types: tuple[type, ...] = (type(a), type(b), type(c), type(d))
            else:
                types = element_types(term)
            if types == encoder.run_types:
                out = self._out
                mark = encoder.run_mark
                try:
                    encoder.encode_raw_into(term, out, -1)
                except BaseException:
                    del out[mark:]  # the whole path raises or sends it as it should
                else:
                    end = len(out)
                    if end <= encoder.run_end:
                        encoder.run_mark = end
                        encoder.run_count += 1
                        if self._paused or end > HIGH_WATER:
                            return self.drain()
                        return self._done
                    del out[mark:]  # it fills the run: the whole path closes it
        if isinstance(to, str):
            must_drain = self.reg_send_term(sender, to, term)
        elif to.creation == self.peer_creation:
            must_drain = self.send_term(to, term)
        else:
            encode_term(term)  # dropped, but an unencodable message still raises
            return self._done
        return self.drain() if must_drain else self._done

    def send_control(self, msg: Any) -> None:
        """Queue one control message; it leaves with this loop step's batch.

        Signals (link, monitor, ...) are not written at once: they are
        usually followed by a message in the same step (a gen_server call is
        a monitor then a send), and that message takes them along in its own
        write, at once (:meth:`_queued`); signals alone leave at the end of
        the step.
        """
        if self._transport is None or self._close_reason is not None:
            return
        if self._outbox.streams:
            # Slow path while a large message goes out: the signal may have to
            # wait behind its sender's (see _aside).
            self._aside(_signal_sender(msg), False, self._encoder.encode_into, msg)
        else:
            self._encoder.encode_into(msg, self._out)
            if self._encoder.big >= 0:
                self._fragment(self._out, _signal_sender(msg))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
            # The batch holds signals only: the next message goes as a plain
            # frame (no run) and takes them along now (see _queued).
            self._signals_only = True
            self._runs_now = False

    def send_term(self, to: Pid, term: Any) -> bool:
        """Queue a message to the remote ``to``, encoded in one pass (the send fast path).

        Returns whether the sender must ``await drain()`` before queueing more.

        Raises:
            EncodeError: ``term`` cannot be sent (nothing is queued).
        """
        # While this loop step's batch is open (the first message of a step
        # left at once), consecutive messages of one shape to one pid join a
        # run frame: one header, one target and one typed decode for all of
        # them. Any other frame closes the run first, so order holds. A
        # batch is open only on a live connection (close flushes it, and
        # connection_lost forgets it), so this path skips the liveness check.
        # No runs while a large message goes out (_runs_now is off: see _aside).
        if self._flush_handle is not None and self._runs_now:
            queued = self._encoder.send_run_into(to, term, self._out)
            if queued > 0:  # the buffer's length (the encoder counts run messages)
                return self._run_queued(queued)
            if queued:  # a large message, marked to go in fragments
                return self._fragment(self._out, _sender())
        if self._transport is None or self._close_reason is not None:
            return False
        if self._outbox.streams:
            # Slow path while a large message goes out (see _aside). The
            # encoder method and its arguments are passed, not a lambda: a
            # closure here would make this function's arguments cells, paid
            # at every call (~1,000 instructions per message).
            return self._aside(_sender(), True, self._encoder.send_into, to, term)
        self._encoder.send_into(to, term, self._out)
        if self._encoder.big >= 0:
            self._messages_out += 1
            return self._fragment(self._out, _sender())
        return self._queued()

    def reg_send_term(self, sender: Pid | None, name: str, term: Any) -> bool:
        """Queue a message to ``name`` on the peer, encoded in one pass; as :meth:`send_term`."""
        # As send_term: a burst to one name joins a run (the name travels once).
        if self._flush_handle is not None and self._runs_now:
            queued = self._encoder.send_run_into(name, term, self._out)
            if queued > 0:  # the buffer's length (the encoder counts run messages)
                return self._run_queued(queued)
            if queued:  # a large message, marked to go in fragments
                return self._fragment(self._out, _key(sender))
        if self._transport is None or self._close_reason is not None:
            return False
        if self._outbox.streams:
            return self._aside(_key(sender), True, self._encoder.reg_send_into, sender, name, term)
        self._encoder.reg_send_into(sender, name, term, self._out)
        if self._encoder.big >= 0:
            self._messages_out += 1
            return self._fragment(self._out, _key(sender))
        return self._queued()

    def monitor_send_term(self, owner: Pid, target: Pid, ref: Ref, term: Any) -> bool:
        """Queue ``MonitorSend``: ``owner`` monitors ``target``, then ``term`` goes to it.

        The peer must have said it reads them (``monitor_sends``). Returns
        must_drain, as :meth:`send_term`.

        Raises:
            EncodeError: ``term`` cannot be sent (nothing is queued).
        """
        if self._transport is None or self._close_reason is not None:
            return False
        if self._outbox.streams:
            encode = self._encoder.monitor_send_into
            return self._aside(_key(owner), True, encode, owner, target, ref, term)
        self._encoder.monitor_send_into(owner, target, ref, term, self._out)
        if self._encoder.big >= 0:
            self._messages_out += 1
            return self._fragment(self._out, _key(owner))
        return self._queued()

    def _run_queued(self, length: int) -> bool:
        """A message joined a run and ``out`` is ``length`` long; return must_drain.

        A run that filled up (``RUN_BYTES``) is closed: it is written now,
        so the peer decodes it while the burst goes on. Without this a
        burst would reach the wire only at the high-water mark (1 MiB, some
        30,000 small messages) and the peer would sit idle meanwhile.
        """
        if self._encoder.run_types is None:
            self._write_out()
            return self._paused
        return self._paused or length > HIGH_WATER

    def _aside(self, key: object, message: bool, encode: Callable[..., object], *args: Any) -> bool:
        """Queue a frame (a message, or a signal) while large messages go out; must_drain.

        ``encode(*args, out)`` appends the frame (an encoder ``*_into``
        method). A frame of a sender (``key``) whose large message is still
        going out waits behind it, so the peer sees that sender's frames in
        order; any other sender's frame goes at once, between the fragments
        (no runs are formed meanwhile: the rare path stays simple).
        """
        held = self._outbox.held_for(key)
        self._encoder.close_run(self._out)
        out = self._out if held is None else held
        encode(*args, out)
        if message:
            self._messages_out += 1
        if self._encoder.big >= 0:
            return self._fragment(out, key)
        if held is not None:
            return self._outbox.pending > HIGH_WATER
        if self._flush_handle is None:
            self._write_first()
        return self._paused or len(self._out) > HIGH_WATER

    def _fragment(self, out: bytearray, key: object) -> bool:
        """The frame just encoded into ``out`` is large: send it in fragments; must_drain.

        The sender is told to drain: it waits until most of its message is
        out (bounded memory for a loop of large sends), while other senders'
        frames keep going.
        """
        body, before = self._encoder.take_big(out)
        # ``out`` now backs the message's body: the frames before it move
        # to a fresh buffer, which takes its place.
        if out is self._out:
            self._out = before
        else:
            self._outbox.replace_held(out, before)
        self._outbox.add(key, body)
        self._runs_now = False  # until the outbox is empty (see _flush)
        if self._flush_handle is None:
            self._write_first()
        return True

    def _queued(self) -> bool:
        """A message went out as a frame of its own: write or batch it; return must_drain.

        The first message of a loop step leaves at once (:meth:`_write_first`).
        """
        self._messages_out += 1
        if self._flush_handle is None:
            self._write_first()
        elif self._signals_only:
            # Only signals were queued this step (a call's monitor): this
            # message leaves with them now instead of at the end of the step
            # (one loop pass per hop); the batch stays open for the rest.
            self._end_signals_only()
            self._write_out()
        return self._paused or len(self._out) > HIGH_WATER

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what we queued.

        A sender whose large message is going out waits until most of what
        it queued is written (other senders do not wait for it).
        """
        if len(self._out) > HIGH_WATER:
            self._flush()
        outbox = self._outbox
        if outbox.streams:
            key = _sender()
            while outbox.holds(key) and outbox.pending > HIGH_WATER and self._transport is not None:
                await self._wait_for_room()
        if not self._paused or self._transport is None:
            return
        await self._wait_for_room()

    def _wait_for_room(self) -> asyncio.Future[None]:
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        return waiter

    def _write_first(self) -> None:
        """Write what is queued now and open a batch for the rest of this loop step.

        The first message of a loop step leaves at once (latency: a reply
        does not wait for another loop iteration); messages queued after it
        in the same step are coalesced into one write by :meth:`_flush`.
        """
        self._flush()
        self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._signals_only:
            self._end_signals_only()
        self._write_out()

    def _end_signals_only(self) -> None:
        self._signals_only = False
        self._runs_now = self._runs and not self._outbox.streams

    def _write_out(self) -> None:
        """Write everything queued (and the fragments the window allows) in one write."""
        self._encoder.close_run(self._out)
        # Fragments go after the small frames queued this step, as many as
        # the window allows; the rest leave as the peer acknowledges.
        if self._outbox.streams and not self._paused and self._outbox.pump(self._out):
            if not self._outbox.streams:
                self._runs_now = self._runs  # the last large message is out: runs again
            if self._drain_waiters:
                self._wake_drainers()
        if self._out and self._transport is not None:
            self._write_raw(bytes(self._out))
            self._out.clear()
            self._busy.poke()

    def _write_raw(self, data: bytes) -> None:
        """Write protocol bytes (encrypted first when the connection uses TLS)."""
        if self._transport is not None and data and not self._tls_broken:
            self._bytes_out += len(data)
            if self._tls is not None:
                self._tls.send(data)
                data = self._tls.data_to_send()
            with self._wlock:
                self._transport.write(data)

    def _write_wire(self, data: bytes) -> None:
        """Write bytes as they are (TLS records)."""
        if self._transport is not None and data:
            with self._wlock:
                self._transport.write(data)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()
        if self._outbox.streams and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)


#: The key of frames sent from outside any process (``main``, another
#: thread's callbacks): the runtime speaks for them as its own pid (id 0),
#: so messages by pid, by name and exit signals from there share one key.
OUTSIDE: Final = "outside"
#: The key of the node's own frames (spawn replies without a child, rpc,
#: peers, a ``noproc`` DOWN for a name): they wait for no process.
NODE: Final = "node"


_FROM: Final = (control.Link, control.Unlink, control.Exit, control.Exit2)
_OWNER: Final = (control.Monitor, control.Demonitor, control.MonitorSend)


def _sender() -> object:
    """Whose frame this is: the pid of the process running now, or :data:`OUTSIDE`."""
    proc = current_process.get()
    return proc.pid if proc is not None else OUTSIDE


def _key(pid: Pid | None) -> object:
    """A sender pid as a key: the runtime's own pid (id 0) or none is :data:`OUTSIDE`."""
    return pid if pid is not None and pid.id != 0 else OUTSIDE


def _signal_sender(msg: Any) -> object:
    """The key of the process a control message speaks for (``NODE``: the node itself).

    Each signal names its sender; a DOWN names the process that ended (the
    router sends its pid even for a monitor by name), so it follows that
    process's large message; a spawn reply speaks for the new process, so
    it goes before that process's own frames (its EXIT, if it died at once).
    Only called while a large message goes out (cost does not matter).
    """
    kind = type(msg)
    if kind in _FROM:
        return _key(msg.from_)
    if kind in _OWNER:
        return _key(msg.owner)
    if kind is control.MonitorExit:
        return _key(msg.target) if type(msg.target) is Pid else NODE
    if kind is control.SpawnRequest:
        return _key(msg.sender)
    if kind is control.SpawnReply and msg.ok:
        child = decode_term(msg.result)
        return child if type(child) is Pid else NODE
    return NODE
