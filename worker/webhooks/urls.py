"""Which URLs webhooks may be sent to, and the addresses a delivery may connect to.

A URL is `https://` or `http://`, with a host and no credentials. Its host must not be,
or resolve to, an address inside this network: private, loopback, link-local, shared
(carrier-grade NAT), unspecified, multicast or reserved ranges (unless
DELETION_WEBHOOK_ALLOW_PRIVATE; unspecified and multicast addresses never). Otherwise
anyone who may subscribe could make the service call its neighbours (SSRF).

A name is checked again at every delivery, and the delivery connects to an address
that was just checked (`resolve_destination`): a name that resolved to a public address
when the subscription was made and to 10.0.0.1 afterwards (DNS rebinding) is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.errors import TransientError, UsageError

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Names that are this machine whatever DNS says (RFC 6761).
LOCAL_NAMES = ("localhost", "localhost.localdomain")


class WebhookUrlError(UsageError):
    """A webhook or callback URL that may not be used. The message never quotes the URL."""


@dataclass(frozen=True)
class Destination:
    """A URL split for a delivery: where to connect, and what to call the host."""

    scheme: str
    host: str  # as in the URL, without brackets: the Host header and the TLS server name
    port: int
    target: str  # path and query
    addresses: tuple[IpAddress, ...] = ()

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IpAddress) -> str:
        """The URL with the host replaced by one of its checked addresses."""
        literal = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{literal}:{self.port}{self.target}"


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_problem(address: IpAddress, allow_private: bool) -> str | None:
    """Why a delivery may not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


def parse_destination(url: str, *, allow_private: bool = False) -> Destination:
    """Check a URL's form (no DNS) and split it; raises WebhookUrlError."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"webhook URL: must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url) or not url.isascii():
        raise WebhookUrlError("webhook URL: must be ASCII without spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlError("webhook URL: cannot be parsed (a bad port or host)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise WebhookUrlError("webhook URL: must start with https:// or http://")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise WebhookUrlError("webhook URL: must not carry credentials (user:password@); verify the signature instead")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlError("webhook URL: has no host")
    literal = _literal_address(host)
    if literal is not None:
        problem = address_problem(literal, allow_private)
        if problem is not None:
            raise WebhookUrlError(f"webhook URL: the host is {problem}, which webhooks may not reach")
    elif not allow_private and (host in LOCAL_NAMES or host.endswith(".localhost")):
        raise WebhookUrlError("webhook URL: the host is this machine, which webhooks may not reach")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(scheme, host, port or (443 if scheme == "https" else 80), target)


def check_webhook_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse (WebhookUrlError, a UsageError: 400 in the API) a URL that may not be a
    webhook or callback URL, from its form alone: cheap enough for every request. Names
    are resolved and checked when the subscription is made and at every delivery."""
    parse_destination(url, allow_private=allow_private)


async def resolve_destination(
    url: str, *, allow_private: bool = False, timeout: float = RESOLVE_TIMEOUT_SECONDS
) -> Destination:
    """Check the URL, resolve its host and check every address it resolves to (one bad
    address refuses the URL: which one a connection would use is not ours to choose).
    WebhookUrlError when refused; TransientError when the name does not resolve now."""
    destination = parse_destination(url, allow_private=allow_private)
    literal = _literal_address(destination.host)
    if literal is not None:
        addresses: tuple[IpAddress, ...] = (literal,)
    else:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError):
            raise TransientError("webhook URL: the host does not resolve") from None
        unique: dict[IpAddress, None] = {}
        for *_, sockaddr in found:
            unique[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
        addresses = tuple(unique)
        if not addresses:
            raise TransientError("webhook URL: the host does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_private)
        if problem is not None:
            raise WebhookUrlError(f"webhook URL: the host resolves to {problem}, which webhooks may not reach")
    return Destination(destination.scheme, destination.host, destination.port, destination.target, addresses)
