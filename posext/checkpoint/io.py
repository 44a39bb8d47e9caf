"""Checkpoint files: load (safely), find the state dicts inside, save atomically in the same format.

Formats: torch pickles (.pth .pt .bin .ckpt and anything else), safetensors (.safetensors, header metadata
kept; read by ranges and written as a stream, see ``safetensors_io``), NumPy .npz (big_vision /
vision_transformer, '/'-joined keys). Torch pickles are read with ``weights_only=True``;
``argparse.Namespace`` (training ``args``) is allowed as timm does; anything else needs
``unsafe_pickle=True``. A pickle may wrap its state dicts: every one of ``model``, ``state_dict``,
``model_ema``, ``state_dict_ema``, ``module`` found is resized, or the top level when it is itself one.
Paths may be fsspec URLs (``storage``).
"""
import argparse
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from . import safetensors_io, storage
from .files import (  # noqa: F401 (the file-level API, used here and by callers of io)
    CHECKPOINT_SUFFIXES,
    CheckpointError,
    atomic_write,
    atomic_write_stream,
    file_format,
    file_kind,
    require_regular_file,
)

WRAPPERS = ("model", "state_dict", "model_ema", "state_dict_ema", "module")


@dataclass
class Checkpoint:
    path: str
    format: str                                   # "torch" | "safetensors" | "npz"
    container: Any                                # what was loaded (torch: the whole object)
    # wrapper ("" = top) -> tensors
    state_dicts: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    metadata: Optional[Dict[str, str]] = None     # safetensors header metadata
    npz_passthrough: Dict[str, np.ndarray] = field(default_factory=dict)  # npz arrays torch cannot hold
    npz_order: List[str] = field(default_factory=list)                    # npz keys in file order
    source: Optional[safetensors_io.Source] = None  # safetensors: the file the meta tensors stand for


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj) and \
        sum(isinstance(v, torch.Tensor) for v in obj.values()) >= max(1, len(obj) // 2)


def state_dicts_of(obj, path: str) -> Checkpoint:
    """The Checkpoint of a loaded torch pickle: the object itself when it is a state dict, else its
    wrappers."""
    if _is_tensor_dict(obj):
        return Checkpoint(path, "torch", obj, {"": obj})
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a checkpoint: the pickle holds a {type(obj).__name__}, not a dict of "
                              f"tensors")
    found = {name: obj[name] for name in WRAPPERS if name in obj and _is_tensor_dict(obj[name])}
    if not found:
        raise CheckpointError(f"not a checkpoint: no state dict at the top level or under {list(WRAPPERS)} "
                              f"(keys: {list(obj)[:8]})")
    return Checkpoint(path, "torch", obj, found)


def torch_load(path: str, unsafe_pickle: bool, mmap: bool = False):
    """torch.load with the pickle policy: weights_only plus argparse.Namespace unless ``unsafe_pickle``."""
    if unsafe_pickle:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError("the pickle needs globals that weights_only loading refuses "
                                  f"({str(exc).splitlines()[0][:200]}); pass --unsafe-pickle only if you "
                                  "trust this file") from exc
        raise


def load_checkpoint(path: str, *, unsafe_pickle: bool = False) -> Checkpoint:
    """The checkpoint at ``path`` (a local file; a URL for safetensors). safetensors tensors come as
    ``meta`` tensors of a :class:`~posext.checkpoint.shapes.ShapeOnlyStateDict` (values read on demand) and
    are written back by copying their bytes: see ``safetensors_io``."""
    fmt = file_format(path)
    size = require_regular_file(path)
    try:
        if fmt == "safetensors":
            return load_safetensors(path, size)
        if fmt == "npz":
            return _load_npz(path)
        return _load_torch(path, unsafe_pickle)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt, truncated, not a checkpoint
        raise CheckpointError(f"cannot read {fmt} file: {type(exc).__name__}: {exc}") from exc


def _load_torch(path, unsafe_pickle):
    # Memory-mapped where the format allows (torch.save's zip format): tensors the resize does not touch stay
    # file-backed pages that torch.save copies out again, so memory follows the position tables, not the
    # checkpoint. Older non-zip pickles cannot be mapped and are loaded whole.
    with open(path, "rb") as f:
        mappable = zipfile.is_zipfile(f)
    return state_dicts_of(torch_load(path, unsafe_pickle, mmap=mappable), path)


def load_safetensors(path: str, size: int) -> Checkpoint:
    from .shapes import ShapeOnlyStateDict

    try:
        source = safetensors_io.Source(storage.opener(path), size)
    except safetensors_io.FormatError as exc:
        raise CheckpointError(f"cannot read safetensors file: {exc}") from None
    state = ShapeOnlyStateDict(source.tensors, source.read)
    return Checkpoint(path, "safetensors", state, {"": state}, metadata=source.metadata, source=source)


def _load_npz(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    tensors, passthrough = {}, {}
    for key, array in arrays.items():
        try:
            tensors[key] = torch.from_numpy(array)
        except TypeError:  # dtypes torch lacks (bf16 stored as void, strings): written back untouched
            passthrough[key] = array
    if not tensors:
        raise CheckpointError("not a checkpoint: the .npz holds no numeric arrays")
    return Checkpoint(path, "npz", arrays, {"": tensors}, npz_passthrough=passthrough, npz_order=list(arrays))


def replace_state_dicts(ckpt: Checkpoint, new_state_dicts: Dict[str, Dict[str, torch.Tensor]]) -> Checkpoint:
    """The checkpoint with its state dicts swapped for resized ones, wrapping and everything else kept."""
    if ckpt.format == "torch" and "" not in new_state_dicts:
        container = dict(ckpt.container)
        container.update(new_state_dicts)
    else:
        container = new_state_dicts[""]
    return replace(ckpt, container=container, state_dicts=dict(new_state_dicts))


def drop_grid_dependent_optimizer_state(container, old_shapes, *, drop_all: bool) -> List[str]:
    """Optimizer moments shaped like a resized tensor would break --resume: remove them (or the whole
    optimizer).

    Returns what was removed, for the warning and the report."""
    if not isinstance(container, dict) or "optimizer" not in container:
        return []
    if drop_all:
        del container["optimizer"]
        return ["optimizer"]
    opt = container["optimizer"]
    state = opt.get("state") if isinstance(opt, dict) else None
    if not isinstance(state, dict):
        return []
    removed = []
    for idx, entry in list(state.items()):
        if isinstance(entry, dict) and any(isinstance(v, torch.Tensor) and tuple(v.shape) in old_shapes
                                           for v in entry.values()):
            removed.append(f"optimizer.state[{idx}]")
            del state[idx]
    return removed


def save_checkpoint(ckpt: Checkpoint, path: str, staged=None) -> int:
    """Write atomically in the checkpoint's format; returns the bytes written. ``staged``: a safetensors
    target's temp file already begun by ``head_start`` (its copy is kept where the layout is the same)."""
    if ckpt.format == "safetensors":  # streamed: untouched tensors are copied from the source as bytes
        return atomic_write_stream(path, lambda f: safetensors_io.write(f, ckpt.container, ckpt.metadata,
                                                                         ckpt.source, staged), staged)
    if ckpt.format == "npz":
        state = ckpt.state_dicts[""]
        to_numpy = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        arrays = {}
        for key in ckpt.npz_order:  # file order; keys the resize dropped stay out
            if key in ckpt.npz_passthrough:
                arrays[key] = ckpt.npz_passthrough[key]
            elif key in state:
                arrays[key] = to_numpy(state[key])
        arrays.update({k: to_numpy(v) for k, v in state.items() if k not in arrays})

        def write_npz(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
                np.savez(f, **arrays)

        return atomic_write(path, write_npz)
    return atomic_write(path, lambda tmp: torch.save(ckpt.container, tmp))
