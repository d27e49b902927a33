"""What a model said about a set of recordings, window by window (``WindowLogits``), and the recording-level
logits derived from it; ``predict.prediction.Prediction`` is the answer given for one recording. numpy only:
labelling new audio imports this, not the metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioclf.errors import AudioclfError
from audioclf.evaluation.pooling import recording_mean
from audioclf.speech.transcribe import Transcript


@dataclass(frozen=True)
class WindowLogits:
    labels: list[str]  # class names; class id = index
    window_logits: np.ndarray  # [n_windows, n_classes] float32 — classifier logits per window
    window_recording: np.ndarray  # [n_windows] int — index into `recordings` for each window
    window_starts_s: np.ndarray  # [n_windows] float — window start in seconds within its recording
    recordings: list[str]  # recording ids (file path or URL), one per recording
    recording_true: np.ndarray  # [n_recordings] int true class id, or -1 when unknown (predict-only)
    recording_groups: list[str]  # group of each recording (speaker / video / fold) — for the bootstrap
    transcripts: list[Transcript] | None = None  # what each recording says, with text features
    views: dict[str, np.ndarray] | None = None  # fused models: window log-probabilities of each view alone
    # distance to the training audio over the model's novelty threshold (above 1: unlike anything it was trained
    # on); None where the model has no novelty detector
    recording_novelty: np.ndarray | None = None
    window_novelty: np.ndarray | None = None  # the same for each window alone (for segments)
    thresholds: np.ndarray | None = None  # multi-label models: per-label thresholds on sigmoid probabilities


def _check_shapes(preds: WindowLogits) -> None:
    logits = np.asarray(preds.window_logits)
    n_rec, n_classes = len(preds.recordings), len(preds.labels)
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise AudioclfError(f"window_logits has shape {logits.shape}, expected [n_windows, {n_classes}]")
    if n_classes < 1:
        raise AudioclfError("predictions have no class labels")
    n_win = logits.shape[0]
    if len(preds.window_recording) != n_win or len(preds.window_starts_s) != n_win:
        raise AudioclfError(
            f"window arrays disagree: {n_win} logits rows, {len(preds.window_recording)} recording "
            f"indices, {len(preds.window_starts_s)} start times"
        )
    if len(preds.recording_true) != n_rec or len(preds.recording_groups) != n_rec:
        raise AudioclfError(
            f"recording arrays disagree: {n_rec} recordings, {len(preds.recording_true)} true labels, "
            f"{len(preds.recording_groups)} groups"
        )
    win_rec = np.asarray(preds.window_recording)
    if n_win and (win_rec.min() < 0 or win_rec.max() >= n_rec):
        raise AudioclfError(f"window_recording has indices outside 0..{n_rec - 1}")
    true = np.asarray(preds.recording_true)
    if n_rec and (true.min() < -1 or true.max() >= n_classes):
        raise AudioclfError(f"recording_true has class ids outside -1..{n_classes - 1}")
    if not np.all(np.isfinite(logits)):
        raise AudioclfError("window_logits contain NaN or infinite values")


def recording_logits(preds: WindowLogits) -> np.ndarray:
    """[n_recordings, n_classes]: mean of the window logits of each recording.

    A recording with no windows gets a row of NaN.
    """
    _check_shapes(preds)
    logits = np.asarray(preds.window_logits, dtype=np.float64)
    return recording_mean(logits, preds.window_recording, len(preds.recordings)).astype(np.float32)
