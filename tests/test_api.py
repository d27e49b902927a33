"""The Python API without the CLI: train -> evaluate -> load -> predict files, folders and waveforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

import audioclf
from audioclf.io.audio import load_audio


@pytest.fixture(scope="module")
def trained(tone_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> audioclf.Model:
    out = tmp_path_factory.mktemp("api") / "model"
    return audioclf.train(tone_dataset, out, encoder="builtin", cache_dir=out.parent / "cache", folds=3)


def test_train_returns_a_model_whose_folder_loads_back(trained: audioclf.Model) -> None:
    assert trained.labels == ["high", "low", "mid"] and trained.encoder == "builtin"
    assert trained.path is not None
    again = audioclf.load(trained.path, cache_dir=trained.cache_dir)
    assert again.labels == trained.labels
    meta = json.loads((trained.path / "audioclf.json").read_text())
    assert meta["training"]["cv_folds"] == 3  # a keyword option reached TrainOptions


def test_evaluate_scores_the_held_out_speaker(trained: audioclf.Model, tone_dataset: Path) -> None:
    report = audioclf.evaluate(trained, tone_dataset)
    assert report.data["recording"]["n"] == 9  # the split=test rows only
    assert report.accuracy >= 0.9 and report.macro_f1 >= 0.9
    assert report.to_dict()["recording"]["accuracy"] == report.accuracy
    assert (report.out / "report.json").is_file() and report.n_failed == 0
    assert trained.evaluate(tone_dataset).accuracy == report.accuracy
    everything = audioclf.evaluate(trained, tone_dataset, split="all")  # the 27 training rows are left out
    assert everything.data["recording"]["n"] == 9 and everything.n_left_out == 27
    counted = audioclf.evaluate(trained, tone_dataset, split="all", include_training=True)
    assert counted.data["recording"]["n"] == 36 and counted.n_left_out == 0


def test_predict_files_folders_and_waveforms_agree(trained: audioclf.Model, tone_dataset: Path) -> None:
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))
    by_file = trained.predict([str(c) for c in clips], top_k=2)
    assert [p.label for p in by_file] == [c.name.split("_")[0] for c in clips]
    assert all(len(p.top) == 2 and p.probability == p.top[0][1] > p.top[1][1] for p in by_file)
    wave = load_audio(clips[0])
    (from_array,) = trained.predict(wave, sampling_rate=16_000, top_k=2)
    assert from_array.label == by_file[0].label
    assert [p for _, p in from_array.top] == pytest.approx([p for _, p in by_file[0].top], abs=1e-5)
    folder = trained.predict(tone_dataset.parent)
    assert len(folder) == len(list(tone_dataset.parent.glob("*.wav")))


def test_a_waveform_at_another_rate_is_resampled(trained: audioclf.Model) -> None:
    (pred,) = trained.predict(tone(1980.0, 0.6, rate=44_100, noise=0.05), sampling_rate=44_100)
    assert pred.label == "high"


def test_api_errors_say_what_to_change(trained: audioclf.Model, tone_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(audioclf.AudioclfError, match="sampling_rate"):
        trained.predict(np.zeros(16_000, np.float32))
    with pytest.raises(audioclf.AudioclfError, match="mono"):
        trained.predict(np.zeros((2, 16_000), np.float32), sampling_rate=16_000)
    with pytest.raises(audioclf.AudioclfError, match="unknown options"):
        audioclf.train(tone_dataset, tmp_path / "x", encoder="builtin", epochz=3)


def test_library_errors_name_the_setting_and_the_cli_names_the_flag(
    trained: audioclf.Model, tone_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.cli.main import main
    from audioclf.errors import ModelError

    assert trained.path is not None
    with pytest.raises(ModelError, match="a model already exists there; overwrite it") as caught:
        audioclf.train(tone_dataset, trained.path, encoder="builtin")
    assert caught.value.option == "force" and "--" not in str(caught.value)
    code = main(
        ["train", "--manifest", str(tone_dataset), "--out", str(trained.path), "--encoder", "builtin", "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and err.endswith("(see --force)") and "\n" not in err


def test_a_linear_last_layer_probe_is_exported_through_the_api(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    model = audioclf.train(
        tone_dataset,
        tmp_path / "m",
        encoder=f"hf:{tiny_wav2vec2}",
        cache_dir=tmp_path / "c",
        layer="last",
        hidden=0,
        precision="fp32",
    )
    assert model.path is not None and (model.path / "transformers" / "config.json").is_file()
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))
    classifier = pipeline("audio-classification", model=str(model.path / "transformers"))
    for clip, pred in zip(clips, model.predict(clips), strict=True):
        top = classifier({"raw": load_audio(clip), "sampling_rate": 16_000}, top_k=1)[0]
        assert top["label"] == pred.label and top["score"] == pytest.approx(pred.probability, abs=1e-4)


def test_every_probe_is_temperature_scaled_on_out_of_fold_recordings(trained: audioclf.Model) -> None:
    from dataclasses import replace

    from audioclf.model.card import Calibration

    card = trained.trained.card
    cal = card.calibration
    assert cal is not None and "out-of-fold" in cal.fitted_on and 0.05 <= cal.temperature <= 20.0
    raw = audioclf.Model(replace(trained.trained, card=replace(card, calibration=Calibration(1.0))), trained.cache_dir)
    t = cal.temperature
    files = [str(p) for p in sorted((Path(card.training.manifest).parent).glob("*_3_*.wav"))]
    for scaled, plain in zip(trained.predict(files, top_k=3), raw.predict(files, top_k=3), strict=True):
        assert scaled.label == plain.label  # a temperature never changes the ranking
        assert scaled.probability <= plain.probability if t >= 1 else scaled.probability >= plain.probability
        p = dict(plain.top)  # all three classes: softmax(z / t) is softmax(z) ** (1 / t), renormalised
        expected = {label: q ** (1 / t) for label, q in p.items()}
        total = sum(expected.values())
        assert dict(scaled.top) == pytest.approx({k: v / total for k, v in expected.items()}, abs=1e-5)
