"""The SSRF guard. No outbound traffic: hostnames go through injected resolvers, and
IP literals through the real getaddrinfo restricted to numeric hosts (no DNS)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from app.notify.ssrf import (
    UnresolvableWebhookURL,
    UnsafeWebhookURL,
    blocked_reason,
    check_url,
    pinned_target,
)
from tests.notify.receiver import Receiver


def numeric(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    """The real getaddrinfo, but it may not ask DNS: literals only (all their forms)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


def resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[Any, ...]] = []
        for addr in table[host]:
            if ":" in addr:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (addr, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port)))
        return out

    return resolve


DNS = resolver(
    {
        "localhost": ["127.0.0.1", "::1"],
        "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
        # One public and one private address: refused, the connection could use either.
        "mixed.example.com": ["93.184.216.34", "10.1.2.3"],
        "metadata.example.com": ["169.254.169.254"],
        "rebind.example.com": ["::ffff:192.168.1.1"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "http://127.1/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://0.0.0.0/",
        "http://224.0.0.1/",  # multicast (is_global is True for it!)
        "http://255.255.255.255/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::127.0.0.1]/",  # IPv4-compatible
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[2002:c0a8:101::]/",  # 6to4 of 192.168.1.1
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/",  # hex and short form
        "http://0x7f000001/",
        "http://017700000001/",  # octal
    ],
)
def test_refuses_non_public_literals(url: str) -> None:
    with pytest.raises(UnsafeWebhookURL) as err:
        check_url(url, allow_private=False, resolve=numeric)
    assert "address" in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://localhost:8000/hook",
        "https://metadata.example.com/",
        "https://mixed.example.com/hook",
        "https://rebind.example.com/",
    ],
)
def test_refuses_hosts_resolving_to_non_public(url: str) -> None:
    with pytest.raises(UnsafeWebhookURL):
        check_url(url, allow_private=False, resolve=DNS)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:25/", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///hook", "host"),
        ("http://user:pass@hooks.example.com/", "credentials"),
        ("http://user@hooks.example.com/", "credentials"),
        ("http://[::1/", "invalid"),
    ],
)
def test_refuses_malformed(url: str, message: str) -> None:
    with pytest.raises(UnsafeWebhookURL, match=message):
        check_url(url, allow_private=True, resolve=DNS)


def test_unresolvable_host_is_refused_clearly() -> None:
    with pytest.raises(UnresolvableWebhookURL, match="does not resolve"):
        check_url("https://no-such-host.invalid/", allow_private=False, resolve=DNS)
    with pytest.raises(UnresolvableWebhookURL, match="no address"):
        check_url("https://empty.example/", allow_private=False, resolve=lambda *a, **k: [])


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",
        "https://93.184.216.34:8443/hook?token=abc",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/",
        "http://[::ffff:93.184.216.34]/",
    ],
)
def test_accepts_public_literals(url: str) -> None:
    check_url(url, allow_private=False, resolve=numeric)


def test_accepts_public_hostname() -> None:
    check_url("https://hooks.example.com/x", allow_private=False, resolve=DNS)


def test_allow_private_lets_loopback_through() -> None:
    check_url("http://127.0.0.1:9/", allow_private=True, resolve=numeric)
    check_url("http://localhost/", allow_private=True, resolve=DNS)


def test_default_resolver_handles_literals() -> None:
    # socket.getaddrinfo itself (numeric hosts need no DNS).
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        check_url("http://2130706433/", allow_private=False)
    check_url("http://93.184.216.34/", allow_private=False)


def test_blocked_reason_names_the_range() -> None:
    import ipaddress

    assert blocked_reason(ipaddress.ip_address("10.0.0.1")) == "private"
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback (IPv4-mapped)"
    assert blocked_reason(ipaddress.ip_address("2002:a00:1::")) == "private (6to4)"
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None


def test_pinned_target_connects_to_checked_address(receiver: Receiver) -> None:
    """The request goes to the address that was checked, not to a fresh lookup, and
    still names the original host."""
    fake = resolver({"hooks.test": ["127.0.0.1"]})
    target = pinned_target(
        f"http://hooks.test:{receiver.port}/hook?x=1", allow_private=True, resolve=fake
    )
    [(url, headers, extensions)] = list(target.candidates())
    assert str(url) == f"http://127.0.0.1:{receiver.port}/hook?x=1"
    with httpx.Client(trust_env=False) as client:
        response = client.post(url, content=b"{}", headers=headers, extensions=extensions)
    assert response.status_code == 200
    assert receiver.received[0].headers["host"] == f"hooks.test:{receiver.port}"
    assert receiver.received[0].path == "/hook?x=1"


def test_pinned_https_keeps_sni_and_tries_each_address() -> None:
    fake = resolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    target = pinned_target("https://hooks.example.com/h", allow_private=False, resolve=fake)
    candidates = list(target.candidates())
    assert [str(u) for u, _, _ in candidates] == [
        "https://93.184.216.34/h",
        "https://[2606:2800:220:1::1]/h",
    ]
    assert {e["sni_hostname"] for _, _, e in candidates} == {"hooks.example.com"}
    assert {h["host"] for _, h, _ in candidates} == {"hooks.example.com"}
