"""Embedding on Ray: one process against 1, 2, ... Ray workers, and the plain transformers path, in one run.

    python bench/ray_scaling.py --model /tmp/w2v2base --clips 300 --workers 1,2
    python bench/ray_scaling.py --model /tmp/w2v2base --clips 160 --workers 2 --latency-s 0.5   # clips as URLs

Every case is the real command (`python -m audioclf embed ...`) in its own process and a fresh cache; the wall
time is the whole command (start-up, `ray.init`, one model load per actor). Busy is what each Ray worker reports
as encoding time. "plain" is `bench/embed_speed.py`'s hand-written transformers loop (AutoFeatureExtractor +
AutoModel, fp32, one clip at a time) on the same files. With ``--latency-s`` the clips are served as URLs by
a local HTTP server that answers every request after that delay (network latency without CPU cost), so the
download/encode overlap of the Ray actors shows; the plain path is then skipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WORKER_ROW = re.compile(r"^\d+\.\d+\.\d+\.\d+:\d+\s+\d+\s+\d+\s+([\d.]+)\s", re.M)


@contextmanager
def slow_server(root: Path, latency_s: float) -> Iterator[str]:
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def send_head(self):  # type: ignore[no-untyped-def]
            time.sleep(latency_s)  # every GET and HEAD waits, as on a far-away server
            return super().send_head()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def audio_seconds(files: list[str]) -> float:
    from audioclf.io.audio import SAMPLE_RATE_HZ, load_audio

    return sum(len(load_audio(f, None)) for f in files) / SAMPLE_RATE_HZ


def run_embed(manifest: Path, spec: str, workers: int | None, work: Path) -> tuple[float, list[float]]:
    cache = tempfile.mkdtemp(dir=work)
    cmd = [sys.executable, "-m", "audioclf", "embed", "--manifest", str(manifest), "--encoder", spec]
    cmd += ["--cache-dir", cache, "--quiet"] + (["--ray", "--ray-workers", str(workers)] if workers else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    if not re.search(r"\b0 failed", proc.stdout):
        raise SystemExit(f"some items failed:\n{proc.stdout}")
    return wall, [float(b) for b in WORKER_ROW.findall(proc.stdout)]


def run_plain(model: str, files: list[str]) -> float:
    """embed_speed.plain in its own process (the same hand-written loop as the speed benchmark)."""
    code = f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); from embed_speed import plain; "
    code += f"plain({model!r}, json.loads(sys.stdin.read()), 10.0)"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(files), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="hf model folder (default: the built-in encoder)")
    p.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--workers", default="1,2", help="Ray worker counts to try, e.g. 1,2")
    p.add_argument("--latency-s", type=float, default=0.0, help="serve the clips as URLs with this delay")
    args = p.parse_args()
    files = sorted(str(f.resolve()) for f in args.fsdd.glob("*.wav"))[: args.clips]
    spec = f"hf:{args.model}" if args.model else "builtin"
    audio_s = audio_seconds(files)
    print(f"{len(files)} clips, {audio_s / 3600:.3f} h of audio, encoder {spec}, latency {args.latency_s} s")
    rows: list[tuple[str, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp, slow_server(args.fsdd, args.latency_s) as base:
        work = Path(tmp)
        manifest = work / "m.csv"
        if args.latency_s:
            manifest.write_text("url\n" + "".join(f"{base}/{Path(f).name}\n" for f in files))
        else:
            manifest.write_text("path\n" + "".join(f"{f}\n" for f in files))
        if args.model and not args.latency_s:
            rows.append(("plain transformers, one clip at a time", run_plain(args.model, files), []))
        rows.append(("audioclf, one process", *run_embed(manifest, spec, None, work)))
        for n in (int(w) for w in args.workers.split(",")):
            rows.append((f"audioclf --ray --ray-workers {n}", *run_embed(manifest, spec, n, work)))
    print("\n| run | wall (s) | x realtime (wall) | busy per worker (s) |\n|---|---|---|---|")
    for name, wall, busy in rows:
        print(f"| {name} | {wall:.1f} | {audio_s / wall:.1f} | {', '.join(f'{b:.2f}' for b in busy) or '-'} |")


if __name__ == "__main__":
    main()
