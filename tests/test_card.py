"""The model card reads every audioclf.json this project has written, and writes back what it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audioclf.model.card import ModelCard, ModelKind

FIXTURES = Path(__file__).parent / "fixtures"
CARDS = sorted((FIXTURES / "cards").glob("*.json")) + sorted((FIXTURES / "models").glob("*/*/audioclf.json"))
KINDS = {
    "636383e": ModelKind.PROBE,
    "6f255cb_1": ModelKind.PROBE,
    "6f255cb": ModelKind.PROBE,
    "3da45f7": ModelKind.PROBE,
    "ml-3da45f7": ModelKind.MULTI_LABEL,
    "ft-7fd566c_1": ModelKind.FINETUNED,
    "fused-no-weight": ModelKind.FUSED,
    "probe": ModelKind.PROBE,
    "multilabel": ModelKind.MULTI_LABEL,
    "fused": ModelKind.FUSED,
    "finetuned": ModelKind.FINETUNED,
}


def _name(path: Path) -> str:
    return path.parent.name if path.name == "audioclf.json" else path.stem


@pytest.mark.parametrize("path", CARDS, ids=_name)
def test_every_card_loads_and_round_trips(path: Path) -> None:
    data = json.loads(path.read_text())
    card = ModelCard.from_dict(data)
    assert card.kind is KINDS[_name(path)]
    assert list(card.labels) == data["labels"] and card.windows.window_s == data["windows"]["window_s"]
    assert ModelCard.from_dict(card.to_dict()) == card  # what is written reads back the same


def test_old_forms_mean_what_they_meant() -> None:
    before_calibration = ModelCard.from_dict(json.loads((FIXTURES / "cards" / "636383e.json").read_text()))
    assert before_calibration.temperature == 1.0 and before_calibration.abstain is None
    even = ModelCard.from_dict(json.loads((FIXTURES / "cards" / "fused-no-weight.json").read_text()))
    assert even.fusion is not None and even.fusion.acoustic_weight == 0.5
    folded = ModelCard.from_dict(
        json.loads((FIXTURES / "models" / "0.1.0" / "finetuned" / "audioclf.json").read_text())
    )
    assert folded.calibration is not None and folded.calibration.folded is not None
    assert folded.temperature == 1.0  # folded into the weights: predict divides by nothing more
    probe = ModelCard.from_dict(json.loads((FIXTURES / "models" / "0.1.0" / "probe" / "audioclf.json").read_text()))
    assert probe.temperature == pytest.approx(0.05) and probe.abstain is not None and probe.abstain.novelty


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("labels"), "labels"),
        (lambda d: d.pop("head"), "head"),
        (lambda d: d["encoder"].update(spec="nonsense:x"), "unknown encoder"),
        (lambda d: d["features"].update(mode="smell"), "features mode 'smell'"),
        (lambda d: d["windows"].update(window_s=-1), "window -1 s"),
    ],
)
def test_a_damaged_card_is_one_line(change: object, words: str, tmp_path: Path) -> None:
    from audioclf.errors import ModelError
    from audioclf.model.folder import load_model

    data = json.loads((FIXTURES / "models" / "0.1.0" / "probe" / "audioclf.json").read_text())
    change(data)  # type: ignore[operator]
    (tmp_path / "audioclf.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="damaged or incompatible model config") as caught:
        load_model(tmp_path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
