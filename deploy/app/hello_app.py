"""An example application for the deploy files: a supervised gen_server named ``hello``.

``otpy-node --run hello_app:start`` (what the image runs by default) starts
it; every node of the cluster then answers ``gen_server.call(("hello",
node), "hi")`` with ``("hello", node, count)``. Replace it with your own:
copy your package into the image and name its start function with ``--run``
(see ``deploy/Dockerfile``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from otpylib import Pid, gen_server, process, supervisor
from otpylib.gen_server import GenServer
from otpylib.supervisor import ChildSpec

logger = logging.getLogger(__name__)


class Hello(GenServer):
    """Answers every call with this node's name and how many calls it has answered."""

    async def init(self, *args: Any) -> Any:
        return 0

    async def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        count = state + 1
        return (gen_server.REPLY, ("hello", process.runtime().node_name, count), count)


async def start() -> Pid:
    """Start the supervision tree; its supervisor is the application's top process.

    Returning the supervisor's pid (rather than waiting forever) tells the
    node the application has started, and the node keeps it running: if the
    supervisor gives up (too many restarts), the node stops with exit status
    1 and its supervisor (systemd, Kubernetes, Docker) restarts it.
    """
    return await supervisor.start_link(
        [ChildSpec("hello", partial(gen_server.start_link, Hello, name="hello"))],
        name="hello_sup",
    )
