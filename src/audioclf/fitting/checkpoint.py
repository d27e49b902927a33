"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON, replaced atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, TypedDict

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.optim.optimizer import StateDict

from audioclf.errors import ModelError, first_line
from audioclf.fileio import JSON, JSONObject, temp_dir_beside

STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
MODEL_WEIGHTS_NAME = "model.safetensors"  # written by save_pretrained


class CheckpointState(TypedDict):
    """Where the training loop is (``FinetuneState`` as JSON): what resuming reads back."""

    epoch: int
    best_epoch: int
    best_f1: float
    best_loss: float
    history: list[dict[str, float]]  # asdict of each epoch's EpochStats


class FlatOptimizer(TypedDict):
    """An optimizer state dict less its tensors (those are in ``optimizer.safetensors``)."""

    param_groups: list[JSONObject]
    scalars: dict[str, JSONObject]  # per parameter id: its non-tensor state (e.g. Adam's step)


def optimizer_to_flat(state: StateDict) -> tuple[dict[str, torch.Tensor], FlatOptimizer]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and plain values (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, JSONObject] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], plain: FlatOptimizer) -> StateDict:
    state: dict[int, dict[str, torch.Tensor | JSON]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in plain["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    target: Path, *, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, state: CheckpointState
) -> None:
    """Write a complete checkpoint folder beside ``target`` and swap it in: a crash leaves the old one intact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(target)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tensors, plain = optimizer_to_flat(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_NAME))
        full = {**state, "optimizer": plain, "scheduler": scheduler.state_dict()}
        (tmp / STATE_NAME).write_text(json.dumps(full, indent=1), encoding="utf-8")
        for file in tmp.iterdir():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(source: Path) -> tuple[CheckpointState, dict[str, torch.Tensor], StateDict, JSONObject]:
    """(training state, model weights, optimizer state dict, scheduler state dict) of a checkpoint folder;
    a torn or missing part is a one-line ModelError."""
    for candidate in (source, source.with_name(source.name + ".old")):  # .old: a crash mid-swap
        if (candidate / STATE_NAME).is_file():
            source = candidate
            break
    else:
        raise ModelError(f"{source}: no checkpoint to resume from; train without resuming first", option="resume")
    try:
        raw = json.loads((source / STATE_NAME).read_text(encoding="utf-8"))
        weights = load_file(str(source / MODEL_WEIGHTS_NAME))
        optimizer = optimizer_from_flat(load_file(str(source / OPTIMIZER_NAME)), raw.pop("optimizer"))
        scheduler: JSONObject = raw.pop("scheduler")
        state: CheckpointState = raw
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        reason = first_line(exc)
        raise ModelError(f"{source}: damaged checkpoint ({reason}); delete it to start over") from exc
    return state, weights, optimizer, scheduler
