"""Leave-one-speaker-out digit accuracy on FSDD for the built-in encoder, against two MFCC baselines.

Usage (from the repository root):
    python bench/builtin_fsdd_loso.py --data ../shared/data/fsdd/recordings

Probe: StandardScaler (train statistics) + LogisticRegression, C chosen per outer fold by an inner
leave-one-speaker-out split of the two training speakers (the test speaker is never looked at), and
optionally a one-hidden-layer MLP (256 units, fixed alpha). Prints a markdown table; the built-in encoder
is also scored by its two parts alone (its speech part is the whole of the previous version, mfccstat-1).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

try:
    import audioclf.encoders.mfcc as builtin
except ImportError:  # not installed: use the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import audioclf.encoders.mfcc as builtin

C_GRID = (0.001, 0.01, 0.1, 1.0)
MLP_ALPHA = 1.0
BASELINE_TOP_DB = 80.0  # the usual power_to_db clamp of common MFCC front ends
FIXED_FRAMES = 32  # baseline 2: MFCCs linearly resampled to this many frames
SPEED_CLIP_S = 10.0


def load_fsdd(folder: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """All ``{digit}_{speaker}_{take}.wav`` files as 16 kHz float32 mono, digit labels, speakers."""
    waves, labels, speakers = [], [], []
    for path in sorted(folder.glob("*.wav")):
        with wave.open(str(path)) as fh:
            if fh.getsampwidth() != 2:
                raise ValueError(f"{path}: expected 16-bit PCM")
            x = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
            x = x.reshape(-1, fh.getnchannels()).mean(axis=1)
            rate = fh.getframerate()
        if rate != builtin.SAMPLE_RATE_HZ:
            x = soxr.resample(x, rate, builtin.SAMPLE_RATE_HZ).astype(np.float32)
        digit, speaker, _take = path.stem.split("_")
        waves.append(x)
        labels.append(int(digit))
        speakers.append(speaker)
    return waves, np.array(labels), np.array(speakers)


def baseline_mfcc(x: np.ndarray) -> np.ndarray:
    """Plain MFCCs [frames, 20]: same STFT/mel front end, log power clamped 80 dB below the peak."""
    mel = builtin.mel_power(x)
    log_mel = np.log(np.maximum(mel, max(mel.max() * 10 ** (-BASELINE_TOP_DB / 10), 1e-10)))
    return log_mel @ builtin._DCT.T


def baseline_stats(x: np.ndarray) -> np.ndarray:
    m = baseline_mfcc(x)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])


def baseline_fixed_frames(x: np.ndarray) -> np.ndarray:
    m = baseline_mfcc(x)
    pos = np.linspace(0, len(m) - 1, FIXED_FRAMES)
    return np.stack([np.interp(pos, np.arange(len(m)), m[:, j]) for j in range(m.shape[1])], axis=1).ravel()


def fit_predict(model: str, c: float, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
    scaler = StandardScaler().fit(x_tr)
    if model == "lr":
        clf = LogisticRegression(C=c, max_iter=2000)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(256,), alpha=MLP_ALPHA, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning from the MLP's fixed budget
        clf.fit(scaler.transform(x_tr), y_tr)
    return clf.predict(scaler.transform(x_te))


def pick_c(x: np.ndarray, y: np.ndarray, spk: np.ndarray) -> float:
    """C with the best mean accuracy over leave-one-speaker-out folds of the given (training) data."""
    held_out = sorted(set(spk))
    scores = []
    for c in C_GRID:
        preds = {s: fit_predict("lr", c, x[spk != s], y[spk != s], x[spk == s]) for s in held_out}
        scores.append(np.mean([np.mean(preds[s] == y[spk == s]) for s in held_out]))
    return C_GRID[int(np.argmax(scores))]


def loso(x: np.ndarray, y: np.ndarray, spk: np.ndarray, model: str) -> dict[str, float]:
    out = {}
    for s in sorted(set(spk)):
        tr, te = spk != s, spk == s
        c = pick_c(x[tr], y[tr], spk[tr]) if model == "lr" else 0.0
        out[s] = float(np.mean(fit_predict(model, c, x[tr], y[tr], x[te]) == y[te]))
    return out


def embed_speed(waves: list[np.ndarray]) -> tuple[float, float]:
    """(x realtime on the dataset, x realtime on one 10 s clip), one torch thread."""
    torch.set_num_threads(1)
    total_s = sum(len(w) for w in waves) / builtin.SAMPLE_RATE_HZ
    t0 = time.perf_counter()
    builtin.builtin_embed_batch(waves)
    dataset_x = total_s / (time.perf_counter() - t0)
    clip = np.concatenate(waves)[: int(SPEED_CLIP_S * builtin.SAMPLE_RATE_HZ)]
    builtin.builtin_embed(clip)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        builtin.builtin_embed(clip)
        times.append(time.perf_counter() - t0)
    return dataset_x, SPEED_CLIP_S / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of FSDD recordings (*.wav)")
    ap.add_argument("--no-mlp", action="store_true", help="skip the MLP probe (faster)")
    args = ap.parse_args()
    waves, y, spk = load_fsdd(args.data)
    speakers = sorted(set(spk))
    dataset_x, clip_x = embed_speed(waves)
    feature_sets: list[tuple[str, Callable[[list[np.ndarray]], np.ndarray]]] = [
        ("baseline: global MFCC mean/std", lambda ws: np.stack([baseline_stats(w) for w in ws])),
        (
            f"baseline: MFCC resampled to {FIXED_FRAMES} frames",
            lambda ws: np.stack([baseline_fixed_frames(w) for w in ws]),
        ),
        ("builtin speech part only (= mfccstat-1)", lambda ws: np.stack([builtin.speech_features(w) for w in ws])),
        ("builtin general-audio part only", lambda ws: np.stack([builtin.general_features(w) for w in ws])),
        (f"builtin {builtin.BUILTIN_VERSION}", builtin.builtin_embed_batch),
    ]
    models = ["lr"] if args.no_mlp else ["lr", "mlp"]
    print(f"FSDD: {len(waves)} clips, speakers {', '.join(speakers)}; LR C from {C_GRID} by inner LOSO\n")
    print("| features | dim | probe | " + " | ".join(speakers) + " | mean |")
    print("|---|---|---|" + "---|" * (len(speakers) + 1))
    for name, fn in feature_sets:
        x = fn(waves)
        for model in models:
            acc = loso(x, y, spk, model)
            cells = " | ".join(f"{acc[s]:.3f}" for s in speakers)
            mean = np.mean(list(acc.values()))
            print(f"| {name} | {x.shape[1]} | {model} | {cells} | **{mean:.3f}** |", flush=True)
    print(
        f"\nbuiltin speed (1 torch thread): {dataset_x:.0f}x realtime over the dataset, "
        f"{clip_x:.0f}x realtime on a {SPEED_CLIP_S:.0f} s clip ({SPEED_CLIP_S / clip_x * 1e3:.1f} ms)"
    )


if __name__ == "__main__":
    main()
