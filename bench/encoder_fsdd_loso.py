"""Leave-one-speaker-out digit accuracy on FSDD for any audioclf encoders, with their embedding speed.

Usage (from the repository root):
    python bench/encoder_fsdd_loso.py --data ../shared/data/fsdd/recordings --max-take 9 \\
        --encoders builtin "whisper:<folder>" "whisper:<folder>?padding=audio"

Each encoder embeds the clips through audioclf's own pipeline (decode, windows, cache) in a fresh cache, so
the x-realtime column is what `audioclf embed` achieves on these short clips. The probe is the same as in
builtin_fsdd_loso.py: StandardScaler + LogisticRegression with C chosen by an inner leave-one-speaker-out split
of the training speakers.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from builtin_fsdd_loso import C_GRID, loso

try:
    from audioclf.io.audio import WindowOptions
except ImportError:  # not installed: use the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from audioclf.io.audio import WindowOptions
from audioclf.encoders.loader import load_encoder
from audioclf.extraction.embed import embed_items
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import Item


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of FSDD recordings (*.wav)")
    ap.add_argument("--encoders", nargs="+", default=["builtin"])
    ap.add_argument("--max-take", type=int, default=49, help="use takes 0..N of each digit and speaker")
    args = ap.parse_args()
    files = [p for p in sorted(args.data.glob("*.wav")) if int(re.split(r"[_.]", p.name)[2]) <= args.max_take]
    y = np.array([int(p.name.split("_")[0]) for p in files])
    spk = np.array([p.name.split("_")[1] for p in files])
    speakers = sorted(set(spk))
    items = [Item(str(p), str(d), None, s, p.name) for p, d, s in zip(files, y, spk, strict=True)]
    windows = WindowOptions()
    print(f"FSDD: {len(files)} clips (takes 0-{args.max_take}), speakers {', '.join(speakers)}; LR C from {C_GRID}\n")
    print("| encoder | dim | " + " | ".join(speakers) + " | mean | x realtime |")
    print("|---|---|" + "---|" * (len(speakers) + 2))
    for spec in args.encoders:
        encoder = load_encoder(spec).encoder
        with tempfile.TemporaryDirectory() as cache:
            result = embed_items(
                items, encoder, EmbeddingCache(Path(cache), encoder.identity, windows), windows, progress=False
            )
        x = np.stack([e.embeddings[:, -1].mean(axis=0) for _, e in result.embedded])
        acc = loso(x, y, spk, "lr")
        cells = " | ".join(f"{acc[s]:.3f}" for s in speakers)
        speed = result.audio_s / result.seconds
        print(f"| {spec} | {x.shape[1]} | {cells} | **{np.mean(list(acc.values())):.3f}** | {speed:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
