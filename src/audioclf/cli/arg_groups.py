"""Argument groups that several commands share: downloads, Ray, precision, windows, cache and logging."""

from __future__ import annotations

import argparse
from pathlib import Path

from audioclf.cli.arg_types import POSITIVE, POSITIVE_INT
from audioclf.io.audio import DEFAULT_WINDOW_S
from audioclf.io.cache import default_cache_dir


def fetch_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("downloads (URL rows and inputs, through yt-dlp)")
    g.add_argument("--jobs", type=POSITIVE_INT, default=4, help="parallel downloads (default %(default)s)")
    g.add_argument(
        "--max-per-playlist", type=POSITIVE_INT, default=None, help="videos taken from each playlist/channel"
    )
    g.add_argument("--max-filesize", default=None, help="skip downloads larger than this, e.g. 200M")
    g.add_argument("--rate-limit", default=None, help="download rate limit, e.g. 2M (bytes/s)")
    g.add_argument("--cookies", type=Path, default=None, help="cookies.txt (Netscape format) for yt-dlp")
    g.add_argument("--proxy", default=None, help="proxy URL for yt-dlp")
    g.add_argument("--min-free", default="1G", help="skip a download that would leave less disk free (default 1G)")


def ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (optional extra: pip install 'audioclf[ray]')")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="download/embed on Ray: a local instance, or the cluster at ADDRESS (the cache dir must be shared)",
    )
    g.add_argument(
        "--ray-workers", type=POSITIVE_INT, default=None, help="actors (default: one per CPU in the cluster)"
    )


def precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="bf16 autocast where the CPU/GPU supports it (auto), or always bf16 / fp32",
    )


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=folder_arg, default=None, help=f"the cache (default {default_cache_dir()})")
    p.add_argument("--quiet", action="store_true", help="only warnings, errors and results")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def folder_arg(text: str) -> Path:
    if "://" in text:  # Path("s3://b/x") would silently become a local folder named "s3:"
        raise argparse.ArgumentTypeError(
            f"{text}: a URL is not a folder; give a local or shared (NFS, CephFS, Lustre) path, or mount the store"
        )
    return Path(text)


def window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window",
        type=POSITIVE,
        default=None,
        help=f"window length in seconds (default: the encoder's fixed input length if it has one, else"
        f" {DEFAULT_WINDOW_S:g})",
    )
    p.add_argument("--hop", type=POSITIVE, default=None, help="hop between windows in seconds (default: the window)")
    p.add_argument(
        "--max-duration", type=POSITIVE, default=None, help="use at most this many seconds of each recording"
    )


def server_args(p: argparse.ArgumentParser) -> None:
    """Where a server listens and the token it asks for (serve, review)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--token", default=None, help="bearer token for every API route (or AUDIOCLF_TOKEN); required off loopback"
    )
