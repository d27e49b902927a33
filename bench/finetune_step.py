"""Fine-tuning step time, bf16 autocast against fp32, through audioclf's own Finetuner.

    python bench/finetune_step.py --model <local wav2vec2 folder> --batch 4 --seconds 4 --steps 5

Times optimizer steps (forward, backward, clip, AdamW, scheduler) on random 16 kHz audio with the default recipe
(CNN frozen). Random-initialised weights of the real architecture are fine for speed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audioclf.encoders.spec import HF, ModelSpec, Precision
from audioclf.fitting.finetune import FinetuneOptions, Finetuner, Recording
from audioclf.io.audio import WindowOptions
from audioclf.io.manifest import Item


def step_seconds(model: str, precision: str, batch: int, seconds: float, steps: int) -> float:
    options = FinetuneOptions(batch_size=batch, precision=Precision.parse(precision), progress=False, epochs=steps + 1)
    rng = np.random.default_rng(0)
    n = batch * (steps + 1)
    recordings = [
        Recording(
            Item(f"r{i}", "a", None, f"r{i}", f"r{i}"),
            rng.standard_normal(int(seconds * 16_000)).astype(np.float32),
            i % 2,
        )
        for i in range(n)
    ]
    tuner = Finetuner(ModelSpec(HF, model), ["a", "b"], WindowOptions(window_s=seconds, hop_s=seconds), options, n)
    tuner.train_epoch(recordings[:batch], epoch=1)  # warm-up
    started = time.perf_counter()
    tuner.train_epoch(recordings[batch:], epoch=2)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rows = {p: step_seconds(args.model, p, args.batch, args.seconds, args.steps) for p in ("fp32", "bf16")}
    audio = args.batch * args.seconds
    print(f"| precision | s/step ({args.batch} x {args.seconds:g} s) | audio s per s | speed-up |")
    print("|---|---|---|---|")
    for precision, secs in rows.items():
        print(f"| {precision} | {secs:.2f} | {audio / secs:.1f} | {rows['fp32'] / secs:.2f} |")


if __name__ == "__main__":
    main()
