"""Which implementation runs: the compiled extension (posext._C) or the pure-PyTorch fallback.

POSEXT_BACKEND=auto (default) uses the extension when it imports, else the fallback with one warning.
POSEXT_BACKEND=python forces the fallback; POSEXT_BACKEND=extension makes a missing extension an error.
"""
import os
import warnings

import torch

from . import _onnx_guard

_MODE = os.environ.get("POSEXT_BACKEND", "auto").strip().lower() or "auto"
if _MODE not in ("auto", "python", "extension"):
    raise ValueError(f"POSEXT_BACKEND must be 'auto', 'python' or 'extension', got {_MODE!r}")

_C = None
_LOAD_ERROR = None
if _MODE != "python":
    try:
        from . import _C  # noqa: F811  (registers torch.ops.posext.*)
    except ImportError as exc:  # not built, or built against another torch
        _LOAD_ERROR = exc
        if _MODE == "extension":
            raise ImportError(f"POSEXT_BACKEND=extension but posext._C failed to import: {exc}") from exc
        warnings.warn(f"posext: compiled extension unavailable ({exc}); using the pure-PyTorch fallback. "
                      "Build it with `pip install --no-build-isolation -e .`.", RuntimeWarning, stacklevel=2)

_warned_cuda = False


def use_extension(device) -> bool:
    """True when the compiled kernels serve `device`; warns once when CUDA kernels were not built. Refuses
    the fallback while ``torch.onnx.export`` captures the model (see ``_onnx_guard``)."""
    served = _serves(device)
    if not served and _onnx_guard.onnx_exporting():
        _onnx_guard.refuse_fallback()
    return served


def _serves(device) -> bool:
    global _warned_cuda
    if _C is None:
        return False
    dev_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
    if dev_type in ("cpu", "meta"):
        return True
    if dev_type == "cuda":
        if _C.cuda_built:
            return True
        if not _warned_cuda:
            _warned_cuda = True
            warnings.warn("posext: extension was built without CUDA kernels; CUDA tensors use the "
                          "pure-PyTorch fallback.", RuntimeWarning, stacklevel=3)
    return False


def backend() -> str:
    """'extension' when posext._C is loaded, else 'python'."""
    return "extension" if _C is not None else "python"


def info() -> dict:
    """Backend, versions and build facts, for bug reports and benchmark records."""
    return {
        "backend": backend(),
        "requested": _MODE,
        "cuda_kernels_built": bool(_C is not None and _C.cuda_built),
        "extension_built_with_torch": getattr(_C, "built_with_torch", None),
        "extension_load_error": None if _LOAD_ERROR is None else str(_LOAD_ERROR),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "num_threads": torch.get_num_threads(),
    }


if _C is not None:
    from . import _register  # noqa: E402,F401  (fake kernels and autograd for torch.compile)
