"""The shapes ``download`` works with: what it reads of yt-dlp's untyped info dicts, and its own index of
finished downloads."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class YdlInfo(TypedDict, total=False):
    """The keys this module reads of a yt-dlp info dict (yt-dlp gives it no type; it holds many more keys)."""

    _type: str  # "playlist" or "multi_video" for a list of entries
    entries: list[YdlInfo]
    requested_downloads: list[YdlInfo]  # after a download: one per file written
    id: str
    ie_key: str
    extractor: str
    extractor_key: str
    url: str
    webpage_url: str
    title: str
    duration: float
    uploader: str
    filesize: int | None
    filesize_approx: float | None
    filepath: str
    _filename: str


class IndexEntry(TypedDict):
    """A finished download, as ``cache_dir/urls`` (and the sidecar beside the file) hold it. Entries written
    before a key existed lack it."""

    url: str
    file: str  # the name under ``cache_dir/media``
    size: int
    range: NotRequired[list[float | None]]  # [start, end] asked, in seconds
    range_applied: NotRequired[bool]  # the file holds only that range
    extractor: NotRequired[str]
    group: NotRequired[str]
    id: NotRequired[str | None]
    title: NotRequired[str | None]
    duration: NotRequired[float | None]
    uploader: NotRequired[str | None]
    webpage_url: NotRequired[str | None]


YdlParams = dict[str, object]  # options to yt_dlp.YoutubeDL
