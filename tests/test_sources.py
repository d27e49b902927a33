"""Real yt-dlp against a real HTTP server on 127.0.0.1 that serves generated media and misbehaves on purpose."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import tone, write_audio

from audioclf.cli.main import main
from audioclf.encoders.loader import BuiltinEncoder
from audioclf.errors import ManifestError
from audioclf.extraction.embed import embed_items
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.download import FetchOptions, fetch_all
from audioclf.io.manifest import Item, check_url, load_manifest

TYPES = {".wav": "audio/wav", ".ogg": "audio/ogg", ".m4a": "audio/mp4", ".webm": "audio/webm", ".mp3": "audio/mpeg"}


@dataclass
class Server:
    base: str
    files: dict[str, bytes]
    hits: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET(body=False)

        def do_GET(self, body: bool = True) -> None:
            path = self.path.split("?")[0]
            server.hits[path] += 1
            if path.startswith("/flaky") and server.hits[path] <= 2:
                return self._send(500, b"try again", "text/plain", body)
            if path.startswith("/stall"):
                server.release.wait(30)  # never answers within the client's timeout
                return None
            if path.startswith("/slow/"):
                return self._send_slowly(server.files[path.removeprefix("/slow")], body)
            if path == "/page.html":
                return self._send(200, b"<html><body><p>No media here.</p></body></html>", "text/html", body)
            if path == "/feed.xml":
                items = "".join(
                    f'<item><title>clip {n}</title><enclosure url="{server.url(f"/clip{n}.ogg")}" '
                    f'type="audio/ogg" length="1"/></item>'
                    for n in (1, 2, 3)
                )
                rss = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
                return self._send(200, rss.encode(), "application/rss+xml", body)
            data = server.files.get(path.removeprefix("/flaky"))
            if data is None:
                return self._send(404, b"not found", "text/plain", body)
            return self._send(200, data, TYPES.get(Path(path).suffix, "application/octet-stream"), body)

        def _send_slowly(self, data: bytes, body: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for start in range(0, len(data) if body else 0, 16_384):
                if server.release.wait(0.1):
                    return
                self.wfile.write(data[start : start + 16_384])

        def _send(self, code: int, data: bytes, ctype: str, body: bool) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("media")
    specs = {
        "/clip.ogg": (440, 1.0, "clip.ogg", 44_100),
        "/clip.m4a": (440, 1.0, "clip.m4a", 44_100),
        "/clip.webm": (880, 1.0, "clip.webm", 48_000),
        "/clip.mp3": (660, 1.0, "clip.mp3", 44_100),
        "/a/clip.wav": (300, 0.8, "a.wav", 16_000),
        "/b/clip.wav": (1500, 0.8, "b.wav", 16_000),
        "/clip1.ogg": (300, 0.6, "c1.ogg", 44_100),
        "/clip2.ogg": (600, 0.6, "c2.ogg", 44_100),
        "/clip3.ogg": (900, 0.6, "c3.ogg", 44_100),
        "/long.wav": (500, 6.0, "long.wav", 16_000),
        "/big.wav": (500, 20.0, "big.wav", 16_000),
    }
    out = {}
    for route, (freq, secs, name, rate) in specs.items():
        out[route] = write_audio(root / name, tone(freq, secs, rate), rate, channels=2).read_bytes()
    out["/low.wav"], out["/high.wav"] = out["/a/clip.wav"], out["/b/clip.wav"]
    return out


@pytest.fixture()
def server(media: dict[str, bytes]) -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Server(f"http://127.0.0.1:{httpd.server_address[1]}", media)
    httpd.RequestHandlerClass = _handler(state)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def options(tmp_path: Path, **kw: object) -> FetchOptions:
    base: dict[str, object] = {"cache_dir": tmp_path / "cache", "jobs": 3, "backoff_s": 0.05, "socket_timeout_s": 2}
    return FetchOptions(**(base | kw))  # type: ignore[arg-type]


def items_for(*urls: str) -> list[Item]:
    return [Item(u, "x", None, "", f"m.csv:{n + 2}") for n, u in enumerate(urls)]


def fetch(items: list[Item], opts: FetchOptions) -> dict[str, tuple[Item, str | None, bool]]:
    return {r.item.source: (r.item, r.error, r.fresh) for r in fetch_all(items, opts)}


def test_formats_download_audio_as_is_with_sidecars(server: Server, tmp_path: Path) -> None:
    urls = [server.url(p) for p in ("/clip.ogg", "/clip.m4a", "/clip.webm", "/clip.mp3")]
    results = fetch(items_for(*urls), options(tmp_path))
    for url in urls:
        item, error, fresh = results[url]
        assert error is None and fresh
        local = Path(item.local or "")
        assert local.read_bytes() == server.files[url.removeprefix(server.base)]  # kept as downloaded
        assert local.parent == tmp_path / "cache" / "media" and len(local.stem) == 64  # a hash, never a title
        sidecar = json.loads(local.with_suffix(local.suffix + ".json").read_text())
        assert sidecar["url"] == url and {"title", "duration", "uploader", "id", "webpage_url"} <= set(sidecar)


def test_hostile_remote_names_never_reach_the_file_system(server: Server, tmp_path: Path) -> None:
    route = "/..%2F..%2Fetc%2Fpasswd%20%24(rm%20-rf%20~)%3B%20%E2%80%AE.wav"
    server.files[route] = server.files["/low.wav"]
    (item, error, _) = fetch(items_for(server.url(route)), options(tmp_path))[server.url(route)]
    assert error is None
    local = Path(item.local or "")
    assert local.parent == tmp_path / "cache" / "media" and re.fullmatch(r"[0-9a-f]{64}\.wav", local.name)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "passwd" in p.name) == []


def test_same_file_name_on_two_hosts_does_not_collide(server: Server, tmp_path: Path) -> None:
    a, b = server.url("/a/clip.wav"), server.url("/b/clip.wav")
    results = fetch(items_for(a, b), options(tmp_path))
    path_a, path_b = Path(results[a][0].local or ""), Path(results[b][0].local or "")
    assert path_a != path_b
    assert path_a.read_bytes() == server.files["/a/clip.wav"] and path_b.read_bytes() == server.files["/b/clip.wav"]
    assert results[a][0].group != results[b][0].group


def test_rerun_downloads_nothing(server: Server, tmp_path: Path) -> None:
    url = server.url("/clip.ogg")
    fetch(items_for(url), options(tmp_path))
    hits = sum(server.hits.values())
    (item, error, fresh) = fetch(items_for(url), options(tmp_path))[url]
    assert error is None and not fresh and Path(item.local or "").is_file()
    assert sum(server.hits.values()) == hits  # not a single request


def test_transient_500_is_retried(server: Server, tmp_path: Path) -> None:
    url = server.url("/flaky/clip.mp3")
    (_, error, _) = fetch(items_for(url), options(tmp_path))[url]
    assert error is None and server.hits["/flaky/clip.mp3"] >= 3


@pytest.mark.parametrize(
    ("route", "reason"),
    [("/missing.wav", "404"), ("/page.html", "Unsupported URL"), ("/stall.wav", "timed out")],
)
def test_bad_urls_are_reported_not_raised(server: Server, tmp_path: Path, route: str, reason: str) -> None:
    url = server.url(route)
    (_, error, _) = fetch(items_for(url), options(tmp_path, retries=1))[url]
    assert error is not None and reason in error and url in error


def test_max_filesize(server: Server, tmp_path: Path) -> None:
    url = server.url("/big.wav")
    (_, error, _) = fetch(items_for(url), options(tmp_path, max_filesize_bytes=100_000))[url]
    assert error is not None and "maximum file size" in error
    assert not list((tmp_path / "cache" / "media").glob("*.wav"))


def test_a_download_that_would_fill_the_disk_fails_that_item(server: Server, tmp_path: Path) -> None:
    import shutil

    (tmp_path / "cache").mkdir()
    free = shutil.disk_usage(tmp_path / "cache").free
    ok, full = server.url("/clip.ogg"), server.url("/big.wav")
    fetch(items_for(ok), options(tmp_path))  # cached now: a rerun needs no space
    results = fetch(items_for(ok, full), options(tmp_path, min_free_bytes=free + 2**40))
    assert results[ok][1] is None and not results[ok][2]
    error = results[full][1]
    assert error is not None and full in error and "free space or lower the minimum" in error
    assert len(list((tmp_path / "cache" / "media").glob("*.wav"))) == 0


def test_playlist_expands_with_cap_and_per_video_groups(server: Server, tmp_path: Path) -> None:
    results = list(fetch_all(items_for(server.url("/feed.xml")), options(tmp_path, max_per_playlist=2)))
    assert [r.error for r in results] == [None, None]
    assert sorted(r.item.source for r in results) == [server.url("/clip1.ogg"), server.url("/clip2.ogg")]
    assert len({r.item.group for r in results}) == 2 and all(r.item.label == "x" for r in results)
    assert {r.item.where for r in results} == {"m.csv:2#1", "m.csv:2#2"}


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/a.mp3", "data:audio/wav;base64,AAAA"])
def test_only_http_and_https(url: str, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="only http and https"):
        check_url(url)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"url,label\n{url},a\n")
    with pytest.raises(ManifestError, match=r"m\.csv:2"):
        load_manifest(manifest)


def test_train_on_urls_with_failures_and_predict_a_url(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ("/low.wav", "low"),
        ("/clip1.ogg", "low"),
        ("/high.wav", "high"),
        ("/clip3.ogg", "high"),
        ("/a/clip.wav", "low"),
        ("/b/clip.wav", "high"),
        ("/missing.wav", "low"),
        ("/page.html", "high"),
    ]
    manifest = tmp_path / "urls.csv"
    manifest.write_text("url,label\n" + "".join(f"{server.url(p)},{label}\n" for p, label in rows))
    model, cache = tmp_path / "model", str(tmp_path / "cache")
    args = ["train", "--manifest", str(manifest), "--out", str(model), "--encoder", "builtin", "--epochs", "5"]
    code = main([*args, "--cache-dir", cache, "--quiet"])  # (--val-fraction, a fine-tuning option, is refused here)
    out, err = capsys.readouterr()
    assert code == 0, err
    # six downloads; /low.wav = /a/clip.wav and /high.wav = /b/clip.wav byte for byte, so embedded once each
    assert "(2 from cache, 6 downloaded" in out and "2 failed" in out
    failures = (model / "failures.csv").read_text()
    assert "/missing.wav" in failures and "/page.html" in failures and "urls.csv:8" in failures

    code = main(["predict", "--model", str(model), server.url("/clip2.ogg"), "--json", "--cache-dir", cache])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["source"] == server.url("/clip2.ogg")

    code = main(["fetch", "--manifest", str(manifest), "--cache-dir", cache, "--failures", str(tmp_path / "f.csv")])
    out, err = capsys.readouterr()
    assert code == 0 and "6 fetched (0 downloaded now, 6 already cached), 2 failed" in out


def test_killed_download_leaves_nothing_taken_as_complete(server: Server, tmp_path: Path) -> None:
    url = server.url("/slow/big.wav")  # about 40 chunks, 0.1 s apart
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"url,label\n{url},a\n")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "audioclf", "fetch", "--manifest", str(manifest), "--cache-dir", str(cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list((cache / "media").glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((cache / "media").glob("*.part")), "the download never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((cache / "urls").rglob("*.json"))  # nothing recorded as finished
    assert not list((cache / "media").glob("*.wav"))
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 fetched (1 downloaded now" in rerun.stdout
    (done,) = list((cache / "media").glob("*.wav"))
    assert done.read_bytes() == server.files["/big.wav"]
    assert not list((cache / "media").glob("*.part"))


@pytest.mark.parametrize(
    "partial",
    [
        False,  # whole file downloaded, cut while decoding
        pytest.param(
            True, marks=pytest.mark.skipif(not shutil.which("ffmpeg"), reason="partial downloads need ffmpeg")
        ),
    ],
)
def test_time_range_of_a_url_row(server: Server, tmp_path: Path, partial: bool) -> None:
    item = Item(server.url("/long.wav"), "x", None, "", "m.csv:2", start_s=2.0, end_s=4.5)
    windows = WindowOptions(window_s=10.0)
    cache = EmbeddingCache(tmp_path / "cache", "builtin-test", windows)
    opts = options(tmp_path, partial_downloads=partial)
    result = embed_items([item], BuiltinEncoder(), cache, windows, progress=False, fetch=opts)
    assert not result.failures, result.failures
    ((fetched, emb),) = result.embedded
    size = Path(fetched.local or "").stat().st_size
    if partial:  # only the range was downloaded: the file starts at the cut, and the item says where that was
        assert size < len(server.files["/long.wav"]) / 2
        # ffmpeg seeks an HTTP WAV by byte estimate, so the cut is only roughly at 2.0-4.5 s
        assert emb.starts_s.tolist() == [0.0] and 1.5 < emb.durations_s[0] < 3.0
        assert fetched.offset_s == 2.0 and fetched.start_s is None
    else:
        assert size == len(server.files["/long.wav"])
        assert emb.starts_s.tolist() == [2.0] and emb.durations_s.tolist() == [2.5]


def test_a_video_reached_by_two_rows_is_fetched_once(server: Server, tmp_path: Path) -> None:
    results = list(fetch_all(items_for(server.url("/feed.xml"), server.url("/feed.xml?again")), options(tmp_path)))
    assert len(results) == 3 and all(r.error is None for r in results)
    assert {r.item.where.split("#")[0] for r in results} <= {"m.csv:2", "m.csv:3"}


def test_two_fetchers_sharing_a_cache_download_a_url_once(server: Server, tmp_path: Path) -> None:
    server.files["/mid.wav"] = server.files["/big.wav"][: 6 * 16_384]  # ~0.6 s through the slow route
    url = server.url("/slow/mid.wav")
    alone = fetch(items_for(url), options(tmp_path / "alone"))[url]
    assert alone[1] is None
    one_download = server.hits["/slow/mid.wav"]

    server.hits.clear()
    results: list[tuple[Item, str | None, bool]] = []
    runs = [
        threading.Thread(target=lambda: results.append(fetch(items_for(url), options(tmp_path))[url])) for _ in range(2)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(60)
    assert [error for _, error, _ in results] == [None, None]
    assert sorted(fresh for _, _, fresh in results) == [False, True]  # one downloaded it, the other waited for it
    # the media is downloaded once; the second run may first probe the URL (yt-dlp's playlist check) before it
    # waits for the first run's download and takes it from the cache
    assert one_download <= server.hits["/slow/mid.wav"] <= one_download + 1
    assert results[0][0].local == results[1][0].local
