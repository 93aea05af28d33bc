"""Message size against remote throughput, and a small message's wait behind a large one.

Two OS processes on loopback, as ``bench.dist``. For each payload size
(16 B to 64 MiB, powers of 4), one process sends ``(msg, i, <size bytes>)``
messages to a sink on the other node and waits for its ``done``; fewer
messages for big sizes, so each size takes a bounded time. Printed per
size: messages/s, MB/s, and the ratio to the *raw floor* (plain asyncio
TCP + msgspec frames between two processes, no runtime) and to two
*Erlang* nodes (when ``erl`` is installed) sending the same binaries, all
in the same run.

Head-of-line blocking: a small message's round trip alone, then the same
round trip started right after a large message (the largest size) was
sent to another process of the same node, over the same connection, by
the same process and by another one. The *excess* (behind minus alone) is
how long the large message held the small one up. Messages over 256 KiB
travel in fragments (``otpylib_dist/protocol/fragments.py``) paced by an
acknowledged window, so another sender's small message waits behind at
most a few fragments; Erlang 22+ fragments too, without a window (its
small message waits behind whatever fills the socket buffers). The *same
sender* rows stay blocked in both: one process's messages go out in order.
The issue's target: excess <= ~1 ms.

A node refuses a message over its ``max_message_size`` (256 MiB by
default) at the sender: when the largest size does not fit, the largest
that does is used and printed.

Usage: ``python -m bench.sizes [--max-size BYTES] [--budget BYTES] [--asyncio]
[--no-erlang] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bench.harness import (
    COOKIE,
    erlang_missing,
    erlang_pair,
    exit_on_sigterm,
    run_loop,
    serve_until_orphaned,
    start_child,
    stop,
    use_uvloop,
    write_port_file,
)
from otpylib import Pid, atom, process

MSG = atom.ensure("msg")
START = atom.ensure("start")
DONE = atom.ensure("done")
#: Small-message round trips timed alone (the median is the baseline).
ALONE_TRIPS = 50
#: Large-then-small rounds (the median is printed).
HOL_ROUNDS = 3
#: Below this the raw floor batches frames into one write (as a node's coalescing does).
_BATCH_BELOW = 1 << 16


def sizes_up_to(largest: int) -> list[int]:
    """16, 64, 256, ... up to ``largest`` (which is always the last)."""
    out, size = [], 16
    while size < largest:
        out.append(size)
        size *= 4
    return [*out, largest]


def count_for(size: int, budget: int, most: int, least: int) -> int:
    """How many messages of ``size`` bytes: about ``budget`` bytes, within [least, most]."""
    return max(least, min(most, budget // size))


@dataclass(frozen=True, slots=True)
class Point:
    """One size of the curve: ``count`` messages of ``size`` bytes took ``seconds``."""

    size: int
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.count / self.seconds

    @property
    def mbytes(self) -> float:
        """Payload megabytes (10^6) per second."""
        return self.count * self.size / self.seconds / 1e6


@dataclass(frozen=True, slots=True)
class Blocking:
    """Head-of-line figures, microseconds: a small round trip alone and behind ``size`` bytes."""

    size: int
    alone: float
    behind: float
    #: The small message came from another process than the large one.
    other_sender: bool

    @property
    def excess(self) -> float:
        """How long the large message held the small one up."""
        return self.behind - self.alone


@dataclass(frozen=True, slots=True)
class Curve:
    """What one implementation measured."""

    points: list[Point]
    #: Same sender, then other sender (empty for the raw floor).
    blocking: list[Blocking]
    note: str = ""


# ----------------------------------------------------------------- otpylib


async def _sink() -> None:
    """``(START, sender, n)``, then ``n`` messages, then ``DONE`` to the sender."""
    receive, send = process.receive, process.send
    await process.register("sink")
    while True:
        _, sender, n = await receive()
        for _ in range(n):
            await receive()
        await send(sender, DONE)


async def _drop() -> None:
    """Takes and forgets: the large message of the head-of-line rounds, and warm-ups."""
    receive = process.receive
    await process.register("drop")
    while True:
        await receive()


async def _echo() -> None:
    receive, send = process.receive, process.send
    await process.register("echo")
    while True:
        sender, x = await receive()
        await send(sender, x)


async def _serve_node(port_file: str) -> None:
    from otpylib_dist import Node

    node = Node("size_b@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    for fn in (_sink, _drop, _echo):
        await node.spawn(fn)
    write_port_file(port_file, str(node.port))
    await serve_until_orphaned()


async def _fitting(send: Any, target: Any, size: int) -> tuple[bytes, str]:
    """A ``size``-byte payload sent once to ``target``, or 1 KiB less if that is refused.

    A message over the node's ``max_message_size`` is refused at the sender.
    """
    try:
        payload = bytes(size)
        await send(target, (MSG, 0, payload))
        return payload, ""
    except Exception as exc:  # the node's encode error; its type is not ours to name
        payload = bytes(size - 1024)
        await send(target, (MSG, 0, payload))
        first = str(exc).split(";")[0]
        return payload, f"otpylib: {size} B refused ({first}); measured {len(payload)} B"


async def _pinger(echo: Any) -> None:
    """On ``(sender, i)``: one round trip to ``echo``, then its seconds to the sender."""
    receive, send = process.receive, process.send
    me = process.self()
    while True:
        sender, i = await receive()
        t0 = time.perf_counter()
        await send(echo, (me, i))
        await receive()
        await send(sender, time.perf_counter() - t0)


async def _small_trip(echo: Any, pinger: Pid | None, i: int) -> float:
    """Seconds of one small round trip to ``echo``, from this process or from ``pinger``."""
    if pinger is not None:
        await process.send(pinger, (process.self(), i))
        elapsed: float = await process.receive(timeout=300)
        return elapsed
    t0 = time.perf_counter()
    await process.send(echo, (process.self(), i))
    await process.receive(timeout=300)
    return time.perf_counter() - t0


async def _client_node(
    port: int, sizes: Sequence[int], budget: int, least: int, most: int
) -> Curve:
    from otpylib_dist import Node

    node = Node("size_a@127.0.0.1", cookie=COOKIE)
    await node.initialize()
    try:
        assert await node.connect("size_b@127.0.0.1", "127.0.0.1", port)
        result: asyncio.Future[Curve] = asyncio.get_running_loop().create_future()

        async def client() -> None:
            try:
                result.set_result(await _curve_node(sizes, budget, least, most))
            except BaseException as exc:
                result.set_exception(exc)
                raise

        await node.spawn(client)
        return await result
    finally:
        await node.shutdown()


async def _curve_node(sizes: Sequence[int], budget: int, least: int, most: int) -> Curve:
    send, receive = process.send, process.receive
    me = process.self()
    peer = "size_b@127.0.0.1"
    sink, drop, echo = ("sink", peer), ("drop", peer), ("echo", peer)
    await send(echo, (me, 0))
    await receive(timeout=10)
    points, note, big = [], "", b""
    for size in sizes:
        # One untimed message of this size first (a warm-up, and the frame-limit probe).
        payload, why = await _fitting(send, drop, size)
        note = note or why
        n = count_for(len(payload), budget, most=most, least=least)
        t0 = time.perf_counter()
        await send(sink, (START, me, n))
        for i in range(n):
            await send(sink, (MSG, i, payload))
        await receive(timeout=300)
        points.append(Point(len(payload), n, time.perf_counter() - t0))
        big = payload
    blocking = []
    for other in (False, True):
        pinger = await process.spawn(_pinger, args=[echo]) if other else None
        alone = [await _small_trip(echo, pinger, i) for i in range(ALONE_TRIPS)]
        behind = []
        for i in range(HOL_ROUNDS):
            await send(drop, (MSG, i, big))
            behind.append(await _small_trip(echo, pinger, i))
        median = statistics.median
        blocking.append(Blocking(len(big), median(alone) * 1e6, median(behind) * 1e6, other))
    return Curve(points, blocking, note)


# ---------------------------------------------------------------- raw floor

_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()


async def _serve_raw(port_file: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        left = 0
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            buf += data
            pos = 0
            while len(buf) - pos >= 4:
                (n,) = struct.unpack_from(">I", buf, pos)
                if len(buf) - pos - 4 < n:
                    break
                msg = _DEC.decode(memoryview(buf)[pos + 4 : pos + 4 + n])
                pos += 4 + n
                if msg[0] == "start":
                    left = msg[1]
                elif msg[0] == "msg":
                    left -= 1
                    if left == 0:
                        _write_frame(writer, "done")
            del buf[:pos]

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    write_port_file(port_file, str(server.sockets[0].getsockname()[1]))
    await serve_until_orphaned()


def _write_frame(writer: asyncio.StreamWriter, msg: Any) -> None:
    body = _ENC.encode(msg)
    writer.write(struct.pack(">I", len(body)))
    writer.write(body)


async def _client_raw(port: int, sizes: Sequence[int], budget: int, least: int, most: int) -> Curve:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # The node's transport limits (connection.py), not asyncio's 64 KiB, which
    # would make every large frame wait for the one before it.
    writer.transport.set_write_buffer_limits(high=4 << 20, low=1 << 20)
    points = []
    try:
        for size in sizes:
            payload = bytes(size)
            n = count_for(size, budget, most=most, least=least)
            t0 = time.perf_counter()
            _write_frame(writer, ("start", n))
            batch = bytearray()
            for i in range(n):
                body = _ENC.encode(("msg", i, payload))
                if size < _BATCH_BELOW:
                    batch += struct.pack(">I", len(body)) + body
                    if len(batch) < 1 << 16:
                        continue
                    writer.write(bytes(batch))
                    batch.clear()
                else:
                    writer.write(struct.pack(">I", len(body)))
                    writer.write(body)
                await writer.drain()
            writer.write(bytes(batch))
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            await reader.readexactly(length)
            points.append(Point(size, n, time.perf_counter() - t0))
    finally:
        writer.close()
    return Curve(points, [])


# ------------------------------------------------------------------ erlang

_ERL_SOURCE = """
-module(otpy_size_bench).
-export([serve/1, run/1]).

serve([_]) ->
    register(sink, spawn(fun sink/0)),
    register(drop, spawn(fun drop/0)),
    register(echo, spawn(fun echo/0)),
    receive stop -> ok end.

sink() -> receive {start, From, N} -> drain(N), From ! done end, sink().
drain(0) -> ok;
drain(N) -> receive _ -> drain(N - 1) end.
drop() -> receive _ -> drop() end.
echo() -> receive {From, X} -> From ! X end, echo().

wait_ready(Peer, 0) -> error({not_ready, Peer});
wait_ready(Peer, N) ->
    case net_adm:ping(Peer) =:= pong andalso
         rpc:call(Peer, erlang, whereis, [echo]) of
        Pid when is_pid(Pid) -> ok;
        _ -> timer:sleep(50), wait_ready(Peer, N - 1)
    end.

now_us() -> erlang:monotonic_time(microsecond).

run([PeerA, SpecA]) ->
    ok = wait_ready(PeerA, 400),
    Spec = [list_to_integer(X) || X <- string:tokens(atom_to_list(SpecA), ",")],
    [AloneTrips, HolRounds | Pairs] = Spec,
    Sink = {sink, PeerA}, Drop = {drop, PeerA}, Echo = {echo, PeerA},
    Echo ! {self(), 0}, receive 0 -> ok end,
    Sizes = sizes(Pairs),
    lists:foreach(
      fun({Size, N}) ->
              Payload = binary:copy(<<0>>, Size),
              Drop ! {msg, 0, Payload},
              T0 = now_us(),
              Sink ! {start, self(), N},
              [Sink ! {msg, I, Payload} || I <- lists:seq(1, N)],
              receive done -> ok end,
              io:format("SIZE ~p ~p ~p~n", [Size, N, now_us() - T0])
      end, Sizes),
    {Big, _} = lists:last(Sizes),
    BigPayload = binary:copy(<<0>>, Big),
    Self = self(),
    Pinger = spawn_link(fun() -> pinger(Echo) end),
    lists:foreach(
      fun(Trip) ->
              Alone = [Trip(I) || I <- lists:seq(1, AloneTrips)],
              Behind = [begin Drop ! {msg, I, BigPayload}, Trip(I) end
                        || I <- lists:seq(1, HolRounds)],
              io:format("HOL ~p ~p ~p~n", [Big, median(Alone), median(Behind)])
      end,
      [fun(I) -> trip(Echo, Self, I) end,
       fun(I) -> Pinger ! {Self, I}, receive {took, T} -> T end end]),
    halt(0).

trip(Echo, Self, I) ->
    T0 = now_us(), Echo ! {Self, I}, receive I -> ok end, now_us() - T0.

pinger(Echo) ->
    receive {From, I} -> From ! {took, trip(Echo, self(), I)} end,
    pinger(Echo).

sizes([S, N | Rest]) -> [{S, N} | sizes(Rest)];
sizes([]) -> [].

median(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).
"""


def _erlang(sizes: Sequence[int], budget: int, least: int, most: int) -> Curve | None:
    spec = [ALONE_TRIPS, HOL_ROUNDS]
    for size in sizes:
        spec += [size, count_for(size, budget, most=most, least=least)]
    out = erlang_pair(
        "otpy_size_bench", _ERL_SOURCE, serve=["x"], run=[",".join(map(str, spec))], timeout=600
    )
    points = [
        Point(int(m[1]), int(m[2]), int(m[3]) / 1e6)
        for m in re.finditer(r"^SIZE (\d+) (\d+) (\d+)$", out, re.M)
    ]
    hol = [
        Blocking(int(m[1]), float(m[2]), float(m[3]), other_sender=i == 1)
        for i, m in enumerate(re.finditer(r"^HOL (\d+) (\d+) (\d+)$", out, re.M))
    ]
    if len(points) != len(sizes) or len(hol) != 2:
        return None
    return Curve(points, hol)


# -------------------------------------------------------------------- main


def _size(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def _print(ours: Curve, raw: Curve, erl: Curve | None, why_no_erl: str, loop: str) -> None:
    print(f"\nbench.sizes: two OS processes on 127.0.0.1, one-way by payload size, {loop}")
    head = f"{'size':>9} {'msgs':>6} {'msg/s':>10} {'MB/s':>8} {'/ raw':>7}"
    head += f" {'raw MB/s':>9} {'/ erlang':>9} {'erl MB/s':>9}"
    print(head)
    for i, ours_at in enumerate(ours.points):
        raw_at = raw.points[i]
        line = (
            f"{_size(ours_at.size):>9} {ours_at.count:>6} {ours_at.rate:>10,.0f} "
            f"{ours_at.mbytes:>8,.1f} {ours_at.mbytes / raw_at.mbytes:>6.2f}x "
            f"{raw_at.mbytes:>9,.1f}"
        )
        if erl is not None:
            erl_at = erl.points[i]
            line += f" {ours_at.mbytes / erl_at.mbytes:>8.2f}x {erl_at.mbytes:>9,.1f}"
        print(line)
    if ours.note:
        print(ours.note)
    if erl is None:
        print(f"erlang: skipped ({why_no_erl})")
    print(
        "\nhead-of-line: a small message's round trip alone, and sent right after a large "
        "message to the same node (by the same process, or by another)"
    )
    head = f"{'':<10} {'sender':<7} {'large':>9} {'alone us':>10} {'behind us':>11}"
    print(f"{head} {'excess ms':>10}")
    rows = [("otpylib", ours.blocking), ("erlang", erl.blocking if erl else [])]
    for label, blocks in rows:
        for b in blocks:
            print(
                f"{label:<10} {'other' if b.other_sender else 'same':<7} {_size(b.size):>9} "
                f"{b.alone:>10.1f} {b.behind:>11.1f} {b.excess / 1e3:>10.2f}"
            )
    big = ours.points[-1]
    transfer = big.seconds / big.count * 1e6
    print(
        f"otpylib, other sender: the small message waited "
        f"{ours.blocking[1].excess / transfer:.2f}x the large message's own transfer time "
        f"({transfer / 1e3:.1f} ms; 1.0 = fully blocked); target excess <= ~1 ms"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the three curves and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.sizes", description=__doc__)
    parser.add_argument("--max-size", type=int, help="largest payload in bytes (default 64 MiB)")
    parser.add_argument(
        "--budget", type=int, help="about this many payload bytes per size (default 64 MiB)"
    )
    parser.add_argument("--asyncio", action="store_true", help="asyncio's own loop, not uvloop")
    parser.add_argument("--no-erlang", action="store_true", help="skip the Erlang column")
    parser.add_argument("--quick", action="store_true", help="up to 1 MiB, 1 MiB a size")
    parser.add_argument("--serve", choices=("node", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    largest = args.max_size or (1 << 20 if args.quick else 64 << 20)
    budget = args.budget or (1 << 20 if args.quick else 64 << 20)
    least, most = (2, 2_000) if args.quick else (4, 50_000)
    if largest < 16 or budget < 1:
        sys.exit("bench.sizes: --max-size must be >= 16 bytes and --budget >= 1")
    uvloop_on = use_uvloop(args.asyncio)
    if args.serve == "node":
        run_loop(_serve_node(args.port_file), uvloop_on)
        return
    if args.serve == "raw":
        run_loop(_serve_raw(args.port_file), uvloop_on)
        return
    exit_on_sigterm()
    sizes = sizes_up_to(largest)
    curves = {}
    for kind in ("raw", "node"):
        proc, port = start_child("bench.sizes", ["--serve", kind, *(["--asyncio"] * args.asyncio)])
        try:
            client = _client_raw if kind == "raw" else _client_node
            curves[kind] = run_loop(client(int(port), sizes, budget, least, most), uvloop_on)
        finally:
            stop(proc)
    why_no_erl = "--no-erlang" if args.no_erlang else (erlang_missing() or "")
    erl = None if why_no_erl else _erlang(sizes, budget, least, most)
    if erl is None and not why_no_erl:
        why_no_erl = "the Erlang run printed no result"
    loop = "uvloop" if uvloop_on else "asyncio default loop"
    _print(curves["node"], curves["raw"], erl, why_no_erl, loop)


if __name__ == "__main__":
    main()
