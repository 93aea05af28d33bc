"""What otpy-node says when a connection fails: one line of advice per failure reason."""

from __future__ import annotations

import logging
from typing import Final

from otpylib_dist.errors import ConnectFailure, ConnectFailureReason

logger = logging.getLogger(__name__)

__all__ = ["explain_connect_failure"]

# ------------------------------------------------------ failure messages


_TLS_ADVICE: Final = (
    "a node with --tls-dir accepts only nodes that also use --tls-dir, with certificates of "
    "the same CA"
)

#: What to do about each connect failure reason: ``{where}`` is the node (and
#: address), ``{detail}`` the failure's own text, ``{me}`` our node name.
#: Keyed by ``ConnectFailure.reason``, so rewording a message in the library
#: cannot change the advice. Reasons not here print their detail.
_ADVICE: Final[dict[ConnectFailureReason, str]] = {
    "bad_cookie": (
        "cannot connect to {where}: it refused our cookie (bad_cookie); every node of a "
        "cluster needs the same cookie: pass it with --cookie or --cookie-file, or set "
        "OTPY_COOKIE (default: ~/.otpylib.cookie)"
    ),
    "duplicate_name": (
        "cannot connect to {where}: it already has a connection from a node named {me} "
        "(duplicate_name), so another node is running under the name {me}; give every "
        "node a unique --name, or stop the other one first"
    ),
    "not_allowed": (
        "cannot connect to {where}: it refused the connection (not_allowed); it may be "
        "stopping, or accept only some nodes"
    ),
    # Our own check: another node answered there; the detail says which.
    "wrong_node": "cannot connect to {where}: {detail}",
    "refused": (
        "cannot connect to {where}: nothing accepts connections there ({detail}); check that "
        "the node is running and the port is right"
    ),
    "timeout": (
        "cannot connect to {where}: {detail}; the node may be overloaded or not an otpylib "
        "node (" + _TLS_ADVICE + ")"
    ),
    "closed": (
        "cannot connect to {where}: the peer closed the connection during the handshake "
        "(its log says why); " + _TLS_ADVICE
    ),
    "tls": "cannot connect to {where}: the TLS handshake failed{tls_detail}; " + _TLS_ADVICE,
}

#: Failures that may go away by themselves (the node is not up yet, or silent):
#: ``--connect`` retries these; any other is an answer, and retrying would not
#: change it.
_RETRYABLE: Final[frozenset[ConnectFailureReason]] = frozenset(
    {"no_address", "refused", "unreachable", "timeout"}
)


def explain_connect_failure(
    target: str,
    failure: ConnectFailure | None,
    *,
    me: str,
    address: tuple[str, int] | None = None,
    tls: bool = False,
    discovery: str | None = None,
    detail: str | None = None,
    tool: bool = True,
) -> str:
    """Turn a node's connection failure into one line saying what to do.

    Args:
        target: the node we tried to reach.
        failure: ``Node.last_connect_failure(target)`` (advice is by its reason).
        me: our own node name (a ``duplicate_name`` refusal is about it).
        address: where we dialled, when known.
        tls: whether we dialled with TLS (the advice differs).
        discovery: the ``--discovery`` mechanism used to find ``target``, if any.
        detail: why discovery found no address, when it knows (e.g. no port
            mapper answered, or the name belongs to an Erlang node).
        tool: for a subcommand (which takes ``--address``), not ``run``.

    Returns:
        ``"cannot connect to NODE: <what happened>; <what to do>"``.
    """
    where = f"{target} at {address[0]}:{address[1]}" if address else target
    reason = failure.reason if failure is not None else "closed"
    text = failure.detail if failure is not None else ""
    if reason == "no_address":
        if detail is not None:
            return f"cannot connect to {target}: {detail}"
        if discovery == "epmd":
            host = target.partition("@")[2]
            return (
                f"cannot connect to {target}: no node of that name is registered with the port "
                f"mapper on {host}; check that it runs, under that name (or give NAME@HOST:PORT)"
            )
        if discovery is not None:
            return (
                f"cannot connect to {target}: --discovery {discovery} did not find it; check "
                "that it runs, with the same cookie, where discovery can see it (or give "
                "NAME@HOST:PORT)"
            )
        address_option = " (or --address HOST:PORT)" if tool else ""
        return (
            f"cannot connect to {target}: no address known; give NAME@HOST:PORT{address_option}"
            ", or find it with --discovery epmd|mdns|static|dns"
        )
    if reason == "closed" and tls:
        reason = "tls"  # a TLS peer that rejects us closes without a word
    template = _ADVICE.get(reason)
    if template is None:
        return f"cannot connect to {where}: {text}"
    tls_detail = f" ({text})" if text and tls and reason == "tls" else ""
    return template.format(where=where, detail=text, me=me, tls_detail=tls_detail)
