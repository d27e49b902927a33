"""A probe on one layer runs the encoder only that deep: for every family the shallower model's states equal the
whole model's, and predict gives the same answers through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tone
from tiny_models import FAMILIES, save_tiny

from audioclf.encoders.hf_encoder import HFEncoder
from audioclf.encoders.loader import load_encoder


@pytest.mark.parametrize("family", FAMILIES)
def test_the_first_layers_alone_give_the_same_states(family: str, tmp_path: Path) -> None:
    encoder = load_encoder(f"hf:{save_tiny(family, tmp_path / family, layers=3)}", precision="fp32").encoder
    assert isinstance(encoder, HFEncoder) and encoder.n_layers == 4
    waves = [tone(300, 2.0), tone(700, 1.3)]
    full = encoder.embed(waves)
    early = encoder.up_to(1)  # states 0 and 1: only the first of the three transformer layers runs
    assert early is not encoder and early.identity.endswith("-upto1") and early.identity != encoder.identity
    part = early.embed(waves)
    np.testing.assert_allclose(part[:, :2], full[:, :2], rtol=1e-5, atol=1e-5)
    assert not part[:, 2:].any()  # not computed
    assert not np.allclose(full[:, 2], full[:, 1], atol=1e-4)  # the layers differ: the check above means something
    np.testing.assert_array_equal(encoder.embed(waves), full)  # the loaded model is unchanged
    assert encoder.up_to(3) is encoder  # the last layer needs the whole model


@pytest.mark.parametrize("stable", [False, True])  # base-style (post-norm) and large-style (final norm)
def test_wav2vec2_both_norm_placements(stable: bool, tmp_path: Path) -> None:
    import transformers as tf
    from tiny_models import CONV, POS, SMALL

    config = tf.Wav2Vec2Config(
        **{**SMALL, "num_hidden_layers": 4},
        **CONV,
        **POS,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
    )
    tf.Wav2Vec2Model(config).save_pretrained(tmp_path)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, return_attention_mask=stable).save_pretrained(tmp_path)
    encoder = load_encoder(f"hf:{tmp_path}", precision="fp32").encoder
    assert isinstance(encoder, HFEncoder)
    waves = [tone(300, 2.0)]
    early = encoder.up_to(2)  # states 0..2: two of the four layers run
    assert early is not encoder
    full, part = encoder.embed(waves), early.embed(waves)
    np.testing.assert_allclose(part[:, :3], full[:, :3], rtol=1e-5, atol=1e-5)


def test_predict_with_a_probe_on_one_layer_stops_there_and_answers_the_same(
    tone_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audioclf
    from audioclf.labelling import apply

    checkpoint = save_tiny("hubert", tmp_path / "hubert", layers=3)
    model = audioclf.train(
        tone_dataset, tmp_path / "m", encoder=f"hf:{checkpoint}", cache_dir=tmp_path / "c", layer="1"
    )
    assert model.trained.head is not None and model.trained.head.config.layer == "1"
    clips = sorted(tone_dataset.parent.glob("*_3_*.wav"))[:4]
    early = audioclf.load(model.path, cache_dir=tmp_path / "early").predict(clips)
    cached = [np.load(f)["embeddings"] for f in (tmp_path / "early" / "embeddings").rglob("*.npz")]
    assert cached and all(e[:, :2].any() and not e[:, 2:].any() for e in cached)  # layers 2-3 were never run
    monkeypatch.setattr(apply, "as_deep_as_the_probe", lambda model, encoder: encoder)
    full = audioclf.load(model.path, cache_dir=tmp_path / "full").predict(clips)
    assert [p.label for p in early] == [p.label for p in full]
    np.testing.assert_allclose([p.probability for p in early], [p.probability for p in full], rtol=1e-4, atol=1e-5)
