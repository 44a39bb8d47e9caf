"""Tensors known by a file header's dtype name and shape alone, for planning before torch is imported.

``StoredShape`` answers what the detector asks of a ``meta`` tensor (``shape``, ``dim()``, ``numel()``,
``is_floating_point()``, ``is_complex()``, ``is_meta``, ``dtype`` in messages), so a safetensors header can
be planned without torch (``head_start.py``). It holds no values: a check that needs them finds none and
takes the shape-only answer, which the full plan made later with torch confirms or overrules.
"""
import sys
from typing import Tuple

# safetensors dtype name -> (torch dtype name, bytes per element); dtypes a torch lacks are copied as bytes
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
          "U8": ("uint8", 1), "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4),
          "U64": ("uint64", 8), "C64": ("complex64", 8), "F8_E4M3": ("float8_e4m3fn", 1),
          "F8_E5M2": ("float8_e5m2", 1), "F8_E8M0": ("float8_e8m0fnu", 1),
          "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1)}
_FLOATING = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}
_COMPLEX = {"C64"}


class StoredShape:
    """A stored tensor's dtype (its safetensors name) and shape, standing in for a ``meta`` tensor."""

    is_meta = True

    def __init__(self, dtype_name: str, shape: Tuple[int, ...]):
        self.dtype_name = dtype_name
        self.shape = tuple(shape)
        self.dtype = f"torch.{DTYPES[dtype_name][0]}"  # as a torch dtype prints, for the same messages

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def element_size(self) -> int:
        return DTYPES[self.dtype_name][1]

    def is_floating_point(self) -> bool:
        return self.dtype_name in _FLOATING

    def is_complex(self) -> bool:
        return self.dtype_name in _COMPLEX


def is_tensor(value) -> bool:
    """A torch tensor (when torch is loaded) or a StoredShape."""
    if isinstance(value, StoredShape):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
