"""The audio-link guard against IPv6 forms that carry an IPv4 address: each is judged by the
IPv4 address it leads to, so a private one inside is refused and a public one is fetched."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from bot.synthesis.links import UnsafeLinkError, pin

PUBLIC = "93.184.216.34"
TEREDO_SERVER = "65.54.227.120"


def sixtofour(ipv4: str) -> str:
    packed = int(ipaddress.IPv4Address(ipv4))
    return str(ipaddress.IPv6Address((0x2002 << 112) | (packed << 80) | 1))


def teredo(client: str, server: str = TEREDO_SERVER) -> str:
    """A Teredo address: 2001:0::/32, the server's IPv4, flags, port, and the client's IPv4
    obfuscated (every bit flipped)."""
    value = (0x2001_0000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
    value |= 0x8000 << 48 | 0x63BF << 32  # flags, obfuscated port
    value |= int(ipaddress.IPv4Address(client)) ^ 0xFFFF_FFFF
    return str(ipaddress.IPv6Address(value))


def nat64(ipv4: str, prefix: str = "64:ff9b::") -> str:
    return str(
        ipaddress.IPv6Address(int(ipaddress.IPv6Address(prefix)) | int(ipaddress.IPv4Address(ipv4)))
    )


def local_use_64(ipv4: str) -> str:
    """64:ff9b:1::/48 used with a /64 prefix (RFC 6052): the IPv4 address in bits 72 to 103."""
    value = int(ipaddress.IPv6Address("64:ff9b:1::")) | int(ipaddress.IPv4Address(ipv4)) << 24
    return str(ipaddress.IPv6Address(value))


FORMS: dict[str, Callable[[str], str]] = {
    "6to4": sixtofour,
    "teredo": teredo,
    "nat64": nat64,
    "nat64-local-use": lambda ipv4: nat64(ipv4, "64:ff9b:1::"),
    "nat64-local-use-/64": local_use_64,
    "ipv4-mapped": lambda ipv4: f"::ffff:{ipv4}",
}
INSIDE = ["10.0.0.1", "172.16.5.4", "192.168.1.20", "127.0.0.1", "169.254.169.254", "0.0.0.0"]


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"a literal address must not be resolved ({host})")


def test_the_forms_carry_what_they_claim() -> None:
    """The builders above are right, or the tests below prove nothing."""
    assert ipaddress.IPv6Address(sixtofour("10.0.0.1")).sixtofour == ipaddress.IPv4Address(
        "10.0.0.1"
    )
    server, client = ipaddress.IPv6Address(teredo("10.0.0.1")).teredo or (None, None)
    assert (str(server), str(client)) == (TEREDO_SERVER, "10.0.0.1")
    assert nat64("10.0.0.1") == "64:ff9b::a00:1"
    assert local_use_64("10.1.2.3") == "64:ff9b:1:0:a:102:300:0"


@pytest.mark.parametrize("inside", INSIDE)
@pytest.mark.parametrize("form", sorted(FORMS))
async def test_a_private_ipv4_inside_an_ipv6_form_is_refused(form: str, inside: str) -> None:
    address = FORMS[form](inside)
    with pytest.raises(UnsafeLinkError, match="inside an IPv6 address"):
        await pin(f"http://[{address}]/a.wav", allow_loopback=False, resolve=no_dns)


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_a_public_ipv4_inside_an_ipv6_form_is_fetched_pinned(form: str) -> None:
    address = FORMS[form](PUBLIC)
    pinned = await pin(f"https://[{address}]/a.wav", allow_loopback=False, resolve=no_dns)
    assert ipaddress.ip_address(pinned.url.host or "") == ipaddress.ip_address(address)
    assert pinned.server_hostname is None  # an address: no name to check a certificate by


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_a_name_resolving_to_a_private_form_is_refused(form: str) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return [FORMS[form]("10.0.0.1")]

    with pytest.raises(UnsafeLinkError, match="private address"):
        await pin("https://files.example.test/a.wav", allow_loopback=False, resolve=resolve)


async def test_a_teredo_address_is_refused_when_its_server_is_private() -> None:
    address = teredo(PUBLIC, server="10.9.8.7")
    with pytest.raises(UnsafeLinkError, match="private address"):
        await pin(f"http://[{address}]/a.wav", allow_loopback=False, resolve=no_dns)


async def test_local_use_nat64_is_refused_when_any_layout_reads_private() -> None:
    """64:ff9b:1::/48 with a /48 prefix puts the IPv4 address in bits 48 to 63 and 72 to 87,
    leaving the low 32 bits zero: read as /96 that is 0.0.0.0, and so it is refused, even
    for a public address (only the network's operator knows the layout)."""
    public_as_48 = ipaddress.IPv6Address(
        int(ipaddress.IPv6Address("64:ff9b:1::")) | 0x5DB8 << 64 | 0xD822 << 40
    )
    with pytest.raises(UnsafeLinkError):
        await pin(f"http://[{public_as_48}]/a.wav", allow_loopback=False, resolve=no_dns)


async def test_loopback_inside_a_form_follows_the_loopback_rule() -> None:
    """Loopback is fine only when the API itself is on loopback (tests, the fake), as for a
    plain 127.0.0.1."""
    address = sixtofour("127.0.0.1")
    await pin(f"http://[{address}]/a.wav", allow_loopback=True, resolve=no_dns)
    with pytest.raises(UnsafeLinkError, match="loopback"):
        await pin(f"http://[{address}]/a.wav", allow_loopback=False, resolve=no_dns)
