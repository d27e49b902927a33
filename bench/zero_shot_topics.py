"""What labelling buys: a zero-shot model from topic names against probes trained on 1, 5 and all labelled
passages per topic, on the spoken topics of ``bench/spoken_topics.py`` (espeak-ng, split by passage).

    python bench/zero_shot_topics.py --whisper <faster-whisper folder> [--work /tmp/spoken-topics] [--draws 5]

Every method reads the same features: the Whisper transcript of each recording, embedded by MiniLM.
  zero-shot, names        ``audioclf.zero_shot`` with one prompt per topic: its name (``art_music``: "art music")
  zero-shot, descriptions the same with three short descriptions per topic, written before any run
  zero-shot, calibrated   the descriptions, with the temperature fitted on the training split's labels
  LR, k per topic         scikit-learn LogisticRegression (C=1) on the sentence embeddings of k labelled passages
                          per topic (both renditions of each), drawn ``--draws`` times: mean and spread
  audioclf probe, all     ``audioclf.train --features transcript --text-encoder minilm`` on the training split
Accuracy is on the test split (passages never trained on); log-loss shows whether the probabilities are usable.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

try:
    import audioclf
except ImportError:  # not installed: use the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import audioclf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spoken_topics import TOPICS, synthesise

from audioclf.speech.text import load_text_encoder

DESCRIPTIONS = {
    "travel": ["travel", "a trip or a journey to another place", "transport, hotels and sightseeing"],
    "food": ["food", "cooking and eating", "a recipe with its ingredients"],
    "art_music": ["art and music", "painting, concerts and musicians", "a song, an orchestra or an exhibition"],
    "history": ["history", "events of the past", "ancient empires, wars and kings"],
}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def split_manifests(manifest: Path, work: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = ["path", "label", "group"]
    parts = [
        write_csv(
            work / f"{split}.csv", header, [[r["path"], r["label"], r["group"]] for r in rows if r["split"] == split]
        )
        for split in ("train", "test")
    ]
    return parts[0], parts[1], rows


def transcripts(model: Path, evaluation: bool) -> dict[str, str]:
    path = model / ("evaluation" if evaluation else "") / "transcripts.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["source"]: row["transcript"] for row in csv.DictReader(fh)}


def score(report: audioclf.Report) -> tuple[float, float]:
    rec = report.to_dict()["recording"]
    return float(rec["accuracy"]), float(rec["calibration"]["nll"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--whisper", required=True, help="a faster-whisper model folder (or size name)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spoken-topics"))
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv, rows = split_manifests(synthesise(args.work), args.work)
    encoder, cache = f"whisper:{args.whisper}", args.work / "cache"
    table: list[tuple[str, str, str, str]] = []

    def zero_shot(name: str, prompts: dict[str, list[str]], calibrate: bool) -> Path:
        started = time.perf_counter()
        path = write_csv(args.work / f"prompts-{name}.csv", ["label", "prompt"],
                         [[label, p] for label, said in prompts.items() for p in said])  # fmt: skip
        out = args.work / "models" / f"zero-shot-{name}"
        model = audioclf.zero_shot(path, out, encoder=encoder, cache_dir=cache, force=True,
                                   manifest=train_csv if calibrate else None)  # fmt: skip
        acc, nll = score(audioclf.evaluate(model, test_csv))
        table.append((f"zero-shot, {name}", "0", f"{acc:.3f}", f"{nll:.3f} ({time.perf_counter() - started:.0f} s)"))
        return out

    zero_shot("names", {t: [t.replace("_", " ")] for t in TOPICS}, False)
    zero_shot("descriptions", DESCRIPTIONS, False)
    calibrated = zero_shot("calibrated", DESCRIPTIONS, True)

    said = transcripts(calibrated, False) | transcripts(calibrated, True)  # training rows, then test rows
    text = load_text_encoder()
    labels = list(TOPICS)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    x_test, y_test = text.embed([said[r["path"]] for r in test]), np.array([labels.index(r["label"]) for r in test])
    passages = {t: sorted({r["group"] for r in train if r["label"] == t}) for t in labels}
    for k in (1, 5, max(len(p) for p in passages.values())):
        accs, nlls = [], []
        for draw in range(args.draws if k < len(passages[labels[0]]) else 1):
            rng = np.random.default_rng(draw)
            chosen = {g for t in labels for g in rng.choice(passages[t], size=k, replace=False)}
            picked = [r for r in train if r["group"] in chosen]
            x = text.embed([said[r["path"]] for r in picked])
            y = np.array([labels.index(r["label"]) for r in picked])
            lr = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
            accs.append(float((lr.predict(x_test) == y_test).mean()))
            nlls.append(float(log_loss(y_test, lr.predict_proba(x_test), labels=range(len(labels)))))
        spread = f" ± {np.std(accs):.3f}" if len(accs) > 1 else ""
        table.append(
            (f"LR, {k} passages per topic", str(2 * k), f"{np.mean(accs):.3f}{spread}", f"{np.mean(nlls):.3f}")
        )

    started = time.perf_counter()
    out = args.work / "models" / "probe-all"
    model = audioclf.train(train_csv, out, encoder=encoder, features="transcript", cache_dir=cache, force=True)
    acc, nll = score(audioclf.evaluate(model, test_csv))
    n = str(len(train) // len(labels))
    table.append(("audioclf probe, all", n, f"{acc:.3f}", f"{nll:.3f} ({time.perf_counter() - started:.0f} s)"))

    print(f"{len(TOPICS)} topics; test: {len(test)} recordings of {len(test) // 2} passages never trained on\n")
    print("| method | labelled recordings per topic | test accuracy | test log-loss |")
    print("|---|---|---|---|")
    for name, per_topic, acc_text, nll_text in table:
        print(f"| {name} | {per_topic} | {acc_text} | {nll_text} |")


if __name__ == "__main__":
    main()
