"""Argument checks shared by the Python wrappers: each error names the argument, what came and the rule.

The vocabulary of every op (docs/conventions.md): a wrong type or dtype is a TypeError, a wrong value, shape
or device a ValueError; both backends run these same checks, so they accept and refuse the same inputs alike.
"""
import math
import os
from typing import Callable, Optional

import torch

from ._sizes import grid_pair, grid_triple, is_int, multiple_of, nonnegative_int, positive_int  # noqa: F401

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def float_dtype(name: str, dtype) -> torch.dtype:
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be one of float64, float32, float16, bfloat16, got {dtype}")
    return dtype


def positive_float(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def out_tensor(name: str, out, shape, why: Callable[[], str] = lambda: "") -> torch.Tensor:
    """`out` a contiguous float tensor of `shape`; `why()` says which arguments make that shape."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}{why()}, got {tuple(out.shape)}")
    float_dtype(f"{name}.dtype", out.dtype)
    if not out.is_contiguous():
        raise ValueError(f"{name} must be contiguous (shape {tuple(out.shape)}, strides {out.stride()})")
    return out


def flag(name: str, value) -> bool:
    """A True/False switch: anything else (1, None, NaN, "yes") is refused rather than truth-tested."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_ too
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} ({value!r})")


def _memory_bytes(device: torch.device) -> Optional[int]:
    """Memory a result on `device` can at most take: the GPU's, the machine's RAM for CPU, none for meta."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def result_size(what: Callable[[], str], shape, dtype: torch.dtype, device) -> None:
    """Refuses a result whose element count overflows int64 or whose bytes exceed the device's memory, naming
    the arguments that asked for it (`what()`, e.g. "new_size=(64, 64)"; made only on error, so that tracing
    never formats a symbolic size), instead of wrapping around or allocating for minutes before failing."""
    # traced: sizes are symbolic
    if torch.compiler.is_compiling() or not all(isinstance(s, int) for s in shape):
        return
    numel = math.prod(shape)
    if math.prod(max(s, 1) for s in shape) >= 2**63:  # even with an empty batch, strides would overflow
        raise ValueError(f"{what()} asks for a result of shape {tuple(shape)}: its size overflows int64")
    device = torch.device(device) if device is not None else torch.device("cpu")
    nbytes = numel * torch.empty((), dtype=dtype, device="meta").element_size()
    limit = _memory_bytes(device)
    if limit is not None and nbytes > limit:
        raise ValueError(f"{what()} asks for a result of shape {tuple(shape)} ({nbytes} bytes), more than "
                         f"the {limit} bytes of memory of {device}")


def may_overlap_itself(t: torch.Tensor) -> bool:
    """Two elements of `t` may share memory (an expanded or self-overlapping view): sorted by stride, every
    dimension of size > 1 must step past all that the smaller-stride dimensions span."""
    span = 0
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride <= span:
            return True
        span += stride * (size - 1)
    return False


def may_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """An element of `a` and one of `b` may be the same memory (the rule of csrc/checks.h: one storage,
    intersecting ranges and, for views of one shape and strides, an offset difference sum_d c_d * stride_d
    with |c_d| < size_d; views of other strides are assumed to overlap)."""
    if torch.compiler.is_compiling():  # storages cannot be traced; the compiled op checks again when it runs
        return False
    if a.numel() == 0 or b.numel() == 0 or a.device.type == "meta" or b.device.type == "meta":
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False

    def byte_range(t):
        last = t.storage_offset() + sum(st * (sz - 1) for st, sz in zip(t.stride(), t.shape))
        return t.storage_offset() * t.element_size(), (last + 1) * t.element_size()

    (a0, a1), (b0, b1) = byte_range(a), byte_range(b)
    if a1 <= b0 or b1 <= a0:
        return False
    if a.element_size() != b.element_size() or a.shape != b.shape or a.stride() != b.stride() or \
            may_overlap_itself(a):
        return True
    dims = sorted(((st, sz) for st, sz in zip(a.stride(), a.shape) if sz > 1), reverse=True)
    below = [0] * (len(dims) + 1)
    for i in range(len(dims) - 1, -1, -1):
        below[i] = below[i + 1] + dims[i][0] * (dims[i][1] - 1)

    def reach(delta, i):
        if i == len(dims):
            return delta == 0
        stride, size = dims[i]
        lo, hi = (max(-(size - 1), (delta - below[i + 1]) // stride - 1),
                  min(size - 1, (delta + below[i + 1]) // stride + 1))
        return any(abs(delta - c * stride) <= below[i + 1] and reach(delta - c * stride, i + 1)
                   for c in range(lo, hi + 1))

    return reach(abs(b.storage_offset() - a.storage_offset()), 0)


def table_result(what, shape, out, dtype, device):
    """(dtype, device) of a table op's result of ``shape``: ``out``'s when given (checked: a tensor of that
    shape), else ``dtype`` / ``device`` (None: the default device); refused if it would not fit in memory."""
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a tensor, got {type(out).__name__}")
        result_size(what, shape, out.dtype, out.device)
        out_tensor("out", out, shape, lambda: f" for {what()}")
        dtype, device = out.dtype, out.device
    float_dtype("dtype", dtype)
    device = torch.device(device) if device is not None else torch.empty(0).device
    result_size(what, shape, dtype, device)
    return dtype, device
