"""otpylib_dist: Erlang-style distribution for otpylib.

Layout:
    node.py              DistributedBackend: the local runtime plus a node
    router.py            outgoing operations on remote pids
    control_handlers.py  incoming control messages, one handler per type
    node_rpc.py          questions a node answers about itself (CLI)
    connection.py        one TCP/TLS connection per peer: I/O, ticks, coalescing
    protocol/            sans-I/O: framing, handshake, codecs, ticker
    discovery/           mDNS, static, EPMD and DNS resolvers
    cookie.py, tls.py    the shared secret; mutual-TLS contexts
    names.py, errors.py  node names; the exceptions of this package
    cli.py               the otpy-node command
"""

from otpylib_dist.node import DistributedBackend

__all__ = ["DistributedBackend"]
