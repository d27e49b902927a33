"""Window rows pooled per recording: the mean (what a single-label model answers for a recording, what the
novelty detector reads) and the max (a multi-label model's: a recording has a label when any of its windows
does). numpy only, so labelling imports it without cost."""

from __future__ import annotations

import numpy as np


def recording_mean(values: np.ndarray, recording: np.ndarray, n_recordings: int | None = None) -> np.ndarray:
    """[n_recordings, k]: the mean of each recording's rows of ``values`` [n_rows, k]; ``recording`` [n_rows] is
    each row's recording id (0..n_recordings - 1; default: the largest id + 1). A recording with no rows gets a
    row of NaN. Summed in the dtype of ``values`` (float32 rows: float32 sums, as torch's index_add_ gives)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    recording = np.asarray(recording, dtype=np.int64)
    n = int(recording.max()) + 1 if n_recordings is None else n_recordings
    sums = np.zeros((n, values.shape[1]), dtype=values.dtype)
    np.add.at(sums, recording, values)  # numpy: torch's index_add_ cost 7 ms a call for a handful of rows
    counts = np.bincount(recording, minlength=n).astype(values.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means


def recording_max(values: np.ndarray, recording: np.ndarray, n_recordings: int) -> np.ndarray:
    """[n_recordings, k]: the largest of each recording's rows of ``values`` [n_rows, k] (-inf: no rows), in the
    dtype of ``values``."""
    values = np.asarray(values)
    out = np.full((n_recordings, values.shape[1]), -np.inf, dtype=values.dtype)
    np.maximum.at(out, np.asarray(recording, dtype=np.int64), values)
    return out
