"""Processes the CLI tests start in ``otpy-node`` children (``--run cli_procs:...``)."""

from __future__ import annotations

import asyncio
from typing import Any

from otpylib import gen_server, process
from otpylib.runtime.atoms import atom
from otpylib.runtime.data import Pid


async def echo_service() -> None:
    """Register as ``echo`` and answer ``(sender, msg)`` with ``("echo", msg)``."""
    await process.register("echo")
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))


async def sleeper() -> None:
    """Register as ``sleeper`` and never read a message: its queue only grows."""
    await process.register("sleeper")
    await asyncio.Event().wait()


def not_async() -> None:
    """A plain function: ``--run`` refuses it, as a process function is ``async def``."""


class KV(gen_server.GenServer):
    """A key-value server: ``("put", k, v)`` -> ``ok``, ``("get", k)`` -> v; ``"crash"`` raises."""

    async def init(self) -> dict[str, Any]:
        return {}

    async def handle_call(self, request: Any, from_: Any, state: dict[str, Any]) -> Any:
        if request == "crash":
            raise RuntimeError("kv crashed on request")
        if request[0] == "put":
            state[request[1]] = request[2]
            return (gen_server.REPLY, atom.ensure("ok"), state)
        return (gen_server.REPLY, (atom.ensure("ok"), state.get(request[1])), state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        return (gen_server.NOREPLY, state)


async def start_kv() -> Pid:
    """A start function in OTP's style: start_link the server, return its pid."""
    return await gen_server.start_link(KV, name="kv")


async def failing_start() -> Pid:
    """A start function that fails: the node must exit 1 with one line."""
    raise ValueError("no configuration found")


def add(a: int, b: int) -> int:
    """A plain function for ``otpy-node rpc``."""
    return a + b
