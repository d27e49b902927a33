"""Start-up: the wall time of `audioclf predict` on one clip, against a bare interpreter that imports numpy and
PyAV, and what each heavy library would add.

    python bench/startup.py [--model DIR] [--runs 5] [--hf-model DIR --hf-checkpoint DIR]

Without --model it trains the built-in encoder on the repo's FSDD sample first. Every command runs in a fresh
process, with a warm page cache (one untimed run first); the table gives the median and the minimum of --runs.
The "import X" rows are what the command cost before labelling stopped importing them. With --hf-model (an
audioclf model trained on an ``hf:`` encoder) and --hf-checkpoint (that encoder's folder) it also times
`predict` with it against the bare transformers load of the checkpoint (imports and weights), the floor
such a command cannot go below.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample"
CLIP = SAMPLE / "recordings" / "7_theo_0.wav"


def timed(cmd: list[str], runs: int) -> tuple[float, float]:
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), min(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hf-model", type=Path, default=None)
    parser.add_argument("--hf-checkpoint", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="startup-"))
    model = args.model
    if model is None:
        model = work / "model"
        train = ["-m", "audioclf", "train", "--manifest", str(SAMPLE / "manifest.csv"), "--out", str(model)]
        subprocess.run([sys.executable, *train, "--encoder", "builtin", "--cache-dir", str(work / "c")], check=True)
    predict = [sys.executable, "-m", "audioclf", "predict", "--model", str(model), str(CLIP)]
    rows = [
        ("python -c 'import numpy, av' (the floor)", [sys.executable, "-c", "import numpy, av"]),
        ("audioclf predict, one clip", [*predict, "--cache-dir", str(work / "c")]),
    ]
    rows += [(f"python -c 'import {m}'", [sys.executable, "-c", f"import {m}"]) for m in ("torch", "sklearn.metrics")]
    rows.append(("python -c 'import transformers'", [sys.executable, "-c", "import transformers"]))
    if args.hf_model and args.hf_checkpoint:
        load = f"from transformers import AutoModel; AutoModel.from_pretrained({str(args.hf_checkpoint)!r})"
        rows.append(("bare AutoModel.from_pretrained of the checkpoint", [sys.executable, "-c", load]))
        hf_predict = [sys.executable, "-m", "audioclf", "predict", "--model", str(args.hf_model), str(CLIP)]
        rows.append(("audioclf predict, one clip, hf: model", [*hf_predict, "--cache-dir", str(work / "h")]))
    print(f"model {model}; median and minimum of {args.runs} runs, each a fresh process")
    print("| command | median s | min s |\n|---|---|---|")
    for name, cmd in rows:
        median, best = timed(cmd, args.runs)
        print(f"| {name} | {median:.2f} | {best:.2f} |")


if __name__ == "__main__":
    main()
