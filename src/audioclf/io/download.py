"""URL -> local audio file through yt-dlp's Python API: audio only, cached under hashed names, in parallel,
with retries; a URL that fails is recorded and skipped, never fatal."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from audioclf.errors import AudioclfError, first_line
from audioclf.fileio import FileLock, sharded_path, write_json_atomic
from audioclf.io.cache import unwritable
from audioclf.io.fetch_types import IndexEntry, YdlInfo, YdlParams
from audioclf.io.manifest import Item, ManifestError, check_url

log = logging.getLogger(__name__)

T = TypeVar("T")
AUDIO_FORMAT = "bestaudio[acodec^=opus]/bestaudio[ext=m4a]/bestaudio/best"  # small audio-only streams first
TRANSIENT = (
    "HTTP Error 5",
    "timed out",
    "Connection reset",
    "Connection refused",
    "Temporary failure",
    "IncompleteRead",
    "Remote end closed",
    "Connection aborted",
)


class FetchError(AudioclfError):
    """A URL could not be turned into a local audio file."""


@dataclass(frozen=True)
class FetchOptions:
    cache_dir: Path
    jobs: int = 4
    max_per_playlist: int | None = None
    max_duration_s: float | None = None
    max_filesize_bytes: int | None = None
    rate_limit: str | None = None  # yt-dlp syntax, e.g. "1M"
    cookies: Path | None = None
    proxy: str | None = None
    retries: int = 3
    backoff_s: float = 2.0
    socket_timeout_s: float = 20.0
    partial_downloads: bool | None = None  # download only [start, end) (needs ffmpeg); None: when ffmpeg exists
    min_free_bytes: int = 1 << 30  # refuse a download that would leave less free space than this in the cache


@dataclass(frozen=True)
class Resolved:
    """Outcome of one URL: a fetched item, or a reason."""

    row: int  # index of the manifest row
    entry: int  # position within a playlist row (0 for a single URL)
    item: Item
    error: str | None = None
    fresh: bool = False  # downloaded by this run (not found in the cache)


def _url_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _range_of(item: Item, options: FetchOptions) -> tuple[float, float | None]:
    start = item.start_s or 0.0
    end = item.end_s
    if options.max_duration_s is not None:
        end = start + options.max_duration_s if end is None else min(end, start + options.max_duration_s)
    return start, end


class _YdlLogger:
    """yt-dlp's chatter goes to debug logs; failures are reported by us, once, with the row."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug
    warning = debug
    error = debug


def _ydl_params(options: FetchOptions, **extra: object) -> YdlParams:
    params: YdlParams = {
        "format": AUDIO_FORMAT,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YdlLogger(),
        "noplaylist": True,
        "retries": options.retries,
        "fragment_retries": options.retries,
        "retry_sleep_functions": {"http": lambda n: min(options.backoff_s * 2**n, 30.0)},
        "socket_timeout": options.socket_timeout_s,
        "continuedl": True,  # resume a .part file left by an interrupted run
        "overwrites": False,
        "cachedir": False,
        "max_filesize": options.max_filesize_bytes,
        "ratelimit": _rate(options.rate_limit),
        "cookiefile": str(options.cookies) if options.cookies else None,
        "proxy": options.proxy,
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def _rate(text: str | None) -> int | None:
    if text is None:
        return None
    from yt_dlp.utils import parse_bytes

    value = parse_bytes(text)
    if value is None:
        raise FetchError(f"rate limit {text!r}: use a byte rate such as 500K or 2M", option="rate_limit")
    return int(value)


def _with_retries(what: str, options: FetchOptions, fn: Callable[[], T]) -> T:
    """Retry transient network errors (5xx, timeouts, resets) with exponential backoff."""
    from yt_dlp.utils import DownloadError, ExtractorError

    for attempt in range(options.retries + 1):
        try:
            return fn()
        except (DownloadError, ExtractorError) as exc:
            message = _reason(exc)
            if attempt == options.retries or not any(t in message for t in TRANSIENT):
                raise FetchError(f"{what}: {message}") from None
            delay = options.backoff_s * 2**attempt
            log.info("%s: %s; retrying in %.1f s", what, message, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _reason(exc: Exception) -> str:
    text = first_line(exc, limit=10_000)
    text = text.removeprefix("ERROR: ")
    if text.startswith("[") and "] " in text:  # "[generic] clip: Unable to ..." -> the message itself
        text = text.split("] ", 1)[1]
    return text[:300]


class Fetcher:
    """Downloads into ``cache_dir/media`` under names hashed from extractor + video id (or the URL itself for
    direct file links, whose yt-dlp id is just the file name); ``cache_dir/urls`` maps a URL to its finished
    download so that a rerun needs no network for it."""

    def __init__(self, options: FetchOptions) -> None:
        self.options = options
        self.media = options.cache_dir / "media"
        self.index = options.cache_dir / "urls"
        try:
            for folder in (self.media, self.index):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # every URL would fail the same way: stop with the reason
            raise unwritable(options.cache_dir, exc) from exc
        partial = options.partial_downloads
        self._partial = shutil.which("ffmpeg") is not None if partial is None else partial

    def _index_path(self, url: str, span: tuple[float, float | None]) -> Path:
        key = _url_digest(f"{url}|{span}")
        return sharded_path(self.index, key, ".json")

    def cached(self, item: Item) -> Item | None:
        """The finished download for ``item`` if one is on disk and intact."""
        index = self._index_path(item.source, _range_of(item, self.options))
        try:
            meta: IndexEntry = json.loads(index.read_text(encoding="utf-8"))
            path = self.media / meta["file"]
            if path.stat().st_size != meta["size"]:
                return None
        except (OSError, ValueError, KeyError):
            return None
        return self._resolved(item, meta, path)

    def _resolved(self, item: Item, meta: IndexEntry, path: Path) -> Item:
        group = item.group or str(meta.get("group") or meta["url"])
        if not meta.get("range_applied"):
            return replace(item, local=str(path), group=group)
        # the file holds only the range: read all of it, and count its times from the start of the video
        offset = float((meta.get("range") or [item.start_s])[0] or 0.0)
        return replace(item, local=str(path), group=group, start_s=None, end_s=None, offset_s=offset)

    def expand(self, item: Item) -> list[Item]:
        """A playlist/channel URL becomes one item per video (each its own group); anything else stays one."""
        if self.cached(item) is not None:
            return [item]
        params = _ydl_params(self.options, noplaylist=False, extract_flat="in_playlist")
        if self.options.max_per_playlist:
            params["playlistend"] = self.options.max_per_playlist
        info = _with_retries(item.source, self.options, lambda: self._extract(item.source, params))
        if info.get("_type") not in ("playlist", "multi_video"):
            return [item]
        out = []
        for n, entry in enumerate(info.get("entries") or []):
            url = entry.get("url") or entry.get("webpage_url")
            if not url:
                continue
            try:
                url = check_url(url)
            except ManifestError as exc:
                log.warning("%s: skipped playlist entry: %s", item.where, exc)
                continue
            group = f"{entry.get('ie_key') or 'entry'}:{entry.get('id') or _url_digest(url)[:16]}"
            out.append(replace(item, source=url, group=item.group or group, where=f"{item.where}#{n + 1}"))
        return out

    def _extract(self, url: str, params: YdlParams) -> YdlInfo:
        from yt_dlp import YoutubeDL

        with YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=False)
        if not isinstance(info, dict):
            raise FetchError(f"{url}: yt-dlp returned no information")
        return cast(YdlInfo, info)

    def download(self, item: Item) -> tuple[Item, bool]:
        """The local file for ``item`` (from the cache when there), and whether it was downloaded now."""
        done = self.cached(item)
        if done is not None:
            return done, False
        # A second run sharing the cache waits here for the first one's download instead of racing it.
        with FileLock(self._index_path(item.source, _range_of(item, self.options)).with_suffix(".lock")):
            done = self.cached(item)
            return (done, False) if done is not None else (self._fetch(item), True)

    def _fetch(self, item: Item) -> Item:
        info = _with_retries(item.source, self.options, lambda: self._extract(item.source, _ydl_params(self.options)))
        start, end = _range_of(item, self.options)
        extractor = str(info.get("extractor_key") or info.get("extractor") or "unknown")
        video_id = str(info.get("id") or "")
        identity = f"url:{item.source}" if extractor.lower() == "generic" or not video_id else f"{extractor}:{video_id}"
        key = _url_digest(f"{identity}|{start}|{end}")
        use_range = self._partial and (start > 0 or end is not None)
        self._check_space(item, info)
        path = _with_retries(item.source, self.options, lambda: self._download(info, key, use_range, start, end))
        meta: IndexEntry = {
            "url": item.source,
            "file": path.name,
            "size": path.stat().st_size,
            "range": [start, end],
            "range_applied": use_range,
            "extractor": extractor,
            "group": identity,  # windows of one video share it, so they never straddle a split
            "id": info.get("id"),
            "title": info.get("title"),
            "duration": info.get("duration"),
            "uploader": info.get("uploader"),
            "webpage_url": info.get("webpage_url"),
        }
        write_json_atomic(path.with_suffix(path.suffix + ".json"), meta)  # sidecar for reports
        write_json_atomic(self._index_path(item.source, (start, end)), meta)
        return self._resolved(item, meta, path)

    def _check_space(self, item: Item, info: YdlInfo) -> None:
        """Fail this item (not the run) when its download would fill the disk the cache is on."""
        free = shutil.disk_usage(self.media).free
        expected = int(info.get("filesize") or info.get("filesize_approx") or 0)
        if free - expected < self.options.min_free_bytes:
            raise FetchError(
                f"{item.source}: only {free / 2**30:.1f} GiB free in {self.media} (download ~{expected / 2**20:.0f} "
                f"MiB, minimum free {self.options.min_free_bytes / 2**30:.1f} GiB); free space or lower the minimum",
                option="min_free",
            )

    def _download(self, info: YdlInfo, key: str, use_range: bool, start: float, end: float | None) -> Path:
        from yt_dlp import YoutubeDL
        from yt_dlp.utils import download_range_func

        extra: YdlParams = {"outtmpl": {"default": str(self.media / f"{key}.%(ext)s")}}
        if use_range:
            extra["download_ranges"] = download_range_func(None, [(start, end if end is not None else float("inf"))])
        with YoutubeDL(_ydl_params(self.options, **extra)) as ydl:
            result: YdlInfo = ydl.process_ie_result(dict(info), download=True)
        downloads = result.get("requested_downloads") or [result]
        path = Path(downloads[0].get("filepath") or downloads[0].get("_filename") or "")
        if not path.is_file():
            limit = self.options.max_filesize_bytes
            hint = f" (larger than the maximum file size, {limit} bytes?)" if limit else ""
            raise FetchError(f"{info.get('webpage_url') or info.get('url')}: nothing was downloaded{hint}")
        return path


def fetch_all(items: Sequence[Item], options: FetchOptions) -> Iterator[Resolved]:
    """Expand and download URL items with a bounded pool, yielding each result as soon as it is ready."""
    fetcher = Fetcher(options)
    with ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="fetch") as pool:
        pending: dict[Future[Any], tuple[str, int, int, Item]] = {
            pool.submit(fetcher.expand, item): ("expand", row, 0, item) for row, item in enumerate(items)
        }
        seen: set[str] = set()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                stage, row, entry, item = pending.pop(future)
                try:
                    value = future.result()
                except Exception as exc:  # one bad URL never ends the run
                    reason = str(exc) if isinstance(exc, AudioclfError) else f"{item.source}: {_reason(exc)}"
                    yield Resolved(row, entry, item, reason)
                    continue
                if stage == "download":
                    yield Resolved(row, entry, value[0], fresh=value[1])
                elif not value:
                    yield Resolved(row, entry, item, f"{item.source}: playlist has no entries")
                for n, child in enumerate(value if stage == "expand" else []):
                    if child.source in seen:  # the same video reached through two rows: keep the first
                        log.info("%s: %s already listed; skipped", child.where, child.source)
                        continue
                    seen.add(child.source)
                    pending[pool.submit(fetcher.download, child)] = ("download", row, n, child)
