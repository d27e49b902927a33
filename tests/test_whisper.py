"""The whisper: encoder with the real Whisper base model (faster-whisper / CTranslate2), offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

from audioclf.cli.main import main
from audioclf.encoders.loader import load_encoder
from audioclf.encoders.whisper import WhisperEncoder
from audioclf.errors import EncoderError
from audioclf.io.audio import load_audio

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample"


def test_embeddings_pool_only_the_frames_that_hold_audio(whisper_base: Path) -> None:
    import ctranslate2

    enc = load_encoder(f"whisper:{whisper_base}").encoder
    assert isinstance(enc, WhisperEncoder) and enc.dim == 1024 and enc.n_layers == 1
    clip = load_audio(SAMPLE / "recordings" / "3_theo_0.wav")
    out = enc.embed([clip, tone(300, 1.0), clip])
    assert out.shape == (3, 1, 1024) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], out[2])

    # the same thing by hand through CTranslate2: pad the log-mel to 30 s, keep the first ceil(frames / 2) states
    mel = enc._model.feature_extractor(clip)
    padded = np.zeros((mel.shape[0], 3000), np.float32)
    padded[:, : mel.shape[1]] = mel
    states = np.asarray(enc._model.model.encode(ctranslate2.StorageView.from_array(padded[None]), to_cpu=True))[0]
    audio = states[: (mel.shape[1] + 1) // 2]
    np.testing.assert_allclose(out[0, 0], np.concatenate([audio.mean(0), audio.std(0)]), rtol=1e-5, atol=1e-5)
    whole = np.concatenate([states.mean(0), states.std(0)])
    assert not np.allclose(out[0, 0], whole, atol=1e-2)  # averaging the padding would give something else


def test_audio_only_padding_is_its_own_encoder(whisper_base: Path) -> None:
    full = load_encoder(f"whisper:{whisper_base}").encoder
    short = load_encoder(f"whisper:{whisper_base}?padding=audio").encoder
    assert full.identity != short.identity  # different numbers: never mixed in one cache
    clip = load_audio(SAMPLE / "recordings" / "5_nicolas_3.wav")
    a, b = full.embed([clip])[0, 0], short.embed([clip])[0, 0]
    assert a.shape == b.shape and 0.5 < float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 0.9999


def test_spoken_language(whisper_base: Path) -> None:
    enc = load_encoder(f"whisper:{whisper_base}").encoder
    assert isinstance(enc, WhisperEncoder)
    (code, p), *_ = enc.languages(load_audio(SAMPLE / "recordings" / "7_jackson_1.wav"))
    assert code == "en" and p > 0.5


def test_train_and_predict_end_to_end(whisper_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        f"recordings/{d}_{s}_{t}.wav,{d},{s}" for d in (1, 8) for s in ("jackson", "nicolas", "theo") for t in (0, 1)
    ]
    manifest = SAMPLE / "whisper-test.csv"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\n" + "\n".join(str(SAMPLE / r) for r in rows) + "\n")
    model = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(model), "--encoder", f"whisper:{whisper_base}"]
    assert main([*args, "--epochs", "20", "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert json.loads((model / "audioclf.json").read_text())["encoder"]["spec"] == f"whisper:{whisper_base}"
    clip = SAMPLE / "recordings" / "8_theo_2.wav"
    assert main(["predict", "--model", str(model), str(clip), "--json", "--cache-dir", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["label"] in ("1", "8")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("whisper:", "give a size"),
        ("whisper:/no/such/dir", "no such model folder"),
        ("whisper:tiny", "not in the local cache and HF_HUB_OFFLINE is set"),
        ("whisper:tiny?pad=no", "the only option is"),
    ],
)
def test_bad_whisper_specs(spec: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderError, match=message):
        load_encoder(spec)


def test_folder_that_is_not_a_whisper_model(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not a faster-whisper model"):
        load_encoder(f"whisper:{tmp_path}")


def test_offline_default_falls_back_to_a_configured_local_whisper(
    whisper_base: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("AUDIOCLF_FALLBACK_ENCODER", f"whisper:{whisper_base}")
    loaded = load_encoder(None)
    assert isinstance(loaded.encoder, WhisperEncoder) and "HF_HUB_OFFLINE" in (loaded.fallback_reason or "")
    assert f"using whisper:{whisper_base} from AUDIOCLF_FALLBACK_ENCODER instead" in caplog.text

    monkeypatch.setenv("AUDIOCLF_FALLBACK_ENCODER", "whisper:/no/such/folder")
    assert str(load_encoder(None).encoder.spec) == "builtin"
    assert "does not load either" in caplog.text


def test_whisper_takes_the_threads_it_is_given() -> None:
    import os
    import subprocess
    import sys

    code = "from audioclf.encoders.whisper import cpu_threads; print(cpu_threads())"
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # what Ray sets in an actor with num_cpus=1
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"  # not every core of the node in every actor
