"""What the commands share: exit codes, options read from parsed arguments, and output lines."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from audioclf.errors import AudioclfError
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions

if TYPE_CHECKING:
    from audioclf.extraction.ray import RayOptions, RayRun
    from audioclf.model.folder import TrainedModel

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_PARTIAL = 0, 1, 2, 3  # 3: predict labelled some inputs, not all
EPOCH_HEADER = (
    f"{'epoch':>5} {'time(s)':>8} {'train_loss':>10} {'train_acc':>9} {'val_loss':>8} {'val_acc':>7} {'val_f1':>6}"
)


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    if args.ray is None:
        return None
    from audioclf.extraction.ray import RayOptions  # only the options: Ray itself is imported when a run starts

    return RayOptions(address=None if args.ray == "local" else args.ray, workers=args.ray_workers)


def fetch_options(args: argparse.Namespace, max_duration_s: float | None) -> FetchOptions:
    size = size_bytes("--max-filesize", args.max_filesize) if args.max_filesize else None
    return FetchOptions(
        cache_dir=args.cache_dir,
        jobs=args.jobs,
        max_per_playlist=args.max_per_playlist,
        max_duration_s=max_duration_s,
        max_filesize_bytes=size,
        rate_limit=args.rate_limit,
        cookies=args.cookies,
        proxy=args.proxy,
        min_free_bytes=size_bytes("--min-free", args.min_free),
    )


def size_bytes(flag: str, text: str) -> int:
    from yt_dlp.utils import parse_bytes

    size = parse_bytes(text)
    if size is None:
        raise AudioclfError(f"{flag} {text!r}: use a size such as 200M or 2G")
    return int(size)


def window_options(args: argparse.Namespace) -> WindowOptions:
    try:
        return WindowOptions.chosen(args.window, args.hop, args.max_duration)
    except ValueError as exc:
        raise AudioclfError(f"--window/--hop/--max-duration: {exc}") from None


def predict_windows(args: argparse.Namespace, model: TrainedModel) -> WindowOptions | None:
    """Windows given at predict/evaluate time (a missing window or hop: the model's window), else None."""
    return model.windows.asked(args.window, args.hop, "--window/--hop")


def min_confidence(text: str | None, model: TrainedModel) -> float | None:
    """``--min-confidence``: a probability, ``auto`` (the model's own threshold) or not given."""
    from audioclf.labelling.prediction import chosen_confidence  # the command line's start-up stays light

    return chosen_confidence(text, lambda: model.min_confidence)


def emit(line: str = "") -> None:
    print(line, flush=True)


def emit_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def worker_lines(run: RayRun, audio: bool = True) -> list[str]:
    """A row per Ray actor process: what it did and how long it was busy (encoding, or downloading for
    ``fetch``); an embedding actor downloads one chunk while it encodes another."""
    head = f"{'worker':<24} {'chunks':>6} {'items':>6} {'busy(s)':>8}"
    lines = [head + (f" {'download(s)':>11} {'audio(h)':>8} {'x realtime':>10}" if audio else "")]
    for w in run.workers:
        rate = f"{w.audio_s / w.busy_s:.0f}" if w.audio_s and w.busy_s else "-"
        tail = f" {w.download_s:>11.1f} {w.audio_s / 3600:>8.3f} {rate:>10}" if audio else ""
        lines.append(f"{w.worker:<24} {w.chunks:>6} {w.items:>6} {w.busy_s:>8.1f}{tail}")
    return lines
