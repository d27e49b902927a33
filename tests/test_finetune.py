"""Fine-tuning with tiny random wav2vec2 models saved to disk: learning, resume, export, DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_args, finetune_options, probe_options
from safetensors.torch import load_file

from audioclf.cli.main import main
from audioclf.encoders.spec import parse_spec
from audioclf.fitting.finetune import FinetuneOptions, length_batches
from audioclf.fitting.train_finetune import finetune
from audioclf.io.audio import WindowOptions, load_audio
from audioclf.labelling.inputs import predict_all
from audioclf.model.folder import load_model

FAST = {"lr": 3e-3, "batch_size": 4, "precision": "fp32", "progress": False, "patience": 10}


def run(tone_dataset: Path, tiny: Path, out: Path, cache: Path, **kw: object):  # type: ignore[no-untyped-def]
    options = FinetuneOptions(parse_spec(f"hf:{tiny}"), WindowOptions(), cache, **(FAST | kw))  # type: ignore[arg-type]
    return finetune(tone_dataset, out, options)


def test_finetuning_learns_separable_tones(tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    # A random CNN front end gives weak features, so this test trains it too (the default freezes it).
    s = run(tone_dataset, tiny_wav2vec2, tmp_path / "m", tmp_path / "c", epochs=4, freeze_feature_encoder=False)
    best = s.run.state.history[s.run.state.best_epoch - 1]
    assert best.val_acc >= 0.9, s.run.state.history
    assert s.n_train + s.run.n_val == 27  # split=test rows never used
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["id2label"] == {"0": "high", "1": "low", "2": "mid"}


def test_resume_gives_the_same_result_as_an_uninterrupted_run(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path
) -> None:
    straight = run(tone_dataset, tiny_wav2vec2, tmp_path / "a", tmp_path / "c", epochs=3, augment=True)
    first = run(tone_dataset, tiny_wav2vec2, tmp_path / "b", tmp_path / "c", epochs=3, augment=True, stop_after=1)
    assert len(first.run.state.history) == 1
    resumed = run(tone_dataset, tiny_wav2vec2, tmp_path / "b", tmp_path / "c", epochs=3, augment=True, resume=True)
    assert [h.train_loss for h in resumed.run.state.history] == pytest.approx(
        [h.train_loss for h in straight.run.state.history]
    )
    a = load_file(str(tmp_path / "a" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_frozen_parts_do_not_move(tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    before = load_file(str(tiny_wav2vec2 / "model.safetensors"))
    run(tone_dataset, tiny_wav2vec2, tmp_path / "m", tmp_path / "c", epochs=1, freeze_layers=1)
    after = load_file(str(tmp_path / "m" / "checkpoint" / "model.safetensors"))
    for key, value in before.items():
        moved = not torch.equal(value, after[f"wav2vec2.{key}"])
        frozen = key.startswith(("feature_extractor.", "encoder.layers.0."))
        if frozen or key.startswith("encoder.layers.1."):
            assert moved != frozen, key


def test_export_loads_in_transformers_pipeline_and_agrees_with_predict(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import pipeline

    out = tmp_path / "m"
    run(tone_dataset, tiny_wav2vec2, out, tmp_path / "c", epochs=2)
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))  # the held-out speaker
    # in fp32, as the pipeline runs, on every CPU: predict would use bf16 where the CPU has it, and a label
    # whose margin is within bf16's rounding may then flip (test_encoders checks bf16 against fp32)
    monkeypatch.setattr("audioclf.labelling.apply.bf16_supported", lambda: False)
    ours = predict_all(load_model(out), [str(c) for c in clips], tmp_path / "c", progress=False).predictions
    classifier = pipeline("audio-classification", model=str(out))
    theirs = [classifier({"raw": load_audio(c), "sampling_rate": 16_000}, top_k=3) for c in clips]
    assert [p.label for p in ours] == [t[0]["label"] for t in theirs]
    for pred, scores in zip(ours, theirs, strict=True):  # calibrated: the order is the same, not the numbers
        assert [label for label, _ in pred.top] == [t["label"] for t in scores]

    from audioclf.fitting.onnx_export import export_onnx  # and as an ONNX graph: the same probabilities

    export_onnx(out, tmp_path / "onnx")
    exported = predict_all(load_model(tmp_path / "onnx"), [str(c) for c in clips], tmp_path / "c", progress=False)
    for pred, graph in zip(ours, exported.predictions, strict=True):
        assert pred.label == graph.label
        assert max(abs(p - dict(graph.top)[label]) for label, p in pred.top) < 1e-3


def test_cli_finetune_stop_and_resume(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli_args("train", quiet=True, **finetune_options(tone_dataset, tiny_wav2vec2, tmp_path))
    assert main([*args, "--stop-after", "1"]) == 0
    assert "epochs           1" in capsys.readouterr().out
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "epochs           2" in out and "fine-tuned" in out
    code = main(
        [
            "train",
            "--mode",
            "finetune",
            "--manifest",
            str(tone_dataset),
            "--out",
            str(tmp_path / "x"),
            "--encoder",
            "builtin",
            "--quiet",
        ]
    )
    assert code == 2 and "not a transformers model" in capsys.readouterr().err


def test_length_batches_group_similar_lengths() -> None:
    lengths = list(np.random.default_rng(0).integers(1_000, 100_000, 200))
    batches = length_batches(lengths, 8, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(200))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 0.2 * (max(lengths) - min(lengths))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None
    launcher = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "audioclf"]
    cmd = launcher + cli_args("train", **finetune_options(tone_dataset, tiny_wav2vec2, tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch  time(s)") == 1 and proc.stdout.count("best validation") == 1  # rank 0 only
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "checkpoint").is_dir()


def test_linear_probe_exports_exactly_to_transformers(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import pipeline

    model, cache = tmp_path / "m", str(tmp_path / "c")
    args = cli_args("train", **probe_options(tone_dataset, model, f"hf:{tiny_wav2vec2}", cache))
    assert main([*args, "--hidden", "0", "--epochs", "20"]) == 0
    capsys.readouterr()
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))
    ours = predict_all(load_model(model), [str(c) for c in clips], Path(cache), progress=False).predictions
    classifier = pipeline("audio-classification", model=str(model / "transformers"))
    for clip, pred in zip(clips, ours, strict=True):
        theirs = classifier({"raw": load_audio(clip), "sampling_rate": 16_000}, top_k=3)
        assert [t["label"] for t in theirs] == [label for label, _ in pred.top]
        assert [t["score"] for t in theirs] == pytest.approx([p for _, p in pred.top], abs=1e-4)
    # an MLP head has no exact transformers counterpart: nothing exported
    assert main([*args, "--hidden", "16", "--epochs", "3", "--force"]) == 0
    assert not (model / "transformers").exists()


def test_the_python_api_fine_tunes_with_the_same_entry_as_a_probe(
    tone_dataset: Path, tiny_wav2vec2: Path, tmp_path: Path
) -> None:
    import audioclf
    from audioclf.errors import AudioclfError
    from audioclf.model.card import ModelKind

    model = audioclf.train(
        tone_dataset, tmp_path / "m", mode="finetune", encoder=f"hf:{tiny_wav2vec2}", cache_dir=tmp_path / "c", epochs=1
    )
    assert model.trained.kind is ModelKind.FINETUNED and model.labels == ["high", "low", "mid"]
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))[:2]
    assert [p.label in model.labels for p in model.predict([str(c) for c in clips])] == [True, True]
    with pytest.raises(AudioclfError, match=r"unknown options \['folds'\]"):
        audioclf.train(tone_dataset, tmp_path / "x", mode="finetune", encoder=f"hf:{tiny_wav2vec2}", folds=3)
    with pytest.raises(AudioclfError, match="mode='both': use 'probe' or 'finetune'"):
        audioclf.train(tone_dataset, tmp_path / "x", mode="both")
