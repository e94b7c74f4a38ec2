"""Saving and loading models as safetensors plus a JSON config (never pickles).

A saved model is a folder holding ``model.safetensors`` (the weights) and
``config.json`` (``{"family": ..., "config": {...}, ...metadata}``). Writes go
to a temporary name first and are renamed into place, so a failure never
leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from writemate.errors import WritemateError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(WritemateError):
    """A saved model or checkpoint is missing or unreadable."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fresh_folder(path: Path) -> Path:
    """An empty folder at ``path`` (a leftover from an earlier failed attempt is removed first), to
    build output in before renaming it into place."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata in a safetensors file's header (the tensors are not read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such file") from e
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such file") from e
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def save_model(folder: Path, model: torch.nn.Module, family: str, config: dict, dtype=None, **metadata) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``."""
    state = model.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    folder = Path(folder)
    save_tensors(folder / WEIGHTS, state)
    atomic_write_json(folder / CONFIG, {"family": family, "config": config, **metadata})


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such file; a model folder holds {WEIGHTS} and {CONFIG}") from e
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({e})") from e


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load ``model.safetensors`` from ``folder`` into ``model`` (cast to the model's dtype)."""
    state = load_tensors(Path(folder) / WEIGHTS)
    own = model.state_dict()
    try:
        model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{folder}: weights do not fit the model config ({e})") from e
