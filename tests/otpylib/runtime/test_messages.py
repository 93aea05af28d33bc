"""send and receive: delivery, order, timeouts, polling and selective receive."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_support import (
    DEADLINE,
    NEVER_SPAWNED,
    REMOTE_PID,
    echo,
    exit_reason,
    idle,
    next_message,
    not_in_process,
    run_in,
    spawn_collector,
    wait_waiting,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import KILLED, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE
from otpylib.runtime.errors import NotInProcessError, UnknownNameError

PING = atom.ensure("ping")


async def drain() -> list[Any]:
    """Everything in the caller's mailbox, oldest first, without waiting."""
    out = []
    while True:
        try:
            out.append(await process.receive(timeout=0))
        except TimeoutError:
            return out


# ------------------------------------------------------------------- send


async def test_message_from_main_reaches_the_process(runtime: AsyncIOBackend) -> None:
    pid, queue = await spawn_collector(runtime)
    await runtime.send(pid, (PING, 1))
    msg = await next_message(queue)
    assert msg == (PING, 1)
    assert msg[0] is PING


async def test_message_is_delivered_as_the_same_object(runtime: AsyncIOBackend) -> None:
    pid, queue = await spawn_collector(runtime)
    payload = {"big": list(range(10))}
    await runtime.send(pid, payload)
    assert await next_message(queue) is payload


async def test_process_sends_to_itself(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        await process.send(process.self(), "note to self")
        return await process.receive(timeout=DEADLINE)

    assert await run_in(runtime, body) == "note to self"


async def test_request_and_reply_between_processes(runtime: AsyncIOBackend) -> None:
    server = await runtime.spawn(echo)

    async def client() -> Any:
        await process.send(server, (process.self(), "hello"))
        return await process.receive(timeout=DEADLINE)

    assert await run_in(runtime, client) == ("echo", "hello")


async def test_messages_sent_before_the_process_runs_are_kept(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        got.set_result(await drain())

    pid = await runtime.spawn(body)
    for i in range(3):
        await runtime.send(pid, i)
    assert await asyncio.wait_for(got, DEADLINE) == [0, 1, 2]


async def test_messages_from_one_sender_arrive_in_sending_order(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

    async def sink() -> None:
        got.set_result([await process.receive(timeout=DEADLINE) for _ in range(1000)])

    pid = await runtime.spawn(sink)

    async def sender() -> None:
        for i in range(1000):
            await process.send(pid, i)
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the sink take some in between

    await runtime.spawn(sender)
    assert await asyncio.wait_for(got, DEADLINE) == list(range(1000))


async def test_send_to_a_dead_pid_is_dropped_silently(runtime: AsyncIOBackend) -> None:
    async def quick() -> None:
        return None

    pid = await runtime.spawn(quick)
    down = await watch(runtime, pid)
    await exit_reason(down)
    before = runtime.statistics().messages_processed
    await runtime.send(pid, "into the void")
    await runtime.send(NEVER_SPAWNED, "into the void")
    assert runtime.statistics().messages_processed == before


async def test_send_to_another_nodes_pid_without_distribution_is_dropped(
    runtime: AsyncIOBackend,
) -> None:
    await runtime.send(REMOTE_PID, "nowhere")
    assert runtime.statistics().messages_processed == 0


async def test_send_to_a_registered_name(runtime: AsyncIOBackend) -> None:
    _pid, queue = await spawn_collector(runtime, name="inbox")
    await runtime.send("inbox", "by name")
    assert await next_message(queue) == "by name"


async def test_send_to_a_name_at_this_node(runtime: AsyncIOBackend) -> None:
    _pid, queue = await spawn_collector(runtime, name="inbox")
    await runtime.send(("inbox", LOCAL_NODE), "by name and node")
    assert await next_message(queue) == "by name and node"


async def test_send_to_an_unregistered_name_raises_naming_it(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"^no process is registered as 'nobody'; "
        r"check the spelling, or look it up with whereis\(\) first$",
    ) as info:
        await runtime.send("nobody", "hello?")
    assert info.value.name == "nobody"
    assert info.value.reason == "nobody"
    assert isinstance(info.value, LookupError)


async def test_send_to_an_unregistered_name_at_this_node_raises(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"^no process is registered as 'nobody'; "
        r"check the spelling, or look it up with whereis\(\) first$",
    ):
        await runtime.send(("nobody", LOCAL_NODE), "hello?")


async def test_send_to_a_name_on_another_node_needs_distribution(
    runtime: AsyncIOBackend,
) -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"^no process is registered as \('svc', 'b@host'\); "
        r"node 'b@host' is not reachable: this runtime is not distributed$",
    ) as info:
        await runtime.send(("svc", "b@host"), "hello?")
    assert info.value.name == ("svc", "b@host")


@pytest.mark.parametrize("target", [42, ("a", "b", "c"), None])
async def test_send_to_something_that_is_not_a_target_is_refused(
    runtime: AsyncIOBackend, target: Any
) -> None:
    with pytest.raises(
        TypeError,
        match=r"^send\(\) target must be a Pid, a registered name or \(name, node\); "
        rf"got {type(target).__name__}: {re.escape(repr(target))}$",
    ):
        await runtime.send(target, "x")


async def test_send_counts_each_delivered_message(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, name="counted")
    await runtime.send(pid, 1)
    await runtime.send("counted", 2)
    assert runtime.statistics().messages_processed == 2


async def test_send_nowait_delivers_locally_and_says_whether_it_did(
    runtime: AsyncIOBackend,
) -> None:
    pid, queue = await spawn_collector(runtime, name="inbox")
    assert runtime.send_nowait(pid, "by pid") is True
    assert runtime.send_nowait("inbox", "by name") is True
    assert runtime.send_nowait("nobody", "lost") is False
    assert runtime.send_nowait(NEVER_SPAWNED, "lost") is False
    assert [await next_message(queue), await next_message(queue)] == ["by pid", "by name"]


async def test_a_local_send_is_delivered_before_it_is_awaited(runtime: AsyncIOBackend) -> None:
    # send is a plain def (no coroutine per message): the work is done by the
    # call, and the awaitable it returns is already complete.
    pid, queue = await spawn_collector(runtime, name="eager")
    sent = [runtime.send(pid, 1), runtime.send("eager", 2)]
    assert runtime.statistics().messages_processed == 2
    assert await asyncio.gather(*sent) == [None, None]
    assert [await next_message(queue), await next_message(queue)] == [1, 2]


async def test_send_before_initialize_is_awaitable_and_dropped() -> None:
    rt = AsyncIOBackend()
    await rt.send(NEVER_SPAWNED, "lost")
    assert rt.statistics().messages_processed == 0
    await rt.shutdown()


# ---------------------------------------------------------------- receive


async def test_receive_from_main_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        NotInProcessError,
        match=not_in_process("receive"),
    ):
        await runtime.receive(timeout=0)


async def test_receive_waits_for_a_message_sent_later(runtime: AsyncIOBackend) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        got.set_result(await process.receive(timeout=DEADLINE))

    pid = await runtime.spawn(body)
    await wait_waiting(runtime, pid)
    await runtime.send(pid, "late")
    assert await asyncio.wait_for(got, DEADLINE) == "late"


async def test_receive_without_a_timeout_waits_until_a_message_comes(
    runtime: AsyncIOBackend,
) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        got.set_result(await process.receive())

    pid = await runtime.spawn(body)
    await wait_waiting(runtime, pid)
    await asyncio.sleep(0.05)  # the point: with no timeout, time passing ends nothing
    assert not got.done()
    info = runtime.process_info(pid)
    assert info is not None and info.state == "waiting"
    await runtime.send(pid, "finally")
    assert await asyncio.wait_for(got, DEADLINE) == "finally"


async def test_receive_times_out_with_timeout_error(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        with pytest.raises(asyncio.TimeoutError, match=r"^receive timed out after 0\.05 s$"):
            await process.receive(timeout=0.05)

    await run_in(runtime, body)
    assert asyncio.TimeoutError is TimeoutError


async def test_receive_with_timeout_zero_polls(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        with pytest.raises(TimeoutError, match=r"^receive timed out after 0 s$"):
            await process.receive(timeout=0)
        await process.send(process.self(), "there")
        return await process.receive(timeout=0)

    assert await run_in(runtime, body) == "there"


async def test_a_process_killed_while_waiting_in_receive_ends_killed(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle)
    await wait_waiting(runtime, pid)
    down = await watch(runtime, pid)
    await runtime.exit(pid, "kill")
    assert await exit_reason(down) is KILLED
    assert runtime.process_info(pid) is None


# ------------------------------------------------------- selective receive


async def test_selective_receive_takes_the_first_match_and_keeps_the_rest_in_order(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> tuple[Any, list[Any]]:
        me = process.self()
        for msg in ["a", 1, "b", 2, "c", 3]:
            await process.send(me, msg)
        picked = await process.receive(match=lambda m: isinstance(m, int), timeout=0)
        return picked, await drain()

    picked, rest = await run_in(runtime, body)
    assert picked == 1
    assert rest == ["a", "b", 2, "c", 3]


async def test_selective_receive_waits_past_messages_that_do_not_match(
    runtime: AsyncIOBackend,
) -> None:
    got: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        picked = await process.receive(match=lambda m: m == "wanted", timeout=DEADLINE)
        got.set_result((picked, await drain()))

    pid = await runtime.spawn(body)
    await wait_waiting(runtime, pid)
    for msg in ["x", "y"]:
        await runtime.send(pid, msg)
    await wait_waiting(runtime, pid)
    info = runtime.process_info(pid)
    assert info is not None
    assert info.message_queue_len == 2
    await runtime.send(pid, "z")
    await runtime.send(pid, "wanted")
    await runtime.send(pid, "after")
    assert await asyncio.wait_for(got, DEADLINE) == ("wanted", ["x", "y", "z", "after"])


async def test_selective_receive_that_times_out_leaves_the_mailbox_alone(
    runtime: AsyncIOBackend,
) -> None:
    async def body() -> list[Any]:
        me = process.self()
        for msg in [1, 2, 3]:
            await process.send(me, msg)
        with pytest.raises(TimeoutError):
            await process.receive(match=lambda m: m == 99, timeout=0)
        with pytest.raises(TimeoutError):
            await process.receive(match=lambda m: m == 99, timeout=0.02)
        return await drain()

    assert await run_in(runtime, body) == [1, 2, 3]


async def test_selective_receive_deadline_is_not_reset_by_other_messages(
    runtime: AsyncIOBackend,
) -> None:
    sent = 0

    async def body() -> None:
        nonlocal sent
        me = process.self()

        async def chatter() -> None:
            nonlocal sent
            while sent < 1000:
                await process.send(me, "noise")
                sent += 1
                await asyncio.sleep(0.005)  # the pace of the noise is the scenario

        chat = asyncio.ensure_future(chatter())
        try:
            with pytest.raises(TimeoutError):
                await process.receive(match=lambda m: m == "never", timeout=0.1)
        finally:
            chat.cancel()

    await run_in(runtime, body)
    # The 1000 messages take five seconds or more to send; a receive whose
    # deadline restarted at each message would have outlasted them.
    assert 0 < sent < 1000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=20), st.integers(0, 5))
def test_selective_receive_matches_taking_the_first_occurrence_from_a_list(
    messages: list[int], wanted: int
) -> None:
    async def scenario() -> tuple[Any, list[Any]]:
        rt = AsyncIOBackend()
        await rt.initialize()
        try:

            async def body() -> tuple[Any, list[Any]]:
                me = process.self()
                for m in messages:
                    await process.send(me, m)
                try:
                    picked = await process.receive(match=lambda m: m == wanted, timeout=0)
                except TimeoutError:
                    picked = None
                return picked, await drain()

            return await run_in(rt, body)
        finally:
            await rt.shutdown()

    picked, rest = asyncio.run(scenario())
    expected = list(messages)
    if wanted in expected:
        expected.remove(wanted)
        assert picked == wanted
    else:
        assert picked is None
    assert rest == expected


async def test_message_queue_len_counts_waiting_messages(runtime: AsyncIOBackend) -> None:
    release = asyncio.Event()
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        await release.wait()
        got.set_result(await process.receive(timeout=DEADLINE))

    pid = await runtime.spawn(body)
    for i in range(3):
        await runtime.send(pid, i)
    assert runtime.process_info(pid).message_queue_len == 3  # type: ignore[union-attr]
    release.set()
    assert await asyncio.wait_for(got, DEADLINE) == 0
