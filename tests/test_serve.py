"""`audioclf serve` through FastAPI's TestClient on a tiny real model: files, URLs from a local HTTP server,
several inputs at once, the same JSON as `predict --json`, bad inputs, the token, SSRF refusals, metrics, and
micro-batching."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from audioclf.cli.main import main
from audioclf.errors import AudioclfError
from audioclf.labelling.prediction import PredictOptions
from audioclf.model.folder import load_model
from audioclf.serve.app import create_app
from audioclf.serve.batcher import MicroBatcher, QueueFull
from audioclf.serve.metrics import ServeMetrics
from audioclf.serve.options import ServeOptions
from audioclf.serve.uploads import receive_uploads


def client_for(model: Path, cache: Path, **options: object) -> TestClient:
    return TestClient(create_app(load_model(model), ServeOptions(cache_dir=cache, **options)))  # type: ignore[arg-type]


@pytest.fixture()
def client(tone_model: tuple[Path, Path]) -> Iterator[TestClient]:
    with client_for(*tone_model) as c:
        yield c


def clips(tone_dataset: Path) -> list[Path]:
    return sorted(tone_dataset.parent.glob("*_3_*.wav"))[:3]  # the held-out speaker


def test_health_model_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["labels"] == ["high", "low", "mid"] and info["encoder"] == "builtin" and info["trained_at"]
    text = client.get("/metrics").text
    assert "audioclf_requests_total" in text and "audioclf_queue_depth" in text


def test_api_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs").text
    scripts = [s.split('"')[0] for s in page.split('src="')[1:]] + [s.split('"')[0] for s in page.split('href="')[1:]]
    assert scripts and not any(s.startswith(("http:", "https:", "//")) for s in scripts), scripts
    assert all(client.get(s).status_code == 200 for s in scripts)
    predict = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    assert {"top_k", "segments", "min_confidence"} <= {p["name"] for p in predict["parameters"]}
    assert "multipart/form-data" in predict["requestBody"]["content"]


def test_predict_files_answers_what_predict_json_does(
    client: TestClient, tone_model: tuple[Path, Path], tone_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = clips(tone_dataset)
    upload = [("files", (f.name, f.read_bytes(), "audio/wav")) for f in files]
    got = client.post("/v1/predict?top_k=2", files=upload)
    assert got.status_code == 200, got.text
    served = got.json()["predictions"]
    model, cache = tone_model
    args = ["predict", "--model", str(model), *map(str, files), "--json", "--top-k", "2"]
    assert main([*args, "--cache-dir", str(cache), "--quiet"]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["source"] for p in served] == [f.name for f in files]  # the client's names, never our paths
    for ours, theirs in zip(served, cli, strict=True):
        assert {**ours, "source": ""} == {**theirs, "source": ""}


def test_segments_and_options_in_the_query(client: TestClient, tmp_path: Path) -> None:
    pieces = [tone(220 * 1.02, 2, noise=0.05), tone(1980 * 1.02, 2, noise=0.05, seed=1)]  # like the training tones
    audio = write_audio(tmp_path / "two.wav", np.concatenate(pieces), 16_000)
    got = client.post(
        "/v1/predict?segments=true&window=0.5&hop=0.25", files=[("files", ("two.wav", audio.read_bytes()))]
    )
    assert got.status_code == 200, got.text
    (pred,) = got.json()["predictions"]
    assert [s["label"] for s in pred["segments"]] == ["low", "high"]
    bad = client.post("/v1/predict?top_k=0", files=[("files", ("two.wav", audio.read_bytes()))])
    assert bad.status_code == 400 and "ask for at least 1 label" in bad.json()["error"]
    unknown = client.post("/v1/predict?colour=red", files=[("files", ("two.wav", audio.read_bytes()))])
    assert unknown.status_code == 400 and "unknown query option" in unknown.json()["error"]


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ([("files", ("empty.wav", b""))], 400, "the file is empty"),
        ([("files", ("notes.wav", b"not audio at all" * 10))], 415, "cannot decode"),
        ([("other", ("a.wav", b"x"))], 400, "multipart form field 'files'"),
    ],
)
def test_bad_uploads_are_json_errors(client: TestClient, files: list, status: int, message: str) -> None:
    got = client.post("/v1/predict", files=files)
    assert got.status_code == status and message in got.json()["error"], got.text


def test_too_large_and_the_token(tone_model: tuple[Path, Path], tone_dataset: Path) -> None:
    data = clips(tone_dataset)[0].read_bytes()
    with client_for(*tone_model, max_upload_bytes=1000) as small:
        got = small.post("/v1/predict", files=[("files", ("a.wav", data))])
        assert got.status_code == 413 and "upload limit" in got.json()["error"]
        boundary = "b0undary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams
            yield head.encode()
            yield from (data[i : i + 256] for i in range(0, len(data), 256))
            yield f"\r\n--{boundary}--\r\n".encode()

        kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        got = small.post("/v1/predict", content=chunked(), headers=kind)
        assert got.status_code == 413 and "upload limit" in got.json()["error"]
    with client_for(*tone_model, token="s3cret") as guarded:
        assert guarded.get("/healthz").status_code == 200  # health and the page need no token
        assert guarded.get("/v1/model").status_code == 401
        assert guarded.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get("/metrics").status_code == 401
        ok = guarded.post("/v1/predict", files=[("files", ("a.wav", data))], headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in ("low", "mid", "high")


def test_uploads_stream_into_the_private_folder_under_our_names(tmp_path: Path) -> None:
    boundary = "xyz"
    parts = [("files", "../../etc/passwd.wav", b"RIFF" + bytes(range(256)) * 40), ("note", None, b"hello")]
    parts.append(("files", "clip.exe", b"second file"))
    body = b""
    for field, name, data in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{name}"' if name else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):  # boundaries and headers split across chunks
            yield body[i : i + 7]

    got = asyncio.run(receive_uploads(f"multipart/form-data; boundary={boundary}", chunks(), tmp_path, 10**6, 8))
    assert [(u.path.name, u.client_name) for u in got] == [("upload-0.wav", "passwd.wav"), ("upload-1", "clip.exe")]
    assert got[0].path.read_bytes() == parts[0][2] and got[1].path.read_bytes() == b"second file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload-0.wav", "upload-1"]
    with pytest.raises(AudioclfError, match="more than 1 files"):
        asyncio.run(receive_uploads(f"multipart/form-data; boundary={boundary}", chunks(), tmp_path, 10**6, 1))


@pytest.fixture()
def http_server(tone_dataset: Path) -> Iterator[str]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(tone_dataset.parent))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_private_addresses_refused_unless_allowed(
    client: TestClient, tone_model: tuple[Path, Path], http_server: str, tone_dataset: Path
) -> None:
    url = f"{http_server}/{clips(tone_dataset)[0].name}"
    refused = client.post("/v1/predict", json={"url": url})
    assert refused.status_code == 400 and "is a private address (127.0.0.1)" in refused.json()["error"]
    for bad in ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "ftp://example.com/a.wav"):
        got = client.post("/v1/predict", json={"url": bad})
        assert got.status_code == 400, (bad, got.text)
    with client_for(*tone_model, allow_private_urls=True) as trusting:
        got = trusting.post("/v1/predict", json={"urls": [url, f"{http_server}/missing.wav"]})
        assert got.status_code == 200, got.text
        ok, missing = got.json()["predictions"]
        assert ok["source"] == url and ok["label"] == "high" and "error" in missing


def test_requests_arriving_together_share_one_model_pass() -> None:
    calls: list[list[str]] = []

    def run(sources, options, stop):  # type: ignore[no-untyped-def]
        calls.append(list(sources))
        time.sleep(0.05)
        return {}, {s: "x" for s in sources}

    batcher = MicroBatcher(run, ServeMetrics(), max_queue=8, max_batch_inputs=10, wait_s=0.2)
    futures = [batcher.submit([f"s{i}"], PredictOptions()) for i in range(4)]
    assert [f.result(timeout=5)[1] for f in futures] == [{f"s{i}": "x"} for i in range(4)]
    assert calls == [["s0", "s1", "s2", "s3"]]
    batcher.close()


def test_a_full_queue_is_refused_not_grown() -> None:
    release = threading.Event()

    def run(sources, options, stop):  # type: ignore[no-untyped-def]
        release.wait(5)
        return {}, {}

    batcher = MicroBatcher(run, ServeMetrics(), max_queue=1, max_batch_inputs=1, wait_s=0.0)
    batcher.submit(["a"], PredictOptions())
    time.sleep(0.1)  # the worker took "a" and waits
    batcher.submit(["b"], PredictOptions())  # waits in the queue
    with pytest.raises(QueueFull, match="retry in a moment"):
        batcher.submit(["c"], PredictOptions())
    release.set()
    batcher.close()


def test_serving_beyond_loopback_needs_a_token(
    tone_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--model", str(tone_model[0]), "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "give a token" in err and "(see --token)" in err


def test_every_redirect_hop_goes_through_the_address_check(tone_dataset: Path, tmp_path: Path) -> None:
    """Real yt-dlp, pointed at the server's egress proxy: a hop to a refused address fails even when the first
    address was allowed (here the policy allows one loopback port, the "outside", and refuses the "inside")."""
    from http.server import BaseHTTPRequestHandler

    from audioclf.io.download import FetchOptions, fetch_all
    from audioclf.io.manifest import Item
    from audioclf.serve.egress import EgressProxy

    clip = clips(tone_dataset)[0]
    inside = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(clip.parent)))
    inside_port = inside.server_address[1]

    class Outside(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/direct.wav":
                data = clip.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:  # a public page that redirects to an internal address
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{inside_port}/{clip.name}")
                self.end_headers()

    outside = ThreadingHTTPServer(("127.0.0.1", 0), Outside)
    outside_port = outside.server_address[1]
    for server in (inside, outside):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    asked: list[int] = []

    def policy(host: str, port: int) -> str | None:
        asked.append(port)
        return "127.0.0.1" if port == outside_port else None

    egress = EgressProxy(policy)
    try:
        options = FetchOptions(cache_dir=tmp_path / "cache", proxy=egress.url)
        direct, redirected, inner = (
            Item(f"http://127.0.0.1:{port}/{name}", None, None, "", f"row{i}")
            for i, (port, name) in enumerate(
                [(outside_port, "direct.wav"), (outside_port, "go"), (inside_port, clip.name)]
            )
        )
        results = {r.item.where.split("#")[0]: r for r in fetch_all([direct, redirected, inner], options)}
        assert results["row0"].error is None  # allowed, through the proxy
        assert results["row1"].error is not None and "403" in results["row1"].error  # the redirect hop was refused
        assert results["row2"].error is not None and "403" in results["row2"].error
        # the redirect's second hop was asked about: yt-dlp's every connection went through the check
        assert asked.count(inside_port) == 2 and asked.count(outside_port) >= 2, asked
    finally:
        egress.close()
        inside.shutdown()
        outside.shutdown()


def test_closing_finishes_every_accepted_request() -> None:
    def run(sources, options, stop):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return {}, {s: "done" for s in sources}

    batcher = MicroBatcher(run, ServeMetrics(), max_queue=8, max_batch_inputs=1, wait_s=0.0)
    futures = [batcher.submit([f"s{i}"], PredictOptions()) for i in range(5)]
    batcher.close()  # what the server's shutdown does: drain the queue, then stop
    assert all(f.done() for f in futures)
    assert [f.result()[1] for f in futures] == [{f"s{i}": "done"} for i in range(5)]


def test_a_request_past_its_time_limit_is_504(tone_model: tuple[Path, Path], tone_dataset: Path) -> None:
    data = clips(tone_dataset)[0].read_bytes()
    with client_for(*tone_model, timeout_s=1.5) as c:  # room for a loaded machine to answer the second request
        batcher = c.app.state.batcher  # type: ignore[attr-defined]
        real = batcher._run

        def slow(sources, options, stop):  # type: ignore[no-untyped-def]  # the model, three seconds late
            time.sleep(3.0)
            return real(sources, options, stop)

        batcher._run = slow
        got = c.post("/v1/predict", files=[("files", ("a.wav", data))])
        assert got.status_code == 504 and "no answer within 1.5 s" in got.json()["error"]
        batcher._run = real
        time.sleep(2.0)  # the late answer arrives for a request that gave up; the worker must survive it
        again = c.post("/v1/predict", files=[("files", ("a.wav", data))])
        assert again.status_code == 200, again.text
