"""The Python API, for notebooks and scripts; the CLI is a shell around the same library calls.

    import audioclf
    model = audioclf.train("data.csv", out="runs/x", encoder="builtin")
    report = audioclf.evaluate(model, "test.csv")
    model = audioclf.load("runs/x")
    results = model.predict(["a.wav", "folder/", "https://…"])  # a Prediction or a Failed per input
    results = model.predict(waveform, sampling_rate=16000)

Nothing prints; progress bars are off unless ``progress=True``; errors are ``audioclf.errors`` types whose
message says what to change.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from audioclf.encoders.spec import TEXT_ENCODERS, TRANSCRIBERS, ModelSpec, Precision, parse_spec
from audioclf.errors import AudioclfError
from audioclf.evaluation import report_types
from audioclf.evaluation.segments import DEFAULT_SMOOTH, SegmentOptions
from audioclf.fitting.context import Context
from audioclf.fitting.finetune import FinetuneOptions
from audioclf.fitting.train import Options
from audioclf.fitting.train import train as train_model
from audioclf.fitting.train_probe import TrainOptions
from audioclf.fitting.zero_shot import ZeroShotOptions
from audioclf.io.cache import default_cache_dir
from audioclf.labelling.inputs import predict_all
from audioclf.labelling.prediction import Failed, Prediction, PredictOptions, chosen_confidence
from audioclf.labelling.waveforms import as_samples, check_sampling_rate, write_wav
from audioclf.model.folder import TrainedModel, load_model
from audioclf.scoring.manifest import evaluate_model
from audioclf.speech.features import FeatureMode, feature_mode
from audioclf.speech.text_features import FeatureOptions

PathLike = str | Path
Input = PathLike | np.ndarray  # a file, folder or URL, or one mono waveform


@dataclass(frozen=True)
class Report:
    """An evaluation: recording-level scores as attributes, everything else in ``to_dict()``."""

    data: report_types.Report  # as report.json
    out: Path  # the folder with report.json, report.md and confusion.png
    n_failed: int
    n_left_out: int = 0  # rows the model was trained on, not scored

    @property
    def accuracy(self) -> float:
        return float(self._recording()["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self._recording()["macro_f1"])

    def to_dict(self) -> report_types.Report:
        return self.data

    def _recording(self) -> report_types.LevelReport:
        if "task" in self.data:  # a multi-label report has no recording level
            raise KeyError("recording")
        return self.data["recording"]


class Model:
    """A trained model folder (probe or fine-tuned), ready to predict."""

    def __init__(self, trained: TrainedModel, cache_dir: PathLike | None = None) -> None:
        self.trained = trained
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    @property
    def labels(self) -> list[str]:
        return list(self.trained.labels)

    @property
    def path(self) -> Path | None:
        return self.trained.path

    @property
    def encoder(self) -> str:
        return str(self.trained.encoder_spec)

    def predict(
        self,
        inputs: Input | Sequence[Input],
        *,
        sampling_rate: int | None = None,
        top_k: int = 3,
        timeline: bool = False,
        segments: bool = False,
        smooth: str = DEFAULT_SMOOTH,
        min_duration: float = 0.0,
        segmenter: str = "auto",
        window: float | None = None,
        hop: float | None = None,
        min_confidence: float | str | None = None,
        progress: bool = False,
    ) -> list[Prediction | Failed]:
        """Files, folders (searched for audio), http(s) URLs, or mono waveforms (numpy arrays: floats in [-1, 1],
        or integer PCM such as int16, scaled by its type's range) at ``sampling_rate`` Hz; one or a list.

        One result per audio input, in input order (a folder's files in its place): a ``Prediction``, or a
        ``Failed`` (``source``, ``error``) for an input that could not be read; ``result.ok`` tells them apart.
        A waveform's ``source`` is ``waveform`` (or ``waveform[i]``, its place in the list).

        ``segments``: labelled time segments (``smooth`` over neighbouring windows, none shorter than
        ``min_duration`` seconds), from windows of ``window`` s every ``hop`` s (default: the model's, with half a
        window's hop for segments); ``segmenter``: ``events`` (where something happens, each region classified as
        a clip), ``windows`` (every frame from its windows) or ``auto`` (the model's choice). ``min_confidence``:
        a probability, or ``"auto"`` for the model's own threshold; below it the label is ``"unknown"``
        (``best_guess`` keeps the top class)."""
        options = PredictOptions(
            top_k=top_k,
            timeline=timeline,
            segments=SegmentOptions.parse(smooth, min_duration, segmenter) if segments else None,
            windows=self.trained.windows.asked(window, hop, "window={window}, hop={hop}"),
            min_confidence=chosen_confidence(min_confidence, lambda: self.trained.min_confidence),
        )
        rate = check_sampling_rate(sampling_rate) if sampling_rate is not None else None
        if isinstance(inputs, np.ndarray):
            return self._predict([("waveform", as_samples(inputs))], rate, options, progress)
        listed: list[Any] = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        return self._predict([_checked_input(k, x) for k, x in enumerate(listed)], rate, options, progress)

    def _predict(
        self, inputs: list[str | tuple[str, np.ndarray]], rate: int | None, options: PredictOptions, progress: bool
    ) -> list[Prediction | Failed]:
        """Waveforms are written as float WAVs in a temporary folder and predicted with the rest in one run; their
        results carry their names instead of the temporary paths."""
        if rate is None and any(isinstance(x, tuple) for x in inputs):
            raise AudioclfError("a waveform needs its sampling_rate (e.g. sampling_rate=16000)", option="sampling_rate")
        with tempfile.TemporaryDirectory(prefix="audioclf-") as tmp:
            names: dict[str, str] = {}
            paths = []
            for k, x in enumerate(inputs):
                if isinstance(x, tuple):
                    path = (Path(tmp) / f"{k}.wav").resolve()
                    write_wav(path, x[1], int(rate or 0))
                    names[str(path)] = x[0]
                    x = str(path)
                paths.append(x)
            done = predict_all(self.trained, paths, self.cache_dir, options, progress=progress)
        return [_renamed(r, names) for r in done.results]

    def evaluate(self, manifest: PathLike, **options: Any) -> Report:
        return evaluate(self, manifest, **options)

    def __repr__(self) -> str:
        return f"audioclf.Model({self.path}, labels={self.labels}, encoder={self.encoder!r})"


def train(
    manifest: PathLike,
    out: PathLike,
    *,
    mode: str = "probe",
    encoder: str | ModelSpec | None = None,
    features: str = "acoustic",
    cache_dir: PathLike | None = None,
    progress: bool = False,
    **options: Any,
) -> Model:
    """Train on ``manifest``'s non-test rows into the folder ``out``: a probe (``mode="probe"``; ``options`` are
    ``TrainOptions`` fields: ``folds``, ``layer``, ``hidden``, ``test_size``, …) or a full fine-tuning of an
    ``hf:`` encoder (``mode="finetune"``; ``options`` are ``FinetuneOptions`` fields: ``epochs``, ``lr``, …)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    spec = None if encoder is None else parse_spec(encoder)
    common = _Common(encoder=spec, cache_dir=cache, progress=progress)
    if "precision" in options:
        options["precision"] = Precision.parse(options["precision"])
    if "context" in options:
        try:
            options["context"] = Context(options["context"])
        except ValueError:
            raise AudioclfError(f"context={options['context']!r}: use auto, on or off", option="context") from None
    reads = _feature_mode(features)
    if mode == "finetune":
        if reads is not FeatureMode.ACOUSTIC:
            raise AudioclfError("features: fine-tuning learns from the audio; use mode='probe' for transcripts")
        _check_known(FinetuneOptions, options)
        chosen: Options = FinetuneOptions(**options, **common)
    elif mode == "probe":
        _check_known(TrainOptions, options)
        chosen = TrainOptions(**options, **common, features=FeatureOptions(mode=reads))
    else:
        raise AudioclfError(f"mode={mode!r}: use 'probe' or 'finetune'")
    summary = train_model(Path(manifest), Path(out), chosen)
    return Model(load_model(summary.out), cache)


def zero_shot(
    prompts: PathLike,
    out: PathLike,
    *,
    encoder: str | ModelSpec | None = None,
    features: str | None = None,
    manifest: PathLike | None = None,
    transcriber: str | None = None,
    text_encoder: str = "minilm",
    cache_dir: PathLike | None = None,
    force: bool = False,
    progress: bool = False,
) -> Model:
    """A model from label names alone: ``prompts`` is a ``label,prompt`` CSV. With a CLAP ``encoder`` the sound
    is compared with the prompts; otherwise (or ``features="transcript"``) each recording's transcript (from
    ``encoder``, or ``transcriber``) is, through the sentence encoder ``text_encoder``. ``manifest``'s labelled
    rows, if given, fit its temperature. The folder is a model like any other."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    heard = None if transcriber is None else parse_spec(transcriber, TRANSCRIBERS, "transcriber")
    words = FeatureOptions(FeatureMode.TRANSCRIPT, heard, parse_spec(text_encoder, TEXT_ENCODERS, "text encoder"))
    reads = None if features is None else _feature_mode(features)
    spec = None if encoder is None else parse_spec(encoder)
    options = ZeroShotOptions(
        Path(prompts), spec, cache_dir=cache, reads=reads, features=words, force=force, progress=progress
    )
    summary = train_model(None if manifest is None else Path(manifest), Path(out), options)
    return Model(load_model(summary.out), cache)


def _feature_mode(features: str) -> FeatureMode:
    try:
        return feature_mode(features)
    except ValueError as exc:
        raise AudioclfError(str(exc), option="features") from None


class _Common(TypedDict):
    """The options ``train`` takes by name for either mode."""

    encoder: ModelSpec | None
    cache_dir: Path
    progress: bool


def _check_known(kind: type, options: Mapping[str, object]) -> None:
    """One line naming the ``options`` that are not fields of ``kind``."""
    known = {f.name for f in fields(kind)} - {"encoder", "cache_dir", "progress", "features"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AudioclfError(f"train() got unknown options {unknown}; accepted: {sorted(known)}")


def load(path: PathLike, *, cache_dir: PathLike | None = None) -> Model:
    """A model folder written by ``train`` (probe) or ``train --mode finetune``."""
    return Model(load_model(Path(path)), cache_dir)


def evaluate(
    model: Model | PathLike,
    manifest: PathLike,
    *,
    split: str = "auto",
    out: PathLike | None = None,
    include_training: bool = False,
    progress: bool = False,
) -> Report:
    """Score ``model`` on ``manifest`` (its test rows if it has any, else all), leaving out rows the model was
    trained on (same group, file or audio) unless ``include_training``; ``Report.n_left_out`` says how many. The
    report files go to ``out`` (default: the model folder's ``evaluation/``)."""
    model = model if isinstance(model, Model) else load(model)
    done = evaluate_model(
        model.trained,
        Path(manifest),
        model.cache_dir,
        split=split,
        out=Path(out) if out is not None else None,
        include_training=include_training,
        progress=progress,
    )
    left_out = 0 if done.seen.counted else done.seen.n
    return Report(done.report, done.out, len(done.embed.failures), left_out)


def _checked_input(k: int, x: Any) -> str | tuple[str, np.ndarray]:
    """A path or URL as text, or a waveform with its name (checked and scaled to float32 here)."""
    if isinstance(x, np.ndarray):
        return (f"waveform[{k}]", as_samples(x, f"waveform[{k}]"))
    if isinstance(x, str | Path):
        return str(x)
    raise AudioclfError(
        f"input {k} is a {type(x).__name__}; pass paths, URLs or numpy arrays (one waveform: np.asarray(samples))"
    )


def _renamed(result: Prediction | Failed, names: dict[str, str]) -> Prediction | Failed:
    name = names.get(result.source)
    if name is None:
        return result
    if isinstance(result, Failed):
        return Failed(name, result.error.replace(result.source, name))
    return replace(result, source=name)
