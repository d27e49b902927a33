"""Join audio files into one long 16 kHz WAV, each clip padded with silence to a fixed slot, and print where each
clip lies: a recording with known boundaries for trying `predict --segments` and segment-level `evaluate`.

    python bench/assemble.py out.wav a.wav b.wav c.wav --slot 2.0 [--manifest annotated.csv --labels 3,7,1]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import av
import numpy as np

from audioclf.io.audio import SAMPLE_RATE_HZ, load_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--slot", type=float, default=2.0, help="seconds per clip (the clip is centred in it)")
    parser.add_argument("--manifest", type=Path, default=None, help="also write the ranges as a manifest")
    parser.add_argument("--labels", default=None, help="comma-separated label of each clip, for --manifest")
    args = parser.parse_args()
    slot = round(args.slot * SAMPLE_RATE_HZ)
    parts, spans = [], []
    for i, clip in enumerate(args.clips):
        wave = load_audio(clip)[:slot]
        pad = (slot - len(wave)) // 2
        parts.append(np.pad(wave, (pad, slot - len(wave) - pad)))
        spans.append((i * args.slot, (i + 1) * args.slot, clip.name))
    samples = np.concatenate(parts).astype(np.float32)
    with av.open(str(args.out), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SAMPLE_RATE_HZ, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    for start, end, name in spans:
        print(f"{start:7.2f} {end:7.2f}  {name}")
    if args.manifest is not None:
        labels = args.labels.split(",") if args.labels else [name for _, _, name in spans]
        with open(args.manifest, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "start", "end", "group"])
            for (start, end, _), label in zip(spans, labels, strict=True):
                writer.writerow([str(args.out.resolve()), label, f"{start:g}", f"{end:g}", args.out.stem])


if __name__ == "__main__":
    main()
