"""Loading transformers models from a local folder or the Hugging Face Hub: local first, one bounded hub check,
``HF_HUB_OFFLINE`` honoured at call time, never remote code; and the weights fingerprint used in cache keys."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from audioclf.encoders.spec import HF, ModelSpec
from audioclf.errors import EncoderError, first_line

T = TypeVar("T")
HUB_TIMEOUT_S = 8.0  # bound on the one hub request that decides whether a download can work
PATH_FIELDS = frozenset({"_name_or_path"})  # where a model was loaded from: not part of what it computes


def offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def load_hf(model: ModelSpec, load: Callable[[str, bool], T]) -> T:
    """Resolve ``hf:<hub id or folder>`` and call ``load(source, local_files_only)``: a folder directly, a hub
    id from the local cache first, then from the hub only after one bounded reachability check."""
    if model.kind != HF:
        raise EncoderError(f"{model} is not a transformers model; use 'hf:<hub id or local model dir>'")
    name = model.source
    local = Path(name).expanduser()
    if local.is_dir():
        return load(str(local), True)
    if local.is_absolute() or name.startswith(".") or name.count("/") > 1:
        raise EncoderError(f"{model}: no such model folder {local}; give a folder with config.json or a hub id")
    try:
        return load(name, True)  # the local hub cache first: no network
    except EncoderError:
        if offline():
            raise EncoderError(f"{model}: not in the local cache and HF_HUB_OFFLINE is set") from None
    probe_hub(model, name)
    return load(name, False)


def probe_hub(spec: ModelSpec, name: str) -> None:
    """One bounded request: an unreachable or silent hub fails here in seconds instead of hanging a download."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # network errors come in many types (httpx, OSError, hub errors)
        reason = first_line(exc)
        raise EncoderError(f"{spec}: cannot load from the Hugging Face Hub ({reason})") from exc


def pretrained(
    model_class: Any,
    source: str,
    local_only: bool,
    where: ModelSpec | str,
    what: str,
    preprocessor: Any = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """A preprocessor (AutoFeatureExtractor unless given: a tokenizer, a processor) + ``model_class`` from a
    folder or hub id (never remote code); one-line errors."""
    from transformers import AutoFeatureExtractor

    try:
        extractor = (preprocessor or AutoFeatureExtractor).from_pretrained(source, local_files_only=local_only)
        model = model_class.from_pretrained(source, local_files_only=local_only, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # TypeError: a tokenizer without its vocabulary
        first = first_line(exc)
        raise EncoderError(f"{where}: cannot load {what} ({first})") from exc
    return extractor, model


def tokenizer_of(source: str, local_only: bool) -> Any | None:
    """The checkpoint's tokenizer, or None when it has none (a CTC model saved without its vocabulary)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Identities:
    """An identity, then its older form that models saved by earlier versions recorded (computed only when
    asked: ``same_weights`` asks only when the identity itself does not match)."""

    current: str
    legacy: Callable[[], str] | None = None

    def __iter__(self) -> Iterator[str]:
        yield self.current
        if self.legacy is not None:
            yield self.legacy()

    def __contains__(self, saved: object) -> bool:  # in order: the legacy form only when the identity differs
        return any(form == saved for form in self)

    def tagged(self, prefix: str = "", suffix: str = "") -> Identities:
        """Both forms inside a longer identity (``text-<fingerprint>``, ``<fingerprint>-bf16``)."""
        legacy = self.legacy
        old = None if legacy is None else lambda: f"{prefix}{legacy()}{suffix}"
        return Identities(f"{prefix}{self.current}{suffix}", old)


def fingerprints(model: Any, extractor: Any, as_loaded: Callable[[], tuple[Any, Any]] | None) -> Identities:
    """``model_fingerprint`` and, when asked, ``legacy_fingerprint`` of ``as_loaded()``: the model and its
    extractor as loaded (None: no legacy form, e.g. the weights have changed since)."""
    if as_loaded is None:
        return Identities(model_fingerprint(model, extractor))
    load = as_loaded

    @functools.cache
    def legacy() -> str:
        return legacy_fingerprint(*load())

    return Identities(model_fingerprint(model, extractor), legacy)


def model_fingerprint(model: Any, extractor: Any) -> str:
    """Hash of config, feature-extractor settings and every weight, leaving out where the folder was loaded
    from: a changed model never reuses a cache, a moved or copied folder is the same model."""
    config = _without_paths(json.loads(model.config.to_json_string(use_diff=False)))
    return _fingerprint(json.dumps(config, sort_keys=True), _without_paths(_settings(extractor)), model)


def legacy_fingerprint(model: Any, extractor: Any) -> str:
    """The fingerprint as models saved before issue 28 recorded it: the config with its ``_name_or_path``, so
    it matches only a folder loaded by the same path string as at training."""
    return _fingerprint(model.config.to_json_string(use_diff=False), _settings(extractor), model)


def _settings(extractor: Any) -> Any:
    return extractor.to_dict() if hasattr(extractor, "to_dict") else {"vocab": extractor.get_vocab()}  # tokenizer


def _without_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k not in PATH_FIELDS}
    return [_without_paths(v) for v in value] if isinstance(value, list) else value


def _fingerprint(config: str, settings: Any, model: Any) -> str:
    import torch

    h = hashlib.sha256()
    h.update(config.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return "hf-" + h.hexdigest()[:32]
