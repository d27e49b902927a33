"""Any transformers audio encoder behind the ``embed(windows)`` interface: ``HFEncoder`` (mask-aware mean
pooling of every hidden layer, batches that leave each clip's output as if it were alone, bf16 where the
hardware has it, an early stop for a probe on one layer) and ``LogitsEncoder`` (a fine-tuned classifier's
logits)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioclf.encoders.hub import fingerprints, pretrained
from audioclf.encoders.spec import FINETUNED, ModelSpec
from audioclf.errors import EncoderError
from audioclf.io.audio import SAMPLE_RATE_HZ

if TYPE_CHECKING:  # torch is imported when a model loads, not with this module
    from torch import Tensor

log = logging.getLogger(__name__)

BF16_SUFFIX = "-bf16"  # encoder identities of bf16 embeddings (they differ slightly from fp32 ones)
MAX_BATCH_SAMPLES = 4 * 10 * SAMPLE_RATE_HZ  # 40 s of audio per forward pass: bounds activation memory
# fp32 on a CPU: 4 x 10 s per pass ran 15 % slower than one 10 s window at a time (wav2vec2-base: its 262 MB
# first feature map), while bf16 ran 18 % faster batched; short clips still share a pass either way
FP32_CPU_BATCH_SAMPLES = 10 * SAMPLE_RATE_HZ
MAX_BATCH_ITEMS = 32
Reload = Callable[[], tuple[Any, Any]] | None  # the model and its extractor, loaded again


class HFEncoder:
    """Any transformers audio encoder loaded with AutoFeatureExtractor + AutoModel; mask-aware mean pooling."""

    def __init__(
        self,
        spec: ModelSpec,
        extractor: Any,
        model: Any,
        *,
        bf16: bool = False,
        tokenizer: Any = None,
        reload: Reload = None,
    ) -> None:
        import torch

        from audioclf.encoders import groupnorm
        from audioclf.encoders.hf_families import family_of

        self.spec = spec
        try:  # first: a model for another sample rate (CLAP) or another input is refused before anything else
            self.family = family_of(model, extractor)
        except EncoderError as exc:
            raise EncoderError(f"{spec}: {exc}") from None
        if not hasattr(model.config, "hidden_size") or not hasattr(model.config, "num_hidden_layers"):
            raise EncoderError(f"{spec}: {type(model).__name__} is not an audio encoder with hidden states")
        # A *ForCTC model with its tokenizer also transcribes, in the same forward pass (greedy CTC per window).
        self._tokenizer = tokenizer
        self.transcribes = tokenizer is not None and hasattr(model, "lm_head")
        self.last_texts: list[str] | None = None  # the windows of the last embed() call, when it transcribes
        self._batch_texts: list[str] = []
        self._bf16 = bf16  # bf16 weights and activations: AMX/AVX-512 BF16 matmuls on CPU, tensor cores on GPU
        self._torch = torch
        self._model = model  # the encoder of an encoder-decoder model (see _from_pretrained)
        self._model.eval()
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        fp32_cpu = not bf16 and self._device.type == "cpu"
        self._batch_samples = FP32_CPU_BATCH_SAMPLES if fp32_cpu else MAX_BATCH_SAMPLES
        self._model.to(self._device)
        # Group-norm models (wav2vec2-base) are trained without attention masks: plain padding would change
        # their output. Known ones get a length-aware first norm (groupnorm.py) and padded batches with a mask;
        # fixed-input families pad every clip on its own; any other only sees batches of equal-length windows.
        self._norm = groupnorm.install(self._model)
        self._masks = bool(getattr(extractor, "return_attention_mask", False)) or self._norm is not None
        safe = model.config.model_type in groupnorm.PADDING_SAFE_TYPES and self._masks
        self._pads = safe or self.family.exact_batches
        self.n_layers = int(model.config.num_hidden_layers) + 1
        self._stop: tuple[Any, int] | None = None  # up_to: (the transformer layers, the deepest state kept)
        self.dim = int(model.config.hidden_size)
        self.min_samples = self.family.min_samples
        self.native_window_s = self.max_window_s = self.family.fixed_input_s
        # The legacy identity hashes the fp32 weights: bf16 replaces them below, a reload has them again.
        as_loaded = (lambda: (model, extractor)) if not bf16 else reload
        self.identities = fingerprints(model, extractor, as_loaded).tagged(suffix=BF16_SUFFIX if bf16 else "")
        self.identity = self.identities.current
        if bf16:
            # Converted once: under autocast every call would cast all fp32 weights again, which dominates on
            # short clips (bench: 7.5x -> 10.4x realtime on 0.4 s clips, embeddings cosine >= 0.9999 vs fp32).
            self._model.to(torch.bfloat16)
        from audioclf.encoders import cpu_kernels  # matmul-speed attention and convolutions

        attention, convs = cpu_kernels.install_where_faster(self._model, bf16)
        log.debug("%s: blocked attention %s, %d faster convolutions", spec, attention, convs)

    def up_to(self, layer: int) -> HFEncoder:
        """This encoder computing only hidden states 0..``layer`` (the rest of each row stays zero): what a
        probe on that one layer reads, at less cost. Itself where that is not known to be exact."""
        from audioclf.encoders.early_exit import stoppable_layers

        layers = None if self.transcribes else stoppable_layers(self._model, layer)
        if layers is None:
            return self
        early = copy.copy(self)
        early._stop = (layers, layer)
        early.identities = self.identities.tagged(suffix=f"-upto{layer}")  # other arrays: their own cache entries
        early.identity = early.identities.current
        return early

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), self.n_layers, self.dim), dtype=np.float32)
        texts = [""] * len(windows)
        fixed = round((self.family.fixed_input_s or 0.0) * SAMPLE_RATE_HZ)
        batches = _length_batches(windows, self._batch_samples, equal_only=not self._pads, floor=fixed)
        for batch in batches:
            out[batch] = self._guarded([windows[i] for i in batch])
            for i, text in zip(batch, self._batch_texts, strict=False):
                texts[i] = text
        self.last_texts = texts if self.transcribes else None
        return out

    def _guarded(self, waves: list[np.ndarray]) -> np.ndarray:
        """One batch; whatever the extractor or model raises becomes one line naming the family."""
        try:
            return self._embed_batch(waves)
        except EncoderError:
            raise
        except Exception as exc:  # torch and transformers raise RuntimeError, ValueError, TypeError, IndexError…
            from audioclf.encoders.hf_families import model_failure

            raise model_failure(self.family, self.spec, exc) from exc

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        from audioclf.encoders.hf_families import pool_layers

        inputs = self.family.inputs(waves, mask=self._masks)
        if self._stop is not None:  # up_to: the forward pass stops at the deepest layer the probe reads
            from audioclf.encoders.early_exit import states_up_to

            hidden = states_up_to(*self._stop, lambda: self._forward(inputs, waves))
            return self._padded_layers(pool_layers(hidden, lambda n: self.family.audio_mask(waves, inputs, n)))
        output = self._forward(inputs, waves, output_hidden_states=True)
        hidden = output.hidden_states
        if self.transcribes:  # greedy CTC over each window's own frames: merge repeats, drop blanks
            frames = self.family.audio_mask(waves, inputs, output.logits.shape[1]).sum(1)
            ids = output.logits.argmax(-1).cpu()
            self._batch_texts = [self._tokenizer.decode(ids[i, : int(n)]).strip() for i, n in enumerate(frames)]
        return pool_layers(hidden, lambda n: self.family.audio_mask(waves, inputs, n)).cpu().numpy()

    def _padded_layers(self, pooled: Any) -> np.ndarray:
        out = np.zeros((pooled.shape[0], self.n_layers, self.dim), dtype=np.float32)  # deeper layers: not run
        out[:, : pooled.shape[1]] = pooled.cpu().numpy()
        return out

    def _forward(self, inputs: Mapping[str, Tensor], waves: list[np.ndarray], **kwargs: Any) -> Any:
        """The model on one batch; padded only where that leaves every clip's output as if it were alone."""
        torch = self._torch
        inputs = dict(inputs)
        mask = inputs.pop("attention_mask", None)
        if self._masks and mask is not None:
            inputs["attention_mask"] = mask
        if self._norm is not None:
            from audioclf.encoders.groupnorm import first_layer_lengths

            self._norm.lengths = first_layer_lengths(self._model, [len(w) for w in waves])
        try:
            with torch.inference_mode(), torch.autocast(self._device.type, torch.bfloat16, enabled=self._bf16):
                return self._model(**self._to_device(inputs), **kwargs)
        finally:
            if self._norm is not None:
                self._norm.lengths = None

    def _to_device(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        torch = self._torch
        cast = torch.bfloat16 if self._bf16 else None
        return {k: v.to(self._device, dtype=cast if v.is_floating_point() else None) for k, v in inputs.items()}


class LogitsEncoder(HFEncoder):
    """A fine-tuned AutoModelForAudioClassification folder used as an "encoder" whose output is its logits, so
    prediction shares the windowing, batching and cache of the probe path."""

    def __init__(self, folder: Path, *, bf16: bool = False) -> None:
        from transformers import AutoModelForAudioClassification

        extractor, model = pretrained(
            AutoModelForAudioClassification, str(folder), True, str(folder), "fine-tuned model"
        )
        super().__init__(ModelSpec(FINETUNED, str(folder)), extractor, model, bf16=bf16)
        self.n_layers, self.dim = 1, int(model.config.num_labels)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        inputs = self.family.inputs(waves, mask=self._masks)
        return self._forward(inputs, waves).logits.float().cpu().numpy()[:, None, :]


def _length_batches(
    windows: list[np.ndarray], max_samples: int, *, equal_only: bool, floor: int = 0
) -> Iterator[list[int]]:
    """Indices grouped into batches of similar (or, with ``equal_only``, identical) length, at most
    ``max_samples`` of padded audio each; a model with a fixed input (``floor`` samples) costs that much per
    window, however short."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    batch: list[int] = []
    for i in order:
        longest = max(floor, len(windows[i]))  # sorted ascending: the newest is the longest
        too_big = (len(batch) + 1) * longest > max_samples or len(batch) >= MAX_BATCH_ITEMS
        if batch and (too_big or (equal_only and len(windows[batch[0]]) != len(windows[i]))):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
