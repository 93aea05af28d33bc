"""process.send, whose fast path skips runtime.send, says and does what runtime.send does.

The fast path takes a live local pid or a registered str name; everything
else falls through to the runtime's send. Each case sends from inside a
process and checks the outcome, the counters, and that nothing else changed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import DEADLINE, NEVER_SPAWNED, REMOTE_PID, run_in

from otpylib import process
from otpylib.runtime.atoms import atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE, Pid
from otpylib.runtime.errors import UnknownNameError


async def _inbox(runtime: AsyncIOBackend) -> tuple[Pid, asyncio.Queue[Any]]:
    """A process named ``inbox`` that puts every message it gets on the returned queue."""
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def inbox() -> None:
        while True:
            got.put_nowait(await process.receive())

    return await runtime.spawn(inbox, name="inbox"), got


@pytest.mark.parametrize(
    "how", ["pid", "name", "atom name", "(name, node)", "alias"], ids=lambda h: h
)
async def test_every_kind_of_local_target_is_delivered_and_counted(
    runtime: AsyncIOBackend, how: str
) -> None:
    pid, got = await _inbox(runtime)

    async def body() -> None:
        target: Any = {
            "pid": pid,
            "name": "inbox",
            "atom name": atom.ensure("inbox"),
            "(name, node)": ("inbox", LOCAL_NODE),
        }.get(how)
        if how == "alias":
            target = process.alias()
            # The alias reaches our own mailbox: send to it and take it back.
            await process.send(target, ("via", how))
            got.put_nowait(await process.receive(timeout=DEADLINE))
            return
        await process.send(target, ("via", how))

    await run_in(runtime, body)
    assert await asyncio.wait_for(got.get(), DEADLINE) == ("via", how)
    assert runtime.statistics().messages_processed == 1


async def test_to_a_dead_or_remote_pid_is_dropped_silently(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        await process.send(NEVER_SPAWNED, "lost")
        await process.send(REMOTE_PID, "lost")

    await run_in(runtime, body)
    assert runtime.statistics().messages_processed == 0


@pytest.mark.parametrize("target", ["nobody", ("nobody", LOCAL_NODE), ""])
async def test_to_an_unregistered_name_raises_as_runtime_send_does(
    runtime: AsyncIOBackend, target: Any
) -> None:
    async def body() -> str:
        with pytest.raises(UnknownNameError) as info:
            await process.send(target, "hello?")
        return str(info.value)

    via_process = await run_in(runtime, body)
    with pytest.raises(UnknownNameError) as info:
        await runtime.send(target, "hello?")
    assert via_process == str(info.value)


async def test_to_something_that_is_not_a_target_is_refused(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        with pytest.raises(TypeError, match=r"^send\(\) target must be a Pid"):
            await process.send(42, "x")  # type: ignore[arg-type]

    await run_in(runtime, body)


async def test_a_process_of_one_runtime_sends_through_its_own(
    runtime: AsyncIOBackend, make_runtime: Any
) -> None:
    # Both runtimes hand out the same first pids: the sender's runtime decides.
    other = await make_runtime()
    pid, got = await _inbox(runtime)
    other_pid, other_got = await _inbox(other)
    assert pid == other_pid

    async def body() -> None:
        await process.send(pid, "to the sender's runtime")

    await run_in(other, body)
    assert await asyncio.wait_for(other_got.get(), DEADLINE) == "to the sender's runtime"
    assert got.empty()
    assert runtime.statistics().messages_processed == 0


async def test_the_receiver_counts_what_it_was_sent(runtime: AsyncIOBackend) -> None:
    pid, got = await _inbox(runtime)

    async def body() -> None:
        for i in range(5):
            await process.send(pid if i % 2 else "inbox", i)

    await run_in(runtime, body)
    assert [await asyncio.wait_for(got.get(), DEADLINE) for _ in range(5)] == list(range(5))
    info = runtime.process_info(pid)
    assert info is not None and info.messages_received == 5
