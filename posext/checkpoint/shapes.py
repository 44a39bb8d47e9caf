"""Read a checkpoint's tensor shapes without its data (``posext inspect``).

* torch pickles: ``torch.load(mmap=True)``; the tensors are views of a private memory map, so only the pages
  of the few tensors whose values are looked at are ever read (legacy non-zip pickles cannot be mapped and
  are loaded whole).
* safetensors: the JSON header; the tensors are ``meta`` tensors (shape and dtype only).
* ``.npz``: each zip member's ``.npy`` header, read from the start of the member without inflating the rest.

The ``meta`` state dicts come as :class:`ShapeOnlyStateDict`, whose ``read_tensor(key)`` reads one tensor's
values on demand: the detector needs them only for a table that may be MAE's sin-cos table and for
``position_ids``.
"""
import zipfile
from typing import Callable, Dict, Tuple

import numpy as np
import torch

from .io import (
    Checkpoint,
    CheckpointError,
    file_format,
    load_checkpoint,
    require_regular_file,
)


class ShapeOnlyStateDict(dict):
    """key -> ``meta`` tensor (shape and dtype only); ``read_tensor(key)`` reads that one tensor from the
    file."""

    def __init__(self, tensors: Dict[str, torch.Tensor], read: Callable[[str], torch.Tensor]):
        super().__init__(tensors)
        self._read = read

    def read_tensor(self, key: str) -> torch.Tensor:
        return self._read(key)


def load_shapes(path: str, *, unsafe_pickle: bool = False) -> Checkpoint:
    """The checkpoint's state dicts with shapes (and lazily readable values), for inspection only."""
    fmt = file_format(path)
    if fmt != "npz":  # torch pickles are memory-mapped and safetensors read by ranges anyway
        return load_checkpoint(path, unsafe_pickle=unsafe_pickle)
    require_regular_file(path)
    try:
        return _npz_shapes(path)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt, truncated, not a checkpoint
        raise CheckpointError(f"cannot read {fmt} file: {type(exc).__name__}: {exc}") from exc


def _meta(shape, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(int(s) for s in shape), dtype=dtype, device="meta")


def _npy_header(member) -> Tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy version {version}")
    shape, _, dtype = readers[version](member)
    return shape, dtype


def _torch_dtype(dtype: np.dtype):
    try:
        return torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    except (TypeError, ValueError):  # dtypes torch lacks (bf16 stored as void, strings, objects)
        return None


def _npz_shapes(path):
    tensors, order = {}, []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-len(".npy")]
            order.append(key)
            with zf.open(info) as member:
                shape, dtype = _npy_header(member)
            torch_dtype = _torch_dtype(dtype)
            if torch_dtype is not None:
                tensors[key] = _meta(shape, torch_dtype)
    if not tensors:
        raise CheckpointError("not a checkpoint: the .npz holds no numeric arrays")

    def read(key):
        with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as member:
            return torch.from_numpy(np.lib.format.read_array(member, allow_pickle=False))

    state = ShapeOnlyStateDict(tensors, read)
    return Checkpoint(path, "npz", state, {"": state}, npz_order=order)
