"""Every transformers audio family through ``hf:<folder>``, on tiny random checkpoints saved like real ones:
embeddings (a padded batch equals one clip at a time), fixed-input windows, fine-tuning one epoch, the
transformers export and ``pipeline("audio-classification")`` agreeing with ``audioclf predict``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_args, probe_options, tone
from tiny_models import FAMILIES, save_tiny

from audioclf.cli.main import main
from audioclf.encoders.loader import fit_windows, load_encoder
from audioclf.encoders.spec import parse_spec
from audioclf.errors import EncoderError
from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.train_finetune import finetune
from audioclf.io.audio import WindowOptions, load_audio
from audioclf.labelling.inputs import predict_all
from audioclf.model.folder import load_model

FIXED_INPUT_S = {"whisper": 2.0, "ast": 2.0}  # the tiny configs' fixed input lengths (Whisper 30 s, AST 10.24 s)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            made[family] = save_tiny(family, tmp_path_factory.mktemp(family))
        return made[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_family_embeds_every_layer_and_batches_as_if_alone(family: str, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    encoder = load_encoder(f"hf:{tiny_dir(family)}", "fp32").encoder
    waves = [tone(300 + 100 * i, s, noise=0.05, seed=i) for i, s in enumerate((0.5, 0.8, 1.0, 0.3, 1.6))]
    batch = encoder.embed(waves)
    alone = np.stack([encoder.embed([w])[0] for w in waves])
    assert batch.shape == (5, 3, 32) and np.isfinite(batch).all()
    np.testing.assert_allclose(batch, alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(batch[0, -1], batch[1, -1])  # different audio, different embeddings
    assert encoder.native_window_s == FIXED_INPUT_S.get(family)


def test_whisper_pools_the_states_that_hold_audio_only(tiny_dir) -> None:  # type: ignore[no-untyped-def]
    """Recomputed by hand through transformers: 0.5 s of the 2 s input is the first quarter of the states."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = tiny_dir("whisper")
    clip = tone(440, 0.5, noise=0.05)
    ours = load_encoder(f"hf:{folder}", "fp32").encoder.embed([clip])[0]
    features = WhisperFeatureExtractor.from_pretrained(folder)(clip, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        states = WhisperModel.from_pretrained(folder).encoder(features.input_features, output_hidden_states=True)
    for layer, h in enumerate(states.hidden_states):
        np.testing.assert_allclose(ours[layer], h[0, :25].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(ours[-1], states.hidden_states[-1][0].mean(0).numpy(), atol=1e-3)


def test_ast_pools_the_patches_that_hold_audio_only(tiny_dir) -> None:  # type: ignore[no-untyped-def]
    encoder = load_encoder(f"hf:{tiny_dir('ast')}", "fp32").encoder
    # 200 frames of 32 bands -> 19 time x 2 frequency patches after 2 summary tokens; 0.5 s is 48 frames,
    # which start 5 of the time patches (every 10 frames)
    mask = encoder.family.audio_mask([np.zeros(8_000), np.zeros(32_000)], {}, 40)
    assert mask.sum(1).tolist() == [10, 38] and not mask[:, :2].any()


@pytest.mark.parametrize("family", ["whisper", "ast"])
def test_fixed_input_families_default_their_windows_and_refuse_longer_ones(family: str, tiny_dir) -> None:  # type: ignore[no-untyped-def]
    encoder = load_encoder(f"hf:{tiny_dir(family)}", "fp32").encoder
    native = fit_windows(WindowOptions.encoder_native(), encoder)
    assert (native.window_s, native.hop_s) == (2.0, 2.0)
    assert fit_windows(WindowOptions(1.0, 0.5), encoder) == WindowOptions(1.0, 0.5)  # a chosen shorter one stays
    with pytest.raises(EncoderError, match="at most 2 s of audio per window"):
        fit_windows(WindowOptions(3.0, 3.0), encoder)


def test_windows_of_other_encoders_stay_at_the_default(tiny_wav2vec2: Path) -> None:
    encoder = load_encoder(f"hf:{tiny_wav2vec2}", "fp32").encoder
    assert fit_windows(WindowOptions.encoder_native(), encoder) == WindowOptions()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_finetunes_exports_and_agrees_with_pipeline(  # type: ignore[no-untyped-def]
    family: str, tiny_dir, tone_dataset: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    out = tmp_path / "m"
    windows, cache = WindowOptions.encoder_native(), tmp_path / "c"
    options = FinetuneOptions(
        parse_spec(f"hf:{tiny_dir(family)}"), windows, cache, epochs=1, lr=3e-3, batch_size=4, progress=False
    )
    s = finetune(tone_dataset, out, options)  # the default precision: bf16 here
    assert len(s.run.state.history) == 1 and np.isfinite(s.run.state.history[0].train_loss)
    meta = json.loads((out / "audioclf.json").read_text())
    assert meta["windows"]["window_s"] == FIXED_INPUT_S.get(family, 10.0)
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))  # the held-out speaker
    ours = predict_all(load_model(out), [str(c) for c in clips], tmp_path / "c", progress=False).predictions
    classifier = pipeline("audio-classification", model=str(out))
    theirs = [classifier({"raw": load_audio(c), "sampling_rate": 16_000}, top_k=1)[0]["label"] for c in clips]
    assert [p.label for p in ours] == theirs
    if family == "whisper":  # the convolutional front end is frozen, as wav2vec2's is; the layers train
        from safetensors.torch import load_file

        before, after = (
            load_file(str(tiny_dir(family) / "model.safetensors")),
            load_file(str(out / "model.safetensors")),
        )
        convs = [k for k in after if k.startswith("encoder.conv")]
        assert len(convs) == 4 and all((before[f"model.{k}"] == after[k]).all() for k in convs)
        assert not (before["model.encoder.layers.1.fc1.weight"] == after["encoder.layers.1.fc1.weight"]).all()


def test_probe_exports_for_waveform_families_only(  # type: ignore[no-untyped-def]
    tiny_dir, tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import pipeline

    for family, exported in (("data2vec-audio", True), ("whisper", False)):
        model = tmp_path / family
        args = cli_args(
            "train", hidden=0, **probe_options(tone_dataset, model, f"hf:{tiny_dir(family)}", tmp_path / "c")
        )
        assert main(args) == 0
        capsys.readouterr()
        assert (model / "transformers").is_dir() == exported, family
        if exported:
            clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))
            ours = predict_all(load_model(model), [str(c) for c in clips], tmp_path / "c", progress=False).predictions
            classifier = pipeline("audio-classification", model=str(model / "transformers"))
            for clip, pred in zip(clips, ours, strict=True):
                top = classifier({"raw": load_audio(clip), "sampling_rate": 16_000}, top_k=1)[0]
                assert top["label"] == pred.label
                assert top["score"] == pytest.approx(pred.top[0][1], abs=1e-4)


def test_cli_embed_says_what_is_wrong_with_a_mismatched_checkpoint(  # type: ignore[no-untyped-def]
    tiny_dir, tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    broken = tmp_path / "whisper"
    shutil.copytree(tiny_dir("whisper"), broken)
    config = json.loads((broken / "preprocessor_config.json").read_text())
    (broken / "preprocessor_config.json").write_text(
        json.dumps(config | {"chunk_length": 30, "n_samples": 480000, "nb_max_frames": 3000})
    )
    code = main(
        [
            "embed",
            "--manifest",
            str(tone_dataset),
            "--encoder",
            f"hf:{broken}",
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Whisper" in err and "internal error" not in err and len(err.strip().splitlines()) == 1
    code = main(
        [
            "embed",
            "--manifest",
            str(tone_dataset),
            "--encoder",
            f"hf:{tiny_dir('ast')}",
            "--window",
            "5",
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "at most 2 s of audio per window" in err


def test_a_model_for_another_sample_rate_is_refused_in_one_line(tiny_wav2vec2: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "48k"
    shutil.copytree(tiny_wav2vec2, folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps(config | {"sampling_rate": 48_000}))
    with pytest.raises(EncoderError, match="reads 48 kHz audio, and audioclf decodes at 16 kHz"):
        load_encoder(f"hf:{folder}", "fp32")


def test_cli_windows_follow_the_encoder_unless_given() -> None:
    from argparse import Namespace

    from audioclf.cli.options import window_options

    assert window_options(Namespace(window=None, hop=None, max_duration=60.0)) == WindowOptions.encoder_native(60.0)
    assert window_options(Namespace(window=5.0, hop=None, max_duration=None)) == WindowOptions(5.0, 5.0)
    assert window_options(Namespace(window=5.0, hop=2.5, max_duration=None)) == WindowOptions(5.0, 2.5)


def test_a_fine_tuned_model_carries_its_validation_temperature_in_its_classifier(  # type: ignore[no-untyped-def]
    tiny_dir, tone_dataset: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "m"
    encoder, cache = parse_spec(f"hf:{tiny_dir('hubert')}"), tmp_path / "c"
    options = FinetuneOptions(encoder, WindowOptions(), cache, epochs=1, lr=3e-3, batch_size=4, progress=False)
    finetune(tone_dataset, out, replace(options, precision="fp32"))  # fp32: the export equals the checkpoint
    meta = json.loads((out / "audioclf.json").read_text())
    cal, abstain = meta["calibration"], meta["abstain"]
    assert cal["into"] == "classifier" and "validation recordings" in cal["fitted_on"]
    # --min-confidence auto: the threshold on the same validation recordings, for the exported (folded) logits
    assert 0.0 < abstain["min_confidence"] <= 1.0 and abstain["novelty"] is None
    exported, trained = load_file(str(out / "model.safetensors")), load_file(str(out / "checkpoint/model.safetensors"))
    t = cal["temperature_folded"]
    assert t != 1.0
    torch.testing.assert_close(exported["classifier.weight"], trained["classifier.weight"] / t)
    torch.testing.assert_close(exported["classifier.bias"], trained["classifier.bias"] / t)
    torch.testing.assert_close(exported["projector.weight"], trained["projector.weight"])  # only the classifier
