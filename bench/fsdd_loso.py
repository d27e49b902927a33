"""Leave-one-speaker-out on FSDD through audioclf's own train/evaluate path.

    python bench/fsdd_loso.py --data ../shared/data/fsdd/recordings [--encoder builtin] [--max-take 9]

For each speaker: train on the other speakers (the probe is chosen by audioclf's grouped cross-validation, whose
groups are the speakers: leave-one-training-speaker-out), test on every recording of the held-out speaker.
Embeddings are cached once and shared by the folds (the cache is keyed by file content), so the first fold pays
for embedding and the rest do not.
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from audioclf.encoders.spec import Precision, parse_spec
from audioclf.evaluation.metrics import compute_report
from audioclf.fitting.probe import FitOptions
from audioclf.fitting.train_probe import TrainOptions, train
from audioclf.io.manifest import load_manifest
from audioclf.labelling.apply import apply_model
from audioclf.model.folder import load_model

NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


def write_manifest(files: list[Path], test_speaker: str, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for f in files:
            m = NAME.search(f.name)
            assert m is not None
            digit, speaker = m.group(1), m.group(2)
            split = "test" if speaker == test_speaker else "train"
            writer.writerow([str(f.resolve()), digit, split, speaker])


def add_fsdd_args(parser: argparse.ArgumentParser) -> None:
    """The options the FSDD benches share: where the clips are, the encoder, the test speaker, the takes used."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--encoder", default="builtin")
    parser.add_argument("--test-speaker", default="theo")
    parser.add_argument("--max-take", type=int, default=49, help="use takes 0..N of each digit and speaker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--encoder", default="builtin")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--max-take", type=int, default=49, help="use takes 0..N of each digit and speaker")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    named = [(f, NAME.search(f.name)) for f in args.data.glob("*.wav")]
    files = sorted(f for f, m in named if m is not None and int(m.group(3)) <= args.max_take)
    speakers = sorted({NAME.search(f.name).group(2) for f in files})  # type: ignore[union-attr]
    work = Path(tempfile.mkdtemp(prefix="fsdd-loso-"))
    cache = args.cache_dir or work / "cache"
    rows = []
    for speaker in speakers:
        manifest = work / f"{speaker}.csv"
        write_manifest(files, speaker, manifest)
        started = time.perf_counter()
        options = TrainOptions(
            encoder=parse_spec(args.encoder),
            cache_dir=cache,
            fit=FitOptions(),
            progress=False,
            precision=Precision.parse(args.precision),
        )
        summary = train(manifest, work / f"model-{speaker}", options)
        model = load_model(summary.out)
        test_items = [i for i in load_manifest(manifest) if i.split == "test"]
        preds, _ = apply_model(model, test_items, cache, progress=False)
        report = compute_report(preds)["recording"]
        # the same predictions before temperature scaling: predict divided the logits by the temperature
        raw = replace(preds, window_logits=preds.window_logits * model.temperature)
        before, after = compute_report(raw)["recording"]["calibration"], report["calibration"]
        rows.append(
            (
                speaker,
                report["n"],
                report["accuracy"],
                report["macro_f1"],
                summary.run.config.describe(),  # type: ignore[union-attr]
                time.perf_counter() - started,
                model.temperature,
                before,
                after,
            )
        )
    print(f"\nFSDD leave-one-speaker-out, encoder {args.encoder}, {len(files)} files\n")
    print("| held-out speaker | test clips | accuracy | macro-F1 | chosen head | seconds |")
    print("|---|---|---|---|---|---|")
    for speaker, n, acc, f1, head, secs, *_ in rows:
        print(f"| {speaker} | {n} | {acc:.3f} | {f1:.3f} | {head} | {secs:.0f} |")
    mean_acc = sum(r[2] for r in rows) / len(rows)
    mean_f1 = sum(r[3] for r in rows) / len(rows)
    print(f"| **mean** | | **{mean_acc:.3f}** | **{mean_f1:.3f}** | | |")
    print("\nCalibration on the held-out speaker, before and after temperature scaling (fitted on out-of-fold")
    print("recordings of the training speakers only):\n")
    print("| held-out | temperature | ECE before | ECE after | Brier before | Brier after | NLL before | NLL after |")
    print("|---|---|---|---|---|---|---|---|")
    for speaker, *_, t, b, a in rows:
        print(
            f"| {speaker} | {t:.2f} | {b['ece']:.3f} | {a['ece']:.3f} | {b['brier']:.3f} | {a['brier']:.3f} "
            f"| {b['nll']:.3f} | {a['nll']:.3f} |"
        )


if __name__ == "__main__":
    main()
