"""The URL guard: what webhooks and callbacks may be sent to (SSRF), by form and by address."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from worker.errors import TransientError, UsageError
from worker.webhooks.urls import WebhookUrlError, check_webhook_url, resolve_destination

REFUSED_ALWAYS = [
    "ftp://example.com/hook",
    "example.com/hook",
    "https://user:pass@example.com/hook",
    "https://token@example.com/hook",
    "https:///hook",
    "https://exa mple.com/hook",
    "https://example.com:99999/hook",
    "https://0.0.0.0/hook",
    "https://[::]/hook",
    "https://224.0.0.1/hook",
    "https://" + "a" * 2048 + ".com/",
]
REFUSED_UNLESS_ALLOWED = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://api.localhost/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata: link-local
    "https://100.64.0.1/hook",  # shared address space
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
]


@pytest.mark.parametrize("url", REFUSED_ALWAYS + REFUSED_UNLESS_ALLOWED)
def test_refused_urls(url: str) -> None:
    with pytest.raises(WebhookUrlError) as raised:
        check_webhook_url(url)
    assert isinstance(raised.value, UsageError)  # 400 in the API, exit 2 in the CLI
    assert "pass" not in str(raised.value).replace("password", "")  # never quotes the URL


@pytest.mark.parametrize("url", REFUSED_UNLESS_ALLOWED)
def test_private_addresses_are_allowed_when_the_setting_says_so(url: str) -> None:
    check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize("url", REFUSED_ALWAYS)
def test_the_setting_does_not_allow_the_rest(url: str) -> None:
    with pytest.raises(WebhookUrlError):
        check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x?y=1", "http://8.8.8.8:8080/", "https://[2001:4860::8888]/"]
)
def test_public_urls_pass(url: str) -> None:
    check_webhook_url(url)


async def test_a_name_is_refused_for_what_it_resolves_to(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    answers = {"hooks.example.com": ["93.184.216.34"], "rebound.example.com": ["93.184.216.34", "10.0.0.7"]}

    async def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    destination = await resolve_destination("https://hooks.example.com/hook?a=1")
    assert [str(a) for a in destination.addresses] == ["93.184.216.34"]
    assert destination.url_for(destination.addresses[0]) == "https://93.184.216.34:443/hook?a=1"
    assert destination.host_header == "hooks.example.com"
    # One private address among the answers (DNS rebinding) refuses the whole name.
    with pytest.raises(WebhookUrlError, match="resolves to a private"):
        await resolve_destination("https://rebound.example.com/hook")
    answers["hooks.example.com"] = ["127.0.0.1"]
    with pytest.raises(WebhookUrlError, match="loopback"):
        await resolve_destination("https://hooks.example.com/hook")
    assert (await resolve_destination("https://hooks.example.com/hook", allow_private=True)).addresses
    with pytest.raises(TransientError):
        await resolve_destination("https://nowhere.example.com/hook")


async def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    with pytest.raises(WebhookUrlError):
        await resolve_destination("http://localhost:1/hook")
    destination = await resolve_destination("http://localhost:1/hook", allow_private=True)
    assert destination.host_header == "localhost:1"
