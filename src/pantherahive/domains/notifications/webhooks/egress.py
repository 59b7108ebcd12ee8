"""Outbound HTTP that cannot be turned against the inside of the network (webhooks).

Two rules:

* an address is refused unless it is plainly global — IPv6 forms that carry an IPv4
  address (IPv4-mapped, -compatible, -translated, NAT64, 6to4, Teredo) are judged by that
  IPv4 address, and prefixes whose target cannot be told (local-use NAT64) are refused;
* the host is resolved **once per connection**, every address checked, and the socket
  connected to a checked address — then its peer address is checked again before anything
  is sent. There is no second lookup for a rebinding DNS server to answer differently.
  The URL keeps its host name, so the ``Host`` header, TLS SNI and certificate
  verification are still for that name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from pantherahive.domains.notifications.errors import UnsafeWebhookUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: operator-defined
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the operating system's resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=6)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (empty when it carries none)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _TRANSLATED or (
            address in _COMPATIBLE and int(address) > 1):
        found.append(low32)
    return found


def refused(address: IPAddress) -> bool:
    """True unless ``address`` is a global unicast address (and so is any IPv4 address it
    embeds)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return True  # where it leads is the operator's choice: cannot be judged
        embedded = embedded_ipv4(address)
        if embedded:
            return any(refused(v4) for v4 in embedded)
    return not address.is_global or address.is_multicast


def _parse(address: str) -> IPAddress:
    return ipaddress.ip_address(address.split("%", 1)[0])


async def checked_addresses(host: str, port: int, *, resolver: Resolver,
                            allow_private: bool) -> list[str]:
    """The addresses to connect to for ``host``: all of them must pass (one bad answer
    refuses the host, whichever a client would have picked)."""
    try:
        literal: IPAddress | None = _parse(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise UnsafeWebhookUrl("the host does not resolve") from exc
        if not addresses:
            raise UnsafeWebhookUrl("the host does not resolve")
    if not allow_private:
        for address in addresses:
            try:
                bad = refused(_parse(address))
            except ValueError:
                bad = True
            if bad:
                raise UnsafeWebhookUrl(
                    "resolves to a loopback, private or reserved address")
    return addresses


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the rule above: resolve once, check, connect to a
    checked address, check the peer."""

    def __init__(self, *, resolver: Resolver, allow_private: bool) -> None:
        self.resolver = resolver
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, resolver=self.resolver,
                                            allow_private=self.allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            peer = stream.get_extra_info("server_addr")
            peer_ip = _parse(str(peer[0])) if peer else None
            if peer_ip != _parse(address) or (not self.allow_private and refused(peer_ip)):
                await stream.aclose()
                raise UnsafeWebhookUrl("connected to an address that was not checked")
            return stream
        raise failure or UnsafeWebhookUrl("the host does not resolve")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeWebhookUrl("Unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` over :class:`PinnedBackend` (no proxies: a proxy
    would do its own lookup)."""

    def __init__(self, *, resolver: Resolver, allow_private: bool,
                 verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
            network_backend=PinnedBackend(resolver=resolver, allow_private=allow_private),
        )


def pinned_client(*, resolver: Resolver, allow_private: bool, timeout: float,
                  verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The webhook client: pinned connections, redirects not followed, no proxies."""
    return httpx.AsyncClient(
        transport=PinnedTransport(resolver=resolver, allow_private=allow_private,
                                  verify=verify),
        timeout=timeout, follow_redirects=False, trust_env=False)
