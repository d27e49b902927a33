"""The server's way out for URL inputs: a small forward proxy on the loopback interface that yt-dlp is pointed
at. Every connection it opens (the first request and every redirect hop, which yt-dlp follows inside its own
HTTP handlers) is checked against the address policy and made to the address that was checked, so neither a
redirect nor a DNS answer that changes between check and use reaches a private address."""

from __future__ import annotations

import http.client
import logging
import select
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from audioclf.serve.guard import is_private

log = logging.getLogger(__name__)

# (host, port) -> the address to connect to, or None to refuse
Policy = Callable[[str, int], str | None]
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "upgrade"}
TIMEOUT_S = 30.0


def public_only(host: str, port: int) -> str | None:
    """The first address of ``host`` if none of its addresses is private, loopback, link-local or reserved."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(is_private(a) for a in addresses):
        return None
    return addresses[0]


class EgressProxy:
    """Start with ``EgressProxy(policy)``; ``url`` is what yt-dlp's ``proxy`` option takes; ``close()``."""

    def __init__(self, policy: Policy = public_only) -> None:
        handler = type("Handler", (_Handler,), {"policy": staticmethod(policy)})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="audioclf-egress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    policy: Policy
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and yt-dlp reconnects as needed

    def log_message(self, format: str, *args: object) -> None:
        log.debug("egress: " + format, *args)

    def _refuse(self, host: str) -> None:
        self.send_error(403, f"{host}: private addresses are not fetched by this server")

    def do_CONNECT(self) -> None:  # HTTPS: a checked tunnel
        host, _, port_text = self.path.rpartition(":")
        port = int(port_text or 443)
        address = self.policy(host.strip("[]"), port)
        if address is None:
            self._refuse(host)
            return
        try:
            upstream = socket.create_connection((address, port), timeout=TIMEOUT_S)
        except OSError as exc:
            self.send_error(502, f"{host}: {exc}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        _relay(self.connection, upstream)

    def _forward(self) -> None:  # plain HTTP: the request re-sent to the checked address
        parts = urlsplit(self.path)
        host, port = parts.hostname or "", parts.port or 80
        address = self.policy(host, port) if parts.scheme == "http" else None
        if address is None:
            self._refuse(host or self.path)
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        path = parts.path or "/"
        upstream = http.client.HTTPConnection(address, port, timeout=TIMEOUT_S)
        try:
            upstream.request(self.command, path + (f"?{parts.query}" if parts.query else ""), body, headers)
            response = upstream.getresponse()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            self.end_headers()
            while chunk := response.read(1 << 16):
                self.wfile.write(chunk)
        except OSError as exc:
            self.send_error(502, f"{host}: {exc}")
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = _forward


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    pair = [client, upstream]
    try:
        while True:
            readable, _, _ = select.select(pair, [], [], TIMEOUT_S)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(1 << 16)
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)
    except OSError:
        return
    finally:
        upstream.close()
