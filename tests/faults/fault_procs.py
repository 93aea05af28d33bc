"""Processes the fault tests start in separate OS nodes (``--run fault_procs:...``)."""

from __future__ import annotations

from typing import Any

from otpylib import gen_server, process
from otpylib.gen_server import REPLY
from otpylib.runtime.data import Pid


async def echo_service() -> None:
    """Register as ``echo`` and answer ``(sender, msg)`` with ``("echo", msg)``."""
    await process.register("echo")
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))


class Worker(gen_server.GenServer):
    """A counter that reports ``("started", pid, node)`` and ``("waiting", pid)`` to ``observer``.

    Started on these nodes from another one (``gen_server.start_link(Worker,
    observer, node=...)``), so it must live in a module they import.
    """

    async def init(self, observer: Pid) -> int:
        self.observer = observer
        await process.send(observer, ("started", process.self(), process.runtime().node_name))
        return 0

    async def handle_call(self, request: Any, from_: Any, n: int) -> Any:
        if request == "incr":
            return (REPLY, n + 1, n + 1)
        if request == "wait_forever":
            await process.send(self.observer, ("waiting", process.self()))
            await process.receive(match=lambda m: False)
        raise ValueError(f"unexpected request {request!r}")


async def start_worker_on_first_reachable(nodes: list[str], observer: Pid, name: str) -> Pid:
    """A supervisor's start function: a linked ``Worker`` on the first node that answers."""
    last: Exception | None = None
    for node in nodes:
        try:
            return await gen_server.start_link(Worker, observer, name=name, node=node)
        except gen_server.StartError as exc:
            last = exc
    assert last is not None
    raise last
