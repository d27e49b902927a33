"""`audioclf serve` under load, on 127.0.0.1 only, bounded in count and time.

    python bench/serve_load.py [--model DIR] [--clients 8] [--seconds 20] [--sequential 40]

Starts the server in this process (uvicorn on a free loopback port), then sends the same kind of request (one
FSDD clip, made unique per request by a little noise so that the embedding cache never answers) first one at a
time, then from N concurrent clients for a bounded time. Prints requests/s, latency percentiles and errors for
both, checks every answer against the label the model gives the same audio directly (no request lost or
answered wrongly), and the server's resident memory before and after. Without --model it trains the built-in
encoder on the repo's FSDD sample first.
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import uvicorn

import audioclf
from audioclf.io.audio import SAMPLE_RATE_HZ, load_audio
from audioclf.serve.app import create_app
from audioclf.serve.options import ServeOptions

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE_HZ)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def variant(clip: np.ndarray, k: int) -> bytes:
    """The clip with a faint noise of seed k: other bytes (no cache hit), the same sound."""
    noise = np.random.default_rng(k).standard_normal(len(clip)).astype(np.float32) * 1e-3
    return wav_bytes(clip + noise)


def start(model_dir: Path, cache: Path) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(audioclf.load(model_dir).trained, ServeOptions(port=port, cache_dir=cache, max_queue=256))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def one(client: httpx.Client, url: str, body: bytes) -> tuple[float, str | None, int]:
    started = time.perf_counter()
    response = client.post(url + "/v1/predict", files=[("files", ("clip.wav", body, "audio/wav"))], timeout=120)
    label = response.json()["predictions"][0].get("label") if response.status_code == 200 else None
    return time.perf_counter() - started, label, response.status_code


def run_load(
    url: str, bodies: list[tuple[bytes, str]], clients: int, seconds: float, rss: list[tuple[int, float]]
) -> dict[str, object]:
    """N clients for a bounded time; ``rss`` gets (requests answered, resident MB) at each tenth of them."""
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))  # request numbers
    lock = threading.Lock()
    results: list[tuple[float, bool, int]] = []
    every = max(1, len(bodies) // 10)

    def worker() -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop:
                with lock:
                    k = next(counter)
                if k >= len(bodies):  # bounded in count as well as in time
                    return
                body, expected = bodies[k]
                took, label, status = one(client, url, body)
                with lock:
                    results.append((took, label == expected, status))
                    if len(results) % every == 0:
                        rss.append((len(results), rss_mb()))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    wall = time.perf_counter() - started
    return summarise(results, wall)


def summarise(results: list[tuple[float, bool, int]], wall: float) -> dict[str, object]:
    lat = np.array([r[0] for r in results]) * 1000
    ok = [r for r in results if r[2] == 200]
    return {
        "requests": len(results),
        "rps": len(results) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "errors": len(results) - len(ok),
        "wrong": sum(1 for r in ok if not r[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sequential", type=int, default=40, help="requests sent one at a time first")
    parser.add_argument("--requests", type=int, default=2000, help="at most this many concurrent requests")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model_dir = args.model
    if model_dir is None:
        model_dir = work / "model"
        audioclf.train(SAMPLE / "manifest.csv", model_dir, encoder="builtin", cache_dir=work / "train-cache")
    clips = [load_audio(p) for p in sorted((SAMPLE / "recordings").glob("*_theo_*.wav"))[:50]]
    model = audioclf.load(model_dir, cache_dir=work / "direct-cache")
    bodies = []
    for k in range(
        args.sequential + args.requests
    ):  # unique audio per request; the label each should get, from the model directly
        body = variant(clips[k % len(clips)], k)
        bodies.append(body)
    expected = []
    for k, body in enumerate(bodies):
        path = work / f"v{k}.wav"
        path.write_bytes(body)
        expected.append(path)
    labels = [p.label for p in model.predict(expected)]
    pairs = list(zip(bodies, labels, strict=True))
    server, url = start(model_dir, work / "serve-cache")
    rss_start = rss_mb()
    with httpx.Client() as client:
        one(client, url, variant(clips[0], 10**6))  # warm-up
        t0 = time.perf_counter()
        seq = [(*one(client, url, pairs[k][0]), pairs[k][1]) for k in range(args.sequential)]
        seq_wall = time.perf_counter() - t0
    sequential = summarise([(t, label == want, status) for t, label, status, want in seq], seq_wall)
    pairs = pairs[args.sequential :]
    rss_series: list[tuple[int, float]] = [(0, rss_mb())]
    concurrent = run_load(url, pairs, args.clients, args.seconds, rss_series)
    rss_end = rss_mb()
    server.should_exit = True
    print(f"model {model_dir} ({model.encoder}); one FSDD clip per request, unique audio each")
    head = f"{'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} {'wrong':>5}"
    print(f"{'mode':<22} {head}")
    for name, r in (("one at a time", sequential), (f"{args.clients} concurrent clients", concurrent)):
        print(
            f"{name:<22} {r['requests']:>8} {r['rps']:>7.1f} {r['p50']:>7.0f} {r['p95']:>7.0f} {r['p99']:>7.0f} "
            f"{r['errors']:>6} {r['wrong']:>5}"
        )
    ratio = concurrent["rps"] / sequential["rps"]  # type: ignore[operator]
    memory = f"{rss_start:.0f} -> {rss_end:.0f} MB"
    print(f"throughput x{ratio:.2f}; resident memory of this process (server and clients) {memory}")
    series = ", ".join(f"{n}: {mb:.0f}" for n, mb in rss_series)
    print(f"resident MB after N concurrent requests: {series}")


if __name__ == "__main__":
    main()
