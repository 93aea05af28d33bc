"""The incoming half of distribution: what a node does with each control message.

One handler per control message type, chosen by a table (not an if-chain).
Handlers never await: a frame read from a peer is acted on in the same loop
step, which keeps the per-connection order of signals (a message sent before
an exit signal is delivered before it). A peer naming a dead process gets
the answer Erlang gives: a link answers with the exit signal ``noproc``, a
monitor with a DOWN ``noproc``, a message is dropped.

A peer speaks only for its own pids. Every signal is checked before it is
acted on: its sender (the linking, exiting, monitoring or spawning process,
and the monitored process of a DOWN) must be of the peer's node, the local
end must be of ours, a DOWN must answer a monitor we hold on a process of
that peer. A violation is a protocol error: the connection is closed with
a log line, as Erlang's distribution does on a bad control message, and the
signal has no effect. (Send and RegSend, nearly all the traffic, are handled
inline by ``Connection._steady_data``: a message is delivered, never trusted
as a signal.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from otpylib.runtime.atoms import NOPROC
from otpylib.runtime.backends.base import RuntimeEntry, SpawnOptions
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import NameAlreadyRegistered
from otpylib.runtime.function_ref import is_async_callable, resolve_function
from otpylib_dist.connection import Connection
from otpylib_dist.protocol import control
from otpylib_dist.protocol.codec import decode_term, encode_reason, encode_term
from otpylib_dist.protocol.errors import RemoteProtocolError
from otpylib_dist.remote_requests import PendingRequests
from otpylib_dist.router import ALREADY_REGISTERED

logger = logging.getLogger(__name__)

__all__ = ["ControlHandlers", "SpawnPolicy"]

#: Answers a node RPC: ``(ok, result)`` for an operation name and argument.
RpcAnswer = Callable[[str, Any], tuple[bool, Any]]


class NotAsyncError(TypeError):
    """A peer asked to spawn a plain function (remote spawn runs only async ones)."""


class SpawnPolicy:
    """Which functions a peer may spawn here.

    Only async functions run (a plain function would run on the event loop
    thread: ``time.sleep`` would block the node, ``os.system`` run a shell
    command). With ``allow`` set, only references whose module starts with
    one of the prefixes (``"myapp."``, or ``"myapp"`` for the module itself)
    are imported at all; otpylib's own process functions (the gen_server
    loop, the ``otpy-node rpc`` runner) are always allowed, and apply the
    policy to what they import in turn. Differs from Erlang, where a cookie holder may
    spawn anything.
    """

    __slots__ = ("allow",)

    def __init__(self, allow: tuple[str, ...] | None = None) -> None:
        self.allow = allow

    def check_arguments(self, reference: str, args: Any) -> None:
        """Apply the allow-list to what an always-allowed function will import.

        The gen_server loop imports the callback class its first argument
        names (``"module:Class"``): that module must be allowed too.
        """
        if self.allow is None or reference != _GEN_SERVER_LOOP:
            return
        named = args[0] if isinstance(args, list | tuple) and args else None
        if isinstance(named, str) and not _allowed(named.partition(":")[0], self.allow):
            raise PermissionError(
                f"{named!r} is not in this node's spawn allow-list ({', '.join(self.allow)})"
            )

    def resolve(self, reference: str, *, require_async: bool = True) -> Callable[..., Any]:
        """The function ``reference`` names, or an exception saying why not.

        ``require_async=False`` is for ``otpy-node rpc`` (Erlang's
        ``rpc:call`` runs any function), which runs a plain function in a
        worker thread, never on the event loop; the allow-list applies alike.
        """
        module = reference.partition(":")[0]
        allowed = reference in _ALWAYS_SPAWNABLE or _allowed(module, self.allow or ())
        if self.allow is not None and not allowed:
            raise PermissionError(
                f"{reference!r} is not in this node's spawn allow-list "
                f"({', '.join(self.allow) or 'empty'})"
            )
        fn = resolve_function(reference)
        if require_async and not is_async_callable(fn):
            raise NotAsyncError(
                f"{reference!r} is not an async function; remote spawn runs only those"
            )
        return fn


#: otpylib's own process functions, which peers may always spawn: the
#: gen_server loop (``gen_server.start(..., node=)``; it imports the callback
#: class the peer names, so the allow-list is checked for that class too) and
#: what ``otpy-node rpc`` runs (it applies this policy to what it calls).
_ALWAYS_SPAWNABLE = frozenset(
    {"otpylib._gen_server_loop:serve", "otpylib_dist.cli_call:rpc_runner"}
)


def _spawn_refusal_kind(exc: Exception) -> str:
    """The kind of a refused spawn (``errors.SPAWN_REFUSALS``), by exception type."""
    if isinstance(exc, PermissionError):
        return "not_allowed"
    if isinstance(exc, ImportError | AttributeError | ValueError) and not isinstance(
        exc, UnicodeError
    ):
        return "not_found"
    if isinstance(exc, NotAsyncError):
        return "not_async"
    return "failed"


#: The gen_server loop, whose first argument names the callback class to import.
_GEN_SERVER_LOOP = "otpylib._gen_server_loop:serve"


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        bare = prefix.rstrip(".")
        if module == bare or module.startswith(bare + "."):
            return True
    return False


class ControlHandlers:
    """Runs the control messages of every connection of one node (the table's dispatcher)."""

    def __init__(
        self,
        node_name: str,
        entry: RuntimeEntry,
        requests: PendingRequests,
        rpc_answer: RpcAnswer,
        spawn_policy: SpawnPolicy | None = None,
        on_peers: Callable[[Connection, control.Peers], None] | None = None,
    ) -> None:
        self._node = node_name
        self._entry = entry
        self._requests = requests
        self._rpc_answer = rpc_answer
        self.spawn_policy = spawn_policy or SpawnPolicy()
        self._on_peers = on_peers
        self._handlers: dict[type, Callable[[Connection, Any], None]] = {
            control.Link: self._link,
            control.Unlink: self._unlink,
            control.Exit: self._exit,
            control.Exit2: self._exit2,
            control.Monitor: self._monitor,
            control.MonitorSend: self._monitor,  # its message: see Connection._steady_data
            control.Demonitor: self._demonitor,
            control.MonitorExit: self._monitor_exit,
            control.SpawnRequest: self._spawn_request,
            control.SpawnReply: self._spawn_reply,
            control.NodeRpc: self._node_rpc,
            control.NodeRpcReply: self._node_rpc_reply,
            control.Peers: self._peers,
        }

    def __call__(self, conn: Connection, msg: Any) -> None:
        """Run the handler for ``msg``'s type.

        Raises:
            RemoteProtocolError: the peer spoke for a pid that is not its own
                (the connection closes it).
        """
        self._handlers[type(msg)](conn, msg)

    # ------------------------------------------------------------ checks

    def _theirs(self, conn: Connection, what: str, pid: Pid | Ref) -> None:
        """``pid`` (or ref) must belong to the peer at the other end of ``conn``."""
        if pid.node != conn.peer_name:
            self._forged(conn, f"{what} {pid!r} is not of node {conn.peer_name}")

    def _ours(self, conn: Connection, what: str, pid: Pid | Ref) -> None:
        """``pid`` (or ref) must belong to this node."""
        if pid.node != self._node:
            self._forged(conn, f"{what} {pid!r} is not of this node ({self._node})")

    @staticmethod
    def _forged(conn: Connection, why: str) -> None:
        raise RemoteProtocolError(f"a control message spoke for a pid not its own: {why}")

    # ----------------------------------------------------------- signals

    def _link(self, conn: Connection, msg: control.Link) -> None:
        self._theirs(conn, "link from", msg.from_)
        self._ours(conn, "link to", msg.to)
        if not self._entry.link(msg.to, msg.from_):
            conn.send_control(control.Exit(msg.to, msg.from_, encode_reason(NOPROC)))

    def _unlink(self, conn: Connection, msg: control.Unlink) -> None:
        self._theirs(conn, "unlink from", msg.from_)
        self._ours(conn, "unlink of", msg.to)
        self._entry.unlink(msg.to, msg.from_)

    def _exit(self, conn: Connection, msg: control.Exit) -> None:
        self._theirs(conn, "link exit from", msg.from_)
        self._ours(conn, "link exit to", msg.to)
        self._entry.link_exit(msg.to, msg.from_, decode_term(msg.reason))

    def _exit2(self, conn: Connection, msg: control.Exit2) -> None:
        self._theirs(conn, "exit signal from", msg.from_)
        self._ours(conn, "exit signal to", msg.to)
        self._entry.exit_signal(msg.to, msg.from_, decode_term(msg.reason))

    def _monitor(self, conn: Connection, msg: control.Monitor | control.MonitorSend) -> None:
        # Every remote gen_server call starts here: the three checks are
        # _theirs/_ours written out (one frame each saved), same rules.
        peer, target = conn.peer_name, msg.target
        if msg.owner.node != peer:
            self._theirs(conn, "monitor owner", msg.owner)
        if msg.ref.node != peer:
            self._theirs(conn, "monitor ref", msg.ref)
        if type(target) is Pid and target.node != self._node:
            self._ours(conn, "monitored process", target)
        if self._entry.monitor(target, msg.owner, msg.ref) is None:
            conn.send_control(
                control.MonitorExit(msg.target, msg.owner, msg.ref, encode_reason(NOPROC))
            )

    def _demonitor(self, conn: Connection, msg: control.Demonitor) -> None:
        self._theirs(conn, "demonitor owner", msg.owner)
        self._theirs(conn, "monitor ref", msg.ref)
        self._entry.demonitor(msg.target, msg.ref)

    def _monitor_exit(self, conn: Connection, msg: control.MonitorExit) -> None:
        self._ours(conn, "DOWN for", msg.owner)
        self._ours(conn, "monitor ref", msg.ref)
        if type(msg.target) is Pid:
            self._theirs(conn, "DOWN of", msg.target)
        watched = self._entry.monitored(msg.owner, msg.ref)
        if watched is None:
            return  # demonitored meanwhile (or a DOWN that crossed ours): nothing to do
        node = watched.node if isinstance(watched, Pid) else watched[1]
        if node != conn.peer_name:
            self._forged(conn, f"DOWN for monitor {msg.ref!r}, which watches {node}")
        self._entry.down(msg.owner, msg.ref, decode_term(msg.reason))

    # ------------------------------------------------------------- spawn

    def _spawn_request(self, conn: Connection, msg: control.SpawnRequest) -> None:
        self._theirs(conn, "spawner", msg.sender)
        self._theirs(conn, "spawn ref", msg.ref)
        try:
            fn = self.spawn_policy.resolve(msg.function)
            args, kwargs = decode_term(msg.args)
            self.spawn_policy.check_arguments(msg.function, args)
            pid = self._entry.spawn(
                fn,
                tuple(args),
                dict(kwargs),
                SpawnOptions(
                    sender=msg.sender,
                    name=msg.name,
                    trap_exits=msg.trap_exits,
                    link=msg.link,
                    monitor=msg.ref if msg.monitor else None,
                ),
            )
        except NameAlreadyRegistered as exc:
            result = encode_term((ALREADY_REGISTERED, exc.holder))
            conn.send_control(control.SpawnReply(ref=msg.ref, ok=False, result=result))
            return
        except Exception as exc:
            logger.warning(
                "refused remote spawn of %r from %s: %s",
                msg.function,
                conn.peer_name,
                exc,
                extra={"event": "spawn_refused", "peer": conn.peer_name},
            )
            kind = _spawn_refusal_kind(exc)
            conn.send_control(
                control.SpawnReply(
                    ref=msg.ref,
                    ok=False,
                    result=encode_term((kind, f"{type(exc).__name__}: {exc}")),
                )
            )
            return
        conn.send_control(control.SpawnReply(ref=msg.ref, ok=True, result=encode_term(pid)))

    def _spawn_reply(self, conn: Connection, msg: control.SpawnReply) -> None:
        self._answer(conn, msg.ref, msg.ok, msg.result)

    def _answer(self, conn: Connection, ref: Ref, ok: bool, result: Any) -> None:
        self._ours(conn, "reply to request", ref)
        assert conn.peer_name is not None
        if not self._requests.answer(conn.peer_name, ref, ok, decode_term(result)):
            logger.debug("a late or unknown reply %r from %s was dropped", ref, conn.peer_name)

    # -------------------------------------------------------------- RPC

    def _node_rpc(self, conn: Connection, msg: control.NodeRpc) -> None:
        ok, result = self._rpc_answer(msg.op, decode_term(msg.arg))
        conn.send_control(control.NodeRpcReply(ref=msg.ref, ok=ok, result=encode_reason(result)))

    def _node_rpc_reply(self, conn: Connection, msg: control.NodeRpcReply) -> None:
        self._answer(conn, msg.ref, msg.ok, msg.result)

    # ------------------------------------------------------- connect_all

    def _peers(self, conn: Connection, msg: control.Peers) -> None:
        if self._on_peers is not None:
            self._on_peers(conn, msg)
