"""How the server runs: where it listens, who may call it, and how much it accepts at once."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path

from audioclf.errors import AudioclfError

LOOPBACK = "127.0.0.1"
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_TIMEOUT_S = 86_400.0


@dataclass(frozen=True)
class ServeOptions:
    host: str = LOOPBACK
    port: int = 8000  # 0: any free port
    token: str | None = None  # a bearer token every API route checks; required off loopback
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_queue: int = 64  # requests waiting for the model; beyond it: 503 with Retry-After
    max_batch_inputs: int = 32  # inputs of several requests embedded in one pass; also the most per request
    batch_wait_s: float = 0.01  # how long the first request of a batch waits for others
    timeout_s: float = 120.0  # per request, to receive it (then 408) and to answer it (then 504)
    cors_origin: str | None = None
    allow_private_urls: bool = False
    max_filesize_bytes: int | None = None  # for URL inputs (yt-dlp)
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise AudioclfError(
                f"listening on {self.host} exposes the model beyond this machine: give a token (or keep the "
                "loopback address)",
                option="token",
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise AudioclfError(f"port {self.port}: use 1 to 65535 (or 0 for any free port)", option="port")
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise AudioclfError(
                f"timeout {self.timeout_s} s: use a number of seconds above 0, at most {MAX_TIMEOUT_S:g}",
                option="timeout",
            )
        if self.max_upload_bytes < 1 or self.max_queue < 1 or self.max_batch_inputs < 1:
            raise AudioclfError("upload limit, queue and batch must be positive", option="max_upload")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(host: str, port: int) -> str:
    """The address a browser takes: an IPv6 address in brackets (``http://[::1]:8000``)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
