"""Real speech (FSDD) with synthesised background sounds: a multi-label set and a segmentation set, both
through audioclf's own train / evaluate, grouped by speaker (the test speaker is never trained on).

    python bench/speech_and_sounds.py --data ../shared/data/fsdd/recordings [--encoder builtin] [--max-take 9]

Multi-label: each 2 s clip holds one to three of speech (a digit), music, rain, siren, engine, mixed at random
gains; the report gives mAP, micro/macro-F1 at the tuned thresholds and, for scale, the mAP of a chance ranking
(each label's prevalence). Segments: a single-label model (speech / music / rain / siren / engine) trained on
2 s clips, then recordings of the test speaker assembled from 2-6 s blocks of each class with known boundaries;
evaluate scores the model's segments of them (frame accuracy, event F1 with a 1 s onset collar).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fsdd_loso import NAME, add_fsdd_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ood_sounds import KINDS

import audioclf
from audioclf.evaluation.segments import SegmentOptions
from audioclf.io.audio import WindowOptions, load_audio
from audioclf.scoring.manifest import evaluate_model

SOUNDS = ("music", "rain", "siren", "engine")
CLIP_S = 2.0
RATE = 16_000


def write_wav(path: Path, wave: np.ndarray) -> str:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.clip(wave, -1, 1).reshape(1, -1).astype(np.float32), "flt", "mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return str(path)


def speech(clips: list[Path], rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Digits of one speaker, back to back with short pauses, cut to ``seconds``."""
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < seconds * RATE:
        out += [load_audio(clips[rng.integers(len(clips))]), np.zeros(int(rng.uniform(0.05, 0.3) * RATE))]
    x = np.concatenate(out)[: int(seconds * RATE)]
    return (0.5 * x / max(1e-6, float(np.abs(x).max()))).astype(np.float32)


def sound(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    x = KINDS[kind](rng, seconds)
    return np.pad(x, (0, max(0, int(seconds * RATE) - len(x))))[: int(seconds * RATE)]


def by_speaker(data: Path, max_take: int) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*.wav")):
        m = NAME.search(f.name)
        if m is not None and int(m.group(3)) <= max_take:
            out.setdefault(m.group(2), []).append(f)
    return out


def multilabel_set(speakers: dict[str, list[Path]], test: str, root: Path, per_speaker: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for spk, clips in speakers.items():
        for k in range(per_speaker):
            labels = list(rng.choice(["speech", *SOUNDS], size=int(rng.integers(1, 4)), replace=False))
            parts = [
                rng.uniform(0.4, 1.0) * (speech(clips, rng, CLIP_S) if lab == "speech" else sound(lab, rng, CLIP_S))
                for lab in labels
            ]
            path = write_wav(root / f"ml_{spk}_{k}.wav", np.sum(parts, axis=0))
            rows.append({"path": path, "labels": labels, "group": spk, "split": "test" if spk == test else ""})
    manifest = root / "multilabel.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def segment_sets(speakers: dict[str, list[Path]], test: str, root: Path, per_speaker: int) -> tuple[Path, Path]:
    """Single-label 2 s clips of the training speakers, and annotated long recordings of the test speaker."""
    rng = np.random.default_rng(1)
    classes = ["speech", *SOUNDS]
    with open(root / "clips.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "group"])
        for spk, clips in speakers.items():
            if spk == test:
                continue
            for k in range(per_speaker):
                label = classes[k % len(classes)]
                wave = speech(clips, rng, CLIP_S) if label == "speech" else sound(label, rng, CLIP_S)
                writer.writerow([write_wav(root / f"seg_{spk}_{k}.wav", wave), label, spk])
    with open(root / "annotated.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "start", "end", "group"])
        for r in range(4):
            blocks, t = [], 0.0
            for label in rng.permutation(classes * 2):
                seconds = float(rng.uniform(2.0, 6.0))
                part = speech(speakers[test], rng, seconds) if label == "speech" else sound(label, rng, seconds)
                blocks.append(part)
                writer.writerow([str(root / f"long_{r}.wav"), label, f"{t:.3f}", f"{t + seconds:.3f}", f"long{r}"])
                t += seconds
            write_wav(root / f"long_{r}.wav", np.concatenate(blocks))
    return root / "clips.csv", root / "annotated.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fsdd_args(parser)
    parser.add_argument("--per-speaker", type=int, default=100, help="clips per speaker in each set")
    parser.add_argument("--window", type=float, default=1.0, help="segment windows at predict time (s)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="speech-sounds-"))
    cache = root / "cache"
    speakers = by_speaker(args.data, args.max_take)

    started = time.perf_counter()
    manifest = multilabel_set(speakers, args.test_speaker, root, args.per_speaker)
    model = audioclf.train(manifest, root / "ml-model", encoder=args.encoder, cache_dir=cache)
    report = model.evaluate(manifest, out=root / "ml-report").to_dict()
    chance = np.mean([m["support"] / report["n_recordings"] for m in report["per_label"].values()])
    print(f"multi-label ({args.encoder}), test speaker {args.test_speaker}: {report['n_recordings']} clips")
    scores = f"micro-F1 {report['micro_f1']:.3f}  macro-F1 {report['macro_f1']:.3f}"
    print(f"  mAP {report['map']:.3f} (chance {chance:.3f})  {scores}  exact match {report['exact_match']:.3f}")
    for label, m in report["per_label"].items():
        print(f"  {label:<8} AP {m['average_precision']:.3f}  F1 {m['f1']:.3f}  support {m['support']}")

    clips, annotated = segment_sets(speakers, args.test_speaker, root, args.per_speaker)
    seg_model = audioclf.train(clips, root / "seg-model", encoder=args.encoder, cache_dir=cache)
    windows = WindowOptions(args.window, args.window / 4)
    segments = SegmentOptions(min_duration_s=1.0)
    out = root / "seg-report"
    done = evaluate_model(seg_model.trained, annotated, cache, out=out, windows=windows, segments=segments)
    seg, frame, event = done.report["segments"], done.report["segments"]["frame"], done.report["segments"]["event"]
    span = f"windows {windows.window_s:g} s every {windows.hop_s:g} s"
    where = f"{seg['n_recordings']} recordings of {args.test_speaker}, {span}"
    print(f"segments ({args.encoder}), {where}, segments of at least 1 s:")
    counts = f"{event['n_reference']} annotated, {event['n_predicted']} predicted"
    print(f"  frame accuracy {frame['accuracy']:.3f}  frame macro-F1 {frame['macro_f1']:.3f}  ", end="")
    print(f"event F1 {event['f1']:.3f} ({counts})")
    print(f"total {time.perf_counter() - started:.0f} s; files in {root}")


if __name__ == "__main__":
    main()
