"""otpylib_dist: Erlang-style distribution for otpylib.

The public face: ``Node`` (a runtime that is a node of a cluster; also
``async with``), ``this_node()`` (the node running the calling process),
``register_struct`` (a ``msgspec.Struct`` type that may travel between
nodes), and the errors. ``DistributedBackend`` is ``Node``'s earlier name.

Layout (imports point down this list; nothing imports ``node.py`` but
``node_rpc.py``'s type hints and the CLI):
    node.py              Node: the runtime plus a node (wiring only)
    router.py            operations out: remote pids -> control messages (RemoteRouter)
    control_handlers.py  control messages in -> the runtime's entry points (checked);
                         SpawnPolicy (async functions only, optional allow-list)
    connections.py       the connection table: dial, admit, tie-break, up/down, connect_all
    connection.py        one TCP/TLS connection: bytes, ticks, coalescing, run frames
    tick_guard.py        a thread that keeps ticks flowing while the event loop is blocked
    busy_wait.py         adaptive polling after traffic (BEAM's busy wait)
    node_monitors.py     monitor_node / monitor_nodes subscriptions
    remote_requests.py   requests waiting on a peer's reply (remote spawn, node RPC)
    node_rpc.py          questions a node answers about itself (CLI)
    structs.py           otpylib's records registered with the codec
    statistics.py        frozen per-peer and per-node statistics records
    protocol/            sans-I/O: framing, handshake, codecs, ticker, TLS layer, EPMD/DNS wire
    discovery/           port mapper (EPMD protocol, the default), mDNS, static, DNS
    cookie.py, tls.py    the shared secret; mutual-TLS contexts (pki.py: a test PKI)
    refusal_log.py       rate-limited, non-blocking logging of refused connections
    names.py, errors.py  node names; the exceptions of this package
    metrics.py, vitals.py   Prometheus metrics; event-loop lag and RSS
    logformat.py         logfmt / JSON log formatters (otpy-node)
    cli.py               the otpy-node command: main and the subcommands; cli_grammar.py
                         (argparse), cli_config.py (cookie, discovery, TLS, targets),
                         cli_run.py (run), cli_advice.py (what a failure means),
                         cli_call.py (call/rpc), cli_epmd.py (epmd), cli_output.py
                         (tables), top.py (the live view)
"""

from otpylib_dist import structs as _structs  # noqa: F401  (registers otpylib's records)
from otpylib_dist.errors import (
    ConnectFailure,
    DistError,
    NodeUnreachable,
    RemoteSpawnError,
    RpcError,
)
from otpylib_dist.node import DistributedBackend, Node, this_node
from otpylib_dist.protocol.registry import register_struct

__all__ = [
    "ConnectFailure",
    "DistError",
    "DistributedBackend",
    "Node",
    "NodeUnreachable",
    "RemoteSpawnError",
    "RpcError",
    "register_struct",
    "this_node",
]
