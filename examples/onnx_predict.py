"""Label a recording with a model exported by `audioclf export --format onnx`: onnxruntime, numpy and PyAV only.

python examples/onnx_predict.py MODEL_DIR AUDIO_FILE
"""

import json
import sys

import av
import numpy as np
import onnxruntime as ort

folder, path = sys.argv[1], sys.argv[2]
with open(f"{folder}/audioclf.json") as fh:
    card = json.load(fh)
session = ort.InferenceSession(f"{folder}/{card['onnx']['file']}", providers=["CPUExecutionProvider"])

rate = card["onnx"].get("sample_rate", 16000)  # 16 kHz; 48 kHz for CLAP
with av.open(path) as container:  # decode to mono float32 at that rate, as audioclf does
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    audio = np.concatenate([f.to_ndarray().reshape(-1) for f in [*frames, *resampler.resample(None)]])

# the model's windows (a shorter recording is one window; a leftover tail gets a window aligned to the end)
window, hop = (round(card["windows"][k] * rate) for k in ("window_s", "hop_s"))
starts = list(range(0, max(len(audio) - window, 0) + 1, hop))
if len(audio) - (starts[-1] + window) >= min(rate, window // 2):
    starts.append(len(audio) - window)
logits = np.mean([session.run(["logits"], {"audio": audio[None, s : s + window]})[0][0] for s in starts], axis=0)

z = logits / card["calibration"]["temperature"]  # a recording's logits are its windows' mean
p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
for k in np.argsort(-p)[:3]:
    print(f"{card['labels'][k]}\t{p[k]:.3f}")
