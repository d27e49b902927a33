"""Segments on long recordings with a model trained on short isolated clips (issue 31): build ~60 s recordings
from groups the model never heard, with known event times, and score each method's segments on the same files.

    python bench/long_recordings.py [--sets fsdd esc] [--folds 3] [--encoder builtin] [--work /tmp/long-recordings]

Sets (each fold trains on the other groups' isolated clips only):
  fsdd  FSDD spoken digits (``{digit}_{speaker}_{take}.wav``): leave one speaker out (3 speakers, 3 folds); the
        other two speakers' clips are the training set. Background and "other sounds" are real environmental
        sounds from ESC-dev folds 1-3: the held-out classes (``--held-out``) as continuous background, the
        other ESC classes as other sounds. Background rows (method 5) come from ESC folds 4-5 (other recordings).
  esc   ESC-dev (13 classes, 5 folds): the ``--held-out`` classes are never trained on; for test fold f the
        model is trained on the other 4 folds' clips of the 10 other classes, recordings are built from fold
        f; the held-out classes' fold-f clips are the background and the other sounds; background rows
        (method 5) are held-out-class clips of the training folds (other recordings).

Recordings (16 kHz, ``--duration`` s, 16-bit WAV with a truth JSON beside each, under ``--work``): events are
held-out clips of the trained classes, trimmed to their active part (frames within 30 dB of the clip's loudest
20 ms frame; the truth is that part, 50 ms of the clip kept on either side), each at -20 dBFS RMS +-3 dB,
separated by gaps of 0.5-2 s, over a -60 dBFS white-noise floor (never digital zeros). Conditions:
  silence          the gaps are the noise floor only (the issue's headline case)
  background@SNR   the same event layout with a continuous real background (held-out material looped with
                   50 ms crossfades) under the whole recording, at SNR dB below the events' RMS (20, 10, 0)
  other            gaps of 0.5-2 s around sounds of classes the model was not trained on (each at the events'
                   level +-3 dB; FSDD: up to 1.5 s of an ESC clip, ESC: a whole held-out clip), which must not
                   become events
Background-only recordings (no events; ``--bg-recordings`` x ``--duration`` s per kind and fold) give the false
alarms per hour of each condition: the noise floor alone (silence), the real background at the level it has at
that SNR against -20 dBFS events (background@SNR), other sounds with noise gaps (other).

Methods, all on exactly the same files:
  audioclf events         ``audioclf.train(manifest, encoder=..., folds=2)`` on the isolated clips, defaults;
                          ``predict(segments=True)`` (segmenter auto: the model card's choice, events here)
  audioclf windows        the same model, ``segmenter="windows"`` (reference)
  audioclf events+auto    the same model, ``min_confidence="auto"``
  plain 1s LR             the same encoder's last-layer embeddings of 1 s windows of the training clips (a clip
                          up to 1 s long centred and zero-padded to 1 s; a longer one cut into 1 s windows every
                          0.5 s, after trimming digital-zero padding at its ends), StandardScaler +
                          LogisticRegression(C=0.1, max_iter=2000); on a recording, 1 s windows every 0.25 s, each
                          labelled by argmax, runs of one label merged into one event that starts at the run's
                          first window's start and ends at its last window's end (no offset correction)
  plain 1s LR centred     (``--baseline-centred`` only) the same runs from start + 0.375 s to end - 0.375 s
  audioclf events+bg rows the audioclf model trained with ``--bg-rows`` extra ``background`` rows (0: left out)
Segments labelled ``unknown`` or ``background`` are not events and are left out of every metric.

Metrics (``audioclf.evaluation.event_metrics``, counts combined over a condition's recordings in a fold, then the
mean over folds): event-based recall / precision / F1 with a 0.5 s onset collar and no offset (the issue's
done-when metric), the DCASE event F1 (200 ms onset collar, offset within 200 ms or 20 % of the event), the
segment-based F1 at 1 s, and false alarms per hour on the condition's background-only recordings. Each fold
also writes its scores and every method's estimated events (JSON) beside its recordings.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

try:
    import audioclf
except ImportError:  # not installed: use the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import audioclf
from audioclf.encoders.loader import load_encoder
from audioclf.encoders.spec import Precision, parse_spec
from audioclf.evaluation.event_metrics import EventScores, SegmentScores, event_based, segment_based
from audioclf.io.audio import load_audio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speech_and_sounds import RATE, write_wav

NOISE_DBFS = -60.0
EVENT_DBFS = -20.0
LEVEL_JITTER_DB = 3.0
GAP_S = (0.5, 2.0)
MARGIN_S = 0.05
TRIM_DB = 30.0
FRAME = 320  # 20 ms
CROSSFADE_S = 0.05
SNRS = (20, 10, 0)
BASE_WINDOW_S = 1.0
BASE_HOP_S = 0.25
NOT_EVENTS = ("unknown", "background")
FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")
METHODS = ("audioclf events", "audioclf windows", "audioclf events+auto", "plain 1s LR", "audioclf events+bg rows")


@dataclass(frozen=True)
class Ev:
    start_s: float
    end_s: float
    label: str


@dataclass
class Clip:
    wave: np.ndarray  # trimmed to the active part plus MARGIN_S on either side (where the clip has it)
    label: str
    on: int  # the active part inside ``wave`` (samples)
    off: int


@dataclass
class Fold:
    name: str
    train_rows: list[tuple[str, str, str]]  # path, label, group
    bg_rows: list[tuple[str, str, str]]
    events: list[Clip]  # held-out clips of the trained classes
    background: list[np.ndarray]  # continuous background material
    others: list[np.ndarray]  # sounds of classes the model was not trained on
    other_max_s: float


@dataclass
class Recording:
    path: str
    condition: str
    duration_s: float
    events: list[Ev]
    others: list[tuple[float, float]] = field(default_factory=list)


# ---------------------------------------------------------------- audio material


def frame_db(x: np.ndarray) -> np.ndarray:
    n = max(1, len(x) // FRAME)
    x = np.pad(x, (0, max(0, n * FRAME - len(x))))[: n * FRAME]
    return 10 * np.log10(np.mean(x.reshape(n, FRAME).astype(np.float64) ** 2, axis=1) + 1e-12)


def strip_zeros(x: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(np.abs(x) > 1e-6)
    return x[nz[0] : nz[-1] + 1] if len(nz) else x[:0]


def as_clip(x: np.ndarray, label: str) -> Clip | None:
    """The clip's active part: from the first to the last 20 ms frame within TRIM_DB of its loudest frame."""
    x = strip_zeros(np.asarray(x, dtype=np.float32))
    if len(x) < FRAME:
        return None
    db = frame_db(x)
    loud = np.flatnonzero(db >= db.max() - TRIM_DB)
    on, off = int(loud[0]) * FRAME, min(len(x), (int(loud[-1]) + 1) * FRAME)
    m = int(MARGIN_S * RATE)
    a, b = max(0, on - m), min(len(x), off + m)
    return Clip(x[a:b], label, on - a, off - a)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) if len(x) else 0.0


def at_level(x: np.ndarray, dbfs: float, ref: np.ndarray | None = None) -> np.ndarray:
    """``x`` scaled so that ``ref`` (default ``x``) has RMS ``dbfs``; peaks kept under full scale."""
    level = rms(x if ref is None else ref) or 1e-6
    y = x * (10 ** (dbfs / 20) / level)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    return (y * (0.99 / peak) if peak > 0.99 else y).astype(np.float32)


def load(path: str | Path) -> np.ndarray:
    return np.asarray(load_audio(path), dtype=np.float32)


def esc_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["path"] = str((root / r["path"]).resolve())
    return rows


def subset(rows: list, key, per_class: int | None, rng: np.random.Generator) -> list:
    """At most ``per_class`` rows of each ``key(row)``, drawn at random (all when None)."""
    if per_class is None:
        return rows
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(key(r), []).append(r)
    out = []
    for k in sorted(by):
        pick = rng.permutation(len(by[k]))[:per_class]
        out += [by[k][i] for i in sorted(pick)]
    return out


def stratified(rows: list[dict[str, str]], n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """About ``n`` rows spread evenly over their labels."""
    labels = sorted({r["label"] for r in rows})
    per = int(np.ceil(n / max(1, len(labels))))
    return subset(rows, lambda r: r["label"], per, rng)[:n] if n > 0 else []


def fsdd_folds(args: argparse.Namespace) -> list[Fold]:
    files = sorted(Path(args.fsdd).glob("*.wav"))
    parsed = [(f, *FSDD_NAME.search(f.name).groups()) for f in files]  # type: ignore[union-attr]
    speakers = sorted({s for _, _, s, _ in parsed})
    esc = esc_rows(Path(args.esc))
    test_esc = [r for r in esc if int(r["fold"]) <= 3]
    train_esc = [r for r in esc if int(r["fold"]) > 3]
    assert not {r["group"] for r in test_esc} & {r["group"] for r in train_esc}, "ESC folds share groups"
    background = [load(r["path"]) for r in test_esc if r["label"] in args.held_out]
    others = [load(r["path"]) for r in test_esc if r["label"] not in args.held_out]
    folds = []
    for k, speaker in enumerate(speakers[: args.folds]):
        rng = np.random.default_rng([args.seed, 1, k])
        train = [(str(f.resolve()), d, s) for f, d, s, _ in parsed if s != speaker]
        train = subset(train, lambda r: (r[1], r[2]), args.max_per_class, rng)
        test = [(f, d) for f, d, s, _ in parsed if s == speaker]
        test = subset(test, lambda r: r[1], args.max_test_per_class, rng)
        clips = [c for f, d in test if (c := as_clip(load(f), d)) is not None]
        bg = [(r["path"], "background", "esc-" + r["group"]) for r in stratified(train_esc, args.bg_rows, rng)]
        folds.append(Fold(f"speaker {speaker}", train, bg, clips, background, others, 1.5))
    return folds


def esc_folds(args: argparse.Namespace) -> list[Fold]:
    rows = esc_rows(Path(args.esc))
    unknown = set(args.held_out) - {r["label"] for r in rows}
    if unknown:
        raise SystemExit(f"--held-out: no ESC class {sorted(unknown)}")
    folds = []
    for f in sorted({int(r["fold"]) for r in rows})[: args.folds]:
        rng = np.random.default_rng([args.seed, 2, f])
        trained = [r for r in rows if r["label"] not in args.held_out]
        held = [r for r in rows if r["label"] in args.held_out]
        train = [(r["path"], r["label"], r["group"]) for r in trained if int(r["fold"]) != f]
        train = subset(train, lambda r: r[1], args.max_per_class, rng)
        test = subset([r for r in trained if int(r["fold"]) == f], lambda r: r["label"], args.max_test_per_class, rng)
        clips = [c for r in test if (c := as_clip(load(r["path"]), r["label"])) is not None]
        material = [strip_zeros(load(r["path"])) for r in held if int(r["fold"]) == f]
        bg_pool = [r for r in held if int(r["fold"]) != f]
        bg = [(r["path"], "background", r["group"]) for r in stratified(bg_pool, args.bg_rows, rng)]
        folds.append(Fold(f"fold {f}", train, bg, clips, material, material, 5.0))
    return folds


# ---------------------------------------------------------------- recordings


def gap(rng: np.random.Generator) -> int:
    return int(rng.uniform(*GAP_S) * RATE)


def other_piece(pool: list[np.ndarray], max_s: float, rng: np.random.Generator) -> np.ndarray:
    """An untrained-class sound: a random stretch (at most ``max_s``) of the loud part of one clip."""
    c = as_clip(pool[int(rng.integers(len(pool)))], "other")
    x = c.wave if c is not None else np.zeros(FRAME, np.float32)
    n = min(len(x), int(max_s * RATE))
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start : start + n]


def layout(
    n: int, pool: list[Clip], state: list[int], rng: np.random.Generator, others: tuple | None = None
) -> tuple[np.ndarray, list[Ev], list[tuple[float, float]]]:
    """A recording of ``n`` samples: events (from ``pool``, in turn) separated by gaps, each at -20 dBFS +-3 dB
    (the active part's RMS); with ``others`` = (pool, max_s), an untrained sound in every other gap (only those
    when ``pool`` is empty)."""
    x = np.zeros(n, np.float32)
    events, extra = [], []
    cur = gap(rng)
    turn = 0
    while True:
        if others is not None and (turn % 2 == 1 or not pool):
            piece = other_piece(others[0], others[1], rng)
            if cur + len(piece) + int(GAP_S[0] * RATE) > n:
                break
            level = EVENT_DBFS + rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)
            x[cur : cur + len(piece)] += at_level(piece, level)
            extra.append((cur / RATE, (cur + len(piece)) / RATE))
            cur += len(piece) + gap(rng)
            turn += 1
            continue
        clip = pool[state[0] % len(pool)]
        if cur + len(clip.wave) + int(GAP_S[0] * RATE) > n:
            break
        state[0] += 1
        level = EVENT_DBFS + rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)
        x[cur : cur + len(clip.wave)] += at_level(clip.wave, level, clip.wave[clip.on : clip.off])
        events.append(Ev(round((cur + clip.on) / RATE, 4), round((cur + clip.off) / RATE, 4), clip.label))
        cur += len(clip.wave) + gap(rng)
        turn += 1
    return x, events, extra


def looped(pool: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of background: pool clips (random order and offsets) joined with short crossfades."""
    fade = int(CROSSFADE_S * RATE)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    out = np.zeros(0, np.float32)
    while len(out) < n + fade:
        x = pool[int(rng.integers(len(pool)))]
        x = x[int(rng.integers(0, max(1, len(x) // 2))) :]
        if len(x) < 4 * fade:
            continue
        x = at_level(x, -20.0)  # each piece at one level, so one loud clip does not dominate
        if len(out) >= fade:
            out[-fade:] = out[-fade:] * ramp[::-1] + x[:fade] * ramp
            out = np.concatenate([out, x[fade:]])
        else:
            out = x.copy()
    return out[:n]


def noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(n) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)


def save(folder: Path, name: str, condition: str, wave: np.ndarray, events: list[Ev], others=()) -> Recording:
    path = write_wav(folder / f"{name}.wav", wave)
    rec = Recording(path, condition, len(wave) / RATE, events, list(others))
    truth = {
        "condition": condition,
        "duration_s": rec.duration_s,
        "events": [[e.start_s, e.end_s, e.label] for e in events],
        "other_sounds": [[round(a, 4), round(b, 4)] for a, b in others],
    }
    (folder / f"{name}.json").write_text(json.dumps(truth) + "\n")
    return rec


def build(fold: Fold, k: int, folder: Path, args: argparse.Namespace) -> tuple[list[Recording], list[Recording]]:
    """The fold's event recordings (every condition) and background-only recordings."""
    folder.mkdir(parents=True, exist_ok=True)
    n = int(args.duration * RATE)
    order = np.random.default_rng([args.seed, 3, k]).permutation(len(fold.events))
    pool = [fold.events[i] for i in order]
    with_events: list[Recording] = []
    state, state_other = [0], [0]
    for r in range(args.recordings):
        x, events, _ = layout(n, pool, state, np.random.default_rng([args.seed, 4, k, r]))
        floor = noise(n, np.random.default_rng([args.seed, 5, k, r]))
        with_events.append(save(folder, f"silence-{r}", "silence", x + floor, events))
        active = np.concatenate([x[int(e.start_s * RATE) : int(e.end_s * RATE)] for e in events])
        bg = looped(fold.background, n, np.random.default_rng([args.seed, 6, k, r]))
        for snr in SNRS:
            mix = x + floor + at_level(bg, 20 * np.log10(rms(active) + 1e-12) - snr)
            with_events.append(save(folder, f"bg{snr}-{r}", f"background@{snr}", mix, events))
        x, events, extra = layout(
            n, pool, state_other, np.random.default_rng([args.seed, 7, k, r]), (fold.others, fold.other_max_s)
        )
        with_events.append(save(folder, f"other-{r}", "other", x + floor, events, extra))
    only: list[Recording] = []
    for r in range(args.bg_recordings):
        floor = noise(n, np.random.default_rng([args.seed, 8, k, r]))
        only.append(save(folder, f"only-silence-{r}", "silence", floor, []))
        bg = looped(fold.background, n, np.random.default_rng([args.seed, 9, k, r]))
        for snr in SNRS:
            only.append(
                save(folder, f"only-bg{snr}-{r}", f"background@{snr}", floor + at_level(bg, EVENT_DBFS - snr), [])
            )
        x, _, extra = layout(n, [], [0], np.random.default_rng([args.seed, 10, k, r]), (fold.others, fold.other_max_s))
        only.append(save(folder, f"only-other-{r}", "other", x + floor, [], extra))
    return with_events, only


# ---------------------------------------------------------------- methods


def write_manifest(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    return path


def events_of(segments) -> list[Ev]:
    return [Ev(s.start_s, s.end_s, s.label) for s in segments if s.label not in NOT_EVENTS]


def audioclf_methods(
    model: audioclf.Model, paths: list[str], prefix: str = "audioclf events", all_three: bool = True
) -> dict[str, list[list[Ev]]]:
    runs = {prefix: {}}
    if all_three:
        runs["audioclf windows"] = {"segmenter": "windows"}
        runs["audioclf events+auto"] = {"min_confidence": "auto"}
    out = {}
    for name, kw in runs.items():
        results = model.predict(paths, segments=True, **kw)
        found = []
        for res in results:
            if not res.ok:
                print(f"  ! {name}: {res.source}: {res.error}", flush=True)
                found.append([])
            else:
                found.append(events_of(res.segments))
        out[name] = found
    return out


def one_second(x: np.ndarray) -> list[np.ndarray]:
    """A training clip as 1 s windows: centred and zero-padded when shorter, else every 0.5 s."""
    x = strip_zeros(x)
    w = int(BASE_WINDOW_S * RATE)
    if len(x) <= w:
        pad = w - len(x)
        return [np.pad(x, (pad // 2, pad - pad // 2)).astype(np.float32)]
    starts = list(range(0, len(x) - w + 1, w // 2))
    if starts[-1] + w < len(x):
        starts.append(len(x) - w)
    return [x[s : s + w] for s in starts]


def embed(encoder, windows: list[np.ndarray], batch: int = 64) -> np.ndarray:
    parts = [np.asarray(encoder.embed(windows[i : i + batch]))[:, -1, :] for i in range(0, len(windows), batch)]
    return np.concatenate(parts).astype(np.float32)


def baseline(encoder, train_rows, paths: list[str]) -> list[list[Ev]]:
    """The plain 1 s-window logistic regression (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    windows, labels = [], []
    for path, label, _ in train_rows:
        for w in one_second(load(path)):
            windows.append(w)
            labels.append(label)
    x = embed(encoder, windows)
    with threadpool_limits(1):
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(x), labels)
    out = []
    w, h = int(BASE_WINDOW_S * RATE), int(BASE_HOP_S * RATE)
    for path in paths:
        wave = load(path)
        starts = list(range(0, max(1, len(wave) - w + 1), h))
        z = embed(encoder, [wave[s : s + w] for s in starts])
        with threadpool_limits(1):
            pred = clf.classes_[np.argmax(clf.decision_function(scaler.transform(z)), axis=1)]
        found: list[Ev] = []
        first = 0
        for i in range(1, len(starts) + 1):
            if i == len(starts) or pred[i] != pred[first]:
                found.append(Ev(starts[first] / RATE, (starts[i - 1] + w) / RATE, str(pred[first])))
                first = i
        out.append(found)
    return out


def centred(found: list[list[Ev]]) -> list[list[Ev]]:
    """``--baseline-centred``: each run of the baseline from its first window's centre hop cell to its last's
    (start + 0.375 s, end - 0.375 s), instead of the first window's start and the last one's end."""
    cut = (BASE_WINDOW_S - BASE_HOP_S) / 2
    return [[Ev(e.start_s + cut, e.end_s - cut, e.label) for e in rec] for rec in found]


# ---------------------------------------------------------------- scoring


def score(recs: list[Recording], found: list[list[Ev]], only: list[Recording], found_only: list[list[Ev]]) -> dict:
    """Per condition: the metrics, counts combined over its recordings."""
    out = {}
    for cond in dict.fromkeys(r.condition for r in recs):
        pick = [k for k, r in enumerate(recs) if r.condition == cond]
        onset = EventScores.combine(
            [event_based(recs[k].events, found[k], t_collar=0.5, evaluate_offset=False) for k in pick]
        )
        dcase = EventScores.combine([event_based(recs[k].events, found[k]) for k in pick])
        seg = SegmentScores.combine(
            [segment_based(recs[k].events, found[k], duration_s=recs[k].duration_s, resolution_s=1.0) for k in pick]
        )
        bg = [k for k, r in enumerate(only) if r.condition == cond]
        seconds = sum(only[k].duration_s for k in bg)
        fa = sum(len(found_only[k]) for k in bg) * 3600.0 / seconds if seconds else float("nan")
        out[cond] = {
            "recall": onset.recall,
            "precision": onset.precision,
            "f1": onset.f1,
            "dcase_f1": dcase.f1,
            "segment_f1": seg.f1,
            "fa_per_hour": fa,
            "n_events": onset.n_reference,
            "bg_seconds": seconds,
        }
    return out


def table(per_fold: list[dict], methods: list[str]) -> str:
    conds = list(per_fold[0][methods[0]])
    columns = ("condition", "method", "event R", "event P", "event F1 (0.5 s onset)", "F1 by fold")
    columns += ("DCASE event F1", "segment F1 (1 s)", "FA/h")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for cond in conds:
        for m in methods:
            vals = [f[m][cond] for f in per_fold]

            def mean(key: str, vals: list[dict] = vals) -> float:
                return float(np.mean([v[key] for v in vals]))

            by_fold = "/".join(f"{v['f1']:.2f}" for v in vals)
            lines.append(
                f"| {cond} | {m} | {mean('recall'):.2f} | {mean('precision'):.2f} | {mean('f1'):.2f} | {by_fold} "
                f"| {mean('dcase_f1'):.2f} | {mean('segment_f1'):.2f} | {mean('fa_per_hour'):.0f} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def run_set(name: str, folds: list[Fold], spec: str, args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    work = Path(args.work)
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", spec)
    encoder = load_encoder(parse_spec(spec), Precision.AUTO).encoder
    methods = [m for m in METHODS if args.bg_rows > 0 or m != "audioclf events+bg rows"]
    if args.baseline_centred:
        methods.insert(methods.index("plain 1s LR") + 1, "plain 1s LR centred")
    per_fold = []
    for k, fold in enumerate(folds):
        t0 = time.perf_counter()
        folder = work / name / f"fold{k}"
        recs, only = build(fold, k, folder / "audio", args)
        paths = [r.path for r in recs] + [r.path for r in only]
        n_ev = sum(len(r.events) for r in recs if r.condition == "silence")
        print(
            f"[{name} {spec} {fold.name}] {len(fold.train_rows)} training clips, {len(fold.events)} held-out event "
            f"clips; {len(recs)} recordings with events ({n_ev} events per condition), {len(only)} background-only",
            flush=True,
        )
        manifest = write_manifest(folder / f"train-{tag}.csv", fold.train_rows)
        cache = work / "cache"
        with threadpool_limits(1):
            model = audioclf.train(
                manifest, folder / f"model-{tag}", encoder=spec, cache_dir=cache, folds=2, force=True
            )
        found = audioclf_methods(model, paths)
        t1 = time.perf_counter()
        found["plain 1s LR"] = baseline(encoder, fold.train_rows, paths)
        if args.baseline_centred:
            found["plain 1s LR centred"] = centred(found["plain 1s LR"])
        t2 = time.perf_counter()
        if args.bg_rows > 0:
            manifest_bg = write_manifest(folder / f"train-bg-{tag}.csv", [*fold.train_rows, *fold.bg_rows])
            with threadpool_limits(1):
                model_bg = audioclf.train(
                    manifest_bg, folder / f"model-bg-{tag}", encoder=spec, cache_dir=cache, folds=2, force=True
                )
            found["audioclf events+bg rows"] = audioclf_methods(model_bg, paths, "x", all_three=False)["x"]
        scores = {}
        n = len(recs)
        for m in methods:
            scores[m] = score(recs, found[m][:n], only, found[m][n:])
        per_fold.append(scores)
        (folder / f"scores-{tag}.json").write_text(json.dumps(scores, indent=1))
        estimates = {
            m: {Path(p).stem: [[e.start_s, e.end_s, e.label] for e in f] for p, f in zip(paths, found[m], strict=True)}
            for m in methods
        }
        (folder / f"estimates-{tag}.json").write_text(json.dumps(estimates) + "\n")
        seg = model.trained.card.segmenting
        print(
            f"  segmenting {seg.to_dict() if seg else None}; audioclf {t1 - t0:.0f} s, baseline {t2 - t1:.0f} s, "
            f"bg-rows model {time.perf_counter() - t2:.0f} s; silence F1: "
            + ", ".join(f"{m} {scores[m]['silence']['f1']:.2f}" for m in methods),
            flush=True,
        )
    return per_fold, methods


def main(argv: Sequence[str] | None = None) -> None:
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=("fsdd", "esc"), default=["fsdd", "esc"])
    p.add_argument("--folds", type=int, default=3, help="held-out speakers (FSDD) / ESC folds, first N")
    p.add_argument("--encoder", nargs="+", default=["builtin"], help="builtin, hf:..., whisper:... (one table each)")
    p.add_argument("--work", default="/tmp/long-recordings", help="recordings, truth, manifests, models, cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fsdd", default=str(here.parent / "shared/data/fsdd/recordings"))
    p.add_argument("--esc", default=str(here.parent / "shared/data/esc-dev"))
    p.add_argument("--held-out", nargs="+", default=["chirping_birds", "pouring_water", "keyboard_typing"],
                   help="ESC classes never trained on: background and other sounds")  # fmt: skip
    p.add_argument("--max-per-class", type=int, default=None,
                   help="training clips per class (FSDD: per class and speaker); default all")  # fmt: skip
    p.add_argument("--max-test-per-class", type=int, default=None, help="held-out event clips per class")
    p.add_argument("--recordings", type=int, default=2, help="recordings with events per condition and fold")
    p.add_argument("--bg-recordings", type=int, default=2, help="background-only recordings per kind and fold")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per recording")
    p.add_argument("--bg-rows", type=int, default=50, help="background rows for method 5 (0: leave it out)")
    p.add_argument("--baseline-centred", action="store_true",
                   help="also score the baseline's runs from the first window's centre (start + 0.375 s)")  # fmt: skip
    args = p.parse_args(argv)

    started = time.perf_counter()
    print("command:", shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(cpu or "lscpu: no model name", flush=True)
    results = {}
    for name in args.sets:
        folds = fsdd_folds(args) if name == "fsdd" else esc_folds(args)
        for spec in args.encoder:
            per_fold, methods = run_set(name, folds, spec, args)
            results[(name, spec)] = (per_fold, methods, [f.name for f in folds])
    for (name, spec), (per_fold, methods, names) in results.items():
        print(f"\n### {name}, encoder {spec}: mean over {len(per_fold)} folds ({', '.join(names)})\n")
        n_ev = [f[methods[0]]["silence"]["n_events"] for f in per_fold]
        bg_s = per_fold[0][methods[0]]["silence"]["bg_seconds"]
        print(f"events per condition and fold: {n_ev}; background-only audio per condition and fold: {bg_s:.0f} s\n")
        print(table(per_fold, methods))
    print(f"\nwall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
