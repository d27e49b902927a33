"""ONNX export against audioclf's own torch path: agreement, speed, start-up time and memory, in one run.

    python bench/onnx_export.py [--work /tmp/onnx-bench] [--encoders whisper-base wav2vec2-base] [--clips 100]

Encoders: ``whisper-base`` is the real Whisper base (``../shared/tools/whisper_base_hf.py`` builds it in
transformers format offline; ``--whisper-hf`` names a folder that has it already); ``wav2vec2-base`` is a
randomly initialised model with wav2vec2-base's shape (12 layers of 768, its feature extractor): the same
compute as the real checkpoint, which the Hub would give.

For each encoder: a probe is trained (fp32) on FSDD clips of two speakers, exported (fp32 and int8 weights), and
the third speaker's first ``--clips`` clips are labelled by each path (int8 weights are exported only when they
give the fp32 graph's top answer on at least 99 % of those clips, ``--check``), each in a fresh process with its
own empty cache (so every path decodes and embeds every clip): ``audioclf predict`` on the original folder
(torch), ``audioclf predict`` on the exported folders (onnxruntime), and start-up (one clip) of the README's
example (onnxruntime + numpy + PyAV, no torch). Wall time and peak memory come from ``/usr/bin/time``; the
agreement is the largest probability difference from the torch path over every clip and label, and the top-1
agreement.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLI = [sys.executable, "-m", "audioclf"]


def lscpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def encoder_folder(name: str, work: Path, whisper_hf: Path | None) -> Path:
    folder = work / name
    if (folder / "config.json").is_file():
        return folder
    if name == "whisper-base":
        if whisper_hf is not None:
            return whisper_hf
        tool = ROOT.parent / "shared" / "tools" / "whisper_base_hf.py"
        subprocess.run([sys.executable, str(tool), str(folder)], check=True, stdout=subprocess.DEVNULL)
        return folder
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)  # the defaults are wav2vec2-base's shape
    Wav2Vec2FeatureExtractor(feature_size=1, do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


def manifests(data: Path, work: Path, clips: int) -> tuple[Path, list[Path]]:
    files = sorted(data.glob("*.wav"))
    train = [f for f in files if f.stem.split("_")[1] in ("jackson", "nicolas") and int(f.stem.split("_")[2]) < 6]
    test = [f for f in files if f.stem.split("_")[1] == "theo"]
    test = sorted(test, key=lambda f: (int(f.stem.split("_")[2]), f.stem))[:clips]  # every digit, take by take
    manifest = work / "train.csv"
    rows = [f"{f},{f.stem.split('_')[0]},{f.stem.split('_')[1]}" for f in train]
    manifest.write_text("path,label,group\n" + "\n".join(rows) + "\n")
    return manifest, test


def timed(args: list[str], out: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of one fresh process."""
    report = Path(str(out or "/tmp/onnx-bench-time") + ".time")
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args[:8])}\n{done.stderr[-2000:]}")
    return seconds, int(report.read_text().split()[-1]) / 1024, done.stdout


def probabilities(stdout: str, labels: list[str]) -> np.ndarray:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return np.array([[{t["label"]: t["probability"] for t in r["top"]}.get(k, 0.0) for k in labels] for r in rows])


def bench(name: str, args: argparse.Namespace) -> list[str]:
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    encoder = encoder_folder(name, args.work, args.whisper_hf)
    manifest, test = manifests(args.data, work, args.clips)
    model = work / "model"
    if not (model / "audioclf.json").is_file():
        train = [*CLI, "train", "--manifest", str(manifest), "--out", str(model), "--encoder", f"hf:{encoder}"]
        train += ["--precision", "fp32", "--cache-dir", str(work / "train-cache"), "--quiet"]
        subprocess.run(train, check=True, stdout=subprocess.DEVNULL)
    labels = json.loads((model / "audioclf.json").read_text())["labels"]
    exports, refused = {}, ""
    for quantize in ("none", "int8"):
        out = work / f"onnx-{quantize}"
        export = [*CLI, "export", "--model", str(model), "--out", str(out), "--quantize", quantize, "--force"]
        check = ["--check", *map(str, test)] if quantize == "int8" else []  # int8 must agree on these clips
        try:
            seconds, _, said = timed([*export, *check])
        except SystemExit as exc:  # int8 refused: its answers differ from fp32's on too many clips
            refused = str(exc).strip().splitlines()[-1]
            continue
        exports[quantize] = (out, seconds)
        if quantize == "int8":
            print(f"[{name}] {said.strip().splitlines()[-2]}", file=sys.stderr)
    rows, reference = [], None
    paths = {"torch (audioclf predict)": model, "onnxruntime fp32": exports["none"][0]}
    if "int8" in exports:
        paths["onnxruntime int8"] = exports["int8"][0]
    for label, folder in paths.items():
        cache = work / f"cache-{label.split()[0]}-{folder.name}"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        predict = [*CLI, "predict", "--model", str(folder), "--json", "--top-k", str(len(labels)), "--quiet"]
        start_s, start_mb, _ = timed([*predict, str(test[0]), "--cache-dir", str(cache) + "-1"], work / "start")
        subprocess.run(["rm", "-rf", str(cache) + "-1"], check=True)
        seconds, peak_mb, stdout = timed([*predict, *map(str, test), "--cache-dir", str(cache)], work / "all")
        p = probabilities(stdout, labels)
        reference = p if reference is None else reference
        diff = float(np.abs(p - reference).max())
        top1 = float((p.argmax(1) == reference.argmax(1)).mean())
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
        rows.append(
            f"| {name} | {label} | {seconds:.1f} s ({len(test) / seconds:.1f} clips/s) | {start_s:.1f} s | "
            f"{peak_mb:.0f} MB | {size:.0f} MB | {diff:.1e} | {top1:.3f} |"
        )
    example = [sys.executable, str(ROOT / "examples" / "onnx_predict.py"), str(exports["none"][0]), str(test[0])]
    start_s, start_mb, _ = timed(example, work / "example")
    rows.append(f"| {name} | README example (onnxruntime, no torch), 1 clip | - | {start_s:.1f} s | {start_mb:.0f} MB "
                f"| - | - | - |")  # fmt: skip
    int8 = f"int8 {exports['int8'][1]:.0f} s" if "int8" in exports else f"int8 refused: {refused}"
    rows.append(f"| {name} | export time: fp32 {exports['none'][1]:.0f} s; {int8} | | | | | | |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/onnx-bench"))
    ap.add_argument("--encoders", nargs="+", default=["whisper-base", "wav2vec2-base"])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fsdd" / "recordings")
    ap.add_argument("--whisper-hf", type=Path, default=None, help="Whisper base in transformers format, if built")
    args = ap.parse_args()
    print(f"CPU: {lscpu_model()}; {args.clips} clips of an unseen speaker, each path in a fresh process\n")
    print(
        "| encoder | path | label the clips | start-up (1 clip) | peak memory | folder size | max |Δp| | top-1 agree |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.encoders:
        for row in bench(name, args):
            print(row, flush=True)


if __name__ == "__main__":
    main()
