"""What a fused model applies at prediction: the transcript view's probe, each view's temperature and the
acoustic view's weight in the mixture of probabilities (fitted by ``fusion.calibrate``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioclf.evaluation.calibration import log_softmax
from audioclf.model.probe import HeadArrays


@dataclass(frozen=True)
class Fusion:
    text_head: HeadArrays
    temperatures: tuple[float, float]  # acoustic, transcript
    weight: float = 0.5  # of the acoustic view (1 - weight: the transcript's)

    def views(
        self, acoustic_window_logits: np.ndarray, window_recording: np.ndarray, text_x: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Window log-probabilities of each view alone and of the fusion (the text view is per recording)."""
        t_acoustic, t_text = self.temperatures
        acoustic = log_softmax(acoustic_window_logits / t_acoustic)
        text = log_softmax(self.text_head.logits(text_x) / t_text)[window_recording]
        return {"acoustic": acoustic, "transcript": text, "fused": mix(acoustic, text, self.weight)}


def mix(acoustic: np.ndarray, text: np.ndarray, weight: float) -> np.ndarray:
    """log(w p_acoustic + (1 - w) p_text) from the two views' log-probabilities."""
    with np.errstate(divide="ignore"):
        fused = np.logaddexp(np.log(weight) + acoustic, np.log1p(-weight) + text)
    return fused.astype(np.float32)
