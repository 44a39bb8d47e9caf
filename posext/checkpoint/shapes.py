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
import json
import struct
import zipfile
from typing import Callable, Dict, Tuple

import numpy as np
import torch

from .io import Checkpoint, CheckpointError, file_format, require_regular_file, state_dicts_of, torch_load

# The safetensors format bounds its header; a larger length field means a corrupt or foreign file.
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                       "BOOL": "bool", "U16": "uint16", "U32": "uint32", "U64": "uint64", "C64": "complex64",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
                       "F8_E5M2FNUZ": "float8_e5m2fnuz"}


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
    require_regular_file(path)
    try:
        if fmt == "safetensors":
            return _safetensors_shapes(path)
        if fmt == "npz":
            return _npz_shapes(path)
        return _torch_mapped(path, unsafe_pickle)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt, truncated, not a checkpoint
        raise CheckpointError(f"cannot read {fmt} file: {type(exc).__name__}: {exc}") from exc


def _torch_mapped(path, unsafe_pickle):
    with open(path, "rb") as f:
        mappable = zipfile.is_zipfile(f)  # torch.save's format since 1.6; older pickles cannot be mapped
    return state_dicts_of(torch_load(path, unsafe_pickle, mmap=mappable), path)


def _meta(shape, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(int(s) for s in shape), dtype=dtype, device="meta")


def _safetensors_header(path) -> Tuple[dict, dict]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError("cannot read safetensors file: shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", raw)
        if length > _SAFETENSORS_MAX_HEADER:
            raise CheckpointError(f"cannot read safetensors file: header length {length} is over the "
                                  f"format's {_SAFETENSORS_MAX_HEADER} bytes")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise CheckpointError("cannot read safetensors file: the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    return header, metadata


def _safetensors_shapes(path):
    header, metadata = _safetensors_header(path)
    tensors = {}
    for key, entry in header.items():
        dtype = getattr(torch, _SAFETENSORS_DTYPES.get(entry.get("dtype"), ""), None)
        if isinstance(dtype, torch.dtype):  # dtypes this torch lacks cannot be position tables
            tensors[key] = _meta(entry["shape"], dtype)

    def read(key):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return f.get_tensor(key)

    state = ShapeOnlyStateDict(tensors, read)
    return Checkpoint(path, "safetensors", state, {"": state}, metadata=metadata)


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
