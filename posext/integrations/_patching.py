"""Instance-level method patching shared by the integrations: a patched module gets a bound replacement
method and a PosEmbedCache as instance attributes; unpatching deletes both, so the class methods show through
again."""
import types
from typing import Callable, Iterable, Optional, Tuple

from torch import nn

from ..cache import PosEmbedCache

CACHE_ATTR = "_posext_cache"
PATCHED_ATTR = "_posext_patched"  # names of the methods replaced on this instance


def patch_method(module: nn.Module, name: str, replacement: Callable, cache: PosEmbedCache) -> None:
    """Binds ``replacement(module, ...)`` as ``module.<name>`` (shadowing the class method) and attaches
    ``cache``."""
    patched = module.__dict__.setdefault(PATCHED_ATTR, [])
    if name in patched:
        return
    object.__setattr__(module, name, types.MethodType(replacement, module))
    patched.append(name)
    object.__setattr__(module, CACHE_ATTR, cache)


def unpatch_modules(model: nn.Module) -> int:
    """Removes every posext patch below ``model``; returns how many modules were restored."""
    restored = 0
    for module in model.modules():
        names = module.__dict__.pop(PATCHED_ATTR, None)
        if names is None:
            continue
        for name in names:
            module.__dict__.pop(name, None)
        module.__dict__.pop(CACHE_ATTR, None)
        restored += 1
    return restored


def patch_all(model: nn.Module, targets: Iterable[Tuple[nn.Module, str, Callable]],
              cache: Optional[PosEmbedCache], max_entries: int, what: str) -> nn.Module:
    """Patches each target's method ``name`` with its replacement (targets: (module, name, replacement));
    one cache per module unless ``cache`` is given; TypeError naming ``what`` when there is no target."""
    found = 0
    for module, name, replacement in targets:
        patch_method(module, name, replacement, cache if cache is not None else PosEmbedCache(max_entries))
        found += 1
    if not found:
        raise TypeError(f"accelerate: found no {what} in {type(model).__name__}")
    return model


def cache_of(module: nn.Module) -> PosEmbedCache:
    return module.__dict__[CACHE_ATTR]
