"""``whisper:`` on a transformers checkpoint: its states through transformers (bf16 where the CPU has it) equal
CTranslate2's on the same weights, converted by ctranslate2's own converter; and the backend choice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import tone
from tiny_models import save_tiny

from audioclf.encoders import loader
from audioclf.encoders.loader import load_encoder, precision_for
from audioclf.encoders.whisper import WhisperEncoder
from audioclf.encoders.whisper_backends import CT2, TORCH, choose_backend, is_hf_checkpoint
from audioclf.errors import EncoderError

pytest.importorskip("faster_whisper")


def write_tokenizer(folder: Path, size: int) -> None:
    """A word-level tokenizer.json over the tiny model's vocabulary: faster-whisper loads one with every model."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    Tokenizer(WordLevel({f"t{i}": i for i in range(size)}, unk_token="t0")).save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny("whisper", tmp_path_factory.mktemp("tiny-whisper-hf"))  # 2 s input, 16 mel bands
    write_tokenizer(folder, 64)
    return folder


def waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [tone(300, 0.7), tone(900, 1.6) + 0.01 * rng.standard_normal(25_600).astype(np.float32), tone(500, 3.5)]


def test_transformers_states_equal_ctranslate2_on_the_same_weights(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOCLF_CACHE_DIR", str(tmp_path / "cache"))
    assert is_hf_checkpoint(tiny_checkpoint)
    exact = load_encoder(f"whisper:{tiny_checkpoint}", precision="fp32").encoder
    assert isinstance(exact, WhisperEncoder) and exact.backend.name == TORCH and "-torch_float32-" in exact.identity
    assert exact.native_window_s == pytest.approx(2.0)  # the checkpoint's own input length, not a fixed 30 s
    ours = exact.embed(waves())
    # the same weights through CTranslate2: converted once into the cache (float32, so no quantisation)
    assert exact._model.model.is_multilingual is not None
    converted = next((tmp_path / "cache" / "whisper-ct2").glob("*-float32"))
    ct2 = load_encoder(f"whisper:{converted}", precision="fp32").encoder
    assert isinstance(ct2, WhisperEncoder) and ct2.backend.name == CT2
    theirs = ct2.embed(waves())
    assert ours.shape == theirs.shape == (3, 1, 64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    fast = load_encoder(f"whisper:{tiny_checkpoint}", precision="bf16").encoder
    assert "-torch_bf16-" in fast.identity and loader.same_weights(fast.identity, exact.identity)
    a, b = fast.embed(waves())[:, 0], ours[:, 0]
    assert (np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() > 0.999


def test_the_backend_follows_the_machine_and_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_backend(False, "auto", "full", gpu=False).compute == "int8"  # a CTranslate2 folder stays there
    assert choose_backend(True, "auto", "audio", gpu=False).name == CT2  # shorter inputs: CTranslate2 only
    assert choose_backend(True, "fp32", "full", gpu=False).compute == "torch_float32"
    monkeypatch.setattr(loader, "bf16_supported", lambda: True)
    assert choose_backend(True, "auto", "full", gpu=False).compute == "torch_bf16"
    monkeypatch.setattr(loader, "bf16_supported", lambda: False)
    chosen = choose_backend(True, "auto", "full", gpu=False)
    assert (chosen.name, chosen.compute) == (CT2, "int8") and "no bf16" in chosen.reason
    assert precision_for("whisper-abc-torch_float32-full-meanstd-1") == "fp32"
    assert precision_for("whisper-abc-torch_bf16-full-meanstd-1") == "auto"


def test_a_checkpoint_without_tokenizer_fails_in_one_line_when_it_must_transcribe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audioclf.errors import EncoderError

    monkeypatch.setenv("AUDIOCLF_CACHE_DIR", str(tmp_path / "cache"))
    folder = save_tiny("whisper", tmp_path / "no-tokenizer")
    encoder = load_encoder(f"whisper:{folder}", precision="fp32").encoder
    assert encoder.embed([tone(300, 1.0)]).shape == (1, 1, 64)  # embeddings need no tokenizer
    with pytest.raises(EncoderError, match=r"no-tokenizer has no tokenizer\.json") as caught:
        encoder.languages(tone(300, 1.0))  # type: ignore[attr-defined]
    assert "\n" not in str(caught.value) and not (tmp_path / "cache" / "whisper-ct2").exists()  # no conversion


def test_a_size_name_loads_openai_transformers_weights_from_the_hub_cache_where_bf16_wins(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    import huggingface_hub.constants

    revision = "0" * 40  # the hub cache's layout: refs/main names the snapshot folder that holds the files
    repo = tmp_path / "hub" / "models--openai--whisper-tiny"
    shutil.copytree(tiny_checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loader, "bf16_supported", lambda: True)
    by_name = load_encoder("whisper:tiny").encoder
    assert isinstance(by_name, WhisperEncoder) and by_name.backend.compute == "torch_bf16"
    by_folder = load_encoder(f"whisper:{tiny_checkpoint}").encoder
    assert by_name.identity == by_folder.identity  # the same weights, found through the cache
    np.testing.assert_array_equal(by_name.embed(waves()), by_folder.embed(waves()))

    monkeypatch.setattr(loader, "bf16_supported", lambda: False)  # CTranslate2's conversion, which is not cached
    with pytest.raises(EncoderError, match="not in the local cache"):
        load_encoder("whisper:tiny")
    monkeypatch.setattr(loader, "bf16_supported", lambda: True)
    caplog.set_level(logging.INFO, logger="audioclf")  # the fallback is said at INFO, whatever ran before
    with pytest.raises(EncoderError, match="not in the local cache"):
        load_encoder("whisper:small")  # neither format cached: one line, no download attempted offline
    assert "openai/whisper-small is not in the local cache" in caplog.text
