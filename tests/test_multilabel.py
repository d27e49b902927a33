"""Multi-label manifests (``label`` = ``low;noise``, or a JSON ``labels`` list): sigmoid probes with per-label
thresholds, mAP far above chance on held-out groups, label sets from predict, overlapping segments."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

import audioclf
from audioclf.cli.main import main
from audioclf.encoders.spec import parse_spec
from audioclf.errors import ManifestError
from audioclf.io.label_sets import canonical, join_labels, split_labels
from audioclf.io.manifest import load_manifest

SOUNDS = ("low", "high", "noise")


def mixture(labels: tuple[str, ...], seconds: float, seed: int, shift: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = {
        "low": lambda: tone(220 * shift, seconds),
        "high": lambda: tone(1980 * shift, seconds),
        "noise": lambda: 0.3 * rng.standard_normal(int(seconds * 16_000)).astype(np.float32),
    }
    return np.sum([parts[label]() for label in labels], axis=0).astype(np.float32) / len(labels)


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every non-empty subset of three sounds, 5 groups x 2 takes; the last group is the test split."""
    root = tmp_path_factory.mktemp("multilabel")
    subsets = [s for n in (1, 2, 3) for s in combinations(SOUNDS, n)]
    rows = []
    for g in range(5):
        for k, subset in enumerate(subsets * 2):
            name = f"g{g}_{k}.wav"
            write_audio(root / name, mixture(subset, 0.8, seed=100 * g + k, shift=1 + 0.02 * g), 16_000)
            rows.append({"path": name, "labels": list(subset), "group": f"g{g}", "split": "test" if g == 4 else ""})
    manifest = root / "mixtures.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_label_cells_split_join_and_escape() -> None:
    assert split_labels("speech;music") == ("speech", "music")
    assert canonical("music; speech;music") == "music;speech"
    assert split_labels(r"rock\;roll;jazz") == ("rock;roll", "jazz")
    assert join_labels(["rock;roll", "jazz"]) == r"jazz;rock\;roll"
    with pytest.raises(ManifestError, match="has an empty entry"):
        split_labels("speech;;music", "m.csv:3")


def test_a_label_list_with_an_empty_entry_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\na.wav,speech;\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: label list 'speech;' has an empty entry"):
        load_manifest(tmp_path / "m.csv")


def test_multi_label_train_evaluate_predict(mixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir, cache = tmp_path / "model", tmp_path / "cache"
    args = ["train", "--manifest", str(mixtures), "--out", str(model_dir), "--encoder", "builtin"]
    code = main([*args, "--cache-dir", str(cache)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "multi-label (high 32, low 32, noise 32)" in out and "thresholds" in out
    meta = json.loads((model_dir / "audioclf.json").read_text())
    assert meta["task"] == "multi_label" and set(meta["thresholds"]) == set(SOUNDS)

    code = main(["evaluate", "--model", str(model_dir), "--manifest", str(mixtures), "--cache-dir", str(cache)])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((model_dir / "evaluation" / "report.json").read_text())
    # each label is on 4 of 7 subsets: average precision by chance ~0.57
    assert report["n_recordings"] == 14 and report["map"] > 0.9 and report["micro_f1"] > 0.8, report
    assert "mAP" in out and "(multi-label)" in out

    model = audioclf.load(model_dir, cache_dir=cache)
    clip = write_audio(tmp_path / "both.wav", mixture(("low", "noise"), 0.8, seed=7), 16_000)
    (pred,) = model.predict(clip)
    assert set(pred.labels or ()) == {"low", "noise"} and pred.label == "low;noise"
    assert pred.as_dict()["labels"] == list(pred.labels or ())


def test_multi_label_segments_overlap(mixtures: Path, tmp_path: Path) -> None:
    model = audioclf.train(mixtures, tmp_path / "m", encoder="builtin", cache_dir=tmp_path / "c")
    parts = [mixture(("low",), 3.0, 1), mixture(("low", "high"), 3.0, 2), mixture(("noise",), 3.0, 3)]
    audio = write_audio(tmp_path / "long.wav", np.concatenate(parts), 16_000)
    (pred,) = model.predict(audio, segments=True, window=0.5, hop=0.25, min_duration=0.6)
    spans = {s.label: [] for s in pred.segments}
    for s in pred.segments:
        spans[s.label].append((s.start_s, s.end_s))
    assert spans.keys() == {"low", "high", "noise"}, pred.segments
    ((low_start, low_end),) = spans["low"]
    ((high_start, high_end),) = spans["high"]
    assert low_start == 0.0 and abs(low_end - 6.0) <= 0.5  # low throughout the first six seconds
    assert abs(high_start - 3.0) <= 0.5 and abs(high_end - 6.0) <= 0.5  # high over the low tone: an overlap


def test_the_transformers_export_is_multi_label(mixtures: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from audioclf.io.audio import load_audio

    spec = f"hf:{tiny_wav2vec2}"  # fp32, as the pipeline runs: the probabilities agree to 1e-4
    model = audioclf.train(mixtures, tmp_path / "m", encoder=spec, cache_dir=tmp_path / "c", precision="fp32")
    config = json.loads((tmp_path / "m" / "transformers" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    clips = sorted(mixtures.parent.glob("g4_*.wav"))[:5]
    ours = model.predict(clips, top_k=3)
    classifier = pipeline("audio-classification", model=str(tmp_path / "m" / "transformers"))
    for clip, pred in zip(clips, ours, strict=True):
        theirs = {r["label"]: r["score"] for r in classifier({"raw": load_audio(clip), "sampling_rate": 16_000})}
        for label, p in pred.top:  # sigmoid scores, one per label (they do not sum to one)
            assert theirs[label] == pytest.approx(p, abs=1e-4)


def test_fine_tuning_a_multi_label_model(
    mixtures: Path, tiny_wav2vec2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import pipeline

    from audioclf.fitting.finetune import FinetuneOptions
    from audioclf.fitting.train_finetune import finetune
    from audioclf.io.audio import WindowOptions, load_audio

    out = tmp_path / "ft"
    encoder, cache = parse_spec(f"hf:{tiny_wav2vec2}"), tmp_path / "c"
    options = FinetuneOptions(encoder, WindowOptions(), cache, epochs=2, lr=3e-3, batch_size=8, progress=False)
    s = finetune(mixtures, out, replace(options, precision="fp32"))
    assert s.run.state.best_epoch >= 1
    meta = json.loads((out / "audioclf.json").read_text())
    assert meta["task"] == "multi_label" and set(meta["thresholds"]) == set(SOUNDS)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    clips = sorted(mixtures.parent.glob("g4_*.wav"))[:4]
    # in fp32, as the pipeline runs, on every CPU (predict would use bf16 where the CPU has it): the same numbers
    monkeypatch.setattr("audioclf.labelling.apply.bf16_supported", lambda: False)
    ours = audioclf.load(out, cache_dir=tmp_path / "c").predict(clips, top_k=3)
    classifier = pipeline("audio-classification", model=str(out))
    for clip, pred in zip(clips, ours, strict=True):
        assert pred.labels is not None and all(0.0 <= p <= 1.0 for _, p in pred.top)
        theirs = {r["label"]: r["score"] for r in classifier({"raw": load_audio(clip), "sampling_rate": 16_000})}
        for label, p in pred.top:
            assert theirs[label] == pytest.approx(p, abs=1e-4)
