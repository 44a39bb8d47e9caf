"""Argument checks shared by the Python wrappers: each error names the argument, what came and the rule."""
import torch

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def is_int(value) -> bool:
    return isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def nonnegative_int(name: str, value) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def multiple_of(name: str, value: int, k: int, why: str) -> int:
    positive_int(name, value)
    if value % k:
        raise ValueError(f"{name} must be divisible by {k} ({why}), got {value}")
    return value


def grid_pair(name: str, value):
    """An int n -> (n, n); a pair (H, W) -> (H, W); both > 0."""
    if is_int(value):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or an (H, W) pair, got {value!r}") from None
    return positive_int(f"{name}[0] (H)", h), positive_int(f"{name}[1] (W)", w)


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


def out_tensor(name: str, out, shape) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    float_dtype(f"{name}.dtype", out.dtype)
    if not out.is_contiguous():
        raise ValueError(f"{name} must be contiguous (shape {tuple(out.shape)}, strides {out.stride()})")
    return out
