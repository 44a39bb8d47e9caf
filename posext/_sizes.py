"""Integer and grid-size argument checks, in the vocabulary of ``_checks`` (a wrong type is a TypeError, a
wrong value a ValueError, each naming the argument).

They need no torch, so the checkpoint planner can validate its arguments before torch is imported (see
``checkpoint/head_start.py``); a ``torch.SymInt`` counts as an int once torch is loaded.
"""
import sys


def is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    torch = sys.modules.get("torch")  # a SymInt exists only once torch is loaded
    return torch is not None and isinstance(value, torch.SymInt)


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


def grid_triple(name: str, value):
    """An int n -> (n, n, n); a triple (T, H, W) -> (T, H, W); all > 0."""
    if is_int(value):
        value = (value, value, value)
    try:
        t, h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a (T, H, W) triple, got {value!r}") from None
    return (positive_int(f"{name}[0] (T)", t), positive_int(f"{name}[1] (H)", h),
            positive_int(f"{name}[2] (W)", w))
