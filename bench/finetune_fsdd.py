"""Fine-tuning a real pretrained transformers model on FSDD, next to the probe on the same encoder and split.

    python ../shared/tools/whisper_base_hf.py /tmp/whisper-hf
    python bench/finetune_fsdd.py --encoder hf:/tmp/whisper-hf --test-speaker theo --max-take 9 --epochs 3

The original lab report's workflow through the CLI, unchanged: ``audioclf train --mode finetune`` on two
speakers (its validation share is a grouped fifth of their takes), ``audioclf evaluate`` on the third speaker,
then the same for the default probe (``audioclf train``, cross-validated over the two training speakers), and
``transformers.pipeline("audio-classification")`` on the fine-tuned folder, compared with ``audioclf predict``.
Every command's own output is printed; the table at the end collects the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


def write_manifest(data: Path, test_speaker: str, max_take: int, path: Path) -> list[Path]:
    tests = []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for f in sorted(data.glob("*.wav")):
            m = NAME.search(f.name)
            if m is None or int(m.group(3)) > max_take:
                continue
            digit, speaker, take = m.groups()
            test = speaker == test_speaker
            tests += [f] if test else []
            # validation groups: one take of one speaker (all ten digits), so no clip is split from its take
            writer.writerow([str(f.resolve()), digit, "test" if test else "", f"{speaker}-{take}"])
    return tests


def audioclf(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "audioclf", *args]
    print("$ audioclf " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return proc.stdout, time.perf_counter() - started


def metrics(report_dir: Path) -> tuple[float, float]:
    report = json.loads((report_dir / "report.json").read_text())
    rec = report.get("recording", report)
    return float(rec["accuracy"]), float(rec["macro_f1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", required=True, help="hf:<folder of a pretrained transformers audio model>")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--test-speaker", default="theo")
    ap.add_argument("--max-take", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", default="3e-5")
    ap.add_argument("--batch-size", default="8")
    ap.add_argument("--work", type=Path, default=None, help="folder for the manifest, cache and models")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-fsdd-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest, cache = work / "fsdd.csv", str(work / "cache")
    tests = write_manifest(args.data, args.test_speaker, args.max_take, manifest)
    common = ["--manifest", str(manifest), "--encoder", args.encoder, "--cache-dir", cache]
    ft, probe = work / "finetuned", work / "probe"
    _, ft_s = audioclf(
        "train",
        "--mode",
        "finetune",
        "--out",
        str(ft),
        "--epochs",
        str(args.epochs),
        "--lr",
        args.lr,
        "--batch-size",
        args.batch_size,
        *common,
    )
    audioclf("evaluate", "--model", str(ft), "--manifest", str(manifest), "--cache-dir", cache, "--quiet")
    _, probe_s = audioclf("train", "--out", str(probe), *common, "--quiet")
    audioclf("evaluate", "--model", str(probe), "--manifest", str(manifest), "--cache-dir", cache, "--quiet")
    agree = pipeline_agreement(ft, tests, cache)
    print(f"\nFSDD takes 0-{args.max_take}, {args.test_speaker} held out ({len(tests)} clips), {args.encoder}\n")
    print("| method | held-out accuracy | macro-F1 | train wall time |")
    print("|---|---|---|---|")
    for name, folder, seconds in (("fine-tuned (--mode finetune)", ft, ft_s), ("probe (default)", probe, probe_s)):
        acc, f1 = metrics(folder / "evaluation")
        print(f"| {name} | {acc:.3f} | {f1:.3f} | {seconds:.0f} s |")
    print(f"\ntransformers.pipeline top-1 = audioclf predict top-1 on {agree[0]}/{agree[1]} held-out clips")


def pipeline_agreement(model: Path, clips: list[Path], cache: str) -> tuple[int, int]:
    from transformers import pipeline

    from audioclf.io.audio import load_audio
    from audioclf.labelling.inputs import predict_all
    from audioclf.model.folder import load_model

    ours = predict_all(load_model(model), [str(c) for c in clips], Path(cache), progress=False).predictions
    classifier = pipeline("audio-classification", model=str(model))
    theirs = [classifier({"raw": load_audio(c), "sampling_rate": 16_000}, top_k=1)[0]["label"] for c in clips]
    return sum(p.label == t for p, t in zip(ours, theirs, strict=True)), len(clips)


if __name__ == "__main__":
    main()
