"""ONNX export of models that use posext: each posext op translated into standard ONNX operators.

``torch.onnx.export(model, args, dynamo=True)`` meets posext's ops as custom operators it has no ONNX for.
``translation_table()`` is the mapping to pass as its ``custom_translation_table``; ``export`` passes it for
you. The translations build everything that depends on the image size from the sizes the graph sees at run
time, so one exported file serves every resolution with ``dynamic_shapes``:

* ``resample`` / ``resample_add`` (``_resample.py``, ``_weights.py``): per-axis resampling matrices of every
  mode of ``posext.resample`` (antialias, ``align_corners`` and ``scale_factor`` included), computed with the
  kernels' own steps and applied as two MatMuls, prefix rows copied. Not ``Resize``: a MatMul means the same
  on every runtime, while Resize's result rests on each runtime's reading of its cubic coefficient, antialias
  and ``exclude_outside`` attributes.
* ``resample_varlen`` / ``resample_varlen_add`` (``_varlen.py``): the same weights per result row.
* ``sincos_2d``, ``sincos_1d``, ``sincos_3d``, ``rope_2d``, ``factorized_add`` (``_tables.py``): their
  formulas.

Exporting without the table fails, naming the op and the two ways to export, rather than writing other
numbers (``posext._onnx_guard``). Needs the ``onnx`` and ``onnxscript`` packages (``onnxruntime`` to run the
result) and posext's compiled ops.
"""
from typing import Callable, Dict

import torch

from .. import _backend
from . import _resample, _tables, _varlen


def translation_table() -> Dict[Callable, Callable]:
    """``{posext op overload: its ONNX translation}`` for ``torch.onnx.export(..., dynamo=True,
    custom_translation_table=...)``; merge it with your own entries if you have any."""
    if _backend.backend() != "extension":
        raise RuntimeError(f"posext.onnx translates posext's compiled ops, and they are not loaded "
                           f"({_backend.info()['extension_load_error'] or 'POSEXT_BACKEND=python'}): build "
                           f"posext._C (pip install --no-build-isolation -e .)")
    ops = torch.ops.posext
    return {
        ops.resample.default: _resample.resample,
        ops.resample_add.default: _resample.resample_add,
        ops.resample_varlen.default: _varlen.resample_varlen,
        ops.resample_varlen_add.default: _varlen.resample_varlen_add,
        ops.sincos_2d.default: _tables.sincos_2d,
        ops.sincos_1d.default: _tables.sincos_1d,
        ops.sincos_3d.default: _tables.sincos_3d,
        ops.rope_2d.default: _tables.rope_2d,
        ops.factorized_add.default: _tables.factorized_add,
    }


def export(model, args=(), f=None, **kwargs):
    """``torch.onnx.export(model, args, f, dynamo=True, custom_translation_table=...)`` with posext's
    translations added to any ``custom_translation_table`` passed in ``kwargs`` (those win for the same op).
    Returns torch's ``ONNXProgram``."""
    if kwargs.get("dynamo") is False:
        raise ValueError("posext.onnx.export uses the dynamo exporter; dynamo=False (TorchScript) is not "
                         "supported")
    table = {**translation_table(), **(kwargs.pop("custom_translation_table", None) or {})}
    kwargs["dynamo"] = True
    return torch.onnx.export(model, args, f, custom_translation_table=table, **kwargs)


__all__ = ["translation_table", "export"]
