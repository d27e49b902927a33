from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tone
from tiny_models import CONV, POS, SMALL

from audioclf.encoders.hf_encoder import HFEncoder
from audioclf.encoders.loader import load_encoder
from audioclf.errors import EncoderError


def test_hf_encoder_from_local_dir_gives_all_layers(tiny_wav2vec2: Path) -> None:
    loaded = load_encoder(f"hf:{tiny_wav2vec2}")
    enc = loaded.encoder
    assert isinstance(enc, HFEncoder) and loaded.fallback_reason is None
    out = enc.embed([tone(300, 0.5), tone(600, 0.7), tone(300, 0.5)])
    assert out.shape == (3, 3, 32) and out.dtype == np.float32  # embeddings + 2 layers
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)
    assert not np.allclose(out[0], out[1])


def _tiny_group_norm_model(kind: str, path: Path) -> Path:
    """A random group-norm model of ``kind`` (the wav2vec2-base family) saved like a real checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    sizes = {**SMALL, **CONV, **POS, "feat_extract_norm": "group", "do_stable_layer_norm": False}
    AutoModel.from_config(AutoConfig.for_model(kind, **sizes)).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_group_norm_model_batches_padded_clips_as_if_alone(kind: str, tmp_path: Path) -> None:
    enc = load_encoder(f"hf:{_tiny_group_norm_model(kind, tmp_path)}", "fp32").encoder
    assert isinstance(enc, HFEncoder)
    calls: list[tuple[int, ...]] = []
    enc._model.register_forward_hook(
        lambda _m, _a, kwargs, _o: calls.append(tuple(kwargs["input_values"].shape)), with_kwargs=True
    )
    a, b, c = tone(300, 0.5), tone(500, 1.3, noise=0.1), tone(700, 0.27, noise=0.2, seed=1)
    together = enc.embed([a, b, c, a])
    assert len(calls) == 1 and calls[0][0] == 4  # one padded forward pass for all four clips
    for i, clip in enumerate([a, b, c]):
        np.testing.assert_allclose(together[i], enc.embed([clip])[0], atol=2e-5)
    np.testing.assert_allclose(together[3], together[0], atol=2e-5)


def test_masked_model_pools_only_real_frames(tiny_wav2vec2_masked: Path) -> None:
    enc = load_encoder(f"hf:{tiny_wav2vec2_masked}").encoder
    a, b = tone(300, 0.5), tone(500, 1.3)
    batched = enc.embed([a, b])  # padded batch with an attention mask
    np.testing.assert_allclose(batched[0], enc.embed([a])[0], atol=1e-4)


def test_identity_changes_with_weights(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    from conftest import save_tiny_wav2vec2

    other = save_tiny_wav2vec2(tmp_path / "other", seed=1)
    assert load_encoder(f"hf:{tiny_wav2vec2}").encoder.identity != load_encoder(f"hf:{other}").encoder.identity
    assert load_encoder(f"hf:{tiny_wav2vec2}").encoder.identity == load_encoder(f"hf:{tiny_wav2vec2}").encoder.identity


def test_builtin_encoder() -> None:
    enc = load_encoder("builtin").encoder
    out = enc.embed([tone(300, 0.5), tone(2000, 2.0)])
    assert out.shape == (2, 1, enc.dim) and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wav2vec", "unknown encoder"),
        ("hf:", "unknown encoder"),
        ("hf:/definitely/not/here", "no such model folder"),
        ("hf:someone/not-cached-model", "HF_HUB_OFFLINE is set"),
    ],
)
def test_bad_encoder_names_fail_clearly(spec: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError, match=message):
        load_encoder(spec)


def test_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="cannot load model"):
        load_encoder(f"hf:{tmp_path}")


def test_default_falls_back_to_builtin_when_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    started = time.monotonic()
    loaded = load_encoder(None)
    assert str(loaded.encoder.spec) == "builtin"
    assert loaded.fallback_reason and "wav2vec2-base-960h" in loaded.fallback_reason
    assert time.monotonic() - started < 10


def _silent_server() -> tuple[socket.socket, int]:
    """Accepts connections and never answers: the case that hangs a plain hub download."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conns.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def test_fallback_is_bounded_when_the_hub_never_answers(tmp_path: Path) -> None:
    server, port = _silent_server()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path), "NO_PROXY": "*"}
    code = "import logging; logging.basicConfig()\n"  # the library logs (never prints): show its warnings
    code += "from audioclf.encoders.loader import load_encoder; print(load_encoder(None).encoder.spec)"
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "builtin"
    assert "using the built-in encoder" in proc.stderr
    assert elapsed < 30


def test_bf16_embeddings_agree_with_fp32(tiny_wav2vec2: Path) -> None:
    fast = load_encoder(f"hf:{tiny_wav2vec2}", "bf16").encoder
    exact = load_encoder(f"hf:{tiny_wav2vec2}", "fp32").encoder
    assert fast.identity != exact.identity  # different numbers: never mixed in one cache entry
    clips = [tone(f, 1.0, noise=0.1, seed=i) for i, f in enumerate((200, 450, 900, 1800))]
    a, b = fast.embed(clips)[:, -1], exact.embed(clips)[:, -1]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.99


def test_same_weights_ignores_precision_only() -> None:
    from audioclf.encoders.loader import precision_for, same_weights

    assert same_weights("hf-abc", "hf-abc-bf16") and not same_weights("hf-abc", "hf-abd")
    assert same_weights("whisper-abc-int8-full-meanstd-1", "whisper-abc-float32-full-meanstd-1")
    assert not same_weights("whisper-abc-int8-full-meanstd-1", "whisper-abc-int8-audio-meanstd-1")
    assert precision_for("whisper-abc-float32-full-meanstd-1") == "fp32"
    assert precision_for("whisper-abc-int8-full-meanstd-1") == "auto" and precision_for("hf-abc") == "fp32"


@pytest.mark.parametrize(
    ("text", "kind", "source", "options"),
    [
        ("builtin", "builtin", "", ()),
        ("hf:facebook/wav2vec2-base-960h", "hf", "facebook/wav2vec2-base-960h", ()),
        ("whisper:base?padding=audio", "whisper", "base", (("padding", "audio"),)),
        (" whisper:/models/base ", "whisper", "/models/base", ()),
    ],
)
def test_model_specs_are_parsed_once_into_parts(text: str, kind: str, source: str, options: tuple) -> None:  # type: ignore[type-arg]
    from audioclf.encoders.spec import ModelSpec

    spec = ModelSpec.parse(text)
    assert (spec.kind, spec.source, spec.options) == (kind, source, options)
    assert ModelSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("builtin:x", "unknown encoder 'builtin:x'"),
        ("tfidf", "unknown encoder 'tfidf'"),
        ("hf:x?padding=audio", "takes no options"),
        ("whisper:base?padding=half", "the only option is ?padding=full or ?padding=audio"),
    ],
)
def test_malformed_specs_get_one_error(text: str, message: str) -> None:
    from audioclf.encoders.spec import ModelSpec

    with pytest.raises(EncoderError, match=re.escape(message)):
        ModelSpec.parse(text)
