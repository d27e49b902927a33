"""Does a spoken-digit model say "unknown" to sounds it never heard, and still label a new speaker's digits?

    python bench/ood_fsdd.py --data ../shared/data/fsdd/recordings --esc ../shared/data/esc-dev \\
        [--encoder builtin] [--test-speaker theo]

Trains through audioclf on the other FSDD speakers, then scores the held-out speaker's digits (in distribution)
against two out-of-distribution sets: synthesised rain, barks, music, sirens, engines, applause and white noise
(tests/ood_sounds.py), and real environmental recordings (ESC-50 clips from --esc, 5 s each). For each
detector: AUROC (in vs out), the share of out-of-distribution clips still accepted when 95 % of the
in-distribution ones are, and what the model's own thresholds (chosen at training, never on these clips) do:
in-distribution coverage and accuracy, out-of-distribution clips answered "unknown".

Detectors: max-softmax probability (calibrated), energy (log-sum-exp of the calibrated logits), the
k-th-nearest-neighbour cosine distance to the training recordings, and the Mahalanobis distance to the nearest
class mean that audioclf keeps, all on the probe's own features. The Mahalanobis distance is fitted again here
on the same training features and folds with each covariance estimator, timed (best of --repeat): Ledoit-Wolf
inverted as a d x d matrix (scikit-learn's LedoitWolf, what audioclf did before), the same Ledoit-Wolf
covariance in audioclf's low-rank form, OAS shrinkage (d x d), and a top-k PCA (probabilistic PCA: k
components plus one variance for the rest).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fsdd_loso import NAME, add_fsdd_args, write_manifest
from scipy.special import logsumexp
from sklearn.covariance import OAS, LedoitWolf
from sklearn.metrics import roc_auc_score
from sklearn.utils.extmath import randomized_svd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ood_sounds import ood_clips

from audioclf.encoders.spec import parse_spec
from audioclf.evaluation.calibration import softmax
from audioclf.fitting.novelty import Estimate, fit_novelty, shrunk_precision
from audioclf.fitting.train_probe import TrainOptions, train
from audioclf.io.manifest import Item, load_manifest
from audioclf.labelling.apply import apply_model
from audioclf.model.folder import load_model
from audioclf.model.novelty import Precision, recording_features


def write_wav(path: Path, wave: np.ndarray) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def scored(model, items: list[Item], cache: Path) -> dict[str, np.ndarray]:
    preds, result = apply_model(model, items, cache, progress=False)
    x = np.concatenate([e.embeddings for _, e in result.embedded])
    from audioclf.evaluation.window_logits import recording_logits

    logits = recording_logits(preds)
    return {
        "logits": logits,
        "true": preds.recording_true,
        "groups": np.asarray(preds.recording_groups),
        "features": recording_features(model.head, x, preds.window_recording),
        "novelty": preds.recording_novelty,
    }


def fpr_at_95(in_score: np.ndarray, out_score: np.ndarray) -> float:
    """Share of out-of-distribution clips accepted at the threshold that accepts 95 % of in-distribution ones
    (scores: higher = more in distribution)."""
    return float((out_score >= np.quantile(in_score, 0.05)).mean())


def esc_items(folder: Path, n: int) -> list[Item]:
    """``n`` ESC-50 clips spread evenly over the manifest (every class), unlabelled."""
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = rows[:: max(1, len(rows) // n)][:n]
    return [Item(str((folder / r["path"]).resolve()), None, None, r["label"], r["path"]) for r in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fsdd_args(parser)
    parser.add_argument("--per-kind", type=int, default=30, help="synthesised clips of each kind")
    parser.add_argument("--esc", type=Path, default=Path("../shared/data/esc-dev"), help="ESC-50 folder")
    parser.add_argument("--esc-clips", type=int, default=130, help="ESC-50 clips used (0: none)")
    parser.add_argument("--top-k", type=int, default=64, help="components of the PCA estimator")
    parser.add_argument("--repeat", type=int, default=2, help="fits of each estimator; the best time is shown")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ood-fsdd-"))
    cache = args.cache_dir or work / "cache"
    named = [(f, NAME.search(f.name)) for f in args.data.glob("*.wav")]
    files = sorted(f for f, m in named if m is not None and int(m.group(3)) <= args.max_take)
    manifest = work / "fsdd.csv"
    write_manifest(files, args.test_speaker, manifest)
    started = time.perf_counter()
    train(manifest, work / "model", TrainOptions(encoder=parse_spec(args.encoder), cache_dir=cache, progress=False))
    model = load_model(work / "model")
    print(f"trained in {time.perf_counter() - started:.0f} s; encoder {model.encoder_spec}")
    (work / "ood").mkdir()
    clips = ood_clips(args.per_kind)
    ood_items = []
    for i, (kind, wave) in enumerate(clips):
        path = write_wav(work / "ood" / f"{kind}_{i}.wav", wave)
        ood_items.append(Item(str(path), None, None, kind, path.name))
    rows = load_manifest(manifest)
    train_items = [r for r in rows if r.split != "test"]
    test_items = [r for r in rows if r.split == "test"]
    tr, known, novel = (scored(model, items, cache) for items in (train_items, test_items, ood_items))
    real = scored(model, esc_items(args.esc, args.esc_clips), cache) if args.esc_clips else None
    estimators = {
        "LW, d x d (before)": lambda r: Precision.from_matrix(LedoitWolf().fit(r).precision_),
        "LW, low-rank (audioclf)": shrunk_precision,
        "OAS, d x d": lambda r: Precision.from_matrix(OAS().fit(r).precision_),
        f"PCA top-{args.top_k}": lambda r: top_k_precision(r, args.top_k),
    }
    detectors(model, tr, known, {"synthesised": novel, "ESC-50": real}, estimators, args.repeat)
    rules(model, known, novel, [kind for kind, _ in clips])


def top_k_precision(residuals: np.ndarray, k: int) -> Precision:
    """Probabilistic PCA: the top-k variances along their components, their mean elsewhere (no shrinkage)."""
    x = residuals - residuals.mean(0)
    n, dim = x.shape
    k = min(k, n - 1, dim - 1)
    _, s, vt = randomized_svd(x / np.sqrt(n), k, random_state=0)
    rest = max(float((x * x).sum()) / n - float((s**2).sum()), 1e-12) / (dim - k)
    return Precision(vt, 1.0 / s**2 - 1.0 / rest, 1.0 / rest)


def timed_fit(tr: dict, estimate: Estimate, repeat: int) -> tuple[Callable[[dict], np.ndarray], float]:
    """The detector fitted on the training recordings (the threshold's folds too) and its best fit time."""
    times, novelty = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        novelty = fit_novelty(tr["features"].astype(np.float32), tr["true"], list(tr["groups"]), estimate)
        times.append(time.perf_counter() - started)
    assert novelty is not None
    return (lambda s: -novelty.distances(s["features"])), min(times)


def detectors(model, tr: dict, known: dict, outs: dict, estimators: dict, repeat: int) -> None:
    t = model.temperature

    def knn(f: np.ndarray, k: int = 5) -> np.ndarray:  # k-th nearest training recording, cosine distance
        sims = f @ tr["features"].T
        return 1.0 - -np.partition(-sims, k - 1, axis=1)[:, k - 1]

    found: dict[str, tuple[Callable[[dict], np.ndarray], float | None]] = {  # higher = more like training
        "max-softmax": (lambda s: softmax(s["logits"] / t).max(1), None),
        "energy": (lambda s: logsumexp(s["logits"] / t, axis=1), None),
        "kNN cosine (k=5)": (lambda s: -knn(s["features"]), None),
        "Mahalanobis, the model's": (lambda s: -s["novelty"], None),
    }
    for name, estimate in estimators.items():
        found[f"Mahal. {name}"] = timed_fit(tr, estimate, repeat)
    outs = {name: s for name, s in outs.items() if s is not None}
    print(f"\n{len(known['true'])} clips of the held-out speaker; out of distribution: ", end="")
    print(", ".join(f"{len(s['true'])} {name}" for name, s in outs.items()))
    print(f"{len(tr['true'])} training recordings, {tr['features'].shape[1]} features; fit: best of {repeat}\n")
    head = "".join(f" | {name} AUROC | {name} FPR@95" for name in outs)
    print(f"| detector{head} | fit (s) |")
    print("|---" * (2 + 2 * len(outs)) + "|")
    for name, (score, seconds) in found.items():
        s_in, cells = score(known), []
        for s in outs.values():
            s_out = score(s)
            auroc = roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])
            cells += [f"{auroc:.3f}", f"{fpr_at_95(s_in, s_out):.3f}"]
        print(f"| {name} | " + " | ".join(cells) + f" | {'' if seconds is None else f'{seconds:.2f}'} |")


def rules(model, known: dict, novel: dict, kinds: list[str]) -> None:
    t = model.temperature
    p_min = model.min_confidence
    print(f"\nthe model's own thresholds (chosen at training): probability {p_min:.3f}, novelty 1.0")
    print(f"{'rule':<30} {'ID coverage':>11} {'ID accuracy':>11} {'OOD unknown':>11}")
    for rule, accept in {
        "max-softmax only": lambda s: softmax(s["logits"] / t).max(1) >= p_min,
        "novelty only": lambda s: s["novelty"] <= 1.0,
        "both (what predict does)": lambda s: (softmax(s["logits"] / t).max(1) >= p_min) & (s["novelty"] <= 1.0),
    }.items():
        kept, ood_kept = accept(known), accept(novel)
        right = known["logits"].argmax(1) == known["true"]
        acc = right[kept].mean() if kept.any() else float("nan")
        print(f"{rule:<30} {kept.mean():>11.3f} {acc:>11.3f} {1 - ood_kept.mean():>11.3f}")
    both = (softmax(novel["logits"] / t).max(1) >= p_min) & (novel["novelty"] <= 1.0)
    by_kind = [f"{k} {1 - both[np.array(kinds) == k].mean():.2f}" for k in dict.fromkeys(kinds)]
    print("\nsynthesised OOD answered unknown, by kind: " + ", ".join(by_kind))
    accuracy = (known["logits"].argmax(1) == known["true"]).mean()
    print(f"held-out speaker accuracy without abstaining: {accuracy:.3f}")


if __name__ == "__main__":
    main()
