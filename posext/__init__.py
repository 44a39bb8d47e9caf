"""posext: fused position-embedding ops for Vision Transformers (CPU + CUDA, pure-PyTorch fallback).

Imported as a library, the package loads its ops (and torch) at once, so ``torch.ops.posext`` is
registered as soon as ``import posext`` returns. The ``posext`` command defers that to the first name it
needs: ``posext resize`` plans a safetensors file and starts copying it before torch has loaded (see
``checkpoint/head_start.py``).
"""
import importlib
import os
import sys

__version__ = "0.1.0"
# public name -> the submodule that defines it
_HOMES = {
    "backend": "_backend", "info": "_backend",
    "PosEmbedCache": "cache", "CacheStats": "cache",
    "factorized_pos_embed": "factorized",
    "add_pos_embed": "resample", "resample": "resample",
    "Rope2d": "rope", "apply_rope_2d": "rope", "rope_axial_freqs": "rope", "rope_mixed_freqs": "rope",
    "rope_positions": "rope", "rope_positions_2d": "rope",
    "apply_rope": "rope_axes", "rope_section_freqs": "rope_axes", "rope_vjepa2_freqs": "rope_axes",
    "rope_window_order": "rope_windows",
    "CONVENTIONS": "sincos", "sincos_1d": "sincos", "sincos_2d": "sincos",
    "CONVENTIONS_3D": "sincos3d", "sincos_3d": "sincos3d",
    "add_pos_embed_varlen": "varlen", "resample_varlen": "varlen",
}
__all__ = ["backend", "info", "PosEmbedCache", "CacheStats", "factorized_pos_embed", "resample",
           "resample_varlen", "add_pos_embed_varlen", "sincos_3d", "CONVENTIONS_3D",
           "add_pos_embed", "sincos_1d", "sincos_2d", "CONVENTIONS", "apply_rope_2d", "Rope2d",
           "rope_axial_freqs", "rope_mixed_freqs", "rope_positions", "rope_positions_2d", "apply_rope",
           "rope_section_freqs", "rope_vjepa2_freqs", "rope_window_order"]


def load() -> None:
    """Import every op and bind the public names (a submodule named like a function, ``resample``, is
    replaced by the function, as a plain ``from .resample import resample`` would)."""
    for name, home in _HOMES.items():
        globals()[name] = getattr(importlib.import_module(f".{home}", __name__), name)


def __getattr__(name):
    if name in _HOMES:
        load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOMES))


def _started_as_command() -> bool:
    """Whether this process is the ``posext`` command (its console script, or ``python -m posext.cli``)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("posext", "posext.exe"):
        return True
    argv = getattr(sys, "orig_argv", None) or []
    return any(a == "-m" and b == "posext.cli" for a, b in zip(argv, argv[1:]))


if not _started_as_command():
    load()
