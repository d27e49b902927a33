"""Waveforms given as arrays (the Python API): checked and scaled at the boundary, then written as float WAVs
that the same decoding path reads as it reads files."""

from __future__ import annotations

import math
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from audioclf.errors import AudioclfError

MIN_RATE_HZ, MAX_RATE_HZ = 1_000, 768_000


def check_sampling_rate(rate: object) -> int:
    """A waveform's rate in Hz: a whole number from 1 kHz to 768 kHz (what audio hardware and codecs use)."""
    whole = isinstance(rate, Integral) or (isinstance(rate, Real) and math.isfinite(rate) and float(rate).is_integer())
    if isinstance(rate, bool) or not whole or not MIN_RATE_HZ <= int(rate) <= MAX_RATE_HZ:  # type: ignore[call-overload]
        raise AudioclfError(
            f"sampling_rate {rate!r}: give the waveform's rate in Hz, a whole number from {MIN_RATE_HZ} to "
            f"{MAX_RATE_HZ} (e.g. 16000)",
            option="sampling_rate",
        )
    return int(rate)  # type: ignore[call-overload]


def as_samples(wave: np.ndarray, name: str = "waveform") -> np.ndarray:
    """One mono channel as float32 in [-1, 1]: floats as they are, integers scaled by their type's range
    (unsigned ones centred on their midpoint, as 8-bit WAV is). Anything else, or a non-finite sample, is
    refused, naming ``name``."""
    if wave.ndim != 1 or not len(wave):
        raise AudioclfError(f"{name}: a waveform is one non-empty mono channel; got shape {wave.shape}")
    kind = wave.dtype.kind
    if kind in "iu":
        info = np.iinfo(wave.dtype)
        half = (int(info.max) - int(info.min) + 1) / 2
        middle = 0 if kind == "i" else half
        return ((wave.astype(np.float64) - middle) / half).astype(np.float32)
    if kind != "f":
        raise AudioclfError(f"{name}: samples of type {wave.dtype}; pass floats in [-1, 1] or integer PCM (e.g. int16)")
    samples = wave.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise AudioclfError(
            f"{name}: {bad} of {len(samples)} samples are NaN or infinite (or too large for float32); "
            "replace them (e.g. np.nan_to_num) or leave the waveform out"
        )
    return samples


def write_wav(path: Path, wave: np.ndarray, rate: int) -> None:
    """32-bit float WAV through PyAV: the samples exactly, at their own rate (decoding resamples)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_f32le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
