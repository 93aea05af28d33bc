"""Zero-configuration discovery on a LAN with mDNS / DNS-SD (via ``zeroconf``).

Theory of operation. Each node registers one DNS-SD service of type
``_otpylib._tcp.local.`` and browses the same type:

- The *instance name* (the label before the service type) is derived from
  the cluster id and the node name: ``<short>-<digest>``. Node names such as
  ``a@192.168.1.5`` contain dots and can be up to ~300 bytes, while an
  instance label is at most 63 bytes; the readable short-name prefix helps
  whoever looks at the network with ``avahi-browse``, the digest keeps labels
  unique. Because the label is computable from a node name, ``resolve`` can
  ask for one node directly instead of waiting for the browse results.
- The TXT record carries ``node`` (the full node name), ``cluster`` (the
  ``cookie.cluster_id``, so clusters sharing a LAN ignore each other without
  revealing the cookie) and ``v`` (the distribution protocol version).
- The SRV record carries the port; A records carry the IPv4 address(es) of
  the node name's host.
- ``stop`` unregisters the service, which sends "goodbye" records (TTL 0), so
  peers report ``NodeDisappeared`` at once rather than when records expire.

Start-up timing (what decides how fast a cluster forms). A node learns of
the others from their answers to its queries and from their announcements;
they learn of it from its announcement, so that must come early. zeroconf's
own probing before an announcement takes 1.15-1.25 s (a random 150-250 ms,
then three probes 500 ms apart). We probe ourselves instead: one probe, a
"QM" question for the service type's pointers carrying our proposed records
in its authority section. Every running node of the service type answers a
probe at once and, because it is a QM question, by multicast (so the new
node learns of them all, and the answer reaches every mDNS stack sharing
port 5353 on a host). zeroconf's own probes are "QU" questions: those are
answered by unicast to port 5353 once the records were multicast within a
quarter of their TTL, and only one of the stacks sharing the port receives
that, so a duplicate started seconds after the first would go unnoticed.
After the probe we listen ``_PROBE_TIME_MS`` for a node holding our
instance name, then register with zeroconf's probing off
(``cooperating_responders``): the first announcement leaves ~0.3 s after
``start``. The only conflict there can be is a live node of this cluster
announcing the same node name (the instance name is derived from both), and
a live node answers a probe without delay. Two nodes of one name started
within the same quarter second both announce; the handshake's
``duplicate_name`` refusal then stops the second at its first connection.
All our other queries are "QM" too (see ``_QM``). ``python -m bench.mesh``
measures the result: a mesh of 8 nodes forms in about 0.3 s in one process.

Records use a TTL of two minutes (not RFC 6762's 75 minutes for service
records), so a node that died without saying goodbye drops out of peers'
caches in minutes; connection liveness is detected by ticks anyway.

IPv4 only: node names do not accept IPv6 literals yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
import socket
from collections.abc import Sequence
from typing import Final, cast

# DNSOutgoing, DNSQuestion and DNSRecord are importable from the package
# top level (not from its private modules, which move between releases) but
# not listed in its __all__; the probe in _name_taken needs them.
from zeroconf import (  # type: ignore[attr-defined]
    DNSOutgoing,
    DNSQuestion,
    DNSQuestionType,
    DNSRecord,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    NotRunningException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_PTR

from otpylib_dist.cookie import cluster_id as cookie_cluster_id
from otpylib_dist.discovery.base import (
    DEFAULT_RESOLVE_TIMEOUT,
    DiscoveryError,
    NodeAppeared,
    NodeDisappeared,
    _Subscribers,
)
from otpylib_dist.names import NodeNameError, split_node_name

logger = logging.getLogger(__name__)

__all__ = ["PROTOCOL_VERSION", "SERVICE_TYPE", "MdnsDiscovery", "instance_name"]

#: DNS-SD service type of otpylib nodes. The service part (``otpylib``) is
#: within RFC 6335's 15-character limit for service names.
SERVICE_TYPE: Final = "_otpylib._tcp.local."

#: What ``service_type`` must look like (RFC 6335 service names: at most 15
#: letters, digits and inner hyphens, not all digits, on TCP under ``local.``).
_SERVICE_TYPE_RE: Final = re.compile(
    r"^_(?=[^.]*[a-z])[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?\._tcp\.local\.$"
)

#: Distribution protocol version announced in TXT ``v``. Informational: a
#: node of another version is still reported, and the handshake refuses it
#: with ``version_mismatch``, which says more than silence would.
PROTOCOL_VERSION: Final = 1

#: Longest DNS label (RFC 1035), the limit for a DNS-SD instance name.
_MAX_LABEL: Final = 63
#: Hex digits of the digest in instance names: 48 bits, enough that two nodes
#: of one cluster never collide by accident.
_DIGEST_HEX: Final = 12
#: Longest TXT ``key=value`` string (one length byte, RFC 6763 section 6.1).
_MAX_TXT_STRING: Final = 255
#: TTL of every record we publish, seconds (see the module docstring).
_RECORD_TTL: Final = 120
#: Milliseconds to wait for a browsed service's records when it appears. An
#: announcement carries them all, so the lookup is usually answered from the
#: cache at once; this bounds the wait for a node whose records were lost.
_LOOKUP_TIMEOUT_MS: Final = 3000
#: Milliseconds ``start`` listens for a live node already holding our instance
#: name before announcing: RFC 6762's probe interval (section 8.1). Responders
#: answer a probe at once, without the random delay of other multicast
#: answers, so on a LAN the answer comes well within this.
_PROBE_TIME_MS: Final = 250
#: How we ask: "QM" questions, answered by multicast. zeroconf asks "QU"
#: (answer by unicast) first by default, and a unicast answer sent to port
#: 5353 of a host where several mDNS stacks share that port (several nodes,
#: or a node and avahi) reaches only one of them: the asker may wait a second
#: or more for the retry. A multicast answer reaches every stack.
_QM: Final = DNSQuestionType.QM
#: Seconds ``stop`` gives the goodbye packets and socket teardown before it
#: gives up waiting; shutdown must never hang on a network.
_STOP_TIMEOUT: Final = 5.0


def instance_name(cluster: str, node_name: str) -> str:
    """Return the DNS-SD instance label announcing ``node_name`` in ``cluster``.

    ``<short>-<digest>``: the node's short name cut to fit, then a digest of
    the cluster id and the full node name. At most 63 bytes, only letters,
    digits, ``_`` and ``-``, as validated node names guarantee.
    """
    short = node_name.partition("@")[0]
    digest = hashlib.sha256(f"{cluster}\0{node_name}".encode()).hexdigest()[:_DIGEST_HEX]
    return f"{short[: _MAX_LABEL - _DIGEST_HEX - 1]}-{digest}"


class MdnsDiscovery(_Subscribers):
    """Find nodes of the same cluster on the local network with mDNS.

    Use it when nodes share a LAN (or a host) and you do not want to list
    them: each node announces itself and reports the others as they appear
    and leave. Multicast must reach the nodes: it does not cross routers, and
    many cloud networks drop it (use DNS or static discovery there).

    Args:
        cookie: the cluster cookie; only its ``cluster_id`` is used and sent.
        cluster: the cluster id itself, instead of ``cookie`` (give exactly one).
        interfaces: IPv4 addresses of the interfaces to use; default all.
            Tests use ``["127.0.0.1"]`` to stay on loopback.
        service_type: DNS-SD type to announce and browse; change it only to
            keep separate test runs apart.
        announce: ``False`` to browse and resolve without announcing this node.
        browse: ``False`` not to watch for nodes (no events, empty
            ``known_nodes``); ``resolve`` still asks the network. For tools
            that only ask one node something, such as ``otpy-node ping``:
            they then send one question instead of drawing answers from
            every node.

    Raises:
        DiscoveryError: neither or both of ``cookie`` and ``cluster`` were
            given, or ``service_type`` is not a valid ``_name._tcp.local.``.
    """

    def __init__(
        self,
        cookie: str | None = None,
        *,
        cluster: str | None = None,
        interfaces: Sequence[str] | None = None,
        service_type: str = SERVICE_TYPE,
        announce: bool = True,
        browse: bool = True,
    ) -> None:
        super().__init__()
        if (cookie is None) == (cluster is None):
            raise DiscoveryError("MdnsDiscovery needs exactly one of cookie= or cluster=")
        self._cluster = cluster if cluster is not None else cookie_cluster_id(str(cookie))
        if not self._cluster:
            raise DiscoveryError("MdnsDiscovery: the cluster id is empty")
        if not _SERVICE_TYPE_RE.match(service_type):
            raise DiscoveryError(
                f"{service_type!r} is not a DNS-SD service type like '_otpylib._tcp.local.'"
            )
        self._service_type = service_type
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._announce = announce
        self._browse = browse
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[object] | None = None
        self._node_name: str | None = None
        #: instance label -> (node name, host, port) of peers seen.
        self._peers: dict[str, tuple[str, str, int]] = {}
        #: instance label -> running record lookup.
        self._lookups: dict[str, asyncio.Task[None]] = {}

    @property
    def cluster(self) -> str:
        """The cluster id announced and matched (public; derived from the cookie)."""
        return self._cluster

    def known_nodes(self) -> dict[str, tuple[str, int]]:
        """Nodes seen and not withdrawn: node name -> (host, port). A snapshot."""
        return {node: (host, port) for node, host, port in self._peers.values()}

    # ----------------------------------------------------------- lifecycle

    async def start(self, node_name: str, host: str, port: int) -> None:
        """Open the mDNS sockets, browse for peers and announce ``node_name``.

        Returns once the name has been probed for conflicts (a quarter of a second);
        the announcements continue in the background.

        Raises:
            DiscoveryError: the node name is invalid or too long for a TXT
                record, another node of this cluster already announces the
                same name, or the mDNS sockets cannot be opened or served.
        """
        if self._aiozc is not None:
            raise DiscoveryError("MdnsDiscovery.start() called twice; call stop() first")
        try:
            split_node_name(node_name)
        except NodeNameError as exc:
            raise DiscoveryError(f"cannot announce {node_name!r} over mDNS: {exc}") from exc
        properties = {"node": node_name, "cluster": self._cluster, "v": str(PROTOCOL_VERSION)}
        for key, value in properties.items():
            if len(key) + 1 + len(value.encode()) > _MAX_TXT_STRING:
                raise DiscoveryError(
                    f"node name {node_name!r} is too long to announce over mDNS (a TXT entry "
                    f"holds {_MAX_TXT_STRING} bytes); use a shorter host name"
                )
        self._node_name = node_name
        interfaces: list[str] | InterfaceChoice = (
            self._interfaces if self._interfaces is not None else InterfaceChoice.All
        )
        try:
            self._aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except OSError as exc:
            raise DiscoveryError(
                f"cannot open mDNS sockets on {self._interfaces or 'all interfaces'}: {exc}; "
                "check that UDP port 5353 and multicast are available"
            ) from exc
        try:
            addresses = await self._browse_and_announce(node_name, host, port, properties)
        except NonUniqueNameException as exc:
            await self.stop()
            raise DiscoveryError(
                f"node {node_name} is already announced by another node of this cluster on the "
                "network; node names must be unique, choose another --name"
            ) from exc
        except BaseException:
            await self.stop()
            raise
        if addresses is None:
            return
        logger.info(
            "mDNS: announcing %s at %s:%d (cluster %s)",
            node_name,
            ",".join(addresses) or host,
            port,
            self._cluster,
        )

    async def _browse_and_announce(
        self, node_name: str, host: str, port: int, properties: dict[str, str]
    ) -> list[str] | None:
        """Start the browser, then register; return the addresses announced (None: browse only)."""
        assert self._aiozc is not None
        if self._browse:
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf,
                self._service_type,
                handlers=[self._on_state_change],
                question_type=_QM,
            )
        if not self._announce:
            return None
        label = instance_name(self._cluster, node_name)
        addresses = await _ipv4_addresses(split_node_name(node_name)[1], host)
        info = AsyncServiceInfo(
            self._service_type,
            f"{label}.{self._service_type}",
            port=port,
            properties=properties,
            server=f"otpy-{label.rpartition('-')[2]}.local.",
            host_ttl=_RECORD_TTL,
            other_ttl=_RECORD_TTL,
            parsed_addresses=addresses,
        )
        if await _name_taken(self._aiozc.zeroconf, info):
            raise NonUniqueNameException(info.name)
        # Probing done above (see the module docstring): announce at once.
        announcing = await self._aiozc.async_register_service(info, cooperating_responders=True)
        # Registered: from here on stop() must withdraw it.
        self._info = info
        self._announcing = asyncio.ensure_future(announcing)
        self._announcing.add_done_callback(_log_failure)
        return addresses

    async def stop(self) -> None:
        """Say goodbye (peers see ``NodeDisappeared``), stop browsing, close sockets."""
        aiozc, self._aiozc = self._aiozc, None
        for task in self._lookups.values():
            task.cancel()
        self._lookups.clear()
        if aiozc is None:
            return
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                if self._announcing is not None:
                    self._announcing.cancel()
                    # Its own failure, if any, was logged by _log_failure.
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._announcing
                if self._info is not None:
                    await (await aiozc.async_unregister_service(self._info))
                    logger.info("mDNS: withdrew %s", self._node_name)
                if self._browser is not None:
                    await self._browser.async_cancel()
                await aiozc.async_close()
        except TimeoutError:
            logger.warning("mDNS: stop did not finish within %.0f s; closing", _STOP_TIMEOUT)
            aiozc.zeroconf.close()
        finally:
            self._announcing = None
            self._info = None
            self._browser = None
            self._peers.clear()

    # ----------------------------------------------------------- resolving

    async def resolve(
        self, node_name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT
    ) -> tuple[str, int] | None:
        """Return where ``node_name`` listens, asking the network if it was not seen yet.

        Raises:
            DiscoveryError: ``start`` has not been called.
        """
        for node, host, port in self._peers.values():
            if node == node_name:
                return host, port
        if self._aiozc is None:
            raise DiscoveryError("MdnsDiscovery.resolve() needs start() first")
        label = instance_name(self._cluster, node_name)
        info = AsyncServiceInfo(self._service_type, f"{label}.{self._service_type}")
        if not await info.async_request(self._aiozc.zeroconf, timeout * 1000, _QM):
            logger.debug("mDNS: %s did not answer within %.1f s", node_name, timeout)
            return None
        peer = self._peer_from(info)
        if peer is None or peer[0] != node_name:
            return None
        return peer[1], peer[2]

    # -------------------------------------------------- browser callbacks

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Called by zeroconf in the event loop; must not block."""
        if self._aiozc is None:
            return
        label = name[: -len(service_type) - 1] if name.endswith(service_type) else name
        if state_change is ServiceStateChange.Removed:
            pending = self._lookups.pop(label, None)
            if pending is not None:
                pending.cancel()
            peer = self._peers.pop(label, None)
            if peer is not None:
                logger.info("mDNS: %s withdrew", peer[0])
                self._emit(NodeDisappeared(peer[0]))
            return
        if label not in self._lookups:
            task = asyncio.get_running_loop().create_task(self._lookup(label, name))
            self._lookups[label] = task

    async def _lookup(self, label: str, name: str) -> None:
        try:
            aiozc = self._aiozc
            if aiozc is None:
                return
            info = AsyncServiceInfo(self._service_type, name)
            if not await info.async_request(aiozc.zeroconf, _LOOKUP_TIMEOUT_MS, _QM):
                logger.debug("mDNS: no records for %s", name)
                return
            peer = self._peer_from(info)
            if peer is None or peer[0] == self._node_name:
                return
            if self._peers.get(label) != peer:
                self._peers[label] = peer
                logger.info("mDNS: found %s at %s:%d", *peer)
                self._emit(NodeAppeared(*peer))
        except Exception:
            logger.exception("mDNS: looking up %s failed", name)
        finally:
            if self._lookups.get(label) is asyncio.current_task():
                del self._lookups[label]

    def _peer_from(self, info: AsyncServiceInfo) -> tuple[str, str, int] | None:
        """Check a service's records; return (node, host, port) if it is one of ours."""
        props = info.decoded_properties
        node, cluster = props.get("node"), props.get("cluster")
        if cluster != self._cluster:
            logger.debug("mDNS: ignoring %s of another cluster", info.name)
            return None
        if node is None or info.port is None:
            logger.debug("mDNS: ignoring %s: no node name or port", info.name)
            return None
        try:
            _, name_host = split_node_name(node)
        except NodeNameError:
            logger.debug("mDNS: ignoring %s: bad node name %r", info.name, node)
            return None
        addresses = info.parsed_addresses(IPVersion.V4Only)
        host = name_host if name_host in addresses or not addresses else addresses[0]
        return node, host, info.port


async def _name_taken(zeroconf: Zeroconf, info: AsyncServiceInfo) -> bool:
    """Probe once for ``info``'s instance name; True if a live node already holds it.

    The probe is a "QM" question for the service type's pointers carrying
    the records we propose (pointer, SRV, TXT, addresses) as authority
    records, as RFC 6762 section 8.2 describes; zeroconf's own probe (from
    ``generate_service_query``) is a "QU" question. A responder answers a
    probe at once, and a QM question always by multicast, so the answer
    arrives even where several mDNS stacks share UDP port 5353 on one host,
    and it also tells us (and everyone) about every node already running.
    The SRV record also keeps two nodes probing for one name from sending
    the same bytes (their ports differ): zeroconf drops a QM query identical
    to one it received less than a second before, and multicast queries all
    have message id 0.

    Raises:
        DiscoveryError: the mDNS engine did not start.
    """
    try:
        await zeroconf.async_wait_for_start()
    except NotRunningException as exc:
        raise DiscoveryError(
            "the mDNS engine did not start; check that UDP port 5353 and multicast are available"
        ) from exc
    # multicast=False only leaves out the cache-flush bits, which belong in
    # responses (RFC 6762 section 10.2); async_send multicasts it all the same.
    probe = DNSOutgoing(_FLAGS_QR_QUERY, multicast=False)
    probe.add_question(DNSQuestion(info.type, _TYPE_PTR, _CLASS_IN))
    # add_authorative_answer() takes pointers only; the list takes any record.
    authorities = cast("list[DNSRecord]", probe.authorities)
    authorities += [info.dns_pointer(), info.dns_service(), info.dns_text()]
    authorities += info.dns_addresses()
    zeroconf.async_send(probe)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _PROBE_TIME_MS / 1000
    while zeroconf.cache.current_entry_with_name_and_alias(info.type, info.name) is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        # Woken early by any cache update.
        await zeroconf.async_wait(remaining * 1000)
    return True


def _log_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("mDNS: announcing failed: %s", future.exception())


async def _ipv4_addresses(name_host: str, host: str) -> list[str]:
    """IPv4 addresses to publish in A records for a node reached at ``host``."""
    for candidate in (host, name_host):
        try:
            if ipaddress.ip_address(candidate).version == 4:
                return [candidate]
        except ValueError:
            pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, None, family=socket.AF_INET, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        logger.warning(
            "mDNS: cannot resolve %s (%s); announcing without an address, peers will "
            "use the host name",
            host,
            exc,
        )
        return []
    return sorted({str(sockaddr[0]) for *_, sockaddr in infos})
