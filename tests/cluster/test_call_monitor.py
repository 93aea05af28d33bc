"""A call's monitor ends with the answer, on both nodes, without a DEMONITOR signal.

The server releases its half of the caller's monitor when it answers and
marks the answer; the caller then ends its own half locally (see
``otpylib._gen``). These tests check what that must keep: no monitor is left
on either side, an answer from a process that does not hold the monitor
still ends it (the caller demonitors), and an answer that cannot be sent
still gives the caller the server's exit reason instead of a hang.

Nodes share one event loop and talk over loopback TCP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from remote_helpers import ClusterFactory, mailbox_len, run_in

from otpylib import gen_server, process
from otpylib.gen_server import NOREPLY, REPLY, CallError
from otpylib.runtime.data import Pid
from otpylib_dist.protocol.errors import EncodeError

#: Generous deadline for anything that should happen at once.
WAIT = 10.0


class Answers(gen_server.GenServer):
    """Answers ``"get"`` itself, ``("via", pid)`` through ``pid``, ``"unsendable"``
    with a value no node can encode."""

    async def init(self, state: Any) -> Any:
        return state

    async def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        if request == "get":
            return (REPLY, state, state)
        if request == "unsendable":
            return (REPLY, object(), state)
        if type(request) is tuple and request[0] == "via":
            await process.send(request[1], from_)
            return (NOREPLY, state)
        raise AssertionError(f"unexpected request {request!r}")


async def relay() -> None:
    """Answer every ``from_`` it is given with ``"relayed"`` (gen_server.reply)."""
    while True:
        from_ = await process.receive()
        await gen_server.reply(from_, "relayed")


def monitors_of(node: Any, pid: Pid) -> tuple[tuple[Any, ...], tuple[Pid, ...]]:
    """``(monitors, monitored_by)`` of a live local process."""
    info = node.process_info(pid)
    assert info is not None
    return info.monitors, info.monitored_by


async def test_an_answered_remote_call_leaves_no_monitor_on_either_node(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Answers, 7, runtime=b)

    async def body() -> Any:
        value = await gen_server.call(server, "get", timeout=None)
        # Checked as soon as the call returns: the server's half was
        # released before the answer left, so no DEMONITOR is awaited.
        return value, monitors_of(a, process.self()), monitors_of(b, server), mailbox_len()

    value, mine, servers, left = await run_in(a, body)
    assert value == 7
    assert mine == ((), ())
    assert servers == ((), ())
    assert left == 0
    assert a.statistics().active_monitors == 0


async def test_an_answered_local_call_leaves_no_monitor(make_cluster: ClusterFactory) -> None:
    (a,) = await make_cluster(1)
    server = await gen_server.start(Answers, 3, runtime=a)

    async def body() -> Any:
        value = await gen_server.call(server, "get")
        return value, monitors_of(a, process.self()), monitors_of(a, server), mailbox_len()

    assert await run_in(a, body) == (3, ((), ()), ((), ()), 0)
    assert a.statistics().active_monitors == 0


async def test_an_answer_from_another_process_still_ends_the_monitor(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Answers, 1, runtime=b)
    relayer = await b.spawn(relay)

    async def body() -> Any:
        relayed = await gen_server.call(server, ("via", relayer))
        # That answer was unmarked, so the caller sent a DEMONITOR; the
        # next call's answer travels after it on the same connection.
        value = await gen_server.call(server, "get")
        return relayed, value, monitors_of(a, process.self()), mailbox_len()

    relayed, value, mine, left = await run_in(a, body)
    assert (relayed, value, mine, left) == ("relayed", 1, ((), ()), 0)
    assert monitors_of(b, server) == ((), ())


async def test_an_answer_that_cannot_be_sent_fails_the_call_with_the_servers_reason(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Answers, 0, runtime=b)

    async def body() -> Any:
        with pytest.raises(CallError) as e:
            await gen_server.call(server, "unsendable", timeout=None)
        return e.value.reason, mailbox_len()

    # The server crashed on the EncodeError with its half of the monitor
    # still in place, so the caller got the DOWN (and no hang).
    reason, left = await asyncio.wait_for(run_in(a, body), WAIT)
    assert "EncodeError" in repr(reason) or isinstance(reason, EncodeError)
    assert left == 0
    assert not b.is_alive(server)


async def test_a_request_that_cannot_be_sent_raises_at_the_caller_and_leaves_no_monitor(
    make_cluster: ClusterFactory,
) -> None:
    a, b = await make_cluster(2)
    server = await gen_server.start(Answers, 0, runtime=b)

    async def body() -> Any:
        with pytest.raises(EncodeError):
            await gen_server.call(server, object())
        still = await gen_server.call(server, "get")
        return still, monitors_of(a, process.self()), mailbox_len()

    assert await run_in(a, body) == (0, ((), ()), 0)
    assert monitors_of(b, server) == ((), ())
