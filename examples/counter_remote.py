"""The supervised counter, called from another node: ``python -m examples.counter_remote``.

The counter of ``examples.counter_supervised`` (a gen_server registered as
``"counter"`` under a one_for_one supervisor) runs on node ``beta``; a client
process on node ``alpha`` uses it by ``("counter", "beta@127.0.0.1")``. Both
nodes live in this one Python process and talk over loopback TCP, exactly as
two machines would.

What happens:

1. beta starts the supervisor and the counter; alpha connects to beta.
2. The client on alpha calls the counter three times (it counts to 3), and
   the counter sees the client's pid, of node alpha, as the caller.
3. The client asks it to crash: the call fails with the crash as its reason
   (an exception cannot travel between nodes, so its type and message do).
   The supervisor on beta restarts the counter; the client asks the
   supervisor, also by ``(name, node)``, and goes on calling ``"counter"``.
4. Calls that cannot succeed fail with a reason, never hang: a name nobody
   registered on beta (``noproc``), a node nobody runs (``noconnection``),
   and a request the counter takes too long to answer (``timeout``).
5. Both nodes shut down: the supervisor stops the counter, which runs
   ``terminate``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial
from typing import Any

from examples.counter_supervised import GET, INCR, Counter, say
from otpylib import atom, gen_server, process, supervisor
from otpylib_dist import Node

COOKIE = "counter-remote-example"
ALPHA = "alpha@127.0.0.1"
BETA = "beta@127.0.0.1"
CRASH = atom.ensure("crash")
SLOW = atom.ensure("slow")


class _OneLine(logging.Formatter):
    """Log records without tracebacks: the example shows what happens, not where."""

    def formatException(self, ei: Any) -> str:
        return ""


class SlowCounter(Counter):
    """The counter, plus one request it answers only after a long pause."""

    async def handle_call(self, request: Any, from_: gen_server.From, count: int) -> Any:
        if request is SLOW:
            await asyncio.sleep(0.5)
            return (gen_server.REPLY, "finally", count)
        if request == "caller":
            return (gen_server.REPLY, from_[0], count)
        return await super().handle_call(request, from_, count)


async def client(done: asyncio.Future[None]) -> None:
    """Everything alpha does with the counter on beta (step 2 to 4)."""
    counter = ("counter", BETA)
    for _ in range(3):
        value = await gen_server.call(counter, INCR)
    say(f"alpha: counter value {value}")
    caller = await gen_server.call(counter, "caller")
    say(f"alpha: the counter saw the caller {caller} of node {caller.node}")

    children = await supervisor.which_children(("counter_sup", BETA))
    first = children[0].pid
    try:
        await gen_server.call(counter, CRASH)
    except gen_server.CallError as exc:
        say(f"alpha: the call failed with reason {exc.reason}")
    children = await supervisor.which_children(("counter_sup", BETA))
    second = children[0].pid
    say(f"alpha: beta's supervisor restarted the counter: {first} -> {second}")
    value = await gen_server.call(counter, INCR)
    say(f"alpha: counter value {value} after the restart")

    for target in (("nobody", BETA), ("counter", "gamma@127.0.0.1")):
        try:
            await gen_server.call(target, GET)
        except gen_server.CallError as exc:
            say(f"alpha: calling {target} failed: {exc.reason}")
    try:
        await gen_server.call(counter, SLOW, timeout=0.2)
    except gen_server.CallError as exc:
        say(f"alpha: the slow call failed: {exc.reason}")
    # The slow answer comes later; it is dropped, never seen here.
    value = await gen_server.call(counter, GET, timeout=None)
    info = process.process_info(process.self())
    assert info is not None
    say(f"alpha: counter value {value}; {info.message_queue_len} message(s) left in my mailbox")
    done.set_result(None)


async def main() -> None:
    """Run the story told in the module docstring."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("log: %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.ERROR, handlers=[handler])

    alpha = Node(ALPHA, cookie=COOKIE)
    beta = Node(BETA, cookie=COOKIE)
    await alpha.initialize()
    await beta.initialize()
    spec = supervisor.ChildSpec(
        "counter", partial(gen_server.start_link, SlowCounter, 0, name="counter")
    )
    await supervisor.start([spec], name="counter_sup", runtime=beta)
    connected = await alpha.connect(BETA, "127.0.0.1", beta.port)
    say(f"main: alpha connected to beta: {connected}")

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await alpha.spawn(client, [done])
    await asyncio.wait_for(done, 30)

    say("main: shutting down")
    await alpha.shutdown()
    await beta.shutdown()
    say("main: done")


if __name__ == "__main__":
    asyncio.run(main())
