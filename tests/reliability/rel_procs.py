"""Processes the reliability tests start in separate OS nodes (``--run rel_procs:...``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from otpylib import process
from otpylib.runtime.atoms import atom


async def blocker() -> None:
    """Register as ``blocker``; on ``(sender, "block", s)`` block the event loop for s seconds.

    ``time.sleep`` inside a process is the busy node of the tests: a
    CPU-bound callback or a slow synchronous call looks the same to the loop.
    Replies ``("unblocked", s)`` afterwards; answers ``(sender, "ping")`` with ``"pong"``.
    """
    await process.register("blocker")
    while True:
        msg: Any = await process.receive()
        sender = msg[0]
        if msg[1] == "block":
            time.sleep(msg[2])
            await process.send(sender, ("unblocked", msg[2]))
        elif msg[1] == "ping":
            await process.send(sender, "pong")


async def atom_flooder() -> None:
    """Register as ``flooder``; on ``(sender, "flood", n, prefix)`` send n messages, each
    carrying an atom never seen before, then ``("done", n)``."""
    await process.register("flooder")
    while True:
        sender, _, n, prefix = await process.receive()
        for i in range(n):
            await process.send(sender, ("atom", atom.ensure(f"{prefix}{i}")))
        await process.send(sender, ("done", n))


async def _idle() -> None:
    await process.receive(match=lambda m: False)


async def holder() -> None:
    """Register as ``holder``; on ``(sender, "spawn", n)`` start n idle processes and
    reply ``("pids", [pid, ...])`` (targets for links and monitors)."""
    await process.register("holder")
    while True:
        sender, _, n = await process.receive()
        pids = [await process.spawn(_idle) for _ in range(n)]
        await process.send(sender, ("pids", pids))


async def counter_sender() -> None:
    """Register as ``sender``; on ``(sender, "send", sink_node, n)`` send
    ``(my_node, i)`` for i in 0..n-1 to ``sink`` on sink_node, then ``("done", my_node)``."""
    await process.register("sender")
    me = process.runtime().node_name
    while True:
        _, _, sink_node, n = await process.receive()
        sink = ("sink", sink_node)
        for i in range(n):
            await process.send(sink, (me, i))
        await process.send(sink, ("done", me))


async def _small_after(sink: tuple[str, str], queued: asyncio.Event) -> None:
    await queued.wait()
    await process.send(sink, ("small", 1))


async def big_then_small() -> None:
    """Register as ``bigsmall``; on ``(sender, "send", sink_node, size)`` send
    ``("big", payload)`` of ``size`` bytes to ``sink`` there and, from another process
    once the big one is queued, ``("small", 1)``."""
    await process.register("bigsmall")
    while True:
        _, _, sink_node, size = await process.receive()
        sink = ("sink", sink_node)
        queued = asyncio.Event()
        await process.spawn(_small_after, (sink, queued))
        payload = bytes(range(256)) * (size // 256)
        queued.set()  # the send below encodes and queues before it first waits
        await process.send(sink, ("big", payload))
