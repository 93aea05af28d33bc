"""A cluster-wide name lookup: ``python -m examples.dist_registry``.

A registered name is local to its node: ``("greeter", "svc@127.0.0.1")``
reaches the greeter only if you know which node it is on. A small lookup
service on one well-known node fills the gap: services register there, and
anyone asks it where a name lives. It monitors what it holds, so a name
disappears when its process dies or its node is lost, and it tells whoever
asked to watch the name.

Three nodes in this one Python process, talking over loopback TCP:

- ``registry`` runs the ``Lookup`` gen_server, registered as ``"lookup"``;
- ``svc`` runs a ``Greeter`` gen_server (registered locally as ``"greeter"``)
  and a ``Clock`` gen_server; each registers itself in the lookup service;
- ``client`` finds the greeter through the lookup service, calls it, sends it
  a plain message, and then watches names vanish: the greeter when it
  stops, the clock when the connection to svc is lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from otpylib import DOWN, Pid, atom, gen_server, process
from otpylib.gen_server import NOREPLY, REPLY
from otpylib_dist import Node

COOKIE = "dist-registry-example"
REGISTRY = "registry@127.0.0.1"
SVC = "svc@127.0.0.1"
CLIENT = "client@127.0.0.1"
LOOKUP = ("lookup", REGISTRY)
OK = atom.ensure("ok")
TAKEN = atom.ensure("taken")
GONE = atom.ensure("gone")


def say(text: str) -> None:
    """Print one line at once (the example's test reads stdout)."""
    print(text, flush=True)


class Lookup(gen_server.GenServer):
    """Names to pids for the whole cluster; state: ``(names, watchers)``.

    Calls: ``("register", name, pid)`` -> ``OK`` or ``(TAKEN, holder)``;
    ``("whereis", name)`` -> pid or None; ``("watch", name)`` -> ``OK``, and
    later ``(GONE, name, reason)`` is sent to the watcher when the name goes.
    """

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        names: dict[str, tuple[Pid, Any]] = {}
        watchers: dict[str, list[Pid]] = {}
        return (names, watchers)

    async def handle_call(self, request: Any, from_: gen_server.From, state: Any) -> Any:
        names, watchers = state
        kind, name = request[0], request[1]
        if kind == "register":
            held = names.get(name)
            if held is not None:
                return (REPLY, (TAKEN, held[0]), state)
            pid = request[2]
            # The monitor is what keeps the table true: a DOWN (the process
            # ended, or its node was lost: noconnection) removes the name.
            names[name] = (pid, await process.monitor(pid))
            return (REPLY, OK, state)
        if kind == "whereis":
            held = names.get(name)
            return (REPLY, held[0] if held else None, state)
        if kind == "watch":
            watchers.setdefault(name, []).append(from_[0])
            return (REPLY, OK, state)
        return (REPLY, (atom.ensure("error"), "unknown request"), state)

    async def handle_info(self, message: Any, state: Any) -> Any:
        names, watchers = state
        if type(message) is tuple and message[0] is DOWN:
            _, ref, _pid, reason = message
            for name, (_held, mref) in list(names.items()):
                if mref == ref:
                    del names[name]
                    for watcher in watchers.pop(name, []):
                        await process.send(watcher, (GONE, name, reason))
        return (NOREPLY, state)


class Greeter(gen_server.GenServer):
    """Greets by call, and answers ``(sender, text)`` messages too; registers in the lookup."""

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        me = process.self()
        answer = await gen_server.call(LOOKUP, ("register", "greeter", me))
        say(f"svc: greeter {me} registered in the lookup service: {answer}")
        return None

    async def handle_call(self, request: Any, from_: gen_server.From, state: Any) -> Any:
        node = process.runtime().node_name
        return (REPLY, f"hello {request}, from {node}", state)

    async def handle_info(self, message: Any, state: Any) -> Any:
        sender, text = message
        await process.send(sender, ("greeting", f"got your message {text!r}"))
        return (NOREPLY, state)


class Clock(gen_server.GenServer):
    """A second service: registers as ``"clock"`` in the lookup and tells the time."""

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        await gen_server.call(LOOKUP, ("register", "clock", process.self()))
        return None

    async def handle_call(self, request: Any, from_: gen_server.From, state: Any) -> Any:
        return (REPLY, asyncio.get_running_loop().time(), state)


async def client(svc: Node, done: asyncio.Future[None]) -> None:
    """What the client node does (the story in the module docstring)."""
    greeter = await gen_server.call(LOOKUP, ("whereis", "greeter"))
    say(f"client: the lookup service says 'greeter' is {greeter} on {greeter.node}")
    say(f"client: by pid: {await gen_server.call(greeter, 'client')}")
    say(f"client: by (name, node): {await gen_server.call(('greeter', greeter.node), 'again')}")
    await process.send(greeter, (process.self(), "plain message"))
    _, text = await process.receive(match=lambda m: type(m) is tuple and m[0] == "greeting")
    say(f"client: reply to a plain message: {text}")

    answer = await gen_server.call(LOOKUP, ("register", "greeter", process.self()))
    say(f"client: registering 'greeter' again: {answer[0]} by {answer[1]}")

    await gen_server.call(LOOKUP, ("watch", "greeter"))
    await gen_server.stop(greeter)
    gone = await process.receive(match=lambda m: type(m) is tuple and m[0] is GONE)
    say(f"client: {gone[1]!r} is gone: {gone[2]}")
    say(f"client: 'greeter' is now {await gen_server.call(LOOKUP, ('whereis', 'greeter'))}")

    clock_pid = await gen_server.call(LOOKUP, ("whereis", "clock"))
    say(f"client: 'clock' is {clock_pid} on {clock_pid.node}")
    await gen_server.call(LOOKUP, ("watch", "clock"))
    # A network failure between svc and the registry (svc itself lives on):
    await svc.disconnect(REGISTRY)
    gone = await process.receive(match=lambda m: type(m) is tuple and m[0] is GONE)
    say(f"client: {gone[1]!r} is gone: {gone[2]}")
    say(f"client: 'clock' is now {await gen_server.call(LOOKUP, ('whereis', 'clock'))}")
    done.set_result(None)


async def main() -> None:
    """Start the three nodes, the services and the client; shut down when it is done."""
    logging.basicConfig(level=logging.ERROR)
    registry, svc, client_node = nodes = [
        Node(name, cookie=COOKIE) for name in (REGISTRY, SVC, CLIENT)
    ]
    for node in nodes:
        await node.initialize()
    for node in (svc, client_node):
        assert await node.connect(REGISTRY, "127.0.0.1", registry.port)
    assert await client_node.connect(SVC, "127.0.0.1", svc.port)

    await gen_server.start(Lookup, name="lookup", runtime=registry)
    # start returns once init is done: both are in the lookup by then.
    await gen_server.start(Greeter, name="greeter", runtime=svc)
    await gen_server.start(Clock, runtime=svc)
    say("main: three nodes up, two services registered")

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await client_node.spawn(client, [svc, done])
    await asyncio.wait_for(done, 30)
    for node in reversed(nodes):
        await node.shutdown()
    say("main: done")


if __name__ == "__main__":
    asyncio.run(main())
