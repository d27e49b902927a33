"""What to label next: a quick model fitted on the labelled windows' stored vectors, and the strategies that
pick from the unlabelled ones (``margin``, ``entropy``, ``top:LABEL``, ``diverse``, ``random``), spread over
groups and recordings so ten suggestions are not ten windows of one video."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np

from audioclf.annotation.labels import Labels, Mode, Standing
from audioclf.annotation.scorers import NONE_CLASS, Probabilities, QuickModel, Scorer, answered_windows, fit_quick
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Index
from audioclf.corpus.similarity import example_direction
from audioclf.fileio import JSONObject

__all__ = ["NONE_CLASS", "QuickModel", "Strategy", "Suggested", "Suggestion", "suggest"]

log = logging.getLogger(__name__)

MAX_CANDIDATES = 200_000  # unlabelled windows scored per call, drawn at random beyond this
DIVERSE_POOL = 20_000  # windows the greedy farthest-first walk of ``diverse`` chooses among


class StrategyKind(enum.StrEnum):
    AUTO = "auto"  # diverse while the labels are few, then margin (``auto_strategy``)
    MARGIN = "margin"
    ENTROPY = "entropy"
    TOP = "top"
    DIVERSE = "diverse"
    RANDOM = "random"


@dataclass(frozen=True)
class Strategy:
    kind: StrategyKind
    label: str | None = None  # for top:LABEL

    @classmethod
    def parse(cls, text: str) -> Strategy:
        name, _, label = text.partition(":")
        try:
            kind = StrategyKind(name.strip())
        except ValueError:
            forms = "auto, margin, entropy, top:LABEL, diverse or random"
            raise CorpusError(f"strategy {text!r}: use {forms}", option="strategy") from None
        if (kind is StrategyKind.TOP) != bool(label.strip()):
            raise CorpusError(f"strategy {text!r}: top takes a label (top:LABEL), the others none", option="strategy")
        return cls(kind, label.strip() or None)

    def __str__(self) -> str:
        return f"{self.kind}:{self.label}" if self.label else str(self.kind)


# bench/active_learning.py (grouped folds x 5 seeds, the quick model scored on held-out groups): diverse was the
# only strategy ahead of random early (+0.079 at 20 labels on FSDD) and best or tied-best to 100 labels on every
# set; margin was behind early on FSDD but ahead of random on ESC-dev from 50 labels to 300 (+0.03 to +0.04) and
# on the multi-label sounds at 100, where diverse fell behind. So the default starts diverse and turns to margin
# once there are AUTO_PER_LABEL answered windows per label.
DEFAULT_STRATEGY = Strategy(StrategyKind.AUTO)
AUTO_PER_LABEL = 5


def auto_strategy(n_answered: int, n_labels: int) -> Strategy:
    """What ``auto`` means now: diverse for the first rounds, margin once the quick model has something to go
    on (``AUTO_PER_LABEL`` answered windows per label, "none" counted as one)."""
    enough = n_labels >= 2 and n_answered >= AUTO_PER_LABEL * n_labels
    return Strategy(StrategyKind.MARGIN if enough else StrategyKind.DIVERSE)


@dataclass(frozen=True)
class Suggestion:
    window_id: int
    source: str
    start_s: float
    end_s: float
    group: str
    guess: str | None  # the quick model's most likely label (None without a model)
    score: float | None  # its probability
    strategy: str

    def to_dict(self) -> JSONObject:
        return {
            "id": self.window_id,
            "source": self.source,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "group": self.group,
            "guess": self.guess,
            "score": None if self.score is None else round(self.score, 4),
            "strategy": self.strategy,
        }


@dataclass(frozen=True)
class Suggested:
    suggestions: list[Suggestion]
    strategy: Strategy | None  # the one used (``diverse`` when the one asked needs labels there are not yet; None:
    # the hits of a search, in their order)
    note: str | None = None  # why another strategy was used


def suggest(
    index: Index,
    labels: Labels,
    n: int,
    strategy: Strategy = DEFAULT_STRATEGY,
    *,
    scorer: Scorer | None = None,
    annotator: str = "",
    seed: int = 0,
) -> Suggested:
    """The next ``n`` windows to label: none answered, none leased to another reviewer, spread over groups and
    recordings. ``scorer``: a trained model's (``TrainedScorer``); by default the quick model of the labels."""
    ids, recordings, prepared, _ = index.exact_arrays()
    taken = labels.seen() | labels.leased_by_others(annotator)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(~np.isin(ids, np.fromiter(taken, dtype=np.int64)))
    if len(pool) > MAX_CANDIDATES:
        pool = np.sort(rng.choice(pool, MAX_CANDIDATES, replace=False))
    standing = labels.standing()
    if strategy.kind is StrategyKind.AUTO:
        strategy = auto_strategy(sum(1 for s in standing.values() if s.answered), len(labels.counts()))
    used, note = strategy, None
    if scorer is not None and strategy.kind is StrategyKind.TOP and strategy.label not in scorer.classes:
        known = ", ".join(scorer.classes)
        raise CorpusError(f"{strategy}: {scorer.source} knows the labels {known}; give one of them", option="strategy")
    rows, answered = answered_windows(ids, standing)
    if scorer is None:  # its guesses go with every suggestion, whatever the strategy
        scorer = fit_quick(prepared, rows, answered, labels.mode)
    if scorer is None and strategy.kind in (StrategyKind.MARGIN, StrategyKind.ENTROPY):
        used = Strategy(StrategyKind.DIVERSE)
        need = (
            "a label on some answered windows and not on others"
            if labels.mode is Mode.MULTI
            else f"windows of two labels (there are {len(labels.counts())})"
        )
        note = f"{strategy} needs {need}: suggesting diverse windows"
        log.warning("%s", note)
    proba = scorer.probabilities(pool) if scorer is not None and len(pool) else None
    order = _ranked(used, pool, prepared, proba, prepared[rows], answered, rng)
    chosen = _spread(order, recordings, index, n)
    where = {int(p): k for k, p in enumerate(pool)}
    rows_of = index.store.rows([int(ids[p]) for p in chosen])
    out = []
    for p in chosen:
        row = rows_of[int(ids[p])]
        guess, score = proba.guess(where[p]) if proba is not None else (None, None)
        out.append(Suggestion(row.id, row.source, row.start_s, row.end_s, row.group, guess, score, str(used)))
    return Suggested(out, used, note)


def _ranked(
    strategy: Strategy,
    pool: np.ndarray,
    prepared: np.ndarray,
    proba: Probabilities | None,
    x: np.ndarray,
    answered: list[Standing],
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions in the index's arrays, best first."""
    if strategy.kind is StrategyKind.RANDOM or not len(pool):
        return rng.permutation(pool)
    if strategy.kind is StrategyKind.DIVERSE:
        return _farthest_first(pool, prepared, x, rng)
    if strategy.kind is StrategyKind.TOP:
        return pool[np.argsort(-_likely(strategy.label or "", prepared[pool], proba, x, answered), kind="stable")]
    assert proba is not None
    if strategy.kind is StrategyKind.MARGIN:
        return pool[np.argsort(proba.margin(), kind="stable")]
    return pool[np.argsort(-proba.entropy(), kind="stable")]


def _likely(
    label: str, candidates: np.ndarray, proba: Probabilities | None, x: np.ndarray, answered: list[Standing]
) -> np.ndarray:
    """How likely each candidate is ``label``: the model's probability, or (before the quick model can tell
    two labels apart) the similarity to that label's examples."""
    if proba is not None and (p := proba.of(label)) is not None:
        return p
    mine = [k for k, s in enumerate(answered) if label in s.labels]
    if not mine:
        raise CorpusError(f"top:{label}: no window is labelled {label} yet; label one (search for it) first")
    return candidates @ example_direction(x[mine])


def _farthest_first(pool: np.ndarray, prepared: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-centre order over a random sample of the pool: each next window is the one farthest from
    every labelled window and every window already ordered."""
    sample = rng.choice(pool, min(len(pool), DIVERSE_POOL), replace=False)
    v = prepared[sample]
    near = np.full(len(sample), np.inf) if not len(x) else 1.0 - (v @ x.T).max(axis=1)
    order = []
    for _ in range(min(len(sample), 200)):  # enough to spread ``n`` over recordings and groups
        k = int(np.argmax(near)) if np.isfinite(near).any() else int(rng.integers(len(sample)))
        order.append(k)
        near = np.minimum(near, 1.0 - v @ v[k])
        near[k] = -np.inf
    return sample[order]


def _spread(order: np.ndarray, recordings: np.ndarray, index: Index, n: int) -> list[int]:
    """``n`` positions from ``order``: first one per group, then one per recording, then any."""
    groups = index.store.groups_of_recordings()
    chosen: list[int] = []
    seen_groups: set[str] = set()
    seen_recordings: set[int] = set()
    for rule in ("group", "recording", "any"):
        for pos in order:
            if len(chosen) >= n:
                return chosen
            rec = int(recordings[pos])
            group = groups.get(rec, "")
            if int(pos) in chosen or (rule == "group" and group in seen_groups):
                continue
            if rule != "any" and rec in seen_recordings:
                continue
            chosen.append(int(pos))
            seen_groups.add(group)
            seen_recordings.add(rec)
    return chosen
