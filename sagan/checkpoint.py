"""Checkpoints: written atomically, loaded safely, enough on their own to rebuild the model.

A checkpoint is a `torch.save`d dict of tensors and plain values (no pickled classes), so it loads with
`weights_only=True`: a crafted file cannot run code. It stores the ModelConfig as a dict, the resolved
training config, the step, G, D, G_ema, both optimisers, every RNG state and the data order.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sagan.errors import CheckpointError
from sagan.models import GAN, ModelConfig

FORMAT = "sagan-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:09d}.pt"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write) -> None:
    """Call write(file_object) on a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash or a full disk at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write a training state atomically; stamps the format and version."""
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                              "the previous checkpoint is intact (free disk space or choose another --out)") from None
    return Path(path)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's step checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    files = [p for p in folder.glob("step_*.pt") if _STEP_FILE.search(p.name)] if folder.is_dir() else []
    return sorted(files, key=lambda p: int(_STEP_FILE.search(p.name).group(1)))


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (and stale temporary files)."""
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for tmp in (Path(run_dir) / "checkpoints").glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint; CheckpointError for missing, corrupt, unsafe or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch words every weights-only failure with "weights_only"; a forbidden class is "unsupported GLOBAL",
        # anything else (e.g. "Unsupported operand") is a file that is not a pickle at all
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(f"refused to load {path}: it holds Python objects other than tensors and plain "
                                  "values, which could run code; only load checkpoints you trust") from None
        raise CheckpointError(f"{path} is corrupt or not a checkpoint; use another checkpoint of the run") from None
    except Exception as exc:  # torch.load fails in many ways on a torn or foreign file (EOFError, KeyError, ...)
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}); "
                              "use an earlier checkpoint of the run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sagan checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} is format version {state.get('version')}, this sagan reads version {VERSION}; "
                              "use the sagan release that wrote it")
    return state


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint of a run that loads; damaged newer ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
    return None


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint file from a run folder (its newest checkpoint) or a file path."""
    target = Path(target)
    if target.is_dir():
        found = list_checkpoints(target)
        if not found:
            raise CheckpointError(f"{target} holds no checkpoints (expected {target}/checkpoints/step_*.pt)")
        return found[-1]
    if not target.exists():
        raise CheckpointError(f"no such run folder or checkpoint: {target}")
    return target


def load_gan_state(module: nn.Module, state_dict: dict, what: str, path: Path) -> None:
    """load_state_dict with a CheckpointError naming the mismatch instead of a wall of keys."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the {what} weights do not fit this model "
                              f"({str(exc).splitlines()[0]}); the checkpoint is from another model") from None


def export_generator(generator: nn.Module, config: ModelConfig, path: str | Path, extra: dict | None = None) -> Path:
    """Write G's weights as safetensors (PATH.safetensors) with its ModelConfig as JSON beside it.

    `extra`: more keys for the JSON, e.g. "step", "ema", "data", "labels" and "class_names" (the names of the
    model's classes in index order), which `load_generator` hands back.
    """
    path = Path(path).with_suffix(".safetensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    meta = {"format": "sagan-generator", "version": VERSION, "model": config.to_dict(), **(extra or {})}
    atomic_write(path, lambda f: f.write(_safetensors_bytes(tensors)))
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return path


def _safetensors_bytes(tensors: dict) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        save_file(tensors, f"{tmp}/g.safetensors")
        return Path(f"{tmp}/g.safetensors").read_bytes()


def load_generator(target: str | Path, ema: bool = True,
                   map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """G (G_ema by default) in eval mode from a run folder, checkpoint or exported .safetensors, and its info.

    info: {"model": ModelConfig dict, "step", "path", "ema", "data", "data_root", "labels", "class_names"};
    "labels" holds the run's labels, label_column and allow_unlabelled settings (sagan.data.labels) where it had a
    labels file; "class_names" the names of the model's classes in index order ([] when unconditional, None
    for a run from before they were recorded).
    """
    from sagan.data.run import class_names_of

    target = Path(target)
    if target.suffix == ".safetensors":
        meta_path = target.with_suffix(".json")
        if not meta_path.exists():
            raise CheckpointError(f"{target} needs its config {meta_path} beside it")
        meta = json.loads(meta_path.read_text())
        config = ModelConfig.from_dict(meta["model"])
        generator = GAN(config).generator
        load_gan_state(generator, load_file(str(target), device=str(map_location)), "generator", target)
        info = {"model": meta["model"], "step": meta.get("step"), "path": str(target), "ema": meta.get("ema", True),
                "data": meta.get("data"), "data_root": meta.get("data_root"), "labels": meta.get("labels"),
                "class_names": meta.get("class_names")}
        info["class_names"] = class_names_of(info)
        return generator.eval(), info
    path = resolve_checkpoint(target)
    state = load_checkpoint(path, map_location)
    config = ModelConfig.from_dict(state["model"])
    generator = GAN(config).generator.to(map_location)
    key = "generator_ema" if ema and state.get("generator_ema") is not None else "generator"
    load_gan_state(generator, state[key], "generator", path)
    train_config = state.get("train_config") or {}
    info = {"model": state["model"], "step": state["step"], "path": str(path), "ema": key == "generator_ema",
            "data": train_config.get("data"), "data_root": train_config.get("data_root"),
            "class_names": train_config.get("class_names")}
    info["class_names"] = class_names_of(info)
    if train_config.get("labels"):
        info["labels"] = {k: train_config.get(k) for k in ("labels", "label_column", "allow_unlabelled")}
    return generator.eval(), info


def load_discriminator(target: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """D in eval mode from a run folder or checkpoint, and {"model", "step", "path"}.

    An exported generator (.safetensors) has no D: CheckpointError.
    """
    if Path(target).suffix == ".safetensors":
        raise CheckpointError(f"{target} is an exported generator without its discriminator; "
                              "give the run folder or a checkpoint (.pt) to see D's attention")
    path = resolve_checkpoint(target)
    state = load_checkpoint(path, map_location)
    discriminator = GAN(ModelConfig.from_dict(state["model"])).discriminator.to(map_location)
    load_gan_state(discriminator, state["discriminator"], "discriminator", path)
    return discriminator.eval(), {"model": state["model"], "step": state["step"], "path": str(path)}
