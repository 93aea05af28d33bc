"""gen_servers and start functions the remote-behaviour tests use on several nodes.

They live in a module of their own so another node can start them by
reference (``"behaviour_procs:Counter"``), as ``gen_server.start(..., node=)``
does; every argument they take is sendable (pids, numbers, strings).
"""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import gen_server, process
from otpylib.gen_server import NOREPLY, REPLY, STOP
from otpylib.runtime.atoms import NOCONNECTION, atom
from otpylib.runtime.data import Pid
from otpylib_dist import DistributedBackend

GO = atom.ensure("go")


class Counter(gen_server.GenServer):
    """A number, with requests that exercise every remote failure.

    With an ``observer`` pid it reports ``("started", pid, node)``,
    ``("waiting", pid)`` and ``("terminate", pid, reason)`` there, so tests
    wait for those events instead of sleeping.
    """

    async def init(self, start: Any = 0, observer: Pid | None = None) -> Any:
        self.observer = observer
        self.pending: Any = None
        if start == "raise":
            raise ValueError("bad start value")
        if start == "stop":
            return (STOP, "refused")
        await self._report("started", process.self(), process.runtime().node_name)
        return start

    async def _report(self, *what: Any) -> None:
        if self.observer is not None:
            await process.send(self.observer, what)

    async def handle_call(self, request: Any, from_: Any, n: Any) -> Any:
        if request == "get":
            return (REPLY, n, n)
        if request == "incr":
            return (REPLY, n + 1, n + 1)
        if request == "caller":
            return (REPLY, from_[0], n)
        if request == "node":
            return (REPLY, process.runtime().node_name, n)
        if request == "crash":
            raise ValueError("asked to crash")
        if request == "wait_for_go":
            await self._report("waiting", process.self())
            await process.receive(match=lambda m: m is GO)
            return (REPLY, "late", n)
        if request == "defer":
            self.pending = from_
            await self._report("deferred", process.self())
            return (NOREPLY, n)
        raise AssertionError(f"unexpected request {request!r}")

    async def handle_cast(self, request: Any, n: Any) -> Any:
        if request == "reset":
            return (NOREPLY, 0)
        if type(request) is tuple and request[0] == "hand_over":
            # Give the pending call to another process to answer, then die.
            await process.send(request[1], self.pending)
            return (STOP, "handed_over", n)
        raise AssertionError(f"unexpected cast {request!r}")

    async def handle_info(self, message: Any, n: Any) -> Any:
        await self._report("info", message)
        return (NOREPLY, n)

    async def terminate(self, reason: Any, n: Any) -> None:
        # An exception cannot be sent to another node: report its repr.
        sendable = repr(reason) if isinstance(reason, BaseException) else reason
        await self._report("terminate", process.self(), sendable)


async def answer_later() -> None:
    """Receive a ``from_``, wait for ``GO``, answer the call with ``"late"``, then say so.

    ``("answered",)`` goes to the caller after the answer, on the same
    connection, so when the caller has it, the answer has arrived (or was dropped).
    """
    from_ = await process.receive(match=lambda m: m is not GO)
    await process.receive(match=lambda m: m is GO)
    await gen_server.reply(from_, "late")
    await process.send(from_[0], ("answered",))


async def start_on_first_reachable(
    nodes: list[str], observer: Pid | None, name: str | None = None
) -> Pid:
    """A supervisor's start function: a linked ``Counter`` on the first node that answers.

    This is how a child fails over: when its node is lost, the supervisor
    calls this again and the child comes back on the next node in the list.
    """
    last: Exception | None = None
    for node in nodes:
        try:
            return await gen_server.start_link(Counter, 0, observer, name=name, node=node)
        except gen_server.StartError as exc:
            last = exc
    assert last is not None
    raise last


async def boom() -> None:
    """Raise at once, before the first await (the quickest possible remote crash)."""
    raise ValueError("boom")


async def start_when_reachable(
    node: str, observer: Pid | None, name: str | None = None, patience: float = 10.0
) -> Pid:
    """A supervisor's start function: a linked ``Counter`` on ``node``, once it answers.

    The other way to survive losing a node: wait (up to ``patience``
    seconds) for it to come back, then start the child there again. The
    supervisor is busy meanwhile, as an OTP supervisor is during a start.
    """
    rt = process.runtime()
    assert isinstance(rt, DistributedBackend)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not await rt.connect(node):
        if loop.time() > deadline:
            raise gen_server.StartError(NOCONNECTION, f"{node} did not come back")
        await asyncio.sleep(0.05)  # no event tells that a lost node is back: try again
    return await gen_server.start_link(Counter, 0, observer, name=name, node=node)
