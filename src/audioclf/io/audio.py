"""Decode any container/codec PyAV reads into 16 kHz mono float32, streamed, and cut it into windows."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from audioclf.errors import AudioclfError, DecodeError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
FRAME_HOP_SAMPLES = 160  # 10 ms: the hop of every 100 Hz spectrogram front end (Whisper, AST, the built-in one)
DEFAULT_WINDOW_S = 10.0  # one window for a short clip; a 1-hour video gives 360 windows
DEFAULT_HOP_S = 10.0
MIN_TAIL_S = 1.0  # a leftover shorter than this (or than half a window) at the end of a recording is dropped
# Bounds on windows: a window shorter than MIN_WINDOW_S holds less than one frame of most encoders (wav2vec2's
# first frame needs 25 ms, a 100 Hz spectrogram five frames for its deltas), and a hop shorter than MIN_HOP_S
# would embed each second of audio more than 20 times over (a request could tie up a worker for hours).
MIN_WINDOW_S = 0.1
MIN_HOP_S = 0.05
MAX_WINDOW_S = 24 * 3600.0  # a day: anything longer is a typo (and 1e308 s overflows the sample count)


@dataclass(frozen=True)
class WindowOptions:
    """How a recording is cut into windows. Recordings shorter than ``window_s`` form a single window."""

    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_HOP_S
    max_duration_s: float | None = None
    # Window and hop were not chosen: an encoder with a fixed input length (Whisper 30 s, AST 10.24 s) replaces
    # them with that length (encoders.fit_windows); any other keeps the defaults above.
    from_encoder: bool = False

    def __post_init__(self) -> None:
        if not MIN_WINDOW_S <= self.window_s <= MAX_WINDOW_S:
            raise ValueError(f"window {self.window_s:g} s: use {MIN_WINDOW_S:g} s to {MAX_WINDOW_S:g} s")
        if not MIN_HOP_S <= self.hop_s <= MAX_WINDOW_S:
            raise ValueError(
                f"hop {self.hop_s:g} s: use {MIN_HOP_S:g} s (at most {1 / MIN_HOP_S:g} windows per second of "
                f"audio) to {MAX_WINDOW_S:g} s"
            )
        if self.max_duration_s is not None and not 0 < self.max_duration_s <= 10 * 365 * 24 * 3600:
            raise ValueError(f"max duration {self.max_duration_s:g} s: use positive seconds")

    @classmethod
    def encoder_native(cls, max_duration_s: float | None = None) -> WindowOptions:
        """The encoder's native windows where it has one, else the defaults."""
        return cls(max_duration_s=max_duration_s, from_encoder=True)

    @classmethod
    def chosen(cls, window_s: float | None, hop_s: float | None, max_duration_s: float | None) -> WindowOptions:
        """The windows a user chose for a run: none given, the encoder's native ones (or the defaults); a window
        alone, hopped by itself. Raises ValueError when out of range."""
        if window_s is None and hop_s is None:
            return cls.encoder_native(max_duration_s)
        window = DEFAULT_WINDOW_S if window_s is None else float(window_s)
        return cls(window, window if hop_s is None else float(hop_s), max_duration_s)

    def asked(self, window: float | None, hop: float | None, named: str) -> WindowOptions | None:
        """The windows asked for when a model cut into these ones predicts (None: neither given). A missing
        window is this one, a missing hop the window; the duration limit stays. Out of range: an error that
        starts with ``named``, the two options as the caller spells them (``{window}`` and ``{hop}`` filled in)."""
        if window is None and hop is None:
            return None
        window = self.window_s if window is None else float(window)
        try:
            return WindowOptions(window, window if hop is None else float(hop), self.max_duration_s)
        except ValueError as exc:
            raise AudioclfError(f"{named.format(window=window, hop=hop)}: {exc}") from None

    def as_dict(self) -> dict[str, float | None]:
        return {"window_s": self.window_s, "hop_s": self.hop_s, "max_duration_s": self.max_duration_s}


@dataclass(frozen=True)
class Window:
    start_s: float
    samples: np.ndarray  # float32 mono at ``rate``
    rate: int = SAMPLE_RATE_HZ

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def iter_samples(
    path: Path | str, max_duration_s: float | None = None, start_s: float = 0.0, rate: int = SAMPLE_RATE_HZ
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono chunks at ``rate`` (16 kHz unless an encoder reads another, as CLAP's
    48 kHz) of the first audio stream of ``path``, from ``start_s`` for at most ``max_duration_s`` seconds.

    Raises DecodeError (naming the file) when it cannot be opened, has no audio stream or no samples there.
    """
    skip = round(start_s * rate)
    limit = None if max_duration_s is None else round(max_duration_s * rate)
    produced = 0
    for chunk in _resampled(path, rate):
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
        if limit is not None:
            chunk = chunk[: max(0, limit - produced)]
        if len(chunk):
            produced += len(chunk)
            yield chunk
        if limit is not None and produced >= limit:
            return
    if produced == 0:
        where = f" after {start_s:g} s" if start_s else ""
        raise DecodeError(f"{path}: contains no audio samples{where}; remove it or fix its time range")


def check_regular(path: Path | str, st: os.stat_result | None = None) -> None:
    """Refuse a named pipe, a device (``/dev/zero`` never ends) or a socket: opening one blocks or spins."""
    st = os.stat(path) if st is None else st
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))  # reported as a folder by the caller
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(f"{path}: not a regular file (a pipe, device or socket); give an audio or video file")


def _resampled(path: Path | str, rate: int) -> Iterator[np.ndarray]:
    try:
        check_regular(path)
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise DecodeError(f"{path}: has no audio stream; give an audio or video file with sound")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            done = 0
            for frame in itertools.chain(_decoded_frames(container, stream), [None]):  # None flushes
                for out in resampler.resample(frame):
                    yield _finite(out.to_ndarray().reshape(-1), path, done, rate)
                    done += out.samples
    except DecodeError:
        raise
    except (OSError, av.FFmpegError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DecodeError(f"{path}: cannot decode audio ({reason}); check it is a readable audio/video file") from exc


def _finite(samples: np.ndarray, path: Path | str, offset: int, rate: int) -> np.ndarray:
    """The samples, or a DecodeError when any is NaN or infinite (a float file can hold them; every encoder
    would turn them into NaN embeddings)."""
    bad = ~np.isfinite(samples)
    if bad.any():
        at = (offset + int(np.argmax(bad))) / rate
        raise DecodeError(f"{path}: has NaN or infinite samples (first at {at:.2f} s); re-export or remove the file")
    return samples


def _decoded_frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            # One damaged packet (e.g. a truncated tail) is skipped; a file with no good packets fails later.
            log.debug("skipping undecodable packet in %s", container.name)


def load_audio(
    path: Path | str,
    max_duration_s: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    rate: int = SAMPLE_RATE_HZ,
) -> np.ndarray:
    """The whole recording (or its ``[start_s, end_s)`` part) as one float32 array at ``rate``; ``iter_windows``
    streams."""
    return np.concatenate(list(iter_samples(path, span_s(start_s, end_s, max_duration_s), start_s, rate)))


def iter_windows(
    path: Path | str,
    options: WindowOptions = WindowOptions(),
    start_s: float = 0.0,
    end_s: float | None = None,
    rate: int = SAMPLE_RATE_HZ,
) -> Iterator[Window]:
    """Yield windows of ``options.window_s`` every ``options.hop_s`` seconds, holding at most about one
    window plus one decoded chunk in memory.

    A recording shorter than a window is one window of its own length. When the hops leave an uncovered tail
    of at least ``min(MIN_TAIL_S, window_s / 2)``, a last window aligned to the end of the recording covers it.
    With a time range, only ``[start_s, end_s)`` is used and window starts count from the recording's start.
    """
    span = span_s(start_s, end_s, options.max_duration_s)
    return window_stream(iter_samples(path, span, start_s, rate), options, start_s, rate)


def span_s(start_s: float, end_s: float | None, max_duration_s: float | None) -> float | None:
    """Seconds to read from ``start_s``: up to ``end_s`` and at most ``max_duration_s`` (None: to the end)."""
    span = None if end_s is None else end_s - start_s
    if max_duration_s is not None:
        span = max_duration_s if span is None else min(span, max_duration_s)
    return span


def window_stream(
    chunks: Iterable[np.ndarray], options: WindowOptions, start_s: float = 0.0, rate: int = SAMPLE_RATE_HZ
) -> Iterator[Window]:
    """The windowing of ``iter_windows`` over any stream of chunks at ``rate`` (e.g. an array in memory)."""
    win = max(1, round(options.window_s * rate))
    hop = max(1, round(options.hop_s * rate))
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index of buf[0]
    pending: list[np.ndarray] = []  # decoded chunks not yet joined to buf (joining per chunk would be quadratic)
    pending_len = 0
    next_start = 0
    covered_to = 0
    for chunk in chunks:
        pending.append(chunk)
        pending_len += len(chunk)
        if buf_start + len(buf) + pending_len < next_start + win:
            continue
        buf = np.concatenate([buf, *pending])
        pending, pending_len = [], 0
        while next_start + win <= buf_start + len(buf):
            offset = next_start - buf_start
            yield Window(start_s + next_start / rate, buf[offset : offset + win].copy(), rate)
            covered_to = next_start + win
            next_start += hop
        # Keep the last `win` samples (for a tail window) and everything from next_start on.
        keep_from = min(next_start, buf_start + len(buf) - win)
        if keep_from > buf_start:
            buf = buf[keep_from - buf_start :]
            buf_start = keep_from
    buf = np.concatenate([buf, *pending])
    total = buf_start + len(buf)
    if covered_to == 0:
        yield Window(start_s, buf.copy(), rate)
    elif total - covered_to >= min(MIN_TAIL_S * rate, win / 2):
        yield Window(start_s + (total - win) / rate, buf[len(buf) - win :].copy(), rate)
