"""An ``hf:`` folder's identity is its weights and settings, not where it lies: a model still runs after its
encoder folder is moved or copied, a model saved with the older identity (which hashed the folder's path)
still matches, and really different weights are still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import save_tiny_wav2vec2

import audioclf
from audioclf.encoders.hub import Identities
from audioclf.encoders.loader import load_encoder, same_weights
from audioclf.encoders.spec import parse_spec
from audioclf.errors import ModelError

OLD_FIXTURES = Path(__file__).parent / "fixtures" / "models" / "0.1.0"
# tiny-ctc's identity as the code before issue 28 computed it, loaded as hf:tiny-ctc (the fused fixture's)
OLD_TINY_CTC = "hf-e54505627c133654e887e7c61f80f75c"


def _move_encoder(model: Path, old: Path, new: Path) -> None:
    """Move the encoder folder and point the model at the new place (what a user edits after a move)."""
    shutil.move(old, new)
    card = json.loads((model / "audioclf.json").read_text())
    card["encoder"]["spec"] = f"hf:{new}"
    (model / "audioclf.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def trained(tone_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """A model trained on hf:<folder>; its folder and its encoder's, and the clips to predict."""
    root = tmp_path_factory.mktemp("moved")
    encoder = save_tiny_wav2vec2(root / "first" / "enc")
    options = {"layer": "last", "hidden": 0, "folds": 2, "precision": "fp32"}
    model = audioclf.train(tone_dataset, root / "m", encoder=f"hf:{encoder}", cache_dir=root / "c", **options)
    assert model.path is not None
    return model.path, encoder, sorted(str(p) for p in tone_dataset.parent.glob("*_3_*.wav"))


def test_a_model_predicts_after_its_encoder_folder_moves(trained: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    path, encoder, clips = trained
    model = tmp_path / "m"
    shutil.copytree(path, model)
    before = audioclf.load(model, cache_dir=tmp_path / "c").predict(clips)
    _move_encoder(model, encoder, tmp_path / "elsewhere" / "enc")
    after = audioclf.load(model, cache_dir=tmp_path / "c2").predict(clips)  # a new cache: embedded again
    assert [(p.label, p.probability) for p in after] == [(p.label, p.probability) for p in before]


def test_an_encoder_with_other_weights_is_still_refused(trained: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    path, _, clips = trained
    model = tmp_path / "m"
    shutil.copytree(path, model)
    other = save_tiny_wav2vec2(tmp_path / "other", seed=1)
    _move_encoder(model, other, tmp_path / "elsewhere" / "enc")
    with pytest.raises(ModelError, match="now has different weights"):
        audioclf.load(model, cache_dir=tmp_path / "c").predict(clips)


def test_a_copied_folder_has_the_same_identity(tiny_wav2vec2: Path, tiny_ctc: Path, tmp_path: Path) -> None:
    from audioclf.speech.transcribe import load_ctc

    shutil.copytree(tiny_wav2vec2, tmp_path / "w2v2")
    shutil.copytree(tiny_ctc, tmp_path / "ctc")
    copy, first = load_encoder(f"hf:{tmp_path / 'w2v2'}").encoder, load_encoder(f"hf:{tiny_wav2vec2}").encoder
    assert copy.identity == first.identity
    assert load_ctc(parse_spec(f"hf:{tmp_path / 'ctc'}")).identity == load_ctc(parse_spec(f"hf:{tiny_ctc}")).identity


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_identity_saved_by_the_older_code_still_matches(
    precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(OLD_FIXTURES / "tiny-ctc", tmp_path / "tiny-ctc")
    monkeypatch.chdir(tmp_path)  # the older form hashed the path string: the same one as at training
    encoder = load_encoder("hf:tiny-ctc", precision).encoder
    saved = OLD_TINY_CTC + ("-bf16" if precision == "bf16" else "")
    assert encoder.identity != saved and same_weights(encoder.identities, saved)  # bf16: from a reload
    assert not same_weights(encoder.identities, OLD_TINY_CTC.replace("e", "f"))


def test_the_older_form_is_computed_only_when_the_identity_does_not_match() -> None:
    asked: list[int] = []

    def legacy() -> str:
        asked.append(1)
        return "hf-old"

    ids = Identities("hf-new", legacy).tagged(suffix="-bf16")
    assert same_weights(ids, "hf-new-bf16") and "hf-new-bf16" in ids and not asked
    assert same_weights(ids, "hf-old") and "hf-old-bf16" in ids and "hf-old" not in ids and asked
