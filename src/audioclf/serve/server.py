"""The listening socket and uvicorn around the app.

The socket is bound before anything says "serving", so a port in use or out of range is one line, not a message
followed by uvicorn's exit. uvicorn's h11 protocol bounds the idle time between requests (keep-alive) but not
the time a client takes to send one: a client that sends its headers or its body a byte at a time would hold
its connection forever. ``_ReceiveDeadline`` gives each request ``timeout_s`` to arrive whole, headers and body;
then it is answered 408 (when no answer has started) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from audioclf.errors import AudioclfError, first_line
from audioclf.serve.options import ServeOptions, http_url

log = logging.getLogger(__name__)
GRACEFUL_SHUTDOWN_S = 30


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart is not refused
        sock.bind((host, port))
        sock.listen()
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise AudioclfError(
            f"cannot listen on {http_url(host, port)} ({reason}); choose another port, or stop what uses it",
            option="port",
        ) from None
    return sock


def uvicorn_server(app: FastAPI, options: ServeOptions) -> uvicorn.Server:
    protocol = type("ReceiveDeadlineH11", (_ReceiveDeadline,), {"receive_s": options.timeout_s})
    config = uvicorn.Config(
        app, http=protocol, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, lifespan="on"
    )
    return uvicorn.Server(config)


def serve(app: FastAPI, sock: socket.socket, options: ServeOptions) -> None:
    """Serve on ``sock`` until interrupted (SIGINT/SIGTERM: the accepted requests finish first)."""
    server = uvicorn_server(app, options)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits when the app's start-up fails; it has logged why
        raise AudioclfError("the server stopped while starting; see the lines above") from None
    finally:
        sock.close()


class _ReceiveDeadline(H11Protocol):
    """h11 with a deadline for each request to arrive whole: it starts when the connection opens (or when the
    first byte of a later request on it arrives) and ends when the body has arrived."""

    receive_s: float = 120.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # a later request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.receive_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
        where = "{}:{}".format(*self.client) if self.client else "a client"
        log.info("%s: a request took over %g s to arrive; answered 408 and closed", where, self.receive_s)
        if cycle is not None:  # the app is reading the body: it now reads a disconnect, and its answer is dropped
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            message = f"the request did not arrive within {self.receive_s:g} s; send it faster, or as one piece"
            self._answer(408, b"Request Timeout", message)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:  # h11 could not parse the request: uvicorn's 400, our shape
        self._answer(400, b"Bad Request", "not a well-formed HTTP/1.1 request (or its headers are over 16 KB)")
        self.transport.close()

    def _answer(self, status: int, reason: bytes, message: str) -> None:
        """``{"error": message}`` with ``status`` and ``connection: close`` (nothing if an answer has begun)."""
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        if self.conn.our_state is h11.IDLE:  # no request whole enough for h11 to answer it: written by hand
            head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(b"%s: %s\r\n" % h for h in headers)
            self.transport.write(head + b"\r\n" + body)
        elif self.conn.our_state is h11.SEND_RESPONSE:  # the request line and headers arrived, the body did not
            events = [h11.Response(status_code=status, headers=headers, reason=reason), h11.Data(data=body)]
            try:
                for event in [*events, h11.EndOfMessage()]:
                    self.transport.write(self.conn.send(event) or b"")
            except h11.LocalProtocolError:  # h11 refuses to answer in its state: the connection just closes
                log.debug("no %d answer in h11's state", status)
