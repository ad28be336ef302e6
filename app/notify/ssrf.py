"""SSRF guard for webhook URLs.

A webhook URL is user input that makes the server send requests, so it must not reach
loopback, the private network, or cloud metadata (169.254.169.254). Every address the
host resolves to is checked, because the connection may use any of them.

check_url() validates (monitor create/update, and again before each send).
pinned_target() also returns the checked addresses, so the sender connects to exactly
those instead of resolving again: a second lookup could return a different, private
address (DNS rebinding).

URLs are parsed with httpx.URL, the parser the sender uses, so the guard and the
client cannot disagree about which host a URL names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# socket.getaddrinfo-compatible: called as resolve(host, port, type=socket.SOCK_STREAM).
Resolver = Callable[..., list[tuple[Any, ...]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeWebhookURL(ValueError):
    """The URL may not be used as a webhook target; the message says why."""


class UnresolvableWebhookURL(UnsafeWebhookURL):
    """The host did not resolve. At send time this may be transient (retry)."""


@dataclass(frozen=True)
class PinnedTarget:
    """A checked URL and the addresses its host resolved to, in resolver order."""

    url: httpx.URL
    addresses: tuple[str, ...]
    # Host literal in the URL itself: nothing to pin.
    literal: bool = field(default=False)

    def candidates(self) -> Iterator[tuple[httpx.URL, dict[str, str], dict[str, Any]]]:
        """(url, extra headers, request extensions) to try, one per address."""
        if self.literal:
            yield self.url, {}, {}
            return
        host_header = self.url.netloc.decode("ascii")
        extensions: dict[str, Any] = {}
        if self.url.scheme == "https":
            # TLS must still name (and verify the certificate of) the original host.
            extensions["sni_hostname"] = self.url.raw_host.decode("ascii")
        for address in self.addresses:
            yield self.url.copy_with(host=address), {"host": host_header}, extensions


def check_url(url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo) -> None:
    """Raise UnsafeWebhookURL unless `url` is an acceptable webhook target."""
    pinned_target(url, allow_private=allow_private, resolve=resolve)


def pinned_target(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> PinnedTarget:
    parsed = _parse(url)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableWebhookURL(f"webhook host {host!r} does not resolve: {exc}") from exc
    addresses: list[str] = []
    for info in infos:
        # sockaddr[0]; an IPv6 link-local may carry a %scope suffix.
        text = str(info[4][0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError as exc:
            raise UnsafeWebhookURL(f"webhook host {host!r} resolved to {text!r}") from exc
        if not allow_private:
            why = blocked_reason(ip)
            if why is not None:
                raise UnsafeWebhookURL(
                    f"webhook host {host!r} resolves to {ip}, a {why} address; "
                    "only public addresses are allowed (LOSSMON_WEBHOOK_ALLOW_PRIVATE)"
                )
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise UnresolvableWebhookURL(f"webhook host {host!r} resolved to no address")
    return PinnedTarget(parsed, tuple(addresses), literal=_is_ip_literal(host))


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            # ::ffff:a.b.c.d is connected to as the IPv4 address itself.
            why = blocked_reason(mapped)
            return None if why is None else f"{why} (IPv4-mapped)"
        for embedded, kind in _embedded_ipv4(ip):
            why = blocked_reason(embedded)
            if why is not None:
                return f"{why} ({kind})"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
        ("is_site_local", "site-local"),
    )
    for attr, label in checks:
        if getattr(ip, attr, False):
            return label
    # Catches the rest, e.g. 100.64.0.0/10 (carrier-grade NAT) and documentation ranges.
    # is_global alone is not enough: it is True for IPv4 multicast.
    if not ip.is_global:
        return "non-global"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    found: list[tuple[ipaddress.IPv4Address, str]] = []
    value = int(ip)
    if value >> 32 == 0 and value > 1:
        found.append((ipaddress.IPv4Address(value & 0xFFFFFFFF), "IPv4-compatible"))
    if ip.sixtofour is not None:
        found.append((ip.sixtofour, "6to4"))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [(server, "Teredo server"), (client, "Teredo client")]
    if ip in _NAT64:
        found.append((ipaddress.IPv4Address(value & 0xFFFFFFFF), "NAT64"))
    return found


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeWebhookURL(f"invalid webhook URL: {exc}") from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise UnsafeWebhookURL(
            f"webhook URL scheme must be http or https, not {parsed.scheme or 'none'!r}"
        )
    if not parsed.raw_host:
        raise UnsafeWebhookURL("webhook URL has no host")
    if parsed.userinfo:
        raise UnsafeWebhookURL("webhook URL may not contain credentials (user:password@)")
    return parsed


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
