"""``send``, ``receive`` and ``receive_batch`` as process code calls them.

``otpylib.process`` re-exports these three. They are the hottest lines of
the runtime (one call each per message), so they live next to the backend
whose tables they touch, and each is the only Python frame between the
caller and the mailbox: the calling process comes from the context variable,
then the common case is done inline rather than through the runtime's own
method (each extra frame cost ~1,100-1,500 instructions per message, ~15 %
of a local one-way message, measured with callgrind).

What they skip, and why that is safe, is said at each fast path. Anything
off the fast path goes to the runtime's method, so both spellings
(``process.send`` and ``runtime.send``) keep one set of semantics.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from otpylib.runtime.backends.base import Target
from otpylib.runtime.context import current_process
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NotInProcessError

logger = logging.getLogger(__name__)

__all__ = ["OUTSIDE", "receive", "receive_batch", "send"]

#: ``current_process.get``, bound once: CPython 3.11 does not cache the method
#: lookup on a ContextVar, so ``current_process.get()`` builds and frees a
#: bound method at every call (~380 instructions, twice per local message).
_current_process: Final = current_process.get

#: The message of the error every ``otpylib.process`` function raises outside a process.
OUTSIDE: Final = (
    "otpylib.process functions work only inside a process; from main, "
    "call the runtime object directly (e.g. 'await runtime.send(pid, msg)')"
)


def send(target: Target, message: Any) -> Awaitable[None]:
    """Send ``message`` to a pid, registered name or ``(name, node)``; await the result.

    A local send is done when this returns; see ``RuntimeBackend.send``.

    Raises:
        NotInProcessError: called from outside a process.
    """
    proc = _current_process()
    if proc is None:
        raise NotInProcessError(OUTSIDE)
    rt = proc.runtime
    # Fast paths. A live process of our runtime, by pid or by registered name
    # (a str), skips the frame of ``AsyncIOBackend.send`` and its alias,
    # ``(name, node)``, Atom-name and remote branches, which only matter when
    # these table lookups find no live process: then the runtime's send does
    # the whole job, so the outcome cannot differ. A pid or ``(name, node)``
    # of a node whose connection is up goes straight to that node's channel
    # (``RemoteRouter.channels``, which never holds our own node): what the
    # runtime's send and the router's would do, two frames less per message.
    # The lines below are ``Process.deliver`` inlined (plus the runtime's
    # counter); keep them in step with it and with ``AsyncIOBackend.send``.
    if type(target) is Pid:
        dest = rt._processes.get(target)
        if dest is None:
            channel = rt._channels.get(target.node)
            if channel is not None:
                return channel.send_message(target, message, None)
    elif type(target) is str:
        pid = rt._registry.get(target)
        dest = None if pid is None else rt._processes.get(pid)
    elif type(target) is tuple and len(target) == 2:
        name, node = target
        try:
            channel = rt._channels.get(node)
        except TypeError:  # an unhashable node: no target; the runtime's send says why
            channel = None
        if channel is not None and type(name) is str:
            return channel.send_message(name, message, proc.pid)
        dest = None
    else:
        dest = None
    if dest is not None:
        rt._messages += 1
        dest.received += 1
        mailbox = dest.mailbox
        if mailbox is None:
            dest.mailbox = deque((message,))
        else:
            mailbox.append(message)
        waiter = dest.waiter
        if waiter is not None:
            dest.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return rt._sent
    return rt.send(target, message)


async def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """Take the next (or the first matching) message, waiting for one if need be.

    With ``match``, take the first message for which ``match(msg)`` is true
    and leave the others queued in their order (selective receive).

    Raises:
        TimeoutError: (``asyncio.TimeoutError``) nothing (matching) arrived
            within ``timeout`` seconds; ``timeout=0`` polls.
        NotInProcessError: called from outside a process.
    """
    proc = _current_process()
    if proc is None:
        raise NotInProcessError(OUTSIDE)
    if match is not None or timeout is not None:
        return await proc.runtime._receive(proc, timeout, match)
    # Fast path, no match and no deadline: the oldest message. This
    # coroutine is the only frame (no runtime method, no inner coroutine):
    # with a message queued it returns without a trip through the event
    # loop. It skips the deadline and the scan of ``_receive``, which have
    # nothing to do here; the wait below is the same one-future wait.
    mailbox = proc.mailbox
    while not mailbox:
        waiter = proc.waiter = proc.runtime._new_future()
        try:
            await waiter
        finally:
            proc.waiter = None
        mailbox = proc.mailbox
    return mailbox.popleft()


async def receive_batch(max_messages: int | None = None, timeout: float | None = None) -> list[Any]:
    """Take every queued message (at most ``max_messages``), oldest first, in one call.

    Waits, as ``receive()`` does, until at least one message is queued, then
    returns it with all the others already there, in arrival order, without
    waiting for more. A process that handles each message the same way
    (a sink, a logger, a batching writer) then pays the cost of one call per
    wake-up instead of one per message::

        while True:
            for msg in await process.receive_batch():
                handle(msg)

    It is the same as calling ``receive()`` (no ``match``) until the mailbox
    is empty, so it composes with selective receive: messages it does not
    take stay queued for a later ``receive(match=...)``, and one it takes is
    gone as if received.

    Differs from Erlang: Erlang has no such primitive (a loop of
    ``receive ... after 0`` drains a mailbox there, at no extra cost per call).

    Args:
        max_messages: take at most this many (a positive int); ``None``: all.
        timeout: seconds to wait for the first message; ``0`` polls.

    Raises:
        TimeoutError: (``asyncio.TimeoutError``) nothing arrived in time.
        ValueError: ``max_messages`` is not a positive int.
        NotInProcessError: called from outside a process.
    """
    proc = _current_process()
    if proc is None:
        raise NotInProcessError(OUTSIDE)
    if max_messages is not None and (type(max_messages) is not int or max_messages < 1):
        raise ValueError(
            f"receive_batch(max_messages=...) takes a positive int or None, got {max_messages!r}"
        )
    mailbox = proc.mailbox
    if not mailbox:
        # Nothing queued: wait (with the deadline, if any) as receive does.
        first = await proc.runtime._receive(proc, timeout, None)
        mailbox = proc.mailbox
        batch = [first]
    else:
        batch = []
    assert mailbox is not None
    if max_messages is None or len(batch) + len(mailbox) <= max_messages:
        # One C-level copy and clear for the lot: no Python step per message.
        batch.extend(mailbox)
        mailbox.clear()
    else:
        popleft = mailbox.popleft
        for _ in range(max_messages - len(batch)):
            batch.append(popleft())
    return batch
