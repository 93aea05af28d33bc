"""One node of ``make demo``: ``python -m examples.demo_node NAME PEER...``.

Discovers its peers over mDNS on loopback, pings their ``greeter`` processes,
monitors them, and prints what it sees until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from otpylib import DOWN, NODEDOWN, NODEUP, atom, process
from otpylib_dist import Node
from otpylib_dist.cookie import load_cookie
from otpylib_dist.discovery.mdns import MdnsDiscovery

PING = atom.ensure("ping")
PONG = atom.ensure("pong")


def say(text: str) -> None:
    """Print one line at once (the demo's parent reads our stdout)."""
    print(text, flush=True)


async def greeter(peers: list[str]) -> None:
    """Answer pings; ping every peer once connected; report downs."""
    node = process.runtime()
    assert isinstance(node, Node)
    me = process.self()
    await process.register("greeter")
    await node.monitor_nodes(True)
    connected = set(node.nodes())
    ponged: set[str] = set()
    complete = False
    while True:
        # A peer's greeter may not be registered yet when its node comes up
        # (a registered send to a missing name is dropped, as in Erlang), so
        # ping every connected peer that has not answered, twice a second.
        for peer in peers:
            if peer in connected and peer not in ponged:
                await process.send(("greeter", peer), (PING, me, node.node_name))
        try:
            msg: Any = await process.receive(timeout=0.5)
        except TimeoutError:
            continue
        kind = msg[0] if isinstance(msg, tuple) and msg else None
        if kind is NODEUP:
            say(f"nodeup {msg[1]}")
            connected.add(msg[1])
        elif kind is PING:
            say(f"ping from {msg[2]}")
            await process.send(msg[1], (PONG, node.node_name))
        elif kind is PONG and msg[1] not in ponged:
            say(f"pong from {msg[1]}")
            ponged.add(msg[1])
            if not complete and ponged >= set(peers):
                complete = True
                for peer in peers:
                    await process.monitor(("greeter", peer))
                say(f"mesh complete: connected to {', '.join(sorted(node.nodes()))}")
        elif kind is DOWN:
            say(f"DOWN: greeter {msg[2]} ended with reason {msg[3]}")
        elif kind is NODEDOWN:
            short = msg[1].split("@")[0]
            say(f"saw nodedown {short} (reason {msg[2]['reason']})")
            connected.discard(msg[1])


async def run(name: str, peers: list[str]) -> None:
    """Start the node, the greeter, and wait for SIGTERM."""
    node = Node(
        f"{name}@127.0.0.1",
        discovery=MdnsDiscovery(load_cookie(), interfaces=["127.0.0.1"]),
        auto_connect=True,
        net_ticktime=4.0,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await node.initialize()
    say(f"node {node.node_name} up on port {node.port}")
    await node.spawn(greeter, args=[[f"{p}@127.0.0.1" for p in peers]])
    await stop.wait()
    say("SIGTERM: shutting down cleanly")
    await node.shutdown()
    say("stopped")


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2:]))
