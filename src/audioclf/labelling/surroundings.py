"""What "nothing" sounds like in one recording, learned from the recording itself: its quiet parts (what lies
between the regions its activity gate found), cut into pieces about one training clip long and embedded as the
clips were. Their mean direction in the features of the head trained in context is the recording's own
background. A region (or window) closer to that direction than to the mean of every trained class is more like
this recording's background than like anything the model was trained on: it is not an event.

Why: a model trained on isolated clips has never heard the user's background (birds, running water, typing,
traffic), and its novelty threshold, set on a handful of training groups, lets much of it through; but every
long recording carries plenty of its own background between its events. The rule needs no training data and
no threshold: a comparison of two cosines per region."""

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

    @classmethod
    def learn(cls, quiet: np.ndarray, times_s: np.ndarray, novelty: Novelty) -> Surroundings | None:
        """From the features of a recording's quiet pieces [n, dim] (L2-normalised, as ``recording_features``
        gives them) at ``times_s``, and the class means of the context head's novelty detector; None without
        enough pieces."""
        if len(quiet) < MIN_PIECES:
            return None
        classes = np.asarray(novelty.means, dtype=np.float64)
        return cls(np.asarray(quiet, dtype=np.float64), np.asarray(times_s, dtype=np.float64), classes)

    def like_background(self, features: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """Per row of ``features`` (unit rows, at ``times_s``): more like the background around it (the
        ``NEAREST`` quiet pieces in time: a background that changes over an hour is followed) than like every
        trained class. "Like" is the row's projection on a mean of unit vectors, in units of that mean's length
        (how far its own members project on it): a tight background (steady noise) and a spread-out class (many
        speakers) are judged each by its own spread."""
        x = np.asarray(features, dtype=np.float64)
        k = min(NEAREST, len(self.quiet))
        near = np.argsort(np.abs(np.asarray(times_s)[:, None] - self.times_s[None, :]), axis=1, kind="stable")[:, :k]
        background = self.quiet[near].mean(axis=1)
        like_background = (x * background).sum(axis=1) / np.maximum((background * background).sum(axis=1), 1e-12)
        return np.asarray(like_background > _typical(x, self.classes).max(axis=1))


def _typical(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """[rows of x, means]: each row's projection on each mean, over that mean's squared length."""
    return np.asarray(x @ means.T / np.maximum((means * means).sum(axis=1), 1e-12))
