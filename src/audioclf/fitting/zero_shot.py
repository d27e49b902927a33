"""A model from label names alone: each class is described in words (``io.prompts``), and a recording is the
class whose description is nearest. Two ways of comparing, chosen once (``_describer``):

- **what is said** (transcript features): each recording's transcript and the prompts are embedded by the
  sentence encoder; logits are ``SCALE`` (20, the scale all-MiniLM-L6-v2 was trained with, its
  multiple-negatives ranking loss) times the cosine;
- **the sound** (a CLAP encoder, ``encoders.clap``): each window's audio embedding against the prompts through
  CLAP's text tower (an empty prompt is ``This is a sound of {label}.``), at CLAP's own logit scale.

The head is an ordinary linear probe whose weights come from words instead of labelled recordings: each class
vector is the normalised mean of its prompts' unit embeddings (prompt ensembling, as CLIP's zero-shot
classifiers do). The folder it writes is a model like any other: ``predict``, ``evaluate``, ``serve``,
segments, ``suggest`` and the review queue take it unchanged. With labelled rows the temperature is fitted on
them (the lowest negative log-likelihood, as every probe's calibration), and those rows are recorded as the
model's training rows, so ``evaluate`` refuses to score it on them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from audioclf.encoders.clap import TEMPLATE, ClapEncoder
from audioclf.encoders.loader import Encoder, fit_windows, load_encoder
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
from audioclf.speech.features import FeatureMode, Features
from audioclf.speech.text import SentenceEncoder
from audioclf.speech.text_features import FeatureOptions, TextView, write_transcripts
from audioclf.speech.transcribe import TranscriptCache

log = logging.getLogger(__name__)

SCALE = 20.0  # logits = SCALE x cosine(transcript, class description)


@dataclass(frozen=True)
class ZeroShotOptions:
    prompts: Path  # label,prompt CSV
    encoder: ModelSpec | None = None  # what transcribes (whisper:, or an hf: CTC model); None: the default
    windows: WindowOptions = field(default_factory=WindowOptions.encoder_native)
    cache_dir: Path = field(default_factory=default_cache_dir)
    reads: FeatureMode | None = None  # None: the sound for a CLAP encoder, else what is said
    features: FeatureOptions = field(default_factory=lambda: FeatureOptions(FeatureMode.TRANSCRIPT))  # its models
    precision: Precision = Precision.AUTO
    fetch: FetchOptions | None = None
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ZeroShotRun:
    """What a zero-shot model's making reports: its prompts, and the calibration on labelled rows if any."""

    out: Path
    kind: ModelKind  # what its folder holds: a transcript model, or a probe on CLAP's audio embeddings
    labels: list[str]
    encoder_spec: ModelSpec
    fallback_reason: str | None
    prompts: tuple[tuple[str, ...], ...]  # per label, as the model reads them
    calibration: Calibration
    embed: EmbedResult | None  # the labelled rows' embedding, when some were given
    accuracy: float | None  # on those rows, before and after calibration alike (a temperature keeps the argmax)
    seconds: float


class Describer(Protocol):
    """What reads the words and what the recordings are compared with them by: chosen once (``_describer``)."""

    @property
    def kind(self) -> ModelKind: ...  # of the model folder it makes

    @property
    def scale(self) -> float: ...  # logits = scale x cosine

    @property
    def template(self) -> str: ...  # an empty prompt: this, with the label

    @property
    def same_pass_cache(self) -> TranscriptCache | None: ...  # where the embedding pass leaves transcripts

    def embed_text(self, texts: list[str]) -> np.ndarray: ...  # unit rows

    def features(self) -> Features: ...

    def pairs(self, embedded: list[tuple[Item, Embedded]], out: Path) -> list[tuple[Item, Embedded]]: ...


@dataclass(frozen=True)
class TranscriptDescriber:
    """Transcripts against the prompts, both through the sentence encoder (all-MiniLM-L6-v2's scale, 20)."""

    view: TextView
    kind = ModelKind.TRANSCRIPT
    scale = SCALE
    template = "{}"

    @property
    def same_pass_cache(self) -> TranscriptCache | None:
        return self.view.same_pass_cache

    def embed_text(self, texts: list[str]) -> np.ndarray:
        assert isinstance(self.view.text, SentenceEncoder), "tfidf is refused before anything loads"
        return self.view.text.embed(texts)

    def features(self) -> Features:
        return self.view.card()

    def pairs(self, embedded: list[tuple[Item, Embedded]], out: Path) -> list[tuple[Item, Embedded]]:
        pairs, said = self.view.apply(embedded)
        write_transcripts([item for item, _ in pairs], said, out / "transcripts.csv")
        return pairs


@dataclass(frozen=True)
class ClapDescriber:
    """The sound itself against the prompts through CLAP's two towers (its own logit scale)."""

    encoder: ClapEncoder
    kind = ModelKind.PROBE
    template = TEMPLATE
    same_pass_cache = None

    @property
    def scale(self) -> float:
        return self.encoder.logit_scale

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed_text(texts)

    def features(self) -> Features:
        return Features()

    def pairs(self, embedded: list[tuple[Item, Embedded]], out: Path) -> list[tuple[Item, Embedded]]:
        return embedded


def prompt_head(describer: Describer, texts: tuple[tuple[str, ...], ...]) -> HeadArrays:
    """A linear head over unit embeddings: ``scale`` x cosine with each label's description."""
    vectors = np.stack([describer.embed_text(list(said)).mean(axis=0) for said in texts]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    dim = vectors.shape[1]
    return HeadArrays(
        ProbeConfig(hidden=0, layer="last", fitter=PROMPTS, lr=0.0, weight_decay=0.0, dropout=0.0),
        np.zeros((1, dim), np.float32),
        np.ones((1, dim), np.float32),
        np.zeros(1, np.float32),
        ((np.asarray(describer.scale * vectors, np.float32), np.zeros(len(vectors), np.float32)),),
    )


def train_zero_shot(manifest: Path | None, out: Path, options: ZeroShotOptions) -> ZeroShotRun:
    """The zero-shot model of ``options.prompts`` into ``out``; ``manifest``'s labelled rows (optional) fit
    its temperature."""
    started = time.perf_counter()
    prompts = read_prompts(options.prompts)
    if options.reads is not FeatureMode.ACOUSTIC and options.features.text_encoder.kind == TFIDF:
        raise TrainingError(
            "text encoder tfidf: a zero-shot model needs a sentence encoder (minilm or hf:<folder>); tfidf learns "
            "its words from labelled transcripts",
            option="text_encoder",
        )
    if options.reads is FeatureMode.FUSED:
        raise TrainingError("a zero-shot model reads transcripts or the sound, not both", option="features")
    rows = _calibration_rows(manifest, prompts) if manifest is not None else []
    prepare_out_dir(out, force=options.force)
    loaded = load_encoder(options.encoder, options.precision)
    encoder = loaded.encoder
    windows = fit_windows(options.windows, encoder)
    describer = _describer(options, encoder, windows)
    texts = prompts.resolved(describer.template)
    head = prompt_head(describer, texts)
    labels = list(prompts.labels)
    cal, embedded, accuracy, used = Calibration(1.0, "none (zero-shot: the encoder's own scale)"), None, None, []
    if rows:
        cache = EmbeddingCache(options.cache_dir, encoder.identity, windows)
        fetch, progress, same_pass = options.fetch, options.progress, describer.same_pass_cache
        embedded = embed_items(rows, encoder, cache, windows, fetch=fetch, progress=progress, transcripts=same_pass)
        if embedded.failures:
            write_failures(embedded.failures, out / "failures.csv")
        pairs = describer.pairs(embedded.embedded, out)
        used = [item for item, _ in pairs]
        cal, accuracy = _calibrated(head, pairs, labels, manifest)
    failed = 0 if embedded is None else len(embedded.failures)
    details = {"zero_shot": dict(zip(labels, map(list, texts), strict=True)), "scale": describer.scale}
    card = ModelCard(
        kind=describer.kind,
        labels=tuple(labels),
        encoder=EncoderRef(encoder.spec, encoder.identity),
        windows=windows,
        training=Training(str(options.prompts), len(used), failed, details),
        head=HeadShape(1, head.dim, head.config),
        metrics={} if accuracy is None else {"calibration_accuracy": accuracy},
        features=describer.features(),
        calibration=cal,
    )
    TrainingSet.of(used).save(out)
    save_model(out, TrainedModel(card, head))
    seconds = time.perf_counter() - started
    return ZeroShotRun(
        out, describer.kind, labels, encoder.spec, loaded.fallback_reason, texts, cal, embedded, accuracy, seconds
    )


def _describer(options: ZeroShotOptions, encoder: Encoder, windows: WindowOptions) -> Describer:
    """What the model compares with the prompts: what is said, or (a CLAP encoder's default) the sound."""
    clap = isinstance(encoder, ClapEncoder)
    reads = options.reads or (FeatureMode.ACOUSTIC if clap else FeatureMode.TRANSCRIPT)
    if reads is FeatureMode.TRANSCRIPT:
        features = replace(options.features, mode=FeatureMode.TRANSCRIPT)
        return TranscriptDescriber(TextView(features, encoder, options.cache_dir, windows))
    if isinstance(encoder, ClapEncoder) and encoder.reads_text:
        return ClapDescriber(encoder)
    raise TrainingError(
        f"{encoder.spec} cannot read words: a zero-shot model of the sound needs a CLAP encoder (hf:<a ClapModel "
        "folder with its tokenizer>); or compare transcripts with the prompts (transcript features)",
        option="features",
    )


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
