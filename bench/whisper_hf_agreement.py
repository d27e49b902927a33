"""Whisper's encoder two ways on the same audio: transformers (``hf:<folder>``) and CTranslate2 (``whisper:``).

    python ../shared/tools/whisper_base_hf.py /tmp/whisper-hf     # Whisper base in transformers format
    python bench/whisper_hf_agreement.py --hf /tmp/whisper-hf --data ../shared/data/fsdd/recordings --n 60

Both pad each clip to 30 s and pool the encoder states that hold audio. ``whisper:`` gives mean and standard
deviation of the last layer; ``hf:`` gives the mean of every layer, so its last layer is compared with the
first half of ``whisper:``'s vector. Each precision pair is in the same run: transformers fp32 vs CTranslate2
float32 (the same arithmetic), and the defaults on this CPU (transformers bf16 vs CTranslate2 int8). The plain
transformers path (the model called by hand, as a notebook would) is the reference for the hf rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from probe_vs_logreg import whisper_folder  # the CTranslate2 Whisper base from the dev extras

from audioclf.encoders.loader import load_encoder
from audioclf.io.audio import load_audio


def plain_transformers(folder: Path, waves: list[np.ndarray]) -> np.ndarray:
    """What a notebook would write: the extractor, the encoder, the mean over the audio frames."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    encoder = WhisperModel.from_pretrained(folder).encoder.eval()
    out = []
    with torch.inference_mode():
        for wave in waves:
            features = extractor(wave, sampling_rate=16_000, return_tensors="pt").input_features
            states = encoder(features).last_hidden_state[0]
            out.append(states[: (int(np.ceil(len(wave) / 160)) + 1) // 2].mean(0).numpy())
    return np.stack(out)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True, help="Whisper in transformers format")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--n", type=int, default=60, help="clips (every k-th FSDD file)")
    args = ap.parse_args()
    files = sorted(args.data.glob("*.wav"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    waves = [load_audio(f) for f in files]
    audio_s = sum(len(w) for w in waves) / 16_000
    folder = whisper_folder(Path(tempfile.mkdtemp(prefix="whisper-agree-")))  # faster-whisper format
    t0 = time.perf_counter()
    plain = plain_transformers(args.hf, waves)
    runs = {"plain transformers fp32 (loop by hand)": (plain, time.perf_counter() - t0)}
    for spec, precision in (
        (f"hf:{args.hf}", "fp32"),
        (f"hf:{args.hf}", "bf16"),
        (f"whisper:{folder}", "fp32"),
        (f"whisper:{folder}", "auto"),
    ):
        encoder = load_encoder(spec, precision).encoder
        t0 = time.perf_counter()
        emb = encoder.embed(waves)
        seconds = time.perf_counter() - t0
        last = emb[:, -1, :512]  # hf: the last layer's mean; whisper: the mean half of mean+std
        kind = "transformers" if spec.startswith("hf:") else "CTranslate2"
        runs[f"audioclf {spec.split(':')[0]}: ({kind} {precision})"] = (last, seconds)
    print(f"\n{len(files)} FSDD clips ({audio_s:.0f} s of audio), each padded to Whisper's 30 s input\n")
    print("| path | cosine vs plain fp32: mean | min | x realtime |")
    print("|---|---|---|---|")
    for name, (emb, seconds) in runs.items():
        c = cosines(emb, plain)
        print(f"| {name} | {c.mean():.6f} | {c.min():.6f} | {audio_s / seconds:.2f}x |")


if __name__ == "__main__":
    main()
