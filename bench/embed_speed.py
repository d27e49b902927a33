"""Embedding speed: audioclf against the plain transformers path, in one run on the same audio.

    python bench/embed_speed.py --model /tmp/w2v2base --fsdd ../shared/data/fsdd/recordings --clips 200 --long-min 10
    python bench/embed_speed.py --paths builtin --clips 1500 --long-min 60      # the built-in encoder only
    python bench/embed_speed.py --model /tmp/whisper-hf --window 30 --clips 0 --long-min 20   # Whisper base
    python bench/embed_speed.py --model /tmp/w2v2base --clips 0 --long-min 20 --layer 6   # a probe on layer 6

(a) "plain": what users write by hand: AutoFeatureExtractor + AutoModel in fp32, one clip at a time, mean of the
    last hidden state. (b) "audioclf": `audioclf.encoders.loader` + the embedding pipeline (windows, batches across
    files, bf16 where supported). (c) "builtin": the same pipeline with the built-in encoder. Each path runs in
    its own process so peak RSS is its own. Random-initialised weights of the real wav2vec2-base architecture
    are fine for speed; agreement is the cosine between (a) and (b)'s last-layer embeddings, and the top-1
    agreement of a probe (standardised logistic regression) trained on (a)'s embeddings of the FSDD clips. With
    --layer L both compare layer L's states, and audioclf's forward pass stops there, as `predict` does for a
    probe that chose layer L (plain computes all).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 16_000
PATHS = ("plain", "audioclf", "builtin")  # builtin: audioclf with its built-in encoder (no download, no torch)


def plain(model_dir: str, files: list[str], window_s: float, layer: int | None) -> dict[str, object]:
    import math

    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    from audioclf.io.audio import WindowOptions, iter_windows

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    whisper = bool(getattr(model.config, "is_encoder_decoder", False))
    if whisper:  # the encoder alone; its input is always padded to 30 s, so pool the frames that hold audio
        model = model.get_encoder()
    started, audio_s, rows = time.perf_counter(), 0.0, []
    for f in files:
        for w in iter_windows(f, WindowOptions(window_s, window_s)):
            inputs = extractor(w.samples, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt")
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=layer is not None)
                states = (out.last_hidden_state if layer is None else out.hidden_states[layer])[0]
            if whisper:  # 10 ms mel frames, two per encoder state
                states = states[: max(1, math.ceil(min(3000, math.ceil(len(w.samples) / 160)) / 2))]
            rows.append(states.mean(0).numpy())
            audio_s += w.duration_s
    return {"seconds": time.perf_counter() - started, "audio_s": audio_s, "emb": np.stack(rows).tolist()}


def ours(
    spec: str, files: list[str], window_s: float, cache: str, layer: int | None, precision: str = "auto"
) -> dict[str, object]:
    from audioclf.encoders.loader import load_encoder
    from audioclf.extraction.embed import embed_items
    from audioclf.io.audio import WindowOptions
    from audioclf.io.cache import EmbeddingCache
    from audioclf.io.manifest import Item

    encoder = load_encoder(spec, precision).encoder
    if layer is not None:  # what predict does for a probe on this layer: the forward pass stops there
        encoder = encoder.up_to(layer)  # type: ignore[attr-defined]
    windows = WindowOptions(window_s, window_s)
    items = [Item(f, None, None, f, f) for f in files]
    store = EmbeddingCache(Path(cache), encoder.identity, windows)
    started = time.perf_counter()
    result = embed_items(items, encoder, store, windows, progress=False)
    seconds = time.perf_counter() - started
    emb = np.concatenate([e.embeddings[:, -1 if layer is None else layer] for _, e in result.embedded])
    rerun = time.perf_counter()
    embed_items(items, encoder, store, windows, progress=False)
    return {"seconds": seconds, "audio_s": result.audio_s, "emb": emb.tolist(), "rerun_s": time.perf_counter() - rerun}


def child(args: argparse.Namespace) -> None:
    files = json.loads(Path(args.files).read_text())
    if args.child == "plain":
        out = plain(args.model, files, args.window, args.layer)
    else:
        spec = "builtin" if args.child == "builtin" else f"hf:{args.model}"
        layer = args.layer if args.child == "audioclf" else None
        out = ours(spec, files, args.window, args.cache, layer, args.precision)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps(out))


def digit_probe(files: list[str], embeddings: np.ndarray) -> Any:
    """A probe as audioclf trains one (standardised logistic regression), fitted on the plain path's embeddings
    of the FSDD clips (the digit is the first part of each file name)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = [Path(f).name.split("_")[0] for f in files]
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(embeddings, labels)


def probe_agreement(reference: np.ndarray, other: np.ndarray, probe: Any) -> float:
    """Top-1 agreement of ``probe`` on both embeddings; without one, of a fixed random linear map (on the raw
    embeddings of random-weight models, which all point one way, its margins are ~0 and rounding flips some)."""
    if probe is None:
        weights = np.random.default_rng(0).standard_normal((reference.shape[1], 10))
        return float(np.mean((reference @ weights).argmax(1) == (other @ weights).argmax(1)))
    return float(np.mean(probe.predict(reference) == probe.predict(other)))


def make_long(files: list[str], minutes: float, path: Path) -> None:
    """A long recording by concatenating clips (written with PyAV as 16 kHz FLAC)."""
    import av

    from audioclf.io.audio import load_audio

    clips = [load_audio(f) for f in files[:50]]
    target, total = int(minutes * 60 * SAMPLE_RATE_HZ), 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE_HZ, layout="mono")
        i = 0
        while total < target:
            x = clips[i % len(clips)][: target - total]
            frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE_HZ
            for packet in stream.encode(frame):
                container.mux(packet)
            total, i = total + len(x), i + 1
        for packet in stream.encode(None):
            container.mux(packet)


def run_case(
    name: str, files: list[str], args: argparse.Namespace, work: Path, probe: Any, *, digits: bool = False
) -> tuple[list[str], Any]:
    """The table rows of one case, and the probe for top-1: ``probe``, or with ``digits`` (the files are FSDD
    clips) one trained here on the plain path's embeddings."""
    listing = work / f"{name}.json"
    listing.write_text(json.dumps(files))
    results = {}
    for path in args.paths:
        result = work / f"{name}-{path}.out.json"
        cache = str(work / f"cache-{name}-{path}")
        cmd = [sys.executable, __file__, "--child", path, "--model", args.model, "--files", str(listing)]
        cmd += ["--window", str(args.window), "--cache", cache, "--result", str(result)]
        cmd += ["--layer", str(args.layer)] if args.layer is not None else []
        cmd += ["--precision", args.precision]
        subprocess.run(cmd, check=True)
        results[path] = json.loads(result.read_text())
    agree = {"plain": "reference"}
    if "plain" in results and "audioclf" in results:
        a, b = np.array(results["plain"]["emb"]), np.array(results["audioclf"]["emb"])
        cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        if digits:
            probe = digit_probe(files, a)
        top1 = probe_agreement(a, b, probe)
        agree["audioclf"] = f"{cos.min():.4f} / {top1:.3f}"
    base = results["plain"]["audio_s"] / results["plain"]["seconds"] if "plain" in results else float("nan")
    rows = []
    for path in args.paths:
        r = results[path]
        speed = r["audio_s"] / r["seconds"]
        extra = f"rerun {100 * r['rerun_s'] / r['seconds']:.1f} % of first" if "rerun_s" in r else ""
        ratio = f"{speed / base:.2f}" if "plain" in results else "-"
        cells = [name, path, f"{r['audio_s']:.0f}", f"{speed:.1f}x", ratio, f"{r['peak_rss_mb']:.0f}"]
        rows.append("| " + " | ".join([*cells, agree.get(path, "other features"), extra]) + " |")
    return rows, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="a local transformers model folder (for plain and audioclf)")
    parser.add_argument("--fsdd", default="../shared/data/fsdd/recordings")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--long-min", type=float, default=10.0, help="minutes of the long recording (0: skip)")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--layer", type=int, default=None, help="compare this layer; audioclf stops there")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="audioclf's")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which paths to time")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not args.model and {"plain", "audioclf"} & set(args.paths):
        parser.error("--model is needed to time the plain and audioclf paths")
    work = Path(tempfile.mkdtemp(prefix="embed-speed-"))
    every = sorted(str(p) for p in Path(args.fsdd).glob("*.wav"))
    clips = every[:: max(1, 1500 // max(1, args.clips))][: args.clips]
    rows, probe = (
        run_case(f"{len(clips)} FSDD clips", clips, args, work, None, digits=True) if args.clips else ([], None)
    )
    if args.long_min > 0:
        long_file = work / "long.flac"
        make_long(clips or every[::30], args.long_min, long_file)
        rows += run_case(f"{args.long_min:g}-min recording", [str(long_file)], args, work, probe)[0]
    print(f"top-1: {'a digit probe trained on the plain clips' if probe is not None else 'a random linear map'}")
    print("| audio | path | audio s | x realtime | vs plain | peak RSS MB | cosine min / top-1 | cache |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return None


if __name__ == "__main__":
    main()
