"""process.receive_batch: every queued message in one call, oldest first.

What it must keep from ``receive``: the order of arrival, the wait for a
first message, the deadline, and selective receive (messages it does not
take stay queued for ``receive(match=...)``, untouched and in order).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import DEADLINE, run_in, watch

from otpylib import process
from otpylib.runtime.atoms import KILLED
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend


async def _send_to_self(messages: list[Any]) -> None:
    me = process.self()
    for m in messages:
        await process.send(me, m)


async def test_takes_every_queued_message_in_order(runtime: AsyncIOBackend) -> None:
    async def body() -> tuple[list[Any], int]:
        await _send_to_self(list(range(100)))
        batch = await process.receive_batch()
        left = process.process_info(process.self())
        assert left is not None
        return batch, left.message_queue_len

    batch, left = await run_in(runtime, body)
    assert batch == list(range(100))
    assert left == 0


async def test_order_holds_across_senders_and_batches(runtime: AsyncIOBackend) -> None:
    got: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def sink() -> None:
        seen: list[Any] = []
        while len(seen) < 2 * 500:
            seen.extend(await process.receive_batch())
        await got.put(seen)

    sink_pid = await runtime.spawn(sink)

    async def sender(tag: str) -> None:
        for i in range(500):
            await process.send(sink_pid, (tag, i))
            if i % 7 == 0:
                await asyncio.sleep(0)  # interleave with the other sender and the sink

    await runtime.spawn(sender, ["a"])
    await runtime.spawn(sender, ["b"])
    seen = await asyncio.wait_for(got.get(), DEADLINE)
    for tag in ("a", "b"):
        assert [i for t, i in seen if t == tag] == list(range(500))


async def test_waits_for_the_first_message_and_no_longer(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        got.set_result(await process.receive_batch())

    pid = await runtime.spawn(sink)
    await asyncio.sleep(0)
    assert not got.done()
    await runtime.send(pid, "first")
    assert await asyncio.wait_for(got, DEADLINE) == ["first"]


async def test_max_messages_takes_the_oldest_and_leaves_the_rest(runtime: AsyncIOBackend) -> None:
    async def body() -> tuple[list[Any], list[Any], list[Any]]:
        await _send_to_self(list(range(10)))
        first = await process.receive_batch(3)
        exact = await process.receive_batch(max_messages=7)
        await _send_to_self(["x"])
        more = await process.receive_batch(max_messages=5)
        return first, exact, more

    first, exact, more = await run_in(runtime, body)
    assert first == [0, 1, 2]
    assert exact == [3, 4, 5, 6, 7, 8, 9]
    assert more == ["x"]


async def test_selective_receive_before_and_after_a_batch(runtime: AsyncIOBackend) -> None:
    async def body() -> tuple[Any, list[Any], Any, Any]:
        await _send_to_self(["a", ("reply", 1), "b", "c"])
        reply = await process.receive(match=lambda m: isinstance(m, tuple))
        batch = await process.receive_batch(2)
        # What the batch left stays queued for a selective receive, in order.
        await _send_to_self([("reply", 2)])
        later = await process.receive(match=lambda m: isinstance(m, tuple))
        rest = await process.receive(timeout=0)
        return reply, batch, later, rest

    reply, batch, later, rest = await run_in(runtime, body)
    assert reply == ("reply", 1)
    assert batch == ["a", "b"]
    assert later == ("reply", 2)
    assert rest == "c"


async def test_timeout_zero_polls_an_empty_mailbox(runtime: AsyncIOBackend) -> None:
    async def body() -> list[Any]:
        with pytest.raises(TimeoutError):
            await process.receive_batch(timeout=0)
        await _send_to_self(["m"])
        return await process.receive_batch(timeout=0)

    assert await run_in(runtime, body) == ["m"]


async def test_timeout_raises_when_nothing_arrives(runtime: AsyncIOBackend) -> None:
    async def body() -> list[Any]:
        with pytest.raises(TimeoutError):
            await process.receive_batch(timeout=0.01)
        # The expired deadline left nothing behind: the next wait still works.
        me = process.self()
        asyncio.get_running_loop().call_soon(runtime.send_nowait, me, "late")
        return await process.receive_batch(timeout=DEADLINE)

    assert await run_in(runtime, body) == ["late"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
async def test_max_messages_must_be_a_positive_int(runtime: AsyncIOBackend, bad: Any) -> None:
    async def body() -> None:
        await _send_to_self(["kept"])
        with pytest.raises(ValueError, match="positive int or None"):
            await process.receive_batch(bad)
        # Refused before taking anything.
        assert await process.receive(timeout=0) == "kept"

    await run_in(runtime, body)


async def test_a_process_killed_while_waiting_in_a_batch_ends_killed(
    runtime: AsyncIOBackend,
) -> None:
    async def sink() -> None:
        await process.receive_batch()

    pid = await runtime.spawn(sink)
    ended = await watch(runtime, pid)
    await asyncio.sleep(0)
    await runtime.exit(pid, "kill")
    assert await asyncio.wait_for(ended, DEADLINE) is KILLED
