"""Loading transformers models from a local folder or the Hugging Face Hub: local first, one bounded hub check,
``HF_HUB_OFFLINE`` honoured at call time, never remote code; and the weights fingerprint used in cache keys."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from audioclf.encoders.spec import HF, ModelSpec
from audioclf.errors import EncoderError, first_line

T = TypeVar("T")
HUB_TIMEOUT_S = 8.0  # bound on the one hub request that decides whether a download can work


def offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def load_hf(model: ModelSpec | str, load: Callable[[str, bool], T]) -> T:
    """Resolve ``hf:<hub id or folder>`` and call ``load(source, local_files_only)``: a folder directly, a hub
    id from the local cache first, then from the hub only after one bounded reachability check."""
    if isinstance(model, str):
        model = ModelSpec.parse(model)
    if model.kind != HF:
        raise EncoderError(f"{model} is not a transformers model; use 'hf:<hub id or local model dir>'")
    spec, name = str(model), model.source
    local = Path(name).expanduser()
    if local.is_dir():
        return load(str(local), True)
    if local.is_absolute() or name.startswith(".") or name.count("/") > 1:
        raise EncoderError(f"{spec}: no such model folder {local}; give a folder with config.json or a hub id")
    try:
        return load(name, True)  # the local hub cache first: no network
    except EncoderError:
        if offline():
            raise EncoderError(f"{spec}: not in the local cache and HF_HUB_OFFLINE is set") from None
    probe_hub(spec, name)
    return load(name, False)


def probe_hub(spec: str, name: str) -> None:
    """One bounded request: an unreachable or silent hub fails here in seconds instead of hanging a download."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # network errors come in many types (httpx, OSError, hub errors)
        reason = first_line(exc)
        raise EncoderError(f"{spec}: cannot load from the Hugging Face Hub ({reason})") from exc


def pretrained(
    model_class: Any, source: str, local_only: bool, where: str, what: str, preprocessor: Any = None, **kwargs: Any
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


def model_fingerprint(model: Any, extractor: Any) -> str:
    """Hash of config, feature-extractor settings and every weight: a changed model never reuses a cache."""
    import torch

    h = hashlib.sha256()
    h.update(model.config.to_json_string(use_diff=False).encode())
    settings = extractor.to_dict() if hasattr(extractor, "to_dict") else {"vocab": extractor.get_vocab()}  # tokenizer
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return "hf-" + h.hexdigest()[:32]
