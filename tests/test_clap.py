"""CLAP through hf: (a tiny random ClapModel with its processor, saved and loaded back): 48 kHz audio through
the cache beside 16 kHz, a probe on its embeddings, and a zero-shot model of the sound from label prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone, write_audio
from tiny_models import save_tiny_clap

from audioclf.cli.main import main
from audioclf.encoders.loader import load_encoder
from audioclf.extraction.embed import embed_items
from audioclf.io.audio import load_audio
from audioclf.io.cache import AudioCache, EmbeddingCache
from audioclf.io.manifest import Item


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


def by_hand(
    folder: Path, audio_48k: list[np.ndarray], prompts: list[list[str]]
) -> tuple[np.ndarray, np.ndarray, float]:
    """transformers alone: unit audio embeddings, unit class vectors (mean of unit prompt embeddings), scale."""
    from transformers import ClapModel, ClapProcessor

    model, processor = ClapModel.from_pretrained(folder).eval(), ClapProcessor.from_pretrained(folder)
    with torch.no_grad():
        inputs = processor.feature_extractor(audio_48k, sampling_rate=48_000, return_tensors="pt")
        audio = model.get_audio_features(**inputs).pooler_output
        classes = []
        for said in prompts:
            text = model.get_text_features(**processor.tokenizer(said, padding=True, return_tensors="pt")).pooler_output
            text = torch.nn.functional.normalize(text, dim=-1).mean(0)
            classes.append(torch.nn.functional.normalize(text, dim=-1))
    audio = torch.nn.functional.normalize(audio, dim=-1).numpy()
    return audio, torch.stack(classes).numpy(), float(model.logit_scale_a.detach().exp())


def test_clap_reads_48_khz_and_the_cache_keeps_rates_apart(tiny_clap: Path, tmp_path: Path) -> None:
    clip = write_audio(tmp_path / "high.wav", tone(12_000, 1.0, rate=48_000), 48_000)  # above 16 kHz's 8 kHz
    item = Item(str(clip), None, None, "g", clip.name)
    encoder = load_encoder(f"hf:{tiny_clap}").encoder
    assert getattr(encoder, "sample_rate", None) == 48_000 and encoder.native_window_s == 2.0
    done = embed_items([item], encoder, EmbeddingCache(tmp_path / "cache", encoder.identity, _windows()), _windows())
    ((_, embedded),) = done.embedded
    assert embedded.durations_s.tolist() == [1.0]  # seconds of 48 kHz samples, not three times as many
    expected, _, _ = by_hand(tiny_clap, [load_audio(clip, rate=48_000)], [["tone"]])
    np.testing.assert_allclose(embedded.embeddings[0, 0], expected[0], atol=1e-5)

    at_16k, at_48k = (np.asarray(AudioCache(tmp_path / "c", None, rate).load(item)) for rate in (16_000, 48_000))
    assert len(at_48k) == 3 * len(at_16k) == 48_000  # one cache, two rates, no collision
    rms = [float(np.sqrt(np.mean(np.square(x)))) for x in (at_16k, at_48k)]
    assert rms[0] < 0.05 < 0.3 < rms[1]  # the 12 kHz tone is there at 48 kHz only


def _windows():  # type: ignore[no-untyped-def]
    from audioclf.io.audio import WindowOptions

    return WindowOptions(window_s=2.0, hop_s=2.0)


@pytest.fixture(scope="module")
def clap_probe(tiny_clap: Path, tone_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    probe = tmp_path_factory.mktemp("clap-probe") / "model"
    args = ["train", "--manifest", str(tone_dataset), "--out", str(probe), "--encoder", f"hf:{tiny_clap}"]
    assert main([*args, "--cache-dir", str(probe.parent / "cache"), "--quiet"]) == 0
    return probe


def test_a_probe_and_a_zero_shot_model_on_clap(
    tiny_clap: Path, clap_probe: Path, tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert json.loads((clap_probe / "audioclf.json").read_text())["windows"]["window_s"] == 2.0  # CLAP's input
    cache = str(clap_probe.parent / "cache")

    prompts = tmp_path / "prompts.csv"
    prompts.write_text("label,prompt\nlow,low hum\nlow,\nhigh,high beep\nbird,a bird\n")
    zero = tmp_path / "zero-shot"
    args = ["train", "--zero-shot", str(prompts), "--out", str(zero), "--encoder", f"hf:{tiny_clap}"]
    assert main([*args, "--cache-dir", cache, "--quiet"]) == 0
    card = json.loads((zero / "audioclf.json").read_text())
    assert (
        card["features"]["mode"] == "acoustic" and card["training"]["zero_shot"]["low"][1] == "This is a sound of low."
    )

    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))[:3]
    capsys.readouterr()
    assert (
        main(["predict", "--model", str(zero), *map(str, clips), "--json", "--top-k", "3", "--cache-dir", cache]) == 0
    )
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said = [["low hum", "This is a sound of low."], ["high beep"], ["a bird"]]
    audio, classes, scale = by_hand(tiny_clap, [load_audio(c, rate=48_000) for c in clips], said)
    logits = scale * audio @ classes.T
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    ours = np.array(
        [[{t["label"]: t["probability"] for t in a["top"]}[k] for k in ("low", "high", "bird")] for a in answers]
    )
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_a_clap_probe_exports_to_onnx_with_its_48_khz_front_end(
    clap_probe: Path, tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (dev extras)")
    out, cache = tmp_path / "onnx", str(clap_probe.parent / "cache")
    assert main(["export", "--model", str(clap_probe), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "audioclf.json").read_text())["onnx"]["sample_rate"] == 48_000
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))
    answers = []
    for folder in (clap_probe, out):
        capsys.readouterr()
        assert (
            main(["predict", "--model", str(folder), *map(str, clips), "--json", "--top-k", "3", "--cache-dir", cache])
            == 0
        )
        answers.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    for ours, graph in zip(*answers, strict=True):
        assert ours["label"] == graph["label"]
        theirs = {t["label"]: t["probability"] for t in graph["top"]}
        assert max(abs(t["probability"] - theirs[t["label"]]) for t in ours["top"]) < 1e-3
    example = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"
    said = subprocess.run([sys.executable, str(example), str(out), str(clips[0])], capture_output=True, text=True)
    label, probability = said.stdout.splitlines()[0].split("\t")  # decoded at 48 kHz by the example too
    assert label == answers[0][0]["label"] and abs(float(probability) - answers[0][0]["probability"]) < 1e-3


def test_a_fused_clap_probe_is_not_exported(
    tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fused = save_tiny_clap(tmp_path / "fused", fused=True)
    model = tmp_path / "probe"
    args = ["train", "--manifest", str(tone_dataset), "--out", str(model), "--encoder", f"hf:{fused}", "--quiet"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    capsys.readouterr()
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fused CLAP checkpoint's fusion branch" in err and len(err.splitlines()) == 1, err


def test_an_index_of_clap_embeddings_is_searched_by_words(tiny_clap: Path, tone_dataset: Path, tmp_path: Path) -> None:
    """No transcripts: a text query goes through CLAP's text tower into the space of the sounds."""
    from audioclf.corpus.index import Index

    files = sorted(tone_dataset.parent.glob("*.wav"))[:6]
    clap = f"hf:{tiny_clap}"
    index = Index.build(tmp_path / "index", files, encoder=clap, similarity="cosine", cache_dir=tmp_path / "cache")
    hits = index.search(text="high beep", top_k=6)
    audio, classes, _ = by_hand(tiny_clap, [load_audio(f, rate=48_000) for f in files], [["high beep"]])
    expected = [str(files[k]) for k in np.argsort(-(audio @ classes[0]), kind="stable")]
    assert [h.source for h in hits] == expected


def test_a_fused_clap_embeds_each_window_as_if_alone(tmp_path: Path) -> None:
    """A fused checkpoint's extractor marks one input of a batch "longer" at random; no window is longer."""
    encoder = load_encoder(f"hf:{save_tiny_clap(tmp_path / 'fused', fused=True)}").encoder
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (96_000, 48_000, 20_000)]
    together = encoder.embed(windows)
    alone = np.concatenate([encoder.embed([w]) for w in windows])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(encoder.embed(windows), together, atol=1e-6)  # and the same every time
