"""What keeps an exposed server safe: the bearer token, URLs that may not reach private addresses (no
server-side request forgery)."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from audioclf.errors import AudioclfError
from audioclf.io.manifest import check_url


class Unauthorized(AudioclfError):
    """A missing or wrong bearer token."""


def token_ok(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (always true without a token)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def is_private(text: str) -> bool:
    """Loopback, private, link-local (cloud metadata lives at 169.254.169.254), multicast, reserved or
    unspecified (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    address = getattr(address, "ipv4_mapped", None) or address
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def private_address(host: str) -> str | None:
    """The first address ``host`` resolves to that ``is_private``; None when every address is public."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise AudioclfError(f"{host}: cannot resolve ({exc})") from None
    return next((str(i[4][0]) for i in infos if is_private(str(i[4][0]))), None)


def checked_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL whose host is public (unless ``allow_private``)."""
    url = check_url(url)
    host = urlsplit(url).hostname or ""
    if not allow_private:
        address = private_address(host)
        if address is not None:
            raise AudioclfError(f"{url}: {host} is a private address ({address}); this server does not fetch those")
    return url
