"""A model from label names alone: each class is described in words (``io.prompts``), each recording's
transcript is embedded with the sentence encoder, and the class is the nearest description.

The head is an ordinary transcript probe whose weights come from words instead of labelled recordings: the
class vector is the normalised mean of its prompts' unit sentence embeddings (prompt ensembling, as CLIP's
zero-shot classifiers do), so the logits are ``SCALE`` times the cosine between the transcript and each class.
The folder it writes is a transcript model like any other: ``predict``, ``evaluate``, ``serve``, segments,
``suggest`` and the review queue take it unchanged.

``SCALE`` is the logit scale the default sentence encoder (all-MiniLM-L6-v2) was trained with (20, its
multiple-negatives ranking loss); with labelled rows the temperature over it is fitted on them (the lowest
negative log-likelihood, as every probe's calibration), and those rows are recorded as the model's training
rows, so ``evaluate`` refuses to score it on them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioclf.encoders.loader import fit_windows, load_encoder
from audioclf.encoders.spec import TFIDF, ModelSpec, Precision
from audioclf.errors import TrainingError
from audioclf.extraction.embed import EmbedResult, embed_items, write_failures
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import Embedded, EmbeddingCache, default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.label_sets import is_multi_label
from audioclf.io.manifest import Item
from audioclf.io.prompts import LabelPrompts, read_prompts
from audioclf.model.card import Calibration, EncoderRef, HeadShape, ModelCard, ModelKind, Training
from audioclf.model.folder import TrainedModel, prepare_out_dir, save_model
from audioclf.model.probe import HeadArrays
from audioclf.model.probe_config import PROMPTS, ProbeConfig
from audioclf.model.training_set import TrainingSet, training_rows
from audioclf.speech.features import FeatureMode
from audioclf.speech.text import SentenceEncoder
from audioclf.speech.text_features import FeatureOptions, TextView, write_transcripts

log = logging.getLogger(__name__)

SCALE = 20.0  # logits = SCALE x cosine(transcript, class description)


@dataclass(frozen=True)
class ZeroShotOptions:
    prompts: Path  # label,prompt CSV
    encoder: ModelSpec | None = None  # what transcribes (whisper:, or an hf: CTC model); None: the default
    windows: WindowOptions = field(default_factory=WindowOptions.encoder_native)
    cache_dir: Path = field(default_factory=default_cache_dir)
    features: FeatureOptions = field(default_factory=lambda: FeatureOptions(FeatureMode.TRANSCRIPT))
    precision: Precision = Precision.AUTO
    fetch: FetchOptions | None = None
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ZeroShotRun:
    """What a zero-shot model's making reports: its prompts, and the calibration on labelled rows if any."""

    out: Path
    labels: list[str]
    encoder_spec: ModelSpec
    fallback_reason: str | None
    prompts: LabelPrompts
    calibration: Calibration
    embed: EmbedResult | None  # the labelled rows' embedding, when some were given
    accuracy: float | None  # on those rows, before and after calibration alike (a temperature keeps the argmax)
    seconds: float


def prompt_head(text: SentenceEncoder, prompts: LabelPrompts) -> HeadArrays:
    """A linear head over unit sentence embeddings: ``SCALE`` x cosine with each label's description."""
    vectors = np.stack([text.embed(list(said)).mean(axis=0) for said in prompts.prompts]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    dim = vectors.shape[1]
    return HeadArrays(
        ProbeConfig(hidden=0, layer="last", fitter=PROMPTS, lr=0.0, weight_decay=0.0, dropout=0.0),
        np.zeros((1, dim), np.float32),
        np.ones((1, dim), np.float32),
        np.zeros(1, np.float32),
        ((np.asarray(SCALE * vectors, np.float32), np.zeros(len(vectors), np.float32)),),
    )


def train_zero_shot(manifest: Path | None, out: Path, options: ZeroShotOptions) -> ZeroShotRun:
    """The zero-shot model of ``options.prompts`` into ``out``; ``manifest``'s labelled rows (optional) fit
    its temperature."""
    started = time.perf_counter()
    prompts = read_prompts(options.prompts)
    if options.features.mode is not FeatureMode.TRANSCRIPT:
        raise TrainingError(
            "a zero-shot model compares what is said with the prompts: use transcript features (zero-shot on the "
            "sound itself needs a CLAP encoder, not supported yet)",
            option="features",
        )
    if options.features.text_encoder.kind == TFIDF:
        raise TrainingError(
            "text encoder tfidf: a zero-shot model needs a sentence encoder (minilm or hf:<folder>); tfidf learns "
            "its words from labelled transcripts",
            option="text_encoder",
        )
    rows = _calibration_rows(manifest, prompts) if manifest is not None else []
    prepare_out_dir(out, force=options.force)
    loaded = load_encoder(options.encoder, options.precision)
    encoder = loaded.encoder
    windows = fit_windows(options.windows, encoder)
    view = TextView(options.features, encoder, options.cache_dir, windows)
    assert isinstance(view.text, SentenceEncoder), "tfidf is refused before anything loads"
    head = prompt_head(view.text, prompts)
    labels = list(prompts.labels)
    cal, embedded, accuracy, used = Calibration(1.0, "none (zero-shot: the sentence encoder's scale)"), None, None, []
    if rows:
        cache = EmbeddingCache(options.cache_dir, encoder.identity, windows)
        same_pass = view.same_pass_cache
        fetch, progress = options.fetch, options.progress
        embedded = embed_items(rows, encoder, cache, windows, fetch=fetch, progress=progress, transcripts=same_pass)
        if embedded.failures:
            write_failures(embedded.failures, out / "failures.csv")
        pairs, said = view.apply(embedded.embedded)
        used = [item for item, _ in pairs]
        write_transcripts(used, said, out / "transcripts.csv")
        cal, accuracy = _calibrated(head, pairs, labels, manifest)
    failed = 0 if embedded is None else len(embedded.failures)
    card = ModelCard(
        kind=ModelKind.TRANSCRIPT,
        labels=tuple(labels),
        encoder=EncoderRef(encoder.spec, encoder.identity),
        windows=windows,
        training=Training(str(options.prompts), len(used), failed, {"zero_shot": prompts.as_dict(), "scale": SCALE}),
        head=HeadShape(1, head.dim, head.config),
        metrics={} if accuracy is None else {"calibration_accuracy": accuracy},
        features=view.card(),
        calibration=cal,
    )
    TrainingSet.of(used).save(out)
    save_model(out, TrainedModel(card, head))
    seconds = time.perf_counter() - started
    return ZeroShotRun(out, labels, encoder.spec, loaded.fallback_reason, prompts, cal, embedded, accuracy, seconds)


def _calibration_rows(manifest: Path, prompts: LabelPrompts) -> list[Item]:
    """``manifest``'s training rows, each labelled with a label the prompts describe."""
    rows = training_rows(manifest)
    if is_multi_label(item.label for item in rows):
        raise TrainingError(f"{manifest}: a zero-shot model is single-label; give rows with one label each")
    for item in rows:
        if item.label not in prompts.labels:
            raise TrainingError(
                f"{item.where}: label {item.label!r} has no prompt; add prompts for it or leave the row out"
            )
    return rows


def _calibrated(
    head: HeadArrays, pairs: list[tuple[Item, Embedded]], labels: list[str], manifest: Path | None
) -> tuple[Calibration, float]:
    """The temperature with the lowest negative log-likelihood on the labelled rows, and their accuracy."""
    from audioclf.fitting.fusion import temperature  # torch: only when there is something to calibrate

    logits = np.stack([head.logits(e.embeddings).mean(axis=0) for _, e in pairs])
    y = np.array([labels.index(str(item.label)) for item, _ in pairs])
    chosen = temperature(logits, y)
    log.info("zero-shot temperature %.3g from %d labelled recordings", chosen, len(y))
    return Calibration(chosen, f"{len(y)} labelled recordings of {manifest}"), float((logits.argmax(1) == y).mean())
