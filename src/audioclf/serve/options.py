"""How the server runs: where it listens, who may call it, and how much it accepts at once."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from audioclf.errors import AudioclfError

LOOPBACK = "127.0.0.1"
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    host: str = LOOPBACK
    port: int = 8000
    token: str | None = None  # a bearer token every API route checks; required off loopback
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_queue: int = 64  # requests waiting for the model; beyond it: 503 with Retry-After
    max_batch_inputs: int = 32  # inputs of several requests embedded in one pass
    batch_wait_s: float = 0.01  # how long the first request of a batch waits for others
    timeout_s: float = 120.0  # per request
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
        if self.max_upload_bytes < 1 or self.max_queue < 1 or self.max_batch_inputs < 1 or self.timeout_s <= 0:
            raise AudioclfError("upload limit, queue, batch and timeout must be positive", option="max_upload")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
