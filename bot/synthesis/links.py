"""Which audio links a JSON answer may point the bot at, and how to fetch one safely.

A JSON answer may carry its audio as a URL. Fetching whatever URL an upstream names would let
a compromised or spoofed answer make the bot read its own host (a metadata service on
169.254.169.254, an admin port on 127.0.0.1, the LAN): so only http(s) links whose host
resolves to public addresses are fetched, and the connection goes to the very address that
was checked (pinned), so a DNS answer that changes between the check and the connect cannot
slip a private address in. Loopback is allowed only when the configured API is itself on
loopback (tests, the local fake server).

IPv6 has forms that carry an IPv4 address and deliver to it: IPv4-mapped (`::ffff:a.b.c.d`),
6to4 (`2002::/16`), Teredo (`2001::/32`, its server and its client) and NAT64 (`64:ff9b::/96`,
and the local-use `64:ff9b:1::/48`). Judged as IPv6 they can look public (6to4 does) while
leading into 10.0.0.0/8 or 127.0.0.1; so the IPv4 inside is unpacked and judged by the IPv4
rule, every one of them when there are several. A local-use NAT64 prefix may be any of
RFC 6052's lengths from /48 on, each putting the IPv4 address elsewhere: every reading the
address allows must pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

__all__ = ["Pinned", "Resolver", "UnsafeLinkError", "is_loopback_host", "pin", "system_resolver"]

#: Resolves (host, port) to IP address strings; injectable so tests never touch DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


class UnsafeLinkError(Exception):
    """A link the bot refuses to fetch; the message says why, without echoing the link."""


@dataclass(frozen=True, slots=True)
class Pinned:
    """A checked link: connect to `url` (host replaced by the checked address), send `host`
    as the Host header, and match TLS certificates against `server_hostname`."""

    url: URL
    host: str
    server_hostname: str | None


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (getaddrinfo), off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_loopback_host(host: str | None) -> bool:
    """Whether a configured host is this machine (``localhost`` or a loopback address)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a transition form carries (empty for a plain IPv6 address)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # the server, and the client a packet ends up at
    value = int(address)
    if address in _NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(value & 0xFFFF_FFFF)]
    if address in _NAT64_LOCAL_USE:
        return [ipaddress.IPv4Address(v) for v in _rfc6052_readings(value)]
    return []


def _rfc6052_readings(value: int) -> list[int]:
    """The IPv4 addresses a local-use NAT64 address may carry: RFC 6052 places it by the
    prefix's length (/48, /56, /64 or /96 here), which only the network's operator knows.
    The /96 reading (the low 32 bits) always counts; a shorter one counts when the bits
    after its IPv4 address are zero, as that layout requires."""

    def bits(start: int, length: int) -> int:
        return (value >> (128 - start - length)) & ((1 << length) - 1)

    readings = [bits(96, 32)]
    if bits(104, 24) == 0:
        readings.append(bits(72, 32))  # /64
    if bits(96, 32) == 0:
        readings.append(bits(56, 8) << 24 | bits(72, 24))  # /56
    if bits(88, 40) == 0:
        readings.append(bits(48, 16) << 16 | bits(72, 16))  # /48
    return readings


def _refusal(address: _IP, *, allow_loopback: bool) -> str | None:
    """Why an address must not be fetched from, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        for inner in embedded:
            why = _refusal(inner, allow_loopback=allow_loopback)
            if why is not None:
                return f"{why} (inside an IPv6 address)"
        if embedded:
            return None  # Judged by the IPv4 it leads to, not by its IPv6 range.
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


async def pin(url: str, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> Pinned:
    """Check ``url`` and return where to connect, or raise :class:`UnsafeLinkError`.

    Every address the name resolves to must be allowed: a name that mixes public and private
    answers is refused rather than gambled on.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise UnsafeLinkError("the audio link is not a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeLinkError("the audio link is not http or https")
    if parsed.user is not None or parsed.password is not None:
        raise UnsafeLinkError("the audio link carries credentials")
    host = parsed.raw_host
    port = parsed.port
    if not host or port is None:
        raise UnsafeLinkError("the audio link has no host")
    try:
        literal: _IP | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await resolve(host, port)
        except (OSError, UnicodeError):
            raise UnsafeLinkError("the audio link's host does not resolve") from None
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
        except ValueError:
            raise UnsafeLinkError("the audio link's host resolves to a non-address") from None
        if not addresses:
            raise UnsafeLinkError("the audio link's host does not resolve")
    for address in addresses:
        why = _refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            raise UnsafeLinkError(f"the audio link points at {why}")
    chosen = addresses[0]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parsed.explicit_port is None else f"{shown}:{port}"
    return Pinned(
        url=parsed.with_host(str(chosen)),
        host=host_header,
        server_hostname=host if parsed.scheme == "https" and literal is None else None,
    )
