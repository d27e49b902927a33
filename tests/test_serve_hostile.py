"""`audioclf serve` against hostile clients, over real sockets: a real uvicorn server (the one `serve` runs, on a
free 127.0.0.1 port, in a thread) and httpx or raw sockets. Odd query values, a JSON body nested 100,000 deep,
too many URLs, a cut-off upload, clients that send a byte every 0.5 s, a request that times out while the
model works, unknown routes, and the command line's port and timeout checks. Every wait is bounded."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

pytest.importorskip("fastapi")
import httpx

from audioclf.cli.main import main
from audioclf.model.folder import load_model
from audioclf.serve.app import create_app
from audioclf.serve.options import ServeOptions
from audioclf.serve.server import bind, uvicorn_server

BOUNDARY = "b0undary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@contextmanager
def live_server(model: Path, cache: Path, **options: object) -> Iterator[str]:
    """The server `serve` runs (bound socket, uvicorn with the receive deadline), in a thread; its base URL."""
    chosen = ServeOptions(port=0, cache_dir=cache, **options)  # type: ignore[arg-type]
    sock = bind(chosen.host, chosen.port)
    server = uvicorn_server(create_app(load_model(model), chosen), chosen)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="module")
def server(tone_model: tuple[Path, Path]) -> Iterator[str]:
    with live_server(*tone_model, timeout_s=3.0) as url:
        yield url


def clip(tone_dataset: Path) -> bytes:
    return sorted(tone_dataset.parent.glob("low_3_*.wav"))[0].read_bytes()


def one_line_error(got: httpx.Response) -> str:
    """The body is exactly ``{"error": "<one line>"}``; the line."""
    assert got.headers["content-type"] == "application/json", got.text
    body = got.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], body
    return str(body["error"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("top_k=nan", "top_k='nan': use a whole number"),
        ("top_k=inf", "top_k='inf': use a whole number"),
        ("top_k=1e400", "top_k='1e400': use a whole number"),
        ("top_k=2.5", "top_k='2.5': use a whole number"),
        ("window=inf", "window='inf': not a finite number"),
        ("window=nan", "window='nan': not a finite number"),
        ("hop=1e400", "hop='1e400': not a finite number"),
        ("segments=true&min_duration=inf", "min_duration='inf': not a finite number"),
        ("window=1&hop=0.001", "hop 0.001 s"),
        ("segments=true&smooth=median:999999999", "smooth over at most 1001 windows"),
    ],
)
def test_odd_query_values_are_one_line_400s(server: str, tone_dataset: Path, query: str, message: str) -> None:
    got = httpx.post(f"{server}/v1/predict?{query}", files=[("files", ("a.wav", clip(tone_dataset)))], timeout=30)
    assert got.status_code == 400 and message in one_line_error(got), got.text


def test_json_bodies_nested_too_deep_or_with_too_many_urls(server: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    got = httpx.post(f"{server}/v1/predict", content=deep, headers={"Content-Type": "application/json"}, timeout=30)
    assert got.status_code == 400 and "nested too deeply" in one_line_error(got)
    urls = [f"https://example.com/{i}.wav" for i in range(33)]
    got = httpx.post(f"{server}/v1/predict", json={"urls": urls}, timeout=30)
    assert got.status_code == 400 and "33 URLs in one request; send at most 32" in one_line_error(got)
    got = httpx.post(f"{server}/v1/predict", json={"urls": "https://example.com/a.wav"}, timeout=30)
    assert got.status_code == 400 and 'give {"url"' in one_line_error(got)  # a string is not a list of URLs


def test_a_json_body_without_length_is_cut_off_at_its_limit(server: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: 2 MB of padding inside the JSON
        yield b'{"urls": ["https://example.com/a.wav"], "pad": "'
        yield from (b"x" * 65_536 for _ in range(32))
        yield b'"}'

    got = httpx.post(f"{server}/v1/predict", content=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert got.status_code == 413 and "JSON body over 1024 KB" in one_line_error(got)


def test_a_multipart_body_cut_off_before_its_closing_boundary_is_refused(server: str, tone_dataset: Path) -> None:
    data = clip(tone_dataset)
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'.encode()
    whole = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    assert httpx.post(f"{server}/v1/predict", content=whole, headers=MULTIPART, timeout=30).status_code == 200
    for cut in (head + data[: len(data) // 2], head + data, whole[:-4]):  # half a file; no boundary; a partial one
        got = httpx.post(f"{server}/v1/predict", content=cut, headers=MULTIPART, timeout=30)
        assert got.status_code == 400 and "ended before its closing boundary" in one_line_error(got)


def trickle(url: str, first: bytes, rest: bytes, seconds: float) -> tuple[float, bytes]:
    """Send ``first``, then ``rest`` a byte every 0.5 s (then nothing), for at most ``seconds``: (when the
    server answered or closed, what it sent). Fails if the connection is still open after ``seconds``."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(first)
        for byte in [*rest, *([None] * int(seconds * 2))]:
            if time.monotonic() - started > seconds:
                break
            if select.select([sock], [], [], 0.5)[0]:  # the server spoke, or closed: read what it sent
                return time.monotonic() - started, _read_all(sock)
            if byte is not None:
                sock.sendall(bytes([byte]))
    raise AssertionError(f"still connected after {seconds} s")


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except OSError:
        pass
    return answer


def test_a_client_sending_a_byte_every_half_second_is_cut_off(server: str, tone_dataset: Path) -> None:
    """The server's --timeout is 3 s: the whole request (headers and body) must arrive within it."""
    headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    took, answer = trickle(server, b"", headers, seconds=10)
    assert 2.5 < took < 6 and answer.startswith(b"HTTP/1.1 408"), (took, answer)
    assert "did not arrive within 3 s" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]

    data = clip(tone_dataset)
    body = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'.encode() + data
    head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
    head += f"Content-Length: {len(body) + 20}\r\n\r\n"
    took, answer = trickle(server, head.encode(), body, seconds=10)
    assert 2.5 < took < 6 and answer.startswith(b"HTTP/1.1 408"), (took, answer)
    took, answer = trickle(server, b"", b"", seconds=10)  # connected, nothing sent: the same limit
    assert took < 6 and answer.startswith(b"HTTP/1.1 408"), (took, answer)
    assert httpx.get(f"{server}/healthz", timeout=10).json() == {"status": "ok"}  # everyone else is served


def test_unknown_routes_and_methods_answer_in_the_documented_shape(server: str) -> None:
    for got, status, message in [
        (httpx.get(f"{server}/nope", timeout=10), 404, "/nope: no such page or API route"),
        (httpx.get(f"{server}/static/nope.js", timeout=10), 404, "/static/nope.js: no such page"),
        (httpx.delete(f"{server}/v1/predict", timeout=10), 405, "DELETE is not allowed on /v1/predict"),
        (httpx.post(f"{server}/v1/model", timeout=10), 405, "POST is not allowed on /v1/model"),
    ]:
        assert got.status_code == status and message in one_line_error(got), got.text
    assert httpx.delete(f"{server}/v1/predict", timeout=10).headers["allow"] == "POST"


@pytest.mark.parametrize(
    "request_bytes",
    [b"\0\0\0 not http\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\na header without a colon\r\n\r\n"],
)
def test_requests_h11_cannot_parse_get_the_same_json_shape(server: str, request_bytes: bytes) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes)
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower(), head
    assert "not a well-formed HTTP/1.1 request" in json.loads(body)["error"]


def test_a_request_that_timed_out_stops_using_the_worker(
    tone_model: tuple[Path, Path], tone_dataset: Path, tmp_path: Path
) -> None:
    """Three minutes of audio at a hop of 0.05 s is 3,600 windows: far more than 3 s of work here. Once its
    request has had its 504, the worker stops it at the next batch of windows; the next request is answered.
    The same audio again (its cache entry was being computed when it stopped) must not wait on a lock."""
    long = write_audio(tmp_path / "long.wav", np.tile(tone(440, 10, noise=0.05), 18), 16_000)
    with live_server(*tone_model, timeout_s=3.0) as url:
        for _ in range(2):
            got = httpx.post(
                f"{url}/v1/predict?window=1&hop=0.05", files=[("files", ("long.wav", long.read_bytes()))], timeout=30
            )
            assert got.status_code == 504 and "no answer within 3 s" in one_line_error(got)
        started = time.monotonic()
        got = httpx.post(f"{url}/v1/predict", files=[("files", ("a.wav", clip(tone_dataset)))], timeout=30)
        assert got.status_code == 200, (got.text, time.monotonic() - started)
        assert got.json()["predictions"][0]["label"] == "low"
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert re.search(r"^audioclf_abandoned_runs_total 2\.0$", metrics, re.M), metrics


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "80000"], "port 80000: use 1 to 65535"),
        (["--port", "-1"], "port -1: use 1 to 65535"),
        (["--timeout", "nan"], "timeout nan s: use a number of seconds above 0"),
        (["--timeout", "inf"], "timeout inf s"),
        (["--timeout", "0"], "timeout 0.0 s"),
        (["--timeout", "-5"], "timeout -5.0 s"),
    ],
)
def test_bad_ports_and_timeouts_are_one_line(
    tone_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", "--model", str(tone_model[0]), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "serving" not in err, err


def test_a_port_in_use_is_one_line_before_serving(
    tone_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tone_model[0]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot listen on http://127.0.0.1:{port} (Address already in use)" in err, err
    assert err.count("\n") == 1 and "serving" not in err, err


def test_an_ipv6_address_is_printed_in_brackets_and_reachable_there(tone_model: tuple[Path, Path]) -> None:
    """The real command in a child process, on ::1 and a free port: the address it prints is one a client can use."""
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    model, cache = tone_model
    args = ["serve", "--model", str(model), "--host", "::1", "--port", "0", "--cache-dir", str(cache)]
    code = f"from audioclf.cli.main import main; raise SystemExit(main({args!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines, found, deadline = [], None, time.monotonic() + 120
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 1)[0]:
                lines.append(proc.stderr.readline())
                found = re.search(r" on (http://\[::1\]:(\d+))$", lines[-1].strip())
        assert found and found.group(2) != "0", lines
        assert httpx.get(f"{found.group(1)}/healthz", timeout=30).json() == {"status": "ok"}
    finally:
        proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
        proc.wait(60)
