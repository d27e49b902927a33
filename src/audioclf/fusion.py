"""Late fusion of the acoustic and the transcript views: two probes, each calibrated, probabilities averaged.

Concatenating a 1,024-value acoustic embedding with a 384-value sentence embedding lets the probe fit the
larger, noisier view on a few dozen recordings (measured on spoken topics: 67 % fused vs 94 % transcript
alone). Here each view gets its own probe (its own search and early stopping on the same grouped split),
its own temperature fitted on the validation recordings, and the two calibrated distributions are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .heads import ProbeHead, mean_by_recording, predict_logits

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))  # grid for temperature scaling


@dataclass(frozen=True)
class Fusion:
    text_head: ProbeHead
    temperatures: tuple[float, float]  # acoustic, transcript

    def views(self, acoustic_window_logits: np.ndarray, window_recording: np.ndarray, text_x: np.ndarray
              ) -> dict[str, np.ndarray]:  # fmt: skip
        """Window log-probabilities of each view alone and of the fusion (the text view is per recording)."""
        t_acoustic, t_text = self.temperatures
        acoustic = _log_softmax(acoustic_window_logits / t_acoustic)
        text = _log_softmax(predict_logits(self.text_head, text_x) / t_text)[window_recording]
        fused = (np.logaddexp(acoustic, text) - np.log(2.0)).astype(np.float32)  # log of the mean probability
        return {"acoustic": acoustic, "transcript": text, "fused": fused}


def calibrate(acoustic: tuple[ProbeHead, Any], text: tuple[ProbeHead, Any], labels: list[str]) -> tuple[Fusion, str]:
    """Each view's temperature on its validation recordings (the same recordings: same items, same split), and
    a summary line with the validation accuracy of each view alone and fused."""
    (a_head, a_val), (t_head, t_val) = acoustic, text
    y = np.array([labels.index(item.label or "") for item in a_val.items])
    a_logits = predict_logits(a_head, a_val.x.numpy())
    t_acoustic = temperature(_by_recording(a_logits, a_val.recording), y)
    t_text = temperature(_by_recording(predict_logits(t_head, t_val.x.numpy()), t_val.recording), y)
    fusion = Fusion(t_head, (t_acoustic, t_text))
    views = fusion.views(a_logits, a_val.recording, t_val.x.numpy())
    acc = {name: float((_by_recording(v, a_val.recording).argmax(1) == y).mean()) for name, v in views.items()}
    note = (f"late; validation accuracy acoustic {acc['acoustic']:.3f}, transcript {acc['transcript']:.3f}, "
            f"fused {acc['fused']:.3f}; temperatures {t_acoustic:.2f} / {t_text:.2f}")  # fmt: skip
    return fusion, note


def temperature(recording_logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature with the lowest negative log-likelihood of the true labels (validation recordings)."""
    nll = [-_log_softmax(recording_logits / t)[np.arange(len(y)), y].mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def _by_recording(window_logits: np.ndarray, recording: np.ndarray) -> np.ndarray:
    return mean_by_recording(torch.as_tensor(window_logits), recording).numpy()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return torch.log_softmax(torch.as_tensor(z, dtype=torch.float32), dim=-1).numpy()
