"""A clear error for ``torch.onnx.export(..., dynamo=True)`` of a model that calls posext without posext's
translations.

The exporter would stop at a posext op anyway (it has no ONNX function for it), with a message about
registries; and posext's PyTorch fallback (no compiled ops) would reach ONNX as ``Resize`` nodes whose cubic
coefficient and antialias rule are not torch's. So while the exporter traces:

* every fake kernel of a forward op (``_register.py``; they run as Python in every capture mode, strict
  included) looks up the ``custom_translation_table`` the export was called with and raises, saying how to
  export, when it lacks the op (where that argument cannot be found, another exporter route or another torch,
  it stays silent and the exporter's own refusal applies);
* ``_backend.use_extension`` refuses the fallback.
"""
import sys

import torch

try:  # a module attribute, which Dynamo reads as it is (it folds torch.onnx.is_in_onnx_export() to False)
    from torch.onnx._internal.exporter import _flags as _onnx_flags
except ImportError:  # pragma: no cover - a torch without the dynamo exporter
    _onnx_flags = None

_EXPORT_FUNCTIONS = ("export", "export_compat")  # torch.onnx.export and the dynamo route it calls
HOW = ("export with posext.onnx.export(model, args, path, ...), or pass "
       "custom_translation_table=posext.onnx.translation_table() to torch.onnx.export(..., dynamo=True)")


def onnx_exporting() -> bool:
    """True while torch.onnx.export (dynamo) captures the model."""
    return bool(getattr(_onnx_flags, "_is_onnx_exporting", False))


def _translation_table():
    """The ``custom_translation_table`` of the torch.onnx export on the stack ({} for None), or None."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if (code.co_name in _EXPORT_FUNCTIONS and "custom_translation_table" in frame.f_locals
                and "/torch/onnx/" in code.co_filename.replace("\\", "/")):
            return frame.f_locals["custom_translation_table"] or {}
        frame = frame.f_back
    return None


# Ops posext.onnx does not translate (they write into their inputs), and the call that exports instead.
_IN_PLACE = {"rope_2d_": "apply_rope_2d(..., inplace=False)", "sincos_2d_out": "sincos_2d(...) without out=",
             "sincos_1d_out": "sincos_1d(...) without out=", "sincos_3d_out": "sincos_3d(...) without out="}


def refuse_untranslated(op_name: str) -> None:
    """Raises when the ONNX export on the stack has no translation for ``posext::op_name``."""
    table = _translation_table()
    if table is None or getattr(torch.ops.posext, op_name).default in table:
        return
    if op_name in _IN_PLACE:
        raise RuntimeError(f"posext::{op_name} writes into its inputs and has no ONNX translation; call "
                           f"{_IN_PLACE[op_name]} in the exported model")
    raise RuntimeError(f"posext::{op_name} has no ONNX translation in this export: {HOW}")


def refuse_fallback() -> None:
    raise RuntimeError("posext's ONNX translations need its compiled ops, and this call runs its PyTorch "
                       "fallback (posext.backend() = 'python', or a device without posext kernels), whose "
                       "F.interpolate would reach ONNX as Resize with other numbers. Build posext._C, then "
                       f"{HOW}")
