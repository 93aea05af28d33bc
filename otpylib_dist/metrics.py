"""A Prometheus endpoint for a node: ``otpy-node run --metrics HOST:PORT`` or :func:`start_metrics`.

Why read at scrape time. A metrics library's counters cost a method call
and a lock per increment; on the message path that is a measurable share
of a remote send. Instead the node keeps plain int counters where the
work happens (``RuntimeStatistics``, ``PeerStatistics``,
``NodeStatistics``), and a custom collector turns a snapshot of them into
metric families when Prometheus asks (every 15 s or so). Nothing here runs
per message.

Why serve from the event loop. ``prometheus_client``'s own HTTP server runs
in a thread, and a collector reading the node's tables from another
thread could see them change mid-read. Here a small asyncio server answers
``GET /metrics`` on the node's own loop, so each scrape is one consistent
snapshot; the text is produced by ``prometheus_client`` (the format is
never written by hand here).

Labels stay bounded: by peer node (visible peers only; hidden tool nodes
such as the CLI are counted in ``otpy_hidden_connections``), by exit kind,
by nodedown or refusal reason (closed sets), never by pid.

Needs the optional dependency ``prometheus_client`` (``pip install
'otpylib[metrics]'``); the rest of the node runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from otpylib.runtime.data import EXIT_KINDS
from otpylib_dist.vitals import LAG_BUCKETS, loop_lag, rss_bytes

if TYPE_CHECKING:
    from otpylib_dist.node import DistributedBackend
    from otpylib_dist.statistics import PeerStatistics

logger = logging.getLogger(__name__)

__all__ = ["MetricsServer", "NodeCollector", "start_metrics"]

#: Longest request head accepted (request line and headers): a scraper
#: sends a few hundred bytes; anything longer is not one.
MAX_REQUEST_HEAD: Final = 8192
#: Seconds a client gets to send its request before it is dropped.
REQUEST_TIMEOUT: Final = 10.0

_STATES: Final = ("up", "handshaking", "down")


#: Peers that went down and are still reported (state "down"): at most this
#: many, the longest unseen forgotten first, so label cardinality stays
#: bounded where node names churn (pods with unique names).
MAX_REMEMBERED_PEERS = 256


class NodeCollector(Collector):
    """Reads a node's counters at scrape time and yields Prometheus metric families.

    Peers that a scrape saw up and that went down stay listed with state
    ``down`` (a dashboard then shows the gap), bounded by the visible nodes
    of the cluster.
    """

    def __init__(self, node: DistributedBackend) -> None:
        self._node = node
        # Peers seen up, oldest first (a dict as an ordered set), so a peer that
        # went down is still reported as down; bounded, since names can churn.
        self._seen: dict[str, None] = {}

    def collect(self) -> Iterable[Metric]:
        """Build every family from one snapshot of the node (runs on the node's loop)."""
        node = self._node
        stats = node.statistics()
        netstats = node.node_statistics()
        peers = node.peer_statistics()
        info = GaugeMetricFamily(
            "otpy_node_info", "This node's name and creation.", labels=["node", "creation"]
        )
        info.add_metric([node.node_name, str(node.creation)], 1)
        yield info
        yield GaugeMetricFamily(
            "otpy_uptime_seconds", "Seconds since the node started.", value=stats.uptime_seconds
        )
        yield GaugeMetricFamily(
            "otpy_processes", "Processes alive now.", value=stats.active_processes
        )
        yield CounterMetricFamily(
            "otpy_processes_spawned", "Processes spawned since start.", value=stats.total_spawned
        )
        exits = CounterMetricFamily(
            "otpy_process_exits", "Processes ended, by kind of exit reason.", labels=["reason"]
        )
        for kind in EXIT_KINDS:
            exits.add_metric([kind], stats.exits.get(kind, 0))
        yield exits
        yield CounterMetricFamily(
            "otpy_messages_delivered",
            "Messages and signals-as-messages delivered to local mailboxes.",
            value=stats.messages_processed,
        )
        yield from _mailbox_families(node)
        yield from self._peer_families(peers)
        yield CounterMetricFamily(
            "otpy_nodeups", "Connections to peer nodes that came up.", value=netstats.nodeups
        )
        downs = CounterMetricFamily(
            "otpy_nodedowns", "Connections to peer nodes that went down.", labels=["reason"]
        )
        for reason, count in sorted(netstats.nodedowns.items()):
            downs.add_metric([reason], count)
        yield downs
        yield CounterMetricFamily(
            "otpy_spin_sessions",
            "Times the event loop polled after traffic instead of sleeping (busy wait).",
            value=netstats.spin_sessions,
        )
        yield CounterMetricFamily(
            "otpy_spin_sessions_starved",
            "Spin sessions that found every CPU taken; the node then sleeps for a while.",
            value=netstats.spin_sessions_starved,
        )
        refusals = CounterMetricFamily(
            "otpy_handshake_refusals",
            "Handshakes that ended refused (by us or the peer).",
            labels=["reason"],
        )
        for reason, count in sorted(netstats.refusals.items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield _lag_family()
        rss, _current = rss_bytes()
        yield GaugeMetricFamily(
            "otpy_resident_memory_bytes", "Resident memory of the node's OS process.", value=rss
        )

    def _peer_families(self, peers: list[PeerStatistics]) -> Iterable[Metric]:
        visible = [p for p in peers if not p.hidden]
        labels = ["peer"]  # bounded: visible peer nodes only
        sent = CounterMetricFamily(
            "otpy_peer_messages_sent", "Messages sent to a peer.", labels=labels
        )
        received = CounterMetricFamily(
            "otpy_peer_messages_received", "Messages received from a peer.", labels=labels
        )
        bytes_out = CounterMetricFamily(
            "otpy_peer_bytes_sent", "Bytes written to a peer.", labels=labels
        )
        bytes_in = CounterMetricFamily(
            "otpy_peer_bytes_received", "Bytes read from a peer.", labels=labels
        )
        missed = CounterMetricFamily(
            "otpy_peer_ticks_missed",
            "Tick checks that found a peer silent for over half of net_ticktime.",
            labels=labels,
        )
        heard = GaugeMetricFamily(
            "otpy_peer_seconds_since_heard",
            "Seconds since the last bytes from a peer.",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "otpy_peer_connection_state",
            "1 for the state the connection to a peer is in (up, handshaking, down).",
            labels=["peer", "state"],
        )
        now: dict[str, str] = {}
        for p in visible:
            if p.state == "up" or p.peer not in now:
                now[p.peer] = p.state
            if p.state != "up":
                continue
            self._seen.pop(p.peer, None)
            self._seen[p.peer] = None
            if len(self._seen) > MAX_REMEMBERED_PEERS:
                del self._seen[next(iter(self._seen))]  # the longest unseen
            sent.add_metric([p.peer], p.messages_out)
            received.add_metric([p.peer], p.messages_in)
            bytes_out.add_metric([p.peer], p.bytes_out)
            bytes_in.add_metric([p.peer], p.bytes_in)
            missed.add_metric([p.peer], p.ticks_missed)
            heard.add_metric([p.peer], p.seconds_since_heard)
        for peer in sorted(self._seen.keys() | now.keys()):
            current = now.get(peer, "down")
            for s in _STATES:
                state.add_metric([peer, s], 1 if s == current else 0)
        hidden = GaugeMetricFamily(
            "otpy_hidden_connections",
            "Connections from hidden nodes (CLI tools) now.",
            value=sum(1 for p in peers if p.hidden and p.state == "up"),
        )
        yield from (sent, received, bytes_out, bytes_in, missed, heard, state, hidden)


def _mailbox_families(node: DistributedBackend) -> Iterable[Metric]:
    largest = 0
    total = 0
    for pid in node.processes():
        info = node.process_info(pid)
        if info is not None:
            total += info.message_queue_len
            largest = max(largest, info.message_queue_len)
    yield GaugeMetricFamily(
        "otpy_largest_mailbox_messages", "Messages waiting in the fullest mailbox.", value=largest
    )
    yield GaugeMetricFamily(
        "otpy_mailbox_messages", "Messages waiting in all mailboxes.", value=total
    )


def _lag_family() -> Metric:
    lag = loop_lag().statistics()
    family = HistogramMetricFamily(
        "otpy_event_loop_lag_seconds", "Lateness of a periodic timer on the node's event loop."
    )
    buckets = [(repr(bound), float(n)) for bound, n in zip(LAG_BUCKETS, lag.buckets, strict=True)]
    buckets.append(("+Inf", float(lag.count)))
    family.add_metric([], buckets, sum_value=lag.sum_seconds)
    return family


class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it.

    Attributes:
        host: the address it is bound to.
        port: the TCP port it listens on (useful after asking for port 0).
        registry: the ``prometheus_client`` registry it serves; register
            your application's own collectors or metrics here to publish
            them on the same endpoint.
    """

    def __init__(
        self, server: asyncio.Server, registry: CollectorRegistry, host: str, port: int
    ) -> None:
        self._server = server
        self.registry = registry
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        """Stop listening and wait until the server is closed (idempotent)."""
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, content_type, body = self._answer(head.decode("latin-1"))
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            if not head.startswith(b"HEAD "):
                writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # not a scraper, or a slow one: drop it
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: str) -> tuple[str, str, bytes]:
        request, _, rest = head.partition("\r\n")
        parts = request.split(" ")
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET /metrics\n"
        path = parts[1].partition("?")[0]
        if path not in ("/metrics", "/"):
            return "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        accept = ""
        for line in rest.split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "accept":
                accept = value.strip()
        encoder, content_type = choose_encoder(accept)
        try:
            return "200 OK", content_type, encoder(self.registry)
        except Exception:
            logger.exception("collecting metrics failed", extra={"event": "metrics_failed"})
            return "500 Internal Server Error", "text/plain", b"collecting metrics failed\n"


async def start_metrics(
    node: DistributedBackend, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Serve ``node``'s metrics at ``http://HOST:PORT/metrics`` until closed.

    Also starts the event-loop lag monitor (``vitals.loop_lag``) and
    publishes the OS process's CPU time and file descriptors
    (``prometheus_client``'s process collector).

    Args:
        node: an initialized node.
        host: address to bind; ``0.0.0.0`` for every interface (containers).
        port: TCP port; 0 picks a free one (see ``MetricsServer.port``).
            9464 is Prometheus's conventional "exporter" port range.

    Returns:
        The running server; ``await server.close()`` stops it.

    Raises:
        OSError: the address cannot be bound (the message names it).
    """
    loop_lag()
    registry = CollectorRegistry()
    registry.register(NodeCollector(node))
    registry.register(ProcessCollector(registry=None))
    holder: list[MetricsServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await holder[0]._handle(reader, writer)

    try:
        server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_HEAD)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose another "
            "--metrics HOST:PORT",
        ) from exc
    bound = server.sockets[0].getsockname()
    metrics = MetricsServer(server, registry, host, int(bound[1]))
    holder.append(metrics)
    logger.info(
        "metrics at %s",
        metrics.url,
        extra={"event": "metrics_listening", "address": f"{host}:{metrics.port}"},
    )
    return metrics
