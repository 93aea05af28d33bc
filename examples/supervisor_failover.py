"""A supervisor moves its child to another node when the child's node dies:
``python -m examples.supervisor_failover``.

This program's node ``a`` runs a one_for_one supervisor. Its one child, a
key-value gen_server registered as ``"kv"``, runs on another node: the start
function tries ``b`` first, then ``c`` (both separate OS processes), with
``gen_server.start_link(KeyValue, name="kv", node=...)``.

What happens:

1. The supervisor starts kv on b; main stores ``x = 1`` through
   ``("kv", "b@127.0.0.1")``.
2. b is killed with SIGKILL. The supervisor is linked to kv, so it sees kv
   exit with reason ``noconnection`` (in the log on stderr), and restarts
   it: b no longer answers, so kv comes up on c.
3. kv on c starts from ``init``: state lived in the process that died, so
   ``x`` is unknown there until stored again. (Keeping state across a node's
   death is a job for replication, not for the supervisor.)
4. Node a shuts down: the supervisor stops kv on c first.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial
from typing import Any

from examples.node_processes import NodeProcess, start_nodes
from otpylib import DOWN, Pid, gen_server, process, supervisor
from otpylib.gen_server import REPLY
from otpylib_dist import Node

COOKIE = "supervisor-failover-example"


def say(text: str) -> None:
    """Print one line at once (the example's test reads stdout)."""
    print(text, flush=True)


class KeyValue(gen_server.GenServer):
    """A dict in a process: ``("put", key, value)`` and ``("get", key)``."""

    async def init(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    async def handle_call(self, request: Any, from_: gen_server.From, table: Any) -> Any:
        if request[0] == "put":
            table[request[1]] = request[2]
            return (REPLY, "ok", table)
        return (REPLY, table.get(request[1]), table)


async def start_on_first_reachable(nodes: list[str]) -> Pid:
    """The child's start function: kv on the first of ``nodes`` that can start it."""
    for node in nodes:
        try:
            return await gen_server.start_link(KeyValue, name="kv", node=node)
        except gen_server.StartError as exc:
            say(f"sup: cannot start kv on {node}: {exc.reason}")
    raise gen_server.StartError("no_node", f"kv could start on none of {nodes}")


async def watch(node: Node, pid: Pid) -> asyncio.Future[Any]:
    """Monitor ``pid`` from a short-lived process on ``node``; the future gets its exit reason.

    Returns once the monitor is in place.
    """
    loop = asyncio.get_running_loop()
    watching: asyncio.Future[None] = loop.create_future()
    reason: asyncio.Future[Any] = loop.create_future()

    async def watcher() -> None:
        ref = await process.monitor(pid)
        watching.set_result(None)
        msg = await process.receive(
            match=lambda m: type(m) is tuple and m[0] is DOWN and m[1] == ref
        )
        reason.set_result(msg[3])

    await node.spawn(watcher)
    await watching
    return reason


async def run(b: NodeProcess, c: NodeProcess) -> None:
    """Node a: the supervisor, the calls, the failover."""
    a = Node("a@127.0.0.1", cookie=COOKIE)
    await a.initialize()
    try:
        for peer in (b, c):
            a.add_address(peer.name, "127.0.0.1", peer.port)
        spec = supervisor.ChildSpec("kv", partial(start_on_first_reachable, [b.name, c.name]))
        sup = await supervisor.start([spec], name="sup", runtime=a)
        (child,) = await supervisor.which_children(sup, runtime=a)
        assert child.pid is not None
        say(f"main: kv runs on {child.pid.node} as {child.pid}")
        await gen_server.call(("kv", b.name), ("put", "x", 1), runtime=a)
        x = await gen_server.call(("kv", b.name), ("get", "x"), runtime=a)
        say(f"main: stored x = {x} on b")

        old_kv = await watch(a, child.pid)
        b.kill()
        say("main: b killed (SIGKILL)")
        say(f"main: the old kv ended with reason {await asyncio.wait_for(old_kv, 30)}")
        # The supervisor got its EXIT together with that DOWN, so it has
        # restarted kv before it answers this call.
        (child,) = await supervisor.which_children(sup, runtime=a)
        assert child.pid is not None
        say(f"main: the supervisor restarted kv on {child.pid.node} as {child.pid}")
        x = await gen_server.call(("kv", c.name), ("get", "x"), runtime=a)
        say(f"main: x on the new kv: {x}")
        await gen_server.call(("kv", c.name), ("put", "x", 2), runtime=a)
        x = await gen_server.call(("kv", c.name), ("get", "x"), runtime=a)
        say(f"main: stored x = {x} on c")
    finally:
        await a.shutdown()


def main() -> None:
    """Start nodes b and c, run node a's story, stop everything."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.ERROR, handlers=[handler])
    b, c = start_nodes(["b@127.0.0.1", "c@127.0.0.1"], COOKIE)
    try:
        asyncio.run(run(b, c))
    finally:
        b.kill()
        c.stop()
    say("main: done")


if __name__ == "__main__":
    main()
