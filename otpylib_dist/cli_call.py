"""``otpy-node call`` and ``otpy-node rpc``: run code on a node from a shell.

Terms travel as JSON on the command line and in the answer. JSON has no
atoms or tuples, and Python code tells a tuple from a list, so the mapping
is explicit and goes both ways:

=====================  ==================================================
JSON                   term
=====================  ==================================================
``"text"``, numbers,   str, int/float, True/False, None
``true``, ``null``
``[1, "a"]``           a tuple ``(1, "a")`` (requests are usually tuples)
``{"list": [...]}``    a list
``{"atom": "ok"}``     the atom ``ok``
``{"bytes": "..."}``   bytes (the text is base64)
``{"pid": "..."}``     a pid (answers only: its printed form)
``{"map": [[k, v]]}``  a dict whose keys are not all strings
any other object       a dict with those string keys
=====================  ==================================================

So ``otpy-node call a@h kv '[{"atom": "get"}, "k"]'`` sends
``(atom("get"), "k")``, and an answer ``(ok, [1, 2])`` prints as
``[{"atom": "ok"}, {"list": [1, 2]}]``.

``rpc`` runs ``module:function(*args)`` on the node by remote-spawning
``rpc_runner`` (a module-level async function of this module, so it is
importable on every otpylib node): it awaits the function (a plain function's
result is used as it is) and sends the result back. Like Erlang's
``rpc:call``, the function runs in a process of its own on that node.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
from typing import TYPE_CHECKING, Any, Final

from otpylib import gen_server, process
from otpylib._gen import describe_reason
from otpylib.runtime.atoms import DOWN, KILL, NOPROC, TIMEOUT, Atom, atom
from otpylib.runtime.data import Pid, Ref
from otpylib.runtime.errors import OtpError

if TYPE_CHECKING:
    from otpylib_dist.node import DistributedBackend

logger = logging.getLogger(__name__)

__all__ = ["BadInput", "CallFailed", "call", "from_json", "rpc", "rpc_runner", "to_json"]

#: Tags of the objects that stand for a term JSON cannot write.
_TAGS: Final = ("atom", "list", "bytes", "pid", "map")
_OK: Final = atom.ensure("ok")
_ERROR: Final = atom.ensure("error")


class BadInput(ValueError):
    """The command line's JSON (or function reference) is not usable: exit code 2."""


class CallFailed(Exception):
    """The call or the function failed on the node: exit code 1, one line."""


def from_json(text: str, what: str) -> Any:
    """Parse ``text`` and turn it into a term by the mapping of this module.

    Raises:
        BadInput: not JSON, or a tagged object that is malformed.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{what} {text!r} is not JSON ({exc.msg}); quote strings twice, e.g. '\"text\"', "
            'and write tuples as arrays, atoms as {"atom": "name"}'
        ) from None
    return _term(value, what)


def _term(value: Any, what: str) -> Any:
    if isinstance(value, list):
        return tuple(_term(v, what) for v in value)
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "atom" and isinstance(inner, str) and inner:
            return atom.ensure(inner)
        if tag == "list" and isinstance(inner, list):
            return [_term(v, what) for v in inner]
        if tag == "bytes" and isinstance(inner, str):
            try:
                return base64.b64decode(inner, validate=True)
            except binascii.Error:
                raise BadInput(f'{what}: {{"bytes": ...}} needs base64 text') from None
        if tag == "map" and isinstance(inner, list):
            if not all(isinstance(kv, list) and len(kv) == 2 for kv in inner):
                raise BadInput(f'{what}: {{"map": ...}} needs a list of [key, value] pairs')
            return {_term(k, what): _term(v, what) for k, v in inner}
        if tag in _TAGS:
            raise BadInput(f"{what}: {{{tag!r}: ...}} is malformed; see otpy-node call --help")
    return {k: _term(v, what) for k, v in value.items()}


def to_json(term: Any) -> str:
    """Write a term as JSON by the mapping of this module (``str()`` for anything else)."""
    return json.dumps(_plain(term), sort_keys=False)


def _plain(term: Any) -> Any:
    if term is None or isinstance(term, bool | int | float | str):
        return term
    if isinstance(term, Atom):
        return {"atom": term.name}
    if isinstance(term, tuple):
        return [_plain(v) for v in term]
    if isinstance(term, list):
        return {"list": [_plain(v) for v in term]}
    if isinstance(term, bytes):
        return {"bytes": base64.b64encode(term).decode("ascii")}
    if isinstance(term, Pid):
        return {"pid": str(term)}
    if isinstance(term, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in term) or not term:
            return {k: _plain(v) for k, v in term.items()}
        return {"map": [[_plain(k), _plain(v)] for k, v in term.items()]}
    return str(term)


async def call(me: DistributedBackend, node: str, name: str, request: str, timeout: float) -> str:
    """``gen_server.call((name, node), request)`` from the tool's node; the answer as JSON.

    Raises:
        BadInput: ``request`` is not JSON.
        CallFailed: the call failed (``noproc``, ``timeout``, the server crashed).
    """
    term = from_json(request, "REQUEST")
    try:
        answer = await gen_server.call((name, node), term, timeout, runtime=me)
    except gen_server.CallError as exc:
        reason = exc.reason
        if reason is NOPROC:
            raise CallFailed(
                f"no process is registered as {name!r} on {node}; `otpy-node ps {node}` "
                "lists the names there"
            ) from None
        if reason is TIMEOUT:
            raise CallFailed(
                f"{name!r} on {node} did not answer within {timeout:g} s; raise --timeout if "
                "it is busy"
            ) from None
        raise CallFailed(f"call to {name!r} on {node} failed: {describe_reason(reason)}") from None
    except OtpError as exc:
        raise CallFailed(f"call to {name!r} on {node} failed: {exc}") from None
    return to_json(answer)


async def rpc(
    me: DistributedBackend, node: str, function: str, args: list[str], timeout: float
) -> str:
    """Run ``function(*args)`` on ``node`` (``rpc:call``); its result as JSON.

    Raises:
        BadInput: ``function`` is not ``module:function``, or an argument is not JSON.
        CallFailed: the function could not be run there, raised, or took too long.
    """
    module, sep, name = function.partition(":")
    if not sep or not module or not name:
        raise BadInput(f"rpc FUNCTION {function!r} is not package.module:function, e.g. os:getpid")
    terms = tuple(from_json(text, "ARGS") for text in args)
    done: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()

    async def ask() -> None:
        tag = process.make_ref()
        try:
            _, ref = await process.spawn_monitor(
                "otpylib_dist.cli_call:rpc_runner",
                (function, terms, process.self(), tag),
                node=node,
            )
        except OtpError as exc:
            done.set_result((_ERROR, f"cannot run it there: {exc}"))
            return

        def ours(m: Any) -> bool:
            return type(m) is tuple and (
                (len(m) == 3 and m[0] == tag) or (len(m) == 4 and m[0] is DOWN and m[1] == ref)
            )

        # The answer comes before the DOWN (one connection keeps order).
        msg = await process.receive(None, ours)
        if msg[0] is DOWN:
            done.set_result((_ERROR, f"its process ended with {describe_reason(msg[3])}"))
        else:
            done.set_result((msg[1], msg[2]))

    asker = await me.spawn(ask)
    try:
        status, value = await asyncio.wait_for(done, timeout)
    except TimeoutError:
        await me.exit(asker, KILL)
        raise CallFailed(
            f"{function} on {node} did not return within {timeout:g} s; raise --timeout if it "
            "takes longer"
        ) from None
    if status is not _OK:
        raise CallFailed(f"{function} on {node} failed: {value}")
    return to_json(value)


async def rpc_runner(function: str, args: tuple[Any, ...], reply_to: Pid, tag: Ref) -> None:
    """What ``rpc`` spawns on the node: run ``function(*args)``, send back the result.

    Sends ``(tag, ok, result)`` or ``(tag, error, text)`` to ``reply_to``.
    A result the codec cannot send is answered with an error naming its type.
    """
    from otpylib_dist.node import this_node

    try:
        # The node's spawn policy decides (its allow-list applies to rpc too);
        # a plain function runs in a worker thread, never on the event loop,
        # so a slow or blocking one cannot stall the node.
        fn = this_node().spawn_policy.resolve(function, require_async=False)
        if inspect.iscoroutinefunction(fn):
            result = await fn(*args)
        else:
            result = await asyncio.to_thread(fn, *args)
            if inspect.isawaitable(result):
                result = await result
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        await process.send(reply_to, (tag, _ERROR, describe_reason(exc)))
        return
    try:
        await process.send(reply_to, (tag, _OK, result))
    except Exception as exc:  # the codec refused the result
        await process.send(
            reply_to,
            (tag, _ERROR, f"its result ({type(result).__name__}) cannot be sent: {exc}"),
        )
