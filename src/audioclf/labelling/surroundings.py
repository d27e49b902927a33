"""What "nothing" sounds like in one recording, learned from the recording itself: its quiet parts (what lies
between the regions its activity gate found), cut into pieces about one training clip long and embedded as the
clips were, in the features of the head trained in context. A region (or window) more like the quiet pieces
around it (the ``NEAREST`` in time) than like every trained class is more like this recording's background
than like anything the model was trained on: it is not an event. "Like" is a projection on a mean of unit
vectors in units of that mean's length, so a tight background and a spread-out class are each judged by their
own spread; a piece or region the model is sure of and that is typical of its class (``trained_sound``) is
never background.

Why: a model trained on isolated clips has never heard the user's background (birds, running water, typing,
traffic), and its novelty threshold, set on a handful of training groups, lets much of it through; but every
long recording carries plenty of its own background between its events. The rule needs no training data and
no threshold of its own: it compares two projections per region."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audioclf.labelling.activity import Region
from audioclf.model.novelty import Novelty

MIN_PIECE_S = 0.2  # quiet stretches shorter than this are left out
EDGE_S = 0.05  # kept away from the regions on either side (their onsets and tails)
MIN_PIECES = 2  # fewer quiet pieces than this: no background is learned (the recording is sound throughout)
MAX_PIECES = 256  # at most this many pieces per recording, spread over it (each is embedded as a clip)
NEAREST = 8  # a region's background: the mean of this many quiet pieces nearest to it in time
SURE = 0.9  # a quiet piece answered with this (calibrated) probability,
TYPICAL = 0.5  # and at least half as typical of that class as its training clips, is a trained sound heard quietly


def quiet_pieces(regions: Sequence[Region], duration_s: float, piece_s: float) -> list[Region]:
    """The stretches between ``regions`` (and before and after them), cut into pieces of about ``piece_s``."""
    edges = [0.0, *(t for r in regions for t in (r.start_s - EDGE_S, r.end_s + EDGE_S)), duration_s]
    out: list[Region] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        start, end = max(0.0, start), min(duration_s, end)
        if end - start < MIN_PIECE_S:
            continue
        n = max(1, int((end - start) // max(piece_s, MIN_PIECE_S)))
        step = (end - start) / n
        out.extend(Region(start + k * step, start + (k + 1) * step) for k in range(n))
    if len(out) > MAX_PIECES:
        out = [out[k] for k in np.linspace(0, len(out) - 1, MAX_PIECES).round().astype(int)]
    return out


@dataclass(frozen=True)
class Surroundings:
    """One recording's quiet pieces and the trained classes, as directions in the same features."""

    quiet: np.ndarray  # [n_pieces, dim]
    times_s: np.ndarray  # [n_pieces], the centre of each piece
    classes: np.ndarray  # [n_classes, dim], the class means of the training clips' (unit) features
    sounds: np.ndarray  # [n_classes]: the class is a sound (not the model's own ``background`` class)

    @classmethod
    def learn(
        cls, quiet: np.ndarray, times_s: np.ndarray, probs: np.ndarray, novelty: Novelty, sounds: np.ndarray
    ) -> Surroundings | None:
        """From the features of a recording's quiet pieces [n, dim] (L2-normalised, as ``recording_features``
        gives them) at ``times_s``, their class probabilities, the class means of the context head's novelty
        detector and which classes are sounds; None without enough pieces. A piece that is a trained sound
        (``trained_sound``: rain at a low level, speech between louder sounds) is not background: left out."""
        classes = np.asarray(novelty.means, dtype=np.float64)
        x = np.asarray(quiet, dtype=np.float64)
        keep = ~trained_sound(x, probs, classes, sounds)
        if keep.sum() < MIN_PIECES:
            return None
        return cls(x[keep], np.asarray(times_s, dtype=np.float64)[keep], classes, np.asarray(sounds, dtype=bool))

    def like_background(self, features: np.ndarray, probs: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """Per row of ``features`` (unit rows, at ``times_s``, with class ``probs``): more like the background
        around it (the ``NEAREST`` quiet pieces in time: a background that changes over an hour is followed)
        than like every trained sound, and not a trained sound itself. "Like" is the row's projection on a mean
        of unit vectors, in units of that mean's length (how far its own members project on it): a tight
        background (steady noise) and a spread-out class (many speakers) are judged each by its own spread."""
        x = np.asarray(features, dtype=np.float64)
        k = min(NEAREST, len(self.quiet))
        near = np.argsort(np.abs(np.asarray(times_s)[:, None] - self.times_s[None, :]), axis=1, kind="stable")[:, :k]
        background = self.quiet[near].mean(axis=1)
        like = (x * background).sum(axis=1) / np.maximum((background * background).sum(axis=1), 1e-12)
        sound = _typical(x, self.classes[self.sounds]).max(axis=1)
        return np.asarray((like > sound) & ~trained_sound(x, probs, self.classes, self.sounds))


def trained_sound(features: np.ndarray, probs: np.ndarray, classes: np.ndarray, sounds: np.ndarray) -> np.ndarray:
    """Per row: the model is ``SURE`` of its class, a sound (not ``background``), and the row is ``TYPICAL``
    of that class."""
    probs = np.asarray(probs)
    best = probs.argmax(axis=1)
    typical = _typical(np.asarray(features, dtype=np.float64), classes)[np.arange(len(best)), best] >= TYPICAL
    return np.asarray((probs.max(axis=1) >= SURE) & typical & np.asarray(sounds, dtype=bool)[best])


def _typical(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """[rows of x, means]: each row's projection on each mean, over that mean's squared length."""
    return np.asarray(x @ means.T / np.maximum((means * means).sum(axis=1), 1e-12))


def unlike_background(region: Region, starts_s: np.ndarray, durations_s: np.ndarray, aside: np.ndarray) -> list[Region]:
    """Within ``region`` (a long stretch of sound): where its sliding windows are not like the background (a
    window and at least one of its two neighbours: one window alone is noise, one window between two is not a
    gap), as spans of the windows that cover them (overlapping windows are one span), clipped to it."""
    centres = np.asarray(starts_s) + np.asarray(durations_s) / 2
    order = np.argsort(starts_s, kind="stable")
    votes = np.pad((~np.asarray(aside, dtype=bool))[order].astype(int), 1)
    sound = np.empty(len(order), dtype=bool)
    sound[order] = votes[:-2] + votes[1:-1] + votes[2:] >= 2
    pick = np.flatnonzero((centres >= region.start_s) & (centres <= region.end_s) & sound)
    spans: list[Region] = []
    for k in pick[np.argsort(starts_s[pick], kind="stable")]:
        start, end = max(float(starts_s[k]), region.start_s), min(float(starts_s[k] + durations_s[k]), region.end_s)
        if spans and start <= spans[-1].end_s:
            spans[-1] = Region(spans[-1].start_s, max(spans[-1].end_s, end))
        else:
            spans.append(Region(start, end))
    return spans
