"""A named counter under a supervisor survives crashes: ``python -m examples.counter_supervised``.

What happens:

1. A one_for_one supervisor starts a gen_server ``Counter`` registered as
   ``"counter"``. Main counts to 3 by calling it by name.
2. Main asks the counter to crash. The call fails with the crash as its
   reason; the supervisor restarts the counter (a new pid, the same name,
   its state back to the start value), and main goes on calling ``"counter"``.
3. Main kills the counter outright (``exit(pid, kill)``): no ``terminate``
   runs, and the supervisor restarts it again.
4. The runtime shuts down: the supervisor stops the counter, which runs
   ``terminate``, and then exits itself.

Main is not a process, so it passes ``runtime=`` to the gen_server and
supervisor functions (they make their calls through a helper process).
Crash reports go to stderr through ``logging``, one line each.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial
from typing import Any

from otpylib import DOWN, Runtime, atom, gen_server, process, supervisor
from otpylib.gen_server import REPLY

INCR = atom.ensure("incr")
GET = atom.ensure("get")
CRASH = atom.ensure("crash")


def say(text: str) -> None:
    """Print one line at once (the example's test reads stdout)."""
    print(text, flush=True)


class Counter(gen_server.GenServer):
    """Counts; its state is the current value, lost (reset) when it restarts."""

    async def init(self, *args: Any, **kwargs: Any) -> int:
        start: int = args[0]
        say(f"counter: started as {process.self()} at {start}")
        return start

    async def handle_call(self, request: Any, from_: gen_server.From, count: int) -> Any:
        if request is INCR:
            return (REPLY, count + 1, count + 1)
        if request is GET:
            return (REPLY, count, count)
        if request is CRASH:
            raise RuntimeError("asked to crash")
        raise ValueError(f"unknown request {request!r}")

    async def terminate(self, reason: Any, count: int) -> None:
        say(f"counter: terminate({reason}) at {count}")


class _OneLine(logging.Formatter):
    """Log records without tracebacks: the example shows what happens, not where."""

    def formatException(self, ei: Any) -> str:
        return ""


async def wait_until_down(runtime: Runtime, pid: Any) -> None:
    """Wait for ``pid`` to end, from main (through a short-lived process)."""
    done = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        ref = await process.monitor(pid)
        await process.receive(match=lambda m: type(m) is tuple and m[0] is DOWN and m[1] == ref)
        done.set_result(None)

    await runtime.spawn(watcher)
    await done


async def main() -> None:
    """Run the story told in the module docstring."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("log: %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])

    runtime = Runtime()
    await runtime.initialize()

    spec = supervisor.ChildSpec(
        "counter", partial(gen_server.start_link, Counter, 0, name="counter")
    )
    sup = await supervisor.start([spec], name="counter_sup", runtime=runtime)
    say(f"main: supervisor {sup} started")

    for _ in range(3):
        value = await gen_server.call("counter", INCR, runtime=runtime)
    say(f"main: counter value {value}")

    first = runtime.whereis("counter")
    try:
        await gen_server.call("counter", CRASH, runtime=runtime)
    except gen_server.CallError as exc:
        say(f"main: the call failed with reason {exc.reason!r}")
    # The supervisor handled the crash before it answers this call.
    children = await supervisor.which_children(sup, runtime=runtime)
    second = runtime.whereis("counter")
    say(f"main: supervisor reports {[(c.id, c.pid) for c in children]}")
    say(f"main: 'counter' was {first}, is now {second}")
    value = await gen_server.call("counter", INCR, runtime=runtime)
    say(f"main: counter value {value} after the restart")

    assert second is not None
    await runtime.exit(second, "kill")
    await wait_until_down(runtime, second)
    await supervisor.which_children(sup, runtime=runtime)
    third = runtime.whereis("counter")
    say(f"main: killed {second}; 'counter' is now {third}")
    value = await gen_server.call("counter", INCR, runtime=runtime)
    say(f"main: counter value {value} after the second restart")

    say("main: shutting down")
    await runtime.shutdown()
    say("main: done")


if __name__ == "__main__":
    asyncio.run(main())
