"""Sounds a spoken-digit model never heard, synthesised (16 kHz float32): rain, a dog's barks, music, a siren,
an engine, applause, white noise. Used by the tests and by bench/ood_fsdd.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import lfilter

RATE = 16_000


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE)) / RATE


def _norm(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (peak * x / max(1e-9, float(np.abs(x).max()))).astype(np.float32)


def _lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.asarray(lfilter([alpha], [1.0, alpha - 1.0], x))


def rain(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    n = len(_t(seconds))
    bed = _lowpass(rng.standard_normal(n), 0.3) * 0.3
    drops = np.zeros(n)
    for at in rng.integers(0, n - 200, size=int(60 * seconds)):
        drops[at : at + 200] += rng.uniform(0.2, 1) * np.exp(-np.arange(200) / 25) * rng.standard_normal(200)
    return _norm(bed + drops)


def barks(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    out = np.zeros(len(_t(seconds)))
    for k in range(rng.integers(2, 4)):
        dur = rng.uniform(0.12, 0.2)
        t = _t(dur)
        f0 = rng.uniform(350, 700) * (1 - 0.4 * t / dur)  # a falling pitch
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        tone = sum(np.sin(h * phase) / h for h in range(1, 8)) + 0.4 * rng.standard_normal(len(t))
        burst = tone * np.exp(-t / (dur / 3)) * (1 - np.exp(-t / 0.005))
        at = int((0.1 + 0.45 * k) * RATE)
        out[at : at + len(burst)] += burst[: len(out) - at]
    return _norm(out)


def music(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    notes = 220.0 * 2 ** (rng.choice([0, 2, 4, 5, 7, 9, 11, 12], size=int(seconds / 0.25)) / 12)
    parts = []
    for f in notes:
        t = _t(0.25)
        chord = sum(np.sin(2 * np.pi * f * r * t) for r in (1.0, 1.26, 1.5))
        parts.append(chord * np.exp(-t / 0.12))
    return _norm(np.concatenate(parts))


def siren(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    t = _t(seconds)
    f = 900 + 300 * np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * t)
    return _norm(np.sin(2 * np.pi * np.cumsum(f) / RATE))


def engine(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    t = _t(seconds)
    f0 = rng.uniform(40, 90)
    hum = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 10))
    return _norm(hum + 0.3 * _lowpass(rng.standard_normal(len(t)), 0.05))


def applause(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    n = len(_t(seconds))
    out = np.zeros(n)
    for at in rng.integers(0, n - 400, size=int(25 * seconds)):
        out[at : at + 400] += np.exp(-np.arange(400) / 60) * rng.standard_normal(400)
    return _norm(out)


def white_noise(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    return _norm(rng.standard_normal(len(_t(seconds))), 0.3)


KINDS: dict[str, Callable[[np.random.Generator, float], np.ndarray]] = {
    "rain": rain,
    "barks": barks,
    "music": music,
    "siren": siren,
    "engine": engine,
    "applause": applause,
    "white_noise": white_noise,
}


def ood_clips(per_kind: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``per_kind`` clips of every kind, each 1-2 s."""
    rng = np.random.default_rng(seed)
    return [(kind, make(rng, float(rng.uniform(1.0, 2.0)))) for kind, make in KINDS.items() for _ in range(per_kind)]


if __name__ == "__main__":  # python tests/ood_sounds.py DIR: one clip of each kind, as 16 kHz WAV
    import sys
    from pathlib import Path

    from conftest import write_audio

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for kind, wave in ood_clips(1, seed=0):
        print(write_audio(out / f"{kind}.wav", wave, RATE))
