"""Full fine-tuning (``train --mode finetune``): AutoModelForAudioClassification with a fresh head, trained with
Accelerate (one CPU, one GPU or DDP over many), checkpointed every epoch, exported as a transformers model."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from audioclf.encoders.hf_families import family_of, model_failure
from audioclf.encoders.hub import load_hf, pretrained
from audioclf.encoders.loader import fit_windows, use_bf16
from audioclf.encoders.spec import ModelSpec, Precision
from audioclf.evaluation.pooling import recording_max, recording_mean
from audioclf.fitting.defaults import ACCUM, BATCH_SIZE, FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_PATIENCE, VAL_FRACTION
from audioclf.fitting.probe import EpochStats
from audioclf.io.audio import SAMPLE_RATE_HZ, WindowOptions, window_stream
from audioclf.io.cache import default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
SPEEDS = (0.9, 1.0, 1.1)  # speed perturbation factors (Ko et al., 2015)


@dataclass(frozen=True)
class FinetuneOptions:
    """Everything a fine-tuning run needs beside the manifest and the output folder (as ``TrainOptions`` is for
    a probe): the encoder, windows and cache, then the optimisation."""

    encoder: ModelSpec | None = None  # None: the default pretrained model
    windows: WindowOptions = field(default_factory=WindowOptions.encoder_native)
    cache_dir: Path = field(default_factory=default_cache_dir)
    fetch: FetchOptions | None = None  # downloads of URL rows
    force: bool = False
    epochs: int = FINETUNE_EPOCHS
    batch_size: int = BATCH_SIZE
    accum: int = ACCUM  # gradient accumulation steps
    lr: float = FINETUNE_LR
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    freeze_feature_encoder: bool = True
    freeze_layers: int = 0  # also freeze the first N transformer layers
    precision: Precision = Precision.AUTO  # auto (bf16 where the CPU/GPU supports it) | bf16 | fp32
    gradient_checkpointing: bool = False
    augment: bool = False
    patience: int = FINETUNE_PATIENCE
    balanced: bool = False
    val_fraction: float = VAL_FRACTION
    seed: int = 0
    resume: bool = False
    stop_after: int | None = None  # end this run after that epoch (resume later)
    progress: bool = True


@dataclass(frozen=True)
class Recording:
    item: Item
    audio: np.ndarray  # float32 16 kHz, memory-mapped
    label: int
    targets: np.ndarray | None = None  # multi-label: 0/1 per label (``label`` is then unused)


@dataclass
class FinetuneState:
    epoch: int = 0
    best_epoch: int = 0
    best_f1: float = -1.0
    best_loss: float = math.inf
    history: list[EpochStats] = field(default_factory=list)


def load_classifier(spec: ModelSpec, labels: Sequence[str], options: FinetuneOptions, **config: Any) -> tuple[Any, Any]:
    """Feature extractor + AutoModelForAudioClassification with a fresh head for ``labels`` (no remote code);
    ``config`` overrides model config fields."""

    def load(source: str, local_only: bool) -> tuple[Any, Any]:
        from transformers import AutoModelForAudioClassification

        return pretrained(
            AutoModelForAudioClassification,
            source,
            local_only,
            spec,
            "audio-classification model",
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
            **config,
        )

    extractor, model = load_hf(spec, load)
    if options.freeze_feature_encoder:
        freeze_front_end(model)
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layers", None) or getattr(encoder, "layer", [])  # AST names it "layer"
    for layer in list(layers)[: options.freeze_layers]:
        layer.requires_grad_(False)
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return extractor, model


def freeze_front_end(model: Any) -> None:
    """Freeze the convolutional front end that turns audio into frames (wav2vec2-style models, Whisper)."""
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    elif model.config.model_type == "whisper":
        for conv in (model.encoder.conv1, model.encoder.conv2):
            conv.requires_grad_(False)


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speed perturbation, random gain (±6 dB) and white noise at 10-40 dB SNR; training only."""
    import soxr

    speed = float(rng.choice(SPEEDS))
    if speed != 1.0:
        x = soxr.resample(x, SAMPLE_RATE_HZ * speed, SAMPLE_RATE_HZ).astype(np.float32)
    x = x * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    power = float(np.mean(x**2)) + 1e-10
    noise = rng.standard_normal(len(x)).astype(np.float32) * np.float32(
        math.sqrt(power / 10 ** (rng.uniform(10, 40) / 10))
    )
    return (x + noise).astype(np.float32)


def _crop(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of a long recording (a different one every epoch), or the whole of a short one."""
    if len(audio) <= length:
        return np.array(audio, dtype=np.float32)
    start = int(rng.integers(0, len(audio) - length + 1))
    return np.array(audio[start : start + length], dtype=np.float32)


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within pools of 50 batches) to cut padding."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class Finetuner:
    """One fine-tuning run; every rank builds the same batches and takes its share of them."""

    def __init__(
        self,
        spec: ModelSpec,
        labels: list[str],
        windows: WindowOptions,
        options: FinetuneOptions,
        n_train: int,
        *,
        multi_label: bool = False,
    ) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs
        from transformers import get_scheduler

        self.options, self.labels = options, labels
        from accelerate.state import AcceleratorState

        bf16 = use_bf16(options.precision)
        # Accelerate keeps one global state per process; a second run in the same process (a library user, the
        # tests) may want another precision, so the mixed-precision part is reset (the process group is kept).
        AcceleratorState._reset_state()
        self.acc = Accelerator(
            mixed_precision="bf16" if bf16 else "no",
            gradient_accumulation_steps=options.accum,
            cpu=not torch.cuda.is_available(),
            # LayerDrop and SpecAugment leave some parameters without gradient in some steps (as HF Trainer).
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        from accelerate.utils import set_seed

        set_seed(options.seed)  # the fresh head's initialisation
        self.multi_label = multi_label  # sigmoid outputs and binary cross-entropy (the model may be DDP-wrapped)
        problem = {"problem_type": "multi_label_classification"} if multi_label else {}
        self.extractor, model = load_classifier(spec, labels, options, **problem)
        self.spec, self.family = spec, family_of(model, self.extractor)
        self.native_window_s = self.max_window_s = self.family.fixed_input_s
        self.windows = fit_windows(windows, self)
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=options.lr,
        )
        world = self.acc.num_processes
        steps = math.ceil(math.ceil(math.ceil(n_train / options.batch_size) / world) / options.accum) * options.epochs
        self.scheduler = get_scheduler(
            "linear", optimizer, num_warmup_steps=int(options.warmup_ratio * steps), num_training_steps=steps
        )
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.pads = bool(getattr(self.extractor, "return_attention_mask", False))
        self.weight: torch.Tensor | None = None
        self.last_validation: tuple[np.ndarray, np.ndarray] | None = None

    def _inputs(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs, computed in float32 outside autocast (Whisper's extractor runs its STFT in torch)."""
        try:
            batch = self.family.inputs(waves, mask=self.pads)
        except Exception as exc:  # an extractor that does not fit the model: one line, not a traceback
            raise model_failure(self.family, self.spec, exc) from exc
        return {k: v.to(self.acc.device) for k, v in batch.items()}

    def _logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        try:
            return self.model(**inputs).logits
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise model_failure(self.family, self.spec, exc) from exc

    def train_epoch(self, train: list[Recording], epoch: int) -> tuple[float, float]:
        opts = self.options
        from accelerate.utils import set_seed

        # Dropout, LayerDrop and SpecAugment masks (numpy) draw from global RNGs: seeding them per epoch makes a
        # resumed run identical to an uninterrupted one without storing RNG states.
        set_seed(opts.seed * 1000 + epoch)
        rng = np.random.default_rng([opts.seed, epoch])
        length = round(self.windows.window_s * SAMPLE_RATE_HZ)
        waves = [_crop(r.audio, length, rng) for r in train]
        if opts.augment:
            waves = [_augment(w, rng) for w in waves]
        batches = length_batches([len(w) for w in waves], opts.batch_size, rng)
        world, rank = self.acc.num_processes, self.acc.process_index
        batches += batches[: (-len(batches)) % world]  # every rank gets the same number of batches
        self.model.train()
        total = torch.zeros(3, device=self.acc.device)  # loss sum, correct, count
        for batch in tqdm(batches[rank::world], desc=f"epoch {epoch}", disable=not opts.progress, leave=False):
            y = self._targets([train[i] for i in batch]).to(self.acc.device)
            inputs = self._inputs([waves[i] for i in batch])
            with self.acc.accumulate(self.model), self.acc.autocast():
                logits = self._logits(inputs).float()
                loss = self._loss(logits, y)
                self.acc.backward(loss)
                if self.acc.sync_gradients:
                    self.acc.clip_grad_norm_(self.model.parameters(), opts.max_grad_norm)
                self.optimizer.step()
                if self.acc.sync_gradients:
                    self.scheduler.step()
                self.optimizer.zero_grad()
            right = ((logits > 0) == (y > 0.5)).all(1) if self.multi_label else logits.argmax(1) == y
            total += torch.tensor([loss.item() * len(batch), right.sum().item(), len(batch)], device=self.acc.device)
        total = self.acc.reduce(total, reduction="sum")
        return float(total[0] / total[2]), float(total[1] / total[2])

    @torch.inference_mode()
    def logits(self, recordings: list[Recording]) -> tuple[torch.Tensor, np.ndarray]:
        """Window logits of every recording (evaluation windows, no augmentation) and their recording ids."""
        self.model.eval()
        outs, rec = [], []
        for i, r in enumerate(recordings):
            waves = [w.samples for w in window_stream([np.asarray(r.audio)], self.windows)]
            for start in range(0, len(waves), self.options.batch_size):
                inputs = self._inputs(waves[start : start + self.options.batch_size])
                with self.acc.autocast():
                    outs.append(self._logits(inputs))
            rec += [i] * len(waves)
        return torch.cat(outs).float().cpu(), np.asarray(rec)

    def _targets(self, recordings: list[Recording]) -> torch.Tensor:
        if self.multi_label:
            return torch.from_numpy(np.stack([np.asarray(r.targets, dtype=np.float32) for r in recordings]))
        return torch.tensor([r.label for r in recordings])

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over labels; binary cross-entropy per label for a multi-label model."""
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.cross_entropy(logits, y, weight=self.weight)

    def validate(self, val: list[Recording]) -> tuple[float, float, float]:
        """Validation loss, accuracy and macro-F1 (multi-label: exact-match accuracy and micro-F1 at 0.5, of
        recordings whose label is the max over their windows)."""
        logits, rec = self.logits(val)
        loss = float(self._loss(logits, self._targets([val[i] for i in rec])))
        if self.multi_label:
            truth_sets = self._targets(val).numpy()
            rec_max = recording_max(logits.double().numpy(), rec, len(val))
            self.last_validation = (rec_max, truth_sets)
            hits = (rec_max > 0) == (truth_sets > 0.5)
            return loss, float(hits.all(1).mean()), float(f1_score(truth_sets, rec_max > 0, average="micro"))
        truth = np.array([r.label for r in val])
        rec_logits = recording_mean(logits.numpy(), rec)
        self.last_validation = (rec_logits, truth)  # recording logits and labels, for the calibration
        pred = rec_logits.argmax(1)
        return loss, float((pred == truth).mean()), float(f1_score(truth, pred, average="macro", zero_division=0))
